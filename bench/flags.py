"""Flags and change classes on labelled and constructed change pairs, at native size and at 3 m.

    python bench/flags.py [--out bench/results/flags.json] [--sizes native 3]

Pairs (``bench/flag_cases.py``): the four LEVIR-CD dev pairs (Texas, ~0.5 m, label = buildings
that appeared or vanished), the five DSIFN pairs (China, ~2 m on an assumed grid, label = coarse
land-use change), the demo site, two pairs whose later image is the earlier one re-imaged (moved by
~25-30 m, hazed, re-exposed, JPEG: nothing changed), DSIFN 6_3 cut diagonally by nodata, and LEVIR
train_386 with a warehouse replaced by real houses. Each runs through the same job as
``sitewatch change`` at its own pixel size and again area-averaged to 3 m.

Scores per class: a record is **right** when at least half its footprint lies in the labelled
change (labelled pairs), when the pair is the rebuilt one and the record lies on the rebuilt
ground (replaced), and never on a re-imaged pair or as a demolition on the demo site. **Found**:
labelled change regions (8-connected, at least 20 label pixels) with at least a quarter of their
area under a change record. Halls and housing: the expected flags below, judged by eye (neither
dataset labels them).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.features import rasterize
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from flag_cases import Case, built_cases, demo_case, full_tile_cases, labelled_cases  # noqa: E402

from sitewatch.checkpoint import load_model  # noqa: E402
from sitewatch.data.pairs import write_pair_rasters  # noqa: E402
from sitewatch.paths import default_model_path  # noqa: E402
from sitewatch.pipeline import run_site  # noqa: E402
from sitewatch.predict import Predictor  # noqa: E402

#: name → (new hall expected, new housing expected, why); None = not scored.
EXPECTED: dict[str, tuple[bool | None, bool | None, str]] = {
    "train_36_0512_0512": (False, True, "a row of new detached houses; the large building stands at both dates"),
    "train_386_0512_0768": (False, False, "no change: warehouses and houses stand at both dates"),
    "train_412_0512_0768": (False, True, "a new cul-de-sac of houses; the warehouse stands at both dates"),
    "val_27_0000_0256": (False, True, "more new houses beside existing ones"),
    "6_3": (True, False, "farmland turned into an industrial park: red long-span halls cut by the edge"),
    "8_3": (False, True, "a worker camp of blue sheds and apartment blocks; no long-span hall"),
    "0_2": (None, None, "village growth with one white-roofed shed whose date is unclear"),
    "1_1": (None, None, "village densification; merged roofs at 2 m"),
    "3_4": (None, None, "village densification with sheds; merged roofs at 2 m"),
    "demo_site": (False, True, "new houses on scrub beside an existing hall"),
    "demo_site_reimaged": (False, False, "the same ground re-imaged"),
    "train_386_reimaged": (False, False, "the same ground re-imaged"),
    "6_3_edgecut": (True, False, "the industrial park cut diagonally by nodata"),
    "train_386_rebuilt": (False, False, "one warehouse replaced by houses"),
    "test_1": (False, True, "a new subdivision of 12 houses (LEVIR-CD full tile)"),
    "test_3": (False, True, "7 new detached houses along a new road (LEVIR-CD full tile)"),
}
CLASSES = ("new", "demolished", "replaced", "expanded", "shrunk")


def write_case(case: Case, size: str, folder: Path) -> list[Path]:
    coarsen = None if size == "native" else float(size)
    rasters = write_pair_rasters(case.name, case.earlier, case.later, case.transform, case.crs, folder / "in",
                                 coarsen_to_m=coarsen, native_gsd_m=case.gsd_m)
    if case.nodata_wedge:
        for path in rasters:
            with rasterio.open(path, "r+") as dataset:
                dataset.nodata = 0
    return rasters


def record_right(case: Case, records: gpd.GeoDataFrame) -> np.ndarray:
    """Per change record: right (True), wrong (False)."""
    if case.no_change:
        return np.zeros(len(records), bool)
    if case.label is None:  # the demo site: no pixel label; a demolition there is wrong, others unscored
        return np.where(records["change"] == "demolished", False, np.nan)
    shares = []
    for geometry in records.to_crs(case.crs).geometry:
        pixels = rasterize([(geometry, 1)], out_shape=case.label.shape, transform=case.transform, fill=0,
                           all_touched=True).astype(bool)
        shares.append(case.label[pixels].mean() if pixels.any() else 0.0)
    return np.asarray(shares) >= 0.5


def regions_found(case: Case, records: gpd.GeoDataFrame) -> tuple[int, int]:
    """(labelled change regions, those found) of a labelled pair."""
    if case.label is None or case.no_change:
        return 0, 0
    labels, count = ndimage.label(case.label, structure=np.ones((3, 3)))
    sizes = ndimage.sum(np.ones_like(labels), labels, np.arange(1, count + 1))
    covered = np.zeros(case.label.shape, bool)
    if len(records):
        covered = rasterize([(g, 1) for g in records.to_crs(case.crs).geometry], out_shape=case.label.shape,
                            transform=case.transform, fill=0).astype(bool)
    under = ndimage.sum(covered, labels, np.arange(1, count + 1))
    big = sizes >= 20
    return int(big.sum()), int((big & (under >= 0.25 * sizes)).sum())


def run_case(case: Case, size: str, predictor: Predictor, tmp: Path) -> dict:
    folder = tmp / f"{case.name}_{size}"
    summary = run_site(write_case(case, size, folder), folder / "out", predictor).summary
    changes = gpd.read_file(folder / "out" / "changes.gpkg", layer="changes")
    changes = changes[changes["change"].isin(CLASSES)]
    right = record_right(case, changes)
    row = {"pair": case.name, "dataset": case.dataset, "size": size, "shift": summary.shift[0].as_dict(),
           "halls": summary.flags.assembly_hall, "housing_clusters": summary.flags.housing_clusters,
           "expected_hall": EXPECTED[case.name][0], "expected_housing": EXPECTED[case.name][1]}
    for name in CLASSES:
        mine = (changes["change"] == name).to_numpy()
        row[name] = int(mine.sum())
        row[f"{name}_right"] = int(np.nansum(np.where(mine, right, np.nan) == 1))
        row[f"{name}_scored"] = int((mine & ~np.isnan(right.astype(float))).sum())
    row["regions"], row["regions_found"] = regions_found(case, changes)
    return row


def totals(rows: list[dict]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for row in rows:
        entry = out.setdefault(row["size"], {})
        for name in CLASSES:
            for key in ("", "_right", "_scored"):
                entry[name + key] = entry.get(name + key, 0) + row[name + key]
        entry["regions"] = entry.get("regions", 0) + row["regions"]
        entry["regions_found"] = entry.get("regions_found", 0) + row["regions_found"]
        for flag, count in (("hall", row["halls"]), ("housing", row["housing_clusters"])):
            expected = row[f"expected_{flag}"]
            if expected is not None:
                entry[f"{flag}_scored"] = entry.get(f"{flag}_scored", 0) + 1
                entry[f"{flag}_right"] = entry.get(f"{flag}_right", 0) + int((count > 0) == expected)
                entry[f"false_{flag}"] = entry.get(f"false_{flag}", 0) + int(count > 0 and not expected)
                entry[f"missed_{flag}"] = entry.get(f"missed_{flag}", 0) + int(count == 0 and expected)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=default_model_path())
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/flags.json")
    parser.add_argument("--sizes", nargs="+", default=["native", "3"])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data",
                        help="the shared data folder: its whole LEVIR-CD tiles join the pairs where present")
    args = parser.parse_args()
    model = load_model(args.model)
    predictor = Predictor(model, device="auto", backend="auto")
    samples = REPO / "data" / "samples"
    cases = [*labelled_cases(samples), *full_tile_cases(args.data), demo_case(), *built_cases(samples)]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_case(case, size, predictor, Path(tmp)) for case in cases for size in args.sizes]
    for row in rows:
        print(f"{row['pair']:22s} {row['size']:>6s} " + " ".join(
            f"{name} {row[name + '_right']}/{row[name]}" for name in CLASSES)
            + f" found {row['regions_found']}/{row['regions']} halls {row['halls']} housing {row['housing_clusters']}")
    scores = totals(rows)
    print(json.dumps(scores, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": args.model.name, "sha256": model.sha256, "rows": rows,
                                    "scores": scores}, indent=2, default=str))


if __name__ == "__main__":
    main()
