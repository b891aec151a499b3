"""Lightning data module over the public building datasets.

Sources are read once into a chip cache at the model's pixel size (``prepare_data``), then
split into training and validation by *group* (an area or a whole source: never by tile, since
``fair_ramp`` holds the same ground at three zooms), and sampled with per-source weights.
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from sitewatch.data.chips import ChipCache, ChipSettings, prepare_chips
from sitewatch.data.layouts import LAYOUTS
from sitewatch.data.owndata import SOURCE as OWN_SOURCE
from sitewatch.data.owndata import VAL_GROUPS as OWN_VAL_GROUPS
from sitewatch.data.owndata import OwnData
from sitewatch.data.sources import SOURCES, available_sources
from sitewatch.data.transforms import eval_transform, train_transform
from sitewatch.errors import SitewatchError, SitewatchWarning
from sitewatch.radiometry import LEGACY, InputMapping

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ChipDataset(Dataset):
    """Chips of a cache, transformed; items are dicts of image, mask and source index.

    ``transform_for`` gives the transform of a chip from its ground pixel size (m), so chips at
    coarse sizes can get a coarse-sensor simulation and every chip a sensor view sized to it.
    """

    def __init__(self, cache: ChipCache, indices: Sequence[int], transform_for: Callable[[float], Any],
                 sources: list[str]):
        self.cache = cache
        self.indices = list(indices)
        self.transform_for = transform_for
        self.source_ids = {name: i for i, name in enumerate(sources)}

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        index = self.indices[item]
        transform = self.transform_for(chip_gsd(self.cache, index), real_coarse_sensor(self.cache, index))
        out = transform(image=np.asarray(self.cache.images[index]), mask=np.asarray(self.cache.labels[index]))
        return {
            "image": torch.from_numpy(out["image"].transpose(2, 0, 1).copy()),
            "mask": torch.from_numpy(out["mask"].astype(np.int64)),
            "source": torch.tensor(self.source_ids[self.cache.records[index]["source"]]),
        }


class TransformsByGsd:
    """A chip's transform from its ground pixel size (m), each made once.

    ``make(chip_gsd_m=..., coarse=...)`` builds one; ``coarse`` is True from ``coarse_from_m`` metres.
    A chip of a real coarse sensor (PlanetScope shown on a finer grid) gets no simulated sensor view
    (``sensor_view_p=0``): it is already what that simulation imitates.
    ``fixed``: one transform for every pixel size (validation).
    """

    def __init__(self, make: Callable[..., Any] | None = None, coarse_from_m: float | None = None,
                 fixed: Any = None) -> None:
        self.make, self.coarse_from_m = make, coarse_from_m
        self.made: dict[float, Any] = {}
        self.fixed = fixed

    def __call__(self, gsd_m: float, real_coarse: bool = False) -> Any:
        if self.fixed is not None:
            return self.fixed
        if (gsd_m, real_coarse) not in self.made:
            coarse = self.coarse_from_m is not None and gsd_m >= self.coarse_from_m
            extra = {"sensor_view_p": 0.0} if real_coarse else {}
            self.made[gsd_m, real_coarse] = self.make(chip_gsd_m=gsd_m, coarse=coarse, **extra)
        return self.made[gsd_m, real_coarse]


def chip_gsd(cache: ChipCache, index: int) -> float:
    """Ground pixel size (m) of one cached chip."""
    return float(cache.records[index].get("gsd_m", cache.settings["gsd_m"]))


#: A chip whose imaging sensor's pixel is at least this many times its own was made from a real coarse sensor.
REAL_COARSE_RATIO = 2.0


def real_coarse_sensor(cache: ChipCache, index: int) -> bool:
    """True for a chip of a real coarse sensor resampled onto a finer grid (SpaceNet 7's PlanetScope at 1 m)."""
    record = cache.records[index]
    return float(record.get("sensor_gsd_m", 0.0)) >= REAL_COARSE_RATIO * chip_gsd(cache, index)


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
    """Building segmentation chips from public datasets and from one's own labelled rasters.

    Three kinds of input, alone or together: the sample-style sources under ``root``, full
    public datasets in their official layouts (``datasets``), and one's own georeferenced
    rasters with footprint files (``images`` + ``labels``).

    Args:
        root: data folder laid out like ``../shared/data`` (its README lists the formats).
        sources: source names to use (see :data:`sitewatch.data.sources.SOURCES`); when None,
            all present under ``root``, unless ``datasets`` or ``images`` are given (then none).
        datasets: official dataset layout → its folder, e.g. ``{spacenet2: /data/AOI_2_Vegas_Train,
            inria: /data/AerialImageDataset}`` (see :data:`sitewatch.data.layouts.LAYOUTS`).
        images: one's own rasters: a folder, a glob pattern or a file, or a list of them; every
            raster needs a CRS (any CRS, any band count and bit depth).
        labels: building footprint file(s) for ``images`` (GeoPackage, GeoJSON, Shapefile,
            GeoParquet; any CRS), reprojected onto each raster.
        label_extent: a vector file of the area the labels cover; other ground is ignored
            rather than called background. None: the whole of every raster is labelled.
        val_split: how ``images`` are split for validation: ``block`` (a corner block holding
            ``val_share`` of each raster's area) or ``rasters`` (whole rasters); never by chip.
        val_share: share of the ground (``block``) or of the rasters (``rasters``) held out.
        bands: 1-based bands of ``images`` for red, green, blue (default: as at inference).
        input_stretch: ``[low, high]`` percentiles of the model's input mapping: every chip is
            stretched per band between them, as inference stretches every input (stored in the
            model as ``radiometry``); scene radiometry (haze, colour balance, gamma) is augmented
            before the stretch. None: the legacy mapping (8-bit as is, no haze augmentation).
        sensor_view_p: probability that a training chip is seen through a 1.5-3.5× coarser
            sensor (PlanetScope-matched point-spread function) and resampled back onto its grid.
        max_sensor_m: the coarsest simulated sensor pixel size (m).
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
            ``idabd/*``) whose chips form the validation set; with ``images`` and none given,
            ``own/*/val`` (the held-out part of one's own data).
        source_weights: sampling weight of one chip, per source (default 1).
        exclude_groups: glob patterns over group names whose chips neither train nor validate: ground
            held out for a later report (``spacenet7/*/nw``, scored by ``bench/spacenet7.py``).
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
        datasets: dict[str, str] | None = None,
        images: list[str] | str | None = None,
        labels: list[str] | str | None = None,
        label_extent: str | None = None,
        val_split: Literal["block", "rasters"] = "block",
        val_share: float = 0.2,
        bands: list[int] | None = None,
        input_stretch: list[float] | None = None,
        sensor_view_p: float = 0.0,
        max_sensor_m: float = 4.0, exclude_groups: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.root = Path(root)
        self.datasets = check_datasets(datasets or {})
        self.own_data = own_data_spec(images, labels, label_extent, val_split, val_share, bands)
        self.root_sources = root_sources(self.root, sources, bool(self.datasets or self.own_data))
        check_chip_recipe(chip_size, patch_size, gsd_m, gsd_levels, grey_share, max_upsample, large_building_weight,
                          input_stretch)
        self.sources = [*self.root_sources, *self.datasets, *([OWN_SOURCE] if self.own_data else [])]
        self.val_groups = list(val_groups or (OWN_VAL_GROUPS if self.own_data else []))
        self.source_weights, self.exclude_groups = dict(source_weights or {}), list(exclude_groups or [])
        self.cache_dir, self.mean, self.std = Path(cache_dir), tuple(mean), tuple(std)
        self.settings = ChipSettings(
            root=str(self.root.resolve()), sources=tuple(self.root_sources), gsd_m=gsd_m, chip_size=chip_size,
            gsd_overrides=tuple(sorted((gsd_overrides or {}).items())), max_images_per_source=max_images_per_source,
            fair_ramp_zooms=tuple(fair_ramp_zooms) if fair_ramp_zooms else None,
            gsd_levels=tuple(sorted(float(level) for level in gsd_levels or ())), max_upsample=max_upsample,
            datasets=tuple(sorted(self.datasets.items())), own_data=self.own_data,
            inputs_fingerprint=self.own_data.fingerprint() if self.own_data else None)
        self.cache: ChipCache | None = None
        self.train_indices, self.val_indices = [], []  # chip indexes, set by setup()

    def prepare_data(self) -> None:
        prepare_chips(self.settings, self.cache_dir, rebuild=self.hparams.rebuild_cache)

    def is_validation(self, group: str) -> bool:
        return any(fnmatch.fnmatchcase(group, pattern) for pattern in self.val_groups)

    def is_excluded(self, group: str) -> bool:
        return any(fnmatch.fnmatchcase(group, pattern) for pattern in self.exclude_groups)

    def setup(self, stage: str | None = None) -> None:
        if self.cache is not None:
            return
        folder = prepare_chips(self.settings, self.cache_dir)
        self.cache = ChipCache(folder)
        groups = [str(r["group"]) for r in self.cache.records]
        kept = [i for i, g in enumerate(groups) if not self.is_excluded(g)]
        self.val_indices = thin_evenly(self.cache, [i for i in kept if self.is_validation(groups[i])],
                                       self.hparams.max_val_chips)
        self.train_indices = [i for i in kept if not self.is_validation(groups[i])]
        if not self.val_indices:
            raise SitewatchError(
                f"validation split is empty: no chip of a group matching val_groups {self.val_groups} "
                f"(groups with chips: {sorted(set(groups))[:12]}; held-out ground smaller than a third of "
                "a chip gives none: lower data.chip_size or raise data.val_share)"
            )
        if not self.train_indices:
            raise SitewatchError(f"training split is empty: val_groups {self.val_groups} take all")
        check_label_shares(self.cache.summary(self.train_indices))

    def input_mapping(self) -> InputMapping:
        """The input mapping the model learns (and inference must apply)."""
        stretch = self.hparams.input_stretch
        return InputMapping("percentile", float(stretch[0]), float(stretch[1])) if stretch else LEGACY

    def val_sources(self) -> list[str]:
        """Sources with chips in the validation split, in ``sources`` order."""
        assert self.cache is not None
        present = {str(self.cache.records[i]["source"]) for i in self.val_indices}
        return [s for s in self.sources if s in present]

    def train_dataloader(self) -> DataLoader:
        assert self.cache is not None
        hp = self.hparams
        transforms = TransformsByGsd(partial(
            train_transform, hp.patch_size, self.mean, self.std, hp.scale_jitter, grey_share=hp.grey_share,
            input_stretch=hp.input_stretch, sensor_view_p=hp.sensor_view_p, max_sensor_m=hp.max_sensor_m),
            coarse_from_m=hp.coarse_from_m)
        dataset = ChipDataset(self.cache, self.train_indices, transforms, self.sources)
        weights = sampling_weights(self.cache, self.train_indices, self.source_weights,
                                   balance_gsd_levels=self.hparams.balance_gsd_levels,
                                   large_building_m2=self.hparams.large_building_m2,
                                   large_building_weight=self.hparams.large_building_weight)
        sampler = WeightedRandomSampler(
            weights, num_samples=self.hparams.samples_per_epoch or len(self.train_indices), replacement=True
        )
        return DataLoader(dataset, batch_size=self.hparams.batch_size, sampler=sampler,
                          num_workers=self.hparams.num_workers, drop_last=True,
                          persistent_workers=self.hparams.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        assert self.cache is not None
        evaluation = eval_transform(self.mean, self.std, self.hparams.input_stretch)
        dataset = ChipDataset(self.cache, self.val_indices, TransformsByGsd(fixed=evaluation), self.sources)
        return DataLoader(dataset, batch_size=self.hparams.batch_size, shuffle=False,
                          num_workers=self.hparams.num_workers, persistent_workers=self.hparams.num_workers > 0)

    def describe(self) -> dict[str, object]:
        """What inference and the model card need to know about the training data."""
        summary: dict[str, object] = {
            "root": str(self.root), "sources": self.sources, "gsd_m": self.hparams.gsd_m,
            "gsd_levels": list(self.settings.gsd_levels), "max_upsample": self.settings.max_upsample,
            "balance_gsd_levels": self.hparams.balance_gsd_levels, "grey_share": self.hparams.grey_share,
            "coarse_from_m": self.hparams.coarse_from_m, "large_building_m2": self.hparams.large_building_m2,
            "large_building_weight": self.hparams.large_building_weight, "max_val_chips": self.hparams.max_val_chips,
            "chip_size": self.hparams.chip_size, "patch_size": self.hparams.patch_size,
            "val_groups": self.val_groups, "exclude_groups": self.exclude_groups, "source_weights": self.source_weights,
            "gsd_overrides": dict(self.settings.gsd_overrides),
            "datasets": self.datasets, "sensor_view_p": self.hparams.sensor_view_p,
            "max_sensor_m": self.hparams.max_sensor_m, "radiometry": self.input_mapping().document(),
        }
        if self.own_data is not None:
            summary["own_data"] = {
                "images": [str(p) for p in self.own_data.rasters()], "labels": list(self.own_data.labels),
                "label_extent": self.own_data.label_extent, "val_split": self.own_data.val_split,
                "val_share": self.own_data.val_share, "bands": self.own_data.bands,
            }
        if self.cache is not None:
            summary["train"] = self.cache.summary(self.train_indices)
            summary["val"] = self.cache.summary(self.val_indices)
            summary["train_chips_by_gsd"] = self.cache.count_by_gsd(self.train_indices)
        return summary


#: A source whose labels cover more of its training ground than this is most likely not building footprints
#: (issue 33: a label layer holding the mapped-area polygon trained to 84.8 % "building" without a word).
MAX_PLAUSIBLE_BUILDING_SHARE = 0.7


def check_label_shares(train: dict[str, dict[str, float]]) -> None:
    """Refuse training where no chip holds a building pixel (labels empty or misread); warn of a source whose
    labels cover more ground than buildings do (the mapped area given as a building?)."""
    if train and all(float(entry["building_share"]) == 0 for entry in train.values()):
        raise SitewatchError(f"no building pixel in any of the {sum(int(e['chips']) for e in train.values())} "
                             "training chips: the labels are empty or were read wrongly (a 0/1 mask read as 0/255?)")
    for source, entry in train.items():
        if float(entry["building_share"]) > MAX_PLAUSIBLE_BUILDING_SHARE:
            warnings.warn(f"{source}: labels cover {100 * float(entry['building_share']):.0f} % of its training "
                          "ground; is the mapped-area polygon in the label layer? (give it as data.label_extent)",
                          SitewatchWarning, stacklevel=2)


def check_sources(root: Path, sources: list[str] | None) -> list[str]:
    """The data-root sources to read: all present under ``root`` when None; errors name the folder."""
    if sources is not None and not sources:
        return []
    if not root.is_dir():
        raise SitewatchError(f"{root}: dataset folder not found")
    present = available_sources(root)
    if sources is None:
        return present
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise SitewatchError(f"unknown data source(s) {unknown} (known: {', '.join(SOURCES)})")
    missing = [s for s in sources if s not in present]
    if missing:
        raise SitewatchError(f"{root}: no folder for source(s) {missing}")
    return list(sources)


def root_sources(root: Path, sources: list[str] | None, other_data: bool) -> list[str]:
    """The data-root sources to read: none by default when ``other_data`` (layouts, own data) is given."""
    chosen = check_sources(root, [] if sources is None and other_data else sources)
    if not chosen and not other_data:
        raise SitewatchError(f"{root}: dataset folder holds no known source")
    return chosen


def check_datasets(datasets: dict[str, str]) -> dict[str, str]:
    """Official layout name → dataset folder, each checked to exist."""
    for name, folder in datasets.items():
        if name not in LAYOUTS:
            raise SitewatchError(f"data.datasets: unknown layout '{name}' (known: {', '.join(LAYOUTS)})")
        if not Path(folder).is_dir():
            raise SitewatchError(f"{folder}: folder of dataset '{name}' not found")
    return {name: str(Path(folder).resolve()) for name, folder in datasets.items()}


def own_data_spec(images: list[str] | str | None, labels: list[str] | str | None, label_extent: str | None,
                  val_split: str, val_share: float, bands: list[int] | None) -> OwnData | None:
    """The checked own-data settings, or None when no ``images`` are given."""
    if images is None:
        if labels is not None:
            raise SitewatchError("data.labels given without data.images (the rasters they label)")
        return None
    spec = OwnData(images=tuple(str(Path(p).resolve()) if Path(p).exists() else str(p) for p in _as_tuple(images)),
                   labels=tuple(str(Path(p).resolve()) for p in _as_tuple(labels)),
                   label_extent=str(Path(label_extent).resolve()) if label_extent else None,
                   val_split=val_split, val_share=val_share, bands=tuple(bands) if bands else None)
    spec.check()
    return spec


def _as_tuple(value: list[str] | str | None) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value or ())


def check_chip_recipe(chip_size: int, patch_size: int, gsd_m: float, gsd_levels: list[float] | None,
                      grey_share: float, max_upsample: float, large_building_weight: float,
                      input_stretch: list[float] | None = None) -> None:
    """One-line errors for chip settings that cannot make a training set."""
    if input_stretch is not None and not (len(input_stretch) == 2 and 0 <= input_stretch[0] < input_stretch[1] <= 100):
        raise SitewatchError(f"input_stretch must be [low, high] percentiles within 0-100, got {input_stretch}")
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
