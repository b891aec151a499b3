"""How well footprint outlines match reference outlines: the measures of the building-polygon papers.

For matched pairs (predicted, reference) of polygons in one metric CRS (metres):

* polygon IoU;
* vertex counts (exterior ring, closing vertex not counted) and their difference;
* PoLiS (Avbelj et al., 2015): the mean distance of each outline's vertices to the other
  outline, averaged over both directions, in metres;
* max tangent angle error (Girard et al., frame-field learning, 2021): along the predicted
  outline, sampled every ``spacing_m``, the angle between its direction and the reference
  outline's direction at the nearest point; the largest over the outline, in degrees (0-90),
  samples within a metre of a corner of either outline left out (a corner has no direction).

:func:`outline_quality` matches two layers (IoU >= 0.5, one to one) and averages the measures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import shapely
from shapely.geometry import Polygon

from sitewatch.evaluate import match_polygons


def vertex_count(polygon: Polygon) -> int:
    """Exterior vertices of a polygon, the closing one not counted."""
    return len(polygon.exterior.coords) - 1


def polis_m(a: Polygon, b: Polygon) -> float:
    """PoLiS distance (m) between two polygons' exterior outlines."""
    ring_a, ring_b = a.exterior, b.exterior
    points_a = shapely.points(np.asarray(ring_a.coords)[:-1])
    points_b = shapely.points(np.asarray(ring_b.coords)[:-1])
    return float(shapely.distance(points_a, ring_b).mean() / 2 + shapely.distance(points_b, ring_a).mean() / 2)


def _directions(ring: shapely.LinearRing, distances: np.ndarray) -> np.ndarray:
    """Direction (radians) of the ring's edge at each distance along it."""
    coords = np.asarray(ring.coords)
    edges = np.diff(coords, axis=0)
    ends = np.cumsum(np.hypot(edges[:, 0], edges[:, 1]))
    edge = np.minimum(np.searchsorted(ends, distances, side="right"), len(edges) - 1)
    return np.arctan2(edges[edge, 1], edges[edge, 0])


def max_tangent_angle_error_deg(predicted: Polygon, reference: Polygon, spacing_m: float = 0.5,
                                corner_margin_m: float = 1.0) -> float:
    """Largest angle (degrees, 0-90) between the predicted outline and the reference's nearest edge.

    Sampled every ``spacing_m`` along the predicted outline; samples within ``corner_margin_m`` of a
    corner of either outline are left out, where the direction is undefined.
    """
    ring_p, ring_r = predicted.exterior, reference.exterior
    along = np.arange(spacing_m / 2, ring_p.length, spacing_m)
    samples = shapely.line_interpolate_point(ring_p, along)
    nearest_along = np.asarray(shapely.line_locate_point(ring_r, samples))
    nearest = shapely.line_interpolate_point(ring_r, nearest_along)
    corners_p = shapely.multipoints(np.asarray(ring_p.coords))
    corners_r = shapely.multipoints(np.asarray(ring_r.coords))
    keep = (shapely.distance(samples, corners_p) > corner_margin_m) & \
        (shapely.distance(nearest, corners_r) > corner_margin_m)
    if not keep.any():
        return 0.0
    difference = np.abs(_directions(ring_p, along[keep]) - _directions(ring_r, nearest_along[keep]))
    difference = np.mod(difference, np.pi)
    return float(np.degrees(np.minimum(difference, np.pi - difference)).max())


@dataclass(frozen=True)
class OutlineQuality:
    """Averages over matched outlines (IoU >= 0.5) of two layers; lengths in metres, angles in degrees."""

    reference: int
    predicted: int
    matched: int
    f1: float
    mean_iou: float
    mean_vertices: float
    mean_reference_vertices: float
    mean_abs_vertex_difference: float
    mean_polis_m: float
    mean_max_tangent_error_deg: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def outline_quality(predicted: list[Polygon], reference: list[Polygon], spacing_m: float = 0.5) -> OutlineQuality:
    """Match ``predicted`` to ``reference`` (same metric CRS) and average the outline measures."""
    scores = match_polygons(predicted, reference)
    pairs = [(predicted[p], reference[r], iou) for p, r, iou in scores.matches]
    if not pairs:
        return OutlineQuality(len(reference), len(predicted), 0, scores.f1, *(float("nan"),) * 6)
    vertices = np.array([(vertex_count(p), vertex_count(r)) for p, r, _ in pairs], float)
    return OutlineQuality(
        reference=len(reference), predicted=len(predicted), matched=len(pairs), f1=scores.f1,
        mean_iou=float(np.mean([iou for _, _, iou in pairs])),
        mean_vertices=float(vertices[:, 0].mean()), mean_reference_vertices=float(vertices[:, 1].mean()),
        mean_abs_vertex_difference=float(np.abs(vertices[:, 0] - vertices[:, 1]).mean()),
        mean_polis_m=float(np.mean([polis_m(p, r) for p, r, _ in pairs])),
        mean_max_tangent_error_deg=float(np.mean([max_tangent_angle_error_deg(p, r, spacing_m)
                                                  for p, r, _ in pairs])))
