"""Evidence from the pictures themselves: did the ground change between two dates?

A building cannot appear, vanish, grow or shrink where the picture did not change. This stage
compares the first and the last date's images on the site's grid (the later one moved back by its
measured shift) with a local structural similarity (SSIM, Gaussian window) of each band,
standardised over the ground both dates saw. Standardising removes any global gain and offset
(haze, exposure, another sensor's radiometry); the window's structure term does not care about
local contrast either, so a hazed or re-exposed picture of the same ground stays similar, while a
new roof on bare ground, or bare ground where a roof stood, does not. Both images are smoothed by
:data:`PRE_SMOOTH_M` first, so JPEG blocks and sub-pixel registration do not read as change.

The change stage (:mod:`sitewatch.change`) asks for the mean similarity under each record's
changed ground (a new or demolished footprint, the added or lost part of a grown or shrunk one)
and for how distinct a footprint's outline is from its surroundings at a date (``contrast``).
Memory: the images are read whole, averaged to at most :data:`MAX_PX` a side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import CRS
from rasterio.enums import Resampling
from rasterio.features import rasterize
from scipy import ndimage

from sitewatch.clearing import local_moments
from sitewatch.prepare import Shift
from sitewatch.radiometry import RGB, choose_bands, value_stretch

#: Longest side (px) of the grid the pictures are compared on (larger sites are averaged down).
MAX_PX = 6144
#: Gaussian smoothing (m, standard deviation) before comparing: JPEG blocks, resampling, sub-pixel shifts.
PRE_SMOOTH_M = 0.75
#: Standard deviation (m) of the comparison window (about a house across).
WINDOW_M = 3.0
#: The least smoothing and window (px) on coarse imagery.
MIN_SMOOTH_PX = 0.7
MIN_WINDOW_PX = 2.0
#: SSIM stabilising constants on standardised values (std 1 over the scene).
SSIM_C1 = 0.05**2
SSIM_C2 = 0.15**2
#: Width (m) of the ring around a footprint whose colour its outline is compared with.
RING_M = 3.0


@dataclass
class ImageEvidence:
    """The two dates' pictures compared, on the site grid (or a coarser one, ``factor``).

    ``similarity``: SSIM of the first and the last date (−1..1, 1 = the same picture), mean over
    the bands; ``before``/``after``: the standardised bands (3×H×W) of each date; ``seen``: both
    dates have data here. ``transform`` and ``crs``: the grid (the first raster's CRS).
    """

    similarity: np.ndarray
    before: np.ndarray
    after: np.ndarray
    seen: np.ndarray
    transform: Affine
    crs: CRS
    pixel_m: float

    def _labels(self, geometries: np.ndarray) -> np.ndarray:
        shapes = [(g, i + 1) for i, g in enumerate(geometries) if g is not None and not g.is_empty]
        if not shapes:
            return np.zeros(self.seen.shape, np.int32)
        return rasterize(shapes, out_shape=self.seen.shape, transform=self.transform, fill=0, dtype="int32",
                         all_touched=True)

    def _mean(self, values: np.ndarray, labels: np.ndarray, count: int, where: np.ndarray) -> np.ndarray:
        index = np.arange(1, count + 1)
        keep = np.where(where, labels, 0)
        total = ndimage.sum(values, keep, index)
        pixels = ndimage.sum(np.ones_like(values), keep, index)
        return np.divide(total, pixels, out=np.full(count, np.nan), where=pixels > 0)

    def _on_grid(self, geometries: np.ndarray, crs: CRS) -> np.ndarray:
        return gpd.GeoSeries(geometries, crs=crs).to_crs(self.crs).values

    def similarity_under(self, geometries: np.ndarray, crs: CRS) -> np.ndarray:
        """Mean similarity (−1..1) under each polygon (in ``crs``); NaN where no seen pixel is under it."""
        if len(geometries) == 0:
            return np.zeros(0)
        return self._mean(self.similarity, self._labels(self._on_grid(geometries, crs)), len(geometries), self.seen)

    def similarity_around(self, geometries: np.ndarray, crs: CRS, outer_m: float, inner_m: float) -> np.ndarray:
        """Mean similarity of the ground around each polygon: a ring from ``inner_m`` to ``outer_m`` outside it."""
        if len(geometries) == 0:
            return np.zeros(0)
        return self.similarity_under(rings_around(geometries, outer_m, inner_m), crs)

    def contrast(self, geometries: np.ndarray, crs: CRS, later: bool) -> np.ndarray:
        """How distinct each polygon (in a metric ``crs``) is from a ring of :data:`RING_M` around it
        at one date: the distance of the mean standardised colours inside and in the ring (0: the
        outline is not in the picture; a roof on ground is about 1 or more). NaN where unseen."""
        if len(geometries) == 0:
            return np.zeros(0)
        bands = self.after if later else self.before
        rings = rings_around(geometries, max(RING_M, 2 * self.pixel_m), self.pixel_m)
        inside, around = self._labels(self._on_grid(geometries, crs)), self._labels(self._on_grid(rings, crs))
        squared = np.zeros(len(geometries))
        for band in bands:
            squared += (self._mean(band, inside, len(geometries), self.seen)
                        - self._mean(band, around, len(geometries), self.seen)) ** 2
        return np.sqrt(squared)


def rings_around(geometries: np.ndarray, outer_m: float, inner_m: float) -> np.ndarray:
    """The ground from ``inner_m`` to ``outer_m`` outside each polygon (metric CRS)."""
    return shapely.difference(shapely.buffer(geometries, outer_m), shapely.buffer(geometries, inner_m))


def _read_rgb(path: Path, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A raster's RGB (3×H×W, 0-1 after the segmentation's value stretch) and where it has data."""
    with rasterio.open(path) as dataset:
        bands = choose_bands(dataset, list(RGB), None) if dataset.count >= 3 else [1, 1, 1]
        low, high, _ = value_stretch(dataset, bands)
        raw = dataset.read(bands, out_shape=(3, *shape), resampling=Resampling.average, masked=True)
    seen = ~np.ma.getmaskarray(raw).any(axis=0)
    rgb = np.clip((raw.filled(0).astype(np.float32) - low[:, None, None]) / (high - low)[:, None, None], 0, 1)
    seen &= np.isfinite(rgb).all(axis=0)
    return np.nan_to_num(rgb), seen


def _standardised(rgb: np.ndarray, seen: np.ndarray, smooth_px: float) -> np.ndarray:
    out = np.zeros_like(rgb)
    for k, band in enumerate(rgb):
        values = band[seen]
        if values.size:
            out[k] = (band - values.mean()) / max(float(values.std()), 1e-3)
        out[k] = ndimage.gaussian_filter(out[k], smooth_px, mode="nearest") if smooth_px > 0.3 else out[k]
    return out


def ssim(a: np.ndarray, b: np.ndarray, sigma_px: float) -> np.ndarray:
    """Structural similarity of two standardised images in a Gaussian window (−1..1)."""
    mean_a, mean_b, var_a, var_b, covariance = local_moments(a, b, sigma_px)
    return (((2 * mean_a * mean_b + SSIM_C1) * (2 * covariance + SSIM_C2))
            / ((mean_a**2 + mean_b**2 + SSIM_C1) * (var_a + var_b + SSIM_C2))).astype(np.float32)


def compare_pictures(first: Path, last: Path, shift: Shift | None, pixel_m: tuple[float, float]) -> ImageEvidence:
    """The first and the last date's images (on one grid, the site's) compared.

    Args:
        first, last: the rasters of the first and the last date, on the first one's grid.
        shift: the last date's measured shift against the first (site pixels); applied ones are
            undone on the image, as the change stage undoes them on the footprints.
        pixel_m: the grid's ground pixel size along x and y (m).
    """
    with rasterio.open(first) as dataset:
        height, width, transform, crs = dataset.height, dataset.width, dataset.transform, dataset.crs
    factor = max(1.0, max(height, width) / MAX_PX)
    shape = (max(1, round(height / factor)), max(1, round(width / factor)))
    grid = transform @ Affine.scale(width / shape[1], height / shape[0])
    cell_m = float(np.sqrt(pixel_m[0] * pixel_m[1])) * factor
    before, seen_before = _read_rgb(first, shape)
    after, seen_after = _read_rgb(last, shape)
    if shift is not None and shift.applied:
        offset = (-shift.dy_px / factor, -shift.dx_px / factor)
        after = np.stack([ndimage.shift(band, offset, order=1, mode="nearest") for band in after])
        seen_after = ndimage.shift(seen_after.astype(np.uint8), offset, order=0, mode="constant", cval=0) > 0
    seen = seen_before & seen_after
    # at 2-3 m a pixel is already a roof's part: smooth at least 0.7 px, compare over at least 2 px
    smooth_px = max(PRE_SMOOTH_M / cell_m, MIN_SMOOTH_PX)
    before, after = _standardised(before, seen, smooth_px), _standardised(after, seen, smooth_px)
    window_px = max(MIN_WINDOW_PX, WINDOW_M / cell_m)
    similarity = np.mean([ssim(a, b, window_px) for a, b in zip(before, after, strict=True)], axis=0)
    return ImageEvidence(similarity.astype(np.float32), before, after, seen, grid, CRS.from_user_input(crs), cell_m)
