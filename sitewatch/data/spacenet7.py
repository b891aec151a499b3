"""SpaceNet 7 (multi-temporal urban development): PlanetScope monthly basemaps with footprints.

Layout, as published (``spacenet7_dev/<AOI>/``)::

    images/global_monthly_YYYY_MM_mosaic_<AOI>.tif          RGB + alpha, uint8, EPSG:3857 (~4.8 m, ~3.8 m on the ground)
    labels_match/global_monthly_YYYY_MM_mosaic_<AOI>_Buildings.geojson   footprints of that month, EPSG:3857,
                                                            with an ``Id`` that persists across months
    UDM/global_monthly_YYYY_MM_mosaic_<AOI>_UDM.geojson     the month's unusable (cloud) polygons, lon/lat

Each month is shown to the network as inference shows a 3-4 m scene: resampled bilinearly to the
PlanetScope network's working pixel size (``work_gsd_m``, 1 m), the footprints burned on that finer grid
(not on the 4.8 m one), alpha 0 and cloud polygons unlabelled. The sensor's own pixel size is kept in
``extra["sensor_gsd_m"]`` so that training does not blur these real PlanetScope chips a second time.

Split by ground, never by month (a building looks alike every month): every AOI is cut into four
quadrants, groups ``spacenet7/<AOI>/<nw|ne|sw|se>``. The change bench (``bench/spacenet7.py``)
scores on the quadrant training left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from affine import Affine

from sitewatch.data.common import IGNORE, LabeledImage, burn_polygons, require_dir
from sitewatch.errors import SitewatchError
from sitewatch.raster import ground_pixel_size_m, resample_image

SOURCE = "spacenet7"
FOLDER = "spacenet7_dev"
QUADRANTS = ("nw", "ne", "sw", "se")
_MONTH = re.compile(r"global_monthly_(\d{4})_(\d{2})_mosaic_(.+)$")


@dataclass(frozen=True)
class Month:
    """One month of one AOI: its image, its footprints and its cloud polygons (None where absent)."""

    aoi: str
    year: int
    month: int
    image: Path
    buildings: Path | None
    udm: Path | None

    @property
    def key(self) -> str:
        return f"{self.year:04d}_{self.month:02d}"


def months(aoi_dir: Path) -> list[Month]:
    """The months of one AOI folder, in time order."""
    found = []
    for image in sorted(require_dir(aoi_dir / "images", "spacenet7 images").glob("*.tif")):
        match = _MONTH.match(image.stem)
        if not match:
            continue
        year, month, aoi = int(match.group(1)), int(match.group(2)), match.group(3)
        labels = aoi_dir / "labels_match" / f"{image.stem}_Buildings.geojson"
        udm = aoi_dir / "UDM" / f"{image.stem}_UDM.geojson"
        found.append(Month(aoi, year, month, image, labels if labels.is_file() else None,
                           udm if udm.is_file() else None))
    return found


def read_month_buildings(month: Month, crs: object) -> gpd.GeoDataFrame:
    """A month's footprints (``Id`` and geometry) in ``crs``; empty where the month has no label file."""
    if month.buildings is None:
        return gpd.GeoDataFrame({"Id": []}, geometry=[], crs=crs)
    frame = gpd.read_file(month.buildings)
    if "Id" not in frame.columns:
        raise SitewatchError(f"{month.buildings}: SpaceNet 7 footprints need an 'Id' column")
    frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty]
    return frame[["Id", "geometry"]].to_crs(crs)


def _unusable(month: Month, crs: object) -> list:
    if month.udm is None:
        return []
    frame = gpd.read_file(month.udm)
    if frame.empty:
        return []
    return list(frame.set_crs(frame.crs or "EPSG:4326", allow_override=False).to_crs(crs).geometry)


def read_month(month: Month, work_gsd_m: float = 1.0) -> tuple[np.ndarray, np.ndarray, Affine, object, float]:
    """A month on the working grid: RGB uint8 ``H×W×3``, label (1 building, 0 not, IGNORE unlabelled),
    the working grid's transform and CRS, and the sensor's ground pixel size (m)."""
    with rasterio.open(month.image) as dataset:
        if dataset.count < 3 or dataset.dtypes[0] != "uint8":
            raise SitewatchError(f"{month.image}: expected 8-bit RGB(+alpha), got {dataset.count} bands "
                                 f"of {dataset.dtypes[0]}")
        pixels, transform, crs = dataset.read(), dataset.transform, dataset.crs
    sensor_m = ground_pixel_size_m(crs, transform, pixels.shape[2], pixels.shape[1])
    scale = sensor_m / work_gsd_m
    image = resample_image(np.ascontiguousarray(np.moveaxis(pixels[:3], 0, -1)), scale)
    shape = image.shape[:2]
    grid = transform @ Affine.scale(pixels.shape[2] / shape[1], pixels.shape[1] / shape[0])
    label = burn_polygons(list(read_month_buildings(month, crs).geometry), grid, shape)
    unseen = burn_polygons(_unusable(month, crs), grid, shape).astype(bool)
    if pixels.shape[0] >= 4:
        unseen |= resample_image((pixels[3] == 0).astype(np.uint8), scale).astype(bool)
    label[unseen] = IGNORE
    return image, label, grid, crs, sensor_m


def quadrant_slices(shape: tuple[int, int]) -> dict[str, tuple[slice, slice]]:
    """Rows and columns of the four quadrants of a grid of ``shape`` (rows, cols)."""
    half_r, half_c = shape[0] // 2, shape[1] // 2
    rows = {"n": slice(0, half_r), "s": slice(half_r, shape[0])}
    cols = {"w": slice(0, half_c), "e": slice(half_c, shape[1])}
    return {q: (rows[q[0]], cols[q[1]]) for q in QUADRANTS}


def read_spacenet7(root: Path, work_gsd_m: float = 1.0) -> Iterator[LabeledImage]:
    """Yield every labelled month of every AOI, as four quadrants each (groups ``spacenet7/<AOI>/<quadrant>``)."""
    base = require_dir(root / FOLDER, FOLDER)
    for aoi_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        for month in months(aoi_dir):
            if month.buildings is None:
                continue
            image, label, grid, crs, sensor_m = read_month(month, work_gsd_m)
            for quadrant, (rows, cols) in quadrant_slices(label.shape).items():
                yield LabeledImage(
                    name=f"{month.aoi}_{month.key}_{quadrant}", source=SOURCE, group=f"{SOURCE}/{month.aoi}/{quadrant}",
                    image=np.ascontiguousarray(image[rows, cols]), label=np.ascontiguousarray(label[rows, cols]),
                    gsd_m=work_gsd_m, crs=crs.to_string(),
                    transform=grid @ Affine.translation(cols.start, rows.start),
                    extra={"sensor_gsd_m": round(sensor_m, 3), "month": month.key})
