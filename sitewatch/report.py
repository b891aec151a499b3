"""The analyst's report: one self-contained ``report.html`` per site.

Site overview (earlier and later image with the footprints drawn by change class), the counts
and flags, a table of every new or enlarged building, and before/after crops of every flagged
change (PNG inlined as data URIs). Rendered from ``templates/report.html.j2`` with jinja2,
autoescape on: every string from the summary or the user is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import jinja2
import numpy as np
import rasterio
from markupsafe import Markup
from PIL import Image, ImageDraw
from rasterio.enums import Resampling
from rasterio.windows import Window, from_bounds

from sitewatch.files import atomic_path
from sitewatch.summary import NewBuilding, SiteSummary

COLOURS = {"new": (230, 40, 40), "expanded": (255, 150, 0), "unchanged": (90, 200, 250),
           "demolished": (180, 80, 255), "not_observed": (160, 160, 160), "housing": (255, 230, 0)}


def _picture(path: Path, window: Window | None, max_px: int) -> tuple[Image.Image, rasterio.Affine]:
    """RGB picture of a raster window, at most ``max_px`` wide or high, with its transform."""
    with rasterio.open(path) as dataset:
        window = window or Window(0, 0, dataset.width, dataset.height)
        window = window.intersection(Window(0, 0, dataset.width, dataset.height))
        scale = max(0.25, max(window.width, window.height) / max_px)  # small sites are enlarged
        shape = (max(1, int(window.height / scale)), max(1, int(window.width / scale)))
        bands = [1, 2, 3] if dataset.count >= 3 else [1, 1, 1]
        pixels = dataset.read(bands, window=window, out_shape=(3, *shape), resampling=Resampling.average)
        transform = dataset.window_transform(window) @ rasterio.Affine.scale(window.width / shape[1],
                                                                             window.height / shape[0])
    if pixels.dtype != np.uint8:  # a 2-98 % stretch of the finite values; NaN/inf drawn black
        finite = np.isfinite(pixels)
        low, high = np.percentile(pixels[finite], [2, 98]) if finite.any() else (0.0, 1.0)
        pixels = np.where(finite, np.clip((pixels - low) / max(high - low, 1e-6) * 255, 0, 255), 0)
    return Image.fromarray(np.moveaxis(pixels.astype(np.uint8), 0, -1)), transform


def _draw(image: Image.Image, transform: rasterio.Affine, frame: gpd.GeoDataFrame,
          colour_of, width: int = 2) -> Image.Image:
    image = image.copy()
    draw = ImageDraw.Draw(image)
    inverse = ~transform
    for row in frame.itertuples():
        geometry = row.geometry
        parts = [geometry] if geometry.geom_type == "Polygon" else list(getattr(geometry, "geoms", []))
        for polygon in parts:
            points = [inverse @ (x, y) for x, y in np.asarray(polygon.exterior.coords)[:, :2]]
            if len(points) >= 3:
                draw.line(points + [points[0]], fill=colour_of(row), width=width)
    return image


def _data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _crop_window(path: Path, bounds: tuple[float, float, float, float], margin: float) -> Window:
    with rasterio.open(path) as dataset:
        left, bottom, right, top = bounds
        pad = max(right - left, top - bottom) * margin + 10 * abs(dataset.transform.a)
        window = from_bounds(left - pad, bottom - pad, right + pad, top + pad, dataset.transform)
        return window.round_offsets().round_lengths()


@dataclass(frozen=True)
class Picture:
    """A captioned picture of the report: title and PNG data URI."""

    title: str
    uri: str


@dataclass(frozen=True)
class Crop:
    """Before/after close-ups of one flagged change."""

    title: str
    before: Picture
    after: Picture


def _escaped(value: object) -> Markup:
    """Every ``{{ value }}`` as text, HTML-escaped with the standard library's entities."""
    return value if isinstance(value, Markup) else Markup(html.escape(str(value)))


_TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("sitewatch", "templates"), autoescape=True,
                                finalize=_escaped, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)


def write_report(target: Path, summary: SiteSummary, changes: gpd.GeoDataFrame,
                 clusters: gpd.GeoDataFrame, before: Path, after: Path) -> None:
    """Write ``report.html`` for a site; layers in the rasters' CRS, rasters on one grid."""
    html = _TEMPLATES.get_template("report.html.j2").render(
        summary=summary, dates=summary.dates, colours=COLOURS, shifts=_shift_text(summary),
        coverage=_coverage_text(summary), overview=_overview(summary, changes, before, after),
        new_buildings=[_building_cells(item) for item in summary.new_buildings],
        crops=[_crop(title, bounds, members, before, after, summary.dates)
               for title, bounds, members in _flagged(changes, clusters)],
    )
    with atomic_path(target) as tmp:
        tmp.write_text(html, encoding="utf-8")


def _colour(row) -> tuple[int, int, int]:
    if getattr(row, "flag", "") == "housing":
        return COLOURS["housing"]
    return COLOURS.get(row.change, (255, 255, 255))


def _overview(summary: SiteSummary, changes: gpd.GeoDataFrame, before: Path, after: Path) -> list[Picture]:
    """The whole site at the first date (demolished outlines) and the last (every other outline)."""
    first, t0 = _picture(before, None, 900)
    last, t1 = _picture(after, None, 900)
    return [
        Picture(f"{summary.dates[0]} (earlier)", _data_uri(_draw(first, t0, changes[changes["change"] == "demolished"],
                                                                   _colour))),
        Picture(f"{summary.dates[-1]} (later)", _data_uri(_draw(last, t1, changes[changes["change"] != "demolished"],
                                                                  _colour))),
    ]


def _flagged(changes: gpd.GeoDataFrame, clusters: gpd.GeoDataFrame) -> list[tuple[str, tuple, gpd.GeoDataFrame]]:
    """``(title, bounds, outlines to draw)`` of every hall and housing cluster."""
    flagged = []
    for row in changes[changes["flag"] == "assembly_hall"].itertuples():
        size = (f"cut by the edge: at least {row.area_m2:,.0f} m²" if getattr(row, "cut_by_edge", False)
                else f"{row.area_m2:,.0f} m²")
        flagged.append((f"Assembly hall #{row.change_id}: {size}, "
                        f"{_ratio_text(row.ratio_to_largest_existing)}", row.geometry.bounds,
                        changes[changes["change_id"] == row.change_id]))
    for cluster in clusters.itertuples():
        members = list(cluster.member_ids)
        flagged.append((f"Housing cluster #{cluster.cluster_id}: {len(members)} new buildings, "
                        f"{cluster.total_area_m2:,.0f} m² in all", cluster.geometry.bounds,
                        changes[changes["change_id"].isin(members)]))
    return flagged


def _crop(title: str, bounds: tuple, members: gpd.GeoDataFrame, before: Path, after: Path,
          dates: list[str]) -> Crop:
    window = _crop_window(after, bounds, 0.3)
    image_before, tb = _picture(before, window, 420)
    image_after, ta = _picture(after, window, 420)
    return Crop(title, Picture(dates[0], _data_uri(_draw(image_before, tb, members, _colour))),
                Picture(dates[-1], _data_uri(_draw(image_after, ta, members, _colour))))


def _building_cells(item: NewBuilding) -> list[str]:
    return [str(v) for v in (
        item.id, item.change_class, item.flag or "", f"{item.area_m2:,.1f}", _percent(item.ratio_to_largest_existing),
        "" if item.confidence is None else f"{item.confidence:.2f}", item.first_seen)]


def _shift_text(summary: SiteSummary) -> str:
    return "; ".join(f"{s.dx_m:+.1f} m east, {-s.dy_m:+.1f} m north ({'corrected' if s.applied else 'not applied'})"
                     for s in summary.shift) or "none"


def _coverage_text(summary: SiteSummary) -> str:
    coverage = summary.coverage
    if not coverage:
        return ""
    per_date = ", ".join(f"{d} {100 * v:.0f} %" for d, v in coverage.valid_share_per_date.items())
    return (f"Ground with valid data: {per_date}; at every date {100 * coverage.observed_at_every_date_share:.0f} % "
            f"of the site. Buildings on ground a date did not see are counted as not observed "
            f"({summary.counts.not_observed}), never as new or demolished.")


def _percent(share: float | None) -> str:
    return "" if share is None else f"{100 * share:.0f}%"


def _ratio_text(ratio: float) -> str:
    if ratio is None or ratio != ratio:
        return "no building stood here before"
    return f"about {100 * ratio:.0f}% of the largest existing building"
