"""Readers for the full public building datasets in their official folder layouts.

Each reader takes the dataset's own folder (as downloaded and unpacked) and yields
:class:`~sitewatch.data.common.LabeledImage`; ``data.datasets`` maps a layout name to that
folder. Groups keep the same ground together, so ``val_groups`` splits by area:

========================  ==========================================================  ==========================
layout                    files                                                       group
========================  ==========================================================  ==========================
``spacenet2``             ``AOI_*_Train/{RGB-PanSharpen|PS-RGB}/*img<N>.tif`` with    ``spacenet2/<AOI>/<cell>``
                          ``geojson/buildings/*img<N>.geojson`` (or ``geojson_buildings``)
``spacenet4``             ``<City>_nadir<A>_catid_<id>/Pan-Sharpen/*_<x>_<y>.tif``     ``spacenet4/<x>_<y>``
                          with ``geojson/spacenet-buildings/*_<x>_<y>.geojson``
``spacenet7``             ``train/<AOI>/images/<month>.tif`` with                     ``spacenet7/<AOI>``
                          ``labels/<month>_Buildings.geojson``, ``UDM_masks/<month>_UDM.tif``
``inria``                 ``AerialImageDataset/train/{images,gt}/<city><N>.tif``      ``inria/<city><N>``
``whu``                   ``{train,val,test}/{image,label}/*.tif``                     ``whu/<split>``
``massachusetts``         ``tiff/{train,val,test}/*.tiff`` with ``<split>_labels/*.tif``  ``massachusetts/<split>``
``xbd``                   ``{train,tier3,hold,test}/{images,labels}/*_pre_disaster.*``  ``xbd/<split>/<disaster>``
========================  ==========================================================  ==========================

``<cell>`` is the 0.01° cell (about 1 km) of a SpaceNet 2 tile's centre: neighbouring 200 m
tiles share a group. A SpaceNet 4 tile is one group across all its 27 looks (the same ground);
a SpaceNet 7 area is one group across its 24 months. Pixel sizes are measured from each file's
georeferencing; WHU and Massachusetts tiles carry none and get their published size (0.3 m, 1 m).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from pyproj import Transformer
from rasterio.enums import ColorInterp

from sitewatch.data.common import (
    IGNORE,
    LabeledImage,
    ensure_same_size,
    paired,
    read_binary_mask,
    require_dir,
)
from sitewatch.data.geodata import GeoRaster, footprints_on, label_raster, read_footprints, read_georaster
from sitewatch.data.marked import read_marked
from sitewatch.data.xbd import read_xbd_layout
from sitewatch.errors import SitewatchError
from sitewatch.radiometry import read_rgb8
from sitewatch.raster import ground_pixel_size_m, is_georeferenced, open_raster

Reader = Callable[[Path], Iterator[LabeledImage]]

#: Published ground sample distance (m) of layouts whose tiles carry no georeferencing.
NOMINAL_GSD_M = {"inria": 0.3, "whu": 0.3, "massachusetts": 1.0}
SPACENET_CELL_DEG = 0.01
#: SpaceNet 4 Pan-Sharpen tiles are blue, green, red, near-infrared.
SPACENET4_RGB = [3, 2, 1]


def _one(paths: list[Path], what: str, near: Path) -> Path:
    if not paths:
        raise SitewatchError(f"{near}: no {what}")
    return paths[0]


def _labelled_geotiff(raster: GeoRaster, label_file: Path | None, *, name: str, source: str, group: str,
                      unusable: np.ndarray | None = None) -> LabeledImage:
    """A georeferenced raster labelled with the footprints of one vector file (none: no building)."""
    layers = [read_footprints(label_file)] if label_file is not None else []
    footprints = footprints_on(raster, layers)
    label = label_raster(raster, footprints)
    if unusable is not None:
        label[unusable] = IGNORE
    return LabeledImage(name=name, source=source, group=group, image=raster.image, label=label,
                        gsd_m=raster.gsd_m, crs=raster.crs.to_string(), transform=raster.transform,
                        n_polygons=len(footprints))


def centre_cell(raster: GeoRaster, degrees: float = SPACENET_CELL_DEG) -> str:
    """``<row>_<col>`` of the lon/lat cell of ``degrees`` holding the raster's centre."""
    height, width = raster.shape
    x, y = raster.transform @ (width / 2, height / 2)
    lon, lat = Transformer.from_crs(raster.crs, 4326, always_xy=True).transform(x, y)
    return f"{math.floor(lat / degrees)}_{math.floor(lon / degrees)}"


# --- SpaceNet -----------------------------------------------------------------------------------

SN2_ID = re.compile(r"(AOI_\d+_[A-Za-z]+).*_(img\d+)$")


def read_spacenet2(folder: Path) -> Iterator[LabeledImage]:
    """SpaceNet 2 (``AOI_N_City_Train``, or a folder of them): pan-sharpened RGB + building GeoJSON."""
    folder = require_dir(Path(folder), "spacenet2")
    aois = [folder] if _sn2_image_dir(folder) else sorted(p for p in folder.iterdir() if _sn2_image_dir(p))
    if not aois:
        raise SitewatchError(f"{folder}: no SpaceNet 2 AOI folder (RGB-PanSharpen/ or PS-RGB/ inside)")
    for aoi in aois:
        labels = {SN2_ID.search(p.stem).group(2): p for p in _sn2_label_dir(aoi).glob("*.geojson")
                  if SN2_ID.search(p.stem)}
        for image_path in sorted(_sn2_image_dir(aoi).glob("*.tif")):
            match = SN2_ID.search(image_path.stem)
            if not match:
                raise SitewatchError(f"{image_path}: name has no AOI_<n>_<city>..._img<N>")
            if match.group(2) not in labels:
                raise SitewatchError(f"{image_path}: no building GeoJSON for {match.group(2)}")
            raster = read_georaster(image_path)
            yield _labelled_geotiff(raster, labels[match.group(2)], name=f"{match.group(1)}_{match.group(2)}",
                                    source="spacenet2", group=f"spacenet2/{match.group(1)}/{centre_cell(raster)}")


def _sn2_image_dir(aoi: Path) -> Path | None:
    return next((aoi / name for name in ("RGB-PanSharpen", "PS-RGB") if (aoi / name).is_dir()), None)


def _sn2_label_dir(aoi: Path) -> Path:
    return _one([d for d in (aoi / "geojson" / "buildings", aoi / "geojson_buildings") if d.is_dir()],
                "geojson/buildings/ label folder", aoi)


SN4_TILE = re.compile(r"_(\d+_\d+)$")
SN4_LOOK = re.compile(r"nadir(\d+)_catid_([0-9A-Fa-f]+)")


def read_spacenet4(folder: Path) -> Iterator[LabeledImage]:
    """SpaceNet 4 (off-nadir Atlanta): every look's Pan-Sharpen tiles with the shared tile GeoJSON."""
    folder = require_dir(Path(folder), "spacenet4")
    label_dir = _one([d for d in (folder / "geojson" / "spacenet-buildings", folder / "geojson_buildings")
                      if d.is_dir()], "geojson/spacenet-buildings/ label folder", folder)
    labels = {SN4_TILE.search(p.stem).group(1): p for p in label_dir.glob("*.geojson") if SN4_TILE.search(p.stem)}
    looks = sorted(p for p in folder.iterdir() if (p / "Pan-Sharpen").is_dir())
    if not looks:
        raise SitewatchError(f"{folder}: no <City>_nadir<N>_catid_<id>/Pan-Sharpen folders")
    for look in looks:
        angle = SN4_LOOK.search(look.name)
        for image_path in sorted((look / "Pan-Sharpen").glob("*.tif")):
            tile = SN4_TILE.search(image_path.stem)
            if not tile or tile.group(1) not in labels:
                raise SitewatchError(f"{image_path}: no spacenet-buildings GeoJSON for its tile")
            raster = read_georaster(image_path, _spacenet4_bands(image_path))
            sample = _labelled_geotiff(raster, labels[tile.group(1)], name=f"{look.name}_{tile.group(1)}",
                                       source="spacenet4", group=f"spacenet4/{tile.group(1)}")
            sample.extra["nadir_deg"] = int(angle.group(1)) if angle else None
            yield sample


def _spacenet4_bands(path: Path) -> list[int] | None:
    """Colour interpretation when the file has one, else SpaceNet 4's blue-green-red-NIR order."""
    with open_raster(path) as dataset:
        if ColorInterp.red in dataset.colorinterp or dataset.count < 3:
            return None
    return SPACENET4_RGB


def read_spacenet7(folder: Path) -> Iterator[LabeledImage]:
    """SpaceNet 7 (``train/<AOI>/``): monthly Planet mosaics with that month's buildings.

    Unusable pixels (the ``UDM_masks`` raster, non-zero = cloud or no data) are unlabelled.
    """
    folder = require_dir(Path(folder), "spacenet7")
    base = folder / "train" if (folder / "train").is_dir() else folder
    aois = [base] if (base / "images").is_dir() else sorted(p for p in base.iterdir() if (p / "images").is_dir())
    if not aois:
        raise SitewatchError(f"{folder}: no SpaceNet 7 area folder (images/ and labels/ inside)")
    for aoi in aois:
        for image_path in sorted((aoi / "images").glob("*.tif")):
            label_path = aoi / "labels" / f"{image_path.stem}_Buildings.geojson"
            if not label_path.is_file():
                raise SitewatchError(f"{image_path}: label {label_path} missing")
            raster = read_georaster(image_path)
            yield _labelled_geotiff(raster, label_path, name=image_path.stem, source="spacenet7",
                                    group=f"spacenet7/{aoi.name}", unusable=_udm(aoi, image_path, raster.shape))


def _udm(aoi: Path, image_path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    path = aoi / "UDM_masks" / f"{image_path.stem}_UDM.tif"
    if not path.is_file():
        return None
    with open_raster(path) as dataset:
        values = dataset.read(1)
    if values.shape != shape:
        raise SitewatchError(f"{path}: mask is {values.shape[1]}×{values.shape[0]}, its image {shape[1]}×{shape[0]}")
    return values != 0


# --- image + mask raster layouts -----------------------------------------------------------------

def _mask_pair(image_path: Path, mask_path: Path, *, source: str, group: str,
               invalid_white: bool = False) -> LabeledImage:
    """An image (any raster; georeferenced or not) with its 0/255 mask file."""
    with open_raster(image_path) as dataset:
        image, valid = read_rgb8(dataset)
        georeferenced = is_georeferenced(dataset)
        gsd = (ground_pixel_size_m(dataset.crs, dataset.transform, dataset.width, dataset.height)
               if georeferenced else NOMINAL_GSD_M[source])
        crs, transform = (dataset.crs.to_string(), dataset.transform) if georeferenced else (None, None)
    label = read_binary_mask(mask_path)
    ensure_same_size(image, label, image_path, mask_path)
    if invalid_white:  # Massachusetts: white where the aerial survey has no imagery
        valid &= ~np.all(image == 255, axis=-1)
    label[~valid] = IGNORE
    return LabeledImage(name=image_path.stem, source=source, group=group, image=image, label=label,
                        gsd_m=gsd, gsd_estimated=not georeferenced, crs=crs, transform=transform)


def read_inria(folder: Path) -> Iterator[LabeledImage]:
    """Inria Aerial Image Labeling (``AerialImageDataset``): ``train/images`` with ``train/gt``.

    The test split has no ground truth and is not read.
    """
    folder = require_dir(Path(folder), "inria")
    train = folder / "train" if (folder / "train").is_dir() else folder
    pairs = paired(require_dir(train / "images", "inria train/images"), require_dir(train / "gt", "inria train/gt"))
    if not pairs:
        raise SitewatchError(f"{train / 'images'}: no images")
    for image_path, mask_path in pairs:
        yield _mask_pair(image_path, mask_path, source="inria", group=f"inria/{image_path.stem}")


def _split_folders(base: Path, image_name: str, label_name: Callable[[str], str]) -> list[tuple[str, Path, Path]]:
    """``(split, image folder, label folder)`` for every official split present under ``base``."""
    found = []
    for split in ("train", "val", "valid", "validation", "test"):
        images, labels = base / image_name.format(split=split), base / label_name(split)
        if images.is_dir() and labels.is_dir():
            found.append((split, images, labels))
    if not found:
        raise SitewatchError(f"{base}: no split folders in the official layout")
    return found


def read_whu(folder: Path) -> Iterator[LabeledImage]:
    """WHU building dataset (aerial, 0.3 m): ``{train,val,test}/image`` with ``.../label``."""
    base = require_dir(Path(folder), "whu")
    for split, images, labels in _split_folders(base, "{split}/image", lambda s: f"{s}/label"):
        for image_path, mask_path in paired(images, labels):
            yield _mask_pair(image_path, mask_path, source="whu", group=f"whu/{split}")


def read_massachusetts(folder: Path) -> Iterator[LabeledImage]:
    """Massachusetts Buildings (1 m): ``tiff/{train,val,test}`` with ``tiff/<split>_labels``."""
    base = require_dir(Path(folder), "massachusetts")
    base = base / "tiff" if (base / "tiff").is_dir() else base
    for split, images, labels in _split_folders(base, "{split}", lambda s: f"{s}_labels"):
        for image_path, mask_path in paired(images, labels):
            yield _mask_pair(image_path, mask_path, source="massachusetts", group=f"massachusetts/{split}",
                             invalid_white=True)


#: Every official layout sitewatch reads: name → reader of the dataset's folder.
LAYOUTS: dict[str, Reader] = {
    "spacenet2": read_spacenet2,
    "spacenet4": read_spacenet4,
    "spacenet7": read_spacenet7,
    "inria": read_inria,
    "whu": read_whu,
    "massachusetts": read_massachusetts,
    "xbd": read_xbd_layout,
    "marked": read_marked,
}


def read_layout(name: str, folder: Path) -> Iterator[LabeledImage]:
    """Yield the labelled images of dataset ``folder`` read in official layout ``name``."""
    if name not in LAYOUTS:
        raise SitewatchError(f"unknown dataset layout '{name}' (known: {', '.join(LAYOUTS)})")
    if not Path(folder).is_dir():
        raise SitewatchError(f"{folder}: folder of dataset '{name}' not found")
    return LAYOUTS[name](Path(folder))
