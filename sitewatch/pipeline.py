"""The site job: rasters of one site at several dates → prepared dates → segmentation →
footprints → changes → outputs.

:func:`run_site` only sequences the stages' entry functions for the ``change``, ``demo`` and
``batch`` commands. Everything is built in a temporary folder beside the output and renamed
into place at the end, so a site's outputs appear complete or not at all.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from rasterio.transform import array_bounds

from sitewatch.change import ChangeResult, compare_dates, shift_footprints, shift_geometry, summarize
from sitewatch.choice import ModelChoice
from sitewatch.clearing import AnalysisGrid, empty_clearing, find_cleared_land
from sitewatch.coverage import (
    MIXED_SENSOR_RATIO,
    Coverage,
    judge_at_resolution,
    mean_probability_under,
    observed_ground,
)
from sitewatch.errors import SitewatchError, SitewatchWarning
from sitewatch.evidence import ImageEvidence, compare_pictures
from sitewatch.files import output_lock, staging_dir
from sitewatch.footprints import (
    FootprintOptions,
    roof_blocks,
    utm_crs,
    vectorize_raster,
    write_change_layers,
    write_footprints,
)
from sitewatch.modelfile import working_gsd_m
from sitewatch.outputs import check_output_dir, publish_dir
from sitewatch.predict import Predictor, SegmentResult, segment_raster
from sitewatch.prepare import DateOptions, PreparedSite, ground_mask, order_site, prepare_site
from sitewatch.radiometry import RGB, Stretch, band_choice, choose_bands, site_stretch
from sitewatch.raster import is_georeferenced, open_raster
from sitewatch.report import write_report
from sitewatch.rules import ChangeRules
from sitewatch.summary import ImageRecord, ModelRun, SiteSummary

SUMMARY = "summary.json"


@dataclass
class SiteRun:
    """Where a finished site's outputs are and what they say."""

    out_dir: Path
    summary: SiteSummary


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
    options: list[DateOptions] | None = None,
    use_udm: bool = True,
    model_choice: ModelChoice | None = None,
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
        progress: called with a short message as each stage starts; extra_files: more text files to write.
        window_progress: called with (windows done, windows total) while each date is segmented.
        work_gsd_m: ground pixel size (m) to run the model at (default: the model's rule applied to the
            coarsest date's own pixel size, so every date is seen at what all of them resolve).
        options: per raster (in the order given), its bands and mask raster
            (:class:`sitewatch.prepare.DateOptions`); one for all rasters is repeated.
        use_udm: use the Planet usable-data mask beside an image (clouds... are not observed).
        model_choice: why ``predictor``'s network sees the site (:mod:`sitewatch.choice`), for the report.
    """
    say = progress or (lambda message: None)
    rules = rules or ChangeRules.default()
    out_dir = Path(out_dir)
    rasters, when, options = order_site(rasters, dates, options)
    check_output_dir(out_dir, rasters)
    with output_lock(out_dir):
        check_output_dir(out_dir, rasters)  # again, now that no other run writes it
        return _run_site_locked(rasters, when, options, out_dir, predictor, say, rules, site, dates is not None,
                                footprint_options, extra_files, window_progress, work_gsd_m, use_udm, model_choice)


def _run_site_locked(rasters: list[Path], when: list, options: list[DateOptions], out_dir: Path,
                     predictor: Predictor, say: Callable[[str], None], rules: ChangeRules, site: str | None,
                     dates_given: bool, footprint_options: FootprintOptions | None, extra_files: dict[str, str] | None,
                     window_progress: Callable[[int, int], None] | None, work_gsd_m: float | None, use_udm: bool,
                     model_choice: ModelChoice | None) -> SiteRun:
    """:func:`run_site` once the output folder is locked for this run."""
    staging = staging_dir(out_dir)
    try:
        prepared = prepare_site(rasters, when, rules, staging / "aligned", say, dates_given=dates_given,
                                options=options, use_udm=use_udm)
        segmented = segment_dates(prepared, staging / "segment", predictor, say, window_progress, work_gsd_m)
        options = footprint_options or FootprintOptions(threshold=predictor.model.threshold)
        result = site_changes(prepared, segmented, options, rules, say)
        run = model_run(predictor, segmented[0], model_choice)
        summary = with_resolution(summarize(result, site or out_dir.name, run, result.coverage.record(when), rules,
                                            image_records(prepared, segmented)), result)
        say("writing outputs")
        write_site(staging, summary, result, prepared, extra_files or {})
        publish_dir(staging, out_dir)
        staging = None
        return SiteRun(out_dir=out_dir, summary=summary)
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def segment_dates(prepared: PreparedSite, folder: Path, predictor: Predictor, say: Callable[[str], None],
                  window_progress: Callable[[int, int], None] | None, work_gsd_m: float | None) -> list[SegmentResult]:
    """Every date segmented with the site's one value mapping and working pixel size."""
    count = len(prepared.dates)
    stretches = site_stretch(prepared.aligned, [_model_bands(path, predictor) for path in prepared.aligned],
                             prepared.ground_masks, predictor.model.metadata.input_mapping) or [None] * count
    work_gsd_m = site_work_gsd(prepared, predictor, work_gsd_m)
    return [segment_date(prepared, k, folder, predictor, say, window_progress, work_gsd_m, stretches[k])
            for k in range(count)]


def _model_bands(aligned: Path, predictor: Predictor) -> list[int]:
    """The bands of a date's copy on the site grid that segmenting it feeds the model (as ``plan_input``
    chooses them: red, green, blue, or a grey date's one band repeated)."""
    with rasterio.open(aligned) as dataset:
        return choose_bands(dataset, predictor.model.bands, None)


def site_work_gsd(prepared: PreparedSite, predictor: Predictor, given_m: float | None) -> float | None:
    """The working pixel size (m) of every date: the one given; for dates of different pixel sizes
    (SkySat and PlanetScope) the model's rule applied to the coarsest, so every date is seen at what
    all of them resolve; else None (the model's rule on the site's grid)."""
    if given_m is not None or not prepared.images:
        return given_m
    if prepared.coarsest_pixel_m > MIXED_SENSOR_RATIO * min(image.pixel_m for image in prepared.images):
        return working_gsd_m(predictor.model.metadata, prepared.coarsest_pixel_m)[0]
    return None


@dataclass
class RasterRun:
    """One raster segmented (``sitewatch segment``): the segmentation and the footprints written."""

    result: SegmentResult
    footprints: int | None  # None when none were asked for
    geojson: bool = False  # footprints.geojson written (only for a georeferenced input: GeoJSON is lon/lat)


def segment_one(raster: Path, out_dir: Path, predictor: Predictor, *, footprints: bool = True,
                gsd_m: float | None = None, threshold: float | None = None,
                progress: Callable[[int, int], None] | None = None, mask: Path | None = None,
                use_udm: bool = True, **segment_options: Any) -> RasterRun:
    """Segment one raster into ``out_dir`` and trace its footprints into the same atomic folder.

    ``mask``: a raster of ground the image did not see (0); ``use_udm``: the Planet usable-data mask
    beside the image is used (clouds, heavy haze, shadow, snow are nodata). ``segment_options`` are
    :func:`sitewatch.predict.segment_raster`'s (tile size, bands...).
    """
    traced: list[tuple[int, bool]] = []

    def trace(folder: Path) -> None:
        options = FootprintOptions(threshold=predictor.model.threshold if threshold is None else threshold)
        frame = vectorize_raster(folder / "mask.tif", folder / "probability.tif", options, gsd_m=gsd_m)
        write_footprints(frame, folder / "footprints.gpkg", folder / "footprints.geojson" if frame.crs else None)
        traced.append((len(frame), frame.crs is not None))

    with tempfile.TemporaryDirectory(prefix="sitewatch-mask-") as scratch, open_raster(raster) as dataset:
        choice = band_choice(dataset, list(RGB), segment_options.get("bands"))
        if mask is not None and not is_georeferenced(dataset):
            raise SitewatchError(f"{raster}: a mask needs a georeferenced raster", setting="mask")
        ground = ground_mask(dataset, raster, DateOptions(mask=mask), use_udm, Path(scratch) / "ground.tif")[0] \
            if is_georeferenced(dataset) else None
        if choice.guessed:
            warnings.warn(f"{raster}: bands {choice.describe()}", SitewatchWarning, stacklevel=2)
        stretch = site_stretch([raster], [choice.bands], [ground], predictor.model.metadata.input_mapping) \
            if ground is not None else None
        result = segment_raster(raster, out_dir, predictor, gsd_m=gsd_m, threshold=threshold, progress=progress,
                                finish=trace if footprints else None, ground_mask=ground,
                                stretch=stretch[0] if stretch else None, **segment_options)
    return RasterRun(result, traced[0][0], traced[0][1]) if traced else RasterRun(result, None)


def segment_date(prepared: PreparedSite, k: int, folder: Path, predictor: Predictor, say: Callable[[str], None],
                 window_progress: Callable[[int, int], None] | None, work_gsd_m: float | None,
                 stretch: Stretch | None = None) -> SegmentResult:
    """Probabilities and mask of date ``k`` (on the site's grid) in ``folder/<date>``: its red, green,
    blue copy, the site's value mapping, ground it did not see masked."""
    date = prepared.dates[k]
    say(f"segmenting {date}")
    ground = prepared.ground_masks[k] if prepared.ground_masks else None
    try:
        return segment_raster(prepared.aligned[k], folder / date.isoformat(), predictor, progress=window_progress,
                              work_gsd_m=work_gsd_m, stretch=stretch, ground_mask=ground)
    except SitewatchError as error:  # name the user's file, never the temporary one on the first grid
        where = f"{prepared.rasters[k]} (date {date}, on the first date's grid)"
        raise SitewatchError(str(error).replace(str(prepared.aligned[k]), where), error.setting) from None


@dataclass
class SiteFootprints:
    """Every date's footprints of a site and what the change rules weigh them with (metric CRS)."""

    frames: list[gpd.GeoDataFrame]  # per date, moved back by the measured shift
    before: np.ndarray  # per last-date building, the first date's mean probability on its ground
    after: np.ndarray  # per first-date building, the last date's
    observed: shapely.Geometry  # ground seen at every date
    seen: list[shapely.Geometry]  # per date
    evidence: ImageEvidence | None
    pixel_m: float
    coverage: Coverage  # what ground each date saw

    def compare(self, dates: list, rules: ChangeRules) -> ChangeResult:
        """The change records of these footprints under ``rules`` (:func:`sitewatch.change.compare_dates`)."""
        return compare_dates(self.frames, dates, rules, self.before, self.after, observed=self.observed,
                             pixel_m=self.pixel_m, seen=self.seen, evidence=self.evidence)


def site_footprints(prepared: PreparedSite, segmented: list[SegmentResult], options: FootprintOptions,
                    rules: ChangeRules, say: Callable[[str], None]) -> SiteFootprints:
    """Footprints of every date, moved back by their measured shift, with the evidence the rules weigh."""
    frames = []
    for k, (date, result) in enumerate(zip(prepared.dates, segmented, strict=True)):
        say(f"footprints {date}")
        frame = vectorize_raster(result.mask_path, result.probability_path, options)
        # touching blocks traced as one footprint: judged as blocks, not as one hall (sitewatch.change)
        frame["roof_blocks"] = roof_blocks(frame, result.probability_path, rules.roof_block_min_m2,
                                           rules.hall_min_area_floor_m2)
        frames.append(frame if k == 0 else shift_footprints(frame, prepared.shifts[k - 1], prepared.transform))
    before = mean_probability_under(frames[-1], segmented[0].probability_path)
    # the first date's buildings are looked up on the last date's raster where they appear
    # there: moved by the measured shift (the last date's footprints were moved back by it)
    last_shift = prepared.shifts[-1] if prepared.shifts else None
    seen_later = frames[0] if last_shift is None else shift_footprints(frames[0], last_shift.inverse(),
                                                                         prepared.transform)
    after = mean_probability_under(seen_later, segmented[-1].probability_path)
    metric_crs = utm_crs(prepared.crs, array_bounds(*prepared.shape, prepared.transform))
    _, seen, coverage = observed_ground([r.mask_path for r in segmented])
    # each later date saw its ground where its footprints were moved back to
    seen = [seen[0], *(shift_geometry(geometry, shift, prepared.transform)
                       for geometry, shift in zip(seen[1:], prepared.shifts, strict=True))]
    observed, *seen = gpd.GeoSeries([shapely.intersection_all(seen), *seen], crs=prepared.crs).to_crs(metric_crs).values
    evidence = compare_pictures(prepared.aligned[0], prepared.aligned[-1], last_shift, prepared.pixel_m)
    return SiteFootprints([f.to_crs(metric_crs) for f in frames], before, after, observed, list(seen), evidence,
                          float(np.sqrt(prepared.pixel_m[0] * prepared.pixel_m[1])), coverage)


def site_changes(prepared: PreparedSite, segmented: list[SegmentResult], options: FootprintOptions,
                 rules: ChangeRules, say: Callable[[str], None]) -> ChangeResult:
    """Footprints of every date, moved back by their measured shift, compared by the change rules."""
    footprints = site_footprints(prepared, segmented, options, rules, say)
    result = footprints.compare(prepared.dates, rules)
    result.shifts, result.coverage = prepared.shifts, footprints.coverage
    if prepared.images:
        result.changes = judge_at_resolution(result.changes, [image.pixel_m for image in prepared.images])
    say("land clearing")
    grid = AnalysisGrid.of_site(prepared.crs, prepared.transform, prepared.shape, prepared.pixel_m)
    result.land_cleared = find_cleared_land(prepared.aligned, [r.mask_path for r in segmented], prepared.shifts,
                                            prepared.dates, grid, rules)
    return result


def image_records(prepared: PreparedSite, segmented: list[SegmentResult]) -> list[ImageRecord]:
    """Each date's image as the report states it: date and its source, file, size, its own pixel size,
    bands, masks and what they removed, value mapping, provenance."""
    records = []
    for k, (date, source, path, result) in enumerate(zip(prepared.dates, prepared.date_sources, prepared.rasters,
                                                          segmented, strict=True)):
        image = prepared.images[k] if prepared.images else None
        own = image.pixel_m if image else round(float(np.sqrt(result.pixel_size_m[0] * result.pixel_size_m[1])), 3)
        records.append(ImageRecord(date.isoformat(), source, path.name, result.width, result.height, own,
                                   image.bands.describe() if image else result.bands,
                                   list(image.masks) if image else [], dict(image.mask_removed) if image else {},
                                   result.input_mapping, dict(image.provenance) if image else {},
                                   image.cloud_like if image else 0.0))
    return records


def with_resolution(summary: SiteSummary, result: ChangeResult) -> SiteSummary:
    """The summary's building records with the pixel size (m) their change was judged at (a mixed-sensor
    series: the coarsest date's; :func:`sitewatch.coverage.judge_at_resolution`)."""
    if "judged_at_m" not in result.changes.columns:
        return summary
    judged = dict(zip(result.changes["change_id"].astype(int), result.changes["judged_at_m"], strict=True))

    def at(record):  # noqa: ANN001, ANN202 - a NewBuilding or a GoneBuilding
        value = judged.get(record.id)
        return dataclasses.replace(record, judged_at_m=None if value is None or pd.isna(value) else float(value))

    return dataclasses.replace(summary, new_buildings=[at(b) for b in summary.new_buildings],
                               gone_buildings=[at(b) for b in summary.gone_buildings])


def model_run(predictor: Predictor, segmented: SegmentResult, choice: ModelChoice | None = None) -> ModelRun:
    """Which model ran and why it was chosen, on what, at which working pixel size and why."""
    model = predictor.model
    return ModelRun(name=model.name, sha256=model.sha256, gsd_m=segmented.work_gsd_m,
                    gsd_rule=segmented.work_gsd_rule, trained_gsd_m=model.gsd_range_m or model.gsd_m,
                    device=predictor.description, pass_gsds_m=list(segmented.pass_gsds_m),
                    multiscale=predictor.multiscale.document() if predictor.multiscale else None,
                    input_mapping=segmented.input_mapping,
                    choice=choice.reason if choice else "given to the pipeline by its caller",
                    chosen_automatically=choice.automatic if choice else False)


def write_site(folder: Path, summary: SiteSummary, result: ChangeResult, prepared: PreparedSite,
               extra_files: dict[str, str]) -> None:
    """The site's outputs in ``folder`` (layers in the rasters' CRS); the working files removed."""
    changes = result.changes.to_crs(prepared.crs)
    clusters = result.clusters.to_crs(prepared.crs)
    cleared = empty_clearing(prepared.crs) if result.land_cleared is None else result.land_cleared.to_crs(prepared.crs)
    write_change_layers(folder, changes, clusters, result.footprints, prepared.dates, cleared)
    (folder / SUMMARY).write_text(summary.to_json())
    footprints = [frame.to_crs(prepared.crs) for frame in result.footprints]
    write_report(folder / "report.html", summary, changes, clusters, prepared.aligned, footprints, cleared)
    for name, content in extra_files.items():
        (folder / name).write_text(content)
    for temporary in ("aligned", "segment"):
        shutil.rmtree(folder / temporary, ignore_errors=True)
