"""Change accuracy on the LEVIR-CD sample pairs: pixel change F1 and new-building recall.

    python bench/levir.py [--out bench/results/levir.json]

Each of the four pairs in ``data/samples/levir_cd_dev`` is georeferenced, run through
``sitewatch change`` with the shipped model, and scored with ``change_scores`` against its
LEVIR-CD change label (objects matched one to one at IoU ≥ 0.5, and at ≥ 0.25 for a
lenient view of footprints that are found but outlined loosely).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recorded import command_line, repo_path  # noqa: E402 (bench/, the script's folder)

from sitewatch.checkpoint import load_model  # noqa: E402
from sitewatch.data.levir import levir_names, read_levir_pair, write_geotiff  # noqa: E402
from sitewatch.evaluate import change_scores, read_polygons  # noqa: E402
from sitewatch.paths import default_model_path  # noqa: E402
from sitewatch.pipeline import run_site  # noqa: E402
from sitewatch.predict import Predictor  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=default_model_path())
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/levir.json")
    args = parser.parse_args()
    samples = REPO / "data" / "samples"
    predictor = Predictor(load_model(args.model), device="auto", backend="auto")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in levir_names(samples):
            pair = read_levir_pair(samples, name)
            rasters = [write_geotiff(Path(tmp) / name / f"{name}_{d}.tif", image, pair.transform, pair.crs, {})
                       for d, image in (("2012-05-01", pair.earlier), ("2018-05-01", pair.later))]
            run = run_site(rasters, Path(tmp) / "out" / name, predictor)
            changes = read_polygons(Path(tmp) / "out" / name / "changes.gpkg:changes")
            strict = change_scores(changes, pair.change, pair.transform, pair.crs, 0.5)
            lenient = change_scores(changes, pair.change, pair.transform, pair.crs, 0.25)
            rows.append({"pair": name, "change_objects": strict["object"]["change_objects"],
                         "new_buildings": strict["object"]["new_buildings"],
                         "pixel_change_f1": strict["pixel"]["f1"],
                         "new_recall_iou50": strict["object"]["recall"],
                         "new_precision_iou50": strict["object"]["precision"],
                         "new_recall_iou25": lenient["object"]["recall"],
                         "flags": run.summary.flags.as_dict(), "counts": run.summary.counts.as_dict()})
    header = ("pair", "objects", "new", "px F1", "R@.5", "P@.5", "R@.25")
    print(f"{header[0]:22s} {header[1]:>7s} {header[2]:>4s} {header[3]:>6s} {header[4]:>5s} {header[5]:>5s} "
          f"{header[6]:>6s}  flags")
    for r in rows:
        print(f"{r['pair']:22s} {r['change_objects']:7d} {r['new_buildings']:4d} {r['pixel_change_f1']:6.3f} "
              f"{r['new_recall_iou50']:5.2f} {r['new_precision_iou50']:5.2f} {r['new_recall_iou25']:6.2f}"
              f"  {r['flags']}")
    result = {"command": command_line(), "model": repo_path(args.model), "pairs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
