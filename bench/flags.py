"""Hall and housing flags on labelled change pairs, at native resolution and area-averaged to 3 m.

    python bench/flags.py [--model M] [--out bench/results/flags.json] [--sizes native 3]

Pairs: the four LEVIR-CD dev pairs (Texas, ~0.5 m) and the five DSIFN pairs (China, ~2 m, on
an assumed 2 m grid: see ``sitewatch.data.dsifn``), all in ``data/samples``. Each pair is run
through the same job as ``sitewatch change`` at its own pixel size and again after both dates
are area-averaged to 3 m (a PlanetScope-like view). Neither dataset labels halls or housing
estates, so the expected flags below are judged by eye from the images and stated with why;
pairs where the judgement is not clear are run and listed but not scored.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sitewatch.checkpoint import load_model  # noqa: E402
from sitewatch.data.dsifn import DSIFN_GSD_M, dsifn_names, read_dsifn_pair  # noqa: E402
from sitewatch.data.levir import levir_names, read_levir_pair  # noqa: E402
from sitewatch.data.pairs import write_pair_rasters  # noqa: E402
from sitewatch.paths import default_model_path  # noqa: E402
from sitewatch.pipeline import run_site  # noqa: E402
from sitewatch.predict import Predictor  # noqa: E402

LEVIR_GSD_M = 0.5

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
}


@dataclass
class PairResult:
    pair: str
    dataset: str
    size: str  # "native" or "3 m"
    work_gsd_m: float
    expected_hall: bool | None
    expected_housing: bool | None
    halls: int
    housing_clusters: int
    new_buildings: int
    hall_records: list[dict]


def pairs():
    samples = REPO / "data" / "samples"
    for name in levir_names(samples):
        yield "LEVIR-CD", LEVIR_GSD_M, read_levir_pair(samples, name)
    for name in dsifn_names(samples):
        yield "DSIFN", DSIFN_GSD_M, read_dsifn_pair(samples, name)


def run_pair(dataset: str, native_gsd: float, pair, size: str, predictor: Predictor, tmp: Path) -> PairResult:
    coarsen = None if size == "native" else float(size)
    folder = tmp / f"{pair.name}_{size}"
    rasters = write_pair_rasters(pair.name, pair.earlier, pair.later, pair.transform, pair.crs, folder / "in",
                                 coarsen_to_m=coarsen, native_gsd_m=native_gsd)
    run = run_site(rasters, folder / "out", predictor)
    summary = run.summary
    halls = [b for b in summary.new_buildings if b.flag == "assembly_hall"]
    hall_hint, housing_hint, _ = EXPECTED.get(pair.name, (None, None, ""))
    return PairResult(pair=pair.name, dataset=dataset, size="native" if coarsen is None else f"{coarsen:g} m",
                      work_gsd_m=summary.model.gsd_m, expected_hall=hall_hint,
                      expected_housing=housing_hint, halls=summary.flags.assembly_hall,
                      housing_clusters=summary.flags.housing_clusters,
                      new_buildings=summary.counts.new, hall_records=[h.as_dict() for h in halls])


def score(rows: list[PairResult]) -> dict[str, dict[str, int]]:
    """Per size: pairs scored and right, for halls and for housing."""
    out: dict[str, dict[str, int]] = {}
    for row in rows:
        entry = out.setdefault(row.size, {"hall_scored": 0, "hall_right": 0, "housing_scored": 0,
                                          "housing_right": 0, "false_halls": 0, "missed_halls": 0})
        if row.expected_hall is not None:
            entry["hall_scored"] += 1
            entry["hall_right"] += int((row.halls > 0) == row.expected_hall)
            entry["false_halls"] += int(row.halls > 0 and not row.expected_hall)
            entry["missed_halls"] += int(row.halls == 0 and row.expected_hall)
        if row.expected_housing is not None:
            entry["housing_scored"] += 1
            entry["housing_right"] += int((row.housing_clusters > 0) == row.expected_housing)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=default_model_path())
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/flags.json")
    parser.add_argument("--sizes", nargs="+", default=["native", "3"])
    args = parser.parse_args()
    model = load_model(args.model)
    predictor = Predictor(model, device="auto", backend="auto")
    rows: list[PairResult] = []
    with tempfile.TemporaryDirectory() as tmp:
        for dataset, native_gsd, pair in pairs():
            for size in args.sizes:
                rows.append(run_pair(dataset, native_gsd, pair, size, predictor, Path(tmp)))
    print(f"model {args.model.name}")
    print(f"{'pair':22s} {'size':>6s} {'work m':>6s} {'hall?':>5s} {'halls':>5s} {'hous?':>5s} {'clust':>5s} "
          f"{'new':>4s}  hall records (m², confidence)")
    for r in rows:
        def mark(value: bool | None) -> str:
            return "-" if value is None else ("yes" if value else "no")

        records = "; ".join(f"{h['area_m2']:.0f}{' edge≥' if h.get('cut_by_edge') else ''} ({h['confidence']:.2f})"
                            for h in r.hall_records)
        print(f"{r.pair:22s} {r.size:>6s} {r.work_gsd_m:6.2f} {mark(r.expected_hall):>5s} {r.halls:5d} "
              f"{mark(r.expected_housing):>5s} {r.housing_clusters:5d} {r.new_buildings:4d}  {records}")
    totals = score(rows)
    for size, entry in totals.items():
        print(f"{size}: halls right {entry['hall_right']}/{entry['hall_scored']} "
              f"(false {entry['false_halls']}, missed {entry['missed_halls']}), "
              f"housing right {entry['housing_right']}/{entry['housing_scored']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": args.model.name, "sha256": model.sha256,
                                    "expected": {k: list(v) for k, v in EXPECTED.items()},
                                    "rows": [asdict(r) for r in rows], "scores": totals},
                                   indent=2, default=str))


if __name__ == "__main__":
    main()
