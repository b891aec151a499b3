"""The land_cleared flag on the labelled change pairs, run through the whole change job.

    python bench/clearing.py [--model M] [--out bench/results/clearing.json] [--sizes native 3]
    python bench/clearing.py --speed-px 4096 [--out bench/results/clearing_speed.json]

Each DSIFN pair (China, ~2 m) and LEVIR-CD pair (Texas, ~0.5 m) in ``data/samples`` goes through
the same job as ``sitewatch change`` at its own pixel size and again area-averaged to 3 m
(PlanetScope-like). The ``land_cleared`` polygons are burned onto the pair's 256 px grid and
scored against ``data/samples/dsifn_cd_dev/land_cleared_cells.json``, a cell reference drawn by
eye (what is cleared ground there, and why, is written in that file; the DSIFN change labels
mark buildings and land-use change, not clearing). LEVIR ``train_386`` has no change at all and
is scored as all "not cleared". Printed per pair and size: areas found, hectares, the share of
"cleared" reference ground flagged, the share of "not cleared" ground flagged and the share of
the flagged area inside the DSIFN/LEVIR labelled change.

With ``--speed-px N`` it times the stage alone (``find_cleared_land``, no model) on an N × N px
mosaic of the DSIFN crops at 2 m, two dates, and reports seconds and the peak resident memory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
from rasterio.features import rasterize

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
REFERENCE = REPO / "data" / "samples" / "dsifn_cd_dev" / "land_cleared_cells.json"
NO_CHANGE = "train_386_0512_0768"


@dataclass
class PairScore:
    pair: str
    size: str
    areas: int
    hectares: float
    cleared_flagged: float | None  # share of reference "cleared" ground flagged
    not_cleared_flagged: float | None  # share of reference "not cleared" ground flagged
    flagged_in_labelled_change: float | None  # share of the flagged area inside the dataset's change label
    first_seen: list[str]


def reference_cells(name: str, shape: tuple[int, int]) -> np.ndarray:
    """Per pixel: 1 cleared, 0 not cleared, -1 not scored."""
    document = json.loads(REFERENCE.read_text())
    out = np.full(shape, -1, np.int8)
    if name == NO_CHANGE:
        out[:] = 0
    size = document["cell_px"]
    for i, row in enumerate(document["cells"].get(name, [])):
        for j, value in enumerate(row):
            if value != ".":
                out[i * size:(i + 1) * size, j * size:(j + 1) * size] = int(value)
    return out


def share(flagged: np.ndarray, where: np.ndarray) -> float | None:
    return round(float(flagged[where].mean()), 3) if where.any() else None


def run_pair(pair, native_gsd: float, size: str, predictor: Predictor, tmp: Path) -> PairScore:
    coarsen = None if size == "native" else float(size)
    folder = tmp / f"{pair.name}_{size}"
    rasters = write_pair_rasters(pair.name, pair.earlier, pair.later, pair.transform, pair.crs, folder / "in",
                                 coarsen_to_m=coarsen, native_gsd_m=native_gsd)
    summary = run_site(rasters, folder / "out", predictor).summary
    layer = gpd.read_file(folder / "out" / "changes.gpkg", layer="land_cleared")
    shape = pair.change.shape
    flagged = (rasterize(((g, 1) for g in layer.to_crs(pair.crs).geometry), out_shape=shape,
                         transform=pair.transform, fill=0, dtype="uint8") > 0) if len(layer) else np.zeros(shape, bool)
    reference = reference_cells(pair.name, shape)
    inside = float((flagged & (pair.change > 0)).sum() / flagged.sum()) if flagged.any() else None
    return PairScore(pair.name, "native" if coarsen is None else f"{coarsen:g} m", len(summary.land_cleared),
                     round(sum(a.area_m2 for a in summary.land_cleared) / 10_000, 2),
                     share(flagged, reference == 1), share(flagged, reference == 0),
                     None if inside is None else round(inside, 2), [a.first_seen for a in summary.land_cleared])


def pairs():
    samples = REPO / "data" / "samples"
    for name in dsifn_names(samples):
        yield DSIFN_GSD_M, read_dsifn_pair(samples, name)
    for name in levir_names(samples):
        yield LEVIR_GSD_M, read_levir_pair(samples, name)


def totals(rows: list[PairScore], reference: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per size, pixel-weighted over every scored pair: cleared ground flagged, other ground flagged."""
    out = {}
    for size in sorted({r.size for r in rows}):
        hit = cleared = false = other = 0.0
        for row in (r for r in rows if r.size == size):
            cells = reference[row.pair]
            if row.cleared_flagged is not None:
                hit += row.cleared_flagged * (cells == 1).sum()
                cleared += (cells == 1).sum()
            if row.not_cleared_flagged is not None:
                false += row.not_cleared_flagged * (cells == 0).sum()
                other += (cells == 0).sum()
        out[size] = {"cleared_flagged": round(hit / cleared, 3), "not_cleared_flagged": round(false / other, 3)}
    return out


def speed(size_px: int, out: Path) -> None:
    """Time the stage on a size_px² mosaic of the DSIFN crops (2 m, two dates, no buildings)."""
    import rasterio
    from pyproj import CRS

    from sitewatch.clearing import AnalysisGrid, find_cleared_land
    from sitewatch.data.levir import write_geotiff
    from sitewatch.prepare import Shift
    from sitewatch.products import MASK_NODATA
    from sitewatch.rules import ChangeRules

    samples = REPO / "data" / "samples"
    crops = [read_dsifn_pair(samples, name) for name in dsifn_names(samples)]
    tiles = -(-size_px // 256)
    order = [crops[(i * 7 + j * 3) % len(crops)] for i in range(tiles) for j in range(tiles)]

    def mosaic(attribute: str) -> np.ndarray:
        rows = [np.concatenate([getattr(c, attribute) for c in order[i * tiles:(i + 1) * tiles]], axis=1)
                for i in range(tiles)]
        return np.concatenate(rows, axis=0)[:size_px, :size_px]

    transform, crs = crops[0].transform, crops[0].crs
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        images = [write_geotiff(work / f"{k}.tif", mosaic(a), transform, crs, {})
                  for k, a in enumerate(("earlier", "later"))]
        masks = []
        for k in range(2):
            masks.append(work / f"mask_{k}.tif")
            with rasterio.open(masks[-1], "w", driver="GTiff", width=size_px, height=size_px, count=1, dtype="uint8",
                               crs=crs, transform=transform, nodata=MASK_NODATA, tiled=True) as target:
                target.write(np.zeros((size_px, size_px), np.uint8), 1)
        grid = AnalysisGrid.of_site(CRS.from_user_input(crs), transform, (size_px, size_px), (2.0, 2.0))
        start = time.perf_counter()
        layer = find_cleared_land(images, masks, [Shift()], [dt.date(2012, 5, 1), dt.date(2018, 5, 1)], grid,
                                  ChangeRules.default())
        seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = {"size_px": size_px, "km2": round((size_px * 2.0 / 1000) ** 2, 2), "seconds": round(seconds, 2),
           "areas": len(layer), "peak_rss_mib": round(peak_mib)}
    print(f"{'size px':>8s} {'km²':>6s} {'seconds':>8s} {'areas':>6s} {'peak RSS MiB':>13s}")
    print(f"{size_px:8d} {row['km2']:6.2f} {row['seconds']:8.2f} {row['areas']:6d} {row['peak_rss_mib']:13d}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(row, indent=2))
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=default_model_path())
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/clearing.json")
    parser.add_argument("--sizes", nargs="+", default=["native", "3"])
    parser.add_argument("--speed-px", type=int, default=None)
    args = parser.parse_args()
    if args.speed_px:
        default = args.out.name == "clearing.json"
        speed(args.speed_px, args.out.with_name("clearing_speed.json") if default else args.out)
        return
    model = load_model(args.model)
    predictor = Predictor(model, device="auto", backend="auto")
    rows, reference = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for native_gsd, pair in pairs():
            reference[pair.name] = reference_cells(pair.name, pair.change.shape)
            for size in args.sizes:
                rows.append(run_pair(pair, native_gsd, size, predictor, Path(tmp)))
    print(f"{'pair':22s} {'size':>6s} {'areas':>5s} {'ha':>6s} {'cleared flagged':>15s} "
          f"{'other flagged':>13s} {'in change':>9s}")
    for r in rows:
        def cell(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f}"

        print(f"{r.pair:22s} {r.size:>6s} {r.areas:5d} {r.hectares:6.2f} {cell(r.cleared_flagged):>15s} "
              f"{cell(r.not_cleared_flagged):>13s} {cell(r.flagged_in_labelled_change):>9s}")
    summary = totals(rows, reference)
    for size, entry in summary.items():
        print(f"{size}: reference cleared ground flagged {entry['cleared_flagged']:.2f}, "
              f"not-cleared ground flagged {entry['not_cleared_flagged']:.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": args.model.name, "sha256": model.sha256,
                                    "rows": [asdict(r) for r in rows], "totals": summary}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
