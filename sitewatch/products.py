"""The raster products of segmentation and how they encode their values.

One definition for the writer (:mod:`sitewatch.predict`) and every reader (footprints, coverage,
change evidence, evaluation):

* ``probability.tif``: uint8, building probability × :data:`PROBABILITY_SCALE` (0-254), nodata
  :data:`PROBABILITY_NODATA` (255) where the date saw no ground, so no reader takes unseen ground
  for "certainly no building"; tagged ``SITEWATCH_PRODUCT=probability`` (:data:`PRODUCT_TAG`);
* ``mask.tif``: uint8, 1 building, 0 background, :data:`MASK_NODATA` where the date saw no ground.
"""

from __future__ import annotations

import numpy as np

MASK_NODATA = 255
PROBABILITY_SCALE = 254.0
PROBABILITY_NODATA = 255
#: GDAL metadata tag naming a sitewatch product raster (``probability``), read by ``vectorize``.
PRODUCT_TAG = "SITEWATCH_PRODUCT"
#: Building probability above which a pixel is building, for a model file that names none and
#: for probability rasters vectorized on their own.
DEFAULT_THRESHOLD = 0.5


def encode_probability(probability: np.ndarray) -> np.ndarray:
    """Probabilities (0-1) as stored in ``probability.tif`` (uint8 0-254)."""
    return np.clip(np.rint(probability * PROBABILITY_SCALE), 0, PROBABILITY_SCALE).astype(np.uint8)


def decode_probability(values: np.ndarray) -> np.ndarray:
    """Stored uint8 values back to probabilities (float32, 0-1); nodata (ground not seen) reads as 0."""
    probability = values.astype(np.float32) / PROBABILITY_SCALE
    probability[values == PROBABILITY_NODATA] = 0.0
    return probability
