"""Probe, not the feature: does "green at the first date, not green at the last" alone find land clearing?

    python bench/clearing_probe.py [--out bench/results/clearing_probe.json]

An RGB excess-green index (chromatic coordinates, 2g - r - b, 5 px median) on every labelled change
pair in data/samples (DSIFN ~2 m, LEVIR-CD ~0.5 m): a pixel is "cleared" when the index is at least
``--vegetated`` at the earlier date and below 0.02 at the later one, opened twice. Printed per pair:
the share of the image flagged, the share of the flagged area inside the labelled change, the
share of the labelled change flagged, and against the cleared-ground reference of
``bench/clearing.py`` the shares of "cleared" and "not cleared" ground flagged. The shipped flag
(``sitewatch.clearing``, measured by ``bench/clearing.py``) adds the pattern test, the building
masks, persistence and a minimum area to this cue.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from clearing import reference_cells  # noqa: E402

from sitewatch.data.dsifn import dsifn_names, read_dsifn_pair  # noqa: E402
from sitewatch.data.levir import levir_names, read_levir_pair  # noqa: E402

BARE_BELOW = 0.02


def excess_green(image: np.ndarray) -> np.ndarray:
    """2g - r - b on chromatic coordinates (brightness-free), median-filtered over 5 px."""
    values = image.astype(np.float32) + 1
    total = values.sum(-1)
    r, g, b = (values[..., i] / total for i in range(3))
    return ndimage.median_filter(2 * g - r - b, 5)


def probe(earlier: np.ndarray, later: np.ndarray, change: np.ndarray, vegetated: float,
          reference: np.ndarray) -> dict[str, float | None]:
    cleared = (excess_green(earlier) >= vegetated) & (excess_green(later) < BARE_BELOW)
    cleared = ndimage.binary_opening(cleared, iterations=2)
    changed = change > 0
    inside = int((cleared & changed).sum())
    return {"flagged_share": round(float(cleared.mean()), 3),
            "flagged_inside_change": round(inside / max(int(cleared.sum()), 1), 2),
            "change_flagged": round(inside / max(int(changed.sum()), 1), 2),
            "cleared_flagged": round(float(cleared[reference == 1].mean()), 3) if (reference == 1).any() else None,
            "not_cleared_flagged": round(float(cleared[reference == 0].mean()), 3) if (reference == 0).any() else None}


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "clearing_probe.json")
    parser.add_argument("--vegetated", type=float, default=0.06)
    args = parser.parse_args()
    root = REPO / "data" / "samples"
    rows = []
    for reader, names in ((read_dsifn_pair, dsifn_names(root)), (read_levir_pair, levir_names(root))):
        for name in names:
            pair = reader(root, name)
            reference = reference_cells(name, pair.change.shape)
            rows.append({"pair": name, **probe(pair.earlier, pair.later, pair.change, args.vegetated, reference)})
    print(f"{'pair':22} flagged  inside change  change flagged  cleared flagged  other flagged")
    for row in rows:
        print(f"{row['pair']:22} {row['flagged_share']:7.3f}  {row['flagged_inside_change']:13.2f}  "
              f"{row['change_flagged']:14.2f}  {_cell(row['cleared_flagged']):>15}  "
              f"{_cell(row['not_cleared_flagged']):>13}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"vegetated": args.vegetated, "bare_below": BARE_BELOW, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
