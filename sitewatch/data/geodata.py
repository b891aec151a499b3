"""Georeferenced training pairs: a raster and building footprints from vector files, any CRS.

The building blocks of the own-data reader and of the official-layout readers (SpaceNet,
Inria): read a raster as the model sees it (bands and value stretch as at inference), read
footprint polygons with their CRS, reproject the ones that touch the raster onto its grid and
rasterize them (a pixel is building when its centre falls inside a polygon).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import shapely
from affine import Affine
from pyogrio.errors import DataSourceError
from pyproj import CRS
from rasterio.errors import RasterioIOError
from rasterio.features import geometry_mask
from rasterio.warp import transform_bounds
from shapely.geometry import box
from shapely.ops import unary_union

from sitewatch.data.common import IGNORE, burn_polygons
from sitewatch.errors import SitewatchError, SitewatchWarning
from sitewatch.radiometry import read_rgb8
from sitewatch.raster import ground_pixel_size_m, open_raster

#: Vector formats read as footprints (anything OGR reads works; these are the documented ones).
VECTOR_SUFFIXES = (".gpkg", ".geojson", ".json", ".shp", ".parquet", ".geoparquet", ".fgb")
#: Raster suffixes found in a folder of images.
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img")


@dataclass
class GeoRaster:
    """A raster read whole as the model sees it.

    Attributes:
        path: the file.
        image: ``H×W×3`` uint8 RGB (the inference value stretch applied).
        valid: ``H×W`` bool, False on nodata.
        crs: its coordinate reference system (never None: rasters without one are refused).
        transform: pixel → CRS affine transform.
        gsd_m: ground pixel size in metres (geodesic, at the raster centre).
    """

    path: Path
    image: np.ndarray
    valid: np.ndarray
    crs: CRS
    transform: Affine
    gsd_m: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.valid.shape

    @property
    def footprint(self):
        """The raster's extent as a polygon in its own CRS."""
        height, width = self.shape
        west, north = self.transform @ (0, 0)
        east, south = self.transform @ (width, height)
        return box(min(west, east), min(south, north), max(west, east), max(south, north))


def read_georaster(path: Path, bands: list[int] | None = None) -> GeoRaster:
    """Read a georeferenced raster whole; a one-line error for one without a CRS.

    Args:
        path: any GDAL raster with a CRS.
        bands: 1-based bands for red, green, blue (default: colour interpretation, else the
            first three, else a single band repeated).
    """
    try:
        with open_raster(path) as dataset:
            if dataset.crs is None:
                raise SitewatchError(f"{path}: raster has no CRS; georeference it (e.g. gdal_edit.py -a_srs)")
            if dataset.count == 2 and not bands:
                raise SitewatchError(f"{path}: 2 bands; give the bands for red, green, blue in data.bands")
            image, valid = read_rgb8(dataset, bands)
            crs, transform = CRS.from_user_input(dataset.crs), dataset.transform
            gsd = ground_pixel_size_m(crs, transform, dataset.width, dataset.height)
    except RasterioIOError as error:
        raise SitewatchError(f"{path}: cannot read raster ({error})") from None
    return GeoRaster(Path(path), image, valid, crs, transform, gsd)


def split_layer(path: str | Path) -> tuple[Path, str | None]:
    """``FILE:LAYER`` → ``(FILE, LAYER)`` for a vector file holding several layers; else ``(path, None)``."""
    text = str(path)
    if not Path(text).exists() and ":" in text:
        head, _, layer = text.rpartition(":")
        if layer and Path(head).suffix.lower() in VECTOR_SUFFIXES:
            return Path(head), layer
    return Path(text), None


def choose_layer(path: Path, layer: str | None) -> str | None:
    """The layer to read: the one named, the only one, or an error naming them all when ambiguous."""
    try:
        names = [str(name) for name in pyogrio.list_layers(path)[:, 0]]
    except (DataSourceError, OSError, ValueError) as error:
        raise SitewatchError(f"{path}: not a readable vector file ({str(error).splitlines()[0][:160]})") from None
    if layer is not None and layer not in names:
        raise SitewatchError(f"{path}: has no layer '{layer}' (its layers: {', '.join(names)})")
    if layer is None and len(names) > 1:
        raise SitewatchError(f"{path}: holds {len(names)} layers ({', '.join(names)}); name the one with "
                             f"the buildings as {path}:<layer>")
    return layer


def polygons_only(frame: gpd.GeoDataFrame, where: str) -> gpd.GeoDataFrame:
    """Building polygons of a layer, said so when some were empty, invalid (repaired) or not polygons.

    Empty and missing geometries are dropped; invalid ones (a bow-tie) are repaired with
    shapely's ``make_valid`` and their polygonal part kept; points and lines are dropped, and a
    layer whose features hold no polygon at all is refused (a layer without features is returned).
    """
    if frame.empty:
        return frame
    geometry = frame.geometry
    empty = geometry.isna() | geometry.is_empty
    kinds = geometry[~empty].geom_type
    polygonal = kinds.isin(["Polygon", "MultiPolygon"])
    if not polygonal.any():
        found = ", ".join(sorted(set(kinds))) or "no geometry"
        raise SitewatchError(f"{where}: holds no building polygons ({found})")
    notes = []
    if empty.any():
        notes.append(f"{int(empty.sum())} empty geometries ignored")
    if (~polygonal).any():
        notes.append(f"{int((~polygonal).sum())} {'/'.join(sorted(set(kinds[~polygonal])))} features ignored")
    frame = frame[~empty][polygonal.values].copy()
    invalid = ~frame.geometry.is_valid
    if invalid.any():
        repaired = shapely.make_valid(frame.geometry.values[invalid.values])
        polygons = [unary_union([part for part in shapely.get_parts(g)
                                 if part.geom_type in ("Polygon", "MultiPolygon")]) for g in repaired]
        frame.loc[invalid, frame.geometry.name] = polygons
        frame = frame[~frame.geometry.is_empty]
        notes.append(f"{int(invalid.sum())} invalid polygons repaired (make_valid)")
    if notes:
        warnings.warn(f"{where}: {'; '.join(notes)}", SitewatchWarning, stacklevel=2)
    return frame


def read_footprints(path: str | Path, keep_columns: bool = False, need_crs: bool = True) -> gpd.GeoDataFrame:
    """Building polygons of one vector file (GeoPackage, GeoJSON, Shapefile, GeoParquet, ...).

    ``FILE:LAYER`` names a layer; a file holding several layers without one is refused. Keeps
    Polygon and MultiPolygon features (see :func:`polygons_only`); a file without a CRS is
    refused (unless ``need_crs`` is False), except GeoJSON, which is EPSG:4326 by definition (RFC 7946).
    """
    path, layer = split_layer(path)
    if not path.is_file():
        raise SitewatchError(f"{path}: label file not found")
    parquet = path.suffix.lower() in {".parquet", ".geoparquet"}
    layer = None if parquet else choose_layer(path, layer)
    where = f"{path}:{layer}" if layer else str(path)
    try:
        frame = gpd.read_parquet(path) if parquet else gpd.read_file(path, layer=layer)
    except (DataSourceError, OSError, ValueError, ImportError) as error:
        raise SitewatchError(f"{path}: not a readable vector file ({str(error).splitlines()[0][:160]})") from None
    if frame.crs is None and path.suffix.lower() in {".geojson", ".json"}:
        frame = frame.set_crs(4326)
    elif frame.crs is None and need_crs:
        raise SitewatchError(f"{path}: label file has no CRS (a Shapefile needs its .prj)")
    frame = polygons_only(frame, where)
    return (frame if keep_columns else frame[["geometry"]]).reset_index(drop=True)


def footprints_on(raster: GeoRaster, layers: list[gpd.GeoDataFrame]) -> gpd.GeoSeries:
    """The footprints of ``layers`` that touch ``raster``, reprojected to its CRS and clipped."""
    parts = []
    for layer in layers:
        if layer.empty:
            continue
        bounds = transform_bounds(raster.crs, layer.crs, *raster.footprint.bounds, densify_pts=21)
        near = layer.iloc[layer.sindex.query(box(*bounds))]
        if near.empty:
            continue
        moved = near.geometry.to_crs(raster.crs).make_valid()
        parts.append(moved.clip(raster.footprint))
    if not parts:
        return gpd.GeoSeries([], crs=raster.crs)
    joined = gpd.GeoSeries(np.concatenate([p.values for p in parts]), crs=raster.crs)
    return joined[~joined.is_empty & joined.geom_type.isin(["Polygon", "MultiPolygon", "GeometryCollection"])]


def label_raster(raster: GeoRaster, footprints: gpd.GeoSeries, extent: gpd.GeoDataFrame | None = None) -> np.ndarray:
    """``H×W`` uint8 label of ``raster``: 1 building, 0 background, :data:`IGNORE` unlabelled.

    Unlabelled: nodata pixels and, when ``extent`` (polygons of the labelled area, any CRS) is
    given, every pixel whose centre falls outside it.
    """
    label = burn_polygons(list(footprints.values), raster.transform, raster.shape)
    label[~raster.valid] = IGNORE
    if extent is not None:
        inside = footprints_on(raster, [extent])
        outside = (geometry_mask(list(inside.values), raster.shape, raster.transform)
                   if len(inside) else np.ones(raster.shape, bool))
        label[outside] = IGNORE
    return label


def rasters_in(pattern: str | Path) -> list[Path]:
    """The rasters named by a folder (its raster files, sorted), a glob pattern or one file."""
    path = Path(pattern)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES)
    if path.is_file():
        return [path]
    if any(char in str(pattern) for char in "*?["):
        anchor = Path(path.anchor or ".")
        relative = str(path.relative_to(anchor)) if path.is_absolute() else str(pattern)
        return sorted(p for p in anchor.glob(relative) if p.is_file())
    raise SitewatchError(f"{pattern}: no such folder, file or glob pattern of rasters")

