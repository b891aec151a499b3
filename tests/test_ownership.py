"""The third probe (issue 25): never overwrite what is not ours, never score or train on the wrong thing.

Every case feeds the kind of input the probe did, on real sample pixels (the demo site, the
Banepa own-data sample). Refusals come before any model load; one ``change`` run of the demo
site is shared by the module.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import rasterio
import rasterio.shutil
import shapely
from conftest import SAMPLES, assert_one_line_error, run_sitewatch

from sitewatch.data.common import burn_polygons
from sitewatch.errors import SitewatchError, SitewatchWarning
from sitewatch.outputs import MARKER, read_marker
from sitewatch.paths import DEMO_SITE

DEMO = sorted(DEMO_SITE.glob("*.tif"))  # texas_train36_2002-01-01.tif, texas_train36_2018-01-01.tif
OWN = SAMPLES / "own_data"
BUILDINGS = OWN / "banepa_buildings_4326.gpkg"  # 242 building polygons
RASTER = OWN / "banepa_utm45n.tif"
BOW_TIE = shapely.Polygon([(85.5200, 27.6300), (85.5201, 27.6301), (85.5201, 27.6300), (85.5200, 27.6301)])


@pytest.fixture(scope="module")
def demo_result(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``sitewatch change`` of the demo site (read only: copy it to change it)."""
    out = tmp_path_factory.mktemp("demo") / "texas"
    result = run_sitewatch("change", *map(str, DEMO), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def banepa_mask(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Banepa buildings burned onto the Banepa raster's grid: a 'prediction' equal to the reference."""
    path = tmp_path_factory.mktemp("banepa") / "pred.tif"
    with rasterio.open(RASTER) as dataset:
        grid = {"crs": dataset.crs, "transform": dataset.transform, "width": dataset.width, "height": dataset.height}
    footprints = gpd.read_file(BUILDINGS).to_crs(grid["crs"])
    label = burn_polygons(list(footprints.geometry.values), grid["transform"], (grid["height"], grid["width"]))
    with rasterio.open(path, "w", driver="GTiff", count=1, dtype="uint8", nodata=255, **grid) as out:
        out.write(label[None])
    return path


def _no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any model load fail the test: the refusal must come before it."""
    import sitewatch.checkpoint

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was refused")

    monkeypatch.setattr(sitewatch.checkpoint, "load_for_inference", refuse)


def _two_layers(path: Path, first: gpd.GeoDataFrame, first_name: str = "aoi") -> Path:
    """A GeoPackage whose first layer is ``first`` and whose second holds the Banepa buildings."""
    first.to_file(path, layer=first_name)
    gpd.read_file(BUILDINGS).to_file(path, layer="buildings")
    return path


def _aoi() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(geometry=[shapely.box(*gpd.read_file(BUILDINGS).total_bounds)], crs=4326)


# --- data loss ------------------------------------------------------------------------------------

def test_vectorize_never_overwrites_the_analysts_footprints(tmp_path: Path, banepa_mask: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    mask = Path(shutil.copy(banepa_mask, site / "building_mask.tif"))
    shutil.copy(BUILDINGS, site / "footprints.gpkg")
    (site / "footprints.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    before = (site / "footprints.gpkg").read_bytes()
    assert_one_line_error(run_sitewatch("vectorize", str(mask)), "footprints.gpkg: exists and sitewatch did not")
    assert (site / "footprints.gpkg").read_bytes() == before
    # into a folder of its own: written, recorded, and a rerun replaces its own files
    out = tmp_path / "out"
    assert run_sitewatch("vectorize", str(mask), "--out", str(out)).returncode == 0
    assert sorted(read_marker(out).files) == ["footprints.geojson", "footprints.gpkg"]
    assert run_sitewatch("vectorize", str(mask), "--out", str(out)).returncode == 0
    # an analyst adds a layer to our GeoPackage: it is theirs now
    pyogrio.write_dataframe(_aoi(), out / "footprints.gpkg", layer="analyst_review", append=True)
    assert_one_line_error(run_sitewatch("vectorize", str(mask), "--out", str(out)), "layer analyst_review added")
    assert "analyst_review" in pyogrio.list_layers(out / "footprints.gpkg")[:, 0]


def test_evaluate_never_overwrites_the_users_scores_or_its_input(tmp_path: Path, banepa_mask: Path) -> None:
    scores = tmp_path / "scores"
    scores.mkdir()
    (scores / "scores.json").write_text('{"mine": true}')
    shutil.copy(BUILDINGS, scores / "buildings.gpkg")
    result = run_sitewatch("evaluate", str(banepa_mask), str(BUILDINGS), "--out", str(scores))
    assert_one_line_error(result, "scores.json: exists and sitewatch did not write it")
    assert (scores / "scores.json").read_text() == '{"mine": true}'
    # site/pred.tif against site/buildings.gpkg --out site: the reference is an input
    site = tmp_path / "site"
    site.mkdir()
    reference = Path(shutil.copy(BUILDINGS, site / "buildings.gpkg"))
    result = run_sitewatch("evaluate", str(banepa_mask), str(reference), "--out", str(site))
    assert_one_line_error(result, "buildings.gpkg: is an input of this command")
    assert reference.read_bytes() == BUILDINGS.read_bytes()


def test_segment_refuses_an_earlier_change_result(tmp_path: Path, demo_result: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    shutil.copytree(demo_result, out / "X")
    raster = Path(shutil.copy(DEMO[0], tmp_path / "X.tif"))
    _no_model(monkeypatch)
    result = run_sitewatch("segment", str(raster), "--out", str(out))
    assert_one_line_error(result, "holds the result of 'sitewatch change', not of 'sitewatch segment'")
    assert (out / "X" / "report.html").is_file() and (out / "X" / "summary.json").is_file()


def test_change_rerun_refuses_a_layer_the_analyst_added(tmp_path: Path, demo_result: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "texas"
    shutil.copytree(demo_result, out)  # copies keep the content: still ours
    assert read_marker(out).command == "change"
    pyogrio.write_dataframe(_aoi(), out / "changes.gpkg", layer="analyst_review", append=True)
    _no_model(monkeypatch)
    result = run_sitewatch("change", *map(str, DEMO), "--out", str(out))
    assert_one_line_error(result, "changes.gpkg: changed since sitewatch wrote it (layer analyst_review added)")
    assert "analyst_review" in pyogrio.list_layers(out / "changes.gpkg")[:, 0]


def test_batch_refuses_the_users_summary_and_ids_that_differ_in_case(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for path in DEMO:
        shutil.copy(path, tmp_path / path.name)
    names = ", ".join(path.name for path in DEMO)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"sites:\n  - id: texas\n    rasters: [{names}]\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "batch_summary.csv").write_text("site,status\nmine,done\n")
    _no_model(monkeypatch)
    assert_one_line_error(run_sitewatch("batch", str(manifest), "--out", str(out)),
                          "batch_summary.csv: exists and sitewatch did not write it")
    assert (out / "batch_summary.csv").read_text() == "site,status\nmine,done\n"
    manifest.write_text(f"sites:\n  - id: Depot\n    rasters: [{names}]\n  - id: depot\n    rasters: [{names}]\n")
    assert_one_line_error(run_sitewatch("batch", str(manifest), "--out", str(tmp_path / "new")),
                          "duplicate site id 'depot'", "case")


# --- evaluation inputs ----------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["points", "empty_layer", "aoi_first"])
def test_evaluate_refuses_a_reference_that_is_not_buildings(case: str, tmp_path: Path, banepa_mask: Path) -> None:
    buildings = gpd.read_file(BUILDINGS)
    reference = tmp_path / "reference.gpkg"
    if case == "points":
        gpd.GeoDataFrame(geometry=buildings.geometry.centroid, crs=4326).to_file(reference)
        needle = "holds no building polygons (Point)"
    elif case == "empty_layer":
        buildings.iloc[:0].to_file(reference)
        needle = "reference holds no buildings"
    else:
        _two_layers(reference, _aoi())
        needle = "holds 2 layers (aoi, buildings); name the one with the buildings as"
    assert_one_line_error(run_sitewatch("evaluate", str(banepa_mask), str(reference)), needle)


def test_evaluate_reads_the_layer_named_and_repairs_geometry_saying_so(tmp_path: Path, banepa_mask: Path) -> None:
    from sitewatch.evaluate import evaluate_paths

    reference = _two_layers(tmp_path / "reference.gpkg", _aoi())
    report = evaluate_paths(banepa_mask, f"{reference}:buildings")
    assert report["buildings"]["reference"] == 242 and report["pixel"]["iou"] == 1.0
    # an empty polygon is no building; a bow-tie is repaired, not a GEOSException
    buildings = gpd.read_file(BUILDINGS)
    extra = gpd.GeoDataFrame(geometry=[shapely.Polygon(), BOW_TIE], crs=4326)
    gpd.GeoDataFrame(geometry=list(buildings.geometry) + list(extra.geometry), crs=4326).to_file(tmp_path / "b.gpkg")
    with pytest.warns(SitewatchWarning, match="1 empty geometries ignored; 1 invalid polygons repaired"):
        report = evaluate_paths(banepa_mask, tmp_path / "b.gpkg")
    assert report["buildings"]["reference"] == 243  # the 242 and the repaired bow-tie
    result = run_sitewatch("evaluate", str(banepa_mask), str(tmp_path / "b.gpkg"))
    assert result.returncode == 0 and "sitewatch: warning:" in result.stderr and "Traceback" not in result.stderr


def _truth(demo_result: Path, dates: dict[str, str]) -> gpd.GeoDataFrame:
    """Truth footprints of every date made from the site's own tracked footprints (date renamed)."""
    frames = []
    for date, label in dates.items():
        frame = gpd.read_file(demo_result / f"footprints_{date}.gpkg")
        frames.append(gpd.GeoDataFrame({"date": label, "id": frame["track_id"]}, geometry=frame.geometry))
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=frames[0].crs)


def test_scot_refuses_a_truth_series_of_other_dates(tmp_path: Path, demo_result: Path) -> None:
    truth = tmp_path / "truth.gpkg"
    _truth(demo_result, {"2002-01-01": "2002-01-01"}).to_file(truth)
    assert_one_line_error(run_sitewatch("evaluate-change", str(demo_result), str(truth)),
                          "no footprint dated 2018-01-01, a date of the site")
    _truth(demo_result, {"2002-01-01": "2001-01-01", "2018-01-01": "2018-01-01"}).to_file(truth)
    assert_one_line_error(run_sitewatch("evaluate-change", str(demo_result), str(truth)),
                          "no footprint dated 2002-01-01")
    # the site's own series scores perfectly
    series = _truth(demo_result, {"2002-01-01": "2002-01-01", "2018-01-01": "2018-01-01"})
    series.to_file(truth)
    result = run_sitewatch("evaluate-change", str(demo_result), str(truth))
    assert result.returncode == 0, result.stderr
    assert '"scot": 1.0' in result.stdout


def test_evaluate_change_refuses_a_grid_elsewhere(tmp_path: Path, demo_result: Path) -> None:
    with rasterio.open(DEMO[0]) as dataset:
        profile = {"driver": "GTiff", "count": 1, "dtype": "uint8", "crs": dataset.crs, "width": dataset.width,
                   "height": dataset.height}
        transform = dataset.transform
    change = np.zeros((profile["height"], profile["width"]), np.uint8)
    change[100:140, 100:140] = 255
    with rasterio.open(tmp_path / "mask.tif", "w", **{**profile, "crs": None}) as out:
        out.write(change[None])
    far = rasterio.Affine(transform.a, 0, transform.c + 1.0, 0, transform.e, transform.f)  # 1° east
    with rasterio.open(tmp_path / "grid.tif", "w", **profile, transform=far) as out:
        out.write(change[None])
    result = run_sitewatch("evaluate-change", str(demo_result), str(tmp_path / "mask.tif"),
                           "--grid", str(tmp_path / "grid.tif"))
    assert_one_line_error(result, "grid.tif: does not overlap the site's footprints on the ground", "(--grid)")
    with rasterio.open(tmp_path / "grid.tif", "w", **profile, transform=transform) as out:
        out.write(change[None])
    result = run_sitewatch("evaluate-change", str(demo_result), str(tmp_path / "mask.tif"),
                           "--grid", str(tmp_path / "grid.tif"))
    assert result.returncode == 0, result.stderr


def test_own_data_training_refuses_an_ambiguous_geopackage(tmp_path: Path) -> None:
    from sitewatch.data.owndata import OwnData, read_label_layers

    labels = _two_layers(tmp_path / "labels.gpkg", _aoi())
    with pytest.raises(SitewatchError, match=r"holds 2 layers \(aoi, buildings\)"):
        read_label_layers(OwnData(images=(str(RASTER),), labels=(str(labels),)))
    layers, _ = read_label_layers(OwnData(images=(str(RASTER),), labels=(f"{labels}:buildings",)))
    assert len(layers[0]) == 242


# --- dates ----------------------------------------------------------------------------------------

def test_dates_that_contradict_the_file_names_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_model(monkeypatch)
    result = run_sitewatch("change", *map(str, DEMO), "--dates", "2018-01-01,2002-01-01", "--out", str(tmp_path / "o"))
    assert_one_line_error(result, "texas_train36_2002-01-01.tif is given 2018-01-01 but its file name says "
                                  "2002-01-01", "(--dates)")
    assert not (tmp_path / "o").exists()


def test_tiff_datetime_never_overrides_the_date_in_the_file_name(tmp_path: Path) -> None:
    from sitewatch.dates import resolve_dates

    copies = [Path(shutil.copy(path, tmp_path / path.name)) for path in DEMO]
    for path, written in zip(copies, ["2024:03:01 10:00:00", "2023:06:01 10:00:00"], strict=True):
        with rasterio.open(path, "r+") as dataset:  # processing dates, in the reverse order
            dataset.update_tags(TIFFTAG_DATETIME=written)
    assert [str(d) for d in resolve_dates(copies, None)] == ["2002-01-01", "2018-01-01"]
    with rasterio.open(copies[1], "r+") as dataset:
        dataset.update_tags(ACQUISITION_DATE="2002-01-01")
    with pytest.raises(SitewatchError, match="its tag ACQUISITION_DATE says 2002-01-01 but its file name says "
                                             "2018-01-01"):
        resolve_dates(copies, None)
    twin = Path(shutil.copy(DEMO[0], tmp_path / "again_2002-01-01.tif"))
    with pytest.raises(SitewatchError, match=r"same date 2002-01-01: .*texas_train36_2002-01-01.tif \(file name\) "
                                             r"and .*again_2002-01-01.tif \(file name\)"):
        resolve_dates([copies[0], twin], None)


# --- batch numbers and Ray ------------------------------------------------------------------------

def test_batch_workers_and_a_silent_ray_address_are_refused_at_once(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text("sites: []\n")
    for workers in ("0", "-1"):
        result = run_sitewatch("batch", str(manifest), "--out", str(tmp_path / "o"), "--executor", "ray",
                               "--workers", workers)
        assert_one_line_error(result, f"must be 1 or more, got {workers}", "(--workers)")
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.perf_counter()
    result = run_sitewatch("batch", str(manifest), "--out", str(tmp_path / "o"), "--executor", "ray",
                           "--ray-address", f"127.0.0.1:{port}")
    assert_one_line_error(result, f"127.0.0.1:{port}: no Ray cluster answers there", "(--ray-address)")
    assert time.perf_counter() - started < 6


# --- messages that name the user's file -----------------------------------------------------------

def test_change_names_the_users_file_before_the_model_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    four = tmp_path / "texas_2019-01-01.tif"
    with rasterio.open(DEMO[1]) as source:
        profile = {**source.profile, "count": 4}
        pixels = source.read()
    with rasterio.open(four, "w", **profile) as out:
        out.write(np.concatenate([pixels, pixels[:1]]))
    _no_model(monkeypatch)
    # dates of different band counts are one series (Planet's 4- and 8-band); bands a date lacks are refused
    result = run_sitewatch("change", str(DEMO[0]), str(four), "--bands", "1,2,3", "--bands", "4,5,2",
                           "--out", str(tmp_path / "o"))
    assert_one_line_error(result, f"{four}: bands [4, 5, 2] outside 1..4")


def test_an_all_nodata_middle_date_and_a_truncated_date_are_named(tmp_path: Path) -> None:
    from sitewatch.prepare import order_by_date, prepare_site
    from sitewatch.rules import ChangeRules

    middle = tmp_path / "texas_2010-01-01.tif"
    with rasterio.open(DEMO[0]) as source:
        profile = {**source.profile, "nodata": 0}
    with rasterio.open(middle, "w", **profile) as out:
        out.write(np.zeros((3, 256, 256), np.uint8))
    rasters, dates = order_by_date([*DEMO, middle], None)
    with pytest.raises(SitewatchError) as caught:
        prepare_site(rasters, dates, ChangeRules.default(), tmp_path / "work" / "aligned", lambda message: None)
    assert str(caught.value) == f"{middle}: every pixel is nodata where it overlaps the first date"
    truncated = tmp_path / "texas_2019-01-01.tif"  # its header opens, its pixels are cut off
    rasterio.shutil.copy(DEMO[1], tmp_path / "cog.tif", driver="COG", compress="DEFLATE", blocksize=128)
    whole = (tmp_path / "cog.tif").read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    rasters, dates = order_by_date([DEMO[0], truncated], None)
    with pytest.raises(SitewatchError, match=rf"^{truncated}: read failed, file corrupt or truncated"):
        prepare_site(rasters, dates, ChangeRules.default(), tmp_path / "work2" / "aligned", lambda message: None)


def test_a_truncated_date_is_refused_before_the_model_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    truncated = tmp_path / "texas_2019-01-01.tif"  # its header opens, its pixels are cut off
    rasterio.shutil.copy(DEMO[1], tmp_path / "cog.tif", driver="COG", compress="DEFLATE", blocksize=128)
    whole = (tmp_path / "cog.tif").read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    _no_model(monkeypatch)
    for command in (("change", str(DEMO[0]), str(truncated)), ("segment", str(truncated))):
        result = run_sitewatch(*command, "--out", str(tmp_path / "o"))
        assert_one_line_error(result, f"{truncated}: read failed, file corrupt or truncated")


def test_segment_refuses_names_that_differ_only_in_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    lower, upper = tmp_path / "a" / "site.tif", tmp_path / "b" / "SITE.tif"
    rasterio.shutil.copy(DEMO[0], lower)
    rasterio.shutil.copy(DEMO[1], upper)
    _no_model(monkeypatch)
    result = run_sitewatch("segment", str(lower), str(upper), "--out", str(tmp_path / "o"))
    assert_one_line_error(result, "two input rasters have the same file name (ignoring case)")


def test_a_raster_with_ground_control_points_is_not_called_ungeoreferenced(tmp_path: Path) -> None:
    from rasterio.control import GroundControlPoint

    gcps_tif = tmp_path / "gcps.tif"
    with rasterio.open(DEMO[0]) as source:
        profile = {key: value for key, value in source.profile.items() if key not in ("crs", "transform")}
        pixels, (west, south, east, north) = source.read(), source.bounds
    points = [GroundControlPoint(0, 0, west, north), GroundControlPoint(0, 256, east, north),
              GroundControlPoint(256, 0, west, south), GroundControlPoint(256, 256, east, south)]
    with rasterio.open(gcps_tif, "w", **profile, gcps=points, crs="EPSG:4326") as out:
        out.write(pixels)
    result = run_sitewatch("segment", str(gcps_tif), "--out", str(tmp_path / "o"))
    assert_one_line_error(result, "georeferenced by 4 ground control points, not on a map grid")


def test_the_marker_records_content(tmp_path: Path, demo_result: Path) -> None:
    marker = read_marker(demo_result)
    record = marker.files["changes.gpkg"]
    assert record["layers"] == ["changes", "housing_clusters", "land_cleared"]
    assert len(record["sha256"]) == 64 and record["bytes"] == (demo_result / "changes.gpkg").stat().st_size
    assert (demo_result / MARKER).read_text().startswith('{\n "tool": "sitewatch",\n "command": "change"')


def test_land_cleared_layer_has_one_schema_empty_or_not(tmp_path: Path, demo_result: Path) -> None:
    import datetime as dt

    from sitewatch.clearing import CLEARING_COLUMNS
    from sitewatch.footprints import empty_footprints, write_change_layers

    crs = "EPSG:32614"
    one = gpd.GeoDataFrame({"clearing_id": [1], "area_m2": [900.0], "first_seen": [dt.date(2018, 1, 1)],
                            "later_dates_seen": [1], "green_before": [0.4], "green_after": [0.0],
                            "pattern_corr": [0.1], "lon": [-97.9], "lat": [30.2]},
                           geometry=[shapely.box(0, 0, 30, 30)], crs=crs)
    write_change_layers(tmp_path, empty_footprints(crs).assign(change=[]), gpd.GeoDataFrame(geometry=[], crs=crs),
                        [], [], one)

    def schema(path: Path) -> tuple:
        info = pyogrio.read_info(path, layer="land_cleared")
        return info["geometry_type"], list(zip(info["fields"], info["dtypes"], strict=True))

    assert pyogrio.read_info(demo_result / "changes.gpkg", layer="land_cleared")["features"] == 0
    assert schema(demo_result / "changes.gpkg") == schema(tmp_path / "changes.gpkg")
    geometry_type, fields = schema(tmp_path / "changes.gpkg")
    assert geometry_type == "MultiPolygon" and [name for name, _ in fields] == list(CLEARING_COLUMNS)
    assert dict(fields)["clearing_id"] == "int64" and dict(fields)["first_seen"] == "object"
