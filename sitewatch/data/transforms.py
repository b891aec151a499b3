"""Albumentations pipelines for training and validation chips.

Geometric augmentations pad with the unlabelled value (255) in the label, so padded borders
never count as background. Normalisation is ``(pixel / 255 - mean) / std`` per band.
"""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import cv2

from sitewatch.raster import IGNORE


def train_transform(
    patch_size: int, mean: Sequence[float], std: Sequence[float], scale_jitter: float = 0.2
) -> A.Compose:
    """Flips and 90° turns, scale jitter (±``scale_jitter``), colour, blur and noise."""
    return A.Compose([
        A.Affine(
            scale=(1 - scale_jitter, 1 + scale_jitter), rotate=(-10, 10),
            interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST,
            border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGNORE, p=0.5,
        ),
        A.RandomCrop(patch_size, patch_size, pad_if_needed=True, fill=0, fill_mask=IGNORE),
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
        A.RandomRotate90(p=0.5),
        A.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25, hue=0.03, p=0.7),
        A.OneOf([
            A.GaussianBlur(blur_limit=(3, 5), sigma_limit=(0.3, 1.2)),
            A.GaussNoise(std_range=(0.01, 0.05)),
            A.ImageCompression(quality_range=(40, 90)),
        ], p=0.4),
        A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0),
    ])


def eval_transform(mean: Sequence[float], std: Sequence[float]) -> A.Compose:
    """Normalisation only."""
    return A.Compose([A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0)])
