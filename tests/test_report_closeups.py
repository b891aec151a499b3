"""The report's close-ups draw every building in the colour of its own change class (issue 34: new houses
beside a flagged cluster were drawn in the "unchanged" blue)."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest
import rasterio
from shapely.geometry import box

from sitewatch import report
from sitewatch.paths import DEMO_SITE


def test_close_up_neighbours_keep_their_class_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[list[report.Outline]] = []
    monkeypatch.setattr(report, "picture", lambda raster, window, size, outlines, *rest: drawn.append(outlines))
    rasters = sorted(Path(DEMO_SITE).glob("*.tif"))
    with rasterio.open(rasters[-1]) as source:
        left, bottom = source.bounds.left, source.bounds.bottom
        crs = source.crs
    houses = [box(left + 10 * i, bottom + 10, left + 10 * i + 8, bottom + 18) for i in range(4)]
    changes = gpd.GeoDataFrame({"change_id": [1, 2, 3, 4], "change": ["new", "new", "unchanged", "expanded"],
                                "date_seen": ["2018-01-01"] * 4}, geometry=houses, crs=crs)
    members = changes[changes["change_id"] == 1]
    report._crop("cluster", members.total_bounds, changes, members, rasters, ["2002-01-01", "2018-01-01"])
    after = drawn[-1]
    for outline in after:
        for change in outline.frame["change"]:
            assert outline.colour == report.COLOURS[change], (change, outline.colour)
    thick = [outline for outline in after if outline.width == 3 and len(outline.frame)]
    assert [list(outline.frame["change_id"]) for outline in thick] == [[1]]  # the flagged one, thick
    drawn_ids = sorted(i for outline in after for i in outline.frame["change_id"])
    assert drawn_ids == [1, 1, 2, 3, 4]  # every building of the last date once thin, the flagged one also thick
