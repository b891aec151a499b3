"""What the segmented dates tell the change rules beyond footprints: the ground every date saw,
and how sure a date was of a building on given ground.

Reads the segmentation products (:mod:`sitewatch.products`) strip by strip, so memory follows
the raster's width, not its area.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
import shapely.geometry
from rasterio.features import rasterize, shapes
from rasterio.windows import Window
from scipy import ndimage

from sitewatch.products import MASK_NODATA, decode_probability
from sitewatch.summary import CoverageRecord

STRIP_ROWS = 2048
#: A building is resolved by a date whose pixels are at most 1/RESOLVE_PX of its side (about 4 px a side).
RESOLVE_PX = 4.0
#: Dates whose own pixel sizes differ by more than this factor are a mixed-sensor series.
MIXED_SENSOR_RATIO = 1.25


@dataclass
class Coverage:
    """How much of the site each date saw (shares 0-1 of the first raster's grid)."""

    per_date: list[float]
    all_dates: float

    def record(self, dates: list) -> CoverageRecord:
        """The coverage as reported: shares rounded to 4 decimals, per ISO date."""
        return CoverageRecord({d.isoformat(): round(v, 4) for d, v in zip(dates, self.per_date, strict=True)},
                              round(self.all_dates, 4))


def observed_ground(mask_paths: list[Path]) -> tuple[shapely.Geometry, list[shapely.Geometry], Coverage]:
    """The ground with valid data at every date, at each date (polygons in the masks' CRS), and the coverage.

    Masks are on one grid (every date warped onto the first); nodata (outside a raster,
    declared nodata, NaN/inf pixels, clouds masked out) is :data:`MASK_NODATA`.
    """
    together, shares, per_date = None, [], []
    for path in mask_paths:
        with rasterio.open(path) as dataset:
            valid = dataset.read(1) != MASK_NODATA
            transform = dataset.transform
        shares.append(float(valid.mean()))
        per_date.append(_polygon_of(valid, transform))
        together = valid if together is None else together & valid
    return _polygon_of(together, transform), per_date, Coverage(per_date=shares, all_dates=float(together.mean()))


def _polygon_of(valid: np.ndarray, transform: rasterio.Affine) -> shapely.Geometry:
    pieces = [shapely.geometry.shape(geometry) for geometry, _ in
              shapes(valid.astype(np.uint8), mask=valid, transform=transform)]
    return shapely.union_all(pieces)


def mean_probability_under(frame: gpd.GeoDataFrame, probability_path: Path) -> np.ndarray:
    """Mean building probability (0-1) of a date under each polygon (same CRS as the raster).

    Every pixel a polygon touches counts; 0 for a polygon on no pixel. Read in strips of
    :data:`STRIP_ROWS` rows, each with the polygons that reach it.
    """
    if frame.empty:
        return np.zeros(0)
    index = np.arange(1, len(frame) + 1)
    sums, counts = np.zeros(len(frame)), np.zeros(len(frame))
    tree = shapely.STRtree(frame.geometry.values)
    with rasterio.open(probability_path) as dataset:
        for top in range(0, dataset.height, STRIP_ROWS):
            window = Window(0, top, dataset.width, min(STRIP_ROWS, dataset.height - top))
            reach = tree.query(shapely.box(*rasterio.windows.bounds(window, dataset.transform)))
            if len(reach) == 0:
                continue
            values = decode_probability(dataset.read(1, window=window))
            labels = rasterize([(frame.geometry.values[i], i + 1) for i in sorted(reach)], out_shape=values.shape,
                               transform=dataset.window_transform(window), fill=0, dtype="int32", all_touched=True)
            sums += ndimage.sum(values, labels, index)
            counts += ndimage.sum(np.ones_like(values), labels, index)
    return np.divide(sums, counts, out=np.zeros(len(frame)), where=counts > 0)


def judge_at_resolution(changes: gpd.GeoDataFrame, pixel_sizes_m: list[float]) -> gpd.GeoDataFrame:
    """Changes of a series whose dates have different pixel sizes (SkySat 0.5 m and PlanetScope 3 m)
    judged at what the coarsest date resolves.

    In a mixed series every record gets ``judged_at_m`` (the coarsest date's pixel size; a series of
    one pixel size is returned as it is). A building that appears or disappears (new, demolished) smaller than the
    coarsest date resolves (:data:`RESOLVE_PX` pixels a side, 144 m² at 3 m) is ``not_observed``
    and loses its flag: a coarse date that cannot see a small building is no evidence it was
    built or torn down.
    """
    coarse, fine = max(pixel_sizes_m), min(pixel_sizes_m)
    if coarse <= MIXED_SENSOR_RATIO * fine:
        return changes
    changes = changes.copy()
    changes["judged_at_m"] = round(coarse, 3)
    unresolved = changes["change"].isin(["new", "demolished"]) & (changes["area_m2"] < (RESOLVE_PX * coarse) ** 2)
    changes.loc[unresolved, "change"] = "not_observed"
    if "flag" in changes.columns:
        changes.loc[unresolved, "flag"] = None
    return changes
