"""Lightning data module over the public building datasets.

Sources are read once into a chip cache at the model's pixel size (``prepare_data``), then
split into training and validation by *group* (an area or a whole source: never by tile, since
``fair_ramp`` holds the same ground at three zooms), and sampled with per-source weights.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from sitewatch.data.chips import ChipCache, ChipSettings, prepare_chips
from sitewatch.data.sources import SOURCES, available_sources
from sitewatch.data.transforms import eval_transform, train_transform
from sitewatch.errors import SitewatchError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ChipDataset(Dataset):
    """Chips of a cache, transformed; items are dicts of image, mask and source index.

    Chips whose pixel size is at least ``coarse_from_m`` metres use ``coarse_transform``
    (a coarse-sensor simulation) when one is given.
    """

    def __init__(self, cache: ChipCache, indices: Sequence[int], transform, sources: list[str],
                 coarse_transform=None, coarse_from_m: float | None = None):
        self.cache = cache
        self.indices = list(indices)
        self.transform = transform
        self.coarse_transform = coarse_transform
        self.coarse_from_m = coarse_from_m
        self.source_ids = {name: i for i, name in enumerate(sources)}

    def __len__(self) -> int:
        return len(self.indices)

    def _transform_for(self, index: int):
        if self.coarse_transform is None or self.coarse_from_m is None:
            return self.transform
        return self.coarse_transform if chip_gsd(self.cache, index) >= self.coarse_from_m else self.transform

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        index = self.indices[item]
        out = self._transform_for(index)(image=np.asarray(self.cache.images[index]),
                                         mask=np.asarray(self.cache.labels[index]))
        return {
            "image": torch.from_numpy(out["image"].transpose(2, 0, 1).copy()),
            "mask": torch.from_numpy(out["mask"].astype(np.int64)),
            "source": torch.tensor(self.source_ids[self.cache.records[index]["source"]]),
        }


def chip_gsd(cache: ChipCache, index: int) -> float:
    """Ground pixel size (m) of one cached chip."""
    return float(cache.records[index].get("gsd_m", cache.settings["gsd_m"]))


def thin_evenly(cache: ChipCache, indices: list[int], limit: int | None) -> list[int]:
    """At most ``limit`` chips per (source, pixel size), evenly spaced over ``indices``."""
    if limit is None:
        return indices
    strata: dict[tuple[str, float], list[int]] = {}
    for i in indices:
        strata.setdefault((str(cache.records[i]["source"]), chip_gsd(cache, i)), []).append(i)
    kept: list[int] = []
    for members in strata.values():
        if len(members) <= limit:
            kept += members
        else:
            kept += [members[int(k * len(members) / limit)] for k in range(limit)]
    return sorted(kept)


def sampling_weights(cache: ChipCache, indices: Sequence[int], source_weights: dict[str, float], *,
                     balance_gsd_levels: bool, large_building_m2: float,
                     large_building_weight: float) -> torch.Tensor:
    """Sampling weight of each chip in ``indices``.

    The source's weight; divided by the source-weighted total of the chip's pixel size when
    ``balance_gsd_levels`` (so every pixel size gets the same share of draws, however many chips
    it has); times ``large_building_weight`` where the chip holds a building of at least
    ``large_building_m2`` m².
    """
    base = np.array([float(source_weights.get(str(cache.records[i]["source"]), 1.0)) for i in indices])
    gsds = np.array([chip_gsd(cache, i) for i in indices])
    if balance_gsd_levels:
        for level in np.unique(gsds):
            chosen = gsds == level
            base[chosen] /= base[chosen].sum()
    large = np.array([float(cache.records[i].get("largest_building_m2", 0.0)) >= large_building_m2
                      for i in indices])
    weights = base * np.where(large, large_building_weight, 1.0)
    return torch.tensor(weights / weights.sum(), dtype=torch.double)


class BuildingDataModule(L.LightningDataModule):
    """Building segmentation chips from the public datasets under ``root``.

    Args:
        root: data folder laid out like ``../shared/data`` (its README lists the formats).
        sources: source names to use (see :data:`sitewatch.data.sources.SOURCES`); all
            present under ``root`` when None.
        gsd_m: the model's reference ground pixel size in metres; with no ``gsd_levels`` every
            source is resampled to it.
        gsd_levels: ground pixel sizes (m) to draw chips at (multi-scale training); each
            source contributes at every level it reaches without being upsampled more than
            ``max_upsample`` times.
        max_upsample: the largest upsampling factor allowed for a source at a level.
        balance_gsd_levels: give every pixel size the same share of the training draws.
        large_building_m2, large_building_weight: chips holding a building of at least this
            area (m²) are drawn this many times more often.
        coarse_from_m: chips at this pixel size (m) or coarser get the coarse-sensor simulation
            (PSF blur, noise, 12-bit radiometry); None: never.
        grey_share: share of training chips turned to grey (panchromatic-like) in every band.
        max_val_chips: at most this many validation chips per source and pixel size, taken
            evenly spaced (a fixed subset, so validation stays affordable on a CPU).
        chip_size: side of cached chips in pixels (at ``gsd_m``).
        patch_size: side of training crops in pixels (≤ ``chip_size``).
        val_groups: glob patterns over group names (``source/area``, e.g. ``fair_ramp/area5``,
            ``idabd/*``) whose chips form the validation set.
        source_weights: sampling weight of one chip, per source (default 1).
        samples_per_epoch: training chips drawn per epoch (default: all training chips).
        gsd_overrides: pixel size in metres per source or group prefix, replacing the
            nominal one of sources without georeferencing.
        max_images_per_source: read at most this many images of each source (smoke runs).
        fair_ramp_zooms: zoom levels of fair_ramp to use (all when None).
        batch_size, num_workers: loader settings.
        cache_dir: where chip caches live.
        rebuild_cache: rebuild the chip cache even if one exists for these settings.
        scale_jitter: relative scale augmentation (0.2 = ±20 %).
        mean, std: per-band normalisation of pixel/255 (stored in the checkpoint).
    """

    bands = ("red", "green", "blue")

    def __init__(
        self,
        root: str = "../shared/data",
        sources: list[str] | None = None,
        gsd_m: float = 0.5,
        chip_size: int = 256,
        patch_size: int = 256,
        val_groups: list[str] | None = None,
        source_weights: dict[str, float] | None = None,
        samples_per_epoch: int | None = None,
        gsd_overrides: dict[str, float] | None = None,
        max_images_per_source: int | None = None,
        fair_ramp_zooms: list[int] | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        cache_dir: str = ".cache/chips",
        rebuild_cache: bool = False,
        scale_jitter: float = 0.2,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        gsd_levels: list[float] | None = None,
        max_upsample: float = 1.5,
        balance_gsd_levels: bool = False,
        large_building_m2: float = 1000.0,
        large_building_weight: float = 1.0,
        coarse_from_m: float | None = None,
        grey_share: float = 0.0,
        max_val_chips: int | None = None,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        if not self.root.is_dir():
            raise SitewatchError(f"{self.root}: dataset folder not found")
        present = available_sources(self.root)
        if sources is None:
            sources = present
        unknown = [s for s in sources if s not in SOURCES]
        if unknown:
            raise SitewatchError(f"unknown data source(s) {unknown} (known: {', '.join(SOURCES)})")
        missing = [s for s in sources if s not in present]
        if missing:
            raise SitewatchError(f"{self.root}: no folder for source(s) {missing}")
        if not sources:
            raise SitewatchError(f"{self.root}: dataset folder holds no known source")
        if patch_size > chip_size:
            raise SitewatchError(f"patch_size {patch_size} is larger than chip_size {chip_size}")
        if not gsd_m > 0:
            raise SitewatchError(f"gsd_m must be positive, got {gsd_m}")
        if gsd_levels is not None and not all(level > 0 for level in gsd_levels):
            raise SitewatchError(f"gsd_levels must be positive pixel sizes in metres, got {gsd_levels}")
        if not 0.0 <= grey_share <= 1.0:
            raise SitewatchError(f"grey_share must be in 0..1, got {grey_share}")
        if not max_upsample >= 1.0 or not large_building_weight > 0:
            raise SitewatchError("max_upsample must be ≥ 1 and large_building_weight positive")
        self.sources = list(sources)
        self.gsd_m = gsd_m
        self.chip_size = chip_size
        self.patch_size = patch_size
        self.val_groups = list(val_groups or [])
        self.source_weights = dict(source_weights or {})
        self.samples_per_epoch = samples_per_epoch
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.cache_dir = Path(cache_dir)
        self.rebuild_cache = rebuild_cache
        self.scale_jitter = scale_jitter
        self.mean, self.std = tuple(mean), tuple(std)
        self.balance_gsd_levels = balance_gsd_levels
        self.large_building_m2 = large_building_m2
        self.large_building_weight = large_building_weight
        self.coarse_from_m = coarse_from_m
        self.grey_share = grey_share
        self.max_val_chips = max_val_chips
        self.settings = ChipSettings(
            root=str(self.root.resolve()),
            sources=tuple(self.sources),
            gsd_m=gsd_m,
            chip_size=chip_size,
            gsd_overrides=tuple(sorted((gsd_overrides or {}).items())),
            max_images_per_source=max_images_per_source,
            fair_ramp_zooms=tuple(fair_ramp_zooms) if fair_ramp_zooms else None,
            gsd_levels=tuple(sorted(float(level) for level in gsd_levels or ())),
            max_upsample=max_upsample,
        )
        self.cache: ChipCache | None = None
        self.train_indices: list[int] = []
        self.val_indices: list[int] = []

    def prepare_data(self) -> None:
        prepare_chips(self.settings, self.cache_dir, rebuild=self.rebuild_cache)

    def is_validation(self, group: str) -> bool:
        return any(fnmatch.fnmatchcase(group, pattern) for pattern in self.val_groups)

    def setup(self, stage: str | None = None) -> None:
        if self.cache is not None:
            return
        folder = prepare_chips(self.settings, self.cache_dir)
        self.cache = ChipCache(folder)
        groups = [str(r["group"]) for r in self.cache.records]
        self.val_indices = thin_evenly(self.cache, [i for i, g in enumerate(groups) if self.is_validation(g)],
                                       self.max_val_chips)
        self.train_indices = [i for i, g in enumerate(groups) if not self.is_validation(g)]
        if not self.val_indices:
            raise SitewatchError(
                f"validation split is empty: no group matches val_groups {self.val_groups} "
                f"(groups: {sorted(set(groups))[:12]})"
            )
        if not self.train_indices:
            raise SitewatchError(f"training split is empty: val_groups {self.val_groups} take all")

    def val_sources(self) -> list[str]:
        """Sources with chips in the validation split, in ``sources`` order."""
        assert self.cache is not None
        present = {str(self.cache.records[i]["source"]) for i in self.val_indices}
        return [s for s in self.sources if s in present]

    def train_dataloader(self) -> DataLoader:
        assert self.cache is not None
        def transform(coarse: bool):
            return train_transform(self.patch_size, self.mean, self.std, self.scale_jitter,
                                   coarse=coarse, grey_share=self.grey_share)

        dataset = ChipDataset(self.cache, self.train_indices, transform(False), self.sources,
                              coarse_transform=transform(True), coarse_from_m=self.coarse_from_m)
        weights = sampling_weights(self.cache, self.train_indices, self.source_weights,
                                   balance_gsd_levels=self.balance_gsd_levels,
                                   large_building_m2=self.large_building_m2,
                                   large_building_weight=self.large_building_weight)
        sampler = WeightedRandomSampler(
            weights, num_samples=self.samples_per_epoch or len(self.train_indices), replacement=True
        )
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler,
                          num_workers=self.num_workers, drop_last=True,
                          persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        assert self.cache is not None
        dataset = ChipDataset(self.cache, self.val_indices, eval_transform(self.mean, self.std),
                              self.sources)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=False,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def describe(self) -> dict[str, object]:
        """What inference and the model card need to know about the training data."""
        summary: dict[str, object] = {
            "root": str(self.root), "sources": self.sources, "gsd_m": self.gsd_m,
            "gsd_levels": list(self.settings.gsd_levels), "max_upsample": self.settings.max_upsample,
            "balance_gsd_levels": self.balance_gsd_levels, "grey_share": self.grey_share,
            "coarse_from_m": self.coarse_from_m, "large_building_m2": self.large_building_m2,
            "large_building_weight": self.large_building_weight, "max_val_chips": self.max_val_chips,
            "chip_size": self.chip_size, "patch_size": self.patch_size,
            "val_groups": self.val_groups, "source_weights": self.source_weights,
            "gsd_overrides": dict(self.settings.gsd_overrides),
        }
        if self.cache is not None:
            summary["train"] = self.cache.summary(self.train_indices)
            summary["val"] = self.cache.summary(self.val_indices)
            summary["train_chips_by_gsd"] = self.cache.count_by_gsd(self.train_indices)
        return summary
