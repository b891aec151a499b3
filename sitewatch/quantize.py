"""int8 ONNX models for the CPU: static quantization calibrated on real chips, kept in a cache.

The float32 ONNX graph (``predict.export_onnx``) is quantized with ONNX Runtime's static
quantization: convolution weights int8 per output channel, activations uint8 with ranges
(min-max) observed while the network runs on calibration chips, in the QDQ format that ONNX
Runtime fuses into integer kernels (AVX-512 VNNI / AVX2 on x86). The first
:data:`FLOAT_CONVS` convolutions (for the U-Net lite0: the stem and the encoder's two finest
stages) stay float32: quantizing them moved the mask most (measured on a Harvey tile: mask
agreement with float32 0.85 with every convolution int8, 0.94 without the stem, 0.98 without
the first nine). The files are a cache, never shipped: their name carries the model's checksum
and the calibration set's tag,

* ``train``: chips of the model's training data (``bench/int8.py`` builds it from the chip cache,
  never from held-out groups); the held-out accuracy in docs/BENCHMARKS.md is measured with it;
* ``demo``: the package's demo site (both dates, 4 flips each), built on first use where no
  ``train`` file exists, so the backend works without the training data.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import rasterio

from sitewatch.modelfile import ModelMetadata
from sitewatch.paths import DEMO_SITE
from sitewatch.radiometry import read_rgb8, stretch_chip

CALIBRATION_TAGS = ("train", "demo")  # in order of preference
FLOAT_CONVS = 9


def int8_path(onnx_dir: Path, sha256: str, tag: str) -> Path:
    """Cache file of a model's int8 graph calibrated on the set ``tag``."""
    return Path(onnx_dir) / f"{sha256[:32]}.int8-{tag}.onnx"


def cached_int8(onnx_dir: Path, sha256: str) -> Path | None:
    """The preferred existing int8 file of a model (``train`` before ``demo``), or None."""
    for tag in CALIBRATION_TAGS:
        path = int8_path(onnx_dir, sha256, tag)
        if path.is_file():
            return path
    return None


def normalise_chips(chips: np.ndarray, metadata: ModelMetadata, stretch: bool = True) -> np.ndarray:
    """``N×H×W×3`` uint8 chips as the network sees them (``N×3×H×W`` float32).

    ``stretch``: apply the model's percentile stretch per chip, as training does and as inference
    does per raster (chips already stretched pass False); legacy models take the values as they are.
    """
    mapping = metadata.input_mapping
    if stretch and mapping.kind == "percentile":
        chips = np.stack([stretch_chip(chip, mapping.low_pct, mapping.high_pct) for chip in chips])
    values = chips.astype(np.float32) / 255.0
    mean, std = np.array(metadata.mean, np.float32), np.array(metadata.std, np.float32)
    return np.ascontiguousarray(np.moveaxis((values - mean) / std, -1, 1), dtype=np.float32)


def demo_chips() -> np.ndarray:
    """The demo site's dates (uint8 RGB as read), each in its 4 flips (``N×H×W×3`` uint8)."""
    chips = []
    for path in sorted(DEMO_SITE.glob("*.tif")):
        with rasterio.open(path) as dataset:
            rgb, _ = read_rgb8(dataset)
        chips += [rgb, rgb[::-1], rgb[:, ::-1], rgb[::-1, ::-1]]
    return np.ascontiguousarray(np.stack(chips))


def quantize_onnx(fp32: Path, target: Path, batches: Iterable[np.ndarray]) -> Path:
    """Write ``target``: the int8 graph of ``fp32``, activation ranges from ``batches``
    (normalised ``N×C×H×W`` float32, as the network sees them). Written under a temporary name
    and renamed."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items: Iterator[np.ndarray] = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.items, None)
            return None if batch is None else {"image": batch}

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        convs = [node.name for node in onnx.load(str(prepared)).graph.node if node.op_type == "Conv"]
        quantize_static(str(prepared), str(quantized), Reader(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["Conv"], nodes_to_exclude=convs[:FLOAT_CONVS],
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        os.replace(quantized, target)
    return target


def int8_model(fp32: Path, sha256: str, metadata: ModelMetadata) -> Path:
    """The model's cached int8 graph (``train`` calibration preferred); built on the demo site
    when the cache holds none."""
    found = cached_int8(fp32.parent, sha256)
    if found is not None:
        return found
    chips = normalise_chips(demo_chips(), metadata)
    batches = (chips[i:i + 2] for i in range(0, len(chips), 2))
    return quantize_onnx(fp32, int8_path(fp32.parent, sha256, "demo"), batches)
