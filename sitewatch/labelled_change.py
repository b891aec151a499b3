"""A change run scored against footprints labelled at both dates with persistent ids (SpaceNet 7).

Labels: a later footprint whose ``Id`` the earlier date lacks is *new*; an earlier one the later date
lacks has *vanished* (in SpaceNet 7 mostly label noise, rarely a demolition); both dates' ids *stayed*.

The rules (units m and m², in a metric CRS of the caller's choice, ``tolerance_m`` about one sensor pixel):

- **found**: a labelled new building with at least half its area under a reported change that claims
  new ground (``new``, ``expanded``, ``replaced``) or under a reported housing area;
- **right new record**: a ``new`` record with at least half its area on labelled new footprints grown by
  ``tolerance_m`` (a blob of houses and the fields between them is not right, a house traced a pixel
  wide is);
- **area recall / precision**: labelled new area under new-ground claims / labelled new area, and new
  records' area on grown labelled new footprints / new records' area;
- **false hall**: a record flagged ``assembly_hall`` with less than half its area on labelled footprints
  of the later date (grown);
- **false demolition**: a ``demolished`` record with less than half its area on vanished footprints (grown);
- **housing area right**: a reported housing area that holds at least three labelled new buildings.

Everything is counted inside ``region`` only (objects whose representative point lies in it), so that
ground used for training or tuning can be left out of the score.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import geopandas as gpd
import numpy as np
import shapely

CLAIMS_NEW_GROUND = ("new", "expanded", "replaced")


@dataclass(frozen=True)
class LabelledChangeScore:
    """Scores of one pair of dates (counts, shares 0-1, areas m²)."""

    labelled_new: int
    labelled_new_m2: float
    found: int
    recall: float
    new_records: int
    right_new_records: int
    precision: float
    area_recall: float
    area_precision: float
    housing_areas: int
    right_housing_areas: int
    estimated_new_in_housing: int
    labelled_new_in_housing: int
    halls_flagged: int
    false_halls: int
    demolished_records: int
    false_demolitions: int
    expanded_records: int
    labelled_large_new: int  # labelled new buildings of at least large_m2
    large_new_flagged_hall: int

    def as_dict(self) -> dict[str, float | int]:
        return {key: round(value, 4) if isinstance(value, float) else value for key, value in asdict(self).items()}


def _inside(frame: gpd.GeoDataFrame, region: shapely.Geometry | None) -> gpd.GeoDataFrame:
    if region is None or frame.empty:
        return frame
    return frame[shapely.contains(region, frame.geometry.representative_point().values)]


def _share_on(geometries: np.ndarray, ground: shapely.Geometry) -> np.ndarray:
    """Share (0-1) of each geometry's area that lies on ``ground``."""
    if len(geometries) == 0:
        return np.zeros(0)
    areas = shapely.area(geometries)
    on = shapely.area(shapely.intersection(geometries, ground))
    return np.divide(on, areas, out=np.zeros_like(on), where=areas > 0)


def score_labelled_change(changes: gpd.GeoDataFrame, housing: gpd.GeoDataFrame | None,
                          earlier: gpd.GeoDataFrame, later: gpd.GeoDataFrame, *,
                          region: shapely.Geometry | None = None, tolerance_m: float = 4.0,
                          large_m2: float = 1000.0) -> LabelledChangeScore:
    """Score one change run (``changes.gpkg``'s layers) against the labels of its two dates.

    Args:
        changes: the ``changes`` layer (``change``, ``flag`` columns), in a metric CRS.
        housing: the housing areas layer (its ``count``: buildings, estimated where a group is in it), same CRS;
            None for none.
        earlier, later: labelled footprints with an ``Id`` column, same CRS.
        region: where to count (same CRS); None counts everywhere.
        tolerance_m: how far an outline may run past a labelled footprint and still be on it (m).
        large_m2: a labelled new building at least this large should be flagged as a hall.
    """
    earlier_ids, later_ids = set(earlier["Id"]), set(later["Id"])
    new = _inside(later[~later["Id"].isin(earlier_ids)], region)
    vanished = _inside(earlier[~earlier["Id"].isin(later_ids)], region)
    changes = _inside(changes, region)
    housing = _inside(housing, region) if housing is not None else None
    claims = changes[changes["change"].isin(CLAIMS_NEW_GROUND)].geometry.values
    if housing is not None and len(housing):
        claims = np.concatenate([claims, housing.geometry.values])
    claimed = shapely.union_all(claims) if len(claims) else shapely.Polygon()
    found = _share_on(new.geometry.values, claimed) >= 0.5
    new_ground = shapely.union_all(shapely.buffer(new.geometry.values, tolerance_m))
    later_ground = shapely.union_all(shapely.buffer(later.geometry.values, tolerance_m))
    vanished_ground = shapely.union_all(shapely.buffer(vanished.geometry.values, tolerance_m))
    new_records = changes[changes["change"] == "new"]
    right = _share_on(new_records.geometry.values, new_ground) >= 0.5
    new_area = float(new.geometry.area.sum())
    record_area = float(new_records.geometry.area.sum())
    halls = changes[changes["flag"].fillna("").astype(str).str.contains("assembly_hall")]
    demolished = changes[changes["change"] == "demolished"]
    in_housing = _count_in(housing, new) if housing is not None else np.zeros(0, int)
    large = new[new.geometry.area >= large_m2]
    hall_ground = shapely.union_all(halls.geometry.values) if len(halls) else shapely.Polygon()
    return LabelledChangeScore(
        labelled_new=len(new), labelled_new_m2=round(new_area, 1), found=int(found.sum()),
        recall=float(found.mean()) if len(new) else 0.0,
        new_records=len(new_records), right_new_records=int(right.sum()),
        precision=float(right.mean()) if len(new_records) else 0.0,
        area_recall=float(shapely.area(shapely.intersection(shapely.union_all(new.geometry.values), claimed))
                          / new_area) if new_area else 0.0,
        area_precision=float(shapely.area(shapely.intersection(
            shapely.union_all(new_records.geometry.values), new_ground)) / record_area) if record_area else 0.0,
        housing_areas=0 if housing is None else len(housing), right_housing_areas=int((in_housing >= 3).sum()),
        estimated_new_in_housing=int(housing["count"].sum()) if housing is not None and "count" in housing else 0,
        labelled_new_in_housing=int(in_housing.sum()),
        halls_flagged=len(halls), false_halls=int((_share_on(halls.geometry.values, later_ground) < 0.5).sum()),
        demolished_records=len(demolished),
        false_demolitions=int((_share_on(demolished.geometry.values, vanished_ground) < 0.5).sum()),
        expanded_records=int((changes["change"] == "expanded").sum()),
        labelled_large_new=len(large),
        large_new_flagged_hall=int((_share_on(large.geometry.values, hall_ground) >= 0.5).sum()))


def _count_in(areas: gpd.GeoDataFrame, buildings: gpd.GeoDataFrame) -> np.ndarray:
    """Labelled buildings whose representative point lies in each area."""
    points = buildings.geometry.representative_point().values
    return np.array([int(shapely.contains(area, points).sum()) for area in areas.geometry.values], int)
