"""What every reader returns, and the small helpers the readers share."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from PIL import Image, UnidentifiedImageError
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.features import rasterize
from shapely.geometry.base import BaseGeometry

from sitewatch.errors import SitewatchError
from sitewatch.raster import resample_image

#: Label value for pixels that carry no label (outside the image, unlabelled class, nodata).
IGNORE = 255

#: Web-Mercator half circumference (m): the x/y extent of zoom-0 tile is 2 × this.
WEB_MERCATOR_HALF = 20037508.342789244


@dataclass
class LabeledImage:
    """One image with its building label, as read from a public dataset.

    Attributes:
        name: file stem or tile name, unique within the source.
        source: dataset name (``fair_ramp``, ``xbd``, ...).
        group: the spatial unit used for train/validation splits (``source/area``); images
            of one group may overlap or touch, images of different groups do not.
        image: ``H×W×3`` uint8 RGB.
        label: ``H×W`` uint8, 1 = building, 0 = background, 255 = no label.
        gsd_m: ground pixel size in metres.
        gsd_estimated: True where ``gsd_m`` is the dataset's nominal figure, not measured.
        crs, transform: georeferencing where the source has it.
        n_polygons: label polygons burned into this image, for polygon sources.
    """

    name: str
    source: str
    group: str
    image: np.ndarray
    label: np.ndarray
    gsd_m: float
    gsd_estimated: bool = False
    crs: str | None = None
    transform: Affine | None = None
    n_polygons: int | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise SitewatchError(f"{self.source}/{self.name}: image must be H×W×3 uint8")
        if self.image.shape[:2] != self.label.shape:
            raise SitewatchError(
                f"{self.source}/{self.name}: image size {self.image.shape[1]}×{self.image.shape[0]}"
                f" does not match label size {self.label.shape[1]}×{self.label.shape[0]}"
            )

    @property
    def building_share(self) -> float:
        """Share of labelled pixels that are building (0-1)."""
        valid = self.label != IGNORE
        return float((self.label[valid] == 1).mean()) if valid.any() else 0.0


def resample_label(label: np.ndarray, scale: float) -> np.ndarray:
    """Resize a 0/1 label with :data:`IGNORE` pixels by ``scale``.

    The building share of each output pixel is averaged over valid input pixels and thresholded
    at 0.5; an output pixel is ignored when more than half of what it covers was ignored.
    """
    if abs(scale - 1.0) < 1e-6:
        return label
    valid = (label != IGNORE).astype(np.float32)
    building = (label == 1).astype(np.float32)
    valid_r = resample_image(valid, scale)
    building_r = resample_image(building, scale)
    out = np.zeros(valid_r.shape, np.uint8)
    share = np.divide(building_r, valid_r, out=np.zeros_like(building_r), where=valid_r > 0)
    out[share >= 0.5] = 1
    out[valid_r < 0.5] = IGNORE
    return out


def read_picture(path: Path) -> np.ndarray:
    """Read a PNG/JPEG/TIFF into an ``H×W×C`` uint8 array (C = 1, 3 or 4)."""
    try:
        if path.suffix.lower() in {".tif", ".tiff"}:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(path) as dataset:
                    array = np.moveaxis(dataset.read(), 0, -1)
        else:
            with Image.open(path) as picture:
                picture.load()
                if picture.mode not in {"L", "RGB", "RGBA"}:
                    picture = picture.convert("RGB")
                array = np.asarray(picture)
    except (OSError, UnidentifiedImageError, RasterioIOError) as error:
        raise SitewatchError(f"{path}: cannot read image ({error})") from None
    if array.ndim == 2:
        array = array[..., None]
    if array.dtype != np.uint8:
        raise SitewatchError(f"{path}: expected 8-bit pixels, found {array.dtype}")
    return array


def read_rgb(path: Path) -> np.ndarray:
    """Read an image as ``H×W×3`` uint8 RGB (alpha dropped, grey repeated)."""
    array = read_picture(path)
    if array.shape[2] == 1:
        return np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array[..., :3])


def read_binary_mask(path: Path) -> np.ndarray:
    """Read a 0/255 (or 0/1) building mask, single- or multi-channel, as 0/1 uint8.

    A 0/1 mask that also holds 255 (an ignore border, the segmentation convention) keeps 255 as
    :data:`IGNORE` rather than turning every 1 into background (issue 33).
    """
    array = read_picture(path)[..., 0]
    values = np.unique(array)
    if set(values.tolist()) == {0, 1, IGNORE} or set(values.tolist()) == {1, IGNORE}:
        return array.copy()
    # JPEG-like noise around 0/255 is tolerated; a real multi-class mask is not.
    noisy = values.size > 2 and not np.all(np.isin(values, [0, 1, 255]))
    if noisy and np.mean((array > 30) & (array < 225)) > 0.01:
        raise SitewatchError(f"{path}: not a binary mask (values {values[:6].tolist()}...)")
    return (array > 127).astype(np.uint8) if values.max() > 1 else array.astype(np.uint8)


def burn_polygons(
    geometries: list[BaseGeometry], transform: Affine, shape: tuple[int, int]
) -> np.ndarray:
    """Rasterize polygons (in the transform's CRS) to a 0/1 uint8 mask of ``shape``.

    A pixel is building when its centre falls inside a polygon (rasterio's default rule).
    """
    shapes = [(geometry, 1) for geometry in geometries if not geometry.is_empty]
    if not shapes:
        return np.zeros(shape, np.uint8)
    return rasterize(shapes, out_shape=shape, transform=transform, fill=0, dtype="uint8")


def slippy_tile_bounds_3857(x: int, y: int, zoom: int) -> tuple[float, float, float, float]:
    """Web-Mercator bounds (left, bottom, right, top) in metres of XYZ tile ``x/y/zoom``."""
    size = 2 * WEB_MERCATOR_HALF / 2**zoom
    left = -WEB_MERCATOR_HALF + x * size
    top = WEB_MERCATOR_HALF - y * size
    return left, top - size, left + size, top


def slippy_tile_latitude(y: float, zoom: int) -> float:
    """Latitude in degrees of the (fractional) tile row ``y`` at ``zoom``."""
    n = math.pi - 2 * math.pi * y / 2**zoom
    return math.degrees(math.atan(math.sinh(n)))


def require_dir(path: Path, what: str) -> Path:
    """Return ``path`` if it is a directory, else raise a one-line error naming it."""
    if not path.is_dir():
        raise SitewatchError(f"{path}: {what} folder not found")
    return path


def ensure_same_size(image: np.ndarray, label: np.ndarray, image_path: Path, label_path: Path) -> None:
    """A one-line error naming both files when an image and its label differ in size."""
    if image.shape[:2] != label.shape[:2]:
        raise SitewatchError(
            f"{image_path}: image is {image.shape[1]}×{image.shape[0]} but its label {label_path.name} "
            f"is {label.shape[1]}×{label.shape[0]}"
        )


def subfolders(base: Path, what: str) -> list[Path]:
    """The sub-folders of ``base``, sorted; an error naming ``what`` is expected if none."""
    folders = sorted(p for p in base.iterdir() if p.is_dir())
    if not folders:
        raise SitewatchError(f"{base}: no {what}")
    return folders


def paired(image_dir: Path, label_dir: Path, pattern: str = "*") -> list[tuple[Path, Path]]:
    """Files in ``image_dir`` paired with the same-stem file in ``label_dir`` (any suffix)."""
    labels = {p.stem: p for p in label_dir.glob(pattern) if p.is_file()}
    pairs = []
    for image in sorted(p for p in image_dir.glob(pattern) if p.is_file()):
        if image.stem not in labels:
            raise SitewatchError(f"{image}: no label file with the same name in {label_dir}")
        pairs.append((image, labels[image.stem]))
    return pairs


__all__ = [
    "IGNORE",
    "LabeledImage",
    "burn_polygons",
    "ensure_same_size",
    "paired",
    "read_binary_mask",
    "read_picture",
    "read_rgb",
    "require_dir",
    "slippy_tile_bounds_3857",
    "slippy_tile_latitude",
    "subfolders",
]
