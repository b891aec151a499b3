"""The labelled-change score (sitewatch.labelled_change) on real SpaceNet 7 footprints with ids across months."""

from __future__ import annotations

import geopandas as gpd
import pandas as pd
import pytest
import shapely
from conftest import SAMPLES

from sitewatch.data.spacenet7 import months, read_month_buildings
from sitewatch.labelled_change import score_labelled_change

AOI = SAMPLES / "spacenet7_dev" / "L15-0331E-1257N_1327_3160_13"
UTM = "EPSG:32610"


@pytest.fixture(scope="module")
def labels() -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    early, late = months(AOI)
    return read_month_buildings(early, UTM), read_month_buildings(late, UTM)


def _records(geometries, change: str, flag: str = "") -> gpd.GeoDataFrame:
    geometries = list(geometries)
    return gpd.GeoDataFrame({"change": [change] * len(geometries), "flag": [flag] * len(geometries)},
                            geometry=geometries, crs=UTM)


def test_the_labels_themselves_score_perfectly(labels) -> None:
    earlier, later = labels
    new = later[~later["Id"].isin(earlier["Id"])]
    assert len(new) == 102  # of the 221 footprints touching the sample window in 2020-01
    changes = pd.concat([_records(new.geometry, "new"),
                         _records(later[later["Id"].isin(earlier["Id"])].geometry, "unchanged")], ignore_index=True)
    score = score_labelled_change(changes, None, earlier, later)
    assert (score.found, score.right_new_records, score.false_halls, score.false_demolitions) == (102, 102, 0, 0)
    assert score.area_recall == pytest.approx(1.0) and score.area_precision == pytest.approx(1.0)


def test_an_estate_blob_finds_houses_but_is_no_right_record(labels) -> None:
    earlier, later = labels
    new = later[~later["Id"].isin(earlier["Id"])]
    blob = shapely.convex_hull(shapely.union_all(new.geometry.values))  # the houses and the ground between
    stayed = later[later["Id"].isin(earlier["Id"])].geometry.iloc[:3]
    changes = pd.concat([_records([blob], "new", "assembly_hall"), _records(stayed, "demolished")], ignore_index=True)
    score = score_labelled_change(changes, None, earlier, later)
    assert score.found == 102 and score.right_new_records == 0  # every house under it, yet no right record
    assert score.area_precision == pytest.approx(0.126, abs=0.005)  # 87 % of the blob is ground between houses
    assert (score.false_halls, score.false_demolitions) == (1, 3)


def test_a_housing_area_is_scored_with_its_count(labels) -> None:
    earlier, later = labels
    new = later[~later["Id"].isin(earlier["Id"])]
    outline = shapely.convex_hull(shapely.union_all(new.geometry.values))
    housing = gpd.GeoDataFrame({"count": [80], "count_estimated": [True]}, geometry=[outline], crs=UTM)
    score = score_labelled_change(_records([], "new"), housing, earlier, later)
    assert (score.housing_areas, score.right_housing_areas) == (1, 1)
    assert score.estimated_new_in_housing == 80 and score.labelled_new_in_housing == 102
    assert score.found == 102  # a labelled house under a reported housing area is found
