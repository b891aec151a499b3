"""Images marked by eye (a by-eye reference such as ``data/samples/planetscope_dev/reference.json``) as sparse labels.

A folder holding ``reference.json`` and the images it names (``crops.<name>.file``): every image of the reference
whose file is in the folder is read, so a training folder names the crops it may use and leaves the others to the
report. Labels: inside a marked large building 1, inside a marked open-ground spot (aprons, car parks, water,
parked aircraft, boats...) 0, everything else unlabelled: the hard negatives of a model that calls aircraft and
ships buildings, without claiming anything about unmarked ground. The image is shown as inference shows it:
resampled bilinearly from the reference's ``pixel_size_m`` to ``work_gsd_m`` (1 m), the marks scaled with it.
Group: ``marked/<crop>``; its chips are kept however sparse their labels (``extra["min_labelled_share"]``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from affine import Affine
from PIL import Image
from shapely.affinity import scale as scale_geometry

from sitewatch.data.common import IGNORE, LabeledImage, burn_polygons, require_dir
from sitewatch.errors import SitewatchError
from sitewatch.marks import read_marks
from sitewatch.raster import resample_image

SOURCE = "marked"
#: A chip of a marked image is kept when at least this share of it is labelled (marks are sparse).
MIN_LABELLED_SHARE = 0.002


def read_marked(folder: Path, work_gsd_m: float = 1.0) -> Iterator[LabeledImage]:
    """Yield each marked image of ``folder`` (see the module) on the working grid."""
    folder = require_dir(Path(folder), "marked images")
    reference = folder / "reference.json"
    if not reference.is_file():
        raise SitewatchError(f"{folder}: no reference.json (the marks) in the folder")
    document = json.loads(reference.read_text())
    pixel_m = float(document.get("pixel_size_m", 0) or 0)
    if pixel_m <= 0:
        raise SitewatchError(f"{reference}: 'pixel_size_m' must be a positive number")
    scale = pixel_m / work_gsd_m
    for name, crop in sorted(document.get("crops", {}).items()):
        path = folder / crop["file"]
        if not path.is_file():
            continue
        rgb = np.asarray(Image.open(path).convert("RGB"))
        image = resample_image(rgb, scale)
        label = np.full(image.shape[:2], IGNORE, np.uint8)
        marks = read_marks(reference, name)
        for value in (0, 1):  # open ground, then buildings
            shapes = [scale_geometry(m.outline, scale, scale, origin=(0, 0)) for m in marks if m.building == value]
            label[burn_polygons(shapes, Affine.identity(), label.shape).astype(bool)] = value
        yield LabeledImage(name=name, source=SOURCE, group=f"{SOURCE}/{name}", image=np.ascontiguousarray(image),
                           label=label, gsd_m=work_gsd_m, gsd_estimated=True,
                           extra={"sensor_gsd_m": pixel_m, "min_labelled_share": MIN_LABELLED_SHARE})
