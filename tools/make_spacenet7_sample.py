"""Cut the real PlanetScope basemap sample of the tests out of ``../shared/data/spacenet7_dev``.

    python tools/make_spacenet7_sample.py [--aoi ../shared/data/spacenet7_dev/L15-0331E-1257N_1327_3160_13]

Writes ``data/samples/spacenet7_dev/<AOI>/``: the months 2018-01 and 2020-01 of SpaceNet 7's Byron
(California) area, rows 0-255 and columns 100-355 of each mosaic (a 256 px window, ~0.96 km at 3.76 m
on the ground: an existing subdivision and the one built between the two months), every band and pixel
value as published (RGB + alpha, EPSG:3857 georeferencing of the window), DEFLATE-compressed; and each
month's footprints (``labels_match``, ids kept) that touch the window. SpaceNet 7 imagery and labels are
CC BY-SA 4.0 (``data/README.md``).

Also writes ``data/samples/spacenet7_months_512/<AOI>/images/``: the same two months, rows and columns 0-511
(~1.9 km; images only), for the tests of the rotation between dates (``tests/test_rotation.py``): the 256 px
window is too small for a rotation to be measured on PlanetScope texture.
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
ROTATION_WINDOW = Window(col_off=0, row_off=0, width=512, height=512)


def write_window(source_path: Path, target_path: Path, window: Window) -> shapely.Polygon:
    """``window`` of a month's mosaic as published (every band, DEFLATE); returns the window's bounds."""
    with rasterio.open(source_path) as source:
        pixels = source.read(window=window)
        profile = {**source.profile, "width": window.width, "height": window.height, "compress": "deflate",
                   "transform": source.window_transform(window), "tiled": False}
        bounds = shapely.box(*source.window_bounds(window))
    target_path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(target_path, "w", **profile) as out:
        out.write(pixels)
    return bounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--aoi", type=Path, default=REPO.parent / "shared/data/spacenet7_dev" / AOI)
    args = parser.parse_args()
    target = REPO / "data/samples/spacenet7_dev" / AOI
    for month in MONTHS:
        stem = f"global_monthly_{month}_mosaic_{AOI}"
        bounds = write_window(args.aoi / "images" / f"{stem}.tif", target / "images" / f"{stem}.tif", WINDOW)
        write_window(args.aoi / "images" / f"{stem}.tif",
                     REPO / "data/samples/spacenet7_months_512" / AOI / "images" / f"{stem}.tif", ROTATION_WINDOW)
        labels = gpd.read_file(args.aoi / "labels_match" / f"{stem}_Buildings.geojson")
        kept = labels[labels.intersects(bounds)]
        (target / "labels_match").mkdir(parents=True, exist_ok=True)
        kept.to_file(target / "labels_match" / f"{stem}_Buildings.geojson", driver="GeoJSON")
        print(f"{month}: {len(kept)} footprints")


if __name__ == "__main__":
    main()
