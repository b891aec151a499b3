"""Input radiometry, one home: the percentile input mapping at inference and in training, and the
training views that show the network what real sensors deliver (haze, PlanetScope's blur)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio

from sitewatch.data.common import read_rgb
from sitewatch.data.transforms import PercentileStretch, SceneRadiometry, SensorView, sensor_factors, train_transform
from sitewatch.errors import SitewatchError
from sitewatch.modelfile import LEGACY, InputMapping, ModelMetadata
from sitewatch.radiometry import stretch_chip, value_stretch

LARGE_ROOF = "large_roof/austin7_00079_495_463.png"
PERCENTILE = InputMapping("percentile", 1.0, 99.0)


def _write(path: Path, bands: np.ndarray) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=bands.shape[2], height=bands.shape[1], count=bands.shape[0],
                       dtype=bands.dtype) as out:
        out.write(bands)
    return path


def _mapped(path: Path, mapping: InputMapping) -> np.ndarray:
    """The raster's pixels as the network receives them (0..1), under ``mapping``."""
    with rasterio.open(path) as dataset:
        low, high, _ = value_stretch(dataset, [1, 2, 3], mapping)
        values = dataset.read().astype(np.float64)
    return np.clip((values - low[:, None, None]) / (high - low)[:, None, None], 0, 1)


@pytest.fixture(scope="module")
def crisp(samples: Path) -> np.ndarray:
    """A real 0.3 m aerial tile (Inria Austin 7), 3×H×W uint8."""
    return np.moveaxis(read_rgb(samples / LARGE_ROOF), -1, 0).copy()


def test_hazy_8_bit_and_16_bit_copies_reach_the_network_as_the_crisp_image(crisp: np.ndarray, tmp_path: Path) -> None:
    """A hazy visual product (dark end lifted to ~130, as PlanetScope's 45-185) and a 16-bit reflectance
    copy are mapped onto the crisp image's values: the network sees one scene, not three."""
    hazy = (crisp.astype(np.float32) * 0.45 + 130).astype(np.uint8)
    reflectance = (crisp.astype(np.float32) * 9.0 + 400).astype(np.uint16)
    crisp_seen = _mapped(_write(tmp_path / "crisp.tif", crisp), PERCENTILE)
    for name, copy in (("hazy", hazy), ("reflectance", reflectance)):
        seen = _mapped(_write(tmp_path / f"{name}.tif", copy), PERCENTILE)
        assert np.abs(seen - crisp_seen).mean() < 0.01, name
    legacy_hazy = _mapped(tmp_path / "hazy.tif", LEGACY)  # the previous mapping: 8-bit as is
    assert legacy_hazy.min() > 0.45 and np.abs(legacy_hazy - crisp_seen).mean() > 0.2


def test_legacy_mapping_keeps_8_bit_as_is(crisp: np.ndarray, tmp_path: Path) -> None:
    with rasterio.open(_write(tmp_path / "crisp.tif", crisp)) as dataset:
        low, high, note = value_stretch(dataset, [1, 2, 3])
    assert low.tolist() == [0, 0, 0] and high.tolist() == [255, 255, 255] and note == "uint8 0-255"


def test_mapping_is_read_from_model_metadata_and_checked() -> None:
    document = {"kind": "percentile", "low_pct": 1, "high_pct": 99}
    assert InputMapping.from_document(document) == PERCENTILE
    assert InputMapping.from_document(None) == LEGACY
    assert PERCENTILE.document() == {"kind": "percentile", "low_pct": 1.0, "high_pct": 99.0}
    with pytest.raises(SitewatchError, match="radiometry"):
        InputMapping.from_document({"kind": "percentile", "low_pct": 99, "high_pct": 1})
    metadata = {"network": {}, "bands": ["red", "green", "blue"], "mean": [0.5] * 3, "std": [0.2] * 3,
                "gsd_m": 0.5, "threshold": 0.5, "radiometry": document}
    assert ModelMetadata.from_document(metadata, "m").input_mapping == PERCENTILE
    assert ModelMetadata.from_document({**metadata, "radiometry": None}, "m").input_mapping == LEGACY


def test_chip_stretch_leaves_padding_black(crisp: np.ndarray) -> None:
    chip = np.moveaxis(crisp[:, :128, :128], 0, -1).copy()
    hazy = (chip.astype(np.float32) * 0.4 + 140).astype(np.uint8)
    hazy[100:] = 0  # padding below a small image
    out = stretch_chip(hazy, 1.0, 99.0)
    assert out[100:].max() == 0
    assert np.percentile(out[:100], 1) <= 3 and np.percentile(out[:100], 99) >= 250


def _sharpness(grey: np.ndarray) -> float:
    """``std(g - G1 g) / std(G1 g - G2 g)`` (bench/planetscope_look.py): lower when blurrier."""
    g1, g2 = cv2.GaussianBlur(grey, (0, 0), 1.0), cv2.GaussianBlur(grey, (0, 0), 2.0)
    return float(np.std((grey - g1)[8:-8, 8:-8]) / np.std((g1 - g2)[8:-8, 8:-8]))


def test_sensor_view_blurs_like_planetscope_and_keeps_the_grid(crisp: np.ndarray) -> None:
    """A 3x coarser sensor shown back on the chip grid: same shape, the fine detail gone, padding kept."""
    chip = np.moveaxis(crisp[:, :256, :256], 0, -1).copy()
    chip[200:] = 0
    sensor = SensorView(factor=(3.0, 3.0), sharpen_p=0.0, jpeg_p=0.0, p=1.0)
    sensor.set_random_seed(0)  # one fixed draw of its blur and noise
    view = sensor(image=chip)["image"]
    assert view.shape == chip.shape and view.dtype == np.uint8
    assert view[200:].max() == 0
    before = _sharpness(chip[:190].astype(np.float32).mean(axis=2))
    after = _sharpness(view[:190].astype(np.float32).mean(axis=2))
    assert after < 0.5 * before, (before, after)
    assert sensor_factors(1.0, 4.0) == (1.5, 3.5) and sensor_factors(2.0, 4.0) == (1.5, 2.0)
    assert sensor_factors(3.0, 4.0) is None  # 1.5x a 3 m chip would be a 4.5 m sensor


def test_scene_radiometry_lifts_the_dark_end_and_the_stretch_restores_it(crisp: np.ndarray) -> None:
    chip = np.moveaxis(crisp[:, :256, :256], 0, -1).copy()
    scene = SceneRadiometry(haze=(0.5, 0.5), gamma=(1.0, 1.0), gain=(1.0, 1.0), desaturate_p=0.0, p=1.0)
    scene.set_random_seed(0)  # always applied, one fixed draw: the test must not depend on luck
    hazy = scene(image=chip)["image"]
    assert np.percentile(hazy, 1) > 100  # a hazy scene: no dark pixel left
    restored = PercentileStretch((1.0, 1.0), (99.0, 99.0))(image=hazy)["image"]
    assert np.percentile(restored, 1) < 10 and np.percentile(restored, 99) > 245


def test_training_transform_with_the_stretch_spans_the_range(crisp: np.ndarray) -> None:
    chip = np.moveaxis(crisp[:, :256, :256], 0, -1).copy()
    mask = np.zeros((256, 256), np.uint8)
    transform = train_transform(256, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), input_stretch=[1.0, 99.0],
                                chip_gsd_m=1.0, sensor_view_p=1.0)
    transform.set_random_seed(0)  # one fixed draw of the augmentations: the test must not depend on luck
    out = transform(image=chip, mask=mask)["image"]
    assert out.shape == (256, 256, 3)
    inside = out[out.any(axis=2)]
    assert np.percentile(inside, 1) < 0.15 and np.percentile(inside, 99) > 0.8
