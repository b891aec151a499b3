"""How well a rotation between dates is measured on real pairs, and where it would be corrected (issue 33).

    python bench/rotation.py [--data ../shared/data] [--out bench/results/rotation.json]

Every real pair at hand (LEVIR-CD full tiles and crops, DSIFN, consecutive SpaceNet 7 PlanetScope months,
the demo site) is measured as it is and with its later date turned by 0.5, 1, 2, 4 and 8 degrees (clockwise,
about the centre, edges mirrored in) by :func:`sitewatch.rotation.measure_rotation` with the shipped rules
(grey images decimated to at most 1,024 px as in a run). A pair as it is must never be corrected
(``applied``); a turned one should be, within a fraction of a degree. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recorded import command_line, repo_path  # noqa: E402 (bench/, the script's folder)

from sitewatch.files import atomic_path  # noqa: E402
from sitewatch.prepare import grey_image  # noqa: E402
from sitewatch.rotation import ROTATION_PX, _turned, measure_rotation  # noqa: E402
from sitewatch.rules import ChangeRules  # noqa: E402

TURNS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)


def real_pairs(data: Path) -> list[tuple[Path, Path]]:
    """The two-date pairs: (earlier, later) files on the same grid."""
    pairs = [(a, a.parent.parent / "B" / a.name) for folder in ("levir_cd_full_dev", "dsifn_cd_dev")
             for a in sorted((data / folder / "A").glob("*.png"))]
    samples = REPO / "data" / "samples" / "levir_cd_dev" / "A"
    pairs += [(a, a.parent.parent / "B" / a.name) for a in sorted(samples.glob("*.png"))]
    for area in sorted((data / "spacenet7_dev").glob("*/images")):
        months = sorted(area.glob("*.tif"))
        pairs += list(zip(months, months[1:], strict=False))
    pairs.append(tuple(sorted((REPO / "sitewatch" / "assets" / "demo_site").glob("*.tif"))))
    return pairs


def measure_pair(earlier: Path, later: Path, rules: ChangeRules) -> list[dict]:
    """One row per turn of the later date: measured degrees, corner movement, misfit, windows, applied."""
    first, second = grey_image(earlier, ROTATION_PX)[0], grey_image(later, ROTATION_PX)[0]
    rows = []
    for degrees in TURNS:
        found = measure_rotation(first, _turned(second, degrees), rules)
        rows.append({"turned_deg": degrees, "measured_deg": found.degrees, "corner_px": found.corner_px,
                     "rms_px": found.rms_px, "windows": found.windows, "applied": found.applied})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "rotation.json")
    args = parser.parse_args()
    rules = ChangeRules.default()
    results = []
    print(f"| pair | px | {' | '.join(f'turned {t:g}°' for t in TURNS)} |")
    print(f"|---|---|{'---|' * len(TURNS)}")
    for earlier, later in real_pairs(args.data):
        rows = measure_pair(earlier, later, rules)
        size = grey_image(earlier, ROTATION_PX)[0].shape
        results.append({"earlier": repo_path(earlier), "later": repo_path(later), "shape_px": list(size), "rows": rows})
        cells = [f"{r['measured_deg']:+.2f}° {r['rms_px']:.1f} px {'**fixed**' if r['applied'] else 'left'}"
                 for r in rows]
        print(f"| {earlier.parent.parent.name}/{earlier.name[:28]} | {size[0]} | {' | '.join(cells)} |")
    unturned = [p["rows"][0] for p in results]
    turned = [r for p in results for r in p["rows"][1:]]
    summary = {"pairs": len(results), "unturned_corrected": sum(r["applied"] for r in unturned),
               "turned_corrected": sum(r["applied"] for r in turned), "turned": len(turned),
               "corrected_error_deg_max": max((abs(r["measured_deg"] - r["turned_deg"]) for r in turned
                                               if r["applied"]), default=float("nan"))}
    print(json.dumps(summary))
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps({"command": command_line({str(args.data): "<data>"}), "rules": {
            k: getattr(rules, k) for k in ("rotation_min_corner_px", "rotation_max_rms_px", "rotation_max_deg")},
            "summary": summary, "pairs": results}, indent=1, default=float))


if __name__ == "__main__":
    main()
