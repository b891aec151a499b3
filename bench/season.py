"""How much green ground real change pairs lose or gain between their dates (issue 33, season).

    python bench/season.py [--data ../shared/data] [--out bench/results/season.json]

Asks whether a warning "the dates are in different seasons" could tell the pairs whose changes are seasonal
(consecutive SpaceNet 7 PlanetScope months: nearly every new and demolished record false) from the pairs of
real change (LEVIR-CD, DSIFN, the demo site). Per pair: the share of the site green at each date (excess-green
index of ``sitewatch.clearing.excess_green`` at least ``clearing_green_min``, as the land-clearing rule reads
green) and the shares green at one date only. Grey images decimated to at most 1,024 px. Prints a table and
writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recorded import command_line, repo_path  # noqa: E402 (bench/, the script's folder)
from rotation import real_pairs  # noqa: E402

from sitewatch.clearing import excess_green  # noqa: E402
from sitewatch.files import atomic_path  # noqa: E402
from sitewatch.rules import ChangeRules  # noqa: E402


def green(path: Path, threshold: float) -> np.ndarray:
    """True where the image (decimated to at most 1,024 px) is green by the excess-green index."""
    with rasterio.open(path) as dataset:
        factor = max(1.0, max(dataset.width, dataset.height) / 1024)
        shape = (int(dataset.height / factor), int(dataset.width / factor))
        rgb = dataset.read((1, 2, 3), out_shape=(3, *shape), resampling=Resampling.average).astype(np.float32)
    return excess_green(rgb) >= threshold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "season.json")
    args = parser.parse_args()
    threshold = ChangeRules.default().clearing_green_min
    rows = []
    print("| pair | green before | green after | green lost | green gained |\n|---|---|---|---|---|")
    for earlier, later in real_pairs(args.data):
        before, after = green(earlier, threshold), green(later, threshold)
        row = {"earlier": repo_path(earlier), "later": repo_path(later), "green_before": float(before.mean()),
               "green_after": float(after.mean()), "green_lost": float((before & ~after).mean()),
               "green_gained": float((after & ~before).mean())}
        rows.append(row)
        print(f"| {earlier.parent.parent.name}/{earlier.name[:28]} → {later.name[:28]} | "
              + " | ".join(f"{row[k]:.2f}" for k in ("green_before", "green_after", "green_lost", "green_gained"))
              + " |")
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps({"command": command_line({str(args.data): "<data>"}),
                                   "clearing_green_min": threshold, "pairs": rows}, indent=1))


if __name__ == "__main__":
    main()
