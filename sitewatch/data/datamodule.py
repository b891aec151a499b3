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
    """Chips of a cache, transformed; items are dicts of image, mask and source index."""

    def __init__(self, cache: ChipCache, indices: Sequence[int], transform, sources: list[str]):
        self.cache = cache
        self.indices = list(indices)
        self.transform = transform
        self.source_ids = {name: i for i, name in enumerate(sources)}

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        index = self.indices[item]
        out = self.transform(image=np.asarray(self.cache.images[index]),
                             mask=np.asarray(self.cache.labels[index]))
        return {
            "image": torch.from_numpy(out["image"].transpose(2, 0, 1).copy()),
            "mask": torch.from_numpy(out["mask"].astype(np.int64)),
            "source": torch.tensor(self.source_ids[self.cache.records[index]["source"]]),
        }


class BuildingDataModule(L.LightningDataModule):
    """Building segmentation chips from the public datasets under ``root``.

    Args:
        root: data folder laid out like ``../shared/data`` (its README lists the formats).
        sources: source names to use (see :data:`sitewatch.data.sources.SOURCES`); all
            present under ``root`` when None.
        gsd_m: the model's ground pixel size in metres; every source is resampled to it.
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
        if gsd_m <= 0:
            raise SitewatchError(f"gsd_m must be positive, got {gsd_m}")
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
        self.settings = ChipSettings(
            root=str(self.root.resolve()),
            sources=tuple(self.sources),
            gsd_m=gsd_m,
            chip_size=chip_size,
            gsd_overrides=tuple(sorted((gsd_overrides or {}).items())),
            max_images_per_source=max_images_per_source,
            fair_ramp_zooms=tuple(fair_ramp_zooms) if fair_ramp_zooms else None,
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
        self.val_indices = [i for i, g in enumerate(groups) if self.is_validation(g)]
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
        dataset = ChipDataset(self.cache, self.train_indices,
                              train_transform(self.patch_size, self.mean, self.std,
                                              self.scale_jitter), self.sources)
        weights = torch.tensor([
            float(self.source_weights.get(str(self.cache.records[i]["source"]), 1.0))
            for i in self.train_indices
        ])
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
            "chip_size": self.chip_size, "patch_size": self.patch_size,
            "val_groups": self.val_groups, "source_weights": self.source_weights,
            "gsd_overrides": dict(self.settings.gsd_overrides),
        }
        if self.cache is not None:
            summary["train"] = self.cache.summary(self.train_indices)
            summary["val"] = self.cache.summary(self.val_indices)
        return summary
