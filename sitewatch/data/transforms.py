"""Albumentations pipelines for training and validation chips.

Geometric augmentations pad with the unlabelled value (255) in the label, so padded borders
never count as background. Normalisation is ``(pixel / 255 - mean) / std`` per band.

Chips at coarse ground pixel sizes (``≥ coarse_from_m``) also pass through a simulation of a
coarser sensor (PlanetScope-like): a point-spread function wider than one pixel, sensor noise
and 12-bit radiometry seen through the 2-98 % stretch that inference applies to non-8-bit
rasters. A share of every batch (``grey_share``) is turned to grey in all three bands, the way
inference feeds a panchromatic raster.

Models that map every input through a per-band percentile stretch (``input_stretch``,
:mod:`sitewatch.radiometry`) are trained on what inference shows them:

* :class:`SensorView`: the chip as a sensor ``f`` times coarser delivers it (a Gaussian
  point-spread function of 0.5-0.9 sensor pixels, matched to real PlanetScope by
  ``bench/planetscope_look.py``; area averaging; sometimes sharpening halos, noise and JPEG at the
  sensor's pixel size), then resampled back bilinearly onto the chip grid, as inference resamples
  a 3 m scene onto its 1 m working grid;
* :class:`SceneRadiometry`: haze (an additive airlight that lifts the dark end, 45-185 in the
  PlanetScope crops), per-band gain (colour balance), gamma and desaturation, quantised to 8 bits;
* :class:`PercentileStretch`: the mapping inference applies, with its percentiles jittered (before
  the generic colour jitter, blur and noise, which would otherwise lift the black padding of a
  turned chip into the measured range).
"""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np

from sitewatch.data.common import IGNORE
from sitewatch.radiometry import stretch_chip


def simulate_12bit_stretch(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An 8-bit RGB chip as a 12-bit sensor would deliver it after inference's 2-98 % stretch.

    Random per-band gain and gamma (a different radiometric response), a haze offset, shot-like
    noise, quantisation to 12-bit digital numbers in a dark range (as raw surface reflectance
    sits), then the per-band 2-98 % percentile stretch back to 0-255, measured on the image's
    own pixels (all-zero padding around small chips is left black and not counted).
    """
    inside = image.any(axis=2)
    if not inside.any():
        return image
    values = image.astype(np.float32) / 255.0
    gamma = rng.uniform(0.7, 1.4)
    gains = rng.uniform(0.85, 1.15, size=(1, 1, values.shape[2]))
    haze = rng.uniform(0.0, 0.12)
    values = np.clip(values ** gamma * gains, 0, 1) * (1 - haze) + haze
    digital = values * rng.uniform(600, 3000)  # a dark 12-bit range, as reflectance DNs sit
    digital += rng.normal(0.0, rng.uniform(2.0, 12.0), size=digital.shape)
    digital = np.clip(np.round(digital), 0, 4095)
    flat = digital[inside]
    low, high = np.percentile(flat, 2, axis=0), np.percentile(flat, 98, axis=0)
    stretched = (digital - low) / np.maximum(high - low, 1.0)
    stretched[~inside] = 0.0
    return np.clip(stretched * 255.0 + 0.5, 0, 255).astype(np.uint8)


class CoarseSensor(A.ImageOnlyTransform):
    """Blur by a point-spread function of ``sigma_px`` pixels, then 12-bit stretched radiometry."""

    def __init__(self, sigma_px: tuple[float, float] = (0.5, 1.1), p: float = 1.0) -> None:
        super().__init__(p=p)
        self.sigma_px = sigma_px

    def apply(self, img: np.ndarray, **params) -> np.ndarray:
        rng = np.random.default_rng(int(self.py_random.random() * 2**32))
        sigma = rng.uniform(*self.sigma_px)
        blurred = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma)
        if blurred.ndim == 2:
            blurred = blurred[..., None]
        return simulate_12bit_stretch(blurred, rng)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("sigma_px",)


class SensorView(A.ImageOnlyTransform):
    """The chip as seen by a sensor ``factor`` times coarser, shown back on the chip's grid.

    Args:
        factor: range of the sensor's pixel size in chip pixels (drawn uniformly).
        psf_sigma: range of the Gaussian point-spread function's sigma in *sensor* pixels.
        sharpen_p: probability of an unsharp mask at the sensor's pixel size (product sharpening).
        jpeg_p: probability of JPEG compression at the sensor's pixel size.
    """

    def __init__(self, factor: tuple[float, float] = (1.5, 3.5), psf_sigma: tuple[float, float] = (0.5, 0.9),
                 sharpen_p: float = 0.4, jpeg_p: float = 0.3, p: float = 0.5) -> None:
        super().__init__(p=p)
        self.factor, self.psf_sigma = factor, psf_sigma
        self.sharpen_p, self.jpeg_p = sharpen_p, jpeg_p

    def apply(self, img: np.ndarray, **params) -> np.ndarray:
        rng = np.random.default_rng(int(self.py_random.random() * 2**32))
        factor = rng.uniform(*self.factor)
        height, width = img.shape[:2]
        sigma = rng.uniform(*self.psf_sigma) * factor
        blurred = cv2.GaussianBlur(img.astype(np.float32), (0, 0), sigmaX=sigma, sigmaY=sigma)
        small_size = (max(4, round(width / factor)), max(4, round(height / factor)))
        small = cv2.resize(blurred, small_size, interpolation=cv2.INTER_AREA)
        if rng.random() < self.sharpen_p:
            halo = cv2.GaussianBlur(small, (0, 0), sigmaX=1.0)
            small = small + rng.uniform(0.3, 1.0) * (small - halo)
        small = small + rng.normal(0.0, rng.uniform(0.5, 3.0), size=small.shape)
        small = np.clip(small + 0.5, 0, 255).astype(np.uint8)
        if rng.random() < self.jpeg_p:
            ok, encoded = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(60, 95))])
            small = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED) if ok else small
        out = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
        out = out.reshape(img.shape)
        out[~img.any(axis=2)] = 0  # padding stays padding
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("factor", "psf_sigma", "sharpen_p", "jpeg_p")


class SceneRadiometry(A.ImageOnlyTransform):
    """Haze, colour balance, gamma and desaturation of an 8-bit chip, as real scenes vary.

    Args:
        haze: range of the airlight's share of every value (0 = clear, 0.7 = the dark end lifted to ~180).
        gain: range of the per-band gain (colour balance).
        gamma: range of the gamma applied to 0..1 values.
        desaturate_p: probability of pulling colours towards grey by 0-60 %.
    """

    def __init__(self, haze: tuple[float, float] = (0.0, 0.7), gain: tuple[float, float] = (0.85, 1.15),
                 gamma: tuple[float, float] = (0.7, 1.4), desaturate_p: float = 0.4, p: float = 0.8) -> None:
        super().__init__(p=p)
        self.haze, self.gain, self.gamma, self.desaturate_p = haze, gain, gamma, desaturate_p

    def apply(self, img: np.ndarray, **params) -> np.ndarray:
        rng = np.random.default_rng(int(self.py_random.random() * 2**32))
        inside = img.any(axis=2)
        values = img.astype(np.float32) / 255.0
        values = values ** rng.uniform(*self.gamma) * rng.uniform(*self.gain, size=(1, 1, img.shape[2]))
        if rng.random() < self.desaturate_p:
            grey = values.mean(axis=2, keepdims=True)
            values = values + rng.uniform(0.0, 0.6) * (grey - values)
        haze = rng.uniform(*self.haze)
        airlight = rng.uniform(0.75, 1.0) * rng.uniform(0.92, 1.08, size=(1, 1, img.shape[2]))
        values = np.clip(values, 0, 1) * (1 - haze) + haze * np.clip(airlight, 0, 1)
        out = np.clip(values * 255.0 + 0.5, 0, 255).astype(np.uint8)
        out[~inside] = 0
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("haze", "gain", "gamma", "desaturate_p")


class PercentileStretch(A.ImageOnlyTransform):
    """The model's input mapping: a per-band percentile stretch, percentiles drawn from ranges.

    Args:
        low_pct, high_pct: ranges of the percentiles mapped to 0 and 255 (equal ends: fixed).
    """

    def __init__(self, low_pct: tuple[float, float] = (1.0, 1.0), high_pct: tuple[float, float] = (99.0, 99.0),
                 p: float = 1.0) -> None:
        super().__init__(p=p)
        self.low_pct, self.high_pct = low_pct, high_pct

    def apply(self, img: np.ndarray, **params) -> np.ndarray:
        low = self.py_random.uniform(*self.low_pct)
        high = self.py_random.uniform(*self.high_pct)
        return stretch_chip(img, low, high)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("low_pct", "high_pct")


def sensor_factors(chip_gsd_m: float, max_sensor_m: float) -> tuple[float, float] | None:
    """Range of sensor/chip pixel-size factors for a chip at ``chip_gsd_m``: 1.5-3.5, the sensor at most
    ``max_sensor_m`` metres; None when even 1.5× would be coarser than that."""
    top = min(3.5, max_sensor_m / chip_gsd_m)
    return (1.5, top) if top > 1.5 else None


def train_transform(
    patch_size: int, mean: Sequence[float], std: Sequence[float], scale_jitter: float = 0.2,
    *, coarse: bool = False, grey_share: float = 0.0, input_stretch: Sequence[float] | None = None,
    chip_gsd_m: float = 0.5, sensor_view_p: float = 0.0, max_sensor_m: float = 4.0,
) -> A.Compose:
    """Flips and 90° turns, scale jitter (±``scale_jitter``), colour, blur and noise.

    Args:
        patch_size: side of the training crop in pixels.
        mean, std: per-band normalisation of pixel/255.
        scale_jitter: relative scale augmentation (0.2 = ±20 %).
        coarse: the chip is at a coarse pixel size: simulate a coarser sensor (most of the time).
        grey_share: probability that the chip is turned to grey (panchromatic) in all bands.
        input_stretch: the model's percentile input mapping ``[low, high]`` (None: legacy, no
            stretch); with it, scene radiometry (haze, colour balance) is augmented before it.
        chip_gsd_m: the chip's ground pixel size (m).
        sensor_view_p: probability of :class:`SensorView` (a 1.5-3.5× coarser sensor, at most
            ``max_sensor_m`` metres, shown back on the chip grid).
    """
    steps: list[A.BasicTransform] = [
        A.Affine(
            scale=(1 - scale_jitter, 1 + scale_jitter), rotate=(-10, 10),
            interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST,
            border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGNORE, p=0.5,
        ),
        A.RandomCrop(patch_size, patch_size, pad_if_needed=True, fill=0, fill_mask=IGNORE),
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
        A.RandomRotate90(p=0.5),
    ]
    if coarse:
        steps.append(CoarseSensor(p=0.8))
    factors = sensor_factors(chip_gsd_m, max_sensor_m)
    if sensor_view_p > 0 and factors is not None:
        steps.append(SensorView(factor=factors, p=sensor_view_p))
    if input_stretch is not None:  # the scene's radiometry varies, then inference's mapping is applied
        low, high = input_stretch
        steps += [SceneRadiometry(p=0.8),
                  PercentileStretch((max(0.0, low - 0.5), low + 1.0), (high - 1.0, min(100.0, high + 0.5)))]
    steps += [
        A.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25, hue=0.03, p=0.7),
        A.OneOf([
            A.GaussianBlur(blur_limit=(3, 5), sigma_limit=(0.3, 1.2)),
            A.GaussNoise(std_range=(0.01, 0.05)),
            A.ImageCompression(quality_range=(40, 90)),
        ], p=0.4),
    ]
    if grey_share > 0:
        steps.append(A.ToGray(num_output_channels=3, method="weighted_average", p=grey_share))
    steps.append(A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0))
    return A.Compose(steps)


def eval_transform(mean: Sequence[float], std: Sequence[float],
                   input_stretch: Sequence[float] | None = None) -> A.Compose:
    """The model's input mapping (``input_stretch`` percentiles, if any), then normalisation."""
    steps: list[A.BasicTransform] = []
    if input_stretch is not None:
        low, high = input_stretch
        steps.append(PercentileStretch((low, low), (high, high)))
    steps.append(A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0))
    return A.Compose(steps)
