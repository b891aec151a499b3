"""Validation of a model file on the held-out areas of a training config, per source and pixel size.

    python bench/heldout.py [--model sitewatch/assets/sitewatch-unet-lite0-ps.safetensors]
                            [--config configs/default.yaml] [--out bench/results/heldout.json]
                            [--sizes native 0.5 1 2 3] [--backend auto|torch|onnx|onnx-int8]

Every image of the config's ``val_groups`` is read with the project's readers from
``data.root``; for each ground pixel size of ``--sizes`` it is area-averaged to that size (label
resampled consistently; a size that would upsample the source more than 1.5× is skipped),
written as a GeoTIFF (with its own georeferencing, scaled, or none plus its pixel size),
segmented with ``segment_raster`` exactly as ``sitewatch segment`` does, and scored with
``evaluate_paths``, the function behind ``sitewatch evaluate``: pixel IoU/F1 and SpaceNet
object F1 (IoU ≥ 0.5). Counts are summed per source before the scores are formed. Large-building
recall: of the reference buildings of at least 1,000 m² (8-connected label components), the
share with at least half of their pixels predicted as building.
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
from affine import Affine
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recorded import command_line, repo_path  # noqa: E402 (bench/, the script's folder)

from sitewatch.checkpoint import load_model  # noqa: E402
from sitewatch.data.common import resample_label  # noqa: E402
from sitewatch.data.sources import read_source  # noqa: E402
from sitewatch.evaluate import evaluate_paths  # noqa: E402
from sitewatch.paths import default_model_path  # noqa: E402
from sitewatch.predict import Predictor, segment_raster  # noqa: E402
from sitewatch.raster import resample_image  # noqa: E402

LARGE_M2 = 1000.0
MAX_UPSAMPLE = 1.5
SATELLITE = ("xbd", "idabd", "benchmark_samples", "shanghai", "inria_austin")


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


def at_size(item, size: str):
    """The labelled image area-averaged to ``size`` metres (``native``: as read), or None."""
    if size == "native":
        return item
    target = float(size)
    scale = item.gsd_m / target
    if scale > MAX_UPSAMPLE + 1e-9:
        return None  # would upsample the source more than the training recipe allows
    image, label = resample_image(item.image, scale), resample_label(item.label, scale)
    transform = None
    if item.crs:
        transform = item.transform * Affine.scale(item.image.shape[1] / image.shape[1],
                                                  item.image.shape[0] / image.shape[0])
    return type(item)(name=item.name, source=item.source, group=item.group, image=image, label=label,
                      gsd_m=target, crs=item.crs, transform=transform)


def large_building_recall(label: np.ndarray, mask_path: Path, gsd_m: float) -> tuple[int, int]:
    """(found, total) reference buildings of at least LARGE_M2 with half their pixels predicted."""
    with rasterio.open(mask_path) as dataset:
        predicted = dataset.read(1) == 1
    components, count = ndimage.label(label == 1, structure=np.ones((3, 3), bool))
    if count == 0:
        return 0, 0
    sizes = np.bincount(components.ravel())
    hits = np.bincount(components.ravel(), weights=predicted.ravel())
    large = np.nonzero(sizes[1:] * gsd_m * gsd_m >= LARGE_M2)[0] + 1
    return int(np.sum(hits[large] >= 0.5 * sizes[large])), int(large.size)


def held_out_items(root: Path, patterns: list[str]):
    for source in ("xbd", "idabd", "benchmark_samples", "shanghai", "inria_austin", "fair_ramp", "dubai"):
        for item in read_source(root, source):
            if not any(fnmatch.fnmatchcase(item.group, p) for p in patterns):
                continue
            if source == "fair_ramp" and item.extra.get("zoom") != 19:
                continue  # the same ground at zoom 20 and 21: score it once
            yield item


def score_item(item, predictor: Predictor, tmp: Path, totals: dict, per_image: list, size: str,
               pictures: Path | None, work_gsd: float | None) -> None:
    folder = tmp / size
    folder.mkdir(exist_ok=True)
    image, label = write_pair(folder, item)
    gsd = None if item.crs else item.gsd_m
    result = segment_raster(image, folder / item.name, predictor, gsd_m=gsd, work_gsd_m=work_gsd)
    report = evaluate_paths(result.mask_path, label, gsd_m=gsd)
    pixel, objects = report["pixel"], report["object"]
    entry = totals[(item.source, size)]
    for key in ("true_positive", "false_positive", "false_negative"):
        entry["px_" + key] += pixel[key]
        entry["obj_" + key] += objects[key]
    found, large = large_building_recall(item.label, result.mask_path, result.pixel_size_m[0])
    entry["large_found"] += found
    entry["large_total"] += large
    entry["images"] += 1
    per_image.append({"source": item.source, "size": size, "image": item.name, "pixel_iou": pixel["iou"],
                      "object_f1": objects["f1"], "work_gsd_m": result.work_gsd_m})
    if pictures is not None and size == "native":
        worst = min((r for r in per_image if r["source"] == item.source and r["size"] == size),
                    key=lambda r: r["pixel_iou"])
        if worst["image"] == item.name:
            picture(item, result.mask_path, pictures / f"{item.source}.jpg", pixel["iou"])


def summarise(totals: dict) -> list[dict]:
    rows = []
    for (source, size), t in totals.items():
        tp, fp, fn = t["px_true_positive"], t["px_false_positive"], t["px_false_negative"]
        otp, ofp, ofn = t["obj_true_positive"], t["obj_false_positive"], t["obj_false_negative"]
        rows.append({"source": source, "size": size, "images": int(t["images"]),
                     "pixel_iou": tp / max(tp + fp + fn, 1), "pixel_f1": 2 * tp / max(2 * tp + fp + fn, 1),
                     "object_f1": 2 * otp / max(2 * otp + ofp + ofn, 1), "buildings": int(otp + ofn),
                     "large_buildings": int(t["large_total"]),
                     "large_recall": t["large_found"] / t["large_total"] if t["large_total"] else None})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=default_model_path())
    parser.add_argument("--config", type=Path, default=REPO / "configs/default.yaml")
    parser.add_argument("--root", type=Path, default=None, help="data folder (default: the config's)")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/heldout.json")
    parser.add_argument("--sizes", nargs="+", default=["native"],
                        help="ground pixel sizes in metres to score at, or 'native'")
    parser.add_argument("--work-gsd", type=float, default=None,
                        help="run the model at this pixel size (m) instead of the model's rule")
    parser.add_argument("--multiscale", action=argparse.BooleanOptionalAction, default=None,
                        help="fine + coarse pass fused (default: the model's)")
    parser.add_argument("--tta", action="store_true", help="average over the 4 flips")
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx", "onnx-int8"],
                        help="inference engine (default: segment's auto; onnx-int8: the model's cached int8 "
                             "graph, the training-chip calibration of bench/int8.py when built)")
    parser.add_argument("--pictures", type=Path, default=None,
                        help="write the weakest native image of each source (label green, prediction red)")
    args = parser.parse_args()
    data = yaml.safe_load(args.config.read_text())["data"]
    root = args.root or (REPO / data["root"])
    predictor = Predictor(load_model(args.model), device="auto", backend=args.backend, tta=args.tta,
                          multiscale=args.multiscale)
    totals: dict = defaultdict(lambda: defaultdict(float))
    per_image: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for item in held_out_items(root, data["val_groups"]):
            for size in args.sizes:
                resized = at_size(item, size)
                if resized is not None:
                    score_item(resized, predictor, Path(tmp), totals, per_image, size, args.pictures,
                               args.work_gsd)
    rows = summarise(totals)
    print(f"model {args.model}")
    print(f"{'source':18s} {'size':>6s} {'images':>6s} {'pixel IoU':>9s} {'object F1':>9s} {'buildings':>9s} "
          f"{'large':>5s} {'large recall':>12s}")
    for r in sorted(rows, key=lambda r: (r["source"], r["size"])):
        recall = "-" if r["large_recall"] is None else f"{r['large_recall']:.2f}"
        print(f"{r['source']:18s} {r['size']:>6s} {r['images']:6d} {r['pixel_iou']:9.3f} {r['object_f1']:9.3f} "
              f"{r['buildings']:9d} {r['large_buildings']:5d} {recall:>12s}")
    means = {}
    for size in args.sizes:
        values = [r["pixel_iou"] for r in rows if r["size"] == size and r["source"] in SATELLITE]
        if values:
            means[size] = float(np.mean(values))
            print(f"mean pixel IoU over the satellite/aerial sources at {size}: {means[size]:.3f} "
                  f"({len(values)} sources)")
    result = {"command": command_line(), "model": repo_path(args.model),
              "sha256": predictor.model.sha256, "tta": args.tta, "backend": predictor.description,
              "multiscale": predictor.multiscale.document() if predictor.multiscale else None,
              "per_source": rows, "per_image": per_image,
              "mean_satellite_pixel_iou": means}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
