"""int8 on the CPU: build the model's int8 graph calibrated on training chips, score it held out.

    python bench/int8.py --model FILE --config configs/planetscope.yaml [--chips 64] [--sizes 0.5]
                         [--cache-dir .cache/chips] [--out bench/results/int8.json]

1. Calibration: ``--chips`` chips of the config's training split (its chip cache, read with
   ``sitewatch.data``; never a chip of a ``val_groups`` group), at the pixel sizes inference
   works at (0.5 and 1 m), the same number from every source (evenly spread within it), each
   stretched and normalised as training and inference map them. ``sitewatch.quantize`` turns the
   model's ONNX graph into int8 with them and caches it as the ``train`` calibration
   (``~/.cache/sitewatch/onnx/<sha>.int8-train.onnx``, or under ``$SITEWATCH_CACHE``), which
   ``--backend onnx-int8`` then uses.
2. Accuracy: ``bench/heldout.py`` on the config's held-out groups at ``--sizes``, once with
   ``--backend onnx`` (float32) and once with ``--backend onnx-int8``; the mean pixel IoU over the
   satellite/aerial sources of each and their difference. The rule of issue 26: int8 becomes the
   CPU default only if the mean falls by at most 0.005.

Speed is measured by ``bench/inference.py`` (an ``onnx-int8`` row) and ``bench/peers.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recorded import command_line, repo_path  # noqa: E402 (bench/, the script's folder)

from sitewatch.checkpoint import LoadedModel, load_model  # noqa: E402
from sitewatch.data.datamodule import BuildingDataModule  # noqa: E402
from sitewatch.modelfile import file_sha256  # noqa: E402
from sitewatch.predict import export_onnx, onnx_cache_dir  # noqa: E402
from sitewatch.quantize import int8_model, int8_path, normalise_chips, quantize_onnx  # noqa: E402

WORK_GSDS_M = (0.5, 1.0)
MAX_IOU_DROP = 0.005


def training_chips(config: Path, cache_dir: Path, count: int) -> tuple[np.ndarray, dict]:
    """``count`` training chips (``N×H×W×3`` uint8) at the working pixel sizes, and what they are."""
    data = yaml.safe_load(config.read_text())["data"]
    data["cache_dir"] = str(cache_dir)
    module = BuildingDataModule(**data)
    module.setup()
    cache = module.cache
    assert cache is not None
    usable = [i for i in module.train_indices
              if any(abs(float(cache.records[i].get("gsd_m", 0.5)) - g) < 1e-6 for g in WORK_GSDS_M)]
    by_source: dict[str, list[int]] = {}
    for i in usable:
        by_source.setdefault(str(cache.records[i]["source"]), []).append(i)
    share = -(-count // len(by_source))  # the same number from every source, evenly spread in each
    chosen = [items[int(k)] for items in by_source.values()
              for k in np.unique(np.linspace(0, len(items) - 1, min(share, len(items))).round())]
    assert not any(module.is_validation(str(cache.records[i]["group"])) for i in chosen)
    sources = {name: sum(1 for i in chosen if str(cache.records[i]["source"]) == name) for name in by_source}
    return np.stack([np.asarray(cache.images[i]) for i in chosen]), {
        "chips": len(chosen), "from_training_chips": len(usable), "by_source": sources, "cache": str(cache.folder)}


def heldout(model: Path, config: Path, sizes: list[str], backend: str, out: Path,
            cache: Path | None = None) -> dict[str, float]:
    """Mean held-out pixel IoU per size (``bench/heldout.py``; reused when ``out`` already scores
    this model file at these sizes with this backend)."""
    sha = file_sha256(model)
    if out.is_file():
        done = json.loads(out.read_text())
        if done.get("sha256") == sha and set(done["mean_satellite_pixel_iou"]) == set(sizes) and cache is None \
                and backend in done.get("command", ""):
            return done["mean_satellite_pixel_iou"]
    env = dict(os.environ, **({"SITEWATCH_CACHE": str(cache)} if cache else {}))
    subprocess.run([sys.executable, str(REPO / "bench/heldout.py"), "--model", str(model), "--config", str(config),
                    "--sizes", *sizes, "--backend", backend, "--out", str(out)], check=True, cwd=REPO, env=env)
    return json.loads(out.read_text())["mean_satellite_pixel_iou"]


def build_int8(model: LoadedModel, args: argparse.Namespace, scratch: Path) -> tuple[Path, dict, Path | None]:
    """The int8 graph to score, what it was calibrated on, and the cache folder to score it from."""
    if args.calibration == "demo":  # a cache of its own, so the train calibration is not picked
        (scratch / "onnx").mkdir(parents=True)
        fp32 = Path(shutil.copy(export_onnx(model), scratch / "onnx" / export_onnx(model).name))
        graph = int8_model(fp32, model.sha256, model.metadata)
        return graph, {"chips": "the demo site: 2 dates x 4 flips"}, scratch
    chips, calibration = training_chips(args.config, args.cache_dir, args.chips)
    normalised = normalise_chips(chips, model.metadata)
    target = int8_path(onnx_cache_dir(), model.sha256, "train")
    quantize_onnx(export_onnx(model), target, (normalised[i:i + 8] for i in range(0, len(normalised), 8)))
    return target, calibration, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--config", type=Path, default=REPO / "configs/planetscope.yaml")
    parser.add_argument("--chips", type=int, default=64)
    parser.add_argument("--calibration", choices=["train", "demo"], default="train",
                        help="train: training chips (cached for --backend onnx-int8); demo: the demo site, "
                             "what a machine without the training data builds (scored from a scratch cache)")
    parser.add_argument("--cache-dir", type=Path, default=REPO / ".cache/chips", help="the chip cache folder")
    parser.add_argument("--sizes", nargs="+", default=["0.5"])
    parser.add_argument("--build-only", action="store_true", help="build and cache the int8 graph, score nothing")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/int8.json")
    args = parser.parse_args()

    model = load_model(args.model)
    results = args.out.parent
    with tempfile.TemporaryDirectory() as scratch:
        target, calibration, cache = build_int8(model, args, Path(scratch))
        print(f"int8 graph calibrated on {calibration['chips']} ({args.calibration}): {target}")
        if args.build_only:
            return
        fp32 = heldout(args.model, args.config, args.sizes, "onnx", results / "heldout_int8_reference_fp32.json")
        int8 = heldout(args.model, args.config, args.sizes, "onnx-int8",
                       results / f"heldout_int8_{args.calibration}.json", cache)
    drop = {size: fp32[size] - int8[size] for size in fp32}
    summary = {"command": command_line(), "model": repo_path(args.model), "sha256": model.sha256,
               "calibration": calibration, "calibration_set": args.calibration, "int8_graph": target.name,
               "mean_satellite_pixel_iou": {"fp32": fp32, "int8": int8, "drop": drop},
               "default_on_cpu": all(value <= MAX_IOU_DROP for value in drop.values())}
    for size in fp32:
        print(f"held out at {size} m: float32 {fp32[size]:.4f}, int8 {int8[size]:.4f}, drop {drop[size]:+.4f}")
    print(f"int8 as the CPU default (drop <= {MAX_IOU_DROP} at every size): {summary['default_on_cpu']}")
    args.out.write_text(json.dumps(summary, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
