"""The chip cache: every labelled image resampled to the model's pixel size(s), cut into chips.

``prepare_chips`` decodes each source once, resamples it to each ground pixel size of the
recipe (``gsd_m``, or every level of ``gsd_levels`` that the source can give without being
upsampled by more than ``max_upsample``), cuts ``chip_size``² chips and stores them as two
memory-mappable ``.npy`` arrays plus a JSON index, in a folder named by a hash of the settings.
Every chip records its pixel size and the area (m²) of the largest building it holds, so the
sampler can weight pixel sizes and large buildings. Training epochs then read chips straight
from the memory map instead of re-decoding PNGs and re-rasterizing polygons.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from sitewatch.data.common import IGNORE, LabeledImage, resample_label
from sitewatch.data.layouts import read_layout
from sitewatch.data.owndata import OwnData, read_own_data
from sitewatch.data.slippy import read_fair_ramp
from sitewatch.data.sources import read_source
from sitewatch.errors import SitewatchError
from sitewatch.raster import resample_image

CACHE_FORMAT = 4  # bump when the chip layout or reader behaviour changes


def cut_chips(
    image: np.ndarray, label: np.ndarray, chip_size: int, min_valid: float = 0.3
) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """Cut an image and its label into ``chip_size``² chips.

    Chips tile the image without overlap; the last row/column is shifted back to end at the
    border (so it overlaps its neighbour). An image smaller than a chip is padded with
    unlabelled pixels. Chips with less than ``min_valid`` labelled pixels are skipped.

    Yields:
        ``(row, col, image_chip, label_chip)`` with row/col the chip's top-left pixel.
    """
    height, width = label.shape
    pad_h, pad_w = max(0, chip_size - height), max(0, chip_size - width)
    if pad_h or pad_w:
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)))
        label = np.pad(label, ((0, pad_h), (0, pad_w)), constant_values=IGNORE)
        height, width = label.shape

    def starts(size: int) -> list[int]:
        positions = list(range(0, size - chip_size + 1, chip_size))
        if positions[-1] != size - chip_size:
            positions.append(size - chip_size)
        return positions

    for row in starts(height):
        for col in starts(width):
            label_chip = label[row : row + chip_size, col : col + chip_size]
            if np.mean(label_chip != IGNORE) < min_valid:
                continue
            yield row, col, image[row : row + chip_size, col : col + chip_size], label_chip


@dataclass(frozen=True)
class ChipSettings:
    """What a chip cache depends on; its hash names the cache folder."""

    root: str
    sources: tuple[str, ...]
    gsd_m: float
    chip_size: int
    gsd_overrides: tuple[tuple[str, float], ...] = ()
    max_images_per_source: int | None = None
    fair_ramp_zooms: tuple[int, ...] | None = None
    gsd_levels: tuple[float, ...] = ()
    max_upsample: float = 1.5
    datasets: tuple[tuple[str, str], ...] = ()  # (official layout, dataset folder)
    own_data: OwnData | None = None
    inputs_fingerprint: str | None = None  # of the own-data files: a changed file rebuilds the cache

    def levels_for(self, native_gsd_m: float) -> list[float]:
        """The chip pixel sizes (m) an image of ``native_gsd_m`` contributes to.

        With no ``gsd_levels``, every image is resampled to ``gsd_m`` whatever its native size.
        Otherwise each level the image reaches without being upsampled by more than
        ``max_upsample`` (``native / level ≤ max_upsample``).
        """
        if not self.gsd_levels:
            return [self.gsd_m]
        return [level for level in self.gsd_levels if native_gsd_m / level <= self.max_upsample + 1e-9]

    def key(self) -> str:
        payload = json.dumps({"format": CACHE_FORMAT, **self.__dict__}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _gsd_for(sample: LabeledImage, overrides: dict[str, float]) -> float:
    """Override a pixel size by group prefix (longest wins), else the reader's value."""
    best = None
    for prefix, value in overrides.items():
        if (sample.group == prefix or sample.group.startswith(prefix + "/")
                or sample.source == prefix) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, value)
    return best[1] if best else sample.gsd_m


def largest_building_m2(label: np.ndarray, gsd_m: float) -> float:
    """Area in m² of the largest 8-connected building in a 0/1/IGNORE label at ``gsd_m``."""
    components, count = ndimage.label(label == 1, structure=np.ones((3, 3), bool))
    if count == 0:
        return 0.0
    return float(np.bincount(components.ravel())[1:].max()) * gsd_m * gsd_m


def _readers(settings: ChipSettings) -> Iterator[Iterator[LabeledImage]]:
    """One iterator of labelled images per source: data-root sources, official layouts, own data."""
    root = Path(settings.root)
    for source in settings.sources:
        if source == "fair_ramp" and settings.fair_ramp_zooms is not None:
            yield read_fair_ramp(root, settings.fair_ramp_zooms)
        else:
            yield read_source(root, source)
    for layout, folder in settings.datasets:
        yield read_layout(layout, Path(folder))
    if settings.own_data is not None:
        yield read_own_data(settings.own_data)


def _iter_samples(settings: ChipSettings) -> Iterator[LabeledImage]:
    for samples in _readers(settings):
        for index, sample in enumerate(samples):
            if settings.max_images_per_source is not None and index >= settings.max_images_per_source:
                break
            yield sample


def prepare_chips(settings: ChipSettings, cache_dir: Path, rebuild: bool = False) -> Path:
    """Build (or reuse) the chip cache for ``settings`` under ``cache_dir``; return its folder.

    The folder appears atomically: it is built under a temporary name and renamed at the end.
    """
    target = Path(cache_dir) / settings.key()
    if (target / "index.json").is_file() and not rebuild:
        return target
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    overrides = dict(settings.gsd_overrides)
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    records: list[dict[str, object]] = []
    for sample in _iter_samples(settings):
        native = _gsd_for(sample, overrides)
        for level in settings.levels_for(native):
            scale = native / level
            image = resample_image(sample.image, scale)
            label = resample_label(sample.label, scale)
            least = float(sample.extra.get("min_labelled_share", 0.3))
            for row, col, image_chip, label_chip in cut_chips(image, label, settings.chip_size, least):
                images.append(np.ascontiguousarray(image_chip))
                labels.append(np.ascontiguousarray(label_chip))
                records.append({
                    "source": sample.source, "group": sample.group, "name": sample.name,
                    "row": row, "col": col, "native_gsd_m": round(native, 4),
                    "gsd_estimated": sample.gsd_estimated, "gsd_m": level,
                    "largest_building_m2": round(largest_building_m2(label_chip, level), 1),
                    "sensor_gsd_m": float(sample.extra.get("sensor_gsd_m", native)),
                })
    if not records:
        names = [*settings.sources, *(layout for layout, _ in settings.datasets),
                 *(["own data"] if settings.own_data else [])]
        raise SitewatchError(f"no labelled chips in {', '.join(names)} (every image smaller than a third of a "
                             "chip, unlabelled, or outside the label extent)")
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=cache_dir))
    try:
        np.save(staging / "images.npy", np.stack(images))
        np.save(staging / "labels.npy", np.stack(labels))
        index = {"settings": settings.__dict__, "format": CACHE_FORMAT, "chips": records}
        (staging / "index.json").write_text(json.dumps(index, default=str))
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target


class ChipCache:
    """Read access to a prepared chip cache (memory-mapped, safe to share with workers)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        index = json.loads((self.folder / "index.json").read_text())
        self.records: list[dict[str, object]] = index["chips"]
        self.settings: dict[str, object] = index["settings"]
        self._images: np.ndarray | None = None
        self._labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.records)

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            self._images = np.load(self.folder / "images.npy", mmap_mode="r")
        return self._images

    @property
    def labels(self) -> np.ndarray:
        if self._labels is None:
            self._labels = np.load(self.folder / "labels.npy", mmap_mode="r")
        return self._labels

    def count_by_gsd(self, indices: Sequence[int]) -> dict[str, int]:
        """Chip count per pixel size (m, as text keys for JSON), over ``indices``."""
        default = float(self.settings["gsd_m"])
        counts: dict[str, int] = {}
        for i in indices:
            key = f"{float(self.records[i].get('gsd_m', default)):g}"
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: float(item[0])))

    def summary(self, indices: Sequence[int]) -> dict[str, dict[str, float]]:
        """Per source: chip count and building share of labelled pixels, over ``indices``."""
        out: dict[str, dict[str, float]] = {}
        for i in indices:
            source = str(self.records[i]["source"])
            label = self.labels[i]
            entry = out.setdefault(source, {"chips": 0, "building_px": 0, "labelled_px": 0})
            entry["chips"] += 1
            entry["building_px"] += int((label == 1).sum())
            entry["labelled_px"] += int((label != IGNORE).sum())
        return {
            source: {
                "chips": e["chips"],
                "building_share": round(e["building_px"] / max(e["labelled_px"], 1), 4),
            }
            for source, e in sorted(out.items())
        }
