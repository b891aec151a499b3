"""Raster helpers: opening user rasters, ground pixel size, resampling, COG writing.

Pixel sizes are *ground* metres per pixel, measured geodesically (WGS84 ellipsoid) at the
raster centre, so a Web-Mercator (EPSG:3857) or geographic (EPSG:4326) raster gets its true
size on the ground, not its nominal CRS unit.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from pyproj import CRS, Geod, Transformer
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from sitewatch.errors import SitewatchError

_GEOD = Geod(ellps="WGS84")

def ground_pixel_sizes_m(crs: CRS | str | int, transform: Affine, width: int, height: int,
                         name: str = "raster") -> tuple[float, float]:
    """Ground size of one pixel along x and y in metres, measured at the raster centre.

    Geodesic distances on the WGS84 ellipsoid, so any CRS works (projected, geographic, 3857):
    a geographic raster's x and y sizes differ by cos(latitude).

    Args:
        crs: the raster's coordinate reference system.
        transform: pixel → CRS affine transform.
        width, height: raster size in pixels.
        name: what to call the raster in error messages.
    """
    crs = CRS.from_user_input(crs)
    to_lonlat = Transformer.from_crs(crs, CRS.from_epsg(4326), always_xy=True)
    col, row = width / 2.0, height / 2.0
    points = [transform @ (col, row), transform @ (col + 1, row), transform @ (col, row + 1)]
    lon, lat = to_lonlat.transform([p[0] for p in points], [p[1] for p in points])
    if not (np.all(np.isfinite(lon)) and np.all(np.isfinite(lat))):
        raise SitewatchError(f"{name}: cannot place the raster centre on the globe in CRS {crs.to_string()}")
    dx = _GEOD.inv(lon[0], lat[0], lon[1], lat[1])[2]
    dy = _GEOD.inv(lon[0], lat[0], lon[2], lat[2])[2]
    if dx <= 0 or dy <= 0:
        raise SitewatchError(f"{name}: degenerate geotransform, a pixel has zero size on the ground")
    return float(dx), float(dy)


def ground_pixel_size_m(crs: CRS | str | int, transform: Affine, width: int, height: int) -> float:
    """Mean ground size of one pixel in metres: the geometric mean of its x and y extents."""
    dx, dy = ground_pixel_sizes_m(crs, transform, width, height)
    return float(np.sqrt(dx * dy))


def resample_image(image: np.ndarray, scale: float) -> np.ndarray:
    """Resize an ``H×W[×C]`` image by ``scale`` (new = round(old × scale)).

    Downsampling averages (area interpolation), upsampling is bilinear.
    """
    if abs(scale - 1.0) < 1e-6:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out = cv2.resize(image, size, interpolation=interpolation)
    if image.ndim == 3 and out.ndim == 2:
        out = out[..., None]
    return out


# --- reading rasters given by users ------------------------------------------------------------

def open_raster(path: str | os.PathLike[str]) -> rasterio.DatasetReader:
    """Open a raster for reading; a one-line error for a missing, empty or unreadable file."""
    path = Path(path)
    if path.is_dir():
        raise SitewatchError(f"{path}: is a directory, not a raster file")
    if not path.exists():
        raise SitewatchError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise SitewatchError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            dataset = rasterio.open(path)
    except RasterioIOError as error:
        raise SitewatchError(f"{path}: not a readable raster ({_first_line(error)})") from None
    if dataset.width < 1 or dataset.height < 1 or dataset.count < 1:
        dataset.close()
        raise SitewatchError(f"{path}: raster has no pixels")
    return dataset


def check_pixels_readable(path: str | os.PathLike[str]) -> None:
    """Refuse a raster whose pixels cannot be read, cheaply, before any slow work.

    Reads the first and the last pixel row of every band: a file cut off in transfer (its header
    opens, its pixels end early) fails here, naming the file, instead of after a model has loaded.
    """
    with open_raster(path) as dataset:
        try:
            for row in (0, dataset.height - 1):
                dataset.read(window=Window(0, row, dataset.width, 1))
        except RasterioIOError as error:
            raise SitewatchError(f"{path}: read failed, file corrupt or truncated ({_first_line(error)})") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def is_georeferenced(dataset: rasterio.DatasetReader) -> bool:
    """True if the raster has a CRS and a non-identity geotransform."""
    return dataset.crs is not None and dataset.transform != Affine.identity()


def no_grid_reason(dataset: rasterio.DatasetReader) -> str:
    """Why a raster has no map grid: ground control points only (it needs warping), or nothing at all."""
    points, _ = dataset.gcps
    if points:
        return (f"raster is georeferenced by {len(points)} ground control points, not on a map grid; "
                "warp it first (gdalwarp in.tif warped.tif)")
    return "raster has no georeferencing"


def pixel_size_xy_m(dataset: rasterio.DatasetReader, gsd_m: float | None = None) -> tuple[float, float]:
    """Ground size of one pixel along x and y in metres.

    Measured geodesically at the raster centre for any CRS (a geographic raster's x and y
    differ by cos(latitude)). A raster without georeferencing needs ``gsd_m``.
    """
    if gsd_m is not None:
        if not (np.isfinite(gsd_m) and gsd_m > 0):
            raise SitewatchError(f"pixel size must be a positive number of metres, got {gsd_m}")
        return float(gsd_m), float(gsd_m)
    if not is_georeferenced(dataset):
        if dataset.gcps[0]:
            raise SitewatchError(f"{dataset.name}: {no_grid_reason(dataset)}")
        raise SitewatchError(
            f"{dataset.name}: raster has no georeferencing; give its pixel size in metres", setting="gsd"
        )
    return ground_pixel_sizes_m(dataset.crs, dataset.transform, dataset.width, dataset.height, dataset.name)


def overview_shape(dataset: rasterio.DatasetReader, longest: int) -> tuple[int, int]:
    """(height, width) of a quick decimated read whose longest side is about ``longest`` px."""
    step = max(1, max(dataset.width, dataset.height) // longest)
    return max(1, dataset.height // step), max(1, dataset.width // step)


def write_cog(source: Path, target: Path, overview_resampling: str = "average") -> None:
    """Copy a GeoTIFF to a Cloud-Optimized GeoTIFF (deflate, 512 px blocks, overviews).

    Blocks are compressed on all CPU cores (GDAL's ``NUM_THREADS``).
    """
    rasterio.shutil.copy(
        str(source), str(target), driver="COG", compress="DEFLATE", blocksize=512,
        overview_resampling=overview_resampling, BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS",
    )
