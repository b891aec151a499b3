"""Residual rotation of a later date against the first, measured and corrected before the diff.

Phase correlation over the whole site measures a translation only; a date whose georeference is also
turned by a degree or two (a poorly orthorectified scene) then drifts apart from the first date towards
the site's edges, and every building there becomes new at one date and demolished at the other
(docs/RELIABILITY.md). Here the site is cut into a grid of overlapping windows (8 × 8, then 4 × 4 on the
derotated image), each window's shift is measured by phase correlation, and a rotation plus translation
is fitted to the windows' shifts (outliers, where the ground itself changed, left out); the fit is
repeated on the derotated image until it converges. Where the fit is clear (enough windows agree to
within ``rotation_max_rms_px``) and the rotation moves the site's corners by ``rotation_min_corner_px`` or
more, the later date's georeference is turned back about the site's centre before it is resampled onto the
site grid (one resampling; its masks turned with it). The translation left over is measured and corrected
as before. Measured on real pairs (``bench/rotation.py``): turns of 0.5-4° on sites of 1,024 px are found
within 0.08°, 8° on some; corners are measured in the decimated pixels, so on a site decimated by a factor
f a rotation moving its corners less than 4 × f full pixels is left alone.

Angles are in degrees, positive clockwise as seen on a north-up map; pixels are those of the grey image
the rotation is measured on (the site grid decimated to at most :data:`ROTATION_PX`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from rasterio.crs import CRS
from rasterio.transform import Affine
from rasterio.warp import transform as transform_points

from sitewatch.rules import ChangeRules

#: Longest side (px) of the grey images the rotation is measured on.
ROTATION_PX = 1024
#: Windows along each side, per pass of measure-derotate-measure: first a fine grid of small windows (a small
#: window stays correlated under a larger rotation), then a coarser grid of larger ones (more precise) on the
#: image derotated by what the passes before found. Each window is the side ÷ its grid, at least
#: :data:`MIN_WINDOW_PX`; a window whose peak is below :data:`MIN_WINDOW_RESPONSE` is not used.
GRIDS = (8, 4, 4, 4)
MIN_WINDOW_PX, MIN_WINDOW_RESPONSE = 64, 0.1
#: Fewest windows a fit must keep.
MIN_WINDOWS = 8


@dataclass(frozen=True)
class Rotation:
    """The rotation of a later date against the first (degrees clockwise on a north-up map) and how sure.

    ``corner_px``: how far the rotation moves the site's corners (measurement pixels); ``rms_px``: how far
    the windows kept lie from the fitted rotation and translation; ``windows``: the windows the last fit
    kept; ``applied``: turned back before the diff.
    """

    degrees: float = 0.0
    corner_px: float = 0.0
    rms_px: float = 0.0
    windows: int = 0
    applied: bool = False


def measure_rotation(reference: np.ndarray, moving: np.ndarray, rules: ChangeRules) -> Rotation:
    """The rotation of ``moving`` against ``reference`` (grey images on the same grid), fitted to the
    shifts of windows; ``applied`` where the fit is clear and the corners move enough to matter. A pass
    that finds too few windows keeps what the passes before it found."""
    moving = moving.astype(np.float32)
    found, degrees = Rotation(), 0.0
    for number, grid in enumerate(GRIDS):
        shifts = window_shifts(reference, _turned(moving, -degrees), grid)
        step, rms, kept = fit_rotation(shifts) if len(shifts) >= MIN_WINDOWS else (0.0, 0.0, len(shifts))
        if kept < MIN_WINDOWS:
            if number == 0:  # the fine grid found too little texture: the coarse one may not
                continue
            break
        degrees += step
        found = _judged(degrees, rms, kept, reference.shape, rules)
        if grid == GRIDS[-1] and abs(step) < 0.01:
            break
    return found


def _judged(degrees: float, rms: float, kept: int, shape: tuple[int, int], rules: ChangeRules) -> Rotation:
    """A fitted rotation (of at least :data:`MIN_WINDOWS` windows) with how far it moves the corners, and
    whether the rules turn it back."""
    corner_px = float(np.radians(abs(degrees)) * np.hypot(*shape) / 2)
    applied = (rms <= rules.rotation_max_rms_px and corner_px >= rules.rotation_min_corner_px
               and abs(degrees) <= rules.rotation_max_deg)
    return Rotation(round(degrees, 3), round(corner_px, 2), round(rms, 2), kept, bool(applied))


def window_shifts(reference: np.ndarray, moving: np.ndarray, grid: int) -> np.ndarray:
    """Per window of a ``grid`` × ``grid`` layout (overlapping; fewer where the image is too small for that
    many distinct windows) with a clear phase-correlation peak: its centre (x, y from the image centre, px,
    y down) and the shift of ``moving`` against ``reference`` there (dx, dy, px); shape (n, 4)."""
    height, width = reference.shape
    size = max(MIN_WINDOW_PX, min(height, width) // grid)
    if size > min(height, width):
        return np.zeros((0, 4))
    hanning = cv2.createHanningWindow((size, size), cv2.CV_32F)
    found = []
    for top in np.unique(np.linspace(0, height - size, grid).astype(int)):
        for left in np.unique(np.linspace(0, width - size, grid).astype(int)):
            a = reference[top:top + size, left:left + size]
            b = moving[top:top + size, left:left + size]
            if a.std() < 1e-3 or b.std() < 1e-3:
                continue
            (dx, dy), response = cv2.phaseCorrelate(_standardised(a), _standardised(b), hanning)
            if response >= MIN_WINDOW_RESPONSE:
                found.append((left + size / 2 - width / 2, top + size / 2 - height / 2, dx, dy))
    return np.array(found, dtype=np.float64).reshape(-1, 4)


def fit_rotation(shifts: np.ndarray) -> tuple[float, float, int]:
    """A small rotation and a translation fitted to the windows' shifts by least squares, windows far
    off the fit (where the ground changed) left out in turn: (degrees clockwise, RMS of the windows kept
    in px, windows kept)."""
    centres, moved = shifts[:, :2], shifts[:, 2:]
    design = np.zeros((2 * len(shifts), 3))
    design[0::2, 0], design[0::2, 2] = 1.0, -centres[:, 1]  # dx = tx - angle * y
    design[1::2, 1], design[1::2, 2] = 1.0, centres[:, 0]  # dy = ty + angle * x
    keep = np.ones(len(shifts), bool)
    for _ in range(4):
        rows = np.repeat(keep, 2)
        solution, *_ = np.linalg.lstsq(design[rows], moved.reshape(-1)[rows], rcond=None)
        misfit = np.hypot(*(design @ solution - moved.reshape(-1)).reshape(-1, 2).T)
        fits = misfit <= max(1.0, 2.5 * float(np.median(misfit[keep])))
        if (fits == keep).all() or fits.sum() < MIN_WINDOWS:
            break
        keep = fits
    return float(np.degrees(solution[2])), float(np.sqrt(np.mean(misfit[keep] ** 2))), int(keep.sum())


@dataclass(frozen=True)
class Turn:
    """A later date's rotation to turn back, with the site grid it was measured on (transform and CRS of
    the first date's north-up grid, its shape in rows and columns)."""

    rotation: Rotation
    site_transform: Affine
    site_shape: tuple[int, int]
    site_crs: CRS | None

    def corrected(self, transform: Affine, crs: CRS | None) -> Affine:
        """``transform`` (of a raster of the later date, in ``crs``, the site's when None) with its pixels
        turned back about the site's centre onto where the first date has them."""
        rows, cols = self.site_shape
        in_pixels = Affine.rotation(-self.rotation.degrees, pivot=(cols / 2, rows / 2))
        on_map = self.site_transform @ in_pixels @ ~self.site_transform
        if crs is None or self.site_crs is None or CRS.from_user_input(crs) == self.site_crs:
            return on_map @ transform
        # in another CRS: the same correction fitted at three corners of the site (a site is small enough
        # for a projection to be affine across it)
        corners = [self.site_transform @ (0, 0), self.site_transform @ (cols, 0), self.site_transform @ (0, rows)]
        before = np.array(transform_points(self.site_crs, crs, *zip(*corners, strict=True)))
        after = np.array(transform_points(self.site_crs, crs, *zip(*[on_map @ c for c in corners], strict=True)))
        solved = np.linalg.solve(np.column_stack([before.T, np.ones(3)]), after.T)
        return Affine(*solved[:, 0], *solved[:, 1]) @ transform


def _turned(image: np.ndarray, degrees: float) -> np.ndarray:
    """``image`` turned by ``degrees`` clockwise about its centre (edges mirrored in, so no black wedge
    correlates)."""
    if not degrees:
        return image
    height, width = image.shape
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), -degrees, 1.0)
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _standardised(values: np.ndarray) -> np.ndarray:
    return ((values - values.mean()) / (values.std() + 1e-6)).astype(np.float32)
