"""By-eye references: marked buildings and open ground on images without labels, and their scores.

A reference (``data/samples/planetscope_dev/reference.json``) holds, per image, outlines in pixel
coordinates (x right, y down, origin at the top-left corner) of large buildings and of open
ground, with the criteria they were marked by. A model's building mask is scored against them:

* a marked building is **found** when at least ``FOUND_SHARE`` of its outline's pixels are building;
* an open-ground mark is **falsely found** when more than ``FALSE_SHARE`` of its pixels are building.

Marks are a sample, not a census: an unmarked pixel says nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.features import rasterize
from shapely.affinity import translate
from shapely.geometry import Polygon, box

FOUND_SHARE = 0.5
FALSE_SHARE = 0.25


@dataclass(frozen=True)
class Mark:
    """One marked outline: ``kind`` (hangar, apron...), ``building`` (else open ground), pixel polygon."""

    id: str
    kind: str
    building: bool
    outline: Polygon


def read_marks(reference: Path, image: str, window: tuple[int, int, int, int] | None = None) -> list[Mark]:
    """The marks of ``image`` in a reference file; with ``window`` (left, top, right, bottom) only the
    marks lying wholly inside it, in the window's pixel coordinates."""
    crop = json.loads(Path(reference).read_text())["crops"][image]
    marks = [Mark(m["id"], m["kind"], building, Polygon(m["polygon"]))
             for key, building in (("large_buildings", True), ("open_ground", False)) for m in crop[key]]
    if window is None:
        return marks
    left, top, right, bottom = window
    inside = box(left, top, right, bottom)
    return [Mark(m.id, m.kind, m.building, translate(m.outline, -left, -top)) for m in marks
            if inside.contains(m.outline)]


def building_share(mark: Mark, mask: np.ndarray) -> float:
    """Share of the pixels inside the mark's outline that ``mask`` calls building (value 1)."""
    inside = rasterize([(mark.outline, 1)], out_shape=mask.shape, fill=0, dtype="uint8").astype(bool)
    return float((mask[inside] == 1).mean()) if inside.any() else 0.0


@dataclass(frozen=True)
class MarkScore:
    """Marked buildings found and open-ground marks falsely found."""

    found: int
    buildings: int
    falsely_found: int
    open_ground: int
    shares: dict[str, float]


def score_marks(marks: list[Mark], mask: np.ndarray) -> MarkScore:
    """Score a building mask (1 building, on the marks' pixel grid) against marks."""
    shares = {m.id: building_share(m, mask) for m in marks}
    buildings = [m for m in marks if m.building]
    ground = [m for m in marks if not m.building]
    return MarkScore(found=sum(shares[m.id] >= FOUND_SHARE for m in buildings), buildings=len(buildings),
                     falsely_found=sum(shares[m.id] > FALSE_SHARE for m in ground), open_ground=len(ground),
                     shares=shares)
