"""The layout holds: imports flow one way, functions fit on a screen, stages do not know flags.

Static checks of the source (``tools/import_graph.py``, ``tools/function_lengths.py``).
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "sitewatch"


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_import_graph_has_no_cycle_and_no_arrow_to_a_later_stage() -> None:
    tool = _tool("import_graph")
    edges = tool.graph()
    assert tool.violations(edges) == []
    assert "pipeline" in edges["cli"] and "change" in edges["pipeline"]  # the graph is really read
    assert "pipeline" not in edges["change"] and "report" not in edges["change"]


def test_no_function_in_the_package_is_longer_than_60_lines() -> None:
    assert _tool("function_lengths").long_functions(60) == []


def _error_messages(path: Path) -> list[tuple[int, str]]:
    """``(line, text)`` of the string parts of every ``SitewatchError(...)`` message in a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "SitewatchError" and node.args:
            parts = [n.value for n in ast.walk(node.args[0])
                     if isinstance(n, ast.Constant) and isinstance(n.value, str)]
            found.append((node.lineno, "".join(parts)))
    return found


def test_no_stage_message_names_a_command_line_option() -> None:
    """Stages name the setting (``SitewatchError.setting``); the CLI adds ``--option``."""
    offenders = [f"{path.relative_to(REPO)}:{line}: {text}"
                 for path in sorted(PACKAGE.rglob("*.py")) if path.name != "cli.py"
                 for line, text in _error_messages(path) if " --" in f" {text}"]
    assert offenders == []
