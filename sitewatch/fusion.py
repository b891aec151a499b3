"""Multi-scale fusion: the network looks at each place at a fine and a coarse working size.

A large roof seen at the fine working size can fill a whole tile with one flat surface and no
context; the network then misses it or finds only its edges. The same place at twice the
pixel size shows the roof whole, with its surroundings, and is found. The coarse pass is worse
at small houses, which merge into blobs at that size. The fusion keeps the best of both:

* the fine pass everywhere;
* where the coarse pass finds a *large* building (a connected component of at least
  ``large_m2`` square metres above the threshold), the pixel-wise maximum of both passes, so a
  large roof missed or holed at the fine size is taken from the coarse one;
* unless the fine pass already resolves that ground into several separate buildings (at least
  ``split_share`` of the component covered by fine-pass buildings none of which is large): then it
  is a cluster of small houses the coarse pass merged, and the fine pass stands.

Both passes are probability rasters on the input's grid (``probability.tif`` encoding of
:mod:`sitewatch.products`); fusion reads and writes them strip by strip, so memory follows the
raster's width, except for the coarse pass's component labels, computed on a grid of at most
``MAX_LABEL_SIDE`` pixels a side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window
from scipy import ndimage

from sitewatch.modelfile import FusionRule
from sitewatch.products import MASK_NODATA, PROBABILITY_NODATA, PRODUCT_TAG, decode_probability, encode_probability

MAX_LABEL_SIDE = 8192
STRIP_ROWS = 1024
_EIGHT = np.ones((3, 3), bool)


@dataclass
class FusionResult:
    """What the fusion did: large coarse buildings taken and refused as merged clusters."""

    taken: int
    refused_as_clusters: int
    building_px: int
    valid_px: int


def _components(path: Path, threshold: float, pixel_area_m2: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Labels of a probability raster's buildings on a grid ≤ MAX_LABEL_SIDE, sizes (m²) and its scale."""
    with rasterio.open(path) as dataset:
        scale = min(1.0, MAX_LABEL_SIDE / max(dataset.height, dataset.width))
        shape = (max(1, round(dataset.height * scale)), max(1, round(dataset.width * scale)))
        values = dataset.read(1, out_shape=shape, resampling=Resampling.nearest, masked=True)
    building = (decode_probability(values.filled(0)) > threshold) & ~np.ma.getmaskarray(values)
    labels, count = ndimage.label(building, structure=_EIGHT)
    areas = np.bincount(labels.ravel(), minlength=count + 1).astype(np.float64) * pixel_area_m2 / scale**2
    areas[0] = 0.0
    return labels, areas, scale


def large_building_mask(fine: Path, coarse: Path, threshold: float, pixel_area_m2: float,
                        rule: FusionRule) -> tuple[np.ndarray, int, int]:
    """Where the coarse pass may fill in the fine one, on the label grid; (mask, taken, refused)."""
    coarse_labels, coarse_areas, _ = _components(coarse, threshold, pixel_area_m2)
    large = np.flatnonzero(coarse_areas >= rule.large_m2)
    if large.size == 0:
        return np.zeros(coarse_labels.shape, bool), 0, 0
    fine_labels, fine_areas, _ = _components(fine, threshold, pixel_area_m2)
    fine_large = (fine_areas >= rule.large_m2)[fine_labels]
    fine_small = (fine_labels > 0) & ~fine_large
    index = np.arange(coarse_labels.max() + 1)
    small_share = ndimage.mean(fine_small, coarse_labels, index)
    keep = np.zeros(index.size, bool)
    keep[large] = np.nan_to_num(small_share[large]) < rule.split_share
    return keep[coarse_labels], int(keep.sum()), int(large.size - keep.sum())


def fuse_passes(fine: Path, coarse: Path, outputs: tuple[Path, Path], profiles: tuple[dict, dict], threshold: float,
                pixel_area_m2: float, rule: FusionRule) -> FusionResult:
    """Write the fused probability and mask rasters (``outputs``, written with ``profiles``).

    Args:
        fine, coarse: the two passes' probability rasters (same grid, ``probability.tif`` encoding).
        outputs, profiles: paths and rasterio profiles of the fused probability and mask.
        threshold: building probability threshold.
        pixel_area_m2: ground area of one pixel of the grid (m²).
        rule: the fusion rule.
    """
    fill, taken, refused = large_building_mask(fine, coarse, threshold, pixel_area_m2, rule)
    shares = np.zeros(2, np.int64)  # building, valid pixels
    with rasterio.open(fine) as fine_ds, rasterio.open(coarse) as coarse_ds, \
            rasterio.open(outputs[0], "w", **profiles[0]) as prob_ds, \
            rasterio.open(outputs[1], "w", **profiles[1]) as mask_ds:
        prob_ds.update_tags(**{PRODUCT_TAG: "probability"})
        cols = _grid_index(0, fine_ds.width, fine_ds.width, fill.shape[1])
        for top in range(0, fine_ds.height, STRIP_ROWS):
            strip = Window(0, top, fine_ds.width, min(STRIP_ROWS, fine_ds.height - top))
            here = fill[np.ix_(_grid_index(top, strip.height, fine_ds.height, fill.shape[0]), cols)]
            valid = fine_ds.dataset_mask(window=strip) > 0
            probability = decode_probability(fine_ds.read(1, window=strip))
            if here.any():
                coarse_p = decode_probability(coarse_ds.read(1, window=strip))
                probability = np.where(here, np.maximum(probability, coarse_p), probability)
            shares += _write_strip(prob_ds, mask_ds, strip, probability, valid, threshold)
    return FusionResult(taken=taken, refused_as_clusters=refused, building_px=int(shares[0]),
                        valid_px=int(shares[1]))


def _write_strip(prob_ds: rasterio.io.DatasetWriter, mask_ds: rasterio.io.DatasetWriter, strip: Window,
                 probability: np.ndarray, valid: np.ndarray, threshold: float) -> np.ndarray:
    """Write one strip of probability (encoded, masked) and mask; (building, valid) pixel counts."""
    mask = (probability > threshold).astype(np.uint8)
    mask[~valid] = MASK_NODATA
    encoded = encode_probability(probability)
    encoded[~valid] = PROBABILITY_NODATA
    prob_ds.write(encoded, 1, window=strip)
    mask_ds.write(mask, 1, window=strip)
    return np.array([int((mask == 1).sum()), int(valid.sum())])


def _grid_index(start: int, count: int, full: int, grid: int) -> np.ndarray:
    """Label-grid indexes of ``count`` raster rows (or columns) from ``start`` (nearest)."""
    positions = (np.arange(start, start + count) + 0.5) * grid / full
    return np.clip(positions.astype(np.int64), 0, grid - 1)
