"""The fourth probe (issue 33): no traceback for a hostile file, no hours of silent work.

Model metadata and Planet metadata with a 400-digit number or 100,000-deep nesting, model files that
contradict themselves or are cut short, pixel sizes no network works at, more tiles than the limit,
a cache folder that cannot be written, a site id that is one of the batch's own files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from conftest import SAMPLES, assert_one_line_error, run_sitewatch
from safetensors.torch import save_file

from sitewatch.jsontext import parse_json
from sitewatch.modelfile import read_model_metadata
from sitewatch.paths import DEMO_SITE, default_model_path

SHANGHAI = SAMPLES / "shanghai" / "google_0_10.tif"


def _model_with(tmp_path: Path, text: str, name: str = "odd.safetensors") -> Path:
    path = tmp_path / name
    save_file({"w": torch.zeros(2)}, str(path), metadata={"sitewatch": text})
    return path


@pytest.mark.parametrize("text", ['{"gsd_m": ' + "9" * 400 + "}", "[" * 100_000 + "]" * 100_000,
                                  '{"gsd_m": 1e999}', '{"gsd_m": NaN}'])
def test_hostile_json_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_json(text)


@pytest.mark.parametrize("case", ["digits", "deep"])
def test_model_metadata_too_deep_or_too_long_is_one_line(case: str, tmp_path: Path) -> None:
    text = '{"format": ' + "9" * 400 + "}" if case == "digits" else "[" * 100_000 + "]" * 100_000
    result = run_sitewatch("info", str(_model_with(tmp_path, text)))
    assert_one_line_error(result, "odd.safetensors", "broken model metadata")


def test_metadata_naming_more_bands_than_the_network_takes(tmp_path: Path) -> None:
    metadata = read_model_metadata(default_model_path())
    metadata["bands"] = ["red", "green", "blue", "nir"]
    metadata["mean"], metadata["std"] = metadata["mean"] + [0.5], metadata["std"] + [0.2]
    result = run_sitewatch("info", str(_model_with(tmp_path, json.dumps(metadata))))
    assert_one_line_error(result, "names 4 bands but its network takes 3")


def test_a_model_file_cut_short_is_not_sound(tmp_path: Path) -> None:
    whole = default_model_path().read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(whole[: len(whole) // 2])
    assert_one_line_error(run_sitewatch("info", str(cut)), "cut.safetensors", "truncated")


def test_a_model_pixel_size_no_network_works_at(tmp_path: Path) -> None:
    metadata = read_model_metadata(default_model_path())
    metadata["gsd_m"] = 1e-4
    result = run_sitewatch("info", str(_model_with(tmp_path, json.dumps(metadata))))
    assert_one_line_error(result, "pixel size 0.0001 m is outside")


def test_work_gsd_far_too_fine_is_refused_at_once(tmp_path: Path) -> None:
    result = run_sitewatch("segment", str(SHANGHAI), "--out", str(tmp_path / "out"), "--work-gsd", "0.001")
    assert_one_line_error(result, "--work-gsd must be")
    result = run_sitewatch("change", *map(str, sorted(DEMO_SITE.glob("*.tif"))), "--out", str(tmp_path / "c"),
                           "--work-gsd", "0.001")
    assert_one_line_error(result, "--work-gsd must be")


def test_a_modis_sized_pixel_is_refused_before_the_model_loads(tmp_path: Path) -> None:
    modis = tmp_path / "modis.tif"
    with rasterio.open(SHANGHAI) as source:
        data = source.read()
    with rasterio.open(modis, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=data.dtype, crs="EPSG:32650", transform=Affine(250, 0, 300000, 0, -250, 3500000)) as out:
        out.write(data)
    result = run_sitewatch("segment", str(modis), "--out", str(tmp_path / "out"))
    assert_one_line_error(result, "modis.tif", "pixels of 250 m")


def test_more_tiles_than_the_limit_are_refused_with_an_estimate(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITEWATCH_MAX_TILES", "0")  # the sample is one tile
    result = run_sitewatch("segment", str(SHANGHAI), "--out", str(tmp_path / "out"))
    assert_one_line_error(result, "model tiles", "above the limit of 0", "SITEWATCH_MAX_TILES")
    assert not (tmp_path / "out").exists()


def test_a_cache_that_cannot_be_written_is_a_warning_not_a_stop(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "home-file"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setenv("SITEWATCH_CACHE", str(blocker / "cache"))
    result = run_sitewatch("segment", str(SHANGHAI), "--out", str(tmp_path / "out"), "--backend", "onnx")
    assert result.returncode == 0, result.stderr
    assert "SITEWATCH_CACHE" in result.stderr and "Traceback" not in result.stderr


def test_a_site_id_that_is_a_batch_file_is_refused(tmp_path: Path) -> None:
    rasters = sorted(DEMO_SITE.glob("*.tif"))
    for raster in rasters:
        shutil.copy(raster, tmp_path / raster.name)
    manifest = tmp_path / "sites.yaml"
    manifest.write_text("sites:\n  - id: batch_summary.csv\n    rasters: [" + ", ".join(r.name for r in rasters)
                        + "]\n")
    result = run_sitewatch("batch", str(manifest), "--out", str(tmp_path / "out"))
    assert_one_line_error(result, "batch_summary.csv", "choose another id")


@pytest.mark.parametrize(("text", "needle"), [
    ("rules:\n  hall_min_area_m2: 900\n  hall_min_area_m2: 1200\n", "given twice"),
    ("hall_min_area_m2: 900\nrules:\n  hall_min_core_share: 0.4\n", "beside the 'rules:' block"),
])
def test_rules_files_read_as_written(text: str, needle: str, tmp_path: Path) -> None:
    from sitewatch.errors import SitewatchError
    from sitewatch.rules import ChangeRules

    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(SitewatchError, match=needle):
        ChangeRules.from_yaml(path)


def test_a_rule_in_e_notation_is_a_number(tmp_path: Path) -> None:
    from sitewatch.rules import ChangeRules

    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  hall_min_area_m2: 1e3\n  new_min_area_m2: 2.5E+1\n")
    rules = ChangeRules.from_yaml(path)
    assert rules.hall_min_area_m2 == 1000.0 and rules.new_min_area_m2 == 25.0


def test_pixel_offsets_in_a_levir_name_are_no_date() -> None:
    from sitewatch.dates import parse_date

    assert parse_date("tile_2017_0512_0768") is None
    assert parse_date("site_2024-08-27") == parse_date("site_20240827") == parse_date("site_2024_08_27")


def test_black_shadows_in_a_file_without_nodata_are_ground_it_saw(tmp_path: Path) -> None:
    """Issue 33: pure black pixels of a file that declares no nodata (deep shadow) were read as nodata by
    the site's aligned copies (24 % of a site "not seen"); they are seen ground."""
    from conftest import chosen

    from sitewatch.pipeline import run_site

    rasters = []
    for source in sorted(DEMO_SITE.glob("*.tif")):
        with rasterio.open(source) as dataset:
            data, profile = dataset.read(), dataset.profile
        assert profile.get("nodata") is None
        data[:, 60:160, 20:120] = 0  # a deep shadow: every band 0
        target = tmp_path / "in" / source.name
        target.parent.mkdir(exist_ok=True)
        with rasterio.open(target, "w", **profile) as out:
            out.write(data)
        rasters.append(target)
    summary = run_site(rasters, tmp_path / "out", chosen(rasters)).summary
    assert summary.coverage.observed_at_every_date_share > 0.99
    assert summary.counts.not_observed == 0


@pytest.mark.parametrize("how", ["internal mask", "alpha band", "no mask"])
def test_ground_outside_a_later_file_or_under_its_own_mask_is_not_seen(tmp_path: Path, how: str) -> None:
    """Issue 33 (found in review): a later date with an internal mask and no declared nodata was warped onto the
    site with every pixel "seen", the ground beyond its footprint included (written as black). The aligned copy's
    mask is the file's footprint less what its own mask or alpha band hides, whichever way the file says it."""
    from sitewatch.prepare import warp_onto

    first, later = sorted(DEMO_SITE.glob("*.tif"))
    with rasterio.open(later) as dataset:
        window = rasterio.windows.Window(64, 32, 160, 192)  # the later file covers part of the site only
        pixels, transform, profile = dataset.read(window=window), dataset.window_transform(window), dataset.profile
    hidden = np.zeros(pixels.shape[1:], bool)
    hidden[:40, :50] = True  # 2,000 px its own mask hides
    profile = {**profile, "width": 160, "height": 192, "transform": transform}
    target = tmp_path / "later.tif"
    if how == "alpha band":
        profile["count"] = pixels.shape[0] + 1
        pixels = np.concatenate([pixels, np.where(hidden, 0, 255).astype(pixels.dtype)[None]])
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(target, "w", **profile) as out:
        out.write(pixels)
        if how == "alpha band":
            out.colorinterp = [*out.colorinterp[:-1], rasterio.enums.ColorInterp.alpha]
        elif how == "internal mask":
            out.write_mask(~hidden)
    with rasterio.open(first) as reference:
        warp_onto(reference, target, tmp_path / "aligned.tif")
        site_px = reference.width * reference.height
    with rasterio.open(tmp_path / "aligned.tif") as aligned:
        seen = int((aligned.dataset_mask() > 0).sum())
    assert seen == 160 * 192 - (0 if how == "no mask" else 2000) and seen < site_px


def test_an_ungeoreferenced_input_is_refused_before_the_model_loads(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 34: a PNG without --gsd is refused at once (it used to load the model first)."""
    from PIL import Image

    import sitewatch.checkpoint

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was refused")

    monkeypatch.setattr(sitewatch.checkpoint, "load_for_inference", refuse)
    png = tmp_path / "plain.png"
    Image.new("RGB", (64, 64), (120, 110, 100)).save(png)
    result = run_sitewatch("segment", str(png), "--out", str(tmp_path / "out"))
    assert_one_line_error(result, "plain.png", "no georeferencing", "--gsd")
