"""Which shipped network sees an input: chosen from the inputs themselves, before any model loads.

Two networks ship (``models/MODEL_CARD.md``): the default one, trained and tuned on 0.3-2 m imagery,
and the PlanetScope one, fine-tuned on PlanetScope-like views (hazy, soft, 3-4 m) and stretched per
band. The rule, in this order:

1. ``--model`` (or ``$SITEWATCH_MODEL``) names a file or a shipped name: that one, said as such.
2. The input is a PlanetScope product by its own words: Planet metadata beside it naming a Dove
   instrument (PS2, PS2.SD, PSB.SD), a Planet basemap name (``global_monthly_YYYY_MM_mosaic``, a
   ``L15-...E-...N`` quad): the PlanetScope network.
3. Its ground pixel size is at least :data:`PLANETSCOPE_FROM_M` (2.5 m): the PlanetScope network.
   Chosen on the held-out validation (``docs/BENCHMARKS.md``, "Held-out validation per pixel size"):
   the two networks are within 0.01 IoU of each other at 2 m and 3 m on simulated coarse views,
   the default one is better at 0.5-1 m, and on real PlanetScope (which the held-out chips do not
   contain) the PlanetScope network finds 106 of 183 large buildings against 14. Reported on the
   SpaceNet 7 months, which played no part in choosing it.
4. Otherwise (finer pixels, SkySat or an aerial, or a pixel size nobody gave): the default network.

A site's dates are seen at the coarsest date's pixel size (:mod:`sitewatch.coverage`), so one
choice holds for the whole site: the coarsest date's.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from sitewatch.errors import SitewatchError
from sitewatch.modelfile import MAX_WORK_GSD_M, MIN_WORK_GSD_M
from sitewatch.paths import DEFAULT_MODEL_NAME, MODELS_DIR, SHIPPED_MODELS, model_path

#: Inputs of at least this ground pixel size (m) are PlanetScope-class: the PlanetScope network sees them.
PLANETSCOPE_FROM_M = 2.5
PLANETSCOPE = "planetscope"
_DOVE_INSTRUMENTS = ("ps2", "ps2.sd", "psb.sd", "ps")
_BASEMAP_NAME = re.compile(r"(global_monthly_\d{4}_\d{2}_mosaic|\bL\d{2}-\d{4}E-\d{4}N)", re.IGNORECASE)


@dataclass(frozen=True)
class InputLook:
    """What an input raster says about its sensor before any pixel is read.

    Attributes:
        path: the raster.
        pixel_m: ground pixel size (m), geodesic at the raster centre; None when unknown (no CRS, no ``--gsd``).
        sensor: ``planetscope`` or ``skysat`` where the file's metadata or name says so, else None.
        sensor_evidence: what said it (a metadata file, the file name), empty when nothing did.
    """

    path: Path
    pixel_m: float | None
    sensor: str | None = None
    sensor_evidence: str = ""


@dataclass(frozen=True)
class ModelChoice:
    """The network chosen for an input or a site, and why (written to the log, summary.json and the report).

    Attributes:
        path: the model file.
        automatic: True when sitewatch chose it from the inputs, False when the user named it.
        reason: one sentence an analyst can read.
    """

    path: Path
    automatic: bool
    reason: str

    @property
    def label(self) -> str:
        """The shipped name (``default``, ``planetscope``) or the file's name."""
        for name, file_name in SHIPPED_MODELS.items():
            if self.path.name == file_name:
                return name
        return "default" if self.path.name == DEFAULT_MODEL_NAME else self.path.name


def look_at(raster: Path, gsd_m: float | None = None) -> InputLook:
    """The sensor facts of ``raster``: its ground pixel size (``gsd_m`` for one without a CRS) and
    what its Planet metadata or name says. Reads the header only."""
    from sitewatch.planet import scene_info
    from sitewatch.raster import ground_pixel_size_m, is_georeferenced, open_raster

    with open_raster(raster) as dataset:
        pixel_m = gsd_m
        if pixel_m is None and is_georeferenced(dataset):
            pixel_m = ground_pixel_size_m(dataset.crs, dataset.transform, dataset.width, dataset.height)
    sensor, evidence = _sensor_by_name(raster)
    if sensor is None:
        info = scene_info(raster)
        instrument = (info.instrument or "").lower()
        provider = (info.provider or "").lower()
        if instrument in _DOVE_INSTRUMENTS or provider == PLANETSCOPE:
            sensor, evidence = PLANETSCOPE, f"Planet metadata ({info.instrument or info.provider})"
        elif "skysat" in instrument or provider == "skysat":
            sensor, evidence = "skysat", f"Planet metadata ({info.instrument or info.provider})"
    return InputLook(path=Path(raster), pixel_m=pixel_m, sensor=sensor, sensor_evidence=evidence)


def look_at_site(rasters: list[Path]) -> list[InputLook]:
    """The looks of a site's rasters; one that cannot be opened counts as unknown (its site fails when it runs,
    with the reason, and a batch goes on with the others)."""
    from sitewatch.errors import SitewatchError

    looks = []
    for raster in rasters:
        try:
            looks.append(look_at(raster))
        except SitewatchError:
            looks.append(InputLook(path=Path(raster), pixel_m=None))
    return looks


def _sensor_by_name(raster: Path) -> tuple[str | None, str]:
    match = _BASEMAP_NAME.search(Path(raster).name)
    if match:
        return PLANETSCOPE, f"a Planet basemap name ({match.group(0)})"
    return None, ""


def check_pixel_sizes(looks: list[InputLook]) -> None:
    """Refuse an input whose pixels cannot show buildings, or that no network works at (before any model
    loads): a 250 m MODIS raster would be blown up into millions of tiles."""
    for look in looks:
        if look.pixel_m is not None and not MIN_WORK_GSD_M <= look.pixel_m <= MAX_WORK_GSD_M:
            raise SitewatchError(f"{look.path}: pixels of {look.pixel_m:.3g} m; sitewatch reads imagery of "
                                 f"{MIN_WORK_GSD_M:g}-{MAX_WORK_GSD_M:g} m pixels (buildings are not resolved "
                                 "beyond that)")


def choose_model(given: Path | str | None, looks: list[InputLook]) -> ModelChoice:
    """The network for inputs seen together (one raster, or a site's dates): see the module's rule.

    Args:
        given: ``--model`` as typed (a path or a shipped name), or None for the automatic choice.
        looks: the inputs (:func:`look_at`); a site's coarsest date decides.
    """
    check_pixel_sizes(looks)
    if given is not None:
        return ModelChoice(model_path(given), automatic=False, reason=f"named with --model ({given})")
    if os.environ.get("SITEWATCH_MODEL"):
        return ModelChoice(model_path(None), automatic=False, reason="named by $SITEWATCH_MODEL")
    planetscope = model_path(PLANETSCOPE)
    default = model_path(None)
    for look in looks:
        if look.sensor == PLANETSCOPE:
            return ModelChoice(planetscope, automatic=True,
                               reason=f"{look.path.name} is PlanetScope imagery ({look.sensor_evidence})")
    known = [look for look in looks if look.pixel_m is not None]
    if known:
        coarsest = max(known, key=lambda look: look.pixel_m or 0.0)
        pixel = f"{coarsest.path.name} has {coarsest.pixel_m:.2f} m pixels"
        if coarsest.pixel_m >= PLANETSCOPE_FROM_M:
            return ModelChoice(planetscope, automatic=True,
                               reason=f"{pixel}, PlanetScope-class (>= {PLANETSCOPE_FROM_M:g} m)")
        return ModelChoice(default, automatic=True, reason=f"{pixel} (< {PLANETSCOPE_FROM_M:g} m)")
    return ModelChoice(default, automatic=True,
                       reason="the pixel size is unknown (no CRS; --gsd gives it): the default network")


def automatic_use(model: Path) -> str | None:
    """The inputs sitewatch gives a shipped model by itself (``sitewatch info`` says so), None for other files."""
    if os.environ.get("SITEWATCH_MODEL"):
        return f"none while $SITEWATCH_MODEL names the model for every input ({os.environ['SITEWATCH_MODEL']})"
    resolved = Path(model).resolve()
    if resolved == model_path(PLANETSCOPE).resolve():
        return f"PlanetScope products and any input of {PLANETSCOPE_FROM_M:g} m pixels or coarser"
    if resolved == (MODELS_DIR / DEFAULT_MODEL_NAME).resolve():
        return f"inputs finer than {PLANETSCOPE_FROM_M:g} m (or of unknown pixel size) that are not PlanetScope"
    return None
