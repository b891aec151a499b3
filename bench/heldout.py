"""Validation of a model file on the held-out areas of a training config, per source.

    python bench/heldout.py [--model models/sitewatch-unet-lite0-0.5m.safetensors]
                            [--config configs/default.yaml] [--out bench/results/heldout.json]

Every image of the config's ``val_groups`` is read with the project's readers from
``data.root``, written as a GeoTIFF (with its own georeferencing, or none plus its pixel size),
segmented with ``segment_raster`` exactly as ``sitewatch segment`` does, and scored with
``evaluate_paths``, the function behind ``sitewatch evaluate``: pixel IoU/F1 and SpaceNet
object F1 (IoU ≥ 0.5). Counts are summed per source before the scores are formed.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import rasterio
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sitewatch.checkpoint import load_model  # noqa: E402
from sitewatch.data.sources import read_source  # noqa: E402
from sitewatch.evaluate import evaluate_paths  # noqa: E402
from sitewatch.paths import default_model_path  # noqa: E402
from sitewatch.predict import Predictor, segment_raster  # noqa: E402


def write_pair(folder: Path, item) -> tuple[Path, Path]:
    profile = {"driver": "GTiff", "width": item.image.shape[1], "height": item.image.shape[0],
               "compress": "deflate"}
    if item.crs:
        profile.update(crs=item.crs, transform=item.transform)
    image_path, label_path = folder / f"{item.name}.tif", folder / f"{item.name}_label.tif"
    with rasterio.open(image_path, "w", count=3, dtype="uint8", photometric="RGB", **profile) as out:
        out.write(np.moveaxis(item.image, -1, 0))
    with rasterio.open(label_path, "w", count=1, dtype="uint8", nodata=255, **profile) as out:
        out.write(item.label[None])
    return image_path, label_path


def picture(item, mask_path: Path, target: Path, iou: float) -> None:
    """The image with the label outlined in green and the prediction in red (at most 768 px)."""
    import cv2

    with rasterio.open(mask_path) as dataset:
        predicted = (dataset.read(1) == 1).astype(np.uint8)
    canvas = np.ascontiguousarray(item.image[..., ::-1])
    for mask, colour in (((item.label == 1).astype(np.uint8), (0, 220, 0)), (predicted, (0, 0, 255))):
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(canvas, contours, -1, colour, max(1, canvas.shape[0] // 400))
    scale = min(1.0, 768 / max(canvas.shape[:2]))
    canvas = cv2.resize(canvas, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    cv2.putText(canvas, f"{item.source}/{item.name} IoU {iou:.2f}", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                (255, 255, 255), 2)
    target.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(target), canvas, [cv2.IMWRITE_PNG_COMPRESSION, 9])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=default_model_path())
    parser.add_argument("--config", type=Path, default=REPO / "configs/default.yaml")
    parser.add_argument("--root", type=Path, default=None, help="data folder (default: the config's)")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/heldout.json")
    parser.add_argument("--pictures", type=Path, default=None,
                        help="write the weakest image of each source as a PNG (label green, prediction red)")
    args = parser.parse_args()
    data = yaml.safe_load(args.config.read_text())["data"]
    root = args.root or (REPO / data["root"])
    patterns = data["val_groups"]
    predictor = Predictor(load_model(args.model), device="auto", backend="auto")
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    per_image = []
    with tempfile.TemporaryDirectory() as tmp:
        for source in ("xbd", "idabd", "benchmark_samples", "shanghai", "inria_austin", "fair_ramp", "dubai"):
            for item in read_source(root, source):
                if not any(fnmatch.fnmatchcase(item.group, p) for p in patterns):
                    continue
                if source == "fair_ramp" and item.extra.get("zoom") != 19:
                    continue  # the same ground at zoom 20 and 21: score it once
                image, label = write_pair(Path(tmp), item)
                result = segment_raster(image, Path(tmp) / item.name, predictor,
                                        gsd_m=None if item.crs else item.gsd_m)
                report = evaluate_paths(result.mask_path, label, gsd_m=None if item.crs else item.gsd_m)
                pixel, objects = report["pixel"], report["object"]
                for key in ("true_positive", "false_positive", "false_negative"):
                    totals[source]["px_" + key] += pixel[key]
                    totals[source]["obj_" + key] += objects[key]
                totals[source]["images"] += 1
                per_image.append({"source": source, "image": item.name, "pixel_iou": pixel["iou"],
                                  "object_f1": objects["f1"]})
                if args.pictures is not None:
                    worst = min((r for r in per_image if r["source"] == source), key=lambda r: r["pixel_iou"])
                    if worst["image"] == item.name:
                        picture(item, result.mask_path, args.pictures / f"{source}.png", pixel["iou"])
    rows = []
    for source, t in totals.items():
        iou = t["px_true_positive"] / max(t["px_true_positive"] + t["px_false_positive"] + t["px_false_negative"], 1)
        f1 = 2 * t["px_true_positive"] / max(2 * t["px_true_positive"] + t["px_false_positive"]
                                             + t["px_false_negative"], 1)
        obj_f1 = 2 * t["obj_true_positive"] / max(2 * t["obj_true_positive"] + t["obj_false_positive"]
                                                  + t["obj_false_negative"], 1)
        rows.append({"source": source, "images": int(t["images"]), "pixel_iou": iou, "pixel_f1": f1,
                     "object_f1": obj_f1, "buildings": int(t["obj_true_positive"] + t["obj_false_negative"])})
    print(f"{'source':18s} {'images':>6s} {'pixel IoU':>9s} {'pixel F1':>8s} {'object F1':>9s} {'buildings':>9s}")
    for r in rows:
        print(f"{r['source']:18s} {r['images']:6d} {r['pixel_iou']:9.3f} {r['pixel_f1']:8.3f} "
              f"{r['object_f1']:9.3f} {r['buildings']:9d}")
    satellite = [r["pixel_iou"] for r in rows if r["source"] in
                 ("xbd", "idabd", "benchmark_samples", "shanghai", "inria_austin")]
    print(f"\nmean pixel IoU over the satellite/aerial sources: {np.mean(satellite):.3f}")
    result = {"command": "python " + " ".join(sys.argv), "model": str(args.model),
              "sha256": predictor.model.sha256, "per_source": rows, "per_image": per_image,
              "mean_satellite_pixel_iou": float(np.mean(satellite))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
