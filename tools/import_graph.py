"""Print sitewatch's import graph and check it: no cycle, and no module importing a later one.

    python tools/import_graph.py [--dot]

Every ``import`` of a ``sitewatch`` module is an arrow, at module top or inside a function
(the command line imports its stages lazily, for start-up time). The modules are listed in the
order data flows (:data:`ORDER`); an arrow may only point back to an earlier module, so the
graph has no cycle and no earlier stage reaches into a later one. Exits 1 on a violation.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sitewatch"

#: Every module in data-flow order: contracts, raster I/O, the network, the training data and
#: task, then the inference stages raster → probabilities → footprints → changes → report, the
#: jobs that sequence them, and the command line.
ORDER = [
    # contracts: plain values and rules shared by the stages (no raster or torch work)
    "errors", "jsontext", "paths", "products", "summary", "rules", "planet", "dates", "modelfile",
    # files and rasters in and out
    "files", "raster", "outputs", "radiometry", "fusion",
    # which network sees an input (before any model loads)
    "choice",
    # the network and its files
    "pretrained", "network", "checkpoint", "quantize",
    # training data: one reader per format, the chip cache, the data module
    "data.common", "data.transforms", "data.geodata", "data.georaster", "data.spacenet7", "data.masks",
    "data.slippy", "data.xbd",
    "data.levir", "data.dsifn", "data.pairs", "marks", "data.marked", "data.layouts", "data.owndata", "data.sources",
    "data.chips",
    "data.datamodule",
    # training
    "model", "training",
    # inference stages, in the order data flows
    "rotation", "prepare", "predict", "regularize", "footprints", "coverage", "clearing", "evidence", "change",
    "pictures", "report",
    # jobs
    "pipeline", "scot", "evaluate", "outline_quality", "labelled_change", "batch",
    # the command line
    "cli",
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "sitewatch"


def imports_of(path: Path) -> set[str]:
    """The sitewatch modules ``path`` imports (``from sitewatch.x import y`` counts as ``x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            if name.startswith("sitewatch."):
                found.add(name.removeprefix("sitewatch."))
    return found


def graph() -> dict[str, set[str]]:
    """Module → the sitewatch modules it imports (the package ``__init__`` files left out)."""
    edges = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name != "__init__.py":
            edges[module_name(path)] = imports_of(path)
    return edges


def violations(edges: dict[str, set[str]]) -> list[str]:
    """Modules missing from :data:`ORDER`, and arrows to a module not earlier in it."""
    problems = [f"{module}: not placed in ORDER" for module in sorted(set(edges) - set(ORDER))]
    rank = {module: i for i, module in enumerate(ORDER)}
    for module, targets in sorted(edges.items()):
        for target in sorted(targets):
            if module in rank and target in rank and rank[target] >= rank[module]:
                problems.append(f"{module} -> {target}: imports a module that comes later in the flow")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dot", action="store_true", help="print Graphviz dot instead of a list")
    dot = parser.parse_args().dot
    edges = graph()
    def rank(module: str) -> int:
        return ORDER.index(module) if module in ORDER else len(ORDER)

    ordered = sorted(edges, key=rank)
    if dot:
        print("digraph sitewatch {\n  rankdir=LR;")
        print("\n".join(f'  "{m}" -> "{t}";' for m in ordered for t in sorted(edges[m])) + "\n}")
    else:
        for module in ordered:
            print(f"{module:18} -> {', '.join(sorted(edges[module], key=rank)) or '-'}")
    problems = violations(edges)
    print("\n".join(problems) if problems else f"{len(edges)} modules, "
          f"{sum(map(len, edges.values()))} arrows: no cycle, no arrow to a later module")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
