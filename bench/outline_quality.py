"""Footprint-quality bench: traced outlines against labelled building polygons, by source and pixel size.

    python bench/outline_quality.py [--data ../shared/data] [--pixels 0.5 1 2 3] [--label after]
                                    [--methods sitewatch raw buildingregulariser] [--out FILE]

For each labelled source with vector footprints (fAIr Banepa and RAMP areas: OpenStreetMap; xBD
Joplin: xBD JSON; SpaceNet 7: PlanetScope-month footprints), a square of ground is cut where the
buildings are densest, the footprints are rasterized as the probability a perfect network would give
(each pixel: the share of it a building covers) at each pixel size, in the local UTM zone, and traced
by ``sitewatch.footprints.vectorize_raster`` exactly as a prediction is. The traced outlines are
scored against the footprints that lie wholly inside the square (``sitewatch.outline_quality``):
object F1 (IoU >= 0.5), mean polygon IoU, vertex counts, PoLiS (m) and max tangent angle error (°).

Methods: ``sitewatch`` (the footprint stage as shipped: regularized), ``raw`` (traced and only
simplified, ``regularize=False``), ``buildingregulariser`` (the raw trace regularized by the MIT
library ``buildingregulariser`` with its defaults, in UTM; optional extra ``bench``). What the
network gets wrong is not in this bench (the probability is perfect): it measures the outlines only.
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.features import rasterize

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sitewatch.data.geodata import read_footprints  # noqa: E402
from sitewatch.data.xbd import read_xbd_json  # noqa: E402
from sitewatch.files import atomic_path  # noqa: E402
from sitewatch.footprints import FootprintOptions, utm_crs, vectorize_raster  # noqa: E402
from sitewatch.outline_quality import outline_quality  # noqa: E402

SUPERSAMPLE = 5


def labelled_sources(data: Path) -> Iterator[tuple[str, str, gpd.GeoDataFrame, float]]:
    """(source, area, footprints, square side in m) for every vector-labelled area in ``data``."""
    banepa = sorted((data / "fair_banepa/osm").glob("*.geojson"))
    if banepa:
        yield "fair_banepa", "osm", read_footprints(banepa[0]), 300.0
    for labels in sorted((data / "fair_ramp").glob("area*/labels.geojson")):
        yield "fair_ramp", labels.parent.name, read_footprints(labels), 200.0
    for path in sorted((data / "xbd/joplin/labels").glob("*_pre_disaster.json")):
        _, lonlat, _ = read_xbd_json(path)
        yield "xbd_joplin", path.stem.split("_")[1], gpd.GeoDataFrame(geometry=lonlat, crs=4326), 250.0
    for labels in sorted((data / "spacenet7_dev").glob("*/labels_match/*2020_01*_Buildings.geojson")):
        yield "spacenet7", labels.parents[1].name[:20], read_footprints(labels), 500.0


def densest_square(footprints: gpd.GeoDataFrame, side_m: float) -> tuple[gpd.GeoDataFrame, tuple]:
    """The footprints in UTM, and the square (minx, miny, maxx, maxy) of ``side_m`` where most lie."""
    crs = utm_crs(footprints.crs, tuple(footprints.to_crs(4326).total_bounds))
    metric = footprints.to_crs(crs)
    metric = metric[metric.geometry.is_valid & (metric.geometry.area > 0)].reset_index(drop=True)
    centres = shapely.get_coordinates(metric.geometry.centroid.values)
    counts = [np.sum(np.all(np.abs(centres - c) <= side_m / 2, axis=1)) for c in centres]
    cx, cy = centres[int(np.argmax(counts))]
    return metric, (cx - side_m / 2, cy - side_m / 2, cx + side_m / 2, cy + side_m / 2)


def perfect_probability(metric: gpd.GeoDataFrame, square: tuple, pixel_m: float, path: Path) -> Path:
    """A float GeoTIFF of each pixel's building cover (0-1) over the square."""
    minx, miny, maxx, maxy = square
    size = int(round((maxx - minx) / pixel_m))
    transform = Affine(pixel_m, 0, minx, 0, -pixel_m, maxy)
    fine = rasterize(metric.geometry.values, out_shape=(size * SUPERSAMPLE, size * SUPERSAMPLE),
                     transform=transform @ Affine.scale(1 / SUPERSAMPLE), dtype="uint8")
    cover = fine.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3)).astype("float32")
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1, dtype="float32",
                       crs=metric.crs, transform=transform) as out:
        out.write(cover, 1)
    return path


def traced(path: Path, method: str) -> list:
    """Outlines of the probability raster by one method (UTM polygons)."""
    if method == "sitewatch":
        return list(vectorize_raster(path).geometry.values)
    raw = vectorize_raster(path, options=replace(FootprintOptions(), regularize=False))
    if method == "raw" or raw.empty:
        return list(raw.geometry.values)
    from buildingregulariser import regularize_geodataframe
    return list(regularize_geodataframe(raw[["geometry"]]).geometry.values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data")
    parser.add_argument("--pixels", type=float, nargs="+", default=[0.5, 1.0, 2.0, 3.0])
    parser.add_argument("--methods", nargs="+", default=["sitewatch", "raw", "buildingregulariser"])
    parser.add_argument("--label", default="after", help="what the code measured is (before/after a change)")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/outline_quality.json")
    args = parser.parse_args()
    rows = []
    sources = list(labelled_sources(args.data))
    if not sources:
        sys.exit(f"{args.data}: no labelled source found (give the shared data folder with --data)")
    with tempfile.TemporaryDirectory() as tmp:
        for source, area, footprints, side in sources:
            metric, square = densest_square(footprints, side)
            inside = metric[metric.geometry.within(shapely.box(*square).buffer(-2))]
            reference = [g if g.geom_type == "Polygon" else max(g.geoms, key=lambda p: p.area)
                         for g in inside.geometry.values]
            for pixel_m in args.pixels:
                path = perfect_probability(metric, square, pixel_m, Path(tmp) / "p.tif")
                for method in args.methods:
                    start = time.perf_counter()
                    polygons = [p for p in traced(path, method) if p.within(shapely.box(*square).buffer(-2))]
                    quality = outline_quality(polygons, reference)
                    rows.append({"source": source, "area": area, "pixel_m": pixel_m, "method": method,
                                 "seconds": round(time.perf_counter() - start, 2), **quality.as_dict()})
                    print(f"{source:12} {area:10} {pixel_m:4} {method:20} " + " ".join(
                        f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in quality.as_dict().items()), flush=True)
    summary = summarize(rows)
    print_table(summary)
    result = {"command": " ".join(["python", "bench/outline_quality.py", *sys.argv[1:]]),
              "label": args.label, "rows": rows, "by_source": summary}
    with atomic_path(args.out) as tmp:  # a JSON whole or not at all
        tmp.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"wrote {args.out}")


MEASURES = ["f1", "mean_iou", "mean_vertices", "mean_reference_vertices", "mean_polis_m",
            "mean_max_tangent_error_deg"]


def summarize(rows: list[dict]) -> list[dict]:
    """Per source, pixel size and method: the measures averaged over areas, weighted by matches."""
    out = []
    keys = sorted({(r["source"], r["pixel_m"], r["method"]) for r in rows})
    for source, pixel_m, method in keys:
        mine = [r for r in rows if (r["source"], r["pixel_m"], r["method"]) == (source, pixel_m, method)]
        weights = np.array([max(r["matched"], 0) for r in mine], float)
        entry = {"source": source, "pixel_m": pixel_m, "method": method,
                 "reference": sum(r["reference"] for r in mine), "matched": int(weights.sum())}
        for measure in MEASURES:
            values = np.array([r[measure] for r in mine], float)
            ok = ~np.isnan(values) & (weights > 0)
            entry[measure] = float(np.average(values[ok], weights=weights[ok])) if ok.any() else float("nan")
        out.append(entry)
    return out


def print_table(summary: list[dict]) -> None:
    print(f"\n{'source':12} {'px m':>5} {'method':20} {'ref':>5} {'F1':>6} {'IoU':>6} {'verts':>6} "
          f"{'ref v':>6} {'PoLiS':>6} {'maxtan':>7}")
    for e in summary:
        print(f"{e['source']:12} {e['pixel_m']:>5} {e['method']:20} {e['reference']:>5} {e['f1']:>6.3f} "
              f"{e['mean_iou']:>6.3f} {e['mean_vertices']:>6.1f} {e['mean_reference_vertices']:>6.1f} "
              f"{e['mean_polis_m']:>6.2f} {e['mean_max_tangent_error_deg']:>7.1f}")


if __name__ == "__main__":
    main()
