"""Radiometry: which bands feed the model and how their values map to the model's 0..1 range.

One definition used by inference (``predict``), by the training readers of GeoTIFFs
(``data.geodata``) and by the training transforms (``data.transforms``), so an input is seen the
same way when a model learns from it and when it segments it. A model file names its
:class:`InputMapping` (metadata key ``radiometry``):

* ``percentile`` (models trained from 2026-12 on): every band of every input, 8-bit included, is
  stretched per band between its ``low_pct`` and ``high_pct`` percentiles (measured on the
  raster's valid pixels at inference, on the chip at training). A hazy PlanetScope visual
  product (8-bit values of 45-253) and a crisp aerial tile then reach the network alike;
  training augments haze, gain, gamma and colour balance *before* the stretch, so the network
  learns what the stretch cannot undo.
* ``legacy`` (models without the key): uint8 as is, float data already in 0..1 as is, anything
  else a per-band 2-98 % stretch.

A 1-band paletted raster goes through its colour table in both.
"""

from __future__ import annotations

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, Resampling

from sitewatch.errors import SitewatchError
from sitewatch.modelfile import LEGACY, InputMapping
from sitewatch.raster import overview_shape

RGB = ("red", "green", "blue")


def percentile_limits(values: np.ndarray, low_pct: float, high_pct: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-band (low, high) percentiles of ``values`` (bands × pixels); a flat band gets ``high = low + 1``."""
    low = np.percentile(values, low_pct, axis=1)
    high = np.percentile(values, high_pct, axis=1)
    return low, np.where(high > low, high, low + 1)


def stretch_chip(image: np.ndarray, low_pct: float, high_pct: float) -> np.ndarray:
    """An ``H×W×C`` uint8 chip stretched per band between its percentiles (training's view).

    All-zero pixels (the padding around a small chip) are not measured and stay black.
    """
    inside = image.any(axis=2)
    if not inside.any():
        return image
    values = image[inside].T.astype(np.float32)
    low, high = percentile_limits(values, low_pct, high_pct)
    stretched = (image.astype(np.float32) - low) / (high - low)
    stretched[~inside] = 0.0
    return np.clip(stretched * 255.0 + 0.5, 0, 255).astype(np.uint8)


def choose_bands(dataset: rasterio.DatasetReader, wanted: list[str], override: list[int] | None) -> list[int]:
    """1-based band indexes feeding the model's bands (``red, green, blue``).

    ``override`` wins; else the bands' colour interpretation; else one band is repeated
    (panchromatic) or the first ``len(wanted)`` bands are taken in order.
    """
    count = dataset.count
    if override:
        if any(b < 1 or b > count for b in override):
            raise SitewatchError(f"{dataset.name}: bands {override} outside 1..{count}", setting="bands")
        if len(override) == 1:
            return override * len(wanted)
        if len(override) != len(wanted):
            raise SitewatchError(f"the bands need {len(wanted)} band numbers ({', '.join(wanted)})", setting="bands")
        return list(override)
    interp = {ci: i + 1 for i, ci in enumerate(dataset.colorinterp)}
    by_name = {"red": ColorInterp.red, "green": ColorInterp.green, "blue": ColorInterp.blue}
    if all(by_name.get(w) in interp for w in wanted):
        return [interp[by_name[w]] for w in wanted]
    if count == 1:
        return [1] * len(wanted)  # panchromatic: grey into every band
    if count >= len(wanted):
        return list(range(1, len(wanted) + 1))
    raise SitewatchError(
        f"{dataset.name}: {count} bands, the model needs {len(wanted)} ({', '.join(wanted)}); "
        "choose which bands feed them", setting="bands"
    )


def colour_table(dataset: rasterio.DatasetReader) -> np.ndarray | None:
    """The 256×3 RGB lookup of a 1-band paletted raster, else None."""
    if dataset.count != 1 or dataset.colorinterp[0] != ColorInterp.palette:
        return None
    try:
        colormap = dataset.colormap(1)
    except ValueError:
        return None
    table = np.zeros((256, 3), np.float32)
    for index, rgba in colormap.items():
        if 0 <= index < 256:
            table[index] = rgba[:3]
    return table


def value_stretch(dataset: rasterio.DatasetReader, bands: list[int],
                  mapping: InputMapping = LEGACY) -> tuple[np.ndarray, np.ndarray, str]:
    """Per-band (low, high) raw values mapped to 0 and 1 before normalisation.

    ``percentile``: the mapping's percentiles of every band, whatever its type, measured on a
    decimated read (at most 1024 px a side) of the valid pixels. ``legacy``: uint8 → 0..255;
    float data already in 0..1 keeps it; anything else a 2-98 % percentile stretch.
    """
    dtype = np.dtype(dataset.dtypes[bands[0] - 1])
    if mapping.kind == "percentile":
        low, high = percentile_limits(_valid_sample(dataset, bands), mapping.low_pct, mapping.high_pct)
        return low, high, f"{dtype.name} {mapping.low_pct:g}-{mapping.high_pct:g}% stretch"
    if dtype == np.uint8:
        return np.zeros(len(bands)), np.full(len(bands), 255.0), "uint8 0-255"
    values = _valid_sample(dataset, bands)
    if np.issubdtype(dtype, np.floating) and values.min() >= 0 and values.max() <= 1.0:
        return np.zeros(len(bands)), np.ones(len(bands)), "float 0-1"
    low, high = percentile_limits(values, 2, 98)
    return low, high, f"{dtype.name} 2-98% stretch"


def _valid_sample(dataset: rasterio.DatasetReader, bands: list[int]) -> np.ndarray:
    """Bands × valid pixels of a decimated read (nodata and non-finite values left out)."""
    shape = overview_shape(dataset, 1024)
    sample = dataset.read(bands, out_shape=(len(bands), *shape), resampling=Resampling.nearest,
                          masked=True).astype(np.float64)
    valid = ~np.ma.getmaskarray(sample).any(axis=0) & np.all(np.isfinite(sample.filled(np.nan)), axis=0)
    if not valid.any():
        raise SitewatchError(f"{dataset.name}: every pixel is nodata or not a number")
    return sample.filled(np.nan)[:, valid]


def read_rgb8(dataset: rasterio.DatasetReader, bands: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The whole raster as the model sees it: ``(H×W×3 uint8 RGB, H×W bool valid)``.

    Bands and value stretch as at inference (:func:`choose_bands`, :func:`value_stretch`,
    :func:`colour_table`); ``valid`` is False where the dataset mask says nodata or a float
    value is not finite.
    """
    palette = colour_table(dataset) if bands is None else None
    chosen = [1] * len(RGB) if palette is not None else choose_bands(dataset, list(RGB), bands)
    raw = dataset.read(sorted(set(chosen)))
    by_band = {band: raw[i] for i, band in enumerate(sorted(set(chosen)))}
    valid = dataset.dataset_mask() > 0
    if palette is not None:
        rgb = palette[by_band[1]]
    else:
        stacked = np.stack([by_band[b] for b in chosen]).astype(np.float64)
        valid &= np.isfinite(stacked).all(axis=0)
        low, high, _ = value_stretch(dataset, chosen)
        scaled = (stacked - low[:, None, None]) / (high - low)[:, None, None]
        rgb = np.moveaxis(np.nan_to_num(scaled, nan=0.0, posinf=1.0, neginf=0.0), 0, -1) * 255.0
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8), valid
