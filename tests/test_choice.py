"""The network chosen from the input: PlanetScope-class files get the PlanetScope network without asking,
and the log, summary.json and the report say which and why."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from conftest import SAMPLES, run_sitewatch

from sitewatch.choice import PLANETSCOPE_FROM_M, InputLook, choose_model, look_at
from sitewatch.paths import DEFAULT_MODEL_NAME, DEMO_SITE, MODELS_DIR, SHIPPED_MODELS

AOI = "L15-0331E-1257N_1327_3160_13"
SN7 = SAMPLES / "spacenet7_dev" / AOI / "images"
SN7_EARLY = SN7 / f"global_monthly_2018_01_mosaic_{AOI}.tif"
SN7_LATE = SN7 / f"global_monthly_2020_01_mosaic_{AOI}.tif"
PLANETSCOPE_FILE = MODELS_DIR / SHIPPED_MODELS["planetscope"]
DEFAULT_FILE = MODELS_DIR / DEFAULT_MODEL_NAME


@pytest.fixture(autouse=True)
def _no_model_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SITEWATCH_MODEL", raising=False)


def test_the_rule_on_pixel_sizes_and_sensors() -> None:
    at = lambda m, sensor=None: InputLook(Path(f"at_{m}.tif"), m, sensor, "metadata" if sensor else "")  # noqa: E731
    assert choose_model(None, [at(3.76)]).path == PLANETSCOPE_FILE
    assert choose_model(None, [at(PLANETSCOPE_FROM_M)]).path == PLANETSCOPE_FILE
    assert choose_model(None, [at(0.5)]).path == DEFAULT_FILE
    assert choose_model(None, [at(2.0)]).path == DEFAULT_FILE
    mixed = choose_model(None, [at(0.5), at(3.0)])  # SkySat and PlanetScope dates: one choice, the coarsest's
    assert mixed.path == PLANETSCOPE_FILE and "at_3.0.tif has 3.00 m pixels" in mixed.reason
    assert choose_model(None, [at(1.0, "planetscope")]).path == PLANETSCOPE_FILE  # an upsampled PlanetScope product
    unknown = choose_model(None, [at(None)])
    assert unknown.path == DEFAULT_FILE and "unknown" in unknown.reason and unknown.automatic


def test_a_named_model_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    named = choose_model("planetscope", [InputLook(Path("a.tif"), 0.3)])
    assert named.path == PLANETSCOPE_FILE and not named.automatic and named.label == "planetscope"
    default = choose_model(str(DEFAULT_FILE), [InputLook(Path("a.tif"), 3.8)])
    assert default.path == DEFAULT_FILE and default.label == "default"
    monkeypatch.setenv("SITEWATCH_MODEL", str(DEFAULT_FILE))
    assert choose_model(None, [InputLook(Path("a.tif"), 3.8)]).path == DEFAULT_FILE


def test_real_inputs_are_looked_at(tmp_path: Path) -> None:
    basemap = look_at(SN7_EARLY)
    assert basemap.sensor == "planetscope" and "global_monthly_2018_01_mosaic" in basemap.sensor_evidence
    assert 3.7 < basemap.pixel_m < 3.8  # 4.78 m Web-Mercator pixels at 38° N
    renamed = tmp_path / "site_2018.tif"
    shutil.copyfile(SN7_EARLY, renamed)
    plain = look_at(renamed)
    assert plain.sensor is None and plain.pixel_m == pytest.approx(basemap.pixel_m)
    assert choose_model(None, [plain]).path == PLANETSCOPE_FILE  # by its pixel size alone
    demo = [look_at(path) for path in sorted(DEMO_SITE.glob("*.tif"))]
    assert all(look.pixel_m < 1.0 for look in demo)
    assert choose_model(None, demo).path == DEFAULT_FILE
    png = SAMPLES / "planetscope_dev" / "planesnet_scene_3_ne.png"
    assert look_at(png).pixel_m is None and look_at(png, gsd_m=3.0).pixel_m == 3.0


def test_segment_a_planetscope_file_without_model_uses_the_planetscope_network(tmp_path: Path) -> None:
    renamed = tmp_path / "site.tif"  # no Planet name: the pixel size decides
    shutil.copyfile(SN7_LATE, renamed)
    result = run_sitewatch("segment", str(renamed), "--out", str(tmp_path / "out"), "-q")
    assert result.returncode == 0, result.stderr
    assert "site.tif: model planetscope (sitewatch-unet-lite0-ps.safetensors)" in result.stderr
    assert "chosen: site.tif has 3.76 m pixels, PlanetScope-class (>= 2.5 m)" in result.stderr
    footprints = int(result.stdout.split(" footprints")[0].rsplit(" ", 1)[1])
    assert footprints >= 10  # a subdivision and its older neighbour: the default network found none here


def test_change_on_planetscope_months_records_the_choice(tmp_path: Path) -> None:
    out = tmp_path / "site"
    result = run_sitewatch("change", str(SN7_EARLY), str(SN7_LATE), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "model planetscope" in result.stderr and "is PlanetScope imagery (a Planet basemap name" in result.stderr
    model = json.loads((out / "summary.json").read_text())["model"]
    assert model["name"] == "sitewatch-unet-lite0-ps.safetensors" and model["chosen_automatically"] is True
    assert "PlanetScope imagery" in model["choice"]
    assert "chosen by sitewatch: global_monthly_2018_01_mosaic" in (out / "report.html").read_text()
    # the README's PlanetScope example: scored against the sample's own labelled footprints (ids across months)
    score = _scored_against_labels(out)
    assert score.found >= 55 and score.right_new_records >= 12  # measured 67 of 102 and 16 of 29 (README)
    assert score.false_demolitions == 0


def _scored_against_labels(out: Path):  # noqa: ANN202 - a sitewatch.labelled_change.LabelledChangeScore
    import geopandas as gpd

    from sitewatch.data.spacenet7 import months, read_month_buildings
    from sitewatch.labelled_change import score_labelled_change

    early, late = months(SN7.parent)
    utm = "EPSG:32610"
    changes = gpd.read_file(out / "changes.gpkg", layer="changes").to_crs(utm)
    return score_labelled_change(changes, None, read_month_buildings(early, utm), read_month_buildings(late, utm))


def test_change_with_model_named_says_so(tmp_path: Path) -> None:
    out = tmp_path / "site"
    result = run_sitewatch("change", *map(str, sorted(DEMO_SITE.glob("*.tif"))), "--out", str(out),
                           "--model", "planetscope")
    assert result.returncode == 0, result.stderr
    model = json.loads((out / "summary.json").read_text())["model"]
    assert model["chosen_automatically"] is False and model["choice"] == "named with --model (planetscope)"


def test_a_planet_monthly_basemap_is_dated_by_its_month(tmp_path: Path) -> None:
    from sitewatch.dates import raster_date

    assert raster_date(SN7_EARLY) == (dt.date(2018, 1, 1), "file name")
    assert raster_date(tmp_path / "planet_medres_normalized_analytic_2021-06_mosaic.tif")[0] == dt.date(2021, 6, 1)
    assert raster_date(tmp_path / "global_monthly_2018_13_mosaic.tif")[0] is None


def test_the_planetscope_sample_with_its_pixel_size_gets_the_planetscope_network(tmp_path: Path) -> None:
    png = SAMPLES / "planetscope_dev" / "planesnet_scene_3_ne.png"  # LAX at ~3 m, no georeferencing
    chosen = run_sitewatch("segment", str(png), "--gsd", "3", "--out", str(tmp_path / "auto"), "-q")
    assert chosen.returncode == 0 and "model planetscope" in chosen.stderr
    # rasterio's NotGeoreferencedWarning is not repeated as tracebacks; the missing GeoJSON is said once
    assert "NotGeoreferencedWarning" not in chosen.stderr and "no footprints.geojson" in chosen.stdout
    assert not (tmp_path / "auto" / png.stem / "footprints.geojson").exists()
    assert int(chosen.stdout.split(" footprints")[0].rsplit(" ", 1)[1]) >= 20
    forced = run_sitewatch("segment", str(png), "--gsd", "3", "--model", str(DEFAULT_FILE), "--out",
                           str(tmp_path / "forced"), "-q")
    assert forced.returncode == 0 and " 0 footprints" in forced.stdout  # the default network sees nothing here
    assert "no building found by the default network at 1 m" in forced.stderr  # and says so
