"""The analyst's report: one self-contained ``report.html`` per site.

Site overview (earlier and later image with the footprints drawn by change class), the counts
and flags, a table of every new or enlarged building, and before/after crops of every flagged
change (PNG inlined as data URIs). Every user-supplied string is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from PIL import Image, ImageDraw
from rasterio.enums import Resampling
from rasterio.windows import Window, from_bounds

from sitewatch.raster import atomic_path
from sitewatch.summary import SiteSummary

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


def write_report(target: Path, summary: SiteSummary, changes: gpd.GeoDataFrame,
                 clusters: gpd.GeoDataFrame, before: Path, after: Path) -> None:
    """Write ``report.html`` for a site; layers in the rasters' CRS, rasters on one grid."""
    e = html.escape
    dates = summary.dates

    def colour(row) -> tuple[int, int, int]:
        if getattr(row, "flag", "") == "housing":
            return COLOURS["housing"]
        return COLOURS.get(row.change, (255, 255, 255))

    overview_before, t0 = _picture(before, None, 900)
    overview_after, t1 = _picture(after, None, 900)
    first_date = changes[changes["change"] == "demolished"]
    last_date = changes[changes["change"] != "demolished"]
    panels = [
        (f"{dates[0]} (earlier)", _draw(overview_before, t0, first_date, colour)),
        (f"{dates[-1]} (later)", _draw(overview_after, t1, last_date, colour)),
    ]
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
    crops = []
    for title, bounds, members in flagged:
        window = _crop_window(after, bounds, 0.3)
        image_before, tb = _picture(before, window, 420)
        image_after, ta = _picture(after, window, 420)
        crops.append((title, _draw(image_before, tb, members, colour), _draw(image_after, ta, members, colour)))

    rows = []
    for item in summary.new_buildings:
        rows.append(
            "<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in (
                item.id, item.change_class, item.flag or "", f"{item.area_m2:,.1f}",
                _percent(item.ratio_to_largest_existing),
                "" if item.confidence is None else f"{item.confidence:.2f}", item.first_seen)) + "</tr>")
    counts = "".join(f"<tr><th>{e(k)}</th><td>{v}</td></tr>" for k, v in summary.counts.as_dict().items())
    flags = "".join(f"<tr><th>{e(k)}</th><td class='flag-count' data-flag='{e(k)}'>{v}</td></tr>"
                    for k, v in summary.flags.as_dict().items())
    shifts = "; ".join(f"{s.dx_m:+.1f} m east, {-s.dy_m:+.1f} m north "
                       f"({'corrected' if s.applied else 'not applied'})"
                       for s in summary.shift) or "none"
    coverage = summary.coverage
    coverage_text = ""
    if coverage:
        per_date = ", ".join(f"{d} {100 * v:.0f} %" for d, v in coverage.valid_share_per_date.items())
        coverage_text = (f"Ground with valid data: {per_date}; at every date "
                         f"{100 * coverage.observed_at_every_date_share:.0f} % of the site. Buildings on "
                         f"ground a date did not see are counted as not observed "
                         f"({summary.counts.not_observed}), never as new or demolished.")
    legend = " ".join(f"<span style='border-bottom:3px solid rgb{c}'>{e(k)}</span>" for k, c in COLOURS.items())
    body = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>sitewatch: {e(summary.site)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1900px; }}
img {{ max-width: 100%; border: 1px solid #888; }} figure {{ display: inline-block; margin: 6px; vertical-align: top; }}
table {{ border-collapse: collapse; margin: 8px 0 16px; }}
td, th {{ border: 1px solid #bbb; padding: 3px 8px; text-align: left; }}
.pair figure {{ width: 430px; }} .overview figure {{ width: 46%; }} .muted {{ color: #666; }}
</style></head><body>
<h1>Site {e(summary.site)}: {e(dates[0])} → {e(dates[-1])}</h1>
<p class="muted">Dates: {e(', '.join(dates))}. Model {e(summary.model.name)}
(sha256 {e(summary.model.sha256[:12])}…) run at {e(str(summary.model.gsd_m))} m/pixel
({e(str(summary.model.gsd_rule))}) on {e(summary.model.device)}.
Measured shift between dates: {e(shifts)}.</p>
<p class="muted" id="coverage">{e(coverage_text)}</p>
<h2>Overview</h2><p>{legend}</p>
<div class="overview">{''.join(_figure_html(t, i) for t, i in panels)}</div>
<h2>Counts</h2><table>{counts}</table>
<h2>Flags</h2><table id="flags">{flags}</table>
<p>Largest building standing at {e(dates[0])}: {summary.largest_existing_building_m2:,.0f} m².</p>
<h2>New and enlarged buildings</h2>
<table id="new-buildings"><tr><th>id</th><th>class</th><th>flag</th><th>area m²</th><th>of largest existing</th>
<th>confidence</th><th>first seen</th></tr>{''.join(rows)}</table>
<h2>Flagged changes</h2>
{''.join(_pair_html(t, b, a, dates) for t, b, a in crops) or '<p>No flagged change.</p>'}
</body></html>
"""
    with atomic_path(target) as tmp:
        tmp.write_text(body, encoding="utf-8")


def _figure_html(title: str, image: Image.Image) -> str:
    e = html.escape
    return f"<figure><img alt='{e(title)}' src='{_data_uri(image)}'><figcaption>{e(title)}</figcaption></figure>"


def _pair_html(title: str, before: Image.Image, after: Image.Image, dates: list[str]) -> str:
    e = html.escape
    return (f"<div class='pair'><h3>{e(title)}</h3>"
            f"{_figure_html(dates[0], before)}{_figure_html(dates[-1], after)}</div>")


def _percent(share: float | None) -> str:
    return "" if share is None else f"{100 * share:.0f}%"


def _ratio_text(ratio: float) -> str:
    if ratio is None or ratio != ratio:
        return "no building stood here before"
    return f"about {100 * ratio:.0f}% of the largest existing building"
