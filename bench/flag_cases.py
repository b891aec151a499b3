"""The change pairs of the flags benchmark (``bench/flags.py``): labelled samples and pairs built
from them, each with its reference.

Labelled: the four LEVIR-CD dev pairs (Texas, ~0.5 m; label = buildings that appeared or
vanished) and the five DSIFN pairs (China, ~2 m on an assumed grid; label = land-use change, coarse).
Built from real pixels, with a reference known by construction:

* ``demo_site``: the shipped demo site (LEVIR-CD Texas, 2002 → 2018); its LEVIR label is not
  shipped: scored only as "no demolition" (houses were built on scrub; nothing was pulled down,
  judged by eye);
* ``<pair>_reimaged``: the earlier image of a pair again, shifted by 30 m, hazed, re-exposed and
  JPEG-recompressed: nothing changed, so every change record is wrong;
* ``6_3_edgecut``: DSIFN ``6_3`` with both dates cut diagonally by nodata through the new halls;
* ``levir_replaced``: LEVIR ``train_386``, one building replaced by a patch of another real roof
  (demolished and rebuilt on the same ground).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine
from PIL import Image

from sitewatch.data.dsifn import DSIFN_GSD_M, dsifn_names, read_dsifn_pair
from sitewatch.data.levir import levir_names, levir_tile_names, read_levir_pair, read_levir_tile

LEVIR_GSD_M = 0.5


@dataclass
class Case:
    """One pair: both dates (H×W×3 uint8), the grid, the change label (bool, or None), nodata."""

    name: str
    dataset: str
    gsd_m: float
    earlier: np.ndarray
    later: np.ndarray
    transform: Affine
    crs: str
    label: np.ndarray | None  # changed ground (bool) on the pair's grid; None: no pixel label
    no_change: bool = False  # built so that nothing changed
    nodata_wedge: bool = False  # pixels of value 0 in every band are nodata


def reimaged(image: np.ndarray, shift_px: int, haze: float = 0.35, gain: float = 1.15,
             quality: int = 60) -> np.ndarray:
    """The same ground imaged again: moved by ``shift_px`` (content moves left and up; edge
    pixels repeated), hazed (blend with a bright grey), re-exposed (gain and gamma) and
    JPEG-recompressed."""
    moved = np.pad(image, ((0, shift_px), (0, shift_px), (0, 0)), mode="edge")[shift_px:, shift_px:]
    values = moved.astype(np.float32) / 255
    values = values * (1 - haze) + haze * 0.85
    values = np.clip(gain * values, 0, 1) ** 0.9
    buffer = io.BytesIO()
    Image.fromarray((values * 255).round().astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def diagonal_wedge(image: np.ndarray, share: float = 0.35) -> np.ndarray:
    """The image with its lower-left corner beyond a 45° line set to 0 (nodata): a diagonal edge."""
    rows, cols = np.indices(image.shape[:2])
    cut = image.copy()
    cut[(rows - cols) > (1 - share) * image.shape[0]] = 0
    cut[cut.sum(axis=2) == 0] = 0
    return cut


def labelled_cases(samples: Path) -> Iterator[Case]:
    for name in levir_names(samples):
        pair = read_levir_pair(samples, name)
        yield Case(name, "LEVIR-CD", LEVIR_GSD_M, pair.earlier, pair.later, pair.transform, pair.crs,
                   pair.change > 0)
    for name in dsifn_names(samples):
        pair = read_dsifn_pair(samples, name)
        yield Case(name, "DSIFN", DSIFN_GSD_M, pair.earlier, pair.later, pair.transform, pair.crs, pair.change > 0)


def full_tile_cases(data: Path) -> Iterator[Case]:
    """The whole 1024 px LEVIR-CD tiles of ``data/levir_cd_full_dev`` (the shared data folder; none in a
    user's clone)."""
    for name in levir_tile_names(data):
        pair = read_levir_tile(data, name)
        yield Case(name, "LEVIR-CD full", LEVIR_GSD_M, pair.earlier, pair.later, pair.transform, pair.crs,
                   pair.change > 0)


def demo_case() -> Case:
    """The shipped demo site (no pixel label shipped)."""
    import rasterio

    from sitewatch.paths import default_model_path

    folder = default_model_path().parent / "demo_site"
    images = []
    for path in sorted(folder.glob("*.tif")):
        with rasterio.open(path) as dataset:
            images.append(np.moveaxis(dataset.read([1, 2, 3]), 0, -1))
            transform, crs = dataset.transform, dataset.crs.to_string()
    return Case("demo_site", "demo", LEVIR_GSD_M, images[0], images[1], transform, crs, None)


def built_cases(samples: Path) -> Iterator[Case]:
    """Pairs built from real pixels with a reference known by construction (see the module docstring)."""
    demo = demo_case()
    yield Case("demo_site_reimaged", "built", LEVIR_GSD_M, demo.earlier, reimaged(demo.earlier, 50),
               demo.transform, demo.crs, None, no_change=True)
    levir = read_levir_pair(samples, "train_386_0512_0768")
    yield Case("train_386_reimaged", "built", LEVIR_GSD_M, levir.earlier, reimaged(levir.earlier, 48),
               levir.transform, levir.crs, None, no_change=True)
    dsifn = read_dsifn_pair(samples, "6_3")
    wedge = diagonal_wedge(dsifn.earlier) == 0
    yield Case("6_3_edgecut", "built", DSIFN_GSD_M, diagonal_wedge(dsifn.earlier), diagonal_wedge(dsifn.later),
               dsifn.transform, dsifn.crs, (dsifn.change > 0) & ~wedge.all(axis=2), nodata_wedge=True)
    later = levir.earlier.copy()
    later[60:116, 55:173] = demo.later[8:64, 40:158]
    label = np.zeros(later.shape[:2], bool)
    label[60:116, 55:173] = True
    yield Case("train_386_rebuilt", "built", LEVIR_GSD_M, levir.earlier, later, levir.transform, levir.crs, label)
