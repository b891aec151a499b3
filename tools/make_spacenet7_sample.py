"""Cut the real PlanetScope basemap sample of the tests out of ``../shared/data/spacenet7_dev``.

    python tools/make_spacenet7_sample.py [--aoi ../shared/data/spacenet7_dev/L15-0331E-1257N_1327_3160_13]

Writes ``data/samples/spacenet7_dev/<AOI>/``: the months 2018-01 and 2020-01 of SpaceNet 7's Byron
(California) area, rows 0-255 and columns 100-355 of each mosaic (a 256 px window, ~0.96 km at 3.76 m
on the ground: an existing subdivision and the one built between the two months), every band and pixel
value as published (RGB + alpha, EPSG:3857 georeferencing of the window), DEFLATE-compressed; and each
month's footprints (``labels_match``, ids kept) that touch the window. SpaceNet 7 imagery and labels are
CC BY-SA 4.0 (``data/README.md``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import geopandas as gpd
import rasterio
import shapely
from rasterio.windows import Window

REPO = Path(__file__).resolve().parents[1]
AOI = "L15-0331E-1257N_1327_3160_13"
MONTHS = ("2018_01", "2020_01")
WINDOW = Window(col_off=100, row_off=0, width=256, height=256)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--aoi", type=Path, default=REPO.parent / "shared/data/spacenet7_dev" / AOI)
    args = parser.parse_args()
    target = REPO / "data/samples/spacenet7_dev" / AOI
    for month in MONTHS:
        stem = f"global_monthly_{month}_mosaic_{AOI}"
        with rasterio.open(args.aoi / "images" / f"{stem}.tif") as source:
            pixels = source.read(window=WINDOW)
            profile = {**source.profile, "width": WINDOW.width, "height": WINDOW.height, "compress": "deflate",
                       "transform": source.window_transform(WINDOW), "tiled": False}
            bounds = shapely.box(*source.window_bounds(WINDOW))
        (target / "images").mkdir(parents=True, exist_ok=True)
        with rasterio.open(target / "images" / f"{stem}.tif", "w", **profile) as out:
            out.write(pixels)
        labels = gpd.read_file(args.aoi / "labels_match" / f"{stem}_Buildings.geojson")
        kept = labels[labels.intersects(bounds)]
        (target / "labels_match").mkdir(parents=True, exist_ok=True)
        kept.to_file(target / "labels_match" / f"{stem}_Buildings.geojson", driver="GeoJSON")
        print(f"{month}: {len(kept)} footprints")


if __name__ == "__main__":
    main()
