"""Inference benchmark: pipeline efficiency, ONNX Runtime vs PyTorch, peak memory vs raster size.

    python bench/inference.py [--model FILE] [--sizes 2048 16384] [--tile-size N --overlap N]
                              [--batch-size N] [--out bench/results/inference.json]

* efficiency: end-to-end ``segment_raster`` tiles/s divided by bare model-forward tiles/s on the
  same tiles (already in memory, same batch size). Goal ≥ 0.9. Tiles, overlap and batch size
  are the defaults of ``sitewatch segment`` unless given.
* backends: the same comparison for PyTorch eager, ONNX Runtime and ONNX Runtime int8
  (``--backend onnx-int8``: the model's cached int8 graph, ``train`` calibration of
  ``bench/int8.py`` when built, else the demo site's) on the CPU.
* memory: peak resident memory (ru_maxrss) of a fresh process segmenting a raster of each size
  (built by repeating a real sample tile, 0.5 m pixels). Goal: flat in raster size.
* passes: end-to-end seconds of ``segment_raster`` on the 2,048² raster (ONNX Runtime) with one
  pass, with the multi-scale pair of passes (fine + coarse, fused), with flip test-time
  augmentation, and with both: what each option costs.

Prints a table and writes JSON. Timings take the median of repeated runs after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from affine import Affine

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recorded import command_line, repo_path  # noqa: E402 (bench/, the script's folder)

from sitewatch.checkpoint import load_model  # noqa: E402
from sitewatch.data.common import read_rgb  # noqa: E402
from sitewatch.paths import default_model_path  # noqa: E402
from sitewatch.predict import (  # noqa: E402
    Predictor,
    _WindowReader,
    auto_batch_size,
    plan_input,
    segment_raster,
    window_starts,
)

SAMPLE = REPO / "data/samples/xbd/xbd/images/hurricane-harvey_00000001_pre_disaster.png"


def make_raster(path: Path, size: int) -> Path:
    """A ``size``² RGB GeoTIFF (EPSG:32615, 0.5 m) tiled from a real 1024² sample, block by block."""
    tile = read_rgb(SAMPLE).transpose(2, 0, 1)
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8",
               "crs": "EPSG:32615", "transform": Affine(0.5, 0, 300000, 0, -0.5, 3300000),
               "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate",
               "BIGTIFF": "IF_SAFER"}
    with rasterio.open(path, "w", **profile) as out:
        for row in range(0, size, 1024):
            for col in range(0, size, 1024):
                h, w = min(1024, size - row), min(1024, size - col)
                flip = tile[:, ::-1] if (row // 1024 + col // 1024) % 2 else tile
                out.write(flip[:, :h, :w], window=((row, row + h), (col, col + w)))
    return path


def efficiency(model_path: Path, backend: str, raster: Path, tile_size: int | None, overlap: int | None,
               batch_size: int | None, repeats: int) -> dict:
    """End-to-end vs bare-forward tiles/s for one backend on one raster."""
    model = load_model(model_path)
    predictor = Predictor(model, device="cpu", backend=backend)
    with rasterio.open(raster) as dataset:
        plan = plan_input(dataset, model, tile_size=tile_size, overlap=overlap, gsd_m=None, bands=None)
        rows = window_starts(dataset.height, plan.window_px[0], plan.stride_px[0])
        cols = window_starts(dataset.width, plan.window_px[1], plan.stride_px[1])
    batch_size = batch_size or auto_batch_size(plan.tile_size)
    reader = _WindowReader(raster, plan, np.array(model.metadata.mean), np.array(model.metadata.std))
    from rasterio.windows import Window

    tiles = [reader.read(Window(c, r, *plan.window_px[::-1])) for r in rows for c in cols]
    reader.close()
    batches = [np.stack(tiles[i:i + batch_size]) for i in range(0, len(tiles), batch_size)]
    predictor(batches[0])  # warm-up

    def bare() -> float:
        start = time.perf_counter()
        for batch in batches:
            predictor(batch)
        return time.perf_counter() - start

    def end_to_end() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            segment_raster(raster, Path(tmp) / "out", predictor, tile_size=tile_size, overlap=overlap,
                           batch_size=batch_size)
            return time.perf_counter() - start

    bare_s = statistics.median(bare() for _ in range(repeats))
    e2e_s = statistics.median(end_to_end() for _ in range(repeats))
    return {"backend": backend, "tiles": len(tiles), "tile_px": plan.tile_size,
            "overlap_px": plan.overlap,
            "batch_size": batch_size,
            "bare_tiles_per_s": len(tiles) / bare_s, "end_to_end_tiles_per_s": len(tiles) / e2e_s,
            "efficiency": bare_s / e2e_s}


def pass_costs(model_path: Path, raster: Path, repeats: int) -> list[dict]:
    """End-to-end seconds with one pass, multi-scale, flip TTA and both (ONNX Runtime)."""
    model = load_model(model_path)
    rows = []
    for multiscale, tta in ((False, False), (True, False), (False, True), (True, True)):
        predictor = Predictor(model, device="cpu", backend="onnx", multiscale=multiscale, tta=tta)

        def run(predictor: Predictor = predictor) -> float:
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                segment_raster(raster, Path(tmp) / "out", predictor)
                return time.perf_counter() - start

        run()  # warm-up
        seconds = statistics.median(run() for _ in range(repeats))
        rows.append({"multiscale": multiscale, "tta": tta, "seconds": seconds})
    for row in rows:
        row["relative"] = row["seconds"] / rows[0]["seconds"]
    return rows


def peak_memory(model_path: Path, raster: Path, backend: str) -> dict:
    """Peak RSS (MiB) of a fresh process segmenting ``raster``."""
    code = (
        "import resource, sys, tempfile, time; from pathlib import Path;"
        "from sitewatch.checkpoint import load_model; from sitewatch.predict import Predictor, segment_raster;"
        f"p = Predictor(load_model({str(model_path)!r}), device='cpu', backend={backend!r});"
        "t = time.perf_counter();"
        f"r = segment_raster(Path({str(raster)!r}), Path(tempfile.mkdtemp()) / 'o', p);"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, r.windows, time.perf_counter() - t)"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=REPO).stdout.split()
    with rasterio.open(raster) as dataset:
        size = dataset.width
    return {"raster_px": size, "peak_rss_mib": int(output[0]) / 1024, "windows": int(output[1]),
            "seconds": float(output[2]), "backend": backend}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=default_model_path())
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 16384])
    parser.add_argument("--tile-size", type=int, default=None, help="model pixels (default: segment's)")
    parser.add_argument("--overlap", type=int, default=None, help="model pixels (default: segment's)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: segment's automatic size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/inference.json")
    args = parser.parse_args()

    results: dict = {
        "command": command_line(),
        "machine": {"platform": platform.platform(), "cpus": torch.get_num_threads(),
                    "torch": torch.__version__},
        "model": repo_path(args.model),
        "model_sha256": load_model(args.model).sha256,
        "load_before": list(os.getloadavg()),
    }
    with tempfile.TemporaryDirectory() as tmp:
        small = make_raster(Path(tmp) / "r2048.tif", 2048)
        results["efficiency"] = [efficiency(args.model, b, small, args.tile_size, args.overlap, args.batch_size,
                                            args.repeats)
                                 for b in ("torch", "onnx", "onnx-int8")]
        results["passes"] = pass_costs(args.model, small, args.repeats)
        results["memory"] = []
        for size in args.sizes:
            raster = small if size == 2048 else make_raster(Path(tmp) / f"r{size}.tif", size)
            results["memory"].append(peak_memory(args.model, raster, "onnx"))
            (Path(tmp) / f"r{size}.tif").unlink(missing_ok=True) if size != 2048 else None

    print(f"{'backend':10s} {'tiles':>5s} {'bare tiles/s':>13s} {'end-to-end tiles/s':>19s} {'efficiency':>10s}")
    for row in results["efficiency"]:
        print(f"{row['backend']:10s} {row['tiles']:5d} {row['bare_tiles_per_s']:13.2f} "
              f"{row['end_to_end_tiles_per_s']:19.2f} {row['efficiency']:10.2f}")
    print(f"\n{'multiscale':>10s} {'tta':>5s} {'seconds':>8s} {'x one pass':>10s}")
    for row in results["passes"]:
        print(f"{str(row['multiscale']):>10s} {str(row['tta']):>5s} {row['seconds']:8.1f} {row['relative']:10.2f}")
    print(f"\n{'raster':>10s} {'windows':>8s} {'seconds':>8s} {'peak RSS MiB':>13s}")
    for row in results["memory"]:
        print(f"{row['raster_px']:>8d}² {row['windows']:8d} {row['seconds']:8.1f} {row['peak_rss_mib']:13.0f}")
    results["load_after"] = list(os.getloadavg())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
