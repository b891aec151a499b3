"""DSIFN change pairs (Google Earth, cities in China, about 2 m), on an assumed local grid.

``dsifn_cd_dev/{A,B,label}/<name>.png``: 256 px crops at two dates (A earlier, B later) and a
coarse land-use change mask (255 = changed), not building footprints. The samples carry no
georeferencing and no published pixel size: the reader places each pair on a local UTM grid
(EPSG:32650, zone 50 N, eastern China) with ``DSIFN_GSD_M`` pixels (2 m, judged from hall and
road widths), each pair 10 km apart. Areas in m² are therefore as good as that judgement.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine

from sitewatch.data.common import read_binary_mask, read_rgb, require_dir
from sitewatch.errors import SitewatchError

DSIFN_GSD_M = 2.0
DSIFN_CRS = "EPSG:32650"


@dataclass
class DsifnPair:
    """One DSIFN crop: both dates, the change mask and the assumed grid."""

    name: str
    earlier: np.ndarray
    later: np.ndarray
    change: np.ndarray
    transform: Affine
    crs: str = DSIFN_CRS


def dsifn_names(root: Path) -> list[str]:
    """Crop names present in ``root/dsifn_cd_dev/A``."""
    folder = require_dir(root / "dsifn_cd_dev" / "A", "dsifn_cd_dev/A")
    return sorted(p.stem for p in folder.glob("*.png"))


def read_dsifn_pair(root: Path, name: str) -> DsifnPair:
    """Read crop ``name`` of ``root/dsifn_cd_dev`` on its assumed 2 m UTM grid."""
    base = require_dir(root / "dsifn_cd_dev", "dsifn_cd_dev")
    names = dsifn_names(root)
    if name not in names:
        raise SitewatchError(f"{name}: not a DSIFN crop in {base} (have {names})")
    earlier, later = read_rgb(base / "A" / f"{name}.png"), read_rgb(base / "B" / f"{name}.png")
    change = read_binary_mask(base / "label" / f"{name}.png")
    if earlier.shape != later.shape or earlier.shape[:2] != change.shape:
        raise SitewatchError(f"{name}: A, B and label differ in size")
    west = 400_000.0 + 10_000.0 * names.index(name)
    transform = Affine(DSIFN_GSD_M, 0, west, 0, -DSIFN_GSD_M, 3_500_000.0)
    return DsifnPair(name, earlier, later, change, transform)

