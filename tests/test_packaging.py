"""The package carries what every command needs: the default model, its checksum, the rules, the demo site.

Building and installing the wheel itself is done by ``tools/wheel_demo.sh`` (run by CI after the
tests); here, the cheap exact checks that the package data is declared and found by
``importlib.resources``, not through the repository folder.
"""

from __future__ import annotations

import fnmatch
from importlib.resources import files
from pathlib import Path

from conftest import REPO

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from sitewatch import paths
from sitewatch.checkpoint import file_sha256
from sitewatch.rules import ChangeRules


def test_every_data_file_of_the_package_is_declared_package_data() -> None:
    """Model, checksum, rules, demo site, report template: every non-Python file goes in the wheel."""
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["sitewatch"]
    assets = [p.relative_to(REPO / "sitewatch").as_posix() for p in (REPO / "sitewatch").rglob("*")
              if p.is_file() and p.suffix not in {".py", ".pyc"} and "__pycache__" not in p.parts]
    assert assets and all(any(fnmatch.fnmatch(a, pattern) for pattern in patterns) for a in assets), assets


def test_shipped_files_are_found_through_importlib_resources() -> None:
    assets = Path(str(files("sitewatch") / "assets"))
    assert paths.default_model_path().parent == assets == paths.ASSETS_DIR
    assert paths.recorded_checksum(paths.default_model_path()) == file_sha256(paths.default_model_path())
    assert ChangeRules.default() == ChangeRules.from_yaml(paths.default_rules_path())
    assert len(sorted(paths.DEMO_SITE.glob("*.tif"))) == 2


def test_rules_command_prints_the_shipped_rules() -> None:
    from conftest import run_sitewatch

    result = run_sitewatch("rules")
    assert result.returncode == 0 and result.stdout == paths.default_rules_path().read_text()
