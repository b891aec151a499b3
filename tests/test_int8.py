"""The int8 CPU backend (``--backend onnx-int8``): its masks on real pixels, its cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from sitewatch.checkpoint import load_for_inference
from sitewatch.errors import SitewatchError
from sitewatch.paths import DEMO_SITE
from sitewatch.predict import Predictor, segment_raster
from sitewatch.quantize import cached_int8, int8_path

AGREEMENT_FLOOR = 0.85  # mask IoU int8 vs float32 over both demo dates; measured 0.969 and 0.986 (two models)


def _masks(predictor: Predictor, out: Path) -> np.ndarray:
    masks = []
    for index, raster in enumerate(sorted(DEMO_SITE.glob("*.tif"))):
        result = segment_raster(raster, out / f"{predictor.backend}{index}", predictor)
        with rasterio.open(result.mask_path) as dataset:
            masks.append(dataset.read(1) == 1)
    return np.stack(masks)


def test_int8_masks_agree_with_float32_on_the_demo_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITEWATCH_CACHE", str(tmp_path / "cache"))
    model = load_for_inference()
    reference = _masks(Predictor(model, device="cpu", backend="onnx"), tmp_path)
    int8 = Predictor(model, device="cpu", backend="onnx-int8")
    assert "int8" in int8.description
    built = cached_int8(tmp_path / "cache" / "onnx", model.sha256)
    assert built == int8_path(tmp_path / "cache" / "onnx", model.sha256, "demo")  # no training file: demo site
    masks = _masks(int8, tmp_path)
    iou = (masks & reference).sum() / (masks | reference).sum()
    print(f"int8 vs float32 mask IoU {iou:.3f}")
    assert iou >= AGREEMENT_FLOOR, iou
    stamp = built.stat().st_mtime_ns
    Predictor(model, device="cpu", backend="onnx-int8")
    assert built.stat().st_mtime_ns == stamp  # the cached graph is reused, not rebuilt


def test_a_training_calibration_is_preferred(tmp_path: Path) -> None:
    sha = "ab" * 32
    assert cached_int8(tmp_path, sha) is None
    int8_path(tmp_path, sha, "demo").write_bytes(b"x")
    assert cached_int8(tmp_path, sha).name.endswith("int8-demo.onnx")
    int8_path(tmp_path, sha, "train").write_bytes(b"x")
    assert cached_int8(tmp_path, sha).name.endswith("int8-train.onnx")


def test_an_unknown_backend_is_refused() -> None:
    with pytest.raises(SitewatchError, match="unknown backend 'int4'"):
        Predictor(load_for_inference(), device="cpu", backend="int4")  # type: ignore[arg-type]
