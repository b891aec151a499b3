"""Side-by-side markdown table of two ``bench/heldout.py`` results (per source and pixel size).

    python bench/compare_heldout.py bench/results/heldout_previous_0.5m_model.json bench/results/heldout.json

Prints pixel IoU, object F1 and the recall of buildings of at least 1,000 m² for each source at
each pixel size, the first file's figure before the second's, and the mean pixel IoU over the
satellite/aerial sources per size. The model card's tables are this script's output.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def table_lines(before: dict, after: dict) -> list[str]:
    """The markdown lines of the two tables: per source and pixel size, then the mean per size."""
    rows = {(r["source"], r["size"]): r for r in before["per_source"]}
    lines = ["| source | pixel size (m) | images | pixel IoU | object F1 | buildings ≥ 1,000 m² | their recall |",
             "|---|---|---|---|---|---|---|"]
    for new in sorted(after["per_source"], key=lambda r: (r["source"], float(r["size"]))):
        old = rows.get((new["source"], new["size"]), {})
        lines.append(f"| {new['source']} | {new['size']} | {new['images']} | "
                     f"{_fmt(old.get('pixel_iou'))} → **{_fmt(new['pixel_iou'])}** | "
                     f"{_fmt(old.get('object_f1'))} → **{_fmt(new['object_f1'])}** | {new['large_buildings']} | "
                     f"{_fmt(old.get('large_recall'))} → **{_fmt(new['large_recall'])}** |")
    lines += ["", "| pixel size (m) | mean pixel IoU, satellite/aerial sources |", "|---|---|"]
    for size, value in after["mean_satellite_pixel_iou"].items():
        lines.append(f"| {size} | {_fmt(before['mean_satellite_pixel_iou'].get(size))} → **{_fmt(value)}** |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args()
    before, after = (json.loads(path.read_text()) for path in (args.before, args.after))
    print("\n".join(table_lines(before, after)))


if __name__ == "__main__":
    main()
