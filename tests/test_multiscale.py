"""Multi-scale training data: chip pixel sizes, large-building sampling, sensor simulation, grey chips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sitewatch.data.chips import ChipCache, ChipSettings, largest_building_m2, prepare_chips
from sitewatch.data.common import IGNORE
from sitewatch.data.datamodule import BuildingDataModule, sampling_weights, thin_evenly
from sitewatch.data.transforms import CoarseSensor, simulate_12bit_stretch, train_transform
from sitewatch.errors import SitewatchError

LEVELS = (0.3, 0.5, 1.0, 2.0, 3.0)


def test_levels_never_upsample_a_source_more_than_allowed() -> None:
    settings = ChipSettings(root="x", sources=("xbd",), gsd_m=0.5, chip_size=128, gsd_levels=LEVELS)
    assert settings.levels_for(0.3) == [0.3, 0.5, 1.0, 2.0, 3.0]
    assert settings.levels_for(0.6) == [0.5, 1.0, 2.0, 3.0]  # 0.6 / 0.3 = 2x: no
    assert settings.levels_for(0.86) == [1.0, 2.0, 3.0]  # 0.86 / 0.5 = 1.72x: no
    assert settings.levels_for(4.0) == [3.0]  # 4 / 3 = 1.33x: yes
    single = ChipSettings(root="x", sources=("xbd",), gsd_m=0.5, chip_size=128)
    assert single.levels_for(0.86) == [0.5]  # a single-scale recipe resamples every source to gsd_m


def test_largest_building_is_measured_in_square_metres() -> None:
    label = np.zeros((40, 40), np.uint8)
    label[2:12, 2:22] = 1  # 200 px
    label[30:33, 30:33] = 1  # 9 px
    label[0, :] = IGNORE
    assert largest_building_m2(label, 2.0) == 200 * 4.0
    assert largest_building_m2(np.zeros((5, 5), np.uint8), 1.0) == 0.0


@pytest.fixture(scope="module")
def multiscale_cache(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> ChipCache:
    settings = ChipSettings(root=str(samples), sources=("xbd", "inria_austin"), gsd_m=0.5, chip_size=128,
                            gsd_levels=LEVELS)
    return ChipCache(prepare_chips(settings, tmp_path_factory.mktemp("chips")))


def test_chips_are_cut_at_every_reachable_pixel_size(multiscale_cache: ChipCache) -> None:
    records = multiscale_cache.records
    by_source: dict[str, set[float]] = {}
    for record in records:
        by_source.setdefault(str(record["source"]), set()).add(float(record["gsd_m"]))
    # xBD (nominal 0.6 m) never at 0.3 m; Inria (0.3 m) at its own size and coarser
    assert 0.3 not in by_source["xbd"] and {0.5, 1.0, 2.0, 3.0} <= by_source["xbd"]
    assert {0.3, 0.5, 1.0} <= by_source["inria_austin"]
    counts = multiscale_cache.count_by_gsd(range(len(records)))
    assert counts["0.5"] > counts["1"] > counts["3"] > 0
    # the 6,882 m² Harvey roof is recorded as a large building at every size it appears
    harvey = [r for r in records if r["source"] == "xbd"]
    assert max(float(r["largest_building_m2"]) for r in harvey) > 5000
    assert any(float(r["largest_building_m2"]) >= 1000 for r in harvey if r["gsd_m"] == 3.0)


def test_sampling_weights_balance_sizes_and_favour_large_buildings(multiscale_cache: ChipCache) -> None:
    indices = list(range(len(multiscale_cache)))
    weights = sampling_weights(multiscale_cache, indices, {}, balance_gsd_levels=True,
                               large_building_m2=1000.0, large_building_weight=1.0).numpy()
    gsds = np.array([float(multiscale_cache.records[i]["gsd_m"]) for i in indices])
    shares = {level: weights[gsds == level].sum() for level in np.unique(gsds)}
    assert np.allclose(list(shares.values()), 1 / len(shares))  # every size drawn equally often
    boosted = sampling_weights(multiscale_cache, indices, {}, balance_gsd_levels=False,
                               large_building_m2=1000.0, large_building_weight=6.0).numpy()
    large = np.array([float(multiscale_cache.records[i]["largest_building_m2"]) >= 1000 for i in indices])
    assert large.any() and not large.all()
    assert np.allclose(boosted[large] / boosted[~large].max(), 6.0)


def test_validation_subset_is_fixed_and_capped(multiscale_cache: ChipCache) -> None:
    indices = list(range(len(multiscale_cache)))
    kept = thin_evenly(multiscale_cache, indices, 2)
    assert kept == thin_evenly(multiscale_cache, indices, 2)
    strata = {(r["source"], r["gsd_m"]) for r in multiscale_cache.records}
    assert len(kept) <= 2 * len(strata)
    assert thin_evenly(multiscale_cache, indices, None) == indices


def test_coarse_sensor_blurs_and_restretches_but_keeps_padding_black(samples: Path) -> None:
    rng = np.random.default_rng(0)
    image = np.zeros((64, 64, 3), np.uint8)
    image[:40] = rng.integers(0, 256, (40, 64, 3), dtype=np.uint8)
    out = simulate_12bit_stretch(image, rng)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert out[40:].max() == 0  # padding is not stretched into grey
    assert out[:40].min() == 0 and out[:40].max() == 255  # 2-98 % stretch spans the range
    blurred = CoarseSensor(sigma_px=(1.0, 1.0), p=1.0)(image=image)["image"]
    assert np.abs(np.diff(blurred[:38].astype(float), axis=1)).mean() < np.abs(
        np.diff(image[:38].astype(float), axis=1)).mean()


def test_grey_share_makes_three_equal_bands() -> None:
    image = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    transform = train_transform(64, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), grey_share=1.0)
    out = transform(image=image, mask=mask)["image"]
    assert np.allclose(out[..., 0], out[..., 1]) and np.allclose(out[..., 1], out[..., 2])


def test_bad_multiscale_settings_are_one_line_errors(samples: Path) -> None:
    with pytest.raises(SitewatchError, match="gsd_levels"):
        BuildingDataModule(root=str(samples), gsd_levels=[0.5, 0.0])
    with pytest.raises(SitewatchError, match="grey_share"):
        BuildingDataModule(root=str(samples), grey_share=1.5)
