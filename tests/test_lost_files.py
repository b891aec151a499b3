"""The fourth probe (issue 33), files lost: one rule for temporaries, symlinks never followed out of an
output folder, one ownership rule for every file a command writes (``export`` included), one writer
per output folder. Refusals come before any model load where the input says enough."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_sitewatch

from sitewatch.errors import SitewatchError
from sitewatch.files import atomic_path, lock_path, output_lock, remove_stale_partials, staging_dir
from sitewatch.outputs import MARKER, mark_owned, publish_dir, read_marker, remove_owned
from sitewatch.paths import DEMO_SITE, default_model_path

DEMO = sorted(DEMO_SITE.glob("*.tif"))


def _dead_pid() -> int:
    """The id of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_only_sitewatchs_own_temporaries_of_dead_runs_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "site"
    dead = _dead_pid()
    backup = tmp_path / ".site.2024-01-15"  # an analyst's dated backup folder
    backup.mkdir()
    (backup / "notes.txt").write_text("mine")
    copy = tmp_path / ".site.2023-05-01.bak"
    copy.write_text("mine")
    lookalike = tmp_path / f".site.sitewatch-{dead}-abcdefgh.staging"  # right name, not recorded as ours
    lookalike.mkdir()
    (lookalike / "data.tif").write_text("mine")
    stale = tmp_path / f".site.sitewatch-{dead}-ijklmnop.staging"  # a staging folder of a killed run
    stale.mkdir()
    (stale / ".sitewatch-staging").write_text(f"{dead}\n")
    stale_file = tmp_path / f".site.sitewatch-{dead}-qrstuvwx.part.gpkg"
    stale_file.write_text("half")
    remove_stale_partials(target)
    assert backup.is_dir() and (backup / "notes.txt").read_text() == "mine"
    assert copy.read_text() == "mine" and (lookalike / "data.tif").is_file()
    assert not stale.exists() and not stale_file.exists()


def test_temporaries_carry_the_one_form(tmp_path: Path) -> None:
    folder = staging_dir(tmp_path / "site")
    assert folder.name.startswith(f".site.sitewatch-{os.getpid()}-") and folder.name.endswith(".staging")
    assert (folder / ".sitewatch-staging").is_file()
    with atomic_path(tmp_path / "footprints.gpkg") as tmp:
        assert tmp.name.startswith(f".footprints.gpkg.sitewatch-{os.getpid()}-")
        tmp.write_text("x")
    assert (tmp_path / "footprints.gpkg").read_text() == "x"


def test_a_marker_path_through_a_symlink_deletes_nothing_outside(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "precious.tif").write_text("keep me")
    result = tmp_path / "result"
    (result / "sub").mkdir(parents=True)
    (result / "sub" / "precious.tif").write_text("keep me")
    mark_owned(result, "change")
    shutil.rmtree(result / "sub")
    (result / "sub").symlink_to(outside, target_is_directory=True)  # the listed path now leads out
    staging = staging_dir(result)
    (staging / "summary.json").write_text("{}")
    with pytest.raises(SitewatchError, match="symbolic link"):
        publish_dir(staging, result, "change")
    assert (outside / "precious.tif").read_text() == "keep me"
    assert read_marker(result) is not None  # the old result untouched
    with pytest.raises(SitewatchError, match="symbolic link"):
        remove_owned(result)
    assert (outside / "precious.tif").read_text() == "keep me"


def test_a_listed_file_replaced_by_a_symlink_is_the_users(tmp_path: Path) -> None:
    result = tmp_path / "result"
    result.mkdir()
    (result / "summary.json").write_text("{}")
    mark_owned(result, "change")
    (tmp_path / "mine.json").write_text("{}")
    (result / "summary.json").unlink()
    (result / "summary.json").symlink_to(tmp_path / "mine.json")
    with pytest.raises(SitewatchError, match="symbolic link"):
        remove_owned(result)
    assert (tmp_path / "mine.json").is_file()


def test_out_a_symlink_to_a_folder_is_refused_before_the_work(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    result = run_sitewatch("change", *map(str, DEMO), "--out", str(link))
    assert_one_line_error(result, "symbolic link")
    assert link.is_symlink() and not any(real.iterdir())


def test_export_never_replaces_a_file_it_did_not_write(tmp_path: Path) -> None:
    other_model = tmp_path / "colleague.safetensors"
    shutil.copy(default_model_path(), other_model)
    before = other_model.read_bytes()
    result = run_sitewatch("export", str(default_model_path()), "--out", str(other_model))
    assert_one_line_error(result, "colleague.safetensors", "sitewatch did not write it")
    assert other_model.read_bytes() == before
    mine = tmp_path / "mine.safetensors"
    assert run_sitewatch("export", str(default_model_path()), "--out", str(mine)).returncode == 0
    assert "mine.safetensors" in read_marker(tmp_path).files
    assert run_sitewatch("export", str(default_model_path()), "--out", str(mine)).returncode == 0  # ours: again


def test_one_writer_per_output_folder(tmp_path: Path) -> None:
    target = tmp_path / "site"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        lock_path(target).write_text(f"{holder.pid}\n")  # a living run holds the lock
        with pytest.raises(SitewatchError, match=f"another sitewatch run \\(process {holder.pid}\\)"), \
                output_lock(target):
            pass
        result = run_sitewatch("change", *map(str, DEMO), "--out", str(target))
        assert_one_line_error(result, "another sitewatch run")
        assert not target.exists()
    finally:
        holder.kill()
        holder.wait()
    lock_path(target).write_text(f"{_dead_pid()}\n")  # the lock of a run that died is taken over
    with output_lock(target):
        assert lock_path(target).read_text().strip() == str(os.getpid())
    assert not lock_path(target).exists()


def test_batch_into_a_change_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "site"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    mark_owned(out, "change")
    manifest = tmp_path / "sites.yaml"
    manifest.write_text("sites:\n  - id: texas\n    rasters:\n" + "".join(f"      - {p}\n" for p in DEMO))
    result = run_sitewatch("batch", str(manifest), "--out", str(out))
    assert_one_line_error(result, "sitewatch change")
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, "summary.json"])
