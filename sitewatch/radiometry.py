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

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, Resampling

from sitewatch.errors import SitewatchError
from sitewatch.modelfile import LEGACY, InputMapping
from sitewatch.planet import named_like_planet_only, product_bands
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


#: Band descriptions (lower case, ``-`` and spaces as ``_``) naming a band, as products write them.
_NAMES = {"red": "red", "r": "red", "green": "green", "g": "green", "blue": "blue", "b": "blue",
          "nir": "nir", "near_infrared": "nir", "near_ir": "nir", "coastal_blue": "coastal_blue",
          "coastal": "coastal_blue", "green_i": "green_i", "yellow": "yellow", "rededge": "rededge",
          "red_edge": "rededge", "alpha": "alpha", "pan": "pan", "panchromatic": "pan"}


@dataclass(frozen=True)
class BandChoice:
    """The input bands feeding the model's bands, and how they were known.

    Attributes:
        bands: 1-based band indexes, one per model band (``red, green, blue``).
        names: the name of every band of the file as known (``band 4`` where unknown).
        source: how the bands were known (``--bands``, band descriptions, a Planet product,
            colour interpretation, or ``not said by the file``).
        guessed: True when nothing says which band is which and the first bands were taken.
    """

    bands: list[int]
    names: list[str]
    source: str
    guessed: bool = False

    def describe(self) -> str:
        """``6,4,2 (red, green, blue from the band descriptions)``: what ``summary.json`` records."""
        used = ", ".join(self.names[b - 1] for b in self.bands)
        text = f"{','.join(str(b) for b in self.bands)} ({used}; {self.source})"
        if self.guessed:
            text += (f": the file does not say which band is which of its {len(self.names)}; choose with --bands "
                     "(3,2,1 for a blue, green, red file)")
        return text

    def has_nir(self) -> int | None:
        """The 1-based index of the near-infrared band, if the file has one."""
        return self.names.index("nir") + 1 if "nir" in self.names else None


def band_names(dataset: rasterio.DatasetReader) -> tuple[list[str] | None, str]:
    """The name of every band as the file says it: its band descriptions, a Planet product's name or
    metadata (:mod:`sitewatch.planet`), else its colour interpretation; (None, "") when unknown."""
    described = [_NAMES.get((d or "").strip().lower().replace("-", "_").replace(" ", "_"))
                 for d in dataset.descriptions]
    if {"red", "green", "blue"} <= set(described):
        return [n or f"band {i + 1}" for i, n in enumerate(described)], "band descriptions"
    interp = {ColorInterp.red: "red", ColorInterp.green: "green", ColorInterp.blue: "blue", ColorInterp.alpha: "alpha"}
    named = [interp.get(ci) for ci in dataset.colorinterp]
    by_interp = ([n or f"band {i + 1}" for i, n in enumerate(named)], "colour interpretation") \
        if {"red", "green", "blue"} <= set(named) else None
    product = product_bands(Path(dataset.name), dataset.count) if dataset.name else None
    # the file's own colour interpretation outranks a loose guess from its name (an RGBA drone ortho named
    # 20240827_101112_ortho.tif is no Planet BGRN product); Planet metadata beside the file, or a name only Planet
    # products carry (3B_AnalyticMS, BGRN: GDAL calls every 8-bit 4-band GeoTIFF RGBA), outrank it
    if product is not None and (by_interp is None or "metadata" in product[1]
                                or named_like_planet_only(Path(dataset.name))):
        return list(product[0]), product[1]
    return by_interp or (None, "")


def band_choice(dataset: rasterio.DatasetReader, wanted: list[str], override: list[int] | None) -> BandChoice:
    """The bands feeding the model's ``wanted`` bands: ``override`` (``--bands``) wins; else the bands
    the file names (:func:`band_names`); else one band repeated (panchromatic) or the first
    ``len(wanted)`` bands, marked as guessed."""
    count = dataset.count
    names, source = band_names(dataset)
    known = names or [f"band {i}" for i in range(1, count + 1)]
    if override:
        if any(b < 1 or b > count for b in override):
            raise SitewatchError(f"{dataset.name}: bands {override} outside 1..{count}", setting="bands")
        if len(override) == 1:
            return BandChoice(override * len(wanted), known, "--bands (one band as grey)")
        if len(override) != len(wanted):
            raise SitewatchError(f"the bands need {len(wanted)} band numbers ({', '.join(wanted)})", setting="bands")
        return BandChoice(list(override), known, "--bands")
    if names and all(w in names for w in wanted):
        return BandChoice([names.index(w) + 1 for w in wanted], names, source)
    if count == 1:
        return BandChoice([1] * len(wanted), known, "one band, as grey")  # panchromatic
    if count >= len(wanted):  # nothing in the file names its bands: a guess, said as one (BGR files exist)
        return BandChoice(list(range(1, len(wanted) + 1)), known, f"bands 1-{len(wanted)} taken in order",
                          guessed=True)
    raise SitewatchError(
        f"{dataset.name}: {count} bands, the model needs {len(wanted)} ({', '.join(wanted)}); "
        "choose which bands feed them", setting="bands"
    )


def choose_bands(dataset: rasterio.DatasetReader, wanted: list[str], override: list[int] | None) -> list[int]:
    """1-based band indexes feeding the model's bands (``red, green, blue``): see :func:`band_choice`."""
    return band_choice(dataset, wanted, override).bands


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


@dataclass(frozen=True)
class Stretch:
    """Per-band raw values mapped to 0 and 1 (``low``, ``high``) for one date, and how they were measured."""

    low: np.ndarray
    high: np.ndarray
    note: str


#: Fewest common clear pixels (of the decimated read) a site-wide stretch is measured on.
MIN_COMMON_PX = 400


def site_stretch(paths: list[Path], bands: list[list[int]], grounds: list[Path | None],
                 mapping: InputMapping) -> list[Stretch] | None:
    """One value mapping for every date of a site, measured on the ground clear at every date.

    ``paths`` are on one grid; ``grounds`` their ground masks (255 seen, 0 not seen, or None).
    For a ``percentile`` mapping: the mapping's per-band percentiles of the pixels valid and clear at
    every date (a decimated read, at most 1024 px a side). Dates of one value type (uint16
    reflectance, say) share the same limits, measured on all their pixels pooled, so a hazier date
    is not stretched into another place; dates of different value types (8-bit visual, 16-bit
    analytic) each get their own limits on the same common ground, so 8-bit and 16-bit copies of
    one scene map alike. ``legacy``: None (each date as today: :func:`value_stretch`). With too
    little common clear ground (< :data:`MIN_COMMON_PX`), each date's own clear ground.
    """
    if mapping.kind != "percentile":
        return None
    with rasterio.open(paths[0]) as first:
        shape = overview_shape(first, 1024)
    samples, dtypes, valids = [], [], []
    for path, chosen, ground in zip(paths, bands, grounds, strict=True):
        with rasterio.open(path) as dataset:
            pixels = dataset.read(chosen, out_shape=(len(chosen), *shape), resampling=Resampling.nearest, masked=True)
            dtypes.append(np.dtype(dataset.dtypes[chosen[0] - 1]).name)
        values = pixels.astype(np.float64).filled(np.nan)
        valid = ~np.ma.getmaskarray(pixels).any(axis=0) & np.isfinite(values).all(axis=0)
        if ground is not None:
            with rasterio.open(ground) as mask:
                valid &= mask.read(1, out_shape=shape, resampling=Resampling.nearest) > 0
        samples.append(values)
        valids.append(valid)
    common = np.logical_and.reduce(valids)
    span = f"{mapping.low_pct:g}-{mapping.high_pct:g}%"
    if common.sum() < MIN_COMMON_PX:
        where = [v if v.sum() >= MIN_COMMON_PX else np.isfinite(x).all(axis=0) for v, x in zip(valids, samples,
                                                                                                strict=True)]
        return [Stretch(*percentile_limits(x[:, w], mapping.low_pct, mapping.high_pct),
                        f"{t} {span} stretch of the date's own clear ground (too little ground clear at every date)")
                for x, w, t in zip(samples, where, dtypes, strict=True)]
    share = f"{common.mean():.0%} of the site"
    if len(set(dtypes)) == 1:
        low, high = percentile_limits(np.concatenate([x[:, common] for x in samples], axis=1),
                                      mapping.low_pct, mapping.high_pct)
        note = (f"{dtypes[0]} {span} stretch, one for all {len(paths)} dates, measured on the ground clear at "
                f"every date ({share})") if len(paths) > 1 else f"{dtypes[0]} {span} stretch of the clear ground"
        return [Stretch(low, high, note) for _ in paths]
    return [Stretch(*percentile_limits(x[:, common], mapping.low_pct, mapping.high_pct),
                    f"{t} {span} stretch measured on the ground clear at every date ({share}; value types differ)")
            for x, t in zip(samples, dtypes, strict=True)]


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
