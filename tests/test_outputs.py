"""No user file is ever deleted: inputs inside outputs, user files in result folders, --no-resume."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_sitewatch

from sitewatch.errors import SitewatchError
from sitewatch.outputs import MARKER, check_output_dir, owned_files, publish_dir, remove_owned
from sitewatch.paths import DEMO_SITE

DEMO = sorted(DEMO_SITE.glob("*.tif"))


def _copy_demo(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(path, folder / path.name)) for path in DEMO]


def test_publish_replaces_only_what_sitewatch_wrote(tmp_path: Path) -> None:
    target = tmp_path / "result"
    first = tmp_path / "stage1"
    (first / "sub").mkdir(parents=True)
    (first / "summary.json").write_text("1")
    (first / "sub" / "old_layer.tif").write_text("old")
    publish_dir(first, target)
    assert sorted(owned_files(target)) == ["sub/old_layer.tif", "summary.json"]
    (target / "analyst_notes.txt").write_text("mine")
    (target / "field_photos").mkdir()
    (target / "field_photos" / "p1.jpg").write_text("photo")
    second = tmp_path / "stage2"
    second.mkdir()
    (second / "summary.json").write_text("2")
    publish_dir(second, target)
    assert (target / "summary.json").read_text() == "2"
    assert not (target / "sub").exists()  # the old result's file and the folder it left empty
    assert (target / "analyst_notes.txt").read_text() == "mine"
    assert (target / "field_photos" / "p1.jpg").read_text() == "photo"
    remove_owned(target)
    assert sorted(p.name for p in target.iterdir()) == ["analyst_notes.txt", "field_photos"]


def test_output_checks_refuse_inputs_and_foreign_folders(tmp_path: Path) -> None:
    raster = tmp_path / "scenes" / "site" / "site.tif"
    raster.parent.mkdir(parents=True)
    raster.write_bytes(b"x")
    with pytest.raises(SitewatchError, match="holds the input"):
        check_output_dir(tmp_path / "scenes" / "site", [raster])
    with pytest.raises(SitewatchError, match="holds the input"):
        check_output_dir(tmp_path / "scenes", [raster])
    with pytest.raises(SitewatchError, match="lies inside the input"):
        check_output_dir(raster / "out", [raster])
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.docx").write_text("years of work")
    with pytest.raises(SitewatchError, match="did not write"):
        check_output_dir(foreign, [raster])
    (tmp_path / "empty").mkdir()
    check_output_dir(tmp_path / "empty", [raster])
    check_output_dir(tmp_path / "new", [raster])
    lying = tmp_path / "lying"
    lying.mkdir()
    (lying / MARKER).write_text('{"files": ["../scenes/site/site.tif"]}')
    with pytest.raises(SitewatchError, match="outside the folder"):
        remove_owned(lying)
    assert raster.exists()


def test_segment_never_replaces_the_folder_holding_its_input(tmp_path: Path) -> None:
    site = tmp_path / "scenes" / "site"
    site.mkdir(parents=True)
    raster = Path(shutil.copy(DEMO[0], site / "site.tif"))
    result = run_sitewatch("segment", str(raster), "--out", str(tmp_path / "scenes"))
    assert_one_line_error(result, "holds the input")
    assert raster.is_file()
    # dir/site.tif --out dir, where dir/site/ holds the user's own files
    folder = tmp_path / "dir"
    folder.mkdir()
    raster = Path(shutil.copy(DEMO[0], folder / "site.tif"))
    (folder / "site").mkdir()
    (folder / "site" / "notes.txt").write_text("mine")
    result = run_sitewatch("segment", str(raster), "--out", str(folder))
    assert_one_line_error(result, "did not write")
    assert (folder / "site" / "notes.txt").read_text() == "mine"


def test_change_rerun_keeps_what_the_analyst_added(tmp_path: Path) -> None:
    rasters = _copy_demo(tmp_path / "in")
    out = tmp_path / "d"
    assert run_sitewatch("change", *map(str, rasters), "--out", str(out)).returncode == 0
    (out / "analyst_notes.txt").write_text("brief on Monday")
    (out / "field_photos").mkdir()
    (out / "field_photos" / "gate.jpg").write_bytes(b"jpeg")
    result = run_sitewatch("change", *map(str, rasters), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert (out / "analyst_notes.txt").read_text() == "brief on Monday"
    assert (out / "field_photos" / "gate.jpg").read_bytes() == b"jpeg"
    assert (out / "summary.json").is_file() and (out / "report.html").is_file()
    # rasters kept inside the result folder and given as inputs: refused, not deleted
    raw = _copy_demo(out / "raw")
    result = run_sitewatch("change", *map(str, raw), "--out", str(out))
    assert_one_line_error(result, "holds the input")
    assert all(path.is_file() for path in raw)


def test_batch_no_resume_never_deletes_input_folders(tmp_path: Path) -> None:
    folder = tmp_path / "watch"
    rasters = _copy_demo(folder / "texas")
    manifest = folder / "m.yaml"
    manifest.write_text(f"sites:\n  - id: texas\n    rasters: [texas/{rasters[0].name}, texas/{rasters[1].name}]\n")
    result = run_sitewatch("batch", str(manifest), "--out", str(folder), "--no-resume")
    assert_one_line_error(result, "holds the input")
    assert all(path.is_file() for path in rasters)
