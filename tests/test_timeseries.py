"""Time series of three or more dates on real pixels: appear-and-stay, flicker, presence, SCOT.

The site is the demo's LEVIR-CD crop (Texas, ~0.5 m): 2002 and 2018 as published, and a third
date made from the 2018 image with another radiometry (gamma and gain, as a different sensor or
season would give) and moved by two pixels: nothing on the ground changed after 2018.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from conftest import chosen, run_sitewatch

from sitewatch.change import compare_dates
from sitewatch.paths import DEMO_SITE
from sitewatch.pipeline import run_site
from sitewatch.rules import ChangeRules
from sitewatch.scot import DateFootprints, scot
from sitewatch.summary import SiteSummary

EARLIER, LATER = sorted(DEMO_SITE.glob("*.tif"))


@pytest.fixture(scope="module")
def three_dates(tmp_path_factory: pytest.TempPathFactory):
    """The site run at 2002, 2018 and a re-imaged, shifted 2018 labelled 2019."""
    folder = tmp_path_factory.mktemp("series")
    with rasterio.open(LATER) as source:
        profile, pixels = source.profile, source.read().astype(np.float64)
    regraded = np.clip(255 * (pixels / 255) ** 0.8 * 1.1 + 6, 0, 255)
    moved = np.roll(regraded, (1, 2), axis=(1, 2)).astype(np.uint8)  # 1 px south, 2 px east
    third = folder / "texas_train36_2019-01-01.tif"
    with rasterio.open(third, "w", **profile) as out:
        out.write(moved)
    run_site([EARLIER, LATER, third], folder / "out", chosen([EARLIER, LATER, third]))
    return folder / "out"


@pytest.fixture(scope="module")
def summary(three_dates: Path) -> SiteSummary:
    return SiteSummary.from_json((three_dates / "summary.json").read_text())


def test_a_building_that_appears_at_date_2_and_stays_is_new_from_date_2_once(summary: SiteSummary) -> None:
    assert summary.dates == ["2002-01-01", "2018-01-01", "2019-01-01"]
    new = [b for b in summary.new_buildings if b.change_class == "new"]
    assert len(new) >= 5
    assert {b.first_seen for b in new} == {"2018-01-01"}
    assert {b.presence for b in new} == {"011"} and {b.last_seen for b in new} == {"2019-01-01"}
    assert len({b.id for b in summary.new_buildings}) == len(summary.new_buildings)  # one record a building
    flagged = [b for b in new if b.flag]
    assert flagged and summary.flags.housing == len([b for b in flagged if b.flag == "housing"])


def test_a_re_imaged_and_shifted_date_changes_nothing(summary: SiteSummary) -> None:
    first, second, third = summary.per_date
    assert (third.new, third.demolished) == (0, 0)
    assert second.new >= 5 and third.buildings == pytest.approx(second.buildings, abs=1)
    assert summary.shift[1].applied is False or abs(summary.shift[1].dx_px - 2) < 0.5


def test_evaluate_change_scores_a_series_with_scot(three_dates: Path, summary: SiteSummary, tmp_path: Path) -> None:
    """The site's own tracked footprints as truth (ids renamed) score 1; an id swapped at the last
    date is a tracking mismatch."""
    import geopandas as gpd
    import pandas as pd

    days = [gpd.read_file(three_dates / f"footprints_{date}.gpkg").assign(date=date) for date in summary.dates]
    truth = gpd.GeoDataFrame(pd.concat(days, ignore_index=True), crs=days[0].crs)
    truth["id"] = truth["track_id"] + 1000
    truth[["date", "id", "geometry"]].to_file(tmp_path / "truth.gpkg")
    result = run_sitewatch("evaluate-change", str(three_dates), str(tmp_path / "truth.gpkg"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["scot"]
    onsets = int((truth.groupby("id")["date"].min() > summary.dates[0]).sum())  # ids first seen later
    assert onsets >= 5
    assert (report["scot"], report["mismatches"], report["change_tp"], report["change_fp"]) == (1.0, 0, onsets, 0)
    last = truth["date"] == summary.dates[-1]
    first_two = truth.index[last][:2]
    truth.loc[first_two, "id"] = truth.loc[first_two[::-1], "id"].to_numpy()
    truth[["date", "id", "geometry"]].to_file(tmp_path / "swapped.gpkg")
    swapped = json.loads(run_sitewatch("evaluate-change", str(three_dates), str(tmp_path / "swapped.gpkg")).stdout)
    assert swapped["scot"]["mismatches"] == 2 and swapped["scot"]["scot"] < 1.0


D = [dt.date(2020, 1, 1), dt.date(2021, 1, 1), dt.date(2022, 1, 1), dt.date(2023, 1, 1)]


def _layer(boxes: list[shapely.Polygon]):
    import geopandas as gpd

    frame = gpd.GeoDataFrame(geometry=boxes, crs=32615)
    return frame.assign(area_m2=frame.area, width_m=20.0, elongation=1.0, rectangularity=1.0,
                        mean_probability=0.9)


def test_a_detection_that_comes_and_goes_is_not_a_change() -> None:
    """Constructed series: a house flickers in and out, another is missed once; neither is a change."""
    stays = shapely.box(0, 0, 20, 20)
    missed_once = shapely.box(100, 0, 120, 20)
    flicker = shapely.box(200, 0, 220, 20)
    frames = [_layer([stays, missed_once]), _layer([stays, flicker]), _layer([stays, missed_once]),
              _layer([stays, missed_once])]
    result = compare_dates(frames, D, ChangeRules.default())
    records = result.changes.set_index("presence")
    # the flicker is in a record of its own, which claims no change (every building of every date is in one)
    assert sorted(result.changes["presence"]) == ["0100", "1011", "1111"]
    assert records.loc["0100", "change"] == "unconfirmed"
    assert set(records.drop(index="0100")["change"]) == {"unchanged"}
    assert records.loc["1011", "first_seen"] == D[0]


def test_a_building_missed_once_after_appearing_is_new_from_when_it_stays() -> None:
    stays = shapely.box(0, 0, 20, 20)
    house = shapely.box(100, 0, 120, 20)
    frames = [_layer([stays]), _layer([stays, house]), _layer([stays]), _layer([stays, house])]
    changes = compare_dates(frames, D, ChangeRules.default()).changes
    (record,) = changes[changes["change"] == "new"].itertuples()
    assert (record.presence, record.first_seen, record.last_seen) == ("0101", D[3], D[3])


def test_ground_not_seen_is_no_evidence_of_absence() -> None:
    stays = shapely.box(0, 0, 20, 20)
    house = shapely.box(100, 0, 120, 20)
    everything = shapely.box(-50, -50, 300, 300)
    cloud_over_house = everything.difference(shapely.box(90, -10, 130, 30))
    frames = [_layer([stays]), _layer([stays, house]), _layer([stays]), _layer([stays, house])]
    changes = compare_dates(frames, D, ChangeRules.default(),
                            seen=[everything, everything, cloud_over_house, everything]).changes
    (record,) = changes[changes["change"] == "new"].itertuples()
    assert (record.presence, record.first_seen) == ("01-1", D[1])


def _series(*dates: list[tuple[int, shapely.Polygon]]) -> list[DateFootprints]:
    return [DateFootprints([i for i, _ in date], [g for _, g in date]) for date in dates]


def test_scot_on_a_constructed_series() -> None:
    """Hand-computed: tracking 7 TP, 1 FP, 1 FN → 0.875; change 1/1/1 → 0.5; SCOT (β 2) 0.7609."""
    a, b, c, d, stray = (shapely.box(x, 0, x + 20, 20) for x in (0, 100, 200, 300, 500))
    nudged = shapely.box(1, 1, 21, 21)
    truth = _series([(1, a), (2, b)], [(1, a), (2, b), (3, c)], [(1, a), (3, c), (4, d)])
    found = _series([(10, nudged), (20, b)], [(10, a), (20, b), (30, c)], [(10, a), (30, c), (99, stray)])
    scores = scot(truth, found)
    assert (scores.tracking_tp, scores.tracking_fp, scores.tracking_fn, scores.mismatches) == (7, 1, 1, 0)
    assert (scores.change_tp, scores.change_fp, scores.change_fn) == (1, 1, 1)
    assert scores.tracking_score == pytest.approx(0.875) and scores.change_score == pytest.approx(0.5)
    assert scores.scot == pytest.approx(5 * 0.5 * 0.875 / (4 * 0.5 + 0.875))
    swapped = _series([(10, nudged), (20, b)], [(10, a), (20, b), (30, c)], [(30, a), (10, c), (99, stray)])
    scores = scot(truth, swapped)  # the ids of A and C swap at the last date: two mismatches
    assert scores.mismatches == 2 and scores.tracking_score == pytest.approx(5 / 8)


def test_the_report_of_a_series_has_a_timeline_and_quotable_headlines(three_dates: Path, summary: SiteSummary) -> None:
    page = (three_dates / "report.html").read_text()
    assert 'id="timeline"' in page and page.count("<rect ") == 3 * len(summary.dates)
    for cluster in summary.housing_clusters:
        assert (f"New housing: {cluster.count} new buildings close together ({cluster.total_area_m2:,.0f} m² in all), "
                f"first seen {cluster.first_seen}") in page
    assert "from the file name" not in page and "file name" in page  # each date's source, stated


def test_summary_json_reads_back_to_the_same_document(three_dates: Path) -> None:
    text = (three_dates / "summary.json").read_text()
    assert SiteSummary.from_json(text).to_json() == text
