"""The analyst's report: one self-contained ``report.html`` per site, to brief from.

Headline sentences per flag (size, share of the largest existing building, first date,
confidence, position), the site at every date with scale bar, north arrow and date (building ids
drawn, change classes coloured, flags marked apart), before/after close-ups of each flag with
every detected neighbour outlined, a timeline for three or more dates, tables of new, enlarged,
demolished and shrunk buildings, how to read the numbers (confidence, not observed, cut by the
edge, the model's measured accuracy and limits) and the provenance (each image's date and where
it came from, size and pixel size; the model and its checksum; the rules). Rendered from
``templates/report.html.j2`` with jinja2, autoescape on; no network request; prints to PDF.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path

import geopandas as gpd
import jinja2
from markupsafe import Markup

from sitewatch.files import atomic_path
from sitewatch.pictures import Outline, Picture, crop_window, map_image, picture
from sitewatch.prepare import CLOUD_LIKE_WARN_SHARE
from sitewatch.summary import ClearedArea, GoneBuilding, HousingCluster, ImageRecord, NewBuilding, SiteSummary

COLOURS = {"new": (230, 40, 40), "expanded": (255, 150, 0), "shrunk": (255, 105, 180),
           "replaced": (255, 60, 120), "unchanged": (90, 200, 250),
           "demolished": (180, 80, 255), "not_observed": (160, 160, 160), "unconfirmed": (255, 255, 255)}
FLAG_COLOURS = {"assembly hall": (255, 0, 200), "housing cluster": (255, 230, 0), "land cleared": (150, 255, 0)}
CLASS_WORDS = {"new": "new", "expanded": "enlarged", "shrunk": "shrunk (part gone)",
               "replaced": "replaced (demolished and rebuilt)", "unchanged": "unchanged",
               "demolished": "demolished", "not_observed": "not observed",
               "unconfirmed": "not confirmed (found at some dates only, or too small or unsure; no change claimed)"}
FLAG_WORDS = {"assembly_hall": "new assembly halls", "housing": "new houses in a housing cluster",
              "housing_clusters": "housing clusters", "land_cleared": "areas of land cleared", None: "", "": ""}
#: The shipped model's measured accuracy and limits (models/MODEL_CARD.md), by its SHA-256.
MEASURED = {
    "be778f0e6e927a2475a49c4fbef79acb86852fc3a1fb523ec4050d6ea7b72a19": (
        "Measured on real PlanetScope: on SpaceNet 7 basemap months, on ground no training or tuning used, it "
        "finds 122 of 152 buildings built over two years (most within housing areas) and 19 of its 59 new "
        "records lie on new buildings; on six PlanetScope crops it finds 113 of 183 large buildings marked by "
        "eye, calls 7 of 111 open-ground spots, 4 of 23 parked aircraft and 20 of 25 boats building. Held-out "
        "mean pixel IoU 0.61 at 0.5 m and 0.48 at 3 m (models/MODEL_CARD.md). Between two months of different "
        "seasons it loses and finds many houses: a monthly series run as one site is far steadier than a pair."),
    "9bdc899d95fdf9a1b510f1a7ee8174b360da04b03bee128bef71c298c6080e04": (
        "Measured on held-out imagery, mean pixel IoU 0.63 at 0.5 m, 0.58 at 1 m, 0.53 at 2 m and 0.50 at 3 m "
        "per pixel (models/MODEL_CARD.md). It misses weak and small buildings, and at 2-3 m it can call a dense "
        "prefab camp or a merged row of houses a hall."),
}


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


def write_report(target: Path, summary: SiteSummary, changes: gpd.GeoDataFrame, clusters: gpd.GeoDataFrame,
                 rasters: list[Path], footprints: list[gpd.GeoDataFrame], cleared: gpd.GeoDataFrame) -> None:
    """Write ``report.html``: layers in the rasters' CRS, rasters (one per date) on one grid."""
    page = _TEMPLATES.get_template("report.html.j2").render(
        summary=summary, dates=summary.dates, headlines=headlines(summary), counts=counts_sentence(summary),
        colours=COLOURS, flag_colours=FLAG_COLOURS, class_words=CLASS_WORDS, flag_words=FLAG_WORDS,
        overview=_overview(summary, changes, clusters, rasters, footprints, cleared),
        crops=[_crop(title, bounds, changes, members, rasters, summary.dates)
               for title, bounds, members in _flagged(changes, clusters)]
        + [_clearing_crop(cleared.iloc[[k]], rasters, summary.dates) for k in range(len(cleared))],
        new_rows=[_new_cells(b) for b in summary.new_buildings],
        gone_rows=[_gone_cells(b) for b in summary.gone_buildings],
        cleared_rows=[_cleared_cells(a) for a in summary.land_cleared],
        timeline=timeline_svg(summary) if len(summary.dates) >= 3 else "", shifts=_shift_text(summary),
        coverage=_coverage_text(summary), measured=MEASURED.get(summary.model.sha256, ""),
        map_data=map_data(summary, changes, clusters, rasters, cleared), leaflet=_vendored("leaflet.js"),
        leaflet_css=_vendored("leaflet.css"), image_rows=[(image, _image_cells(image)) for image in summary.images],
    )
    with atomic_path(target) as tmp:
        tmp.write_text(page, encoding="utf-8")


def map_data(summary: SiteSummary, changes: gpd.GeoDataFrame, clusters: gpd.GeoDataFrame,
             rasters: list[Path], cleared: gpd.GeoDataFrame) -> dict:
    """What the report's map shows: every date's picture (Web Mercator) and the change layers (EPSG:4326)."""
    columns = ["change_id", "change", "flag", "area_m2", "first_seen", "last_seen", "presence", "geometry"]
    records = changes[[c for c in columns if c in changes.columns]].copy()
    for column in ("first_seen", "last_seen"):
        records[column] = records[column].astype(str)
    keep = [c for c in ("cluster_id", "count", "total_area_m2", "member_ids", "geometry") if c in clusters.columns]
    hulls = clusters[keep].copy() if len(clusters) else clusters.iloc[:0][keep]
    if "member_ids" in hulls:
        hulls["member_ids"] = hulls["member_ids"].map(lambda ids: ", ".join(f"#{i}" for i in ids))
    return {"dates": [asdict(map_image(raster, date)) for raster, date in zip(rasters, summary.dates, strict=True)],
            "changes": json.loads(records.to_crs(4326).to_json(drop_id=True)),
            "clusters": json.loads(gpd.GeoDataFrame(hulls, crs=clusters.crs).to_crs(4326).to_json(drop_id=True)),
            "cleared": json.loads(cleared[["clearing_id", "area_m2", "geometry"]].to_crs(4326).to_json(drop_id=True)),
            "colours": {name: f"rgb{colour}" for name, colour in COLOURS.items()},
            "words": CLASS_WORDS}


def _image_cells(image: ImageRecord) -> dict[str, str]:
    """A date's masks (files and the share of the site each class removed) and its acquisition, as words."""
    removed = ", ".join(f"{name} {share * 100:.1f} %" for name, share in image.mask_removed.items()
                        if share > 0 and name != "all")
    masks = "none" if not image.masks else (f"{', '.join(image.masks)}: {removed or 'nothing'} "
                                            f"({image.mask_removed.get('all', 0) * 100:.1f} % of the site in all)")
    if not image.masks and image.cloud_like >= CLOUD_LIKE_WARN_SHARE:
        masks += (f" ({image.cloud_like * 100:.0f} % of the site bright and colourless at this date only: clouds? "
                  "read as ground)")
    words = {"acquired": "acquired", "provider": "", "satellite": "satellite", "instrument": "instrument",
             "sun_elevation_deg": "sun elevation °", "cloud_cover": "cloud cover (0-1)"}
    provenance = ", ".join(f"{label} {image.provenance[key]}".strip() for key, label in words.items()
                           if key in image.provenance)
    return {"masks": masks, "provenance": provenance or "not stated"}


def _vendored(name: str) -> Markup:
    """A file of the map library shipped in the package (Leaflet 1.9.4, BSD-2-Clause), inlined."""
    return Markup(files("sitewatch").joinpath("templates", "vendor", name).read_text(encoding="utf-8"))


def place(lon: float, lat: float) -> str:
    """``39.9512 N, 127.5723 E`` (4 decimals, about 10 m)."""
    return f"{abs(lat):.4f} {'N' if lat >= 0 else 'S'}, {abs(lon):.4f} {'E' if lon >= 0 else 'W'}"


def headlines(summary: SiteSummary) -> list[str]:
    """One sentence per flag, halls first, in words an analyst can quote."""
    largest = summary.largest_existing_building_m2
    lines = []
    for hall in (b for b in summary.new_buildings if b.flag == "assembly_hall"):
        size = f"at least {hall.area_m2:,.0f} m² (cut by the edge of the image)" if hall.cut_by_edge \
            else f"{hall.area_m2:,.0f} m²"
        share = (f", {100 * hall.ratio_to_largest_existing:.0f} % of the largest existing building ({largest:,.0f} m²)"
                 if hall.ratio_to_largest_existing is not None else ", where no building stood before")
        lines.append(f"New assembly hall #{hall.id} of {size}{share}, first seen {hall.first_seen}, "
                     f"confidence {hall.confidence:.2f}, at {place(hall.lon, hall.lat)}.")
    for building in (b for b in summary.new_buildings if b.hall_note):
        lines.append(f"New building #{building.id} of {building.area_m2:,.0f} m² is of hall size but not flagged "
                     f"as a hall: {building.hall_note}.")
    for cluster in summary.housing_clusters:
        lines.append(housing_headline(cluster))
    if not any(b.flag for b in summary.new_buildings) and not summary.housing_clusters:
        lines.append(f"No new assembly hall and no new housing cluster between {summary.dates[0]} and "
                     f"{summary.dates[-1]} on the ground seen at every date.")
    lines += [clearing_headline(area, summary.dates) for area in summary.land_cleared]
    if not summary.land_clearing_assessed:
        lines.append("Land clearing was not assessed: it needs red, green and blue bands at every date.")
    elif not summary.land_cleared:
        least = summary.rules["land_cleared_min_area_m2"]
        lines.append(f"No land cleared (green ground turned bare) of at least {least:,.0f} m² on the ground "
                     "the first and a later date saw.")
    return lines


def housing_headline(cluster: HousingCluster) -> str:
    """``New housing: 12 new buildings close together ...``, or an area whose houses the pixels do not separate."""
    if cluster.count_estimated:
        return (f"New housing area of about {cluster.count} buildings (estimated from its area: the pixels do not "
                f"separate single houses), {cluster.outline_area_m2 or cluster.total_area_m2:,.0f} m² within its "
                f"outline, first seen {cluster.first_seen}, at {place(cluster.lon, cluster.lat)}.")
    return (f"New housing: {cluster.count} new buildings close together ({cluster.total_area_m2:,.0f} m² "
            f"in all), first seen {cluster.first_seen}, at {place(cluster.lon, cluster.lat)}.")


def clearing_headline(area: ClearedArea, dates: list[str]) -> str:
    """``Land cleared: 2.3 ha (23,400 m²) ... first seen ..., at ...; confirmed or not``."""
    later = len(dates) - 1 - dates.index(area.first_seen)
    confirmed = ("not yet confirmed by a later image (a crop field bare in season can look the same)"
                 if area.later_dates_seen == 0 else
                 f"still cleared at {area.later_dates_seen} of the {later} later date{'s' if later > 1 else ''}")
    return (f"Land cleared C{area.id}: {area.area_m2 / 10_000:,.2f} ha ({area.area_m2:,.0f} m²) of green ground "
            f"now bare, outside buildings, first seen {area.first_seen}, at {place(area.lon, area.lat)}; "
            f"{confirmed}.")


def counts_sentence(summary: SiteSummary) -> str:
    counts = summary.counts.as_dict()
    parts = [f"{counts[name]} {CLASS_WORDS[name]}" for name in counts if counts[name] and name != "unchanged"]
    return (f"Between {summary.dates[0]} and {summary.dates[-1]}: {', '.join(parts) or 'no change'}; "
            f"{counts['unchanged']} buildings unchanged.")


def _overview(summary: SiteSummary, changes: gpd.GeoDataFrame, clusters: gpd.GeoDataFrame, rasters: list[Path],
              footprints: list[gpd.GeoDataFrame], cleared: gpd.GeoDataFrame) -> list[Picture]:
    """The whole site at every date: the first with its buildings (demolished ones marked), the
    middle ones with what was found, the last with every record coloured by class and the flags."""
    first_date = changes["date_seen"].astype(str) == summary.dates[0]
    gone = changes[changes["change"].isin(["demolished", "not_observed"]) & first_date]
    cleared_outline = _cleared_outline(cleared)
    replaced = replaced_before(changes)
    unconfirmed = changes[(changes["change"] == "unconfirmed") & first_date]
    pictures = [picture(rasters[0], None, 900, [Outline(footprints[0], COLOURS["unchanged"]),
                                                 Outline(gone, COLOURS["demolished"], 3, ids=True),
                                                 Outline(unconfirmed, COLOURS["unconfirmed"], 2, ids=True),
                                                 Outline(replaced, COLOURS["replaced"], 3, ids=True), cleared_outline],
                        summary.dates[0], f"{summary.dates[0]}: the buildings found (demolished ones in purple"
                        + (", found only before the last date and not confirmed as gone in white"
                           if len(unconfirmed) else "")
                        + (", those replaced later in pink, with the id of the building that replaced them"
                           if len(replaced) else "") + ")"
                        + (", and the ground cleared later (green)" if len(cleared) else ""))]
    for date, raster, frame in zip(summary.dates[1:-1], rasters[1:-1], footprints[1:-1], strict=True):
        pictures.append(picture(raster, None, 900, [Outline(frame, COLOURS["unchanged"])], date,
                                f"{date}: the buildings found"))
    last = changes[changes["date_seen"].astype(str) == summary.dates[-1]]
    outlines = [Outline(last[last["change"] == name], colour, 2 if name == "unchanged" else 3,
                        ids=name != "unchanged") for name, colour in COLOURS.items()]
    outlines += [Outline(last[last["flag"] == "assembly_hall"], FLAG_COLOURS["assembly hall"], 5),
                 Outline(clusters, FLAG_COLOURS["housing cluster"], 2), cleared_outline]
    pictures.append(picture(rasters[-1], None, 900, outlines, summary.dates[-1],
                            f"{summary.dates[-1]}: every building by change class, flags marked"))
    return pictures


def replaced_before(changes: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """What stood where a ``replaced`` building stands now: its record's ``before_outline`` (WKT,
    EPSG:4326) in the CRS of ``changes``, with the replacing record's ``change_id``."""
    rows = changes[(changes["change"] == "replaced") & (changes["before_outline"].fillna("") != "")]
    if rows.empty:
        return changes.iloc[:0][["change_id", "geometry"]]
    outlines = gpd.GeoSeries.from_wkt(rows["before_outline"].to_list(), crs=4326).to_crs(changes.crs)
    return gpd.GeoDataFrame({"change_id": rows["change_id"].to_numpy()}, geometry=outlines.values, crs=changes.crs)


def _flagged(changes: gpd.GeoDataFrame, clusters: gpd.GeoDataFrame) -> list[tuple[str, tuple, gpd.GeoDataFrame]]:
    """``(title, bounds, outlines to highlight)`` of every hall and housing cluster."""
    flagged = []
    for row in changes[changes["flag"] == "assembly_hall"].itertuples():
        size = f"at least {row.area_m2:,.0f} m² (cut by the edge)" if row.cut_by_edge else f"{row.area_m2:,.0f} m²"
        flagged.append((f"Assembly hall #{row.change_id}: {size}", row.geometry.bounds,
                        changes[changes["change_id"] == row.change_id]))
    for cluster in clusters.itertuples():
        members = list(cluster.member_ids)
        flagged.append((f"Housing cluster {cluster.cluster_id}: {len(members)} new buildings "
                        f"(#{', #'.join(map(str, members))}), {cluster.total_area_m2:,.0f} m² in all",
                        cluster.geometry.bounds, changes[changes["change_id"].isin(members)]))
    return flagged


def _crop(title: str, bounds: tuple, changes: gpd.GeoDataFrame, members: gpd.GeoDataFrame, rasters: list[Path],
          dates: list[str]) -> Crop:
    """Close-ups at the first and last date: the flagged buildings thick, every neighbour thin, each in the
    colour of its own change class (as on the site's pictures, the map and the tables)."""
    window = crop_window(rasters[-1], bounds, 0.3)
    last = changes[changes["date_seen"].astype(str) == dates[-1]]
    neighbours = [Outline(last[last["change"] == name], colour, 1, ids=True) for name, colour in COLOURS.items()]
    flagged = [Outline(members[members["change"] == name], colour, 3, ids=True) for name, colour in COLOURS.items()]
    before = picture(rasters[0], window, 420, flagged, dates[0], dates[0])
    after = picture(rasters[-1], window, 420, [*neighbours, *flagged], dates[-1], dates[-1])
    return Crop(title, before, after)


def _cleared_outline(cleared: gpd.GeoDataFrame) -> Outline:
    """Cleared areas as drawn on every picture: the flag's colour, ids ``C1``, ``C2``…"""
    return Outline(cleared, FLAG_COLOURS["land cleared"], 3, ids=True, id_column="clearing_id", id_prefix="C")


def _clearing_crop(area: gpd.GeoDataFrame, rasters: list[Path], dates: list[str]) -> Crop:
    """Close-ups of one cleared area (a one-row layer) at the first and last date, outlined at both."""
    row = area.iloc[0]
    window = crop_window(rasters[-1], row.geometry.bounds, 0.3)
    title = f"Land cleared C{row.clearing_id}: {row.area_m2 / 10_000:,.2f} ha, first seen {row.first_seen}"
    outline = [_cleared_outline(area)]
    return Crop(title, picture(rasters[0], window, 420, outline, dates[0], dates[0]),
                picture(rasters[-1], window, 420, outline, dates[-1], dates[-1]))


def _cleared_cells(item: ClearedArea) -> list[str]:
    return [f"C{item.id}", f"{item.area_m2 / 10_000:,.2f}", item.first_seen, str(item.later_dates_seen),
            f"{item.green_before:.3f} → {item.green_after:.3f}", f"{item.pattern_corr:.2f}", place(item.lon, item.lat)]


def _new_cells(item: NewBuilding) -> list[str]:
    size = f"≥ {item.area_m2:,.1f} (cut by the edge)" if item.cut_by_edge else f"{item.area_m2:,.1f}"
    if item.unit == "building_group":
        size += f" (a group of about {item.estimated_count} buildings the pixels do not separate)"
    flag = FLAG_WORDS.get(item.flag, item.flag or "")
    if not flag and item.hall_note:
        flag = f"hall size, no hall: {item.hall_note}"
    return [f"#{item.id}", CLASS_WORDS[item.change_class], flag, size,
            "" if item.ratio_to_largest_existing is None else f"{100 * item.ratio_to_largest_existing:.0f} %",
            "" if item.confidence is None else f"{item.confidence:.2f}", item.first_seen, item.presence,
            place(item.lon, item.lat)]


def _gone_cells(item: GoneBuilding) -> list[str]:
    return [f"#{item.id}", CLASS_WORDS[item.change_class], f"{item.area_m2:,.1f}",
            "" if item.confidence is None else f"{item.confidence:.2f}", item.last_seen, item.presence,
            place(item.lon, item.lat)]


def timeline_svg(summary: SiteSummary) -> Markup:
    """Buildings found per date (grey), new (red) and demolished (purple) per date, as inline SVG."""
    width, height, top = 120 * len(summary.per_date) + 60, 220, 30
    most = max([d.buildings for d in summary.per_date] + [1])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="buildings per date">']
    for k, day in enumerate(summary.per_date):
        x = 50 + 120 * k
        bars = ((0, day.buildings, "#999"), (36, day.new, "#e62828"), (72, day.demolished, "#b450ff"))
        for offset, value, colour in bars:
            bar = 150 * value / most
            parts.append(f'<rect x="{x + offset}" y="{top + 150 - bar:.1f}" width="30" height="{bar:.1f}" '
                         f'fill="{colour}"/><text x="{x + offset + 15}" y="{top + 145 - bar:.1f}" font-size="11" '
                         f'text-anchor="middle">{value}</text>')
        parts.append(f'<text x="{x + 51}" y="{top + 168}" font-size="12" text-anchor="middle">'
                     f'{html.escape(day.date)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _shift_text(summary: SiteSummary) -> str:
    return "; ".join(f"{s.dx_m:+.1f} m east, {-s.dy_m:+.1f} m north ({'corrected' if s.applied else 'not applied'})"
                     + _turn_text(s.rotation_deg) for s in summary.shift) or "none"


def _turn_text(rotation_deg: float) -> str:
    """A later date turned back before the diff (``rotation_deg`` clockwise as it was; sitewatch.rotation)."""
    if not rotation_deg:
        return ""
    return f", turned back {abs(rotation_deg):.1f}° {'anticlockwise' if rotation_deg > 0 else 'clockwise'}"


def _coverage_text(summary: SiteSummary) -> str:
    coverage = summary.coverage
    if not coverage:
        return ""
    per_date = ", ".join(f"{d} {100 * v:.0f} %" for d, v in coverage.valid_share_per_date.items())
    return (f"Ground with valid data: {per_date}; at every date {100 * coverage.observed_at_every_date_share:.0f} % "
            f"of the site.")
