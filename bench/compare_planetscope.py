"""Markdown tables of ``bench/planetscope.py`` results side by side (one column per result file).

    python bench/compare_planetscope.py LABEL=FILE [LABEL=FILE ...]

Prints, per crop and in total, the marked large buildings found and the open-ground marks
falsely found, then the same per kind of mark. The model card's PlanetScope tables are this
script's output.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _cell(hit: int, total: int) -> str:
    return f"{hit}/{total} ({hit / total:.0%})" if total else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="LABEL=FILE")
    args = parser.parse_args()
    labels, results = [], []
    for item in args.results:
        label, _, path = item.partition("=")
        labels.append(label)
        results.append(json.loads(Path(path).read_text()))
    print("| crop | " + " | ".join(f"{label}: found / falsely found" for label in labels) + " |")
    print("|---|" + "---|" * len(labels))
    for k, crop in enumerate(results[0]["crops"]):
        cells = [f"{_cell(r['crops'][k]['found'], r['crops'][k]['large_buildings'])} / "
                 f"{_cell(r['crops'][k]['falsely_found'], r['crops'][k]['open_ground'])}" for r in results]
        print(f"| {crop['crop']} | " + " | ".join(cells) + " |")
    cells = [f"**{_cell(r['totals']['found'], r['totals']['large_buildings'])}** / "
             f"**{_cell(r['totals']['falsely_found'], r['totals']['open_ground'])}**" for r in results]
    print("| all six | " + " | ".join(cells) + " |")
    print()
    print("| mark kind | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    for kind in results[0]["totals"]["by_kind"]:
        cells = [_cell(r["totals"]["by_kind"][kind].get("hit", 0), r["totals"]["by_kind"][kind]["total"])
                 for r in results]
        print(f"| {kind} | " + " | ".join(cells) + " |")
    print()
    print("| | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    print("| seconds, six crops | " + " | ".join(f"{r['totals']['seconds']:.0f}" for r in results) + " |")


if __name__ == "__main__":
    main()
