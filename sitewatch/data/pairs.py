"""Change pairs of the public samples (LEVIR-CD, DSIFN) written as dated GeoTIFFs for ``change``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from affine import Affine

from sitewatch.data.levir import write_geotiff
from sitewatch.errors import SitewatchError
from sitewatch.raster import resample_image


def write_pair_rasters(name: str, earlier: np.ndarray, later: np.ndarray, transform: Affine, crs: str,
                       folder: Path, coarsen_to_m: float | None = None,
                       native_gsd_m: float | None = None) -> list[Path]:
    """Write a change pair as two dated RGB GeoTIFFs (``<name>_2012-05-01.tif``, ``…_2018-05-01.tif``).

    With ``coarsen_to_m``, both images are area-averaged from ``native_gsd_m`` to that ground
    pixel size first (as a coarser sensor would see the ground) and the grid scaled to match.
    """
    if coarsen_to_m is not None:
        if native_gsd_m is None:
            raise SitewatchError("coarsening a pair needs its native pixel size")
        scale = native_gsd_m / coarsen_to_m
        height, width = earlier.shape[:2]
        earlier, later = resample_image(earlier, scale), resample_image(later, scale)
        transform = transform @ Affine.scale(width / earlier.shape[1], height / earlier.shape[0])
    return [write_geotiff(folder / f"{name}_{date}.tif", image, transform, crs, {})
            for date, image in (("2012-05-01", earlier), ("2018-05-01", later))]
