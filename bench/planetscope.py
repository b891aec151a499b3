"""Large buildings found and open ground falsely found on real PlanetScope, for any model.

    python bench/planetscope.py [--model FILE] [--multiscale | --no-multiscale] [--tta]
                                [--work-gsd M] [--crops NAME ...] [--out bench/results/planetscope.json]

The reference (``data/samples/planetscope_dev/reference.json``) marks by eye, on the six
PlanetScope visual crops of ``../shared/data/planetscope_dev`` (3 m), large buildings
(≥ 1,000 m²: hangars, terminals, warehouses...) and open-ground spots (aprons, runways, roads,
car parks, fields, bare ground, water, docks), as pixel outlines; its ``criteria`` say how.
Each crop is written as a GeoTIFF of 3 m pixels (its transparent or white no-data corner
masked), segmented with ``segment_raster`` exactly as ``sitewatch segment --gsd 3`` does, and
scored:

* a large building is **found** when at least half the pixels inside its outline are building;
* an open-ground spot is **falsely found** when more than a quarter of its pixels are building.

Prints a table per crop and writes JSON (per mark, per crop, totals).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recorded import command_line, repo_path  # noqa: E402 (bench/, the script's folder)

from sitewatch.checkpoint import load_model  # noqa: E402
from sitewatch.marks import FALSE_SHARE, FOUND_SHARE, read_marks, score_marks  # noqa: E402
from sitewatch.paths import default_model_path  # noqa: E402
from sitewatch.predict import Predictor, segment_raster  # noqa: E402

REFERENCE = REPO / "data/samples/planetscope_dev/reference.json"


def crop_geotiff(png: Path, target: Path) -> Path:
    """The crop as an RGB GeoTIFF without georeferencing; transparent or pure-white corners masked."""
    image = np.asarray(Image.open(png))
    valid = np.ones(image.shape[:2], bool)
    if image.ndim == 3 and image.shape[2] == 4:
        valid &= image[..., 3] > 0
    rgb = image[..., :3]
    valid &= ~(rgb == 255).all(axis=2)
    profile = {"driver": "GTiff", "width": rgb.shape[1], "height": rgb.shape[0], "count": 3, "dtype": "uint8",
               "photometric": "RGB", "compress": "deflate"}
    with rasterio.open(target, "w", **profile) as out:
        out.write(np.moveaxis(rgb, -1, 0))
        out.write_mask(np.where(valid, 255, 0).astype(np.uint8))
    return target


def score_crop(name: str, crop: dict, data: Path, reference: Path, tmp: Path, predictor: Predictor,
               work_gsd: float | None, pixel_size_m: float) -> dict:
    image = crop_geotiff(data / crop["file"], tmp / f"{name}.tif")
    started = time.perf_counter()
    result = segment_raster(image, tmp / name, predictor, gsd_m=pixel_size_m, work_gsd_m=work_gsd)
    seconds = time.perf_counter() - started
    with rasterio.open(result.mask_path) as dataset:
        mask = dataset.read(1)
    marks = read_marks(reference, name)
    score = score_marks(marks, mask)
    rows = [{"id": m.id, "type": "large_building" if m.building else "open_ground", "kind": m.kind,
             "share": round(score.shares[m.id], 3),
             ("found" if m.building else "falsely_found"): (score.shares[m.id] >= FOUND_SHARE if m.building
                                                           else score.shares[m.id] > FALSE_SHARE)}
            for m in marks]
    return {"crop": name, "seconds": round(seconds, 1), "work_gsd_m": result.work_gsd_m,
            "passes_m": result.pass_gsds_m, "large_buildings": score.buildings, "found": score.found,
            "open_ground": score.open_ground, "falsely_found": score.falsely_found, "marks": rows}


def totals(rows: list[dict]) -> dict:
    marks = [m for row in rows for m in row["marks"]]
    by_kind: dict[str, Counter] = {}
    for mark in marks:
        counter = by_kind.setdefault(f"{mark['type']}/{mark['kind']}", Counter())
        counter["total"] += 1
        counter["hit"] += int(mark.get("found", mark.get("falsely_found", False)))
    found = sum(r["found"] for r in rows)
    large = sum(r["large_buildings"] for r in rows)
    false = sum(r["falsely_found"] for r in rows)
    ground = sum(r["open_ground"] for r in rows)
    return {"found": found, "large_buildings": large, "recall": found / max(large, 1),
            "falsely_found": false, "open_ground": ground, "false_rate": false / max(ground, 1),
            "seconds": round(sum(r["seconds"] for r in rows), 1),
            "by_kind": {kind: dict(counter) for kind, counter in sorted(by_kind.items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=default_model_path())
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/planetscope_dev")
    parser.add_argument("--reference", type=Path, default=REFERENCE)
    parser.add_argument("--multiscale", action=argparse.BooleanOptionalAction, default=None,
                        help="fine + coarse pass (default: the model's)")
    parser.add_argument("--tta", action="store_true", help="average over the 4 flips")
    parser.add_argument("--work-gsd", type=float, default=None)
    parser.add_argument("--crops", nargs="*", default=None)
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/planetscope.json")
    args = parser.parse_args()
    reference = json.loads(args.reference.read_text())
    predictor = Predictor(load_model(args.model), device="auto", backend="auto", tta=args.tta,
                          multiscale=args.multiscale)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, crop in reference["crops"].items():
            if args.crops and name not in args.crops:
                continue
            rows.append(score_crop(name, crop, args.data, args.reference, Path(tmp), predictor, args.work_gsd,
                                   float(reference.get("pixel_size_m", 3.0))))
            row = rows[-1]
            print(f"{name:20s} large buildings found {row['found']:3d}/{row['large_buildings']:3d}  "
                  f"open ground falsely found {row['falsely_found']:3d}/{row['open_ground']:3d}  "
                  f"({row['seconds']:.0f} s, passes {row['passes_m']} m)")
    total = totals(rows)
    print(f"{'all':20s} large buildings found {total['found']:3d}/{total['large_buildings']:3d} "
          f"({total['recall']:.2f})  open ground falsely found {total['falsely_found']:3d}/{total['open_ground']:3d} "
          f"({total['false_rate']:.2f})")
    result = {"command": command_line(), "model": repo_path(args.model), "sha256": predictor.model.sha256,
              "multiscale": predictor.multiscale.document() if predictor.multiscale else None, "tta": args.tta,
              "totals": total, "crops": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
