"""The command line's first hour: usage errors, range checks, rules files, model metadata, start-up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, assert_one_line_error, run_sitewatch
from safetensors.torch import load_file, save_file

from sitewatch.errors import SitewatchError
from sitewatch.modelfile import ModelMetadata, read_model_metadata, working_gsd_m
from sitewatch.paths import DEMO_SITE, default_model_path
from sitewatch.rules import ChangeRules

DEMO = DEMO_SITE / "texas_train36_2002-01-01.tif"


@pytest.mark.parametrize("args, needle", [
    (["segmnt"], "No such command 'segmnt'"),
    (["segment", str(DEMO)], "Missing option '--out'"),
    (["segment", str(DEMO), "--out", "o", "--tile-size", "abc"], "Invalid value for '--tile-size'"),
    (["evaluate"], "Missing argument"),
    (["--bogus"], "No such option: --bogus"),
])
def test_usage_errors_are_one_line_with_exit_2(args: list[str], needle: str) -> None:
    result = run_sitewatch(*args)
    assert_one_line_error(result, needle)
    assert result.returncode == 2


def test_usage_error_of_the_installed_console_script() -> None:
    """The real entry point in a fresh interpreter: whatever typer/click pair is installed."""
    result = subprocess.run([sys.executable, "-m", "sitewatch.cli", "segment"], capture_output=True,
                            text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "sitewatch: error: Missing argument 'rasters'. (see 'sitewatch segment --help')"]


@pytest.mark.parametrize("command", ["segment", "change", "batch", "vectorize", "export"])
def test_help_reads_without_python_type_tags(command: str) -> None:
    result = run_sitewatch(command, "--help")
    assert result.returncode == 0
    text = result.stdout + result.stderr
    assert "<bool>" not in text and "<list[" not in text and "<path>" not in text and "{" not in text
    assert "Usage: sitewatch " + command in " ".join(text.split())


def test_bare_command_prints_the_help_and_no_empty_error() -> None:
    result = subprocess.run([sys.executable, "-m", "sitewatch.cli"], capture_output=True, text=True, cwd=REPO,
                            timeout=120)
    assert result.returncode == 0
    assert "sitewatch: error" not in result.stderr and "change" in result.stdout + result.stderr


@pytest.mark.parametrize("args, needle", [
    (["--gsd", "nan"], "--gsd must be a positive number"),
    (["--gsd", "inf"], "--gsd must be a positive number"),
    (["--work-gsd", "0"], "--work-gsd must be a positive number"),
    (["--threshold", "2"], "--threshold must be between 0 and 1"),
    (["--threshold", "nan"], "--threshold must be between 0 and 1"),
    (["--tile-size", "-64"], "--tile-size must be a positive number"),
])
def test_numbers_on_the_command_line_are_range_checked(tmp_path: Path, args: list[str], needle: str) -> None:
    result = run_sitewatch("segment", str(DEMO), "--out", str(tmp_path / "o"), *args)
    assert_one_line_error(result, needle)
    assert not (tmp_path / "o").exists()


def test_vectorize_and_evaluate_numbers_are_range_checked(tmp_path: Path) -> None:
    assert_one_line_error(run_sitewatch("vectorize", str(DEMO), "--simplify", "-1"), "--simplify")
    assert_one_line_error(run_sitewatch("vectorize", str(DEMO), "--min-area", "nan"), "--min-area")
    assert_one_line_error(run_sitewatch("evaluate", str(DEMO), str(DEMO), "--iou", "0"), "--iou")


def test_missing_rules_file_is_refused_before_any_work(tmp_path: Path) -> None:
    result = run_sitewatch("change", str(DEMO), str(DEMO), "--out", str(tmp_path / "d"),
                           "--rules", str(tmp_path / "halls_everywhere.yml"))
    assert_one_line_error(result, "halls_everywhere.yml: change rules file not found")
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("text, needle", [
    ("hall_min_area_m2: big", "'hall_min_area_m2' must be a number"),
    ("hall_min_area_m2: -5", "'hall_min_area_m2' must not be negative"),
    ("hall_min_area_m2: .nan", "'hall_min_area_m2' must be a number"),
    ("hall_min_area_m2: null", "'hall_min_area_m2' must be a number"),
    ("housing_min_count: 2.5", "'housing_min_count' must be a whole number"),
    ("housing_min_count: 0", "'housing_min_count' must be a whole number"),
    ("match_min_overlap: 1.5", "'match_min_overlap' is a share"),
    ("hall_min_area: 5", "unknown change rule(s) ['hall_min_area']"),
    ("rules: [1, 2]", "'rules' must be a mapping"),
])
def test_bad_rule_values_name_the_rule(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text + "\n")
    with pytest.raises(SitewatchError) as caught:
        ChangeRules.from_yaml(path)
    assert needle in str(caught.value)
    result = run_sitewatch("change", str(DEMO), str(DEMO), "--out", str(tmp_path / "d"), "--rules", str(path))
    assert_one_line_error(result, needle)


def test_rule_values_come_from_the_shipped_file_and_a_user_file_replaces_only_what_it_names(tmp_path: Path) -> None:
    import dataclasses

    shipped = ChangeRules.default()
    assert shipped.hall_min_area_m2 == 1000 and shipped.housing_min_count == 3  # sitewatch/assets/change.yaml
    (tmp_path / "mine.yaml").write_text("rules:\n  hall_min_area_m2: 800\n")
    mine = ChangeRules.from_yaml(tmp_path / "mine.yaml")
    assert mine == dataclasses.replace(shipped, hall_min_area_m2=800)


def _model_with(tmp_path: Path, **changes) -> Path:
    source = default_model_path()
    metadata = read_model_metadata(source)
    metadata.update(changes)
    target = tmp_path / "lying.safetensors"
    save_file(load_file(str(source)), str(target), metadata={"sitewatch": json.dumps(metadata)})
    return target


@pytest.mark.parametrize("changes, needle", [
    ({"gsd_m": 0}, "'gsd_m' must be a positive pixel size"),
    ({"bands": ["red", "green"]}, "'mean' must hold 2 numbers"),
    ({"mean": [0.5]}, "'mean' must hold 3 numbers"),
    ({"threshold": "0.5"}, "'threshold' must be a number between 0 and 1"),
    ({"gsd_range_m": [3, 0.3]}, "'gsd_range_m' must be [finest, coarsest]"),
])
def test_model_metadata_that_lies_is_refused(tmp_path: Path, changes: dict, needle: str) -> None:
    model = _model_with(tmp_path, **changes)
    with pytest.raises(SitewatchError) as caught:
        read_model_metadata(model)
    assert needle in str(caught.value)
    assert_one_line_error(run_sitewatch("info", str(model)), needle)


def _metadata(**values) -> ModelMetadata:
    document = {**read_model_metadata(default_model_path()), "work_gsd_rule": None, "gsd_range_m": None, **values}
    return ModelMetadata.from_document(document, "test")


def test_working_pixel_size_rule() -> None:
    multi = _metadata(gsd_m=0.5, gsd_range_m=[0.3, 3.0])
    assert working_gsd_m(multi, 3.0)[0] == 3.0  # PlanetScope: its own 3 m, no blow-up
    assert working_gsd_m(multi, 0.5)[0] == 0.5
    assert working_gsd_m(multi, 0.05)[0] == 0.3  # drone: averaged down to the finest trained size
    assert working_gsd_m(multi, 10.0)[0] == 3.0
    assert working_gsd_m(multi, 3.0, override_m=1.0) == (1.0, "set by the user")
    assert working_gsd_m(_metadata(gsd_m=0.5), 3.0)[0] == 0.5  # a single-scale model keeps its size
    shipped = _metadata(work_gsd_rule={"upsample": 2.0, "range_m": [0.5, 1.0]})
    assert working_gsd_m(shipped, 3.0)[0] == 1.0 and working_gsd_m(shipped, 0.3)[0] == 0.5


def test_info_answers_without_importing_torch() -> None:
    code = ("import sys; from sitewatch.cli import main\n"
            "try:\n    main(['info', sys.argv[1]])\nexcept SystemExit as e:\n    assert not e.code\n"
            "assert 'torch' not in sys.modules, 'info imported torch'")
    result = subprocess.run([sys.executable, "-c", code, str(default_model_path())], capture_output=True,
                            text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["format"] == "sitewatch-model/1"


def test_bad_input_is_refused_before_torch_loads(tmp_path: Path) -> None:
    code = ("import sys; from sitewatch.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    assert e.code == 2, e.code\n"
            "assert 'torch' not in sys.modules, 'torch was imported before the input check'")
    for args in (["change", "missing_a.tif", "missing_b.tif", "--out", str(tmp_path / "c")],
                 ["segment", "missing.tif", "--out", str(tmp_path / "s")]):
        result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                                cwd=tmp_path, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "missing" in result.stderr and "file not found" in result.stderr


def test_stage_errors_name_their_setting_and_the_cli_adds_the_option(tmp_path: Path) -> None:
    """A stage says what is wrong in its own words; only the command line knows the flag."""
    from sitewatch.dates import resolve_dates

    with pytest.raises(SitewatchError) as caught:
        resolve_dates([DEMO, DEMO], ["2012-05-01"])
    assert "--" not in str(caught.value) and caught.value.setting == "dates"
    result = run_sitewatch("change", str(DEMO), str(DEMO), "--dates", "2012-05-01", "--out", str(tmp_path / "o"))
    assert_one_line_error(result, "1 dates for 2 rasters (--dates)")
