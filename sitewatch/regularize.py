"""Right-angled building outlines from traced raster outlines, at any orientation and pixel size.

A raster outline traced on its pixel grid only has edges along the grid: a building at an angle
to it comes out as a staircase whose steps are one pixel high. Reading the building's direction
from those edges gives the grid's direction, and the "regularized" outline is a staircase again
(issue 32). Here the direction is read from what the building is, at the scale of its pixels:

1. candidate directions: the long side of the minimum rotated rectangle, and the dominant edge
   direction of the outline simplified with a tolerance of about one pixel (``step_m``), where the
   steps are gone and the building's own edges remain (plus the traced outline's direction, right
   for buildings along the grid);
2. for each direction the outline is rotated into that frame, simplified at the step size, its
   edges classed along / across, runs of one class collapsed to their length-weighted line, runs
   shorter than two steps folded into their neighbours, and corners put where consecutive lines
   cross: rectangles, L, T and U shapes, whatever the angle;
3. the minimum rotated rectangle is a candidate too. Of the candidates within ``IOU_SLACK`` of the
   best IoU with the traced outline, the one with the fewest corners wins, if it reaches
   ``min_iou``; otherwise the outline is only simplified at the step size (no staircase either);
4. a building only a few steps across does not show its direction; where its neighbours agree on
   one, it takes theirs if that fits about as well (houses along one street).

All lengths are metres in a metric CRS (the footprints' local UTM zone).
"""

from __future__ import annotations

import numpy as np
import shapely
from shapely import affinity
from shapely.geometry import Polygon

#: Candidates this close (IoU) to the best one compete on their number of corners.
IOU_SLACK = 0.015
#: Runs of edges shorter than this many steps (pixels) are folded into their neighbours.
MIN_RUN_STEPS = 2.0
#: Buildings at least this many steps across show their own direction; smaller ones may take the
#: direction of such a neighbour within NEIGHBOUR_STEPS steps.
ANCHOR_STEPS = 8.0
NEIGHBOUR_STEPS = 15.0
#: A building a few steps across is traced with rounded corners (the probability is blurred over a
#: pixel): its rectangle is accepted at this much lower IoU with the trace. Chosen on the footprint-
#: quality bench's fAIr RAMP and xBD Joplin rows at 2 and 3 m (0, 0.05 and 0.1 tried; docs/BENCHMARKS.md).
SMALL_IOU_EASING = 0.05
#: How much the neighbours must agree (length of their mean direction vector, 0-1) to be followed.
MIN_AGREEMENT = 0.7


def step_size_m(pixel_m: float | None, simplify_m: float) -> float:
    """The outline's step (m): the traced raster's pixel, at least twice the simplification."""
    return max(2.0 * simplify_m, 1.25 * (pixel_m or 0.0))


def dominant_angle(coords: np.ndarray) -> float:
    """Length-weighted mean edge direction of a closed ring (radians, 0..π/2, 90°-periodic)."""
    edges = np.diff(coords, axis=0)
    lengths = np.hypot(edges[:, 0], edges[:, 1])
    angles = np.arctan2(edges[:, 1], edges[:, 0])
    real, imag = (lengths * np.cos(4 * angles)).sum(), (lengths * np.sin(4 * angles)).sum()
    return float(np.mod(np.arctan2(imag, real) / 4, np.pi / 2))


def envelope_angle(polygon: Polygon) -> float:
    """Direction (radians, 0..π/2) of the sides of the polygon's minimum rotated rectangle."""
    corners = np.asarray(shapely.oriented_envelope(polygon).exterior.coords)
    if len(corners) < 3:
        return 0.0
    side = corners[1] - corners[0]
    return float(np.mod(np.arctan2(side[1], side[0]), np.pi / 2))


def candidate_angles(polygon: Polygon, step_m: float) -> list[float]:
    """Distinct directions (radians) worth trying for one polygon, best guesses first."""
    simplified = shapely.simplify(polygon.exterior, step_m, preserve_topology=False)
    angles = [envelope_angle(polygon), dominant_angle(np.asarray(polygon.exterior.coords))]
    if shapely.get_num_coordinates(simplified) >= 4:
        angles.insert(1, dominant_angle(np.asarray(simplified.coords)))
    distinct: list[float] = []
    for angle in angles:
        if all(abs((angle - seen + np.pi / 4) % (np.pi / 2) - np.pi / 4) > np.radians(1) for seen in distinct):
            distinct.append(angle)
    return distinct


def _runs(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of consecutive along (True) / across edges of a ring in its own frame (no closing point).

    Returns per run: whether it runs along x, its length-weighted level (y for along, x for across)
    and its extent along its own axis (m).
    """
    following = np.roll(points, -1, axis=0)
    dx, dy = following[:, 0] - points[:, 0], following[:, 1] - points[:, 1]
    along = np.abs(dx) >= np.abs(dy)
    first = int(np.argmax(along != np.roll(along, 1))) if (along != np.roll(along, 1)).any() else 0
    order = np.roll(np.arange(len(points)), -first)
    along, dx, dy = along[order], dx[order], dy[order]
    offset = np.where(along, (points[order, 1] + following[order, 1]) / 2,
                      (points[order, 0] + following[order, 0]) / 2)
    length = np.hypot(dx, dy)
    run = np.cumsum(np.concatenate([[0], along[1:] != along[:-1]]))
    count = int(run[-1]) + 1
    weight = np.bincount(run, length, count)
    level = np.bincount(run, length * offset, count) / np.maximum(weight, 1e-12)
    extent = np.abs(np.bincount(run, np.where(along, dx, dy), count))
    kind = np.zeros(count, bool)
    kind[run] = along
    return kind, level, extent


def _fold_short_runs(kind: list[bool], level: list[float], extent: list[float], min_run: float) -> int:
    """Fold the shortest run below ``min_run`` into its neighbours until none is left; return runs."""
    while len(kind) > 4:
        shortest = int(np.argmin(extent))
        if extent[shortest] >= min_run:
            break
        count = len(kind)
        before, after = (shortest - 1) % count, (shortest + 1) % count
        total = extent[before] + extent[after]
        merged = (level[before] * extent[before] + level[after] * extent[after]) / max(total, 1e-12)
        level[before], extent[before] = merged, total
        for index in sorted({shortest, after}, reverse=True):
            del kind[index], level[index], extent[index]
    return len(kind)


def _corners(kind: list[bool], level: list[float]) -> np.ndarray:
    """Corner i ends run i: where its line crosses the next run's line (local frame)."""
    count = len(kind)
    return np.array([(level[(i + 1) % count], level[i]) if kind[i] else (level[i], level[(i + 1) % count])
                     for i in range(count)])


def _fit_levels(outline: np.ndarray, kind: list[bool], level: list[float]) -> list[float]:
    """Each run's line moved to the mean of the outline points nearest to it (local frame).

    ``outline``: the traced outline's points, densified; the simplified edges that first set
    the lines cut the corners of the steps, the points themselves do not. Points near a corner
    (outside the middle 70 % of their edge) are left out: they may belong to either edge.
    """
    corners = _corners(kind, level)
    starts = np.roll(corners, 1, axis=0)  # run i runs from corner i-1 to corner i
    segment = corners - starts
    span = np.maximum((segment ** 2).sum(axis=1), 1e-12)
    relative = outline[:, None, :] - starts[None, :, :]
    along = np.clip((relative * segment[None]).sum(axis=2) / span[None], 0.0, 1.0)
    gap = relative - along[..., None] * segment[None]
    owner = np.argmin((gap ** 2).sum(axis=2), axis=1)
    position = along[np.arange(len(outline)), owner]
    inner = (position > 0.15) & (position < 0.85)
    count = len(kind)
    offset = np.where(np.asarray(kind)[owner], outline[:, 1], outline[:, 0])
    weight = np.bincount(owner[inner], minlength=count)
    total = np.bincount(owner[inner], offset[inner], minlength=count)
    return [total[run] / weight[run] if weight[run] >= 3 else level[run] for run in range(count)]


def rectilinear(polygon: Polygon, angle: float, step_m: float) -> Polygon | None:
    """Right-angled outline of ``polygon`` with edges along ``angle`` and ``angle`` + 90°, or None.

    None where the outline does not alternate into at least four runs along the two directions,
    or the result is not a valid polygon.
    """
    coords = np.asarray(polygon.exterior.coords)
    centre = coords[:-1].mean(axis=0)
    cos, sin = np.cos(angle), np.sin(angle)
    local_ring = shapely.LinearRing((coords - centre) @ np.array([[cos, -sin], [sin, cos]]))
    simplified = shapely.simplify(local_ring, step_m, preserve_topology=False)
    points = np.asarray(simplified.coords)[:-1] if not simplified.is_empty else np.empty((0, 2))
    if len(points) < 4:
        return None
    kind_array, level_array, extent_array = _runs(points)
    kind, level, extent = list(kind_array), list(level_array), list(extent_array)
    count = _fold_short_runs(kind, level, extent, MIN_RUN_STEPS * step_m)
    if count < 4 or count % 2 or any(kind[i] == kind[(i + 1) % count] for i in range(count)):
        return None
    outline = shapely.get_coordinates(shapely.segmentize(local_ring, step_m / 2))
    level = _fit_levels(outline, kind, level)
    world = _corners(kind, level) @ np.array([[cos, sin], [-sin, cos]]) + centre
    result = Polygon(world)
    return result if result.is_valid and result.area > 0 else None


def _iou(a: Polygon, b: Polygon) -> float:
    inter = a.intersection(b).area
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def _with_courtyards(shape: Polygon, traced: Polygon) -> Polygon:
    holes = [ring for ring in traced.interiors if shape.contains(Polygon(ring))]
    return Polygon(shape.exterior, holes) if holes else shape


def _box_along(polygon: Polygon, angle: float) -> Polygon:
    """The smallest rectangle with sides along ``angle`` and ``angle`` + 90° around the polygon."""
    degrees = np.degrees(angle)
    centre = polygon.centroid
    return affinity.rotate(affinity.rotate(polygon, -degrees, origin=centre).envelope, degrees, origin=centre)


def regularize_one(polygon: Polygon, min_iou: float, step_m: float,
                   extra_angles: tuple[float, ...] = ()) -> tuple[Polygon, bool, float]:
    """The right-angled outline of one polygon, or its simplified outline; whether regularized; its IoU.

    ``extra_angles``: directions to try first (a neighbour's), preferred among close candidates.
    """
    filled = Polygon(polygon.exterior)  # courtyards are put back below
    envelope = shapely.oriented_envelope(polygon)
    if not extra_angles and (fit := _iou(envelope, filled)) >= 1.0 - IOU_SLACK:
        return _with_courtyards(envelope, polygon), True, fit  # no outline can beat a rectangle this close
    extra = [shape for angle in extra_angles
             for shape in (rectilinear(polygon, angle, step_m), _box_along(polygon, angle)) if shape is not None]
    own = [shape for angle in candidate_angles(polygon, step_m)
           if (shape := rectilinear(polygon, angle, step_m)) is not None]
    candidates = extra + own + [envelope]
    scores = np.array([_iou(shape, filled) for shape in candidates])
    best = float(scores.max())
    if best < min_iou:
        simplified = shapely.simplify(polygon, step_m / 2, preserve_topology=True)
        return (simplified if simplified.is_valid and not simplified.is_empty else polygon), False, best
    close = [i for i in range(len(candidates)) if scores[i] >= best - IOU_SLACK]
    chosen = min(close, key=lambda i: (i >= len(extra), len(candidates[i].exterior.coords), -scores[i]))
    return _with_courtyards(candidates[chosen], polygon), True, float(scores[chosen])


def _neighbour_angles(outlines: np.ndarray, flags: np.ndarray, step_m: float) -> dict[int, float]:
    """For each small building, the shared direction of the regularized buildings around it.

    A building a few pixels across does not show its own direction (at 3 m a house is a blob of
    nine pixels), but buildings along one street share it: the area-weighted mean direction (on
    the 90°-periodic circle) of the others within ``NEIGHBOUR_STEPS`` steps.
    """
    areas = shapely.area(outlines)
    small = np.nonzero(areas < (ANCHOR_STEPS * step_m) ** 2)[0]
    regular = np.nonzero(flags)[0]
    if small.size == 0 or regular.size < 2:
        return {}
    angles = np.array([envelope_angle(outline) for outline in outlines[regular]])
    tree = shapely.STRtree(outlines[regular])
    mine, theirs = tree.query(outlines[small], predicate="dwithin", distance=NEIGHBOUR_STEPS * step_m)
    other = regular[theirs] != small[mine]
    mine, theirs = mine[other], theirs[other]
    weight = areas[regular[theirs]]
    real = np.bincount(mine, weight * np.cos(4 * angles[theirs]), len(small))
    imag = np.bincount(mine, weight * np.sin(4 * angles[theirs]), len(small))
    agreement = np.hypot(real, imag) / np.maximum(np.bincount(mine, weight, len(small)), 1e-12)
    shared = np.mod(np.arctan2(imag, real) / 4, np.pi / 2)
    return {int(small[i]): float(shared[i]) for i in np.nonzero(agreement >= MIN_AGREEMENT)[0]}


def regularize(polygons: np.ndarray, min_iou: float, step_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Right-angled outlines of many polygons (metric CRS); see the module docstring.

    Small buildings (under ``ANCHOR_STEPS`` steps across) take the direction their regularized
    neighbours share where that fits them about as well as their own (within ``IOU_SLACK``).

    Args:
        polygons: traced outlines (shapely Polygons), metres.
        min_iou: least IoU with the traced outline for a right-angled outline to replace it.
        step_m: the outline's step (m), about the traced raster's pixel (:func:`step_size_m`).

    Returns:
        ``(outlines, regularized flags)``.
    """
    out = np.empty(len(polygons), dtype=object)
    flags = np.zeros(len(polygons), bool)
    scores = np.zeros(len(polygons))
    needed = np.where(shapely.area(polygons) < (ANCHOR_STEPS * step_m) ** 2, min_iou - SMALL_IOU_EASING, min_iou)
    for index, polygon in enumerate(polygons):
        out[index], flags[index], scores[index] = regularize_one(polygon, needed[index], step_m)
    for index, angle in _neighbour_angles(out, flags, step_m).items():
        shape, regular, score = regularize_one(polygons[index], needed[index], step_m, (angle,))
        if regular and score >= scores[index] - IOU_SLACK:
            out[index], flags[index] = shape, True
    return out, flags
