"""Hostile inputs and faults: alias bombs, BOMs, per-site rules, full disks, the antimeridian."""

from __future__ import annotations

import shutil
from pathlib import Path

import geopandas as gpd
import pytest
import shapely
from conftest import REPO, assert_one_line_error, run_sitewatch
from rasterio._err import CPLE_AppDefinedError

from sitewatch.batch import read_manifest
from sitewatch.errors import SitewatchError
from sitewatch.footprints import utm_crs
from sitewatch.paths import DEMO_SITE

DEMO = sorted(DEMO_SITE.glob("*.tif"))
BOMB = """a: &a ["x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
"""


@pytest.fixture()
def site_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "m"
    folder.mkdir()
    for path in DEMO:
        shutil.copy(path, folder / path.name)
    return folder


def _manifest(folder: Path, body: str) -> Path:
    names = [p.name for p in DEMO]
    path = folder / "m.yaml"
    path.write_text(f"sites:\n  - id: texas\n    rasters: [{names[0]}, {names[1]}]\n{body}")
    return path


def test_yaml_alias_bomb_is_refused_at_once(site_folder: Path, tmp_path: Path) -> None:
    manifest = site_folder / "bomb.yaml"
    manifest.write_text(BOMB + "sites: []\n")
    with pytest.raises(SitewatchError, match="aliases"):
        read_manifest(manifest)
    rules = tmp_path / "rules.yaml"
    rules.write_text(BOMB)
    result = run_sitewatch("change", *map(str, DEMO), "--out", str(tmp_path / "o"), "--rules", str(rules))
    assert_one_line_error(result, "YAML aliases (*name) are not allowed")


def test_manifest_with_a_byte_order_mark_reads(site_folder: Path) -> None:
    manifest = _manifest(site_folder, "")
    manifest.write_bytes(b"\xef\xbb\xbf" + manifest.read_bytes())
    (site,) = read_manifest(manifest)
    assert site.id == "texas" and len(site.rasters) == 2


@pytest.mark.parametrize("body, needle", [
    ("    rules: {hall_min_area_m2: -1}\n", "'hall_min_area_m2' must not be negative"),
    ("    rules: {housing_min_count: 1.5}\n", "'housing_min_count' must be a whole number"),
    ("    dates: [2020-01-01, yesterday]\n", "'dates' must be ISO dates"),
])
def test_per_site_settings_are_checked_before_any_work(site_folder: Path, tmp_path: Path, body: str,
                                                        needle: str) -> None:
    manifest = _manifest(site_folder, body)
    result = run_sitewatch("batch", str(manifest), "--out", str(tmp_path / "out"))
    assert_one_line_error(result, needle)
    assert not (tmp_path / "out").exists()


def test_full_disk_while_writing_is_one_line_and_leaves_nothing(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import sitewatch.predict

    def full_disk(*args, **kwargs):
        raise CPLE_AppDefinedError(1, 28, "Free disk space available is 0 bytes, whereas 1 is needed")

    monkeypatch.setattr(sitewatch.predict, "write_cog", full_disk)
    result = run_sitewatch("segment", str(DEMO[0]), "--out", str(tmp_path / "out"))
    assert_one_line_error(result, "reading or writing a geodata file failed", "disk space")
    assert not any((tmp_path / "out").glob("*/probability.tif"))


def test_site_across_the_antimeridian_gets_a_utm_zone() -> None:
    # a 30 km wide site in UTM 60 S whose longitudes run from 179.8° E to 179.8° W
    bounds = (815_000.0, 8_110_000.0, 845_000.0, 8_120_000.0)
    chosen = utm_crs("EPSG:32760", bounds)
    assert chosen.to_epsg() in (32760, 32701)  # the southern zone on either side of ±180°
    area = gpd.GeoSeries([shapely.box(*bounds)], crs="EPSG:32760").to_crs(chosen).area.iloc[0]
    assert area == pytest.approx(30_000 * 10_000, rel=0.01)


def _label_raster(path: Path, values, west: float = 620_000.0, north: float = 3_350_000.0, **extra) -> Path:
    import numpy as np
    import rasterio
    from affine import Affine

    values = np.asarray(values, np.uint8)
    profile = {"driver": "GTiff", "width": values.shape[1], "height": values.shape[0], "count": 1, "dtype": "uint8",
               "crs": "EPSG:32614", "transform": Affine(0.3, 0, west, 0, -0.3, north)}
    with rasterio.open(path, "w", **{**profile, **extra}) as out:
        out.write(values[None])
    return path


@pytest.fixture()
def austin_label():
    from sitewatch.data.common import read_binary_mask

    return read_binary_mask(REPO / "data/samples/inria_austin/label/austin7_00166_430_319.png")


def test_evaluate_aligns_masks_by_georeferencing(tmp_path: Path, austin_label) -> None:
    from sitewatch.evaluate import evaluate_paths

    predicted = _label_raster(tmp_path / "p.tif", austin_label, nodata=255)
    # the same ground on a grid shifted by 50 px (the reference file starts 15 m further east)
    shifted = _label_raster(tmp_path / "r.tif", austin_label[:, 50:], west=620_000.0 + 50 * 0.3, nodata=255)
    report = evaluate_paths(predicted, shifted)
    assert report["pixel"]["iou"] == 1.0  # scored where both grids have data
    # objects: the buildings in the 50 columns the reference lacks, or cut by its edge, do not match
    assert report["object"]["f1"] > 0.7
    # the same mask 1 km away: not the same ground
    far = _label_raster(tmp_path / "far.tif", austin_label, west=621_000.0, nodata=255)
    with pytest.raises(SitewatchError, match="does not overlap"):
        evaluate_paths(predicted, far)
    assert_one_line_error(run_sitewatch("evaluate", str(predicted), str(far)), "does not overlap")


def test_zero_255_masks_read_as_buildings(tmp_path: Path, austin_label) -> None:
    from sitewatch.evaluate import evaluate_paths
    from sitewatch.footprints import vectorize_raster

    zero255 = _label_raster(tmp_path / "label255.tif", austin_label * 255)
    ones = _label_raster(tmp_path / "label01.tif", austin_label, nodata=255)
    assert len(vectorize_raster(zero255)) == len(vectorize_raster(ones)) > 5
    report = evaluate_paths(ones, zero255)
    assert report["pixel"]["iou"] == 1.0 and report["object"]["f1"] == 1.0


def test_vectorize_refuses_a_probability_of_another_size(tmp_path: Path, austin_label) -> None:
    mask = _label_raster(tmp_path / "m.tif", austin_label, nodata=255)
    other = _label_raster(tmp_path / "p.tif", austin_label[:100, :100] * 200)
    assert_one_line_error(run_sitewatch("vectorize", str(mask), "--probability", str(other)),
                          "give the probability of the same grid")
