"""Masks to clean, georeferenced building footprints with metric attributes.

The mask is read in strips of rows. In each strip, touching buildings are split by a
watershed on the distance transform (weighted by the probability where given) and every
region is traced exactly with ``rasterio.features.shapes``. Regions cut by a strip border are
merged again (an R-tree over the border-touching polygons, union of connected components), so
no building is split at a seam. Then, in the local UTM zone (metres, whatever the input CRS):
specks below ``min_area_m2`` are dropped, holes below ``max_hole_m2`` filled, outlines
simplified (``simplify_m``) and rectilinear buildings regularized to right angles along their
dominant orientation, unless that departs from the traced shape (IoU below
``regularize_min_iou``). Attributes are measured in the same UTM zone.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import geopandas as gpd
import numpy as np
import pyogrio
import rasterio
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from rasterio.features import geometry_mask, shapes
from rasterio.windows import Window
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from shapely.geometry import Polygon
from skimage.segmentation import watershed

from sitewatch.errors import SitewatchError
from sitewatch.files import atomic_path
from sitewatch.products import DEFAULT_THRESHOLD, MASK_NODATA, PRODUCT_TAG, decode_probability
from sitewatch.raster import open_raster, overview_shape, pixel_size_xy_m
from sitewatch.regularize import regularize, step_size_m

#: The footprint layer's attribute columns, in order (all float64 but ``building_id``).
ATTRIBUTES = ["building_id", "area_m2", "perimeter_m", "length_m", "width_m", "orientation_deg",
              "elongation", "rectangularity", "mean_probability", "regularized"]


@dataclass(frozen=True)
class FootprintOptions:
    """Post-processing settings; lengths in metres, areas in square metres."""

    min_area_m2: float = 10.0
    max_hole_m2: float = 10.0
    simplify_m: float = 0.5
    split_touching: bool = True
    split_depth_m: float = 1.0
    regularize: bool = True
    regularize_min_iou: float = 0.85
    threshold: float = DEFAULT_THRESHOLD
    strip_rows: int = 2048
    # outlines of coarse rasters (pixels of at least subpixel_from_m) are traced on a grid about
    # subpixel_target_m fine, the probability interpolated bilinearly between pixel centres: a hall
    # at an angle to a 3-4 m grid is traced as its straight edges, not as a staircase of pixels
    subpixel_from_m: float = 2.0
    subpixel_target_m: float = 1.0
    # a building of at least roof_core_min_m2 is cut back to its roof: the pixels of probability >=
    # roof_core_p grown again by roof_core_grow_m within it, so paving, yards and car parks the network
    # scored lower than the roof leave the outline (chosen leave-one-source-out: bench/roof_trim.py), on
    # rasters of pixels up to roof_core_max_pixel_m (at 2-3 m it cost Dubai, Inria and Shanghai pixel IoU)
    roof_core_p: float | None = 0.9
    roof_core_grow_m: float = 1.0
    roof_core_min_m2: float = 2000.0
    roof_core_max_pixel_m: float = 1.0


# --- per-strip tracing ---------------------------------------------------------------------------

def split_regions(mask: np.ndarray, probability: np.ndarray | None, pixel_m: float,
                  split_depth_m: float, min_split_area_m2: float = 40.0,
                  max_solidity: float = 0.97, relative_depth: float = 0.4) -> np.ndarray:
    """Label image of building regions; touching buildings separated by a watershed.

    Only regions that could hold two buildings are examined: at least ``min_split_area_m2``
    and not convex (pixel area / convex hull area below ``max_solidity``). Their markers are
    the distance-transform maxima standing ``split_depth_m`` (and ``relative_depth`` of the
    region's largest inner distance) above the saddle between them: a neck clearly narrower
    than the buildings either side. The watershed floods the negative distance, weighted by
    the probability when given.
    """
    components, count = ndimage.label(mask)
    components = components.astype(np.int32)
    if count == 0:
        return components
    pixel_area = pixel_m * pixel_m
    next_label = count + 1
    for index, window in enumerate(ndimage.find_objects(components), start=1):
        region = components[window] == index
        area = int(region.sum())
        if area * pixel_area < min_split_area_m2 or area / _convex_area(region) > max_solidity:
            continue
        distance = _inner_distance(region) * pixel_m
        # a neck must be markedly narrower than the region's widest part to count as a split
        depth = max(split_depth_m, pixel_m, relative_depth * float(distance.max()))
        markers, found = significant_maxima(distance, depth)
        if found < 2:
            continue
        elevation = -distance
        if probability is not None:
            elevation = -(distance * np.clip(probability[window], 0.05, 1.0))
        parts = watershed(elevation, markers, mask=region)
        view = components[window]
        view[region] = np.where(parts[region] == 1, index, parts[region] + next_label - 2)
        next_label += found - 1
    return components


def _inner_distance(region: np.ndarray) -> np.ndarray:
    """Euclidean distance (pixels) of each region pixel to the nearest pixel outside it,
    counting everything beyond the window's edge as outside (OpenCV's exact L2 transform)."""
    padded = np.zeros((region.shape[0] + 2, region.shape[1] + 2), np.uint8)
    padded[1:-1, 1:-1] = region
    return cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]


def reconstruct_by_dilation(seed: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Grey-scale reconstruction by dilation of ``seed`` under ``mask`` (8-connected).

    Iterated geodesic dilation with OpenCV; on the small per-building windows used here this
    converges in about as many steps as the building is wide, far faster than a global sort.
    """
    kernel = np.ones((3, 3), np.uint8)
    current = np.minimum(seed, mask).astype(np.float32)
    limit = mask.astype(np.float32)
    while True:
        before = current
        for _ in range(4):  # test for stability every few steps: once stable, steps change nothing
            current = cv2.min(cv2.dilate(current, kernel), limit)
        if not (current > before).any():  # dilation never lowers a value: stable when none rose
            return current


def significant_maxima(height: np.ndarray, depth: float) -> tuple[np.ndarray, int]:
    """Label the maxima that stand at least ``depth`` above the saddle to any higher ground.

    Uses the h-dome transform (``height`` minus its reconstruction by dilation from
    ``height - depth``): each dome is one connected region however flat or rippled its top,
    so a pixelated ridge with several equal highest pixels still gives one marker.
    """
    dome = height - reconstruct_by_dilation(height - depth, height)
    labels, count = ndimage.label(dome > 1e-6)
    if count == 0:
        return labels, 0
    # a dome counts when any of its pixels reaches ``depth``; renumber the kept ones 1..k
    keep = np.zeros(count + 1, bool)
    keep[labels[dome >= depth * (1 - 1e-6)]] = True
    keep[0] = False
    renumber = np.cumsum(keep) * keep
    return renumber[labels].astype(labels.dtype), int(keep.sum())


def _convex_area(region: np.ndarray) -> float:
    """Area in pixels of the convex hull of a binary region (pixel squares included)."""
    contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    points = np.vstack(contours).reshape(-1, 2)
    hull = cv2.convexHull(points)
    # contour runs through pixel centres: add half a pixel around the hull (perimeter / 2 + 1)
    return max(float(cv2.contourArea(hull) + cv2.arcLength(hull, True) / 2 + 1), 1.0)


@dataclass
class _Piece:
    geometry: Polygon
    probability_sum: float
    pixels: int
    touches_top: bool
    touches_bottom: bool


def _trace_strip(labels: np.ndarray, probability: np.ndarray | None, transform: Affine,
                 first: bool, last: bool) -> list[_Piece]:
    """Exact polygons of a label strip (pixel edges), with probability sums per region."""
    if labels.max() == 0:
        return []
    flat = labels.ravel()
    pixels = np.bincount(flat)
    sums = np.bincount(flat, probability.ravel()) if probability is not None else pixels
    top = set(np.unique(labels[0])) if not first else set()
    bottom = set(np.unique(labels[-1])) if not last else set()
    values, geometries = _polygons_of_labels(labels, transform)
    pieces: dict[int, list[Polygon]] = {}
    for value, geometry in zip(values, geometries, strict=True):
        pieces.setdefault(value, []).append(geometry)
    out = []
    for value, parts in pieces.items():
        geometry = parts[0] if len(parts) == 1 else shapely.unary_union(parts)
        out.append(_Piece(geometry, float(sums[value]), int(pixels[value]), value in top, value in bottom))
    return out


def _polygons_of_labels(labels: np.ndarray, transform: Affine) -> tuple[list[int], np.ndarray]:
    """Polygons (pixel edges, 4-connected) of every labelled region, with their label values.

    ``rasterio.features.shapes`` traces the outlines; all rings are then built with one
    vectorized shapely call from their concatenated coordinates (constructing polygons one by
    one from GeoJSON costs more than the tracing itself).
    """
    values: list[int] = []
    rings: list[list] = []
    ring_counts: list[int] = []
    for geometry, value in shapes(labels, mask=labels > 0, connectivity=4, transform=transform):
        values.append(int(value))
        rings += geometry["coordinates"]
        ring_counts.append(len(geometry["coordinates"]))
    if not values:
        return values, np.empty(0, dtype=object)
    coords = np.fromiter(itertools.chain.from_iterable(itertools.chain.from_iterable(rings)), float)
    owner = np.repeat(np.arange(len(rings)), [len(ring) for ring in rings])
    linear_rings = shapely.linearrings(coords.reshape(-1, 2), indices=owner)
    first = np.concatenate([[0], np.cumsum(ring_counts)[:-1]])
    counts = np.asarray(ring_counts)
    geometries = shapely.polygons(linear_rings[first])
    for i in np.nonzero(counts > 1)[0]:  # shell first, then its holes
        geometries[i] = shapely.polygons(linear_rings[first[i]], linear_rings[first[i] + 1 : first[i] + counts[i]])
    return values, geometries


def connected_groups(count: int, links: list[tuple[int, int]] | np.ndarray) -> list[list[int]]:
    """The connected components of ``count`` items joined by ``links`` (pairs of indexes).

    Groups are ordered by their smallest member, members ascending.
    """
    links = np.asarray(links, dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(links)), (links[:, 0], links[:, 1])), shape=(count, count))
    _, labels = connected_components(graph, directed=False)
    _, first = np.unique(labels, return_index=True)
    return [np.nonzero(labels == labels[i])[0].tolist() for i in sorted(first)]


def _merge_across_seams(pieces: list[_Piece]) -> list[_Piece]:
    """Union the border-touching pieces that share an edge across a strip seam."""
    seam = [i for i, p in enumerate(pieces) if p.touches_top or p.touches_bottom]
    if len(seam) < 2:
        return pieces
    geometries = [pieces[i].geometry for i in seam]
    tree = shapely.STRtree(geometries)
    left, right = tree.query(geometries, predicate="intersects")
    shared_edge = [(a, b) for a, b in zip(left.tolist(), right.tolist(), strict=True)
                   if a != b and shapely.length(shapely.intersection(geometries[a], geometries[b])) > 0]
    groups = connected_groups(len(seam), shared_edge)
    merged = [p for i, p in enumerate(pieces) if i not in set(seam)]
    for members in groups:
        chosen = [pieces[seam[m]] for m in members]
        geometry = chosen[0].geometry if len(chosen) == 1 else shapely.unary_union(
            [c.geometry for c in chosen])
        merged.append(_Piece(geometry, sum(c.probability_sum for c in chosen),
                             sum(c.pixels for c in chosen), False, False))
    return merged


# --- clean-up in metres ------------------------------------------------------------------------------

def fill_small_holes(polygons: np.ndarray, max_hole_m2: float) -> np.ndarray:
    """Drop interior rings smaller than ``max_hole_m2`` (polygons in a metric CRS)."""
    polygons = np.asarray(polygons, dtype=object).copy()
    for i in np.nonzero(shapely.get_num_interior_rings(polygons) > 0)[0]:
        polygon = polygons[i]
        holes = shapely.get_interior_ring(polygon, np.arange(len(polygon.interiors)))
        kept = holes[shapely.area(shapely.polygons(holes)) >= max_hole_m2]
        polygons[i] = shapely.polygons(polygon.exterior, kept)
    return polygons


def measure(geometries: gpd.GeoSeries) -> dict[str, np.ndarray]:
    """Metric attributes of polygons in a metric CRS (areas m², lengths m, angles ° from north)."""
    geoms = geometries.values
    envelope = shapely.oriented_envelope(geoms)
    coords = [np.asarray(e.exterior.coords) if isinstance(e, Polygon) and not e.is_empty else np.zeros((5, 2))
              for e in envelope]
    side_a = np.array([np.hypot(*(c[1] - c[0])) for c in coords])
    side_b = np.array([np.hypot(*(c[2] - c[1])) for c in coords])
    length = np.maximum(side_a, side_b)
    width = np.minimum(side_a, side_b)
    long_vec = [c[1] - c[0] if a >= b else c[2] - c[1] for c, a, b in zip(coords, side_a, side_b, strict=True)]
    orientation = np.array([math.degrees(math.atan2(v[0], v[1])) % 180 for v in long_vec])
    area = shapely.area(geoms)
    return {
        "area_m2": area,
        "perimeter_m": shapely.length(geoms),
        "length_m": length,
        "width_m": width,
        "orientation_deg": orientation,
        "elongation": np.divide(length, width, out=np.zeros_like(length), where=width > 0),
        "rectangularity": np.divide(area, length * width, out=np.zeros_like(area), where=length * width > 0),
    }


def empty_footprints(crs: CRS | None) -> gpd.GeoDataFrame:
    """A footprint layer with the full schema and no rows."""
    columns = {name: np.array([], dtype=np.int64 if name == "building_id" else
                              bool if name == "regularized" else np.float64) for name in ATTRIBUTES}
    return gpd.GeoDataFrame(columns, geometry=gpd.GeoSeries([], crs=crs), crs=crs)


def centroid_lonlat(frame: gpd.GeoDataFrame) -> list[tuple[float, float]]:
    """Each polygon's centroid (taken in the frame's CRS, best a metric one) in EPSG:4326 (lon, lat)
    degrees, rounded to 6 decimals (~0.1 m); NaN without a CRS."""
    if frame.empty or frame.crs is None:
        return [(float("nan"), float("nan"))] * len(frame)
    centres = frame.geometry.centroid.to_crs(4326)
    return [(round(float(p.x), 6), round(float(p.y), 6)) for p in centres]


def utm_crs(crs: CRS | str | int, bounds: tuple[float, float, float, float]) -> CRS:
    """The UTM zone (WGS84, metres) of the ground within ``bounds`` (given in ``crs``).

    pyproj's choice for the area (as geopandas makes it); for a site across the ±180°
    meridian, whose longitudes wrap, the zone and hemisphere of the site's centre point.
    """
    area = gpd.GeoSeries([shapely.box(*bounds)], crs=crs)
    west, _, east, _ = area.to_crs(4326).total_bounds
    if east - west <= 180.0:
        try:
            return area.estimate_utm_crs()
        except RuntimeError:
            pass
    to_lonlat = Transformer.from_crs(area.crs, CRS.from_epsg(4326), always_xy=True)
    lon, lat = to_lonlat.transform((bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2)
    if not (np.isfinite(lon) and np.isfinite(lat)):
        raise SitewatchError(f"cannot place the site on the globe in CRS {area.crs.to_string()}")
    zone = min(int(((lon + 180.0) % 360.0) // 6) + 1, 60)
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def _metric_crs(crs: CRS | None, bounds: tuple[float, float, float, float]) -> CRS | None:
    return None if crs is None else utm_crs(crs, bounds)


# --- the stage ---------------------------------------------------------------------------------

def _strips(height: int, rows: int) -> Iterator[tuple[int, int]]:
    for top in range(0, height, rows):
        yield top, min(height, top + rows)


def vectorize_raster(mask_path: Path, probability_path: Path | None = None,
                     options: FootprintOptions = FootprintOptions(),
                     gsd_m: float | None = None) -> gpd.GeoDataFrame:
    """Footprints of a mask (0/1, nodata 255) or probability raster (uint8 0-255 or float 0-1).

    Args:
        mask_path: a mask, or a probability raster (thresholded at ``options.threshold``).
        probability_path: probabilities for splitting and ``mean_probability`` (optional).
        options: post-processing settings.
        gsd_m: pixel size (m) of a raster without CRS.

    Returns:
        Polygons in the raster's CRS with the :data:`ATTRIBUTES` columns (measured in UTM).
    """
    dataset = open_raster(mask_path)
    prob_dataset = open_raster(probability_path) if probability_path else None
    try:
        if prob_dataset is not None and (prob_dataset.width, prob_dataset.height) != (dataset.width, dataset.height):
            raise SitewatchError(
                f"{probability_path}: probability raster is {prob_dataset.width}×{prob_dataset.height} px, "
                f"the mask {dataset.width}×{dataset.height} px; give the probability of the same grid")
        crs = CRS.from_user_input(dataset.crs) if dataset.crs else None
        if crs is None and gsd_m is None:
            raise SitewatchError(f"{mask_path}: mask has no CRS; give its pixel size in metres", setting="gsd")
        transform = dataset.transform if crs is not None else Affine.scale(gsd_m, -gsd_m)
        dx, dy = pixel_size_xy_m(dataset, gsd_m)
        pixel_m = math.sqrt(dx * dy)
        kind = raster_kind(dataset)
        pieces: list[_Piece] = []
        factor = subpixel_factor(pixel_m, options)
        for top, bottom in _strips(dataset.height, options.strip_rows):
            window = Window(0, top, dataset.width, bottom - top)
            binary, probability, valid = _read_strip(dataset, window, kind, options.threshold)
            if prob_dataset is not None:
                probability = _as_probability(prob_dataset.read(1, window=window), prob_dataset.dtypes[0],
                                              ours=prob_dataset.tags().get(PRODUCT_TAG) == "probability")
            if probability is not None and factor > 1:
                binary, probability = refine_strip(binary, probability, valid, factor, options.threshold)
            fine_m = pixel_m / factor if probability is not None else pixel_m
            binary = drop_specks(binary, options.min_area_m2 / (fine_m * fine_m),
                                 keep_edges=(top > 0, bottom < dataset.height))
            if probability is not None and options.roof_core_p is not None and pixel_m <= options.roof_core_max_pixel_m:
                binary = cut_to_roof_cores(binary, probability, fine_m, options)
            labels = (split_regions(binary, probability, fine_m, options.split_depth_m)
                      if options.split_touching else ndimage.label(binary)[0].astype(np.int32))
            strip_transform = transform @ Affine.translation(0, top)
            if probability is not None and factor > 1:
                strip_transform = strip_transform @ Affine.scale(1 / factor)
            pieces += _trace_strip(labels, probability, strip_transform, top == 0,
                                   bottom == dataset.height)
        pieces = _merge_across_seams(pieces)
    except rasterio.errors.RasterioIOError as error:
        raise SitewatchError(f"{mask_path}: read failed, file corrupt or truncated ({error})") from None
    finally:
        dataset.close()
        if prob_dataset is not None:
            prob_dataset.close()
    return clean_footprints(pieces, crs, options,
                            have_probability=kind in ("probability", "sitewatch") or prob_dataset is not None,
                            pixel_m=pixel_m)


#: A building whose roof core is less than this share of it keeps its outline: no roof to trust.
MIN_CORE_SHARE = 0.2


def cut_to_roof_cores(binary: np.ndarray, probability: np.ndarray, pixel_m: float,
                      options: FootprintOptions, rim_m: float = 0.0) -> np.ndarray:
    """``binary`` with every building of at least ``options.roof_core_min_m2`` cut back to its roof core.

    The core is the building's pixels of probability ``>= options.roof_core_p``, grown again by
    ``options.roof_core_grow_m`` or ``rim_m`` (metres, the raster's own pixel: a coarse raster's soft rim is a
    pixel wide), whichever is more, geodesically within the building, so the soft rim of every roof comes back
    while paving, yards and car parks the network scored lower than the roof stay out. ``pixel_m``: the grid
    of ``binary`` (finer than the raster's where outlines are traced sub-pixel). A building whose core is under
    :data:`MIN_CORE_SHARE` of it keeps its outline.
    """
    out = binary.copy()
    labels, _ = ndimage.label(binary, structure=np.ones((3, 3), bool))
    steps = max(1, round(max(options.roof_core_grow_m, rim_m) / pixel_m))
    kernel = np.ones((3, 3), np.uint8)
    for index, window in enumerate(ndimage.find_objects(labels), start=1):
        building = labels[window] == index
        if building.sum() * pixel_m * pixel_m < options.roof_core_min_m2:
            continue
        core = (building & (probability[window] >= options.roof_core_p)).astype(np.uint8)
        if core.sum() < MIN_CORE_SHARE * building.sum():
            continue
        for _ in range(steps):
            core = cv2.dilate(core, kernel) & building.astype(np.uint8)
        out[window][building & (core == 0)] = False
    return out


def subpixel_factor(pixel_m: float, options: FootprintOptions) -> int:
    """How many times finer than its pixels a raster's outlines are traced (1: on its own grid)."""
    if pixel_m < options.subpixel_from_m:
        return 1
    return max(1, min(4, round(pixel_m / options.subpixel_target_m)))


def refine_strip(binary: np.ndarray, probability: np.ndarray, valid: np.ndarray, factor: int,
                 threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """A strip on a grid ``factor`` times finer: the probability interpolated bilinearly between pixel
    centres (cv2's half-pixel alignment) and thresholded again; ground not observed stays not observed
    (nearest), and nothing is traced outside what the coarse mask called building by more than half a pixel."""
    height, width = binary.shape
    size = (width * factor, height * factor)
    fine = cv2.resize(probability.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
    near = cv2.resize(binary.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    seen = cv2.resize(valid.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    grown = cv2.dilate(near, np.ones((factor + 1, factor + 1), np.uint8)).astype(bool)
    return (fine > threshold) & seen & grown, fine


def _read_strip(dataset: rasterio.DatasetReader, window: Window, kind: str,
                threshold: float) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``(building pixels on valid ground, probability or None, valid ground)`` of one strip of a mask or
    probability raster."""
    values = dataset.read(1, window=window)
    probability = None
    if kind in ("probability", "sitewatch"):
        probability = _as_probability(values, dataset.dtypes[0], ours=kind == "sitewatch")
        binary, valid = probability > threshold, dataset.read_masks(1, window=window) > 0
    elif kind == "mask255":
        binary, valid = values == MASK_NODATA, dataset.read_masks(1, window=window) > 0
    else:
        valid = values != MASK_NODATA
        if dataset.nodata is not None:
            valid &= values != dataset.nodata
        binary = (values == 1) & valid
    return binary & valid, probability, valid


def drop_specks(binary: np.ndarray, min_pixels: float, keep_edges: tuple[bool, bool]) -> np.ndarray:
    """Remove connected regions smaller than ``min_pixels``, except those touching a strip
    seam (top/bottom flags), which may be part of a larger building in the next strip."""
    labels, count = ndimage.label(binary)
    if count == 0 or min_pixels <= 1:
        return binary
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    small = sizes < min_pixels
    small[0] = False
    for on_edge, row in zip(keep_edges, (labels[0], labels[-1]), strict=True):
        if on_edge:
            small[np.unique(row)] = False
    return binary & ~small[labels]


def raster_kind(dataset: rasterio.DatasetReader) -> str:
    """How a raster encodes buildings: ``"mask"`` (0/1, nodata 255), ``"mask255"`` (0/255
    without a nodata of 255, as many label files are), ``"sitewatch"`` (our ``probability.tif``:
    0-254, nodata 255, tagged) or ``"probability"`` (anything else: uint8 0-255 or float 0-1)."""
    if dataset.tags().get(PRODUCT_TAG) == "probability":
        return "sitewatch"
    dtype = np.dtype(dataset.dtypes[0])
    if np.issubdtype(dtype, np.floating):
        return "probability"
    if dtype != np.uint8:
        raise SitewatchError(f"{dataset.name}: expected a uint8 mask or a probability raster, got {dtype}")
    sample = dataset.read(1, out_shape=overview_shape(dataset, 1024))
    values = np.unique(sample)
    if np.all(np.isin(values, [0, MASK_NODATA])) and MASK_NODATA in values and dataset.nodata != MASK_NODATA:
        return "mask255"
    if np.all(np.isin(values, [0, 1, MASK_NODATA])):
        return "mask"
    if dataset.nodata == MASK_NODATA and values.max() > 1:
        raise SitewatchError(f"{dataset.name}: not a binary mask (values {values[:8].tolist()}...)")
    return "probability"


def _as_probability(values: np.ndarray, dtype: str, ours: bool = False) -> np.ndarray:
    """Probabilities (0-1) of a probability raster's values: ours decoded (:mod:`sitewatch.products`),
    another uint8 raster as 0-255, float as is."""
    if ours:
        return decode_probability(values)
    if np.dtype(dtype) == np.uint8:
        return values.astype(np.float32) / 255.0
    values = values.astype(np.float32)
    if np.nanmax(values) > 1.0 or np.nanmin(values) < 0.0:
        raise SitewatchError("probability raster values must lie in 0..1 (float) or 0..255 (uint8)")
    return np.nan_to_num(values)


def clean_footprints(pieces: list[_Piece], crs: CRS | None, options: FootprintOptions,
                     have_probability: bool = True, pixel_m: float | None = None) -> gpd.GeoDataFrame:
    """Filter, fill, simplify, regularize and measure traced pieces; return the layer.

    ``pixel_m``: the traced raster's pixel (m), the size of the steps its outlines have.
    """
    if not pieces:
        return empty_footprints(crs)
    frame = gpd.GeoDataFrame(
        {"mean_probability": [p.probability_sum / max(p.pixels, 1) for p in pieces]},
        geometry=[p.geometry for p in pieces], crs=crs)
    if not have_probability:
        frame["mean_probability"] = np.nan
    metric_crs = _metric_crs(crs, tuple(frame.total_bounds))
    metric = frame.to_crs(metric_crs) if metric_crs is not None else frame
    metric = metric[metric.geometry.area >= options.min_area_m2]
    if metric.empty:
        return empty_footprints(crs)
    largest = [g if isinstance(g, Polygon) else max(g.geoms, key=lambda part: part.area)
               for g in metric.geometry.values]
    filled = fill_small_holes(np.array(largest, dtype=object), options.max_hole_m2)
    if options.regularize:
        cleaned, regular = regularize(filled, options.regularize_min_iou,
                                      step_size_m(pixel_m, options.simplify_m))
    else:
        cleaned = shapely.simplify(filled, options.simplify_m, preserve_topology=True) \
            if options.simplify_m > 0 else filled
        regular = np.zeros(len(filled), bool)
    metric = metric.set_geometry(gpd.GeoSeries(cleaned, index=metric.index, crs=metric_crs))
    metric["regularized"] = regular
    metric = metric[metric.geometry.is_valid & ~metric.geometry.is_empty]
    attributes = measure(metric.geometry)
    order = np.lexsort((metric.geometry.centroid.x.values, -metric.geometry.centroid.y.values))
    out = gpd.GeoDataFrame(
        {"building_id": np.arange(1, len(metric) + 1),
         **{k: np.round(v[order], 3) for k, v in attributes.items()},
         "mean_probability": np.round(metric["mean_probability"].values[order], 4),
         "regularized": metric["regularized"].values[order]},
        geometry=metric.geometry.values[order], crs=metric_crs)
    return out.to_crs(crs) if metric_crs is not None else out


#: Probability levels at which a footprint's roof is cut into blocks (:func:`roof_blocks`).
BLOCK_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9)


def roof_blocks(frame: gpd.GeoDataFrame, probability_path: Path, min_part_m2: float, min_area_m2: float) -> np.ndarray:
    """Per footprint, how many blocks of similar size its roof holds, parted by probability valleys.

    Touching blocks (a row of apartment slabs, a merged block of village houses) are often traced
    as one footprint: the mask has no neck between them, but the model's probability dips along
    each party wall or gap, if not always across the whole roof. Inside the footprint (in the
    raster grid's CRS, the probability's), the probability lightly smoothed (0.5 px) is cut at
    each of :data:`BLOCK_LEVELS`; the 8-connected parts of what stands above a level, opened by one
    pixel (thin bridges gone), of at least ``min_part_m2`` and at least half the largest part's
    area are blocks; the footprint holds the most blocks found at any level. A hall's roof is
    uniform: one block at every level. Footprints under ``min_area_m2`` are not examined: 1.
    Areas in m² from the raster's pixel size.

    Returns:
        int array, one per footprint (1: one roof).
    """
    blocks = np.ones(len(frame), np.int64)
    if frame.empty:
        return blocks
    with open_raster(probability_path) as dataset:
        dx, dy = pixel_size_xy_m(dataset, None)
        pixel_area = dx * dy
        pixels = shapely.area(frame.geometry.values) / abs(dataset.transform.a * dataset.transform.e)
        for k in np.flatnonzero(pixels * pixel_area >= min_area_m2):
            blocks[k] = _blocks_in(dataset, frame.geometry.values[k], min_part_m2 / pixel_area)
    return blocks


def _blocks_in(dataset: rasterio.DatasetReader, geometry: shapely.Geometry, min_part_px: float) -> int:
    """The blocks of one footprint's roof (see :func:`roof_blocks`)."""
    rough = dataset.window(*geometry.bounds)
    col, row = math.floor(rough.col_off) - 2, math.floor(rough.row_off) - 2
    window = Window(col, row, math.ceil(rough.width) + 5, math.ceil(rough.height) + 5).intersection(
        Window(0, 0, dataset.width, dataset.height))
    probability = _as_probability(dataset.read(1, window=window), dataset.dtypes[0],
                                  ours=dataset.tags().get(PRODUCT_TAG) == "probability")
    inside = geometry_mask([geometry], probability.shape, dataset.window_transform(window),
                                             invert=True)
    smooth = ndimage.gaussian_filter(probability.astype(np.float32), 0.5)
    most = 1
    for level in BLOCK_LEVELS:
        core = ndimage.binary_opening(inside & (smooth >= level))
        labels, count = ndimage.label(core, structure=np.ones((3, 3)))
        if count < 2:
            continue
        sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
        most = max(most, int(((sizes >= min_part_px) & (sizes >= 0.5 * sizes.max())).sum()))
    return most


def write_footprints(frame: gpd.GeoDataFrame, gpkg: Path | None, geojson: Path | None,
                     layer: str = "footprints") -> None:
    """Write the layer as GeoPackage (its own CRS) and/or RFC 7946 GeoJSON (EPSG:4326).

    Each file is written under a temporary name and renamed when complete.
    """
    if gpkg is not None:
        with atomic_path(gpkg) as tmp, warnings.catch_warnings():
            # a layer of a raster without CRS is written without one, as documented, not warned about
            warnings.filterwarnings("ignore", message="'crs' was not provided", category=UserWarning)
            pyogrio.write_dataframe(frame, tmp, layer=layer, driver="GPKG",
                                    geometry_type="Polygon" if frame.empty else None)
    if geojson is not None:
        if frame.crs is None:
            raise SitewatchError("footprints without a CRS cannot be written as GeoJSON (EPSG:4326)")
        with atomic_path(geojson) as tmp:
            pyogrio.write_dataframe(frame.to_crs(4326), tmp, driver="GeoJSON",
                                    layer_options={"RFC7946": "YES", "WRITE_NAME": "NO"},
                                    geometry_type="Polygon" if frame.empty else None)


def _plain_value(value: Any) -> Any:
    """A cell as a GeoPackage stores it: dates as ISO text, id lists as comma-separated text."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return value


def write_change_layers(folder: Path, changes: gpd.GeoDataFrame, clusters: gpd.GeoDataFrame,
                        footprints: list[gpd.GeoDataFrame], dates: list, cleared: gpd.GeoDataFrame) -> None:
    """``changes.gpkg`` (layers ``changes``, ``housing_clusters`` and ``land_cleared``),
    ``changes.geojson``, ``land_cleared.geojson`` and each date's ``footprints_<date>.gpkg`` in
    ``folder``, all in the CRS of ``changes``."""
    def plain(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        frame = frame.copy()
        for column in frame.columns:
            if column != "geometry" and frame[column].dtype == object:
                frame[column] = frame[column].map(_plain_value)
        return frame

    changes, clusters = plain(changes), plain(clusters)
    write_footprints(changes, folder / "changes.gpkg", folder / "changes.geojson", layer="changes")
    # a second layer in the same GeoPackage (the folder itself appears atomically)
    pyogrio.write_dataframe(clusters, folder / "changes.gpkg", layer="housing_clusters", driver="GPKG",
                            geometry_type="Polygon" if clusters.empty else None)
    cleared = plain(cleared.to_crs(changes.crs))
    pyogrio.write_dataframe(cleared, folder / "changes.gpkg", layer="land_cleared", driver="GPKG",
                            geometry_type="MultiPolygon", promote_to_multi=True)  # one schema, empty or not
    write_footprints(cleared, None, folder / "land_cleared.geojson", layer="land_cleared")
    for date, frame in zip(dates, footprints, strict=True):
        write_footprints(plain(frame.to_crs(changes.crs)), folder / f"footprints_{date.isoformat()}.gpkg", None)
