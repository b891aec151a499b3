"""Albumentations pipelines for training and validation chips.

Geometric augmentations pad with the unlabelled value (255) in the label, so padded borders
never count as background. Normalisation is ``(pixel / 255 - mean) / std`` per band.

Chips at coarse ground pixel sizes (``≥ coarse_from_m``) also pass through a simulation of a
coarser sensor (PlanetScope-like): a point-spread function wider than one pixel, sensor noise
and 12-bit radiometry seen through the 2-98 % stretch that inference applies to non-8-bit
rasters. A share of every batch (``grey_share``) is turned to grey in all three bands, the way
inference feeds a panchromatic raster.
"""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np

from sitewatch.data.common import IGNORE


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


def train_transform(
    patch_size: int, mean: Sequence[float], std: Sequence[float], scale_jitter: float = 0.2,
    *, coarse: bool = False, grey_share: float = 0.0,
) -> A.Compose:
    """Flips and 90° turns, scale jitter (±``scale_jitter``), colour, blur and noise.

    Args:
        patch_size: side of the training crop in pixels.
        mean, std: per-band normalisation of pixel/255.
        scale_jitter: relative scale augmentation (0.2 = ±20 %).
        coarse: the chip is at a coarse pixel size: simulate a coarser sensor (most of the time).
        grey_share: probability that the chip is turned to grey (panchromatic) in all bands.
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


def eval_transform(mean: Sequence[float], std: Sequence[float]) -> A.Compose:
    """Normalisation only."""
    return A.Compose([A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0)])
