"""LEVIR-CD building change pairs, georeferenced with the published coordinate file.

``levir_cd_dev/{A,B,label}/<parent>_<row>_<col>.png``: 256 px crops of a 1024 px parent image
(A = earlier date, B = later date, label 255 where a building appeared or vanished).
``LEVIR_CD_name_coords.json`` gives each parent's lon/lat box
``[lon_left, lat_top, lon_right, lat_bottom]`` (EPSG:4326). The crop name's two numbers are
read as the row and column offsets of the crop inside its parent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from sitewatch.data.common import read_binary_mask, read_rgb, require_dir
from sitewatch.errors import SitewatchError

CROP_NAME = re.compile(r"^(?P<parent>.+)_(?P<row>\d{4})_(?P<col>\d{4})$")
PARENT_SIZE = 1024


@dataclass
class LevirPair:
    """One LEVIR-CD crop: both dates, the change label and the crop's EPSG:4326 grid."""

    name: str
    earlier: np.ndarray
    later: np.ndarray
    change: np.ndarray
    transform: Affine
    crs: str = "EPSG:4326"


def levir_names(root: Path) -> list[str]:
    """Crop names present in ``root/levir_cd_dev/A``."""
    folder = require_dir(root / "levir_cd_dev" / "A", "levir_cd_dev/A")
    return sorted(p.stem for p in folder.glob("*.png"))


def read_levir_pair(root: Path, name: str) -> LevirPair:
    """Read crop ``name`` of ``root/levir_cd_dev`` with its georeferencing."""
    match = CROP_NAME.match(name)
    if not match:
        raise SitewatchError(f"{name}: LEVIR crop names look like train_36_0512_0768")
    return _read_levir(root / "levir_cd_dev", name, match["parent"], int(match["row"]), int(match["col"]),
                       root / "levir_cd_dev" / "LEVIR_CD_name_coords.json")


def levir_tile_names(root: Path) -> list[str]:
    """Whole 1024 px tiles present in ``root/levir_cd_full_dev/A`` ([] where there is no such folder)."""
    folder = root / "levir_cd_full_dev" / "A"
    return sorted(p.stem for p in folder.glob("*.png")) if folder.is_dir() else []


def read_levir_tile(root: Path, name: str) -> LevirPair:
    """Read whole tile ``name`` (``test_1``) of ``root/levir_cd_full_dev``, georeferenced with the
    coordinate file of ``root/levir_cd_dev``."""
    return _read_levir(root / "levir_cd_full_dev", name, name, 0, 0,
                       root / "levir_cd_dev" / "LEVIR_CD_name_coords.json")


def _read_levir(base: Path, name: str, parent_name: str, row: int, col: int, coords_file: Path) -> LevirPair:
    """One LEVIR image pair (``base/{A,B,label}/<name>.png``) at offsets ``row``, ``col`` of its parent."""
    require_dir(base, base.name)
    if not coords_file.is_file():
        raise SitewatchError(f"{coords_file}: LEVIR coordinate file not found")
    coords = json.loads(coords_file.read_text())
    parent = f"{parent_name}.png"
    if parent not in coords:
        raise SitewatchError(f"{parent}: not in LEVIR_CD_name_coords.json")
    lon_left, lat_top, lon_right, lat_bottom = coords[parent]
    res_x = (lon_right - lon_left) / PARENT_SIZE
    res_y = (lat_top - lat_bottom) / PARENT_SIZE
    transform = Affine(res_x, 0, lon_left + col * res_x, 0, -res_y, lat_top - row * res_y)
    earlier, later = read_rgb(base / "A" / f"{name}.png"), read_rgb(base / "B" / f"{name}.png")
    change = read_binary_mask(base / "label" / f"{name}.png")
    if not earlier.shape == later.shape or earlier.shape[:2] != change.shape:
        raise SitewatchError(f"{name}: A, B and label differ in size")
    return LevirPair(name, earlier, later, change, transform)


def write_geotiff(path: Path, image: np.ndarray, transform: Affine, crs: str, tags: dict[str, str]) -> Path:
    """Write an ``H×W×3`` uint8 image as a tiled RGB GeoTIFF with tags."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=image.shape[1], height=image.shape[0], count=3,
                       dtype="uint8", crs=crs, transform=transform, photometric="RGB",
                       compress="deflate") as out:
        out.write(np.moveaxis(image, -1, 0))
        out.update_tags(**tags)
    return path
