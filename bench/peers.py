"""sitewatch against the tools a user would pick instead: the same raster, the same weights, one run.

    python bench/peers.py [--quick] [--sizes 2048 8192] [--model FILE] [--out bench/results/peers.json]
                          [--geoai-python /tmp/geoai-env/bin/python]

Every tool segments the same RGB GeoTIFF (0.5 m, EPSG:32615, tiled from a real 1,024² Harvey
tile, as ``bench/inference.py`` builds it) in a fresh process of its own, one after another, so
that ``peak_rss_mib`` (that process's ``VmHWM``, its own peak resident set) is the tool's alone. ``seconds`` runs from
before the model is loaded to the closed output file (interpreter and library imports left out;
``process_seconds`` is the whole process). Every tool runs the **same network with the same
weights** (sitewatch's model: a U-Net with a ``tu-tf_efficientnet_lite0`` encoder, saved by this
script as a plain PyTorch state dict for the peers) and the same input mapping (the model's
per-band stretch measured by sitewatch on the raster, then its mean/std), so the masks differ only
through tiling, blending and numerics. ``agreement_iou``: building-mask IoU against sitewatch's
float32 mask of the same raster.

Tools (CPU rows; CUDA rows are added where ``torch.cuda.is_available()``):

* ``sitewatch``: ``segment_raster`` with ``sitewatch segment``'s defaults (ONNX Runtime on the
  CPU: 1,024² tiles, 256 px overlap, blended; writes the probability and mask COGs with overviews).
  The ONNX graph is exported once beforehand (it is cached by model checksum, as for any user's
  second run).
* ``sitewatch-int8``: the same with ``--backend onnx-int8`` (the int8 graph built beforehand and
  cached; the ``train`` calibration when ``bench/int8.py`` has built it, else the demo site's).
* ``sitewatch-torch``: the same with ``--backend torch`` (PyTorch eager), to separate the engine
  from the pipeline (2,048² only).
* ``geoai``: ``geoai.inference.predict_geotiff`` (geoai-py 0.40.1, its tiled whole-raster
  inference with its own defaults: 256² tiles, 64 px overlap, batch 4, spline blending), given the
  smp U-Net as a custom model (geoai's own pretrained building models need a Hugging Face
  download, impossible offline here), ``preprocess_fn`` = the model's input mapping,
  ``postprocess_fn`` = sigmoid > the model's threshold, output uint8. Installed in its own
  environment, so the project does not depend on it::

      python3 -m venv /tmp/geoai-env && /tmp/geoai-env/bin/pip install geoai-py

  (resolved here to geoai-py 0.40.1 with torch 2.14.1 (CUDA build), smp 0.6.0, timm 1.0.31;
  7.2 GB; 0.43 needs a newer Python). Without that environment the geoai rows are skipped.
* ``smp-loop``: the loop torchgeo and raster-vision users write: rasterio windows of 512² with
  64 px overlap, batches of 4 through the smp model in PyTorch eager (``no_grad``), the centre of
  each window kept, sigmoid > threshold written window by window into a uint8 GeoTIFF. Runs in
  the project's environment.

``--quick`` runs the 2,048² raster only and writes ``--out`` (default
``bench/results/peers_quick.json``); the full run (2,048² and 8,192²) writes
``bench/results/peers.json``. Both: ``{"rows": [{"tool", "raster_px", "device", "seconds",
"peak_rss_mib", "agreement_iou", ...}]}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

REPO = Path(__file__).resolve().parents[1]
GEOAI_PYTHON = Path("/tmp/geoai-env/bin/python")
SMP_LOOP_TILE, SMP_LOOP_OVERLAP, SMP_LOOP_BATCH = 512, 64, 4


# --- the tools, each run in its own process (``--child TOOL SPEC``) --------------------------------

def _peak_rss_mib() -> float:
    """This process's peak resident set: ``VmHWM`` where Linux gives it, else ``ru_maxrss``.

    On Linux ``ru_maxrss`` survives ``exec``: a child started by this script reports at least the
    parent's resident set when it forked (the parent holds torch and the model, ~800 MiB), so a tool
    needing less than that measured the parent. ``VmHWM`` is the peak of the child's own memory.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_sitewatch(spec: dict) -> None:
    from sitewatch.checkpoint import load_model
    from sitewatch.predict import Predictor, segment_raster

    predictor = Predictor(load_model(spec["model"]), device=spec["device"], backend=spec["backend"])
    segment_raster(Path(spec["raster"]), Path(spec["out_dir"]), predictor)


def _smp_network(spec: dict):  # noqa: ANN202 - torch is imported in the child only
    import segmentation_models_pytorch as smp
    import torch

    settings = spec["network"]
    architecture = getattr(smp, settings["arch"])
    network = architecture(encoder_name=settings["encoder"], encoder_weights=None,
                           in_channels=settings["in_channels"], classes=settings["classes"],
                           encoder_depth=settings["encoder_depth"], decoder_channels=settings["decoder_channels"])
    network.load_state_dict(torch.load(spec["weights"], map_location="cpu", weights_only=True))
    return network.eval().to(spec["device"])


def _mapping(spec: dict):  # noqa: ANN202
    low, high = (np.array(spec[k], np.float32).reshape(-1, 1, 1) for k in ("low", "high"))
    mean, std = (np.array(spec[k], np.float32).reshape(-1, 1, 1) for k in ("mean", "std"))

    def preprocess(tile: np.ndarray) -> np.ndarray:
        scaled = np.clip((tile.astype(np.float32) - low) / (high - low), 0.0, 1.0)
        return ((scaled - mean) / std).astype(np.float32)

    return preprocess


def run_geoai(spec: dict) -> None:
    from geoai.inference import predict_geotiff

    threshold = spec["threshold"]

    def postprocess(logits: np.ndarray) -> np.ndarray:
        return (1.0 / (1.0 + np.exp(-logits)) > threshold).astype(np.uint8)

    predict_geotiff(_smp_network(spec), spec["raster"], str(Path(spec["out_dir"]) / "mask.tif"),
                    num_classes=1, output_dtype="uint8", output_nodata=255, preprocess_fn=_mapping(spec),
                    postprocess_fn=postprocess, device=spec["device"], verbose=False)


def run_smp_loop(spec: dict) -> None:
    import torch
    from rasterio.windows import Window

    network, preprocess = _smp_network(spec), _mapping(spec)
    tile, margin, threshold = SMP_LOOP_TILE, SMP_LOOP_OVERLAP // 2, spec["threshold"]
    Path(spec["out_dir"]).mkdir(parents=True, exist_ok=True)
    with rasterio.open(spec["raster"]) as src:
        profile = src.profile | {"count": 1, "dtype": "uint8", "nodata": 255, "compress": "deflate"}
        stride = tile - 2 * margin
        starts = [(r, c) for r in range(0, max(src.height - 2 * margin, 1), stride)
                  for c in range(0, max(src.width - 2 * margin, 1), stride)]
        with rasterio.open(Path(spec["out_dir"]) / "mask.tif", "w", **profile) as dst:
            for i in range(0, len(starts), SMP_LOOP_BATCH):
                group = starts[i:i + SMP_LOOP_BATCH]
                windows = [Window(c, r, min(tile, src.width - c), min(tile, src.height - r)) for r, c in group]
                pixels = [preprocess(src.read(window=w)) for w in windows]
                batch = np.zeros((len(pixels), pixels[0].shape[0], tile, tile), np.float32)
                for k, p in enumerate(pixels):
                    batch[k, :, :p.shape[1], :p.shape[2]] = p
                with torch.no_grad():
                    logits = network(torch.from_numpy(batch).to(spec["device"]))[:, 0].float().cpu().numpy()
                for window, logit in zip(windows, logits, strict=True):
                    top = 0 if window.row_off == 0 else margin
                    left = 0 if window.col_off == 0 else margin
                    bottom = window.height if window.row_off + window.height >= src.height else window.height - margin
                    right = window.width if window.col_off + window.width >= src.width else window.width - margin
                    mask = (1.0 / (1.0 + np.exp(-logit[top:bottom, left:right])) > threshold).astype(np.uint8)
                    dst.write(mask, 1, window=Window(window.col_off + left, window.row_off + top,
                                                     right - left, bottom - top))


CHILDREN = {"sitewatch": run_sitewatch, "geoai": run_geoai, "smp-loop": run_smp_loop}


def child(kind: str, spec_json: str) -> None:
    spec = json.loads(spec_json)
    if spec.get("threads"):
        import torch

        torch.set_num_threads(int(spec["threads"]))
    start = time.perf_counter()
    CHILDREN[kind](spec)
    print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss_mib": _peak_rss_mib()}))


# --- the parent: prepare, run each tool, compare ------------------------------------------------

def prepare(model_path: Path, folder: Path) -> dict:
    """Weights as a plain state dict for the peers, the caches sitewatch keeps, the network settings."""
    import torch

    from sitewatch.checkpoint import load_model
    from sitewatch.predict import export_onnx
    from sitewatch.quantize import int8_model

    model = load_model(model_path)
    weights = folder / "weights.pt"
    torch.save(model.network.state_dict(), weights)
    int8 = int8_model(export_onnx(model), model.sha256, model.metadata)
    return {"model": str(model_path), "sha256": model.sha256, "weights": str(weights),
            "network": model.metadata.network, "threshold": model.threshold,
            "mean": list(model.metadata.mean), "std": list(model.metadata.std), "int8_graph": int8.name,
            "multiscale": model.metadata.multiscale is not None}


def input_mapping(model_path: Path, raster: Path) -> dict:
    """The per-band (low, high) sitewatch measures on ``raster`` for this model."""
    from sitewatch.checkpoint import load_model
    from sitewatch.predict import plan_input

    with rasterio.open(raster) as dataset:
        plan = plan_input(dataset, load_model(model_path), tile_size=None, overlap=None, gsd_m=None, bands=None)
    return {"low": plan.low.tolist(), "high": plan.high.tolist()}


def run_tool(python: str, kind: str, spec: dict) -> dict:
    start = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    done = subprocess.run([python, str(Path(__file__).resolve()), "--child", kind, json.dumps(spec)],
                          capture_output=True, text=True, env=env, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result | {"process_seconds": time.perf_counter() - start}


def read_mask(folder: Path) -> np.ndarray:
    with rasterio.open(folder / "mask.tif") as dataset:
        return dataset.read(1) == 1


def tools(device: str, size: int, geoai_python: Path | None) -> list[tuple[str, str, str, dict]]:
    """(row name, interpreter, child kind, extra spec) of every tool on ``device`` (sitewatch's
    PyTorch-eager variant on the 2,048² raster only: it only separates engine from pipeline)."""
    rows = [("sitewatch", sys.executable, "sitewatch", {"backend": "onnx" if device == "cpu" else "torch"})]
    if device == "cpu":
        rows.append(("sitewatch-int8", sys.executable, "sitewatch", {"backend": "onnx-int8"}))
        if size <= 2048:
            rows.append(("sitewatch-torch", sys.executable, "sitewatch", {"backend": "torch"}))
    if geoai_python is not None:
        rows.append(("geoai", str(geoai_python), "geoai", {}))
    rows.append(("smp-loop", sys.executable, "smp-loop", {}))
    return rows


def measure(raster: Path, size: int, common: dict, device: str, geoai_python: Path | None, tmp: Path) -> list[dict]:
    rows, reference = [], None
    for name, python, kind, extra in tools(device, size, geoai_python):
        out_dir = tmp / f"{name}-{device}-{size}"
        spec = common | extra | {"raster": str(raster), "out_dir": str(out_dir), "device": device}
        result = run_tool(python, kind, spec)
        mask = read_mask(out_dir)
        if reference is None:
            reference = mask
        agreement = float((mask & reference).sum() / max((mask | reference).sum(), 1))
        row = {"tool": name, "raster_px": size, "device": device, **result, "agreement_iou": agreement,
               "building_share": float(mask.mean())}
        print(f"{name:16s} {size:6d}² {device:5s} {row['seconds']:8.1f} s {row['peak_rss_mib']:8.0f} MiB "
              f"IoU vs sitewatch {agreement:.4f}", flush=True)
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    """The side-by-side table of docs/BENCHMARKS.md."""
    lines = ["| tool | raster | device | seconds | × sitewatch's time | peak RSS (MiB) | mask IoU vs sitewatch |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        ours = next(r for r in rows if r["tool"] == "sitewatch" and r["raster_px"] == row["raster_px"]
                    and r["device"] == row["device"])
        lines.append(f"| {row['tool']} | {row['raster_px']:,}² | {row['device']} | {row['seconds']:.1f} | "
                     f"{row['seconds'] / ours['seconds']:.2f} | {row['peak_rss_mib']:,.0f} | "
                     f"{row['agreement_iou']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=2, metavar=("TOOL", "SPEC"), help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="the 2,048² raster only")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="raster sides (default 2048 8192)")
    parser.add_argument("--model", type=Path, default=None, help="default: the shipped model")
    parser.add_argument("--geoai-python", type=Path, default=GEOAI_PYTHON)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    sys.path.insert(0, str(REPO))
    import torch

    sys.path.insert(0, str(REPO / "bench"))
    from inference import make_raster
    from recorded import command_line, repo_path

    from sitewatch.paths import default_model_path

    model = args.model or default_model_path()
    sizes = args.sizes or ([2048] if args.quick else [2048, 8192])
    out = args.out or REPO / ("bench/results/peers_quick.json" if args.quick else "bench/results/peers.json")
    geoai_python = args.geoai_python if args.geoai_python.is_file() else None
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    result: dict = {"command": command_line({str(args.geoai_python): "GEOAI_ENV/bin/python"}),
                    "model": repo_path(model),
                    "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                "load_before": os.getloadavg()}, "rows": []}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        common = prepare(model, tmp)
        result["model_sha256"], result["int8_graph"] = common["sha256"], common["int8_graph"]
        for size in sizes:
            raster = make_raster(tmp / f"r{size}.tif", size)
            spec = common | input_mapping(model, raster)
            for device in devices:
                result["rows"] += measure(raster, size, spec, device, geoai_python, tmp)
                result["machine"]["load_after"] = os.getloadavg()
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(result, indent=2))  # after every raster: a stopped run keeps its rows
            raster.unlink()
    print(markdown(result["rows"]))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
