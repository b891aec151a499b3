"""The raster products of segmentation and how they encode their values.

One definition for the writer (:mod:`sitewatch.predict`) and every reader (footprints, coverage,
change evidence, evaluation):

* ``probability.tif``: uint8, building probability × :data:`PROBABILITY_SCALE`; pixels without
  data are masked (GDAL internal mask);
* ``mask.tif``: uint8, 1 building, 0 background, :data:`MASK_NODATA` where the date saw no ground.
"""

from __future__ import annotations

import numpy as np

MASK_NODATA = 255
PROBABILITY_SCALE = 255.0
#: Building probability above which a pixel is building, for a model file that names none and
#: for probability rasters vectorized on their own.
DEFAULT_THRESHOLD = 0.5


def encode_probability(probability: np.ndarray) -> np.ndarray:
    """Probabilities (0-1) as stored in ``probability.tif`` (uint8)."""
    return np.rint(probability * PROBABILITY_SCALE).astype(np.uint8)


def decode_probability(values: np.ndarray) -> np.ndarray:
    """Stored uint8 values back to probabilities (float32, 0-1)."""
    return values.astype(np.float32) / PROBABILITY_SCALE
