"""Accuracy measures written once and shared by training reports, ``evaluate`` and benchmarks.

* pixel scores of a predicted mask against a reference mask (nodata ignored) or reference
  footprints (any CRS) burned onto the prediction's grid;
* SpaceNet-style object scores: predicted and reference polygons matched one to one, best
  IoU first, a match counting when IoU ≥ 0.5;
* change scores (pixel change F1 against a LEVIR-style change mask);
* SCOT, the SpaceNet 7 tracking and change metric, of a site's series (:mod:`sitewatch.scot`).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from rasterio.features import rasterize, shapes
from rasterio.transform import array_bounds
from rasterio.warp import Resampling, reproject, transform_bounds
from shapely.geometry import shape

from sitewatch.data.common import burn_polygons
from sitewatch.data.geodata import read_footprints, split_layer
from sitewatch.errors import SitewatchError, SitewatchWarning
from sitewatch.files import atomic_path
from sitewatch.footprints import FootprintOptions, utm_crs, vectorize_raster, write_footprints
from sitewatch.outputs import check_output_files, record_files
from sitewatch.raster import open_raster
from sitewatch.scot import IOU_THRESHOLD, DateFootprints, scot
from sitewatch.summary import SiteSummary


@dataclass
class ConfusionCounts:
    """True/false positives and false negatives, with the scores they give (0-1)."""

    true_positive: int
    false_positive: int
    false_negative: int

    @property
    def iou(self) -> float:
        union = self.true_positive + self.false_positive + self.false_negative
        return self.true_positive / union if union else 1.0

    @property
    def precision(self) -> float:
        predicted = self.true_positive + self.false_positive
        return self.true_positive / predicted if predicted else 1.0

    @property
    def recall(self) -> float:
        actual = self.true_positive + self.false_negative
        return self.true_positive / actual if actual else 1.0

    @property
    def f1(self) -> float:
        total = 2 * self.true_positive + self.false_positive + self.false_negative
        return 2 * self.true_positive / total if total else 1.0


@dataclass
class PixelScores(ConfusionCounts):
    """Pixel counts and scores of a binary prediction against a reference."""

    true_negative: int

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "iou": self.iou, "f1": self.f1, "precision": self.precision,
                "recall": self.recall}


def pixel_scores(predicted: np.ndarray, reference: np.ndarray, valid: np.ndarray | None = None) -> PixelScores:
    """Compare two binary masks of the same shape; pixels outside ``valid`` are ignored."""
    if predicted.shape != reference.shape:
        raise SitewatchError(f"mask sizes differ: {predicted.shape[::-1]} vs {reference.shape[::-1]}")
    p, r = predicted.astype(bool), reference.astype(bool)
    if valid is not None:
        p, r = p[valid], r[valid]
    return PixelScores(int(np.sum(p & r)), int(np.sum(p & ~r)), int(np.sum(~p & r)), int(np.sum(~p & ~r)))


@dataclass
class ObjectScores(ConfusionCounts):
    """SpaceNet object scores and the per-reference-building IoU of its match (0 if none)."""

    iou_threshold: float
    reference_iou: np.ndarray
    predicted_iou: np.ndarray
    matches: list[tuple[int, int, float]]

    def as_dict(self) -> dict[str, float]:
        return {"true_positive": self.true_positive, "false_positive": self.false_positive,
                "false_negative": self.false_negative, "iou_threshold": self.iou_threshold,
                "precision": self.precision, "recall": self.recall, "f1": self.f1}


def match_polygons(predicted: list, reference: list, iou_threshold: float = 0.5) -> ObjectScores:
    """One-to-one matching of polygons (same CRS): highest IoU pairs first, IoU ≥ threshold.

    Args:
        predicted, reference: shapely polygons.
        iou_threshold: the SpaceNet criterion (0.5).
    """
    predicted_arr = np.asarray(predicted, dtype=object)
    reference_arr = np.asarray(reference, dtype=object)
    pred_iou = np.zeros(len(predicted_arr))
    ref_iou = np.zeros(len(reference_arr))
    matches: list[tuple[int, int, float]] = []
    if len(predicted_arr) and len(reference_arr):
        tree = shapely.STRtree(reference_arr)
        p_idx, r_idx = tree.query(predicted_arr, predicate="intersects")
        if p_idx.size:
            inter = shapely.area(shapely.intersection(predicted_arr[p_idx], reference_arr[r_idx]))
            union = shapely.area(shapely.union(predicted_arr[p_idx], reference_arr[r_idx]))
            iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
            used_p: set[int] = set()
            used_r: set[int] = set()
            for k in np.argsort(-iou, kind="stable"):
                if iou[k] < iou_threshold:
                    break
                a, b = int(p_idx[k]), int(r_idx[k])
                if a in used_p or b in used_r:
                    continue
                used_p.add(a)
                used_r.add(b)
                matches.append((a, b, float(iou[k])))
                pred_iou[a] = ref_iou[b] = iou[k]
    tp = len(matches)
    return ObjectScores(tp, len(predicted_arr) - tp, len(reference_arr) - tp, iou_threshold,
                        ref_iou, pred_iou, matches)


def object_scores(predicted: gpd.GeoDataFrame, reference: gpd.GeoDataFrame,
                  iou_threshold: float = 0.5) -> ObjectScores:
    """SpaceNet object scores of two footprint layers (reprojected to the reference's CRS)."""
    if predicted.crs is not None and reference.crs is not None and predicted.crs != reference.crs:
        predicted = predicted.to_crs(reference.crs)
    return match_polygons(list(predicted.geometry.values), list(reference.geometry.values), iou_threshold)


# --- files -------------------------------------------------------------------------------------

RASTER_SUFFIXES = {".tif", ".tiff", ".png", ".jpg", ".jpeg"}
VECTOR_SUFFIXES = {".gpkg", ".geojson", ".json", ".shp", ".fgb"}


@dataclass
class Grid:
    """A raster's pixel grid: CRS (None when not georeferenced), transform and shape (rows, cols)."""

    crs: object
    transform: object
    shape: tuple[int, int]


def _binary(values: np.ndarray, nodata: float | None) -> tuple[np.ndarray, np.ndarray]:
    """``(building, valid)`` of mask values: 0/1 with nodata, or 0/255 (a label file's 0/255)."""
    uniques = np.unique(values)
    if np.all(np.isin(uniques, [0, 255])) and 255 in uniques and nodata != 255:
        return values == 255, np.ones(values.shape, bool)
    valid = np.ones(values.shape, bool) if nodata is None else values != nodata
    if values[valid].size and values[valid].max() > 1:
        return values > 127, valid
    return values == 1, valid


def read_binary_raster(path, onto: Grid | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(building, valid)`` of a mask file: 0/1 with nodata, or 0/255 (any band count).

    With ``onto`` (another georeferenced raster's grid), the mask is first placed on that grid
    by its own georeferencing (nearest neighbour); pixels it does not cover are not valid.
    """
    with open_raster(path) as dataset:
        values, nodata, crs, transform = dataset.read(1), dataset.nodata, dataset.crs, dataset.transform
        bounds = dataset.bounds
    building, valid = _binary(values, nodata)
    if onto is None or onto.crs is None or crs is None:
        return building, valid
    west, south, east, north = transform_bounds(crs, onto.crs, *bounds)
    o_west, o_south, o_east, o_north = array_bounds(*onto.shape, onto.transform)
    if west >= o_east or east <= o_west or south >= o_north or north <= o_south:
        raise SitewatchError(f"{path}: does not overlap the predicted mask on the ground")
    placed = np.zeros(onto.shape, np.uint8)
    covered = np.zeros(onto.shape, np.uint8)
    common = {"src_transform": transform, "src_crs": crs, "dst_transform": onto.transform,
              "dst_crs": onto.crs, "resampling": Resampling.nearest}
    reproject((building & valid).astype(np.uint8), placed, **common)
    reproject(valid.astype(np.uint8), covered, dst_nodata=0, **common)
    return placed == 1, covered == 1


def raster_grid(path) -> Grid:
    """The pixel grid of a raster file."""
    with open_raster(path) as dataset:
        return Grid(dataset.crs, dataset.transform, (dataset.height, dataset.width))


def read_polygons(path, need_crs: bool = False) -> gpd.GeoDataFrame:
    """Polygons of any OGR vector file (``FILE:LAYER`` names a layer); a one-line error otherwise.

    A file of several layers without a layer name, points or lines are refused; empty
    geometries are dropped and invalid ones repaired, with a warning (:func:`read_footprints`).
    """
    return read_footprints(path, keep_columns=True, need_crs=need_crs)


def read_reference(path) -> gpd.GeoDataFrame:
    """Reference buildings to score against: polygons, at least one."""
    frame = read_polygons(path)
    if frame.empty:
        raise SitewatchError(f"{path}: reference holds no buildings; nothing to score against")
    return frame


def burn_reference(path, grid: Grid) -> np.ndarray:
    """Reference footprints (any CRS) reprojected onto a georeferenced grid and rasterized.

    A pixel is building when its centre falls inside a footprint (the training labels' rule).
    """
    if grid.crs is None:
        raise SitewatchError(f"{path}: footprints need a georeferenced prediction to be placed on")
    footprints = read_reference(path).to_crs(grid.crs)
    return burn_polygons(list(footprints.geometry.values), grid.transform, grid.shape) == 1


#: The files ``evaluate`` writes into its output folder.
EVALUATION_FILES = ("scores.json", "buildings.gpkg")


def file_kind(path: Path) -> str:
    """``raster`` or ``vector`` by the file's suffix (a ``FILE:LAYER`` is a vector); an error otherwise."""
    path = split_layer(path)[0]
    suffix = path.suffix.lower()
    if suffix in RASTER_SUFFIXES:
        return "raster"
    if suffix in VECTOR_SUFFIXES:
        return "vector"
    raise SitewatchError(f"{path}: give a mask (.tif/.png) or polygons (.gpkg/.geojson)")


def pixel_report(predicted: Path, reference: Path, kinds: list[str]) -> dict | None:
    """Pixel scores of a predicted mask against a mask (aligned by georeferencing) or burned footprints."""
    if kinds[0] != "raster":
        return None
    grid = raster_grid(predicted)
    p, p_valid = read_binary_raster(predicted)
    if kinds[1] == "vector":
        return pixel_scores(p, burn_reference(reference, grid), p_valid).as_dict()
    r, r_valid = read_binary_raster(reference, onto=grid)
    if p.shape != r.shape:
        raise SitewatchError(f"{reference}: mask is {r.shape[1]}×{r.shape[0]} px, the prediction "
                             f"{p.shape[1]}×{p.shape[0]}; without georeferencing both need the same grid")
    return pixel_scores(p, r, p_valid & r_valid).as_dict()


def evaluate_paths(predicted, reference, out=None, iou_threshold: float = 0.5,
                   gsd_m: float | None = None) -> dict:
    """Score predicted against reference files; masks give pixel scores, all give object scores.

    Writes ``scores.json`` and ``buildings.gpkg`` (reference buildings with the IoU of their
    match, 0 when unmatched) to ``out`` when given; an output folder that holds the user's files
    of those names, or the inputs themselves, is refused before any work.
    """
    predicted, reference = Path(predicted), Path(reference)
    kinds = [file_kind(predicted), file_kind(reference)]
    if out is not None:
        check_output_files(Path(out), EVALUATION_FILES, [split_layer(predicted)[0], split_layer(reference)[0]])
    reference_layer = read_reference(reference) if kinds[1] == "vector" else None
    report: dict = {"predicted": str(predicted), "reference": str(reference)}
    pixel = pixel_report(predicted, reference, kinds)
    if pixel is not None:
        report["pixel"] = pixel
    options = FootprintOptions(regularize=False, simplify_m=0.0, min_area_m2=0.0)
    predicted_layer = (vectorize_raster(predicted, options=options, gsd_m=gsd_m) if kinds[0] == "raster"
                       else read_polygons(predicted))
    if reference_layer is None:
        reference_layer = vectorize_raster(reference, options=options, gsd_m=gsd_m)
    scores = object_scores(predicted_layer, reference_layer, iou_threshold)
    report["object"] = scores.as_dict()
    report["buildings"] = {"predicted": len(predicted_layer), "reference": len(reference_layer)}
    if out is not None:
        write_evaluation(Path(out), report, reference_layer, scores)
    return report


def write_evaluation(out: Path, report: dict, reference: gpd.GeoDataFrame, scores: ObjectScores) -> None:
    """``scores.json`` and ``buildings.gpkg`` (each reference building's IoU) in ``out``, recorded as ours."""
    out.mkdir(parents=True, exist_ok=True)
    per_building = reference[["geometry"]].copy()
    per_building["iou"] = np.round(scores.reference_iou, 4)
    per_building["matched"] = scores.reference_iou >= scores.iou_threshold
    write_footprints(per_building, out / "buildings.gpkg", None, layer="reference_buildings")
    with atomic_path(out / "scores.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    record_files(out, EVALUATION_FILES, "evaluate")


# --- change ------------------------------------------------------------------------------------

def change_scores(changes: gpd.GeoDataFrame, reference: np.ndarray, transform, crs,
                  iou_threshold: float = 0.5) -> dict:
    """Score a site's change layer against a LEVIR-style change mask on a known grid.

    Pixel change F1: pixels of ``new``, ``expanded`` and ``demolished`` buildings against the
    mask's change pixels. Object scores: ``new`` buildings against the mask's connected change
    regions, matched one to one at IoU ≥ ``iou_threshold`` (recall = change objects found).
    """
    if changes.crs is not None and crs is not None:
        changes = changes.to_crs(crs)
    moved = changes[changes["change"].isin(["new", "expanded", "demolished"])]
    predicted = rasterize([(g, 1) for g in moved.geometry], out_shape=reference.shape, transform=transform,
                          fill=0, dtype="uint8") if len(moved) else np.zeros(reference.shape, np.uint8)
    pixel = pixel_scores(predicted, reference > 0)
    truth = [shape(g) for g, v in shapes(reference.astype(np.uint8), mask=reference > 0, transform=transform)
             if v > 0]
    new = list(changes[changes["change"] == "new"].geometry.values)
    objects = match_polygons(new, truth, iou_threshold)
    return {"pixel": pixel.as_dict(), "object": {**objects.as_dict(), "change_objects": len(truth),
                                                 "new_buildings": len(new)}}


# --- tracking over a time series -----------------------------------------------------------------

def read_truth_series(truth_path: Path, site_dates: list[str]) -> gpd.GeoDataFrame:
    """Footprints labelled with ``date`` and ``id``, checked against the site's dates.

    Refused: a file without those columns or a CRS, and a truth series that lacks one of the
    site's dates (its first included); truth dates the site does not have are left out, said so.
    """
    truth = read_reference(truth_path)
    missing = {"date", "id"} - set(truth.columns)
    if missing or truth.crs is None:
        raise SitewatchError(f"{truth_path}: needs a CRS and the columns date and id (missing: {sorted(missing)})")
    truth["date"] = truth["date"].astype(str).str[:10]
    absent = [date for date in site_dates if date not in set(truth["date"])]
    if absent:
        raise SitewatchError(f"{truth_path}: no footprint dated {', '.join(absent)}, a date of the site "
                             f"({', '.join(site_dates)}); the truth must cover every date of the series")
    extra = sorted(set(truth["date"]) - set(site_dates))
    if extra:
        warnings.warn(f"{truth_path}: dates the site does not have left out of SCOT: {', '.join(extra)}",
                      SitewatchWarning, stacklevel=2)
    return truth[truth["date"].isin(site_dates)]


def scot_scores(site_dir: Path, truth_path: Path, iou_threshold: float = IOU_THRESHOLD) -> dict:
    """SCOT of a site's tracked footprints against footprints labelled with ``date`` and ``id`` columns.

    The site's dates come from its ``summary.json`` and its footprints from
    ``footprints_<date>.gpkg`` (``track_id`` is the building's id across dates); the truth is one
    vector file, any CRS, with an ISO ``date`` and a building ``id`` that persists across dates.
    """
    summary = read_site_summary(site_dir)
    truth = read_truth_series(truth_path, list(summary.dates))
    proposals = [read_polygons(Path(site_dir) / f"footprints_{date}.gpkg") for date in summary.dates]
    metric = utm_crs(proposals[0].crs, tuple(proposals[0].to_crs(proposals[0].crs).total_bounds))
    truth = truth.to_crs(metric)
    series_truth = [DateFootprints(list(day["id"]), list(day.geometry.values))
                    for day in (truth[truth["date"] == date] for date in summary.dates)]
    series_found = [DateFootprints(list(frame["track_id"]), list(frame.to_crs(metric).geometry.values))
                    for frame in proposals]
    scores = scot(series_truth, series_found, iou_threshold)
    return {"dates": summary.dates, "iou_threshold": iou_threshold, "scot": scores.as_dict(),
            "buildings_per_date": {"truth": [len(d.ids) for d in series_truth],
                                   "found": [len(d.ids) for d in series_found]}}


def read_site_summary(site_dir: Path) -> SiteSummary:
    """The ``summary.json`` of a ``change`` output folder; an error for another folder."""
    path = Path(site_dir) / "summary.json"
    if not path.is_file():
        raise SitewatchError(f"{site_dir}: not an output folder of 'sitewatch change' (no summary.json)")
    return SiteSummary.from_json(path.read_text())


def change_scores_paths(site_dir: Path, reference: Path, grid: Path | None = None,
                        iou_threshold: float = 0.5) -> dict:
    """Change scores of a site's output folder against a change mask on ``grid`` (default: the mask's own).

    The grid must be georeferenced and the mask's size; like ``evaluate``, a grid that does not
    overlap the site's footprints on the ground is refused rather than scored.
    """
    changed, _ = read_binary_raster(reference)
    with open_raster(grid or reference) as dataset:
        if dataset.crs is None:
            raise SitewatchError(f"{grid or reference}: no CRS; give the site's first raster as the grid",
                                 setting="grid")
        if (dataset.height, dataset.width) != changed.shape:
            raise SitewatchError(f"{reference}: mask is {changed.shape[1]}×{changed.shape[0]} px, the grid raster "
                                 f"{grid or reference} {dataset.width}×{dataset.height} px", setting="grid")
        transform, crs, bounds = dataset.transform, dataset.crs, dataset.bounds
    summary = read_site_summary(site_dir)
    changes = read_polygons(Path(site_dir) / "changes.gpkg:changes")
    seen = pd.concat([read_polygons(Path(site_dir) / f"footprints_{date}.gpkg")[["geometry"]].to_crs(crs)
                      for date in summary.dates] + [changes[["geometry"]].to_crs(crs)])
    if len(seen) and not seen.intersects(shapely.box(*bounds)).any():
        raise SitewatchError(f"{grid or reference}: does not overlap the site's footprints on the ground "
                             "(another place or CRS?)", setting="grid" if grid else None)
    return change_scores(changes, changed, transform, crs, iou_threshold)
