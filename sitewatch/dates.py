"""The date of each raster of a site: given, from acquisition-date tags, or from the file name.

A light module (rasterio only), so dates are resolved and checked before any slow work.
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from pathlib import Path

import rasterio
import rasterio.errors

from sitewatch.errors import SitewatchError, SitewatchWarning
from sitewatch.planet import scene_info

#: A date in a name: ``2024-08-27``, ``2024_08_27`` or ``20240827``, one separator used twice or none (a
#: LEVIR-style crop ``tile_2017_0512_0768`` holds pixel offsets, not 2017-05-12).
_DATE_IN_NAME = re.compile(r"(?<!\d)(?P<year>(?:19|20)\d{2})(?P<sep>[-_]?)(?P<month>\d{2})(?P=sep)(?P<day>\d{2})(?!\d)")
#: A Planet monthly basemap (``global_monthly_2018_01_mosaic``, ``planet_medres_..._2021-06_mosaic``): its month.
_MONTHLY_MOSAIC = re.compile(r"(?<!\d)((?:19|20)\d{2})[-_](\d{2})_mosaic", re.IGNORECASE)
#: Tags that hold an acquisition date, most specific first.
_ACQUISITION_TAGS = ("ACQUISITION_DATE", "ACQUISITIONDATETIME", "acquisition_date", "DATE_ACQUIRED", "datetime")
#: TIFF ``DateTime``: when the file was written (often a processing date), used only when nothing else dates it.
_FILE_WRITTEN_TAG = "TIFFTAG_DATETIME"


def parse_date(text: str) -> dt.date | None:
    """An ISO-like date (``2024-08-27``, ``20240827``, ``2024:08:27 10:00:00``) or None."""
    for match in _DATE_IN_NAME.finditer(text.replace(":", "-")):
        try:
            return dt.date(int(match["year"]), int(match["month"]), int(match["day"]))
        except ValueError:
            continue
    return None


def monthly_mosaic_date(name: str) -> dt.date | None:
    """The first day of the month a Planet monthly basemap's name gives (its mosaic covers that month), or None."""
    match = _MONTHLY_MOSAIC.search(name)
    if not match or not 1 <= int(match.group(2)) <= 12:
        return None
    return dt.date(int(match.group(1)), int(match.group(2)), 1)


def _tags(path: Path) -> dict[str, str]:
    try:
        with rasterio.open(path) as dataset:
            return {**dataset.tags(), **dataset.tags(ns="IMAGERY")}
    except rasterio.errors.RasterioIOError:
        return {}


def raster_date(path: Path) -> tuple[dt.date | None, str]:
    """A raster's acquisition date, with its source; an error when its sources disagree.

    An acquisition-date tag first, then the acquisition time in a Planet product's metadata beside
    the file (:mod:`sitewatch.planet`), then an ISO date in the file name (or the first day of the
    month of a Planet monthly basemap's name, ``global_monthly_2018_01_mosaic``), then the TIFF
    ``DateTime`` tag (when the file was written: a processing date, so it never overrides the
    file name). An acquisition tag and a file name that name different dates are refused.
    """
    tags = _tags(path)
    tagged = next(((parsed, f"tag {key}") for key in _ACQUISITION_TAGS
                   if key in tags and (parsed := parse_date(str(tags[key])))), None)
    info = scene_info(Path(path))
    if tagged is None and info.acquired is not None and info.sources:
        tagged = info.acquired.date(), f"Planet metadata {Path(info.sources[0]).name}"
    named = parse_date(Path(path).stem)
    month = None if named else monthly_mosaic_date(Path(path).stem)
    if tagged and month and tagged[0].replace(day=1) == month:
        month = None  # a month's mosaic dated within its month by a tag
    named = named or month
    if tagged and named and tagged[0] != named:
        raise SitewatchError(f"{path}: its {tagged[1]} says {tagged[0]} but its file name says {named}; "
                             "give the dates", setting="dates")
    if tagged:
        return tagged
    if named:
        return named, "file name"
    written = parse_date(str(tags.get(_FILE_WRITTEN_TAG, "")))
    return (written, f"tag {_FILE_WRITTEN_TAG}") if written else (None, "")


def date_sources(paths: list[Path], given: bool) -> list[str]:
    """Where each raster's date came from: ``given``, ``tag <NAME>`` or ``file name``."""
    return ["given" if given else raster_date(path)[1] for path in paths]


def _parse_given(paths: list[Path], dates: list[str]) -> list[dt.date]:
    if len(dates) != len(paths):
        raise SitewatchError(f"{len(dates)} dates for {len(paths)} rasters", setting="dates")
    parsed = []
    for text in dates:
        date = parse_date(text.strip())
        if date is None:
            raise SitewatchError(f"'{text}' is not a date like 2024-08-27", setting="dates")
        parsed.append(date)
    return parsed


def _compare_given(paths: list[Path], given: list[dt.date]) -> None:
    """Given dates against the rasters' own: refused when they are the same dates in another order,
    else each disagreement is a warning naming the file and where its own date comes from."""
    own = [raster_date(path) for path in paths]
    disagree = [(path, date, found) for path, date, found in zip(paths, given, own, strict=True)
                if found[0] is not None and found[0] != date]
    if not disagree:
        return
    path, date, (found, source) = disagree[0]
    if all(found[0] is not None for found in own) and sorted(given) == sorted(found[0] for found in own):
        raise SitewatchError(f"the dates given are in another order than the rasters: {path.name} is given "
                             f"{date} but its {source} says {found}; give one date per raster, in the rasters' "
                             "order", setting="dates")
    for path, date, (found, source) in disagree:
        warnings.warn(f"{path}: the date given, {date}, is used, though its {source} says {found}",
                      SitewatchWarning, stacklevel=3)


def resolve_dates(paths: list[Path], dates: list[str] | None) -> list[dt.date]:
    """One date per raster: ``dates`` if given (checked against the rasters' own), else each raster's."""
    if dates is not None:
        result = _parse_given(paths, dates)
        _compare_given(paths, result)
        sources = ["given"] * len(paths)
    else:
        found = [raster_date(path) for path in paths]
        for path, (date, _) in zip(paths, found, strict=True):
            if date is None:
                raise SitewatchError(
                    f"{path}: no acquisition date in its metadata or file name; give the dates", setting="dates"
                )
        result, sources = [date for date, _ in found], [source for _, source in found]
    for k, date in enumerate(result):
        for j in range(k):
            if result[j] == date:
                raise SitewatchError(f"two rasters have the same date {date}: {paths[j]} ({sources[j]}) and "
                                     f"{paths[k]} ({sources[k]})", setting="dates")
    return result
