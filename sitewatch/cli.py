"""The ``sitewatch`` command line: one command per pipeline stage.

Only this module knows about arguments, progress bars and exit codes. A user mistake
(:class:`~sitewatch.errors.SitewatchError`) prints one line and exits 2; Ctrl-C exits 130.
A stage's error that names its setting gets the option the user typed added here.

Each command imports the stages it runs when it runs, a measured choice: ``--help``, ``info``
and refused inputs answer in about 0.3 s without importing torch (``bench/startup.py``); the
import graph with these arrows is printed by ``tools/import_graph.py``.
"""

from __future__ import annotations

import json
import math
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from sitewatch.errors import SitewatchError, SitewatchWarning
from sitewatch.outputs import check_output_dir, check_output_files, record_files
from sitewatch.summary import SiteSummary


def _plain_help() -> None:
    """Help as a Python user reads it: typer 0.29 tags every parameter with its Python type (``<bool>`` on
    every flag, ``<list[Path]>``, ``{rasters}...`` in the usage line); flags show nothing, options the
    kind of value they take (``PATH``, ``FLOAT``, ``TEXT``), arguments their name."""
    import typer.core

    option, argument = getattr(typer.core, "TyperOption", None), getattr(typer.core, "TyperArgument", None)
    if option is None or argument is None or not hasattr(option, "display_type"):
        return  # another typer: its own help
    def value_kind(self: typer.core.TyperOption, ctx: object) -> str:
        if getattr(self, "is_flag", False):
            return ""
        try:
            kind = "PATH" if self.type_descriptor.is_path else self.bare_type().upper()
            return {"STR": "TEXT", "INT": "INTEGER"}.get(kind, kind)
        except (AttributeError, TypeError, AssertionError):
            return ""

    option.display_type = value_kind
    argument.display_type = lambda self, ctx: ""
    if hasattr(argument, "_usage_display_name"):
        argument._usage_display_name = lambda self: (
            (self.display_name_raw.upper() if self.required else f"[{self.display_name_raw.upper()}]")
            + ("..." if self.nargs != 1 else ""))


_plain_help()

TTA_HELP = "Average over the 4 flips (3.5-3.7x the time measured: docs/BENCHMARKS.md)."
RULES_HELP = "Change rules YAML (default: the shipped ones; see `sitewatch rules`)."
MODEL_HELP = ("Model file, or 'planetscope' for the shipped model for PlanetScope-class imagery "
              "(default: the shipped default model).")
MULTISCALE_HELP = ("Look at every place at two working sizes (fine, and twice as coarse) and fuse them: large roofs "
                   "the fine pass misses come from the coarse one (1.2-1.3x the time measured: docs/BENCHMARKS.md).")

app = typer.Typer(
    name="sitewatch",
    help="Building segmentation, footprints and change detection for sites seen from above.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def train(ctx: typer.Context) -> None:
    """Train with LightningCLI (same as 'python train.py'): sitewatch train fit --config FILE."""
    from sitewatch.training import main as train_main

    train_main(list(ctx.args))


@app.command()
def export(
    checkpoint: Annotated[Path, typer.Argument(
        help="Lightning checkpoint (.ckpt) from training, or a model file (.safetensors) to re-export.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model file to write (.safetensors).")],
    multiscale: Annotated[bool | None, typer.Option(
        "--multiscale/--single-scale", help="Make multi-scale inference (fine + coarse pass) the model's default, "
        "or one pass.", show_default="as the checkpoint says")] = None,
    multiscale_from: Annotated[float, typer.Option(
        "--multiscale-from", min=0.0, help="With --multiscale: the default coarse pass runs on inputs of at least "
        "this pixel size (m); finer inputs run one pass.")] = 0.0,
    blend_with: Annotated[Path | None, typer.Option(
        "--blend-with", help="Blend the weights with the model this checkpoint was fine-tuned from "
        "(weight-space ensembling, WiSE-FT).")] = None,
    blend_weight: Annotated[float, typer.Option(
        "--blend-weight", min=0.0, max=1.0, help="The fine-tuned share of the blend, 0-1.")] = 0.5,
) -> None:
    """Export a training checkpoint to a compact inference file (safetensors + JSON metadata)."""
    from sitewatch.checkpoint import Blend, export_model
    from sitewatch.modelfile import FusionRule

    if out.suffix != ".safetensors":
        raise SitewatchError(f"{out}: the exported model file must end in .safetensors")
    if not checkpoint.is_file():
        raise SitewatchError(f"{checkpoint}: checkpoint not found")
    if blend_with is not None and not blend_with.is_file():
        raise SitewatchError(f"{blend_with}: model to blend with not found")
    blend = Blend(blend_with, blend_weight) if blend_with is not None else None
    if multiscale_from and not multiscale:
        raise SitewatchError("--multiscale-from needs --multiscale")
    rule = FusionRule(min_input_gsd_m=multiscale_from) if multiscale else None
    # one ownership rule: an existing file is replaced only when sitewatch exported it and it is unchanged since
    inputs = [checkpoint] + ([blend_with] if blend_with is not None else [])
    check_output_files(out.parent, [out.name], inputs, command="export")
    sha = export_model(checkpoint, out, "checkpoint" if multiscale is None else rule, blend=blend)
    record_files(out.parent, [out.name], "export")
    typer.echo(f"wrote {out} (sha256 {sha})")


@app.command()
def info(model: Annotated[Path | None, typer.Argument(
        help="Model file (.safetensors or .ckpt); default: the default model.")] = None) -> None:
    """Print a model file's metadata as JSON, with the pixel sizes it works at for typical inputs."""
    from sitewatch.choice import automatic_use
    from sitewatch.modelfile import ModelMetadata, file_sha256, read_model_metadata, working_sizes_by_input
    from sitewatch.paths import model_path

    model = model_path(model)

    if model.suffix == ".ckpt":  # a training checkpoint needs torch to read
        from sitewatch.checkpoint import load_model

        loaded = load_model(model)
        metadata, sha = loaded.metadata.document, loaded.sha256
    else:
        if not model.is_file():
            raise SitewatchError(f"{model}: model file not found")
        metadata, sha = read_model_metadata(model), file_sha256(model)
    # gsd_range_m is the range of working sizes it trained at; say what an input of each size runs at (a file
    # inference would refuse is still printed, with the reason)
    try:
        working: dict | str = working_sizes_by_input(ModelMetadata.from_document(metadata, model))
    except SitewatchError as error:
        working = f"none: inference refuses this file ({error})"
    typer.echo(json.dumps({"path": str(model), "sha256": sha, **metadata,
                           "working_gsd_m_by_input_gsd_m": working,
                           "chosen_automatically_for": automatic_use(model)}, indent=2))


@app.command()
def rules() -> None:
    """Print the shipped change rules (YAML): 'sitewatch rules > my_rules.yaml', edit, pass --rules."""
    from sitewatch.paths import default_rules_path

    typer.echo(default_rules_path().read_text(), nl=False)


def _parse_bands(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise SitewatchError(f"--bands takes 1-based band numbers like 1,2,3, got '{text}'") from None


BANDS_HELP = ("1-based input bands for R,G,B, e.g. 6,4,2 (default: what the file or its Planet metadata "
              "says). One for every raster, or repeat it once per raster in the rasters' order.")
MASK_HELP = ("A raster of ground a date did not see (0 = not seen: not observed, never new or demolished). "
             "Repeat once per raster in the rasters' order; 'none' for a raster without.")
UDM_HELP = "Use the Planet usable-data mask (*_udm2.tif, UDM1) beside an image: clouds, heavy haze, shadow, snow."


def _date_options(rasters: list[Path], bands: list[str] | None, masks: list[str] | None) -> list | None:
    """Per raster, its --bands and --mask (one given for all is repeated); checked before any slow work."""
    from sitewatch.prepare import DateOptions, check_date_options

    if not bands and not masks:
        return None
    band_lists = [_parse_bands(text) for text in bands or [""]]
    mask_paths = [None if text.lower() in ("", "none", "-") else Path(text) for text in masks or [""]]
    for name, given in (("bands", band_lists), ("mask", mask_paths)):
        if len(given) not in (1, len(rasters)):
            raise SitewatchError(f"--{name} given {len(given)} times for {len(rasters)} rasters: give it once for "
                                 "all, or once per raster", setting=name)
    options = [DateOptions(band_lists[k if len(band_lists) > 1 else 0], mask_paths[k if len(mask_paths) > 1 else 0])
               for k in range(len(rasters))]
    for raster, option in zip(rasters, options, strict=True):
        check_date_options(raster, option)
    return options


def _check_positive(**values: float | None) -> None:
    """Refuse a size given on the command line that is not a positive finite number."""
    _check_sizes(values, zero_allowed=False)


def _check_not_negative(**values: float) -> None:
    """Refuse a size given on the command line that is negative or not finite."""
    _check_sizes(values, zero_allowed=True)


def _check_sizes(values: dict[str, float | None], zero_allowed: bool) -> None:
    for name, value in values.items():
        if value is None or (math.isfinite(value) and (value > 0 or (zero_allowed and value == 0))):
            continue
        need = "zero or more" if zero_allowed else "a positive number"
        raise SitewatchError(f"--{name.replace('_', '-')} must be {need}, got {value}")


def _check_work_gsd(work_gsd: float | None) -> None:
    """Refuse a working pixel size no network works at (it would mean millions of tiles, or one pixel)."""
    from sitewatch.modelfile import MAX_WORK_GSD_M, MIN_WORK_GSD_M

    if work_gsd is not None and not MIN_WORK_GSD_M <= work_gsd <= MAX_WORK_GSD_M:
        raise SitewatchError(f"--work-gsd must be {MIN_WORK_GSD_M:g}-{MAX_WORK_GSD_M:g} m, got {work_gsd:g}")


def _with_grids(looks: list) -> list:
    """The looks, once no input has an unknown pixel size (no CRS and no ``--gsd``; ground control points
    only): refused before the model loads."""
    from sitewatch.raster import no_grid_reason, open_raster

    for look in looks:
        if look.pixel_m is None:
            with open_raster(look.path) as dataset:
                reason = no_grid_reason(dataset)
            gcps = "ground control points" in reason
            raise SitewatchError(f"{look.path}: {reason}" + ("" if gcps else "; give its pixel size in metres"),
                                 setting=None if gcps else "gsd")
    return looks


def _check_threshold(threshold: float | None) -> None:
    """Refuse a probability threshold outside 0 < t < 1 (or NaN)."""
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise SitewatchError(f"--threshold must be between 0 and 1, got {threshold}")


def _check_readable(rasters: list[Path]) -> None:
    """Fail before any slow work on a raster path that does not exist or cannot be opened."""
    for raster in rasters:  # the cheap check first: no raster library needed to say this
        if not raster.exists():
            raise SitewatchError(f"{raster}: file not found")
    from sitewatch.raster import check_pixels_readable

    for raster in rasters:
        check_pixels_readable(raster)


@app.command()
def segment(
    rasters: Annotated[list[Path], typer.Argument(help="Input rasters (GeoTIFF or any GDAL format).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder; one sub-folder per raster.")],
    model: Annotated[Path | None, typer.Option(help=MODEL_HELP)] = None,
    device: Annotated[str, typer.Option(help="auto, cuda, cuda:N, mps or cpu.")] = "auto",
    backend: Annotated[str, typer.Option(
        help="auto, torch, onnx (ONNX Runtime on CPU) or onnx-int8 (the model quantized to int8, CPU).")] = "auto",
    tta: Annotated[bool, typer.Option("--tta", help=TTA_HELP)] = False,
    bands: Annotated[str | None, typer.Option(help="1-based input bands for R,G,B, e.g. 6,4,2 (default: what "
                                                   "the file or its Planet metadata says).")] = None,
    mask: Annotated[Path | None, typer.Option(help="A raster of ground not seen (0), e.g. a cloud mask.")] = None,
    udm: Annotated[bool, typer.Option("--udm/--no-udm", help=UDM_HELP)] = True,
    gsd: Annotated[float | None, typer.Option(help="Pixel size (m) of a raster without a CRS.")] = None,
    tile_size: Annotated[int | None, typer.Option(help="Tile side in model pixels (default ≤ 1024).")] = None,
    overlap: Annotated[int | None, typer.Option(help="Tile overlap, model pixels (default tile/4).")] = None,
    batch_size: Annotated[int | None, typer.Option(
        help="Tiles per forward pass (default: ~1 M model pixels per pass).")] = None,
    threshold: Annotated[float | None, typer.Option(help="Probability threshold.")] = None,
    work_gsd: Annotated[float | None, typer.Option(
        help="Ground pixel size (m) to run the model at (default: the model's rule, from the "
             "input's pixel size).")] = None,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the network (CUDA).")] = False,
    multiscale: Annotated[bool | None, typer.Option(
        "--multiscale/--single-scale", help=MULTISCALE_HELP, show_default="the model's default")] = None,
    footprints: Annotated[bool, typer.Option(help="Also write footprints.gpkg / .geojson.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Segment buildings: DIR/<stem>/probability.tif, mask.tif and footprints on each input's grid."""
    band_list = _parse_bands(bands)
    _check_positive(gsd=gsd, work_gsd=work_gsd, tile_size=tile_size, batch_size=batch_size)
    _check_work_gsd(work_gsd)
    _check_threshold(threshold)
    _check_readable(rasters)  # before torch and the model load
    _date_options(rasters, [bands] if bands else None, [str(mask)] if mask else None)
    from tqdm import tqdm

    from sitewatch.checkpoint import load_for_inference
    from sitewatch.choice import choose_model, look_at
    from sitewatch.pipeline import segment_one
    from sitewatch.predict import Predictor

    stems = [r.stem for r in rasters]
    if len({stem.casefold() for stem in stems}) != len(stems):  # case-insensitive storage: A.tif and a.tif collide
        raise SitewatchError("two input rasters have the same file name (ignoring case); their outputs would collide")
    for raster in rasters:
        check_output_dir(out / raster.stem, rasters, "segment")
    choices = [choose_model(model, [look]) for look in _with_grids([look_at(raster, gsd) for raster in rasters])]
    predictors: dict[Path, Predictor] = {}
    for raster, choice in zip(rasters, choices, strict=True):
        if choice.path not in predictors:
            predictors[choice.path] = Predictor(load_for_inference(choice.path), device=device, backend=backend,
                                                tta=tta, compile=compile, multiscale=multiscale)
        predictor = predictors[choice.path]
        _say_model(predictor, choice, raster)
        with tqdm(total=None, unit="tile", desc=raster.name, disable=True if quiet else None, leave=False) as bar:
            run = segment_one(raster, out / raster.stem, predictor, footprints=footprints, gsd_m=gsd,
                              threshold=threshold, progress=_bar_progress(bar), tile_size=tile_size,
                              overlap=overlap, batch_size=batch_size, bands=band_list, work_gsd_m=work_gsd,
                              mask=mask, use_udm=udm)
        _print_raster(raster, run, choice)


def _say_model(predictor, choice, raster: Path | None = None) -> None:  # noqa: ANN001 - Predictor, ModelChoice
    """The log line naming the network, where it runs and why it was chosen."""
    where = f"{raster.name}: " if raster is not None else ""
    how = "chosen: " if choice.automatic else ""
    typer.echo(f"{where}model {choice.label} ({predictor.model.name}) on {predictor.description}; "
               f"{how}{choice.reason}", err=True)


def _bar_progress(bar) -> Callable[[int, int], None]:
    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return progress


def _print_raster(raster: Path, run, choice) -> None:  # noqa: ANN001 - a pipeline.RasterRun, a choice.ModelChoice
    """The line of one segmented raster; a warning where no building was found, naming the network and size."""
    result = run.result
    if run.footprints == 0:
        warnings.warn(f"{raster.name}: no building found by the {choice.label} network at {result.work_gsd_m:g} m "
                      "(if buildings are visible: is the pixel size right (--gsd)? PlanetScope-class imagery is "
                      "for --model planetscope)", SitewatchWarning, stacklevel=1)
    typer.echo(
        f"{raster.name}: {result.width}×{result.height} px, {result.area_km2:.3f} km², "
        f"{result.windows} tile{'s' if result.windows != 1 else ''}, {result.seconds:.1f} s on {result.device}, "
        f"model at {result.work_gsd_m:g} m, buildings {100 * result.building_share:.1f}%"
        + (f", {run.footprints} footprints" if run.footprints is not None else "") + f" -> {result.out_dir}"
        + (" (no georeference: footprints.gpkg in metres from the top-left corner, no footprints.geojson)"
           if run.footprints is not None and not run.geojson else "")
    )


@app.command()
def vectorize(
    raster: Annotated[Path, typer.Argument(help="A mask (0/1, nodata 255) or probability raster.")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default: beside the raster).")] = None,
    probability: Annotated[Path | None, typer.Option(help="Probability raster for splitting.")] = None,
    min_area: Annotated[float, typer.Option(help="Drop buildings below this area (m²).")] = 10.0,
    simplify: Annotated[float, typer.Option(help="Simplification tolerance (m).")] = 0.5,
    regularize: Annotated[bool, typer.Option(help="Square rectilinear buildings.")] = True,
    split: Annotated[bool, typer.Option(help="Split touching buildings (watershed).")] = True,
    threshold: Annotated[float | None, typer.Option(
        help="Threshold for a probability raster (default 0.5).")] = None,
    gsd: Annotated[float | None, typer.Option(help="Pixel size (m) of a raster without a CRS.")] = None,
) -> None:
    """Turn a mask or probability raster into footprints.gpkg (its CRS) and footprints.geojson."""
    _check_not_negative(min_area=min_area, simplify=simplify)
    _check_positive(gsd=gsd)
    _check_threshold(threshold)
    _check_readable([raster] + ([probability] if probability else []))
    from sitewatch.footprints import FootprintOptions, vectorize_raster, write_footprints
    from sitewatch.products import DEFAULT_THRESHOLD

    folder = out or raster.parent
    names = ["footprints.gpkg", "footprints.geojson"]
    check_output_files(folder, names, [raster] + ([probability] if probability else []))
    options = FootprintOptions(min_area_m2=min_area, simplify_m=simplify, regularize=regularize,
                               split_touching=split, threshold=DEFAULT_THRESHOLD if threshold is None else threshold)
    frame = vectorize_raster(raster, probability, options, gsd_m=gsd)
    write_footprints(frame, folder / names[0], folder / names[1] if frame.crs is not None else None)
    record_files(folder, names, "vectorize")
    typer.echo(f"{raster.name}: {len(frame)} footprints, {frame['area_m2'].sum():.0f} m² "
               f"-> {folder / 'footprints.gpkg'}")


@app.command()
def evaluate(
    predicted: Annotated[Path, typer.Argument(help="Predicted mask (.tif/.png) or footprints (.gpkg/.geojson).")],
    reference: Annotated[Path, typer.Argument(help="Reference mask, or footprints (any vector file, any CRS).")],
    out: Annotated[Path | None, typer.Option(help="Write scores.json and per-building IoU here.")] = None,
    iou: Annotated[float, typer.Option(help="Object match IoU threshold.")] = 0.5,
    gsd: Annotated[float | None, typer.Option(help="Pixel size (m) of masks without a CRS.")] = None,
) -> None:
    """Pixel IoU/F1/precision/recall and SpaceNet object F1 against a reference mask or footprints.

    Pixel scores need a predicted mask; footprints given as the reference are burned onto its grid.
    """
    if not 0.0 < iou <= 1.0:
        raise SitewatchError(f"--iou must be in (0, 1], got {iou}")
    _check_positive(gsd=gsd)
    from sitewatch.evaluate import evaluate_paths

    report = evaluate_paths(predicted, reference, out=out, iou_threshold=iou, gsd_m=gsd)
    typer.echo(json.dumps(report, indent=2))


@app.command("evaluate-change")
def evaluate_change(
    site_dir: Annotated[Path, typer.Argument(help="Output folder of `sitewatch change`.")],
    reference: Annotated[Path, typer.Argument(
        help="Change mask (255 = change) on the first raster's grid, or footprints of every date "
             "(a vector file with date and id columns) for SCOT.")],
    grid: Annotated[Path, typer.Option(help="Raster giving the mask's grid (default: the mask itself).")] = None,
    iou: Annotated[float | None, typer.Option(
        help="Object match IoU threshold (default 0.5; SCOT: 0.25).")] = None,
) -> None:
    """Change scores against a LEVIR-style change mask, or SCOT against a labelled time series."""
    if iou is not None and not 0.0 < iou <= 1.0:
        raise SitewatchError(f"--iou must be in (0, 1], got {iou}")
    from sitewatch.evaluate import VECTOR_SUFFIXES, change_scores_paths, scot_scores

    if reference.suffix.lower() in VECTOR_SUFFIXES or ":" in reference.name:
        report = scot_scores(site_dir, reference, **({"iou_threshold": iou} if iou else {}))
    else:
        report = change_scores_paths(site_dir, reference, grid, iou or 0.5)
    typer.echo(json.dumps(report, indent=2))


def _print_site(summary: SiteSummary, out: Path) -> None:
    counts = ", ".join(f"{v} {k}" for k, v in summary.counts.as_dict().items())
    flags = ", ".join(f"{v} {k}" for k, v in summary.flags.as_dict().items())
    typer.echo(f"{summary.site} {summary.dates[0]} → {summary.dates[-1]}: {counts}; flags: {flags} "
               f"-> {out / 'report.html'}")


@app.command()
def change(
    rasters: Annotated[list[Path], typer.Argument(help="The site at two or more dates.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for this site.")],
    dates: Annotated[str | None, typer.Option(help="ISO dates, comma-separated, one per raster.")] = None,
    site: Annotated[str | None, typer.Option(help="Site name for the report (default: folder name).")] = None,
    rules: Annotated[Path | None, typer.Option(help=RULES_HELP)] = None,
    model: Annotated[Path | None, typer.Option(help=MODEL_HELP)] = None,
    device: Annotated[str, typer.Option(help="auto, cuda, cuda:N, mps or cpu.")] = "auto",
    backend: Annotated[str, typer.Option(help="auto, torch, onnx or onnx-int8.")] = "auto",
    work_gsd: Annotated[float | None, typer.Option(
        help="Ground pixel size (m) to run the model at (default: the model's rule, from the "
             "coarsest date's pixel size).")] = None,
    multiscale: Annotated[bool | None, typer.Option(
        "--multiscale/--single-scale", help=MULTISCALE_HELP, show_default="the model's default")] = None,
    tta: Annotated[bool, typer.Option("--tta", help=TTA_HELP)] = False,
    bands: Annotated[list[str] | None, typer.Option(help=BANDS_HELP)] = None,
    mask: Annotated[list[str] | None, typer.Option(help=MASK_HELP)] = None,
    udm: Annotated[bool, typer.Option("--udm/--no-udm", help=UDM_HELP)] = True,
) -> None:
    """What was built, enlarged or demolished between dates; flags new halls, housing and land cleared."""
    from sitewatch.rules import ChangeRules

    change_rules = ChangeRules.from_yaml(rules) if rules else ChangeRules.default()
    date_list = dates.split(",") if dates else None
    _check_positive(work_gsd=work_gsd)
    _check_work_gsd(work_gsd)
    _check_readable(rasters)  # before torch and the model load
    check_output_dir(out, rasters)
    from sitewatch.prepare import order_site

    options = _date_options(rasters, bands, mask)
    order_site(rasters, date_list, options)  # bands, masks and dates, before the model loads
    from sitewatch.choice import choose_model, look_at

    choice = choose_model(model, [look_at(raster) for raster in rasters])
    from sitewatch.checkpoint import load_for_inference
    from sitewatch.pipeline import run_site
    from sitewatch.predict import Predictor

    predictor = Predictor(load_for_inference(choice.path), device=device, backend=backend, tta=tta,
                          multiscale=multiscale)
    _say_model(predictor, choice)
    result = run_site(rasters, out, predictor, site=site, dates=date_list, rules=change_rules,
                      progress=lambda message: typer.echo(message, err=True), work_gsd_m=work_gsd,
                      options=options, use_udm=udm, model_choice=choice)
    _print_site(result.summary, out)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("demo_out"),
    device: Annotated[str, typer.Option(help="auto, cuda, cuda:N, mps or cpu.")] = "auto",
) -> None:
    """Run 'change' on the shipped sample site with the shipped model."""
    from sitewatch.paths import DEMO_SITE

    rasters = sorted(DEMO_SITE.glob("*.tif"))
    if len(rasters) < 2:
        raise SitewatchError(f"{DEMO_SITE}: demo site rasters missing from this installation")
    change(rasters=rasters, out=out, dates=None, site=DEMO_SITE.name, rules=None, model=None,
           device=device, backend="auto", work_gsd=None, bands=None, mask=None, udm=True)


def _check_site_options(manifest: Path, site) -> None:  # noqa: ANN001 - a batch.Site
    """A site's bands fit its rasters and its masks are readable, before any work."""
    from sitewatch.prepare import check_date_options

    for raster, option in zip(site.rasters, site.date_options() or [], strict=False):
        try:
            check_date_options(raster, option)
        except SitewatchError as error:
            raise SitewatchError(f"{manifest}: site {site.id}: {error}", error.setting) from None


def _batch_inputs(manifest: Path, out: Path, executor: str, workers: int, ray_address: str | None,
                  strict_paths: bool, rules: Path | None, bands: str | None = None,
                  udm: bool = True) -> tuple[list, object]:
    """Every check of a batch before any work or deletion: options, manifest, rules, output folders."""
    from sitewatch.batch import SUMMARY_FILES, check_ray_address, check_workers, read_manifest
    from sitewatch.rules import ChangeRules

    if executor not in {"local", "ray"}:
        raise SitewatchError(f"--executor must be local or ray, not '{executor}'")
    check_workers(workers)
    if executor == "ray" and ray_address:
        check_ray_address(ray_address)
    sites = read_manifest(manifest, strict_paths=strict_paths)
    for site in sites:  # the command's --bands and --no-udm for sites that say nothing
        site.bands = site.bands or ([_parse_bands(bands)] if bands else None)
        site.udm = site.udm and udm
        _check_site_options(manifest, site)
    base_rules = ChangeRules.from_yaml(rules) if rules else ChangeRules.default()
    check_output_files(out, SUMMARY_FILES, [manifest], command="batch")
    for site in sites:
        check_output_dir(out / site.id, site.rasters)
    return sites, base_rules


@app.command()
def batch(
    manifest: Annotated[Path, typer.Argument(help="YAML or CSV manifest of sites and their dated rasters.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder; one sub-folder per site.")],
    executor: Annotated[str, typer.Option(help="local, or ray (the 'distributed' extra).")] = "local",
    workers: Annotated[int, typer.Option(help="Ray workers started locally.")] = 2,
    ray_address: Annotated[str | None, typer.Option(help="Address of an existing Ray cluster.")] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Skip sites whose outputs are current.")] = True,
    strict_paths: Annotated[bool, typer.Option("--strict-paths", help="Refuse paths outside the manifest.")] = False,
    rules: Annotated[Path | None, typer.Option(help=RULES_HELP)] = None,
    model: Annotated[Path | None, typer.Option(help=MODEL_HELP)] = None,
    device: Annotated[str, typer.Option(help="auto, cuda, cuda:N, mps or cpu.")] = "auto",
    backend: Annotated[str, typer.Option(help="auto, torch, onnx or onnx-int8.")] = "auto",
    bands: Annotated[str | None, typer.Option(help="1-based bands for R,G,B of every raster of sites whose "
                                                   "manifest entry names none, e.g. 6,4,2.")] = None,
    udm: Annotated[bool, typer.Option("--udm/--no-udm", help=UDM_HELP)] = True,
) -> None:
    """Run `change` for every site of a manifest; DIR/batch_summary.json and .csv list them all."""
    from tqdm import tqdm

    from sitewatch.batch import SiteRow, run_local, run_ray, write_batch_summary
    from sitewatch.checkpoint import load_for_inference
    from sitewatch.choice import choose_model, look_at_site
    from sitewatch.outputs import remove_owned

    sites, base_rules = _batch_inputs(manifest, out, executor, workers, ray_address, strict_paths, rules, bands, udm)
    choices = {site.id: choose_model(model, look_at_site(site.rasters)) for site in sites}
    for path in {choice.path for choice in choices.values()}:
        load_for_inference(path)  # a bad model fails before any site starts
    for site in sites:
        typer.echo(f"{site.id}: model {choices[site.id].label}: {choices[site.id].reason}", err=True)
    if not resume:
        for site in sites:
            remove_owned(out / site.id)  # only what sitewatch wrote; the user's files stay
    bar = tqdm(total=len(sites), unit="site", disable=None, position=0)
    windows = tqdm(total=0, unit="tile", disable=None, position=1, leave=False)

    def done(row: SiteRow) -> None:
        bar.update(1)
        bar.set_postfix_str(f"{row.site}: {row.status}")

    def window_done(count: int, total: int) -> None:
        windows.total, windows.n = total, count
        windows.refresh()

    if executor == "ray":
        rows = run_ray(sites, out, choices, device, backend, base_rules, done, workers, ray_address)
    else:
        rows = run_local(sites, out, choices, device, backend, base_rules, done, window_done)
    windows.close()
    bar.close()
    write_batch_summary(out, rows)
    for row in rows:
        detail = row.reason if row.status == "failed" else ", ".join(
            f"{v} {k}" for k, v in row.counts_and_flags().items() if v)
        typer.echo(f"{row.site}: {row.status} ({detail}) {row.seconds:.1f} s")
    failed = sum(row.status == "failed" for row in rows)
    typer.echo(f"{len(rows) - failed} of {len(rows)} sites ok -> {out / 'batch_summary.json'}")
    if failed:
        raise typer.Exit(1)


#: Libraries whose exceptions mean a file could not be read or written (GDAL, OGR).
_IO_LIBRARIES = {"rasterio", "pyogrio", "fiona"}


def _click_exceptions() -> tuple[type[Exception], type[BaseException], type[BaseException]]:
    """The ClickException, Abort and Exit classes of the click that typer really uses.

    Recent typer releases (0.29 here) carry their own copy of click (``typer._click``): catching ``click``'s classes
    would miss every usage error, so the classes are taken from typer's own exports.
    """
    click_exception = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")
    return click_exception, typer.Abort, typer.Exit


def _fail(message: str, code: int = 2) -> None:
    print(f"sitewatch: error: {message}", file=sys.stderr)
    sys.exit(code)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """A stage's :class:`SitewatchWarning` as one ``sitewatch: warning:`` line; others as Python shows them."""
    if issubclass(category, SitewatchWarning):
        print(f"sitewatch: warning: {' '.join(str(message).split())}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def with_option(error: SitewatchError) -> str:
    """The error's line, naming the command-line option of the setting at fault when it has one."""
    if error.setting is None:
        return str(error)
    return f"{error} (--{error.setting.replace('_', '-')})"


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point with one-line errors and meaningful exit codes.

    User mistakes and usage errors print one ``sitewatch: error:`` line and exit 2; Ctrl-C
    exits 130; an unwritable folder or a full disk is one line too.
    """
    click_exception, abort, exit_ = _click_exceptions()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", SitewatchWarning)
            # rasterio's NotGeoreferencedWarning (a multi-line traceback each time a PNG opens): sitewatch says it once
            warnings.filterwarnings("ignore", message="Dataset has no geotransform")
            warnings.showwarning = _show_warning
            code = app(args=argv, prog_name="sitewatch", standalone_mode=False)
        if isinstance(code, int) and code:
            if code == 130:  # typer turns Ctrl-C into this exit code
                print("sitewatch: interrupted", file=sys.stderr)
            sys.exit(code)
    except SitewatchError as error:
        _fail(with_option(error), error.exit_code)
    except (abort, KeyboardInterrupt):
        print("sitewatch: interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as error:  # unwritable folder, disk full, vanished file: the user's machine
        where = f"{error.filename}: " if getattr(error, "filename", None) else ""
        reason = error.strerror or (str(error).splitlines()[0] if str(error) else type(error).__name__)
        _fail(f"{where}{reason}")
    except click_exception as error:
        if not error.format_message().strip():  # bare `sitewatch`: the help was printed, nothing went wrong
            sys.exit(0)
        context = getattr(error, "ctx", None)
        command = context.command_path if context is not None else "sitewatch"
        _fail(f"{' '.join(error.format_message().split())} (see '{command} --help')", error.exit_code or 2)
    except exit_ as error:
        sys.exit(error.exit_code)
    except Exception as error:  # noqa: BLE001 - sorted below: GDAL/OGR I/O failures are the machine's
        if type(error).__module__.split(".")[0] not in _IO_LIBRARIES:
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        _fail(f"reading or writing a geodata file failed (disk full, unreadable or locked file?): {message}")


if __name__ == "__main__":
    main()
