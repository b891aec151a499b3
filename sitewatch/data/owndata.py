"""One's own labelled imagery: a folder (or glob) of georeferenced rasters and footprint files.

The common case of an ML engineer: GeoTIFFs of their area and building footprints from an OSM
export, a QGIS GeoPackage or SpaceNet GeoJSON, in any CRS. Footprints are reprojected onto each
raster and rasterized; ground outside an optional labelled-extent polygon is unlabelled (ignored
by the loss), not background. Validation is split by area, never by chip: either a corner block of
each raster, or whole rasters.

Groups (for ``val_groups``): ``own/<raster stem>`` for training ground, ``own/<raster stem>/val``
for validation ground, so ``own/*/val`` selects the validation split.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import geopandas as gpd
import numpy as np
from affine import Affine
from rasterio.warp import transform_bounds
from shapely.geometry import box

from sitewatch.data.common import IGNORE, LabeledImage
from sitewatch.data.geodata import (
    GeoRaster,
    footprints_on,
    label_raster,
    rasters_in,
    read_footprints,
    read_georaster,
    split_layer,
)
from sitewatch.errors import SitewatchError
from sitewatch.raster import open_raster

SOURCE = "own"
VAL_GROUPS = (f"{SOURCE}/*/val",)
ValSplit = Literal["block", "rasters"]


@dataclass(frozen=True)
class OwnData:
    """Where one's own labelled data is and how to split it.

    Attributes:
        images: folders, glob patterns or files of georeferenced rasters (any CRS, 1+ bands).
        labels: vector files of building footprints (any CRS, any OGR format or GeoParquet).
        label_extent: optional vector file of the labelled area; ground outside it is ignored.
        val_split: ``block`` (a south-east corner block of ``val_share`` of each raster's area) or
            ``rasters`` (whole rasters, evenly spaced in name order).
        val_share: share of the ground (``block``) or of the rasters (``rasters``) held out.
        bands: 1-based bands for red, green, blue (default: as at inference).
    """

    images: tuple[str, ...]
    labels: tuple[str, ...]
    label_extent: str | None = None
    val_split: ValSplit = "block"
    val_share: float = 0.2
    bands: tuple[int, ...] | None = None

    def rasters(self) -> list[Path]:
        """Every raster named by ``images``, in order; an error if there are none."""
        found = [path for pattern in self.images for path in rasters_in(pattern)]
        if not found:
            raise SitewatchError(f"no rasters found in {', '.join(self.images)}")
        stems = [p.stem for p in found]
        twice = sorted({s for s in stems if stems.count(s) > 1})
        if twice:
            raise SitewatchError(f"two rasters share the name {twice[0]}; rename one (names are the split groups)")
        return found

    def check(self) -> None:
        """Fast checks before any pixel is read: files exist, settings in range."""
        if not self.labels:
            raise SitewatchError("data.labels: give one or more footprint files for data.images")
        if self.val_split not in ("block", "rasters"):
            raise SitewatchError(f"data.val_split must be 'block' or 'rasters', got {self.val_split!r}")
        if not 0.0 < self.val_share < 1.0:
            raise SitewatchError(f"data.val_share must be between 0 and 1, got {self.val_share}")
        for path in (*self.labels, *([self.label_extent] if self.label_extent else [])):
            if not split_layer(path)[0].is_file():
                raise SitewatchError(f"{path}: label file not found")
        rasters = self.rasters()
        if self.val_split == "rasters" and len(rasters) < 2:
            raise SitewatchError("data.val_split 'rasters' needs at least two rasters; use 'block'")

    def fingerprint(self) -> str:
        """A hash of every input file's path, size and modification time (names the chip cache)."""
        labels = [*self.labels, *([self.label_extent] if self.label_extent else [])]
        paths = [*self.rasters(), *(split_layer(label)[0] for label in labels)]
        digest = hashlib.sha256()
        layers = [split_layer(label)[1] for label in labels]
        if any(layers):  # another layer of the same file is another input
            digest.update(f"layers {layers}\n".encode())
        for path in paths:
            stat = path.stat()
            digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:16]


def read_label_layers(spec: OwnData) -> tuple[list[gpd.GeoDataFrame], gpd.GeoDataFrame | None]:
    """The footprint layers and the labelled extent; an error for a file without polygons."""
    layers = []
    for path in spec.labels:
        layer = read_footprints(Path(path))
        if layer.empty:
            raise SitewatchError(f"{path}: label file holds no building polygons")
        layers.append(layer)
    extent = read_footprints(Path(spec.label_extent)) if spec.label_extent else None
    if extent is not None and extent.empty:
        raise SitewatchError(f"{spec.label_extent}: label extent holds no polygon")
    return layers, extent


def check_overlap(rasters: list[Path], layers: list[gpd.GeoDataFrame], labels: tuple[str, ...]) -> None:
    """An error when no footprint touches any raster (wrong area, or a CRS mistake)."""
    for path in rasters:
        with open_raster(path) as dataset:
            if dataset.crs is None:
                raise SitewatchError(f"{path}: raster has no CRS; georeference it (e.g. gdal_edit.py -a_srs)")
            for layer in layers:
                bounds = transform_bounds(dataset.crs, layer.crs, *dataset.bounds, densify_pts=21)
                if len(layer.sindex.query(box(*bounds))):
                    return
    raise SitewatchError(f"the footprints in {', '.join(labels)} do not overlap any of the {len(rasters)} "
                         "raster(s) on the ground (wrong area or CRS?)")


def validation_rasters(rasters: list[Path], share: float) -> set[Path]:
    """Whole rasters held out: ``round(n × share)`` (at least one), evenly spaced in order."""
    count = max(1, round(len(rasters) * share))
    return {rasters[int((i + 0.5) * len(rasters) / count)] for i in range(count)}


def split_block(raster: GeoRaster, label: np.ndarray, share: float) -> tuple[tuple, tuple]:
    """``((image, label, transform), ...)`` for the training and validation parts of a raster.

    The validation part is the south-east corner block holding ``share`` of the raster's area
    (the raster's shape scaled by √share). The training part is the whole raster with that
    block blanked (pixels 0, labels unlabelled), so no validation pixel is ever trained on.
    """
    height, width = label.shape
    rows = max(1, math.ceil(math.sqrt(share) * height))
    cols = max(1, math.ceil(math.sqrt(share) * width))
    block = (slice(height - rows, height), slice(width - cols, width))
    train_image, train_label = raster.image.copy(), label.copy()
    train_image[block] = 0
    train_label[block] = IGNORE
    offset = raster.transform @ Affine.translation(width - cols, height - rows)
    return (train_image, train_label, raster.transform), (raster.image[block], label[block], offset)


def _sample(raster: GeoRaster, part: tuple, group: str, polygons: int) -> LabeledImage:
    image, label, transform = part
    return LabeledImage(
        name=raster.path.stem + ("_val" if group.endswith("/val") else ""), source=SOURCE, group=group,
        image=np.ascontiguousarray(image), label=np.ascontiguousarray(label), gsd_m=raster.gsd_m,
        crs=raster.crs.to_string(), transform=transform, n_polygons=polygons,
    )


def read_own_data(spec: OwnData) -> Iterator[LabeledImage]:
    """Yield the labelled parts of one's own rasters, split into training and validation ground."""
    spec.check()
    rasters = spec.rasters()
    layers, extent = read_label_layers(spec)
    check_overlap(rasters, layers, spec.labels)
    held_out = validation_rasters(rasters, spec.val_share) if spec.val_split == "rasters" else set()
    for path in rasters:
        raster = read_georaster(path, list(spec.bands) if spec.bands else None)
        footprints = footprints_on(raster, layers)
        label = label_raster(raster, footprints, extent)
        if not (label != IGNORE).any():
            continue  # outside the labelled extent, or all nodata
        group = f"{SOURCE}/{path.stem}"
        if spec.val_split == "rasters":
            whole = (raster.image, label, raster.transform)
            yield _sample(raster, whole, f"{group}/val" if path in held_out else group, len(footprints))
            continue
        train, val = split_block(raster, label, spec.val_share)
        yield _sample(raster, train, group, len(footprints))
        yield _sample(raster, val, f"{group}/val", len(footprints))
