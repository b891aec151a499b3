"""Readers for georeferenced GeoTIFF pairs: image + mask raster on the same grid.

* ``open_cities/images/<id>.tif`` with ``open_cities/masks/<id>_mask.tif`` (0/255, EPSG:4326);
* ``shanghai/google_X_Y.tif`` with ``shanghai/height_X_Y.tif`` (uint16 building height in m,
  65535 = no building, EPSG:3857). A pixel is building where a height is given.

The pixel size is measured from each file's own CRS and transform (ground metres).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import RasterioIOError

from sitewatch.data.common import LabeledImage, require_dir
from sitewatch.errors import SitewatchError
from sitewatch.raster import ground_pixel_size_m

SHANGHAI_NO_BUILDING = 65535


def _read_grid(path: Path) -> tuple[np.ndarray, rasterio.Affine, object, tuple[int, int]]:
    try:
        with rasterio.open(path) as dataset:
            return dataset.read(), dataset.transform, dataset.crs, (dataset.height, dataset.width)
    except RasterioIOError as error:
        raise SitewatchError(f"{path}: cannot read raster ({error})") from None


def _georeferenced_pair(
    image_path: Path, label_path: Path, source: str, group: str, to_label: callable
) -> LabeledImage:
    pixels, transform, crs, shape = _read_grid(image_path)
    values, label_transform, label_crs, label_shape = _read_grid(label_path)
    if shape != label_shape:
        raise SitewatchError(
            f"{image_path}: image is {shape[1]}×{shape[0]} but its label {label_path.name} is "
            f"{label_shape[1]}×{label_shape[0]}"
        )
    if crs is None:
        raise SitewatchError(f"{image_path}: no CRS")
    if label_crs != crs or not np.allclose(tuple(transform), tuple(label_transform), rtol=1e-6):
        raise SitewatchError(f"{image_path}: label {label_path.name} is on a different grid")
    if pixels.dtype != np.uint8 or pixels.shape[0] < 3:
        raise SitewatchError(f"{image_path}: expected 8-bit RGB(A), got {pixels.shape[0]} bands")
    image = np.ascontiguousarray(np.moveaxis(pixels[:3], 0, -1))
    return LabeledImage(
        name=image_path.stem, source=source, group=group, image=image,
        label=to_label(values[0]), gsd_m=ground_pixel_size_m(crs, transform, shape[1], shape[0]),
        crs=crs.to_string(), transform=transform,
    )


def read_open_cities(root: Path) -> Iterator[LabeledImage]:
    """Yield Open Cities AI drone tiles with their 0/255 masks; group = scene id."""
    base = require_dir(root / "open_cities", "open_cities")
    images = sorted(require_dir(base / "images", "open_cities/images").glob("*.tif"))
    if not images:
        raise SitewatchError(f"{base / 'images'}: no GeoTIFF images")
    for image_path in images:
        mask_path = base / "masks" / f"{image_path.stem}_mask.tif"
        if not mask_path.is_file():
            raise SitewatchError(f"{image_path}: mask {mask_path} missing")
        scene = image_path.stem.split("_")[0]
        yield _georeferenced_pair(
            image_path, mask_path, "open_cities", f"open_cities/{scene}",
            lambda band: (band > 127).astype(np.uint8),
        )


def read_shanghai(root: Path) -> Iterator[LabeledImage]:
    """Yield Shanghai Google tiles with footprints from their height rasters; group = column X."""
    base = require_dir(root / "shanghai", "shanghai")
    images = sorted(base.glob("google_*.tif"))
    if not images:
        raise SitewatchError(f"{base}: no google_X_Y.tif images")
    for image_path in images:
        suffix = image_path.stem.removeprefix("google_")
        height_path = base / f"height_{suffix}.tif"
        if not height_path.is_file():
            raise SitewatchError(f"{image_path}: height raster {height_path.name} missing")
        yield _georeferenced_pair(
            image_path, height_path, "shanghai", f"shanghai/x{suffix.split('_')[0]}",
            lambda band: ((band != SHANGHAI_NO_BUILDING) & (band > 0)).astype(np.uint8),
        )
