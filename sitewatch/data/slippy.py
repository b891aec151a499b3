"""Readers for imagery cut into web-map (XYZ / slippy-map) tiles with OSM polygon labels.

* ``fair_ramp/areaN/OAM-{x}-{y}-{z}.png`` (256 px) with ``areaN/labels.geojson``;
* ``fair_banepa/oam/OAM-{x}-{y}-{z}.tif`` (512 px, no geotags) with ``fair_banepa/osm/*.geojson``.

The tiles carry their georeferencing only in the file name. Tiles of one area and zoom are
stitched into one Web-Mercator (EPSG:3857) mosaic, so a building cut by a tile edge is whole
and chips are not limited to one small tile; missing tiles are marked as unlabelled. Labels
(EPSG:4326 polygons) are reprojected to EPSG:3857 and rasterized on the mosaic's transform.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
from affine import Affine
from scipy import ndimage
from shapely.geometry import box

from sitewatch.data.common import (
    IGNORE,
    LabeledImage,
    burn_polygons,
    read_rgb,
    require_dir,
    slippy_tile_bounds_3857,
    subfolders,
)
from sitewatch.data.geodata import read_footprints
from sitewatch.errors import SitewatchError
from sitewatch.raster import ground_pixel_size_m

TILE_NAME = re.compile(r"^OAM-(\d+)-(\d+)-(\d+)$")


def parse_tile_name(path: Path) -> tuple[int, int, int]:
    """``OAM-{x}-{y}-{z}.ext`` → ``(x, y, z)``; a clear error for any other name."""
    match = TILE_NAME.match(path.stem)
    if not match:
        raise SitewatchError(f"{path}: tile name is not OAM-<x>-<y>-<zoom>")
    x, y, z = (int(v) for v in match.groups())
    return x, y, z


def mosaic_tiles(
    tiles: list[tuple[int, int, Path]], zoom: int
) -> tuple[np.ndarray, np.ndarray, Affine]:
    """Stitch XYZ tiles of one zoom into one image.

    Args:
        tiles: ``(x, y, path)`` for every tile; all tiles must have the same pixel size.
        zoom: their zoom level.

    Returns:
        ``(image H×W×3 uint8, valid H×W bool, transform)``; the transform is in EPSG:3857.
    """
    xs = [t[0] for t in tiles]
    ys = [t[1] for t in tiles]
    x0, y0 = min(xs), min(ys)
    first = read_rgb(tiles[0][2])
    size = first.shape[0]
    if first.shape[1] != size:
        raise SitewatchError(f"{tiles[0][2]}: slippy tile is not square")
    width, height = (max(xs) - x0 + 1) * size, (max(ys) - y0 + 1) * size
    image = np.zeros((height, width, 3), np.uint8)
    valid = np.zeros((height, width), bool)
    for x, y, path in tiles:
        pixels = first if path == tiles[0][2] else read_rgb(path)
        if pixels.shape[:2] != (size, size):
            raise SitewatchError(f"{path}: tile is {pixels.shape[1]}×{pixels.shape[0]}, not {size}²")
        row, col = (y - y0) * size, (x - x0) * size
        image[row : row + size, col : col + size] = pixels
        valid[row : row + size, col : col + size] = True
    left, _, right, top = slippy_tile_bounds_3857(x0, y0, zoom)
    transform = Affine((right - left) / size, 0, left, 0, -(right - left) / size, top)
    return image, valid, transform


def tile_clusters(tiles: list[tuple[int, int, Path]]) -> list[list[tuple[int, int, Path]]]:
    """Split tiles into groups that touch (8-connected), so sparse tiles make small mosaics."""
    xs = np.array([t[0] for t in tiles])
    ys = np.array([t[1] for t in tiles])
    grid = np.zeros((ys.max() - ys.min() + 1, xs.max() - xs.min() + 1), bool)
    grid[ys - ys.min(), xs - xs.min()] = True
    labels, count = ndimage.label(grid, structure=np.ones((3, 3), bool))
    ids = labels[ys - ys.min(), xs - xs.min()]
    return [[t for t, i in zip(tiles, ids, strict=True) if i == k] for k in range(1, count + 1)]


def _mosaic_sample(
    tiles: list[tuple[int, int, Path]],
    zoom: int,
    polygons_3857: gpd.GeoDataFrame,
    *,
    name: str,
    source: str,
    group: str,
) -> LabeledImage:
    image, valid, transform = mosaic_tiles(tiles, zoom)
    height, width = valid.shape
    left, top = transform.c, transform.f
    bounds = box(left, top + transform.e * height, left + transform.a * width, top)
    inside = polygons_3857[polygons_3857.intersects(bounds)]
    label = burn_polygons(list(inside.geometry), transform, (height, width))
    label[~valid] = IGNORE
    return LabeledImage(
        name=name,
        source=source,
        group=group,
        image=image,
        label=label,
        gsd_m=ground_pixel_size_m(3857, transform, width, height),
        crs="EPSG:3857",
        transform=transform,
        n_polygons=len(inside),
        extra={"zoom": zoom, "tiles": len(tiles)},
    )


def read_fair_ramp(root: Path, zooms: tuple[int, ...] | None = None) -> Iterator[LabeledImage]:
    """Yield one stitched image per (area, zoom) of ``root/fair_ramp/area*``.

    Args:
        root: the data folder holding ``fair_ramp/``.
        zooms: keep only these zoom levels (all when None).
    """
    base = require_dir(root / "fair_ramp", "fair_ramp")
    for area in subfolders(base, "area folders"):
        labels = area / "labels.geojson"
        if not labels.is_file():
            raise SitewatchError(f"{labels}: label file missing")
        polygons = read_footprints(labels).to_crs(3857)
        by_zoom: dict[int, list[tuple[int, int, Path]]] = defaultdict(list)
        for path in sorted(area.glob("OAM-*.png")):
            x, y, z = parse_tile_name(path)
            by_zoom[z].append((x, y, path))
        for zoom in sorted(by_zoom):
            if zooms is not None and zoom not in zooms:
                continue
            for index, cluster in enumerate(tile_clusters(by_zoom[zoom])):
                yield _mosaic_sample(
                    cluster,
                    zoom,
                    polygons,
                    name=f"{area.name}_z{zoom}_{index}",
                    source="fair_ramp",
                    group=f"fair_ramp/{area.name}",
                )


def read_fair_banepa(root: Path) -> Iterator[LabeledImage]:
    """Yield the stitched Banepa mosaic of ``root/fair_banepa/oam`` with its OSM labels."""
    base = require_dir(root / "fair_banepa", "fair_banepa")
    label_files = sorted((base / "osm").glob("*.geojson"))
    if len(label_files) != 1:
        raise SitewatchError(f"{base / 'osm'}: expected one GeoJSON label file")
    polygons = read_footprints(label_files[0]).to_crs(3857)
    by_zoom: dict[int, list[tuple[int, int, Path]]] = defaultdict(list)
    for path in sorted(require_dir(base / "oam", "fair_banepa/oam").glob("OAM-*.tif")):
        x, y, z = parse_tile_name(path)
        by_zoom[z].append((x, y, path))
    if not by_zoom:
        raise SitewatchError(f"{base / 'oam'}: no OAM-<x>-<y>-<z>.tif tiles")
    for zoom, tiles in sorted(by_zoom.items()):
        for index, cluster in enumerate(tile_clusters(tiles)):
            yield _mosaic_sample(
                cluster, zoom, polygons, name=f"banepa_z{zoom}_{index}", source="fair_banepa",
                group="fair_banepa/banepa",
            )
