"""Ground covered per minute at the input's own pixel size: a 3 m raster against a 0.5 m one.

    python bench/gsd_speed.py [--models M1 M2 ...] [--size 2048] [--repeats 3]
                              [--out bench/results/gsd_speed.json]

Two GeoTIFFs of ``--size``² pixels, tiled from the same real 1,024² sample (xBD Harvey), one
with 0.5 m pixels (1.05 km² at 2,048²) and one with 3 m pixels (37.7 km²). Each model segments
each raster end to end with ``segment_raster`` (the defaults of ``sitewatch segment``, ONNX
Runtime on the CPU): the table gives the median seconds, the pixel size the model ran at, the
windows it cut and the km² per minute. A single-scale 0.5 m model blows a 3 m raster up 36×
in pixels; a multi-scale one runs it at 3 m.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import rasterio
from affine import Affine

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.inference import make_raster  # noqa: E402
from sitewatch.checkpoint import load_model  # noqa: E402
from sitewatch.paths import default_model_path  # noqa: E402
from sitewatch.predict import Predictor, segment_raster  # noqa: E402


def with_pixel_size(source: Path, target: Path, gsd: float) -> Path:
    """A copy of ``source`` whose grid says ``gsd`` metres per pixel (same pixels)."""
    with rasterio.open(source) as dataset:
        profile, pixels = dataset.profile, dataset.read()
    profile["transform"] = Affine(gsd, 0, 300000, 0, -gsd, 3300000)
    with rasterio.open(target, "w", **profile) as out:
        out.write(pixels)
    return target


def time_model(model_path: Path, raster: Path, repeats: int) -> dict:
    predictor = Predictor(load_model(model_path), device="cpu", backend="auto")
    seconds, result = [], None
    for _ in range(repeats + 1):  # the first run warms up (ONNX session, file cache)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result = segment_raster(raster, Path(tmp) / "out", predictor)
            seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds[1:])
    return {"model": model_path.name, "raster_gsd_m": result.pixel_size_m[0], "area_km2": result.area_km2,
            "work_gsd_m": result.work_gsd_m, "windows": result.windows, "seconds": median,
            "km2_per_minute": result.area_km2 / median * 60, "backend": predictor.description}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, nargs="+", default=[default_model_path()])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/gsd_speed.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fine = make_raster(Path(tmp) / "fine.tif", args.size)
        coarse = with_pixel_size(fine, Path(tmp) / "coarse.tif", 3.0)
        for model in args.models:
            for raster in (fine, coarse):
                rows.append(time_model(model, raster, args.repeats))
    print(f"{'model':44s} {'input m':>7s} {'km²':>6s} {'run at m':>8s} {'windows':>7s} {'s':>7s} {'km²/min':>8s}")
    for r in rows:
        print(f"{r['model']:44s} {r['raster_gsd_m']:7.2f} {r['area_km2']:6.2f} {r['work_gsd_m']:8.2f} "
              f"{r['windows']:7d} {r['seconds']:7.1f} {r['km2_per_minute']:8.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": "python " + " ".join(sys.argv), "machine": platform.platform(),
                                    "size_px": args.size, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
