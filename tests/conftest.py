"""Shared fixtures: the real sample data shipped in ``data/samples`` and helpers to run CLIs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data" / "samples"

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def run_cli(*args: str, cwd: Path = REPO, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python -m <module or script> args`` and capture its output."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def run_sitewatch(*args: str) -> subprocess.CompletedProcess:
    """Run the ``sitewatch`` command in this process (no interpreter start-up) and capture it.

    Same entry point as the console script: exit codes and messages are the user's.
    """
    import contextlib
    import io

    from sitewatch.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    argv, sys.argv = sys.argv, ["sitewatch", *args]  # as the console script would see them
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        finally:
            sys.argv = argv
    return subprocess.CompletedProcess(["sitewatch", *args], code, out.getvalue(), err.getvalue())


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    """A user error: non-zero exit, no traceback, a ``sitewatch: error:`` line naming things."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("sitewatch: error:")]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="session")
def samples() -> Path:
    assert SAMPLES.is_dir(), "data/samples is missing from the checkout"
    return SAMPLES


def in_ci() -> bool:
    """CI (``.ci/run`` sets ``SITEWATCH_CI``): every test runs, nothing skips."""
    return bool(os.environ.get("SITEWATCH_CI") or os.environ.get("CI"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow end-to-end tests (``@pytest.mark.slow``: Ray, DDP, kill-and-rerun, training runs) run in CI
    and when asked for (``-m slow``, or ``SITEWATCH_CI=1``); elsewhere they are skipped, saying so, so that
    the README's test command stays within a few minutes on 2 cores."""
    if in_ci() or config.getoption("-m"):
        return
    skip = pytest.mark.skip(reason="slow end-to-end test: CI runs it (run it with SITEWATCH_CI=1 or -m slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def browser() -> str:
    """Debian's Chromium for the report tests. In CI (``.ci/run`` installs it and sets ``SITEWATCH_CI``) a
    missing browser fails; elsewhere the test is skipped, saying why."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if in_ci():
        pytest.fail("Debian's chromium package is needed (.ci/run installs it)")
    pytest.skip("needs Debian's chromium package (apt-get install chromium; .ci/run installs it)")


_PREDICTORS: dict = {}


def chosen(rasters) -> object:  # noqa: ANN001 - paths; returns a sitewatch.predict.Predictor
    """The predictor ``sitewatch change`` would use for these rasters (the network chosen from them,
    :mod:`sitewatch.choice`), on the CPU, each network loaded once per test session."""
    from sitewatch.checkpoint import load_for_inference
    from sitewatch.choice import choose_model, look_at_site
    from sitewatch.predict import Predictor

    path = choose_model(None, look_at_site([Path(r) for r in rasters])).path
    if path not in _PREDICTORS:
        _PREDICTORS[path] = Predictor(load_for_inference(path), device="cpu", backend="auto")
    return _PREDICTORS[path]
