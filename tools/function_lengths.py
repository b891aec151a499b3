"""List the functions of ``sitewatch/`` longer than a limit (default 60 lines, docstrings included).

    python tools/function_lengths.py [--limit 60]

Exits 1 when one is found, so the layout test can hold the line.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sitewatch"


def long_functions(limit: int) -> list[tuple[int, str, str]]:
    """``(lines, file, name)`` of every function or method longer than ``limit`` lines."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found.append((lines, str(path.relative_to(PACKAGE.parent)), node.name))
    return sorted(found, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=60)
    found = long_functions(parser.parse_args().limit)
    for lines, path, name in found:
        print(f"{lines:4d}  {path}  {name}")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
