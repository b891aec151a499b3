"""The site job: rasters of one site at several dates → segment → footprints → changes → report.

One function, :func:`run_site`, strings the stages together for the ``change``, ``demo`` and
``batch`` commands. Everything is built in a temporary folder beside the output and renamed
into place at the end, so a site's outputs appear complete or not at all.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.features
import shapely
import shapely.geometry
from pyproj import CRS
from rasterio.enums import Resampling
from rasterio.features import rasterize
from scipy import ndimage

from sitewatch.change import (
    ChangeRules,
    check_overlap,
    compare_dates,
    estimate_shift,
    resolve_dates,
    shift_footprints,
    summarize,
    warp_onto,
)
from sitewatch.errors import SitewatchError
from sitewatch.footprints import FootprintOptions, utm_crs, vectorize_raster, write_footprints
from sitewatch.outputs import check_output_dir, publish_dir
from sitewatch.predict import MASK_NODATA, Predictor, segment_raster
from sitewatch.raster import open_raster, pixel_size_xy_m, staging_dir
from sitewatch.report import write_report
from sitewatch.summary import CoverageRecord, ModelRun, SiteSummary

SUMMARY = "summary.json"


@dataclass
class SiteRun:
    """Where a finished site's outputs are and what they say."""

    out_dir: Path
    summary: SiteSummary


def _check_inputs(rasters: list[Path]) -> None:
    if len(rasters) < 2:
        raise SitewatchError("change detection needs rasters of at least two dates (got one)")
    counts = {}
    for path in rasters:
        with open_raster(path) as dataset:
            counts[path] = dataset.count
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"{p.name}: {c}" for p, c in counts.items())
        raise SitewatchError(f"rasters have different band counts ({detail})")


def _grey(path: Path, limit: int = 2048) -> tuple[np.ndarray, float]:
    """Grey image of a raster, decimated to at most ``limit`` px; with the decimation factor."""
    with rasterio.open(path) as dataset:
        factor = max(1.0, max(dataset.width, dataset.height) / limit)
        shape = (max(1, int(dataset.height / factor)), max(1, int(dataset.width / factor)))
        bands = list(range(1, min(3, dataset.count) + 1))
        pixels = dataset.read(bands, out_shape=(len(bands), *shape), resampling=Resampling.average)
    return pixels.astype(np.float32).mean(axis=0), factor


def _mean_under(frame: gpd.GeoDataFrame, probability_path: Path) -> np.ndarray:
    """Mean probability (0-1) of the raster under each polygon (same CRS as the raster)."""
    if frame.empty:
        return np.zeros(0)
    with rasterio.open(probability_path) as dataset:
        values = dataset.read(1).astype(np.float32) / 255.0
        labels = rasterize([(g, i + 1) for i, g in enumerate(frame.geometry)], out_shape=values.shape,
                           transform=dataset.transform, fill=0, dtype="int32", all_touched=True)
    index = np.arange(1, len(frame) + 1)
    sums = ndimage.sum(values, labels, index)
    counts = ndimage.sum(np.ones_like(values), labels, index)
    return np.divide(sums, counts, out=np.zeros(len(frame)), where=np.asarray(counts) > 0)  # 0 where none


def run_site(
    rasters: list[Path],
    out_dir: Path,
    predictor: Predictor,
    *,
    site: str | None = None,
    dates: list[str] | None = None,
    rules: ChangeRules | None = None,
    footprint_options: FootprintOptions | None = None,
    progress: Callable[[str], None] | None = None,
    extra_files: dict[str, str] | None = None,
    window_progress: Callable[[int, int], None] | None = None,
    work_gsd_m: float | None = None,
) -> SiteRun:
    """Run the whole change job for one site and write its outputs into ``out_dir``.

    Args:
        rasters: the site at two or more dates (any order; sorted by date).
        out_dir: output folder; when the run succeeds, sitewatch's earlier results in it are
            replaced (files the user added are kept; see :mod:`sitewatch.outputs`).
        predictor: model on its device.
        site: site name for the report (default: the folder name of ``out_dir``).
        dates: ISO dates, one per raster, overriding metadata and file names.
        rules: change and flag thresholds.
        footprint_options: post-processing of masks into footprints.
        progress: called with a short message as each stage starts.
        extra_files: more text files (name → content) to add to the output folder.
        window_progress: called with (windows done, windows total) while each date is segmented.
        work_gsd_m: ground pixel size (m) to run the model at (default: the model's rule applied
            to the first raster's pixel size); every date is on the first raster's grid.
    """
    say = progress or (lambda message: None)
    rules = rules or ChangeRules()
    rasters = [Path(r) for r in rasters]
    _check_inputs(rasters)
    when = resolve_dates(rasters, dates)
    order = np.argsort(when)
    rasters, when = [rasters[i] for i in order], [when[i] for i in order]
    site = site or Path(out_dir).name
    out_dir = Path(out_dir)
    check_output_dir(out_dir, rasters)
    staging = staging_dir(out_dir)
    try:
        with open_raster(rasters[0]) as reference:
            if reference.crs is None:
                raise SitewatchError(f"{rasters[0]}: no CRS; change detection needs georeferenced rasters")
            pixel_m = pixel_size_xy_m(reference)
            transform, crs = reference.transform, reference.crs
            aligned = [rasters[0]]
            for k, path in enumerate(rasters[1:], start=1):
                with open_raster(path) as other:
                    check_overlap(reference, other)
                say(f"aligning {path.name} onto {rasters[0].name}")
                target = staging / "aligned" / f"{k}_{path.stem}.tif"
                target.parent.mkdir(exist_ok=True)
                warp_onto(reference, path, target)
                aligned.append(target)
        segmented = []
        for date, path in zip(when, aligned, strict=True):
            say(f"segmenting {date}")
            segmented.append(segment_raster(path, staging / "segment" / date.isoformat(), predictor,
                                            progress=window_progress, work_gsd_m=work_gsd_m))
        grey0, factor = _grey(aligned[0])
        shifts, frames = [], []
        options = footprint_options or FootprintOptions(threshold=predictor.model.threshold)
        for k, (date, result) in enumerate(zip(when, segmented, strict=True)):
            say(f"footprints {date}")
            frame = vectorize_raster(result.mask_path, result.probability_path, options)
            if k > 0:
                grey, _ = _grey(aligned[k])
                shift = estimate_shift(grey0, grey, rules, (pixel_m[0] * factor, pixel_m[1] * factor))
                shift.dx_px *= factor
                shift.dy_px *= factor
                shifts.append(shift)
                frame = shift_footprints(frame, shift, transform)
            frames.append(frame)
        before = _mean_under(frames[-1], segmented[0].probability_path)
        # the first date's buildings are looked up on the last date's raster where they appear
        # there: moved by the measured shift (the last date's footprints were moved back by it)
        last_shift = shifts[-1] if shifts else None
        seen_later = frames[0] if last_shift is None else shift_footprints(frames[0], last_shift.inverse(), transform)
        after = _mean_under(seen_later, segmented[-1].probability_path)
        metric_crs = _utm_for(crs, transform, segmented[0])
        observed, coverage = observed_ground([r.mask_path for r in segmented], crs)
        observed = gpd.GeoSeries([observed], crs=crs).to_crs(metric_crs).iloc[0]
        result = compare_dates([f.to_crs(metric_crs) for f in frames], when, rules, before, after,
                               observed=observed, pixel_m=float(np.sqrt(pixel_m[0] * pixel_m[1])))
        result.shifts = shifts
        say("writing outputs")
        model = ModelRun(name=predictor.model.name, sha256=predictor.model.sha256,
                         gsd_m=segmented[0].work_gsd_m, gsd_rule=segmented[0].work_gsd_rule,
                         trained_gsd_m=predictor.model.gsd_range_m or predictor.model.gsd_m,
                         device=predictor.description)
        summary = summarize(result, site, model, coverage.record(when))
        changes = result.changes.to_crs(crs)
        clusters = result.clusters.to_crs(crs)
        _write_layers(staging, changes, clusters, result.footprints, when, crs)
        (staging / SUMMARY).write_text(summary.to_json())
        write_report(staging / "report.html", summary, changes, clusters, aligned[0], aligned[-1])
        for name, content in (extra_files or {}).items():
            (staging / name).write_text(content)
        for temporary in ("aligned", "segment"):
            shutil.rmtree(staging / temporary, ignore_errors=True)
        publish_dir(staging, out_dir)
        staging = None
        return SiteRun(out_dir=out_dir, summary=summary)
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


@dataclass
class Coverage:
    """How much of the site each date saw (shares 0-1 of the first raster's grid)."""

    per_date: list[float]
    all_dates: float

    def record(self, dates: list) -> CoverageRecord:
        """The coverage as reported: shares rounded to 4 decimals, per ISO date."""
        return CoverageRecord({d.isoformat(): round(v, 4) for d, v in zip(dates, self.per_date, strict=True)},
                              round(self.all_dates, 4))


def observed_ground(mask_paths: list[Path], crs) -> tuple[shapely.Geometry, Coverage]:
    """The ground with valid data at every date (polygon in the masks' CRS) and the coverage.

    Masks are on one grid (every date warped onto the first); nodata (outside a raster,
    declared nodata, NaN/inf pixels, clouds masked out) is :data:`MASK_NODATA`.
    """
    together, shares, transform = None, [], None
    for path in mask_paths:
        with rasterio.open(path) as dataset:
            valid = dataset.read(1) != MASK_NODATA
            transform = dataset.transform
        shares.append(float(valid.mean()))
        together = valid if together is None else together & valid
    pieces = [shapely.geometry.shape(geometry) for geometry, _ in
              rasterio.features.shapes(together.astype(np.uint8), mask=together, transform=transform)]
    return shapely.union_all(pieces), Coverage(per_date=shares, all_dates=float(together.mean()))


def _utm_for(crs, transform, segmented) -> CRS:
    """The local UTM CRS of the site (metres), from the first raster's footprint on the globe."""
    return utm_crs(crs, rasterio.transform.array_bounds(segmented.height, segmented.width, transform))


def _plain_value(value: Any) -> Any:
    """A cell as a GeoPackage stores it: dates as ISO text, id lists as comma-separated text."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return value


def _write_layers(folder: Path, changes: gpd.GeoDataFrame, clusters: gpd.GeoDataFrame,
                  footprints: list[gpd.GeoDataFrame], dates: list, crs) -> None:
    import pyogrio

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
    for date, frame in zip(dates, footprints, strict=True):
        write_footprints(plain(frame.to_crs(crs)), folder / f"footprints_{date.isoformat()}.gpkg", None)
