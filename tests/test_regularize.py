"""Right-angled outlines at every orientation and pixel size (issue 32).

Rectangles and L-shapes are rasterized at every 5° and at 0.3, 0.5, 1, 2 and 3 m, as the
probability a network gives (each pixel the share of it the building covers) and as a 0/1 mask,
then traced by ``vectorize_raster`` as any prediction is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.features import rasterize
from shapely import affinity
from shapely.geometry import Polygon, box

from sitewatch.footprints import vectorize_raster
from sitewatch.regularize import candidate_angles, rectilinear, regularize, step_size_m

ORIGIN = (500000.0, 4000000.0)
RECTANGLE = box(-45, -20, 45, 20)  # a 90 x 40 m hall
L_SHAPE = Polygon([(-40, -30), (40, -30), (40, -5), (-15, -5), (-15, 30), (-40, 30)])
PIXELS_M = (0.3, 0.5, 1.0, 2.0, 3.0)


def _rasterized(shape: Polygon, pixel_m: float, path: Path, as_mask: bool) -> Path:
    """A UTM GeoTIFF of the shape's pixel coverage (float 0-1), or the coverage >= 0.5 as 0/1."""
    size = int(np.ceil(130 / pixel_m))
    transform = Affine(pixel_m, 0, ORIGIN[0] - size * pixel_m / 2, 0, -pixel_m, ORIGIN[1] + size * pixel_m / 2)
    fine = 4
    cover = rasterize([shape], out_shape=(size * fine, size * fine), transform=transform @ Affine.scale(1 / fine),
                      dtype="uint8").reshape(size, fine, size, fine).mean(axis=(1, 3))
    data = (cover >= 0.5).astype("uint8") if as_mask else cover.astype("float32")
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1, dtype=data.dtype,
                       crs="EPSG:32633", transform=transform) as out:
        out.write(data, 1)
    return path


def _right_angled(polygon: Polygon) -> bool:
    edges = np.diff(np.asarray(polygon.exterior.coords), axis=0)
    following = np.roll(edges, -1, axis=0)
    cosine = (edges * following).sum(1) / (np.hypot(*edges.T) * np.hypot(*following.T))
    return bool(np.all(np.abs(cosine) < np.cos(np.radians(88))))


@pytest.mark.parametrize("pixel_m", PIXELS_M)
@pytest.mark.parametrize(("name", "base", "corners"), [("rectangle", RECTANGLE, 4), ("L", L_SHAPE, 6)])
def test_rotated_shapes_come_out_right_angled_at_every_angle(tmp_path: Path, pixel_m: float, name: str,
                                                              base: Polygon, corners: int) -> None:
    for degrees in range(0, 90, 5):
        truth = affinity.rotate(affinity.translate(base, *ORIGIN), degrees, origin=ORIGIN)
        frame = vectorize_raster(_rasterized(truth, pixel_m, tmp_path / "p.tif", as_mask=False))
        assert len(frame) == 1, (name, pixel_m, degrees)
        outline = frame.geometry.iloc[0]
        iou = outline.intersection(truth).area / outline.union(truth).area
        assert iou >= 0.95, (name, pixel_m, degrees, iou)
        assert len(outline.exterior.coords) - 1 == corners, (name, pixel_m, degrees)
        assert _right_angled(outline) and frame.regularized.iloc[0]
        assert frame.rectangularity.iloc[0] > (0.95 if name == "rectangle" else 0.55)  # L: area / envelope 0.6


@pytest.mark.parametrize("pixel_m", (2.0, 3.0))
def test_a_binary_mask_off_the_grid_gives_no_staircase(tmp_path: Path, pixel_m: float) -> None:
    """The issue's case: a 90 x 40 m hall at 7.5-82.5° in a 0/1 mask at 2-3 m used to come out
    as a 40-176-vertex staircase."""
    for degrees in np.arange(7.5, 83, 7.5):
        truth = affinity.rotate(affinity.translate(RECTANGLE, *ORIGIN), degrees, origin=ORIGIN)
        frame = vectorize_raster(_rasterized(truth, pixel_m, tmp_path / "m.tif", as_mask=True))
        outline = frame.geometry.iloc[0]
        assert len(outline.exterior.coords) - 1 == 4 and _right_angled(outline), degrees
        assert outline.intersection(truth).area / outline.union(truth).area >= 0.95, degrees


def test_candidate_directions_see_through_the_staircase() -> None:
    """A 30° hall traced as a 3 m staircase: its direction, not the grid's, is among the candidates."""
    truth = affinity.rotate(RECTANGLE, 30, origin=(0, 0))
    cells = [box(x, y, x + 3, y + 3) for x in range(-60, 60, 3) for y in range(-60, 60, 3)
             if truth.intersection(box(x, y, x + 3, y + 3)).area >= 4.5]
    staircase = shapely.union_all(cells)
    angles = np.degrees(candidate_angles(staircase, step_size_m(3.0, 0.5)))
    assert np.min(np.abs(angles - 30)) < 2.0
    square = rectilinear(staircase, np.radians(30), step_size_m(3.0, 0.5))
    assert square is not None and len(square.exterior.coords) == 5


def test_a_shape_no_right_angle_fits_stays_a_simplified_polygon() -> None:
    circle = shapely.Point(0, 0).buffer(20, quad_segs=32)
    triangle = Polygon([(0, 0), (60, 0), (0, 25)])
    outlines, regular = regularize(np.array([circle, triangle], dtype=object), 0.85, 1.0)
    assert not regular.any()
    assert outlines[0].area == pytest.approx(circle.area, rel=0.04)
    assert len(outlines[0].exterior.coords) < len(circle.exterior.coords)


def test_courtyards_are_kept() -> None:
    block = Polygon(box(0, 0, 60, 40).exterior, [box(20, 10, 40, 30).exterior.coords])
    outlines, regular = regularize(np.array([block], dtype=object), 0.85, 1.0)
    assert regular[0] and len(outlines[0].interiors) == 1
    assert outlines[0].area == pytest.approx(block.area, rel=0.01)
