"""Build ``data/samples/own_data/``: a GeoTIFF + footprints in another CRS, from real sample pixels.

The four Banepa (Nepal) OpenAerialMap tiles of ``data/samples/fair_banepa`` are stitched (their
georeferencing is in the file names), warped to UTM zone 45N (EPSG:32645) at 0.25 m and written
as a tiled, deflate-compressed GeoTIFF; the OSM footprints that touch it are written as a
GeoPackage in EPSG:4326, and the tiles' extent (the mapped area) as a GeoJSON label extent.
It is what "a folder of GeoTIFFs and a vector file of footprints" looks like in the smallest
real form, and what the README's "Train on your own data" command and the tests read.

    python tools/make_own_data_sample.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.warp import Resampling, calculate_default_transform, reproject
from shapely.geometry import box

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sitewatch.data.geodata import read_footprints  # noqa: E402
from sitewatch.data.slippy import mosaic_tiles, parse_tile_name  # noqa: E402

SOURCE = REPO / "data" / "samples" / "fair_banepa"
TARGET = REPO / "data" / "samples" / "own_data"
UTM_45N = "EPSG:32645"
PIXEL_M = 0.25


def main() -> None:
    tiles = []
    for path in sorted((SOURCE / "oam").glob("OAM-*.tif")):
        x, y, zoom = parse_tile_name(path)
        tiles.append((x, y, path))
    image, valid, transform = mosaic_tiles(tiles, zoom)
    height, width = valid.shape
    dst_transform, dst_width, dst_height = calculate_default_transform(
        "EPSG:3857", UTM_45N, width, height, *_bounds(transform, width, height), resolution=PIXEL_M)
    warped = np.zeros((3, dst_height, dst_width), np.uint8)
    for band in range(3):
        reproject(image[..., band], warped[band], src_transform=transform, src_crs="EPSG:3857",
                  dst_transform=dst_transform, dst_crs=UTM_45N, resampling=Resampling.average, dst_nodata=0)
    TARGET.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "width": dst_width, "height": dst_height, "count": 3, "dtype": "uint8",
               "crs": UTM_45N, "transform": dst_transform, "nodata": 0, "tiled": True, "blockxsize": 256,
               "blockysize": 256, "compress": "deflate", "predictor": 2, "photometric": "RGB"}
    with rasterio.open(TARGET / "banepa_utm45n.tif", "w", **profile) as out:
        out.write(warped)
    extent = gpd.GeoDataFrame(geometry=[box(*_bounds(transform, width, height))], crs=3857).to_crs(4326)
    labels = read_footprints(next((SOURCE / "osm").glob("*.geojson")))
    labels = labels[labels.intersects(extent.geometry.iloc[0])][["geometry"]]
    labels.to_file(TARGET / "banepa_buildings_4326.gpkg", layer="buildings", driver="GPKG")
    extent.to_file(TARGET / "banepa_mapped_area.geojson", driver="GeoJSON")
    print(f"{dst_width}×{dst_height} px at {PIXEL_M} m, {len(labels)} footprints -> {TARGET}")


def _bounds(transform, width: int, height: int) -> tuple[float, float, float, float]:
    west, north = transform @ (0, 0)
    east, south = transform @ (width, height)
    return west, south, east, north


if __name__ == "__main__":
    main()
