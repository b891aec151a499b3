"""The date of each raster of a site: given, from acquisition-date tags, or from the file name.

A light module (rasterio only), so dates are resolved and checked before any slow work.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import rasterio
import rasterio.errors

from sitewatch.errors import SitewatchError

_DATE_IN_NAME = re.compile(r"(?<!\d)((?:19|20)\d{2})[-_]?(\d{2})[-_]?(\d{2})(?!\d)")
_DATE_TAGS = ("ACQUISITION_DATE", "ACQUISITIONDATETIME", "acquisition_date", "DATE_ACQUIRED",
              "TIFFTAG_DATETIME", "datetime")


def parse_date(text: str) -> dt.date | None:
    """An ISO-like date (``2024-08-27``, ``20240827``, ``2024:08:27 10:00:00``) or None."""
    for match in _DATE_IN_NAME.finditer(text.replace(":", "-")):
        try:
            return dt.date(*(int(g) for g in match.groups()))
        except ValueError:
            continue
    return None


def raster_date(path: Path) -> tuple[dt.date | None, str]:
    """A raster's acquisition date from its tags, else from its file name; with the source."""
    try:
        with rasterio.open(path) as dataset:
            tags = {**dataset.tags(), **dataset.tags(ns="IMAGERY")}
    except rasterio.errors.RasterioIOError:
        tags = {}
    for key in _DATE_TAGS:
        if key in tags and (date := parse_date(str(tags[key]))):
            return date, f"tag {key}"
    date = parse_date(Path(path).stem)
    return (date, "file name") if date else (None, "")


def date_sources(paths: list[Path], given: bool) -> list[str]:
    """Where each raster's date came from: ``given``, ``tag <NAME>`` or ``file name``."""
    return ["given" if given else raster_date(path)[1] for path in paths]


def resolve_dates(paths: list[Path], dates: list[str] | None) -> list[dt.date]:
    """One date per raster: ``dates`` if given, else tags, else the file name; clear errors."""
    if dates is not None:
        if len(dates) != len(paths):
            raise SitewatchError(f"{len(dates)} dates for {len(paths)} rasters", setting="dates")
        parsed = []
        for text in dates:
            date = parse_date(text.strip())
            if date is None:
                raise SitewatchError(f"'{text}' is not a date like 2024-08-27", setting="dates")
            parsed.append(date)
        result = parsed
    else:
        result = []
        for path in paths:
            date, _ = raster_date(path)
            if date is None:
                raise SitewatchError(
                    f"{path}: no acquisition date in its metadata or file name; give the dates", setting="dates"
                )
            result.append(date)
    if len(set(result)) != len(result):
        raise SitewatchError(f"two rasters have the same date ({', '.join(map(str, result))})")
    return result
