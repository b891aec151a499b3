"""Land clearing and earthworks: ground that was green at the first date and is bare ground of a
new pattern at a later date, and stays so, outside buildings.

The stage reads each date's image and building mask on a coarse *analysis grid* (the site's grid
averaged to pixels of at least :data:`ANALYSIS_PIXEL_M`, so one rule fits SkySat and PlanetScope)
and asks, per analysis pixel, three questions of a later date against the first:

* **green before, bare after**: the excess-green index (chromatic coordinates, 2g − r − b, so
  brightness and haze matter little; median over :data:`GREEN_SMOOTHING_M`) is at least
  ``clearing_green_min`` at the first date and below ``clearing_bare_max`` at the later one;
* **a new pattern**: the local correlation of the two dates' brightness (Gaussian window of
  :data:`PATTERN_SIGMA_M`) is below ``clearing_max_pattern_corr``. A field in another season
  keeps its parcel edges, furrows and tracks, and correlates; graded or excavated ground does not;
* **not a building** at any date (the segmentation's masks), and seen by both dates.

A pixel is cleared from the first later date where it passes and from which every later date that
saw it still passes or holds a building (a field that greens again was a season, not a clearing).
Cleared pixels are opened (:data:`OPENING_M`), grouped into connected areas and kept from
``land_cleared_min_area_m2``. An area first found at the last date has no later image to confirm
it (``later_dates_seen`` 0): the report says so.

Limits (measured in ``docs/BENCHMARKS.md``): RGB only (no NIR); ground that was already bare at
the first date is never "cleared"; a dry-season field that loses its parcel pattern, or a lawn
going brown in a uniform way, can look cleared on two dates.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
import shapely.geometry
from affine import Affine
from pyproj import CRS
from rasterio.enums import Resampling
from rasterio.features import shapes
from scipy import ndimage

from sitewatch.footprints import centroid_lonlat, utm_crs
from sitewatch.prepare import Shift
from sitewatch.radiometry import RGB, band_choice, value_stretch
from sitewatch.rules import ChangeRules

#: The analysis grid's pixels are at least this size (m): finer imagery is averaged to it.
ANALYSIS_PIXEL_M = 2.0
#: Width (m) of the median filter on the excess-green index.
GREEN_SMOOTHING_M = 10.0
#: Standard deviation (m) of the Gaussian window of the two dates' brightness correlation.
PATTERN_SIGMA_M = 16.0
#: Radius (m) of the opening that removes thin strips and specks of cleared pixels.
OPENING_M = 4.0
#: Standard deviation (m) of the smoothing of the brightness the worked-ground cue compares.
WORKED_SMOOTHING_M = 4.0

#: Columns of the ``land_cleared`` layer, in order (geometry last).
CLEARING_COLUMNS = ("clearing_id", "area_m2", "first_seen", "later_dates_seen", "green_before", "green_after",
                    "pattern_corr", "lon", "lat")


@dataclass(frozen=True)
class AnalysisGrid:
    """The coarse grid of the stage: the site's grid averaged by ``factor`` (≥ 1)."""

    crs: CRS
    transform: Affine
    shape: tuple[int, int]  # rows, columns
    pixel_m: float  # ground size of one analysis pixel (m), geometric mean of x and y
    factor: float  # site pixels per analysis pixel, along each axis

    @classmethod
    def of_site(cls, crs: CRS, transform: Affine, shape: tuple[int, int], pixel_m: tuple[float, float]) -> AnalysisGrid:
        """The analysis grid of a site grid whose pixels measure ``pixel_m`` (x, y) metres."""
        site_pixel = float(np.sqrt(pixel_m[0] * pixel_m[1]))
        factor = max(1.0, ANALYSIS_PIXEL_M / site_pixel)
        rows, cols = max(1, round(shape[0] / factor)), max(1, round(shape[1] / factor))
        coarse = transform @ Affine.scale(shape[1] / cols, shape[0] / rows)
        return cls(crs, coarse, (rows, cols), site_pixel * factor, factor)

    def pixels(self, metres: float) -> float:
        """A length in metres as analysis pixels."""
        return metres / self.pixel_m


@dataclass
class DateLayers:
    """One date on the analysis grid, moved back by its measured shift."""

    green: np.ndarray  # excess-green index, median-smoothed (float32)
    brightness: np.ndarray  # mean of R, G, B standardised over the seen ground (float32)
    building: np.ndarray  # bool: any building pixel of the date's mask
    seen: np.ndarray  # bool: the date has data here
    ndvi: np.ndarray | None = None  # (NIR − red) / (NIR + red) where the date has a NIR band
    brightness_smooth: np.ndarray | None = None  # brightness smoothed over WORKED_SMOOTHING_M


def excess_green(rgb: np.ndarray) -> np.ndarray:
    """2g − r − b on chromatic coordinates (each band over the sum of the three): −1..2, 0 for grey.

    ``rgb`` is bands-first (3×H×W) in any non-negative unit.
    """
    values = rgb.astype(np.float32) + 1.0
    total = values.sum(axis=0)
    return (2 * values[1] - values[0] - values[2]) / total


def standardised_brightness(rgb: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Mean of the bands, minus its mean over the seen ground, over its standard deviation there."""
    brightness = rgb.astype(np.float32).mean(axis=0)
    if not seen.any():
        return np.zeros_like(brightness)
    values = brightness[seen]
    return ((brightness - values.mean()) / max(float(values.std()), 1e-6)).astype(np.float32)


def local_moments(a: np.ndarray, b: np.ndarray, sigma_px: float) -> tuple[np.ndarray, ...]:
    """Means, variances and covariance of ``a`` and ``b`` in a Gaussian window of ``sigma_px`` pixels:
    ``(mean_a, mean_b, var_a, var_b, covariance)``."""
    def smooth(x: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(x, sigma_px, mode="nearest")

    mean_a, mean_b = smooth(a), smooth(b)
    var_a = np.maximum(smooth(a * a) - mean_a**2, 0)
    var_b = np.maximum(smooth(b * b) - mean_b**2, 0)
    return mean_a, mean_b, var_a, var_b, smooth(a * b) - mean_a * mean_b


def local_correlation(a: np.ndarray, b: np.ndarray, sigma_px: float) -> np.ndarray:
    """Pearson correlation of ``a`` and ``b`` in a Gaussian window (−1..1; 0 where either is flat)."""
    _, _, var_a, var_b, covariance = local_moments(a, b, sigma_px)
    return (covariance / np.sqrt(np.maximum(var_a * var_b, 1e-6))).astype(np.float32)


def read_date(image: Path, mask: Path, grid: AnalysisGrid, shift: Shift | None) -> DateLayers:
    """A date's RGB (and NDVI where it has a NIR band) and building mask averaged onto ``grid``, moved
    back by its shift when applied.

    Bands and value stretch as the segmentation read them by default (:mod:`sitewatch.radiometry`);
    NDVI from the raw values (surface reflectance keeps its scale).
    """
    with rasterio.open(image) as dataset:
        choice = band_choice(dataset, list(RGB), None)
        bands, nir = choice.bands, choice.has_nir()
        low, high, _ = value_stretch(dataset, bands)
        raw = dataset.read(bands + ([nir] if nir else []), out_shape=(len(bands) + bool(nir), *grid.shape),
                           resampling=Resampling.average).astype(np.float32)
    rgb = np.clip((raw[:3] - low[:, None, None]) / (high - low)[:, None, None], 0, 1) * 255
    ndvi = (raw[3] - raw[0]) / np.maximum(raw[3] + raw[0], 1e-6) if nir else None
    with rasterio.open(mask) as dataset:
        # the mask's nodata (MASK_NODATA) is declared: the average is the building share of the seen pixels
        building = dataset.read(1, out_shape=grid.shape, resampling=Resampling.average, masked=True,
                                out_dtype="float32")
    seen = ~np.ma.getmaskarray(building)
    building_share = building.filled(0)
    if shift is not None and shift.applied:
        stacked = rgb if ndvi is None else np.concatenate([rgb, ndvi[None]])
        stacked, building_share, seen = _moved_back(stacked, building_share, seen, shift, grid)
        rgb, ndvi = stacked[:3], (stacked[3] if ndvi is not None else None)
    layers = layers_of(rgb, building_share > 0, seen, grid)
    layers.ndvi = ndvi
    return layers


def _moved_back(rgb: np.ndarray, building: np.ndarray, seen: np.ndarray, shift: Shift,
                grid: AnalysisGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The arrays moved by ``-shift`` (site pixels, as footprints are moved back)."""
    offset = (-shift.dy_px / grid.factor, -shift.dx_px / grid.factor)
    moved = np.stack([ndimage.shift(band, offset, order=1, mode="nearest") for band in rgb])
    return (moved, ndimage.shift(building, offset, order=0, mode="constant", cval=0),
            ndimage.shift(seen.astype(np.uint8), offset, order=0, mode="constant", cval=0).astype(bool))


def layers_of(rgb: np.ndarray, building: np.ndarray, seen: np.ndarray, grid: AnalysisGrid) -> DateLayers:
    """The stage's per-date layers from RGB (3×H×W, 0-255) on the analysis grid."""
    width = max(1, int(round(grid.pixels(GREEN_SMOOTHING_M))))
    green = ndimage.median_filter(excess_green(rgb), width | 1, mode="nearest")
    brightness = standardised_brightness(rgb, seen)
    smooth = ndimage.gaussian_filter(brightness, grid.pixels(WORKED_SMOOTHING_M), mode="nearest")
    return DateLayers(green.astype(np.float32), brightness, building, seen, brightness_smooth=smooth)


def cleared_since(dates: list[DateLayers], rules: ChangeRules, grid: AnalysisGrid) -> tuple[np.ndarray, np.ndarray]:
    """Per analysis pixel, the index of the date it is cleared from (0 = not cleared), and the
    pattern correlation of the last date against the first."""
    first = dates[0]
    ever_built = np.logical_or.reduce([d.building for d in dates])
    since = np.zeros(first.green.shape, np.int16)
    stays = np.ones(first.green.shape, bool)
    correlation = np.zeros(first.green.shape, np.float32)
    for k in range(len(dates) - 1, 0, -1):
        later = dates[k]
        pattern = local_correlation(first.brightness, later.brightness, grid.pixels(PATTERN_SIGMA_M))
        if k == len(dates) - 1:
            correlation = pattern
        passes = (ground_worked(first, later, rules) & (pattern < rules.clearing_max_pattern_corr)
                  & first.seen & later.seen & ~ever_built)
        since[passes & stays] = k
        stays &= passes | later.building | ~later.seen
    return since, correlation


def ground_worked(first: DateLayers, later: DateLayers, rules: ChangeRules) -> np.ndarray:
    """Where the ground was vegetated, or of any colour but became much brighter, and is bare at ``later``.

    * **vegetation lost**: green at the first date (excess green ≥ ``clearing_green_min`` or, where
      both dates have NIR, NDVI ≥ ``clearing_ndvi_before_min``: dry grass and winter scrub that
      RGB calls brown still reflect NIR) and bare later (excess green < ``clearing_bare_max`` and,
      with NIR, NDVI < ``clearing_ndvi_after_max``);
    * **a new bare surface** in any season: bare later, at least ``clearing_worked_brighten_min``
      standard deviations of the site's brightness brighter than at the first date and at least
      ``clearing_worked_bright_min`` above the site's mean (graded soil, a construction yard,
      excavation spoil), whatever the first date's colour (brown winter ground, dry grass).

    The caller adds the new-pattern test that tells both from a season.
    """
    green_before = first.green >= rules.clearing_green_min
    bare_after = later.green < rules.clearing_bare_max
    if first.ndvi is not None and later.ndvi is not None:
        green_before |= first.ndvi >= rules.clearing_ndvi_before_min
        bare_after &= later.ndvi < rules.clearing_ndvi_after_max
    if first.brightness_smooth is None or later.brightness_smooth is None:
        return green_before & bare_after
    brighter = ((later.brightness_smooth - first.brightness_smooth >= rules.clearing_worked_brighten_min)
                & (later.brightness_smooth >= rules.clearing_worked_bright_min))
    return (green_before | brighter) & bare_after


def cleared_areas(since: np.ndarray, rules: ChangeRules, grid: AnalysisGrid) -> tuple[np.ndarray, int]:
    """Connected cleared areas (labels 1..n on the analysis grid) of at least the minimum area."""
    cleared = since > 0
    radius = int(round(grid.pixels(OPENING_M)))
    if radius:
        cleared = ndimage.binary_opening(cleared, iterations=radius)
    labels, count = ndimage.label(cleared, structure=np.ones((3, 3)))
    if count == 0:
        return labels, 0
    sizes = ndimage.sum(np.ones_like(labels), labels, np.arange(1, count + 1))
    # the exact area (m², metric CRS) is measured on the polygons; this generous cut saves their tracing
    big = np.flatnonzero(sizes * grid.pixel_m**2 >= 0.5 * rules.land_cleared_min_area_m2) + 1
    relabelled = np.zeros(count + 1, np.int32)
    relabelled[big] = np.arange(1, len(big) + 1)
    return relabelled[labels], len(big)


def describe_areas(labels: np.ndarray, count: int, since: np.ndarray, correlation: np.ndarray,
                   dates: list[DateLayers], when: list[dt.date], rules: ChangeRules,
                   grid: AnalysisGrid) -> gpd.GeoDataFrame:
    """The ``land_cleared`` layer (:data:`CLEARING_COLUMNS`, in the grid's CRS), largest first."""
    if count == 0:
        return empty_clearing(grid.crs)
    polygons = _polygons(labels, count, grid.transform)
    index = np.arange(1, count + 1)
    starts = _typical_start(labels, count, since)
    frame = gpd.GeoDataFrame({
        "first_seen": [when[k] for k in starts],
        "green_before": np.round(ndimage.mean(dates[0].green, labels, index), 3),
        "green_after": np.round(ndimage.mean(dates[-1].green, labels, index), 3),
        "pattern_corr": np.round(ndimage.mean(correlation, labels, index), 3),
    }, geometry=polygons, crs=grid.crs)
    metric = frame.to_crs(utm_crs(grid.crs, tuple(frame.total_bounds)))
    frame["area_m2"] = np.round(metric.geometry.area.to_numpy(), 1)
    frame["later_dates_seen"] = _later_dates_seen(labels, count, starts, dates)
    frame["lon"], frame["lat"] = zip(*centroid_lonlat(metric), strict=True)
    frame = frame[frame["area_m2"] >= rules.land_cleared_min_area_m2].sort_values("area_m2", ascending=False)
    frame["clearing_id"] = np.arange(1, len(frame) + 1)
    return gpd.GeoDataFrame(frame[[*CLEARING_COLUMNS, "geometry"]].reset_index(drop=True), crs=grid.crs)


def _polygons(labels: np.ndarray, count: int, transform: Affine) -> list[shapely.Geometry]:
    pieces: list[list[shapely.Geometry]] = [[] for _ in range(count)]
    for geometry, value in shapes(labels, mask=labels > 0, transform=transform, connectivity=8):
        pieces[int(value) - 1].append(shapely.geometry.shape(geometry))
    return [shapely.union_all(parts) for parts in pieces]


def _typical_start(labels: np.ndarray, count: int, since: np.ndarray) -> np.ndarray:
    """Per area, the earliest date index by which at least half of its pixels were cleared (every
    pixel of an area is cleared: the opening only removes pixels)."""
    index = np.arange(1, count + 1)
    start = np.zeros(count, int)
    for k in range(int(since.max()), 0, -1):
        start[np.asarray(ndimage.mean(since <= k, labels, index)) >= 0.5] = k
    return start


def _later_dates_seen(labels: np.ndarray, count: int, starts: np.ndarray, dates: list[DateLayers]) -> np.ndarray:
    """Per area, how many dates after its start saw most of it (each confirms it stayed cleared)."""
    index = np.arange(1, count + 1)
    seen = np.zeros(count, int)
    for k, date in enumerate(dates):
        seen += (np.asarray(ndimage.mean(date.seen, labels, index)) >= 0.5) & (k > starts)
    return seen


def empty_clearing(crs: CRS | None) -> gpd.GeoDataFrame:
    """A ``land_cleared`` layer with no area, with the column types of a layer with areas."""
    types = {"clearing_id": "int64", "later_dates_seen": "int64", "first_seen": object}
    columns = {c: pd.Series([], dtype=types.get(c, "float64")) for c in CLEARING_COLUMNS}
    return gpd.GeoDataFrame(columns, geometry=gpd.GeoSeries([], crs=crs), crs=crs)


def has_colour(images: list[Path]) -> bool:
    """Whether every date has the three bands the stage reads colour from (grey imagery has none)."""
    for image in images:
        with rasterio.open(image) as dataset:
            if dataset.count < 3:
                return False
    return True


def find_cleared_land(images: list[Path], masks: list[Path], shifts: list[Shift], when: list[dt.date],
                      grid: AnalysisGrid, rules: ChangeRules) -> gpd.GeoDataFrame | None:
    """The site's cleared areas (see the module docstring) as the ``land_cleared`` layer, or None
    (not assessed) when a date has no colour bands: grey imagery shows no greenness.

    Args:
        images: each date's raster on the site's grid (the first date's grid), sorted by date.
        masks: each date's ``mask.tif`` on that grid (:mod:`sitewatch.products`).
        shifts: per later date, the shift measured against the first.
        when: the dates.
        grid: the analysis grid (:meth:`AnalysisGrid.of_site`).
        rules: ``clearing_*`` and ``land_cleared_min_area_m2``.

    Returns:
        One polygon per cleared area in the grid's CRS, with area (m²), first date seen cleared,
        the number of later dates that confirm it, mean greenness before and after, mean pattern
        correlation and centroid lon/lat (EPSG:4326).
    """
    if not has_colour(images):
        return None
    dates = [read_date(image, mask, grid, shift) for image, mask, shift in
             zip(images, masks, [None, *shifts], strict=True)]
    since, correlation = cleared_since(dates, rules, grid)
    labels, count = cleared_areas(since, rules, grid)
    return describe_areas(labels, count, since, correlation, dates, when, rules, grid)
