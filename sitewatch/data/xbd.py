"""Readers for xBD-layout disaster pairs (pre-disaster images only are used as training data).

* mask layout (``xbd/xbd`` Harvey, ``xbd/idabd`` Ida-BD): ``images/<id>_pre_disaster.png`` with
  ``masks/<id>_pre_disaster.png`` (0/255 buildings). No georeferencing: nominal pixel size.
* original xBD JSON layout (``xbd/joplin``): ``images/<id>_pre_disaster.png`` with
  ``labels/<id>_pre_disaster.json``; building polygons as pixel WKT (``features.xy``) and as
  lon/lat WKT (``features.lng_lat``). The pixel size is measured by comparing the two: ground
  area (WGS84 geodesic) over pixel area of the same buildings.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

from affine import Affine
from pyproj import Geod
from shapely import wkt
from shapely.errors import ShapelyError
from shapely.geometry.base import BaseGeometry

from sitewatch.data.common import (
    LabeledImage,
    burn_polygons,
    ensure_same_size,
    read_binary_mask,
    read_rgb,
    require_dir,
)
from sitewatch.errors import SitewatchError

NOMINAL_GSD_M = {"xbd": 0.6, "idabd": 0.5}
_GEOD = Geod(ellps="WGS84")


def _read_mask_layout(folder: Path, source: str, group_of: callable) -> Iterator[LabeledImage]:
    images = sorted(require_dir(folder / "images", f"{source}/images").glob("*_pre_disaster.png"))
    if not images:
        raise SitewatchError(f"{folder / 'images'}: no *_pre_disaster.png images")
    for image_path in images:
        mask_path = folder / "masks" / image_path.name
        if not mask_path.is_file():
            raise SitewatchError(f"{image_path}: mask {mask_path} missing")
        image = read_rgb(image_path)
        label = read_binary_mask(mask_path)
        ensure_same_size(image, label, image_path, mask_path)
        stem = image_path.stem.removesuffix("_pre_disaster")
        yield LabeledImage(
            name=stem, source=source, group=group_of(stem), image=image, label=label,
            gsd_m=NOMINAL_GSD_M[source], gsd_estimated=True,
        )


def read_xbd(root: Path) -> Iterator[LabeledImage]:
    """Yield Harvey pre-disaster images of ``root/xbd/xbd``; each image is its own group."""
    return _read_mask_layout(require_dir(root / "xbd" / "xbd", "xbd/xbd"), "xbd",
                             lambda stem: f"xbd/{stem}")


def read_idabd(root: Path) -> Iterator[LabeledImage]:
    """Yield Ida-BD pre-disaster images of ``root/xbd/idabd``; one group per AOI (tiles touch)."""
    return _read_mask_layout(require_dir(root / "xbd" / "idabd", "xbd/idabd"), "idabd",
                             lambda stem: f"idabd/{stem.split('-')[0]}")


def read_xbd_json(path: Path) -> tuple[list[BaseGeometry], list[BaseGeometry], dict]:
    """Read an xBD label JSON: ``(pixel polygons, lon/lat polygons, metadata)``."""
    try:
        document = json.loads(path.read_text())
        features = document["features"]
        pixel = [wkt.loads(f["wkt"]) for f in features["xy"]]
        lonlat = [wkt.loads(f["wkt"]) for f in features["lng_lat"]]
    except (OSError, ValueError, KeyError, TypeError, ShapelyError) as error:
        raise SitewatchError(f"{path}: not an xBD label file ({error})") from None
    return pixel, lonlat, document.get("metadata", {})


def gsd_from_polygon_pairs(pixel: list[BaseGeometry], lonlat: list[BaseGeometry]) -> float | None:
    """Metres per pixel from the same buildings in pixel and lon/lat coordinates."""
    pixel_area = sum(p.area for p in pixel)
    ground_area = sum(abs(_GEOD.geometry_area_perimeter(g)[0]) for g in lonlat)
    if pixel_area <= 0 or ground_area <= 0:
        return None
    return math.sqrt(ground_area / pixel_area)


def xbd_json_sample(image_path: Path, label_path: Path, *, source: str, group: str) -> LabeledImage:
    """One xBD image with its label JSON's pixel polygons rasterized.

    The pixel size is measured from the same buildings in pixel and lon/lat WKT (the JSON's
    ``gsd`` only when the image has no building).
    """
    pixel, lonlat, metadata = read_xbd_json(label_path)
    image = read_rgb(image_path)
    width, height = metadata.get("width"), metadata.get("height")
    if (width, height) != (None, None) and (width, height) != image.shape[1::-1]:
        raise SitewatchError(
            f"{image_path}: image is {image.shape[1]}×{image.shape[0]} but its label "
            f"file says {width}×{height}"
        )
    label = burn_polygons(pixel, Affine.identity(), image.shape[:2])
    measured = gsd_from_polygon_pairs(pixel, lonlat)
    gsd = measured if measured is not None else float(metadata.get("gsd", 0.5))
    return LabeledImage(
        name=image_path.stem.removesuffix("_pre_disaster"), source=source, group=group, image=image,
        label=label, gsd_m=gsd, gsd_estimated=measured is None, n_polygons=len(pixel),
        extra={"capture_date": metadata.get("capture_date")},
    )


def _pre_disaster_pairs(folder: Path) -> Iterator[tuple[Path, Path]]:
    """``(image, label JSON)`` of every pre-disaster image in ``folder/images``."""
    images = sorted(p for p in require_dir(folder / "images", f"{folder.name}/images").iterdir()
                    if p.stem.endswith("_pre_disaster") and p.suffix.lower() in {".png", ".tif", ".tiff"})
    if not images:
        raise SitewatchError(f"{folder / 'images'}: no *_pre_disaster images")
    for image_path in images:
        label_path = folder / "labels" / f"{image_path.stem}.json"
        if not label_path.is_file():
            raise SitewatchError(f"{image_path}: label {label_path} missing")
        yield image_path, label_path


def read_joplin(root: Path) -> Iterator[LabeledImage]:
    """Yield ``root/xbd/joplin`` pre-disaster images with their JSON polygons rasterized."""
    folder = require_dir(root / "xbd" / "joplin", "xbd/joplin")
    for image_path, label_path in _pre_disaster_pairs(folder):
        yield xbd_json_sample(image_path, label_path, source="joplin", group="joplin/joplin")


XBD_SPLITS = ("train", "tier1", "tier3", "hold", "test")


def read_xbd_layout(folder: Path) -> Iterator[LabeledImage]:
    """The full xBD dataset in its official layout: ``<split>/{images,labels}`` (or one split).

    Pre-disaster images only; group ``xbd/<split>/<disaster>`` (tiles of one disaster touch).
    """
    folder = require_dir(Path(folder), "xbd")
    splits = [folder] if (folder / "images").is_dir() else [folder / s for s in XBD_SPLITS if (folder / s).is_dir()]
    if not splits:
        raise SitewatchError(f"{folder}: no xBD split folder ({', '.join(XBD_SPLITS)}) with images/ and labels/")
    for split in splits:
        for image_path, label_path in _pre_disaster_pairs(split):
            disaster = image_path.stem.rsplit("_", 3)[0]
            yield xbd_json_sample(image_path, label_path, source="xbd",
                                  group=f"xbd/{split.name}/{disaster}")
