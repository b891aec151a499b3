"""Preparing a site's dates, before any segmentation: the stage from rasters to aligned rasters.

* order: every raster's date (given, acquisition-date tag, or ISO date in the file name), the
  rasters sorted by it, the same band count at every date;
* alignment: every later raster must overlap the first and is warped onto the first one's grid
  (CRS, transform, size);
* registration: the residual shift of each later date against the first is measured on the
  imagery by phase correlation; the change stage moves footprints back by it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import CRS
from rasterio.errors import RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.warp import Resampling, transform_bounds

from sitewatch.dates import date_sources, resolve_dates
from sitewatch.errors import SitewatchError
from sitewatch.raster import is_georeferenced, no_grid_reason, open_raster, overview_shape, pixel_size_xy_m
from sitewatch.rules import ChangeRules
from sitewatch.summary import ShiftRecord

#: Longest side (px) of the grey images the shift is measured on.
REGISTRATION_PX = 2048


@dataclass
class Shift:
    """Residual misregistration of a later date against the first (pixels, metres)."""

    dx_px: float = 0.0
    dy_px: float = 0.0
    response: float = 0.0
    applied: bool = False
    dx_m: float = 0.0
    dy_m: float = 0.0

    def inverse(self) -> Shift:
        """The opposite shift (to move first-date footprints onto a later date's pixels)."""
        return Shift(-self.dx_px, -self.dy_px, self.response, self.applied, -self.dx_m, -self.dy_m)

    def record(self) -> ShiftRecord:
        """The shift as reported (pixels and metres rounded to 3 decimals)."""
        return ShiftRecord(*(round(v, 3) if isinstance(v, float) else v for v in
                             (self.dx_px, self.dy_px, self.response, self.applied, self.dx_m, self.dy_m)))


@dataclass
class PreparedSite:
    """A site's dates on one grid, ready for segmentation.

    Attributes:
        rasters: the input rasters, sorted by date.
        dates: their dates, ascending.
        aligned: per date, the raster on the first raster's grid (the first is the input itself).
        crs, transform, shape: that grid (shape in rows, columns).
        pixel_m: its ground pixel size along x and y in metres.
        shifts: per later date, the shift measured against the first date.
        date_sources: where each date came from (``given``, ``tag …``, ``file name``).
    """

    rasters: list[Path]
    dates: list[dt.date]
    aligned: list[Path]
    crs: CRS
    transform: Affine
    shape: tuple[int, int]
    pixel_m: tuple[float, float]
    shifts: list[Shift]
    date_sources: list[str]


def order_by_date(rasters: list[Path], dates: list[str] | None) -> tuple[list[Path], list[dt.date]]:
    """The rasters sorted by date, with their dates; checks there are two or more of one band count."""
    rasters = [Path(r) for r in rasters]
    if len(rasters) < 2:
        raise SitewatchError("change detection needs rasters of at least two dates (got one)")
    counts = {}
    for path in rasters:
        with open_raster(path) as dataset:
            counts[path] = dataset.count
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"{p.name}: {c}" for p, c in counts.items())
        raise SitewatchError(f"rasters have different band counts ({detail})")
    when = resolve_dates(rasters, dates)
    order = np.argsort(when)
    return [rasters[i] for i in order], [when[i] for i in order]


def prepare_site(rasters: list[Path], dates: list[dt.date], rules: ChangeRules, workdir: Path,
                 progress: Callable[[str], None], dates_given: bool = False) -> PreparedSite:
    """Warp every later date onto the first raster's grid (GeoTIFFs in ``workdir``) and measure shifts.

    Args:
        rasters: the site's rasters sorted by date (see :func:`order_by_date`).
        dates: their dates.
        rules: ``max_shift_px``, ``max_shift_m`` and ``min_shift_response`` decide whether a shift is applied.
        workdir: folder for the warped rasters.
        progress: called with a short message before each warp.
    """
    with open_raster(rasters[0]) as reference:
        if not is_georeferenced(reference):
            raise SitewatchError(f"{rasters[0]}: {no_grid_reason(reference)}; change detection needs "
                                 "georeferenced rasters")
        aligned = [rasters[0]]
        for k, path in enumerate(rasters[1:], start=1):
            with open_raster(path) as other:
                check_overlap(reference, other)
            progress(f"aligning {path.name} onto {rasters[0].name}")
            target = workdir / f"{k}_{path.stem}.tif"
            target.parent.mkdir(parents=True, exist_ok=True)
            warp_onto(reference, path, target)
            check_has_data(target, path)
            aligned.append(target)
        pixel_m = pixel_size_xy_m(reference)
        grid = (CRS.from_user_input(reference.crs), reference.transform, (reference.height, reference.width))
    return PreparedSite(rasters, dates, aligned, *grid, pixel_m, registration_shifts(aligned, rules, pixel_m),
                        date_sources(rasters, dates_given))


def check_overlap(reference: rasterio.DatasetReader, other: rasterio.DatasetReader) -> float:
    """Share (0-1) of the reference footprint covered by ``other``; error if they do not meet."""
    if not is_georeferenced(other):
        raise SitewatchError(f"{other.name}: {no_grid_reason(other)}; change detection needs georeferenced rasters")
    bounds = transform_bounds(other.crs, reference.crs, *other.bounds, densify_pts=21)
    ref = shapely.box(*reference.bounds)
    share = shapely.box(*bounds).intersection(ref).area / ref.area
    if share <= 0:
        raise SitewatchError(f"{other.name}: does not overlap {Path(reference.name).name}")
    return share


def check_has_data(aligned: Path, source: Path) -> None:
    """Refuse, before any segmentation, a date with no valid pixel on the site's ground (naming its file)."""
    with rasterio.open(aligned) as dataset:
        mask = dataset.dataset_mask(out_shape=overview_shape(dataset, 512), resampling=Resampling.nearest)
    if not mask.any():
        raise SitewatchError(f"{source}: every pixel is nodata where it overlaps the first date")


def warp_onto(reference: rasterio.DatasetReader, source: Path, target: Path) -> None:
    """Write ``source`` resampled onto ``reference``'s grid (CRS, transform, size) as GeoTIFF.

    A read failure (a truncated file) is an error naming ``source``.
    """
    try:
        _warp(reference, source, target)
    except RasterioIOError as error:
        raise SitewatchError(f"{source}: read failed, file corrupt or truncated ({error})") from None


def _warp(reference: rasterio.DatasetReader, source: Path, target: Path) -> None:
    with rasterio.open(source) as dataset:
        nodata = dataset.nodata if dataset.nodata is not None else 0
        with WarpedVRT(dataset, crs=reference.crs, transform=reference.transform,
                       width=reference.width, height=reference.height,
                       resampling=Resampling.bilinear, nodata=nodata) as vrt:
            profile = {"driver": "GTiff", "width": reference.width, "height": reference.height,
                       "count": dataset.count, "dtype": dataset.dtypes[0], "crs": reference.crs,
                       "transform": reference.transform, "nodata": nodata, "tiled": True,
                       "compress": "deflate", "BIGTIFF": "IF_SAFER"}
            with rasterio.open(target, "w", **profile) as out:
                out.colorinterp = dataset.colorinterp
                for _, window in out.block_windows(1):
                    out.write(vrt.read(window=window), window=window)


def registration_shifts(aligned: list[Path], rules: ChangeRules, pixel_m: tuple[float, float]) -> list[Shift]:
    """The shift of each later date against the first, measured on decimated grey imagery (full pixels)."""
    first, factor = grey_image(aligned[0])
    shifts = []
    for path in aligned[1:]:
        grey, _ = grey_image(path)
        shift = estimate_shift(first, grey, rules, (pixel_m[0] * factor, pixel_m[1] * factor))
        shift.dx_px *= factor
        shift.dy_px *= factor
        shifts.append(shift)
    return shifts


def grey_image(path: Path, limit: int = REGISTRATION_PX) -> tuple[np.ndarray, float]:
    """Grey image of a raster, decimated to at most ``limit`` px; with the decimation factor."""
    try:
        with rasterio.open(path) as dataset:
            factor = max(1.0, max(dataset.width, dataset.height) / limit)
            shape = (max(1, int(dataset.height / factor)), max(1, int(dataset.width / factor)))
            bands = list(range(1, min(3, dataset.count) + 1))
            pixels = dataset.read(bands, out_shape=(len(bands), *shape), resampling=Resampling.average)
    except RasterioIOError as error:
        raise SitewatchError(f"{path}: read failed, file corrupt or truncated ({error})") from None
    return pixels.astype(np.float32).mean(axis=0), factor


def estimate_shift(reference: np.ndarray, moving: np.ndarray, rules: ChangeRules,
                   pixel_m: tuple[float, float]) -> Shift:
    """Translation of ``moving`` relative to ``reference`` by phase correlation.

    Both are single-band images on the same grid (grey imagery or building probabilities).
    A shift is applied only when the correlation peak is clear (``min_shift_response``) and
    within ``max_shift_px`` pixels or ``max_shift_m`` metres (whichever is more); otherwise it is
    reported as not applied. Phase correlation finds shifts up to half the image, so a 30 m shift
    of a 3 m raster (10 px) and of a 0.3 m one (100 px) are measured alike.
    """
    a = reference.astype(np.float32)
    b = moving.astype(np.float32)
    a = (a - a.mean()) / (a.std() + 1e-6)
    b = (b - b.mean()) / (b.std() + 1e-6)
    window = cv2.createHanningWindow(a.shape[::-1], cv2.CV_32F)
    (dx, dy), response = cv2.phaseCorrelate(a, b, window)
    within = all(abs(d) <= max(rules.max_shift_px, rules.max_shift_m / max(abs(m), 1e-9))
                 for d, m in ((dx, pixel_m[0]), (dy, pixel_m[1])))
    ok = response >= rules.min_shift_response and within
    return Shift(float(dx), float(dy), float(response), bool(ok), float(dx) * pixel_m[0],
                 float(dy) * pixel_m[1])
