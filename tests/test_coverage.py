"""Coverage-aware change on real pixels: NaN blocks, partial coverage and clouds never invent changes."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from conftest import chosen

from sitewatch.checkpoint import load_model
from sitewatch.paths import DEMO_SITE, default_model_path
from sitewatch.pipeline import run_site
from sitewatch.predict import Predictor
from sitewatch.summary import SiteSummary

EARLIER, LATER = sorted(DEMO_SITE.glob("*.tif"))
BLOCK = (slice(120, 256), slice(0, 128))  # rows, columns of the later image blanked out:
# the south-west quadrant, where most of the 2002 buildings stand


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(load_model(default_model_path()), device="cpu", backend="auto")


@pytest.fixture(scope="module")
def full_run(predictor: Predictor, tmp_path_factory: pytest.TempPathFactory) -> SiteSummary:
    out = tmp_path_factory.mktemp("full") / "site"
    return run_site([EARLIER, LATER], out, chosen([EARLIER, LATER])).summary


def _later_variant(folder: Path, name: str, edit) -> Path:
    with rasterio.open(LATER) as source:
        pixels, profile = source.read(), source.profile
    pixels, profile = edit(pixels, profile)
    profile.pop("photometric", None)
    target = folder / name
    with rasterio.open(target, "w", **profile) as out:
        out.write(pixels)
    return target


def _block_polygon() -> shapely.Geometry:
    with rasterio.open(LATER) as source:
        transform = source.transform
    (r0, r1), (c0, c1) = (BLOCK[0].start, BLOCK[0].stop), (BLOCK[1].start, BLOCK[1].stop)
    x0, y0 = transform @ (c0, r0)
    x1, y1 = transform @ (c1, r1)
    return shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def _changes(out: Path) -> gpd.GeoDataFrame:
    return gpd.read_file(out / "changes.gpkg", layer="changes")


def _strict_json(path: Path) -> SiteSummary:
    """summary.json, refused if it holds NaN or Infinity, read back as the typed summary."""
    def refuse(constant: str) -> None:
        raise AssertionError(f"summary.json holds {constant}")

    json.loads(path.read_text(), parse_constant=refuse)
    return SiteSummary.from_json(path.read_text())


def test_nan_block_is_nodata_and_never_a_change(predictor: Predictor, tmp_path: Path, full_run: SiteSummary) -> None:
    def nan_block(pixels: np.ndarray, profile: dict):
        values = pixels.astype(np.float32) / 255.0
        values[:, BLOCK[0], BLOCK[1]] = np.nan
        values[0, 10:14, 10:14] = np.inf
        return values, {**profile, "dtype": "float32", "nodata": None}

    later = _later_variant(tmp_path, "texas_2018-01-01.tif", nan_block)
    out = tmp_path / "site"
    run_site([EARLIER, later], out, chosen([EARLIER, later]))
    summary = _strict_json(out / "summary.json")
    block = _block_polygon()
    changes = _changes(out)
    changed = changes[changes["change"].isin(["new", "demolished", "expanded"])]
    inside = shapely.area(shapely.intersection(changed.geometry.values, block)) / shapely.area(changed.geometry.values)
    assert not np.any(inside > 0.5), changed[inside > 0.5][["change", "area_m2"]]
    assert summary.flags.assembly_hall == 0
    blanked = (BLOCK[0].stop - BLOCK[0].start) * (BLOCK[1].stop - BLOCK[1].start) / 256**2
    assert summary.coverage.observed_at_every_date_share == pytest.approx(1 - blanked, abs=0.01)
    assert summary.counts.not_observed > 0  # first-date buildings under the block
    assert summary.counts.demolished <= full_run.counts.demolished


def test_segment_marks_non_finite_pixels_as_nodata(predictor: Predictor, tmp_path: Path) -> None:
    from sitewatch.predict import segment_raster

    def nan_block(pixels: np.ndarray, profile: dict):
        values = pixels.astype(np.float32) / 255.0
        values[:, BLOCK[0], BLOCK[1]] = np.nan
        values[1, 0:8, 0:8] = -np.inf  # outside the block: one band is enough
        return values, {**profile, "dtype": "float32", "nodata": None}

    raster = _later_variant(tmp_path, "nan.tif", nan_block)
    result = segment_raster(raster, tmp_path / "out", predictor)
    with rasterio.open(result.mask_path) as mask:
        values = mask.read(1)
    assert np.all(values[BLOCK] == 255) and np.all(values[0:8, 0:8] == 255)
    assert np.all(values[20:100, 150:] != 255)


def test_partial_coverage_is_not_observed_not_demolished(predictor: Predictor, tmp_path: Path,
                                                         full_run: SiteSummary) -> None:
    """A later image that covers only the eastern half of the site (the 2002 buildings are west)."""
    def east_half(pixels: np.ndarray, profile: dict):
        transform = profile["transform"] @ rasterio.Affine.translation(128, 0)
        return np.ascontiguousarray(pixels[:, :, 128:]), {**profile, "width": 128, "transform": transform}

    later = _later_variant(tmp_path, "texas_2018-01-01.tif", east_half)
    out = tmp_path / "site"
    run_site([EARLIER, later], out, chosen([EARLIER, later]))
    summary = _strict_json(out / "summary.json")
    assert summary.coverage.observed_at_every_date_share == pytest.approx(0.5, abs=0.01)
    changes = _changes(out)
    with rasterio.open(EARLIER) as source:
        middle_x = (source.transform @ (128, 0))[0]
    where = changes.to_crs(source.crs).geometry.representative_point().x.to_numpy()
    # new or demolished only where both dates see the ground; the unseen west is not_observed
    assert set(changes["change"][where < middle_x]) <= {"not_observed", "unchanged"}
    assert not (changes["change"][where > middle_x] == "not_observed").any()
    assert summary.counts.not_observed > 0
    assert summary.counts.demolished < full_run.counts.demolished + summary.counts.not_observed


def test_cloud_over_standing_buildings_is_not_a_demolition(predictor: Predictor, tmp_path: Path,
                                                           full_run: SiteSummary) -> None:
    """A uint8 later image with declared nodata (0) over a block, as a cloud mask would give."""
    def cloud(pixels: np.ndarray, profile: dict):
        pixels = np.maximum(pixels, 1)
        pixels[:, BLOCK[0], BLOCK[1]] = 0
        return pixels, {**profile, "nodata": 0}

    later = _later_variant(tmp_path, "texas_2018-01-01.tif", cloud)
    out = tmp_path / "site"
    run_site([EARLIER, later], out, chosen([EARLIER, later]))
    summary = _strict_json(out / "summary.json")
    changes = _changes(out)
    block = _block_polygon()
    demolished = changes[changes["change"] == "demolished"].to_crs("EPSG:4326")
    inside = shapely.area(shapely.intersection(demolished.geometry.values, block))
    assert not np.any(inside > 0.5 * shapely.area(demolished.geometry.values))
    assert summary.counts.not_observed > 0
