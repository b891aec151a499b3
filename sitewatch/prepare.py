"""Preparing a site's dates, before any segmentation: the stage from rasters to aligned rasters.

* order: every raster's date (given, acquisition-date tag, or ISO date in the file name), the
  rasters sorted by it, the same band count at every date;
* alignment: every later raster must overlap the first and is warped onto the first one's grid
  (CRS, transform, size);
* registration: the residual shift of each later date against the first is measured on the
  imagery by phase correlation; the change stage moves footprints back by it;
* bands: which bands of each date are red, green, blue (``--bands`` per date, else what the file
  and its Planet metadata say: :func:`sitewatch.radiometry.band_choice`); a 4-band and an
  8-band date, or SkySat and PlanetScope, are one series. Every date's copy on the site's grid
  names its bands in its band descriptions, so every later stage reads the same bands;
* masks: ground a date did not see beyond its nodata: a Planet usable-data mask beside the image
  (``*_udm2.tif``: cloud, heavy haze, shadow, snow and unusable pixels; UDM1: any flag), a
  ``--mask`` raster (0 = not seen) and a GDAL ``.msk`` sidecar, as a *ground mask* on the site's
  grid (255 seen, 0 not seen) that segmentation treats as nodata: not observed, never new or
  demolished.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import CRS
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.warp import Resampling, reproject, transform_bounds
from scipy import ndimage

from sitewatch.dates import date_sources, resolve_dates
from sitewatch.errors import SitewatchError, SitewatchWarning
from sitewatch.planet import UDM2_UNSEEN, UDM2_UNUSABLE_BAND, is_udm2, scene_info, usable_data_mask
from sitewatch.radiometry import RGB, BandChoice, band_choice
from sitewatch.raster import is_georeferenced, no_grid_reason, open_raster, overview_shape, pixel_size_xy_m
from sitewatch.rotation import ROTATION_PX, Turn, measure_rotation
from sitewatch.rules import ChangeRules
from sitewatch.summary import ShiftRecord

#: Longest side (px) of the grey images the shift is measured on.
REGISTRATION_PX = 2048


@dataclass
class Shift:
    """Residual misregistration of a later date against the first (pixels, metres)."""

    dx_px: float = 0.0
    dy_px: float = 0.0
    response: float = 0.0
    applied: bool = False
    dx_m: float = 0.0
    dy_m: float = 0.0
    rotation_deg: float = 0.0  # turned back before the shift was measured (clockwise; sitewatch.rotation)

    def inverse(self) -> Shift:
        """The opposite shift (to move first-date footprints onto a later date's pixels)."""
        return Shift(-self.dx_px, -self.dy_px, self.response, self.applied, -self.dx_m, -self.dy_m, self.rotation_deg)

    def record(self) -> ShiftRecord:
        """The shift as reported (pixels and metres rounded to 3 decimals)."""
        return ShiftRecord(*(round(v, 3) if isinstance(v, float) else v for v in
                             (self.dx_px, self.dy_px, self.response, self.applied, self.dx_m, self.dy_m,
                              self.rotation_deg)))


@dataclass(frozen=True)
class DateOptions:
    """What the analyst says about one raster: the bands for red, green, blue (``--bands``) and a
    mask raster (``--mask``: 0 = ground not seen)."""

    bands: list[int] | None = None
    mask: Path | None = None


@dataclass
class DateImage:
    """What preparation found out about one date's image (``summary.json`` records it).

    Attributes:
        bands: the bands used for red, green, blue and how they were known.
        nir_band: the 1-based near-infrared band of the date's copy on the site's grid, if any.
        pixel_m: the image's own ground pixel size (m), before it was put on the site's grid.
        masks: the mask files used (usable-data mask, ``--mask``, ``.msk``).
        mask_removed: share (0-1) of the site's ground each mask class removed at this date.
        provenance: the Planet metadata (:meth:`sitewatch.planet.SceneInfo.provenance`).
    """

    bands: BandChoice
    nir_band: int | None
    pixel_m: float
    masks: list[str] = field(default_factory=list)
    mask_removed: dict[str, float] = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    cloud_like: float = 0.0  # share (0-1) of the site bright and colourless at this date only, no mask given


@dataclass
class PreparedSite:
    """A site's dates on one grid, ready for segmentation.

    Attributes:
        rasters: the input rasters, sorted by date.
        dates: their dates, ascending.
        aligned: per date, the raster on the first raster's grid (the first is the input itself).
        crs, transform, shape: that grid (shape in rows, columns).
        pixel_m: its ground pixel size along x and y in metres.
        shifts: per later date, the shift measured against the first date.
        date_sources: where each date came from (``given``, ``tag …``, ``file name``).
        images: per date, its bands, own pixel size, masks and provenance.
        ground_masks: per date, its ground mask on the site's grid (255 seen, 0 not seen), or None.
    """

    rasters: list[Path]
    dates: list[dt.date]
    aligned: list[Path]
    crs: CRS
    transform: Affine
    shape: tuple[int, int]
    pixel_m: tuple[float, float]
    shifts: list[Shift]
    date_sources: list[str]
    images: list[DateImage] = field(default_factory=list)
    ground_masks: list[Path | None] = field(default_factory=list)

    @property
    def coarsest_pixel_m(self) -> float:
        """The largest own pixel size (m) of the site's dates: what every date can resolve."""
        return max((image.pixel_m for image in self.images), default=float(np.sqrt(self.pixel_m[0] * self.pixel_m[1])))


def order_by_date(rasters: list[Path], dates: list[str] | None) -> tuple[list[Path], list[dt.date]]:
    """The rasters sorted by date, with their dates; checks there are two or more with known bands."""
    rasters, when, _ = order_site(rasters, dates, None)
    return rasters, when


def order_site(rasters: list[Path], dates: list[str] | None, options: list[DateOptions] | None
               ) -> tuple[list[Path], list[dt.date], list[DateOptions]]:
    """The rasters sorted by date, with their dates and options (one per raster, in the rasters' order;
    one for all is repeated).

    Checked before any slow work: two or more rasters, each one's bands (``--bands`` in range), its
    mask raster readable, its date.
    """
    rasters = [Path(r) for r in rasters]
    if len(rasters) < 2:
        raise SitewatchError("change detection needs rasters of at least two dates (got one)")
    options = list(options) if options else [DateOptions()] * len(rasters)
    options = options * len(rasters) if len(options) == 1 else options
    if len(options) != len(rasters):
        raise SitewatchError(f"{len(options)} band or mask choices for {len(rasters)} rasters: give one for "
                             "every raster, or one for all", setting="bands")
    for path, option in zip(rasters, options, strict=True):
        check_date_options(path, option)
    when = resolve_dates(rasters, dates)
    order = np.argsort(when)
    return [rasters[i] for i in order], [when[i] for i in order], [options[i] for i in order]


def check_date_options(path: Path, option: DateOptions) -> BandChoice:
    """A raster's band choice (an error for bands it does not have) and its mask raster (readable)."""
    with open_raster(path) as dataset:
        try:
            choice = band_choice(dataset, list(RGB), option.bands)
        except SitewatchError as error:
            raise SitewatchError(str(error).replace(str(dataset.name), str(path)), error.setting) from None
    if option.mask is not None:
        if not Path(option.mask).is_file():
            raise SitewatchError(f"{option.mask}: mask raster not found", setting="mask")
        check_mask(Path(option.mask), path, generic=True)
    return choice


def check_mask(mask: Path, image: Path, generic: bool) -> None:
    """Refuse a mask raster that would be read wrongly for ``image``: one without georeferencing unless it is
    on the image's own pixel grid (same size), one covering none of the image (another scene, place or CRS),
    and, for a ``--mask`` (``generic``), one of more than two values (a cloud probability is no 0/1 mask)."""
    with open_raster(mask) as layer, open_raster(image) as picture:
        if not is_georeferenced(layer):
            if (layer.width, layer.height) != (picture.width, picture.height):
                raise SitewatchError(
                    f"{mask}: no georeferencing, and {layer.width}×{layer.height} px where {image.name} is "
                    f"{picture.width}×{picture.height}; georeference the mask or give one on the image's own pixel "
                    "grid", setting="mask")
        elif is_georeferenced(picture):
            bounds = transform_bounds(layer.crs, picture.crs, *layer.bounds, densify_pts=21)
            if shapely.box(*bounds).intersection(shapely.box(*picture.bounds)).area <= 0:
                raise SitewatchError(f"{mask}: covers none of {image.name} (a mask of another scene, place or "
                                     "CRS?)", setting="mask")
        if generic:
            scale = max(1.0, max(layer.width, layer.height) / 1024)
            sample = layer.read(1, out_shape=(max(1, int(layer.height / scale)), max(1, int(layer.width / scale))))
            values = np.unique(sample[~np.isnan(sample)] if sample.dtype.kind == "f" else sample)
            if layer.nodata is not None:
                values = values[values != layer.nodata]  # outside the mask's own footprint: no value
            if values.tolist() == [0]:
                raise SitewatchError(f"{mask}: is 0 everywhere: {image.name} would have seen none of its ground; "
                                     "nothing to compare at this date (leave it out of the series)", setting="mask")
            if len(values) > 2:
                raise SitewatchError(
                    f"{mask}: holds {len(values)} different values ({values.min():g}-{values.max():g}); a mask is 0 "
                    "where the date did not see the ground and one other value where it did (a cloud probability "
                    "is not a mask: write 0 where it is too high, 1 elsewhere)", setting="mask")


def prepare_site(rasters: list[Path], dates: list[dt.date], rules: ChangeRules, workdir: Path,
                 progress: Callable[[str], None], dates_given: bool = False,
                 options: list[DateOptions] | None = None, use_udm: bool = True) -> PreparedSite:
    """Every date's red, green, blue (and NIR) bands on the first raster's grid (GeoTIFFs in ``workdir``),
    its ground mask, and the shifts.

    Args:
        rasters: the site's rasters sorted by date (see :func:`order_site`).
        dates: their dates.
        rules: ``max_shift_px``, ``max_shift_m`` and ``min_shift_response`` decide whether a shift is applied.
        workdir: folder for the rasters on the site's grid.
        progress: called with a short message before each warp.
        options: per date, its ``--bands`` and ``--mask`` (None: none given).
        use_udm: use the Planet usable-data mask beside an image.
    """
    options = options or [DateOptions()] * len(rasters)
    workdir.mkdir(parents=True, exist_ok=True)
    with open_raster(rasters[0]) as first:
        if not is_georeferenced(first):
            raise SitewatchError(f"{rasters[0]}: {no_grid_reason(first)}; change detection needs "
                                 "georeferenced rasters")
        with north_up(first) as reference:
            return _prepare_on(reference, rasters, dates, rules, workdir, progress, dates_given, options, use_udm)


@contextmanager
def north_up(dataset: rasterio.DatasetReader) -> Iterator[rasterio.DatasetReader | WarpedVRT]:
    """The site's grid: the first raster's own when it is north-up, else the north-up grid GDAL gives it in
    the same CRS (a south-up or rotated first date is warped like every other date, never misread)."""
    transform = dataset.transform
    if transform.b == 0 and transform.d == 0 and transform.a > 0 and transform.e < 0:
        yield dataset
        return
    with WarpedVRT(dataset, resampling=Resampling.bilinear) as vrt:
        yield vrt


def _prepare_on(reference: rasterio.DatasetReader | WarpedVRT, rasters: list[Path], dates: list[dt.date],
                rules: ChangeRules, workdir: Path, progress: Callable[[str], None], dates_given: bool,
                options: list[DateOptions], use_udm: bool) -> PreparedSite:
    """:func:`prepare_site` on the site's north-up grid ``reference`` (the first raster's)."""
    aligned, images, grounds, turns = [], [], [], []
    first_grey = np.zeros((0, 0), np.float32)
    for k, (path, option) in enumerate(zip(rasters, options, strict=True)):
        with open_raster(path) as other:
            if k:
                check_overlap(reference, other, rasters[0].name)
            choice = check_date_options(path, option)
            pixel_m = float(np.sqrt(np.prod(pixel_size_xy_m(other))))
        progress(f"aligning {path.name} onto {rasters[0].name}" if k else f"reading {path.name}")
        target = workdir / f"{k}_{path.stem}.tif"
        warp_onto(reference, path, target, choice)
        check_has_data(target, path)
        if k == 1:  # the first date's grey image, read once for every later date's turn
            first_grey = grey_image(aligned[0], ROTATION_PX)[0]
        turn = measure_turn(reference, first_grey, target, rules) if k else None
        if turn is not None:
            progress(f"turning {path.name} back by {turn.rotation.degrees:+.2f} deg onto {rasters[0].name}")
            warp_onto(reference, path, target, choice, turn)
            check_has_data(target, path)
        turns.append(turn)
        ground, masks, removed = ground_mask(reference, path, option, use_udm, workdir / f"{k}_ground.tif", turn)
        check_some_ground_seen(path, removed)
        aligned.append(target)
        grounds.append(ground)
        images.append(DateImage(choice, 4 if choice.has_nir() else None, round(pixel_m, 3), masks, removed,
                                scene_info(path).provenance()))
        _warn_guessed(path, choice)
    pixel_m = pixel_size_xy_m(reference)
    say_cloud_like(rasters, aligned, images, float(np.sqrt(pixel_m[0] * pixel_m[1])))
    grid = (CRS.from_user_input(reference.crs), reference.transform, (reference.height, reference.width))
    shifts = registration_shifts(aligned, rules, pixel_m, rasters)
    for shift, turn in zip(shifts, turns[1:], strict=True):
        shift.rotation_deg = turn.rotation.degrees if turn else 0.0
    return PreparedSite(rasters, dates, aligned, *grid, pixel_m, shifts, date_sources(rasters, dates_given), images,
                        grounds)


#: Ground bright and colourless at one date only (clouds, or a new white roof): the thresholds of
#: :func:`cloud_like_share` on the 1-99 % stretched mean of red, green, blue (0-1) and its chroma.
CLOUD_LIKE_BRIGHT, CLOUD_LIKE_BRIGHTENED, CLOUD_LIKE_CHROMA = 0.7, 0.25, 0.12
#: Smallest patch (m²) and softest edge (brightening just outside ÷ inside) of a cloud-like patch.
CLOUD_LIKE_MIN_M2, CLOUD_LIKE_SOFT = 5000.0, 0.35
#: A date without a mask whose cloud-like ground reaches this share of the site is said (never masked: a
#: detector that cannot tell a cloud from a new white roof must not hide ground; docs/RELIABILITY.md).
CLOUD_LIKE_WARN_SHARE = 0.02


def _stretched_brightness(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """A date's copy decimated to at most 1,024 px: mean brightness and chroma (1-99 % stretch over the ground it
    saw, 0-1), where it has data, and the decimation factor."""
    with rasterio.open(path) as dataset:
        scale = max(1.0, max(dataset.width, dataset.height) / 1024)
        shape = (max(1, int(dataset.height / scale)), max(1, int(dataset.width / scale)))
        count = min(3, dataset.count)
        values = dataset.read(list(range(1, count + 1)), out_shape=(count, *shape),
                              resampling=Resampling.average).astype(np.float32)
        valid = dataset.dataset_mask(out_shape=shape, resampling=Resampling.nearest) > 0
    low, high = np.percentile(values[:, valid], (1, 99)) if valid.any() else (0.0, 1.0)
    values = np.clip((values - low) / max(float(high - low), 1e-6), 0, 1)
    chroma = (values.max(axis=0) - values.min(axis=0)) / (values.max(axis=0) + 1e-3)
    return values.mean(axis=0), chroma, valid, scale


def cloud_like_share(date: Path, others: list[Path], pixel_m: float,
                     looks: dict[Path, tuple] | None = None) -> float:
    """Share (0-1) of the site in soft-edged patches of at least :data:`CLOUD_LIKE_MIN_M2` that are bright,
    colourless and much brighter than at every other date, where every date has data (on decimated copies;
    ``pixel_m``: the site's pixel; ``looks``: :func:`_stretched_brightness` of each path, read once)."""
    looks = looks if looks is not None else {}
    for path in [date, *others]:
        if path not in looks:
            looks[path] = _stretched_brightness(path)
    bright, chroma, valid, scale = looks[date]
    dimmest = np.min([looks[other][0] for other in others], axis=0)
    for other in others:
        valid = valid & looks[other][2]
    brightened = np.where(valid, bright - dimmest, 0.0)
    like = ndimage.binary_opening(valid & (bright >= CLOUD_LIKE_BRIGHT) & (chroma <= CLOUD_LIKE_CHROMA)
                                  & (brightened >= CLOUD_LIKE_BRIGHTENED))
    labels, _ = ndimage.label(like)
    cloud = np.zeros_like(like)
    for index, window in enumerate(ndimage.find_objects(labels), start=1):
        rows, cols = (slice(max(part.start - 4, 0), part.stop + 4) for part in window)  # room for the edge ring
        patch = labels[rows, cols] == index
        if patch.sum() * (pixel_m * scale) ** 2 < CLOUD_LIKE_MIN_M2:
            continue
        # a cloud's edge is soft: just outside the patch the ground is still brighter than at the other date
        ring = ndimage.binary_dilation(patch, iterations=3) & ~ndimage.binary_dilation(patch)
        inside = float(brightened[rows, cols][patch].mean())
        if ring.any() and float(brightened[rows, cols][ring].mean()) >= CLOUD_LIKE_SOFT * inside:
            cloud[rows, cols] |= patch
    return float(cloud.mean())


def say_cloud_like(rasters: list[Path], aligned: list[Path], images: list[DateImage], pixel_m: float) -> None:
    """Record on each date without a mask how much of the site looks like cloud, and warn from a few percent."""
    looks: dict[Path, tuple] = {}  # each date's copy read once
    for k, image in enumerate(images):
        if image.masks or len(aligned) < 2:
            continue
        others = [path for j, path in enumerate(aligned) if j != k]
        image.cloud_like = round(cloud_like_share(aligned[k], others, pixel_m, looks), 4)
        if image.cloud_like >= CLOUD_LIKE_WARN_SHARE:
            warnings.warn(f"{rasters[k]}: {100 * image.cloud_like:.0f} % of the site is bright and colourless at this "
                          "date only and no usable-data mask was given: clouds? A cloud reads as ground (land cleared, "
                          "buildings lost); give the UDM2 or a cloud mask (--mask)", SitewatchWarning, stacklevel=3)


#: A date whose masks leave less of the site seen than this share has nothing to compare: refused, not
#: diffed into "every building gone" (issue 33: a fully clouded date emptied every earlier count).
MIN_SEEN_SHARE = 0.01


def check_some_ground_seen(path: Path, removed: dict[str, float]) -> None:
    """Refuse a date whose masks (UDM2, ``--mask``, its mask band) leave almost none of the site seen."""
    if 1.0 - removed.get("all", 0.0) >= MIN_SEEN_SHARE:
        return
    classes = ", ".join(f"{name} {100 * share:.0f} %" for name, share in removed.items() if name != "all" and share)
    raise SitewatchError(f"{path}: its masks leave {100 * (1 - removed['all']):.1f} % of the site seen ({classes}): "
                         "nothing to compare at this date; leave it out of the series", setting="mask")


def _warn_guessed(path: Path, choice: BandChoice) -> None:
    if choice.guessed:
        warnings.warn(f"{path}: bands {choice.describe()}", SitewatchWarning, stacklevel=3)


def check_overlap(reference: rasterio.DatasetReader | WarpedVRT, other: rasterio.DatasetReader,
                  reference_name: str = "the site's first raster") -> float:
    """Share (0-1) of the reference footprint covered by ``other``; error if they do not meet."""
    if not is_georeferenced(other):
        raise SitewatchError(f"{other.name}: {no_grid_reason(other)}; change detection needs georeferenced rasters")
    bounds = transform_bounds(other.crs, reference.crs, *other.bounds, densify_pts=21)
    ref = shapely.box(*reference.bounds)
    share = shapely.box(*bounds).intersection(ref).area / ref.area
    if share <= 0:
        raise SitewatchError(f"{other.name}: does not overlap {reference_name}")
    return share


def check_has_data(aligned: Path, source: Path) -> None:
    """Refuse, before any segmentation, a date with no valid pixel on the site's ground (naming its file)."""
    with rasterio.open(aligned) as dataset:
        mask = dataset.dataset_mask(out_shape=overview_shape(dataset, 512), resampling=Resampling.nearest)
    if not mask.any():
        raise SitewatchError(f"{source}: every pixel is nodata where it overlaps the first date")


def warp_onto(reference: rasterio.DatasetReader, source: Path, target: Path, choice: BandChoice | None = None,
              turn: Turn | None = None) -> None:
    """Write ``source``'s red, green, blue (and NIR) bands resampled onto ``reference``'s grid (CRS,
    transform, size) as a GeoTIFF whose band descriptions name them (``red, green, blue[, nir]``;
    grey imagery: its one band, ``pan``).

    ``choice``: the bands to take (default: :func:`sitewatch.radiometry.band_choice` of the file);
    ``turn``: a rotation of the source against the first date, turned back in the same resampling.
    A read failure (a truncated file) is an error naming ``source``.
    """
    try:
        _warp(reference, source, target, choice, turn)
    except RasterioIOError as error:
        raise SitewatchError(f"{source}: read failed, file corrupt or truncated ({error})") from None


def _warp(reference: rasterio.DatasetReader, source: Path, target: Path, choice: BandChoice | None,
          turn: Turn | None) -> None:
    with rasterio.open(source) as dataset:
        choice = choice or band_choice(dataset, list(RGB), None)
        grey = len(set(choice.bands)) == 1  # one band as grey: a 1-band copy (no colour to read from it)
        bands = choice.bands[:1] if grey else [*choice.bands, *([choice.has_nir()] if choice.has_nir() else [])]
        # a file that declares no nodata has none: pure black pixels (shadows) are ground it saw. Where the
        # grid reaches beyond the file or the file's own alpha band or mask says "no data", the warp's alpha
        # band says so, kept as the copy's internal mask (a nodata value of 0 would also blank every black
        # pixel; a warp without that band calls the ground outside the file seen)
        declared = dataset.nodata
        has_alpha = any(MaskFlags.alpha in flags for flags in dataset.mask_flag_enums)  # the warp carries it over
        options = {"nodata": declared} if declared is not None else {} if has_alpha else {"add_alpha": True}
        if turn is not None:
            options["src_transform"] = turn.corrected(dataset.transform, dataset.crs)
        with WarpedVRT(dataset, crs=reference.crs, transform=reference.transform,
                       width=reference.width, height=reference.height,
                       resampling=Resampling.bilinear, **options) as vrt:
            profile = {"driver": "GTiff", "width": reference.width, "height": reference.height,
                       "count": len(bands), "dtype": dataset.dtypes[0], "crs": reference.crs,
                       "transform": reference.transform, "tiled": True,
                       "compress": "deflate", "BIGTIFF": "IF_SAFER", **({"nodata": declared} if declared is not None
                                                                         else {})}
            with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(target, "w", **profile) as out:
                out.descriptions = ("pan",) if grey else ("red", "green", "blue", "nir")[:len(bands)]
                out.colorinterp = [ColorInterp.gray] if grey else [ColorInterp.red, ColorInterp.green,
                                                                   ColorInterp.blue, ColorInterp.undefined][:len(bands)]
                for _, window in out.block_windows(1):
                    out.write(vrt.read(bands, window=window), window=window)
                    if declared is None:  # the warp's alpha band: the file's footprint, alpha and mask
                        seen = vrt.dataset_mask(window=window) if has_alpha else vrt.read(vrt.count, window=window)
                        out.write_mask(seen > 0, window=window)


# --- ground a date did not see -------------------------------------------------------------------

def ground_mask(reference: rasterio.DatasetReader, source: Path, option: DateOptions, use_udm: bool,
                target: Path, turn: Turn | None = None) -> tuple[Path | None, list[str], dict[str, float]]:
    """The ground mask of one date on ``reference``'s grid (255 seen, 0 not seen), written to ``target``.

    From the Planet usable-data mask beside ``source`` (when ``use_udm``), the ``--mask`` raster and
    the source's own mask band (a GDAL ``.msk`` sidecar or internal mask). Returns the mask's path
    (None when nothing masks the date), the mask files used and the share of the site's ground
    each class removed. ``turn``: the date's rotation, turned back with its masks as with its image.
    """
    layers: list[tuple[str, np.ndarray, rasterio.Affine, object]] = []
    used: list[str] = []
    try:
        with rasterio.open(source) as dataset:
            image_grid = (dataset.transform, dataset.crs)
            own = dataset.dataset_mask() == 0 if MaskFlags.per_dataset in dataset.mask_flag_enums[0] else None
    except RasterioIOError as error:
        raise SitewatchError(f"{source}: read failed, file corrupt or truncated ({error})") from None
    udm = usable_data_mask(source) if use_udm else None
    for path in [p for p in (udm, option.mask) if p is not None]:
        check_mask(Path(path), source, generic=path == option.mask)
        layers += [_on_image_grid(layer, image_grid) for layer in mask_classes(Path(path), generic=path == option.mask)]
        used.append(Path(path).name)
    if own is not None:
        layers.append(("no data (mask band)", own, *image_grid))
        used.append("mask band of the image")
    if not layers:
        return None, [], {}
    unseen = np.zeros((reference.height, reference.width), bool)
    removed: dict[str, float] = {}
    for name, values, transform, crs in layers:
        transform = turn.corrected(transform, crs) if turn is not None else transform
        on_grid = np.zeros(unseen.shape, np.uint8)
        reproject(values.astype(np.uint8), on_grid, src_transform=transform, src_crs=crs or reference.crs,
                  dst_transform=reference.transform, dst_crs=reference.crs, resampling=Resampling.nearest)
        removed[name] = round(removed.get(name, 0.0) + float(on_grid.mean()), 4)
        unseen |= on_grid > 0
    profile = {"driver": "GTiff", "width": reference.width, "height": reference.height, "count": 1, "dtype": "uint8",
               "crs": reference.crs, "transform": reference.transform, "tiled": True, "compress": "deflate"}
    with rasterio.open(target, "w", **profile) as out:
        out.write(np.where(unseen, 0, 255).astype(np.uint8), 1)
    removed["all"] = round(float(unseen.mean()), 4)
    return target, used, removed


def mask_classes(path: Path, generic: bool) -> list[tuple[str, np.ndarray, rasterio.Affine, object]]:
    """The classes of ground not seen that a mask raster marks: (name, True where not seen, transform, CRS).

    A UDM2: cloud, heavy haze, shadow, snow and unusable pixels (its UDM1 band); a UDM1 (one band,
    ``udm`` in its name): cloud (bit 2) and any other flag as unusable; any other (``--mask``): 0
    is not seen.
    """
    try:
        with rasterio.open(path) as dataset:
            where = (dataset.transform, dataset.crs)
            if dataset.count == 8 and is_udm2(dataset.descriptions, path):
                found = [(name, dataset.read(band) > 0) for name, band in UDM2_UNSEEN.items()]
                return [(name, values, *where) for name, values in
                        [*found, ("unusable", dataset.read(UDM2_UNUSABLE_BAND) > 0)]]
            values = dataset.read(1)
    except RasterioIOError as error:
        raise SitewatchError(f"{path}: mask read failed ({error})", setting="mask") from None
    if "udm" in path.name.lower() and not generic:
        return [("cloud", (values & 2) > 0, *where), ("unusable", (values & ~np.uint8(2)) > 0, *where)]
    return [("masked (--mask)", values == 0, *where)]


def _on_image_grid(layer: tuple[str, np.ndarray, rasterio.Affine, object],
                   image_grid: tuple[rasterio.Affine, object]) -> tuple[str, np.ndarray, rasterio.Affine, object]:
    """A mask layer without georeferencing (checked to be the image's size) placed on the image's own grid
    (``image_grid``: its transform and CRS)."""
    name, values, transform, crs = layer
    if crs is not None and transform != Affine.identity():
        return layer
    return name, values, *image_grid


def registration_shifts(aligned: list[Path], rules: ChangeRules, pixel_m: tuple[float, float],
                        rasters: list[Path] | None = None) -> list[Shift]:
    """The shift of each later date against the first, measured on decimated grey imagery (full pixels).

    A clear peak (``misregistered_min_response``) beyond the shift sitewatch corrects is an error naming the
    user's files (``rasters``): uncorrected, such a misregistration invents new and demolished buildings.
    """
    first, factor = grey_image(aligned[0])
    names = rasters or aligned
    shifts = []
    for path, name in zip(aligned[1:], names[1:], strict=True):
        grey, _ = grey_image(path)
        shift = estimate_shift(first, grey, rules, (pixel_m[0] * factor, pixel_m[1] * factor))
        shift.dx_px *= factor
        shift.dy_px *= factor
        clear = shift.response >= max(rules.misregistered_min_response, rules.min_shift_response)
        if clear and not shift.applied:  # a clear peak not applied: beyond the shift sitewatch corrects
            limit_m = max(rules.max_shift_m, rules.max_shift_px * factor * min(pixel_m))
            raise SitewatchError(
                f"{name}: lies {round(shift.dx_m):+d} m east and {round(-shift.dy_m):+d} m north of {names[0].name} "
                f"by the image content (a clear correlation peak, {shift.response:.2f}), more than the "
                f"{limit_m:.0f} m sitewatch corrects; co-register the dates first (e.g. gdalwarp with "
                "ground control points), or raise max_shift_m in a rules file if the shift is real", setting="rules")
        shifts.append(shift)
    return shifts


def measure_turn(reference: rasterio.DatasetReader | WarpedVRT, first_grey: np.ndarray, later: Path,
                 rules: ChangeRules) -> Turn | None:
    """The rotation of a later date's aligned copy against the first's (``first_grey``: its
    :func:`grey_image` at :data:`~sitewatch.rotation.ROTATION_PX`; :mod:`sitewatch.rotation`), to turn back
    on ``reference``'s grid; None where none clear enough to matter was measured."""
    rotation = measure_rotation(first_grey, grey_image(later, ROTATION_PX)[0], rules)
    if not rotation.applied:
        return None
    site_crs = CRS.from_user_input(reference.crs) if reference.crs else None
    return Turn(rotation, reference.transform, (reference.height, reference.width), site_crs)


def grey_image(path: Path, limit: int = REGISTRATION_PX) -> tuple[np.ndarray, float]:
    """Grey image of a raster, decimated to at most ``limit`` px; with the decimation factor."""
    try:
        with rasterio.open(path) as dataset:
            factor = max(1.0, max(dataset.width, dataset.height) / limit)
            shape = (max(1, int(dataset.height / factor)), max(1, int(dataset.width / factor)))
            bands = list(range(1, min(3, dataset.count) + 1))
            pixels = dataset.read(bands, out_shape=(len(bands), *shape), resampling=Resampling.average)
    except RasterioIOError as error:
        raise SitewatchError(f"{path}: read failed, file corrupt or truncated ({error})") from None
    return pixels.astype(np.float32).mean(axis=0), factor


def estimate_shift(reference: np.ndarray, moving: np.ndarray, rules: ChangeRules,
                   pixel_m: tuple[float, float]) -> Shift:
    """Translation of ``moving`` relative to ``reference`` by phase correlation.

    Both are single-band images on the same grid (grey imagery or building probabilities).
    A shift is applied only when the correlation peak is clear (``min_shift_response``) and
    within ``max_shift_px`` pixels or ``max_shift_m`` metres (whichever is more); otherwise it is
    reported as not applied. Phase correlation finds shifts up to half the image, so a 30 m shift
    of a 3 m raster (10 px) and of a 0.3 m one (100 px) are measured alike.
    """
    a = reference.astype(np.float32)
    b = moving.astype(np.float32)
    a = (a - a.mean()) / (a.std() + 1e-6)
    b = (b - b.mean()) / (b.std() + 1e-6)
    window = cv2.createHanningWindow(a.shape[::-1], cv2.CV_32F)
    (dx, dy), response = cv2.phaseCorrelate(a, b, window)
    within = all(abs(d) <= max(rules.max_shift_px, rules.max_shift_m / max(abs(m), 1e-9))
                 for d, m in ((dx, pixel_m[0]), (dy, pixel_m[1])))
    ok = response >= rules.min_shift_response and within
    return Shift(float(dx), float(dy), float(response), bool(ok), float(dx) * pixel_m[0],
                 float(dy) * pixel_m[1])
