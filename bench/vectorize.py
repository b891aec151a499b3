"""Vectorize benchmark: buildings/s of sitewatch's footprint stage against a naive baseline.

    python bench/vectorize.py [--repeat 8] [--out bench/results/vectorize.json]

The mask is built from real labels: the OSM buildings of the Banepa sample rasterized on its
0.5 m grid (``--gsd``), then tiled ``repeat × repeat`` times (each copy mirrored, so buildings are cut at
the copy borders like at any strip seam). Both methods run in this one process on one core:

* sitewatch: ``vectorize_raster`` (strip tracing, seam merging, speck removal, splitting,
  hole filling, regularization, UTM attributes) with and without the watershed split;
* naive: ``rasterio.features.shapes`` without a mask (background polygons included), then a
  per-polygon shapely ``simplify`` in a Python loop, keeping the building polygons.

Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from affine import Affine  # noqa: E402
from rasterio.features import rasterize, shapes  # noqa: E402
from shapely.geometry import shape  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sitewatch.data.geodata import read_footprints  # noqa: E402
from sitewatch.data.slippy import read_fair_banepa  # noqa: E402
from sitewatch.footprints import FootprintOptions, vectorize_raster  # noqa: E402


def build_mask(repeat: int, folder: Path, gsd_m: float) -> tuple[Path, Affine]:
    samples = REPO / "data" / "samples"
    (mosaic,) = read_fair_banepa(samples)
    polygons = read_footprints(next((samples / "fair_banepa" / "osm").glob("*.geojson"))).to_crs(3857)
    # the sample's ground on a grid of ``gsd_m`` ground metres (Web-Mercator units / cos(lat))
    scale = gsd_m / mosaic.gsd_m
    transform = mosaic.transform @ Affine.scale(scale)
    shape_px = (int(mosaic.label.shape[0] / scale), int(mosaic.label.shape[1] / scale))
    tile = rasterize([(g, 1) for g in polygons.geometry], out_shape=shape_px,
                     transform=transform).astype(np.uint8)
    rows = [np.hstack([tile if (r + c) % 2 == 0 else tile[:, ::-1] for c in range(repeat)])
            for r in range(repeat)]
    mask = np.vstack(rows)
    path = folder / "mask.tif"
    with rasterio.open(path, "w", driver="GTiff", width=mask.shape[1], height=mask.shape[0], count=1,
                       dtype="uint8", crs="EPSG:3857", transform=transform, nodata=255,
                       tiled=True, compress="deflate") as out:
        out.write(mask[None])
    return path, mosaic.transform


def naive(path: Path, tolerance_units: float) -> int:
    with rasterio.open(path) as dataset:
        values, transform = dataset.read(1), dataset.transform
    kept = []
    for geometry, value in shapes(values, transform=transform):
        polygon = shape(geometry).simplify(tolerance_units, preserve_topology=True)
        if value == 1:
            kept.append(polygon)
    return len(kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=16)
    parser.add_argument("--gsd", type=float, default=0.5, help="mask pixel size in ground metres")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/vectorize.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path, _ = build_mask(args.repeat, Path(tmp), args.gsd)
        with rasterio.open(path) as dataset:
            size = (dataset.width, dataset.height)
        vectorize_raster(path, options=FootprintOptions(strip_rows=512))  # warm-up (imports, caches)
        for name, options in [
            ("sitewatch (split + regularize)", FootprintOptions()),
            ("sitewatch (regularize, no split)", FootprintOptions(split_touching=False)),
        ]:
            start = time.perf_counter()
            count = len(vectorize_raster(path, options=options))
            seconds = time.perf_counter() - start
            rows.append({"method": name, "buildings": count, "seconds": seconds, "buildings_per_s": count / seconds})
        start = time.perf_counter()
        count = naive(path, 0.5 / 0.886)  # 0.5 m in Web-Mercator units at 27.6° N
        seconds = time.perf_counter() - start
        rows.append({"method": "naive (shapes without mask + per-polygon simplify)", "buildings": count,
                     "seconds": seconds, "buildings_per_s": count / seconds})
    print(f"mask {size[0]}×{size[1]} px at {args.gsd} m from real Banepa labels tiled {args.repeat}×{args.repeat}\n")
    print(f"{'method':52s} {'buildings':>9s} {'seconds':>8s} {'buildings/s':>12s}")
    for row in rows:
        print(f"{row['method']:52s} {row['buildings']:9d} {row['seconds']:8.2f} {row['buildings_per_s']:12.0f}")
    result = {"command": "python " + " ".join(sys.argv), "mask_px": size, "gsd_m": args.gsd, "threads": 1,
              "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
