"""Change over time: match footprints, classify changes, track buildings, flag.

Pure functions over footprints (GeoDataFrames from :mod:`sitewatch.footprints`), the evidence
of the probability rasters (:mod:`sitewatch.coverage`) and the shifts measured when the dates
were prepared (:mod:`sitewatch.prepare`); no raster is read here.

* registration: each later date's footprints are moved back by its measured shift;
* matching: footprints of consecutive dates are linked by overlap (one-to-many for merges and
  splits); each building of the last date gets ``new``, ``expanded``, ``shrunk`` or ``unchanged``, each
  first-date building that is gone ``demolished``; tracks carry ``first_seen``/``last_seen``;
* flags (rules in ``sitewatch/assets/change.yaml``): ``assembly_hall`` and ``housing`` clusters.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from pyproj import CRS

from sitewatch.coverage import Coverage
from sitewatch.errors import SitewatchError
from sitewatch.evidence import ImageEvidence
from sitewatch.footprints import centroid_lonlat, connected_groups, measure
from sitewatch.prepare import Shift
from sitewatch.rules import ChangeRules
from sitewatch.summary import (
    CHANGE_CLASSES,
    FLAGS,
    ChangeCounts,
    ClearedArea,
    CoverageRecord,
    DateCounts,
    FlagCounts,
    GoneBuilding,
    HousingCluster,
    ImageRecord,
    ModelRun,
    NewBuilding,
    SiteSummary,
)

# --- registration ----------------------------------------------------------------------------------

def shift_geometry(geometry: shapely.Geometry, shift: Shift, transform: rasterio.Affine) -> shapely.Geometry:
    """A geometry (in the raster grid's CRS) moved by ``-shift`` pixels, as footprints are."""
    if not shift.applied:
        return geometry
    dx = -(shift.dx_px * transform.a + shift.dy_px * transform.b)
    dy = -(shift.dx_px * transform.d + shift.dy_px * transform.e)
    return shapely.transform(geometry, lambda xy: xy + np.array([dx, dy]))


def shift_footprints(frame: gpd.GeoDataFrame, shift: Shift, transform: rasterio.Affine) -> gpd.GeoDataFrame:
    """Move footprints by ``-shift`` pixels (in the raster grid's CRS)."""
    if not shift.applied or frame.empty:
        return frame
    dx = -(shift.dx_px * transform.a + shift.dy_px * transform.b)
    dy = -(shift.dx_px * transform.d + shift.dy_px * transform.e)
    moved = frame.copy()
    moved["geometry"] = moved.geometry.translate(xoff=dx, yoff=dy)
    return moved


# --- matching, classes, tracks ---------------------------------------------------------------------

def overlap_pairs(earlier: gpd.GeoDataFrame, later: gpd.GeoDataFrame) -> pd.DataFrame:
    """Pairs of overlapping footprints with intersection area (m², in a metric CRS)."""
    if earlier.empty or later.empty:
        return pd.DataFrame({"earlier": [], "later": [], "overlap": []})
    tree = shapely.STRtree(earlier.geometry.values)
    later_idx, earlier_idx = tree.query(later.geometry.values, predicate="intersects")
    overlap = shapely.area(shapely.intersection(later.geometry.values[later_idx],
                                                earlier.geometry.values[earlier_idx]))
    return pd.DataFrame({"earlier": earlier_idx, "later": later_idx, "overlap": overlap})


def link_dates(earlier: gpd.GeoDataFrame, later: gpd.GeoDataFrame, rules: ChangeRules) -> pd.DataFrame:
    """Links between two dates' footprints (metric CRS) whose overlap is a real one.

    A pair counts when the overlap covers ``match_min_overlap`` of the smaller of the two,
    so merges (one later ↔ several earlier) and splits (several later ↔ one earlier) link.
    """
    pairs = overlap_pairs(earlier, later)
    if pairs.empty:
        return pairs
    smaller = np.minimum(earlier.geometry.area.values[pairs.earlier], later.geometry.area.values[pairs.later])
    return pairs[pairs.overlap >= rules.match_min_overlap * smaller].reset_index(drop=True)


@dataclass
class ChangeResult:
    """Everything the report needs about one site."""

    dates: list[dt.date]
    footprints: list[gpd.GeoDataFrame]  # per date, metric CRS, with ``track_id``
    changes: gpd.GeoDataFrame  # metric CRS
    clusters: gpd.GeoDataFrame  # metric CRS
    largest_existing_m2: float
    tracks: Tracks | None = None  # presence of every building at every date
    shifts: list[Shift] = field(default_factory=list)  # per later date, as measured
    coverage: Coverage | None = None  # what ground each date saw
    land_cleared: gpd.GeoDataFrame | None = None  # cleared areas (sitewatch.clearing), any CRS


def compare_dates(footprints: list[gpd.GeoDataFrame], dates: list[dt.date], rules: ChangeRules,
                  before_probability: np.ndarray | None = None,
                  after_probability: np.ndarray | None = None,
                  observed: shapely.Geometry | None = None, pixel_m: float = 0.0,
                  seen: list[shapely.Geometry] | None = None,
                  evidence: ImageEvidence | None = None) -> ChangeResult:
    """Classify, track and flag the buildings of a site seen at several dates.

    Args:
        footprints: per date (sorted), footprint layers in one metric CRS with ``area_m2``,
            ``width_m``, ``elongation``, ``rectangularity`` and ``mean_probability``.
        dates: the dates, ascending.
        rules: thresholds.
        before_probability: per building of the last date (in the order of ``footprints[-1]``), the mean
            building probability on its ground at the first date. It sets ``confidence``, and a building whose
            ground already scored ``absent_max_probability`` is not new (the model saw it, weaker). None: 0.
        after_probability: the same, per first-date building, at the last date: a building
            whose ground still scores ``absent_max_probability`` is not called demolished.
        observed: the ground with valid data at every date (metric CRS). A building that would
            be new or demolished but lies mostly (≥ half) outside it is ``not_observed``: one
            of the dates did not see its ground. Buildings within about two pixels of its edge
            are marked ``cut_by_edge`` (their area is a lower bound).
        pixel_m: ground pixel size (m) of the rasters, for that margin.
        seen: per date, the ground that date saw (metric CRS); a building is only called absent at a date
            that saw its ground. With three or more dates a building is new from the date it appears and
            stays (present at every later date that saw it: ``first_seen``); a detection that comes and goes
            is no change. Records carry ``first_seen``, ``last_seen`` and ``presence`` (1 present, 0 absent,
            - not seen, one character a date).
        evidence: the first and last date's pictures compared (:mod:`sitewatch.evidence`): no change
            where the picture did not change; it sets part of the confidence (None: footprints only).
    Every building of every date is in one record (``unconfirmed``: :func:`unconfirmed_records`).
    """
    if len(footprints) < 2:
        raise SitewatchError("change detection needs rasters of at least two dates")
    crs = footprints[0].crs
    frames, tracks = track_buildings(footprints, dates, rules, seen)
    first, last = frames[0], frames[-1]
    largest_existing = float(first["area_m2"].max()) if not first.empty else 0.0
    links = link_dates(first, last, rules)
    present = classify_present(first, last, links, rules, before_probability, observed, evidence, pixel_m)
    present = present.assign(
        ratio_to_largest_existing=(np.round(last["area_m2"].to_numpy(float) / largest_existing, 3)
                                   if largest_existing > 0 else np.nan),
        # a new building is new from the date it appeared and stayed; others keep their first date
        # a replaced building continues its predecessor's track: it is reported from the last date
        first_seen=[tracks.settled_since(t) if change == "new" else dates[-1] if change == "replaced" else seen_first
                    for t, change, seen_first in zip(last["track_id"], present["change"], last["first_seen"],
                                                     strict=True)],
        last_seen=[tracks.last_seen(t) for t in last["track_id"]], date_seen=dates[-1],
        presence=[tracks.presence(t) for t in last["track_id"]])
    columns = [c for c in last.columns if c not in RECORD_COLUMNS] + list(RECORD_COLUMNS)
    demolished = classify_gone(first, links, rules, after_probability, observed, evidence, pixel_m).assign(
        ratio_to_largest_existing=np.nan, last_seen=lambda gone: [tracks.last_seen(t) for t in gone["track_id"]],
        date_seen=dates[0], presence=lambda gone: [tracks.presence(t) for t in gone["track_id"]])
    held_nowhere = unconfirmed_records(frames, tracks, links, demolished, rules).reindex(columns=columns)
    changes = gpd.GeoDataFrame(pd.concat([present[columns], demolished[columns], held_nowhere], ignore_index=True),
                               crs=crs)
    clusters = flag_changes(changes, largest_existing, rules, observed, pixel_m)
    return ChangeResult(dates=dates, footprints=frames, changes=changes, clusters=clusters,
                        largest_existing_m2=largest_existing, tracks=tracks)


def unconfirmed_records(frames: list[gpd.GeoDataFrame], tracks: Tracks, links: pd.DataFrame,
                        demolished: gpd.GeoDataFrame, rules: ChangeRules) -> gpd.GeoDataFrame:
    """Records for the buildings no other record holds, so that every building found at every date is in
    exactly one record: ``unconfirmed`` (found at an earlier date, not at the last, and no change is claimed:
    a weak detection, a flicker, or a loss the pictures do not confirm as a demolition). A building found at
    the last date only, too small or too unsure to be called new, is ``unconfirmed`` too (classify_present).

    Held by other records: the last date's buildings (their tracks), the first date's buildings linked to them
    (what stood under them), reported demolitions, and a building that merged into a later one (its footprint
    links to a building of the next date). Each other track gets one record: its footprint at its last
    presence, with ``date_seen`` that date.
    """
    held = set(frames[-1]["track_id"].tolist()) | set(demolished["track_id"].tolist())
    if not links.empty:
        held |= set(frames[0]["track_id"].to_numpy()[links["earlier"].to_numpy()].tolist())
    rows = []
    for k in range(len(frames) - 2, -1, -1):  # latest presence first: a track is recorded once
        frame = frames[k]
        alone = frame[~frame["track_id"].isin(held)]
        if alone.empty:
            continue
        merged = set(link_dates(alone.reset_index(drop=True), frames[k + 1], rules)["earlier"].tolist())
        for position, (index, row) in enumerate(alone.iterrows()):
            held.add(int(row["track_id"]))
            if position in merged:
                continue
            rows.append(frame.loc[[index]].assign(
                change="unconfirmed", area_before_m2=float(row["area_m2"]), ratio_to_largest_existing=np.nan,
                confidence=np.nan, image_similarity=np.nan, outline_contrast=np.nan, before_outline="",
                last_seen=tracks.last_seen(int(row["track_id"])), date_seen=tracks.dates[k],
                presence=tracks.presence(int(row["track_id"]))))
    if not rows:
        return frames[0].iloc[:0].assign(**{name: pd.Series(dtype=object) for name in RECORD_COLUMNS})
    return gpd.GeoDataFrame(pd.concat(rows, ignore_index=True), crs=frames[0].crs)


#: The columns a change record adds to a footprint's, in the order the change layer keeps them.
RECORD_COLUMNS = ("change", "area_before_m2", "ratio_to_largest_existing", "confidence", "image_similarity",
                  "outline_contrast", "before_outline", "last_seen", "date_seen", "presence")


@dataclass
class Tracks:
    """Each building track's presence at every date of a series.

    ``state[i, k]`` for track ``ids[i]`` at date ``k``: 1 present, 0 absent on ground that date
    saw, -1 ground not seen that date (no evidence either way).
    """

    ids: np.ndarray
    state: np.ndarray
    dates: list[dt.date]

    def row(self, track_id: int) -> np.ndarray:
        return self.state[int(np.searchsorted(self.ids, track_id))]

    def presence(self, track_id: int) -> str:
        """Presence per date as text: ``1`` present, ``0`` absent, ``-`` not seen (``"0-11"``)."""
        return "".join({1: "1", 0: "0", -1: "-"}[int(v)] for v in self.row(track_id))

    def settled_since(self, track_id: int) -> dt.date:
        """The first date from which the building is present at every later date that saw its
        ground (when it is present at the last one); else its first presence."""
        row = self.row(track_id)
        present = np.nonzero(row == 1)[0]
        if row[-1] != 1:
            return self.dates[int(present[0])]
        since = len(row) - 1
        for k in range(len(row) - 1, -1, -1):
            if row[k] == 0:
                break
            if row[k] == 1:
                since = k
        return self.dates[since]

    def last_seen(self, track_id: int) -> dt.date:
        return self.dates[int(np.nonzero(self.row(track_id) == 1)[0][-1])]


def track_buildings(footprints: list[gpd.GeoDataFrame], dates: list[dt.date], rules: ChangeRules,
                    seen: list[shapely.Geometry | None] | None = None) -> tuple[list[gpd.GeoDataFrame], Tracks]:
    """Each date's footprints with ``track_id`` and ``first_seen`` (first presence); the tracks.

    A building continues the track it overlaps most among the tracks' latest footprints (of any
    earlier date, so a building missed at one date keeps its track). Where two buildings continue
    one track (a split), the one with the larger overlap keeps its id and the other starts a new
    track that keeps its first date. ``seen``: per date, the ground that date saw (metric CRS).
    """
    frames = [f.reset_index(drop=True).copy() for f in footprints]
    frames[0]["track_id"] = np.arange(1, len(frames[0]) + 1)
    frames[0]["first_seen"] = dates[0]
    latest = frames[0][["track_id", "first_seen", "geometry"]].copy()
    for k in range(1, len(frames)):
        track, first_seen = _continue_tracks(latest, frames[k], dates[k], rules,
                                             next_track=int(latest["track_id"].max()) + 1 if len(latest) else 1)
        frames[k]["track_id"], frames[k]["first_seen"] = track, first_seen
        latest = pd.concat([latest[~latest["track_id"].isin(track)],
                            frames[k][["track_id", "first_seen", "geometry"]]], ignore_index=True)
    latest = gpd.GeoDataFrame(latest.sort_values("track_id", ignore_index=True), crs=frames[0].crs)
    return frames, Tracks(latest["track_id"].to_numpy(), _presence(frames, latest, seen), dates)


def _continue_tracks(latest: pd.DataFrame, frame: gpd.GeoDataFrame, date: dt.date, rules: ChangeRules,
                     next_track: int) -> tuple[np.ndarray, np.ndarray]:
    """``(track id, first seen)`` of each building of ``frame`` against the tracks' latest footprints."""
    links = link_dates(gpd.GeoDataFrame(latest, crs=frame.crs), frame, rules)
    track = np.zeros(len(frame), np.int64)
    first_seen = np.array([date] * len(frame), dtype=object)
    if not links.empty:
        best = links.sort_values("overlap", ascending=False, kind="stable").drop_duplicates("later")
        track[best.later.values] = latest["track_id"].values[best.earlier.values]
        first_seen[best.later.values] = latest["first_seen"].values[best.earlier.values]
        split = best.duplicated("earlier").to_numpy()  # a second part of one track: a new id
        track[best.later.values[split]] = 0
    fresh = track == 0
    track[fresh] = np.arange(next_track, next_track + fresh.sum())
    return track, first_seen


def _presence(frames: list[gpd.GeoDataFrame], latest: gpd.GeoDataFrame,
              seen: list[shapely.Geometry | None] | None) -> np.ndarray:
    """Tracks × dates: 1 present, 0 absent on seen ground, -1 ground not seen (half or more unseen)."""
    ids = latest["track_id"].to_numpy()
    state = np.zeros((len(ids), len(frames)), np.int8)
    for k, frame in enumerate(frames):
        if seen is not None and seen[k] is not None:
            state[mostly_unseen(latest.geometry.values, seen[k]), k] = -1
        state[np.searchsorted(ids, frame["track_id"].to_numpy()), k] = 1
    return state


def classify_present(first: gpd.GeoDataFrame, last: gpd.GeoDataFrame, links: pd.DataFrame, rules: ChangeRules,
                     before_probability: np.ndarray | None, observed: shapely.Geometry | None,
                     evidence: ImageEvidence | None = None, pixel_m: float = 0.0) -> gpd.GeoDataFrame:
    """The last date's buildings with ``change`` (new, expanded, shrunk, replaced, unchanged, not_observed),
    the area that stood under them at the first date, the picture evidence and the confidence of a change.
    A growth or loss must also span ``growth_min_pixels`` pixels of ``pixel_m``: a footprint re-traced a pixel
    wider on a 3-4 m raster has not grown."""
    earlier_area = np.zeros(len(last))
    before_shape = np.array([None] * len(last), dtype=object)
    if not links.empty:
        # one-to-many: a later building is compared with the sum of what stood under it
        linked = links.drop_duplicates(["earlier", "later"])
        for later, group in linked.groupby("later"):
            earlier_area[later] = first["area_m2"].values[group.earlier.values].sum()
            before_shape[later] = shapely.union_all(first.geometry.values[group.earlier.values])
    area = last["area_m2"].to_numpy(float)
    group_before, group_after = linked_group_areas(first, last, links)
    before = np.zeros(len(last)) if before_probability is None else np.asarray(before_probability, float)
    change = np.where(earlier_area == 0, "new", "unchanged").astype(object)
    change[(earlier_area == 0) & (before >= rules.absent_max_probability)] = "unchanged"
    least_m2 = rules.growth_min_pixels * pixel_m * pixel_m
    grew = (earlier_area > 0) & (group_after - group_before >= np.maximum(
        rules.expanded_min_share * group_before, max(rules.expanded_min_m2, least_m2)))
    change[grew] = "expanded"
    shrank = (earlier_area > 0) & (group_before - group_after >= np.maximum(
        rules.shrunk_min_share * group_before, max(rules.shrunk_min_m2, least_m2)))
    change[shrank] = "shrunk"
    similarity = changed_ground_similarity(last.geometry.values, before_shape, change, evidence, last.crs)
    sure_before = earlier_probability(first, links, len(last))
    change[replaced_buildings(last, before_shape, np.fmax(similarity.whole, similarity.earlier), rules,
                              sure_before)] = "replaced"
    context = surroundings_similarity(last.geometry.values, evidence, last.crs, pixel_m)
    rebuilt = (change == "unchanged") & rebuilt_in_place(last, before_shape, similarity.whole, context, rules,
                                                         sure_before, pixel_m)
    change[rebuilt] = "replaced"
    similarity = np.where(change == "replaced", similarity.whole, similarity.changed)
    # a building rebuilt in place stands where one stood: the probability there at the first date is the
    # earlier building's, not a doubt about the new one (the picture evidence carries the claim). Other
    # replaced buildings keep the usual confidence: letting them all through this way added 5 wrong
    # replaced records on the flags bench's real pairs (docs/BENCHMARKS.md)
    confidence = sureness(last, np.where(rebuilt, 0.0, before), similarity)
    changed = change != "unchanged"
    change[changed & (similarity >= rules.evidence_max_similarity)] = "unchanged"  # the picture did not change
    weak = too_weak(confidence, area, rules)
    change[(change == "replaced") & weak] = "unchanged"  # it stands where one stood
    change[(change == "new") & weak] = "unconfirmed"  # found now, too small or unsure to claim as new
    change[(change == "new") & mostly_unseen(last.geometry.values, observed)] = "not_observed"
    claimed = np.isin(change, ["new", "expanded", "shrunk", "replaced"])
    change[claimed & partly_unseen(changed_ground(last.geometry.values, before_shape, change), observed)] = \
        "not_observed"
    contrast = (evidence.contrast(last.geometry.values, last.crs, later=True) if evidence is not None
                else np.full(len(last), np.nan))
    outline = [_wkt_lonlat(shape, last.crs) if kind == "replaced" else "" for shape, kind in
               zip(before_shape, change, strict=True)]
    return last.assign(change=change, area_before_m2=np.round(earlier_area, 2), confidence=np.round(confidence, 3),
                       image_similarity=np.round(similarity, 3), outline_contrast=np.round(contrast, 3),
                       before_outline=outline)


def linked_group_areas(first: gpd.GeoDataFrame, last: gpd.GeoDataFrame, links: pd.DataFrame
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Per last-date building, the summed area (m²) of the first-date and of the last-date buildings of
    its group: the buildings joined by links, directly or through each other (merges and splits).

    A building split in two by the segmentation at one date (or by a new wall) is compared as a
    whole: each part alone is not a shrink of the whole. 0 and its own area where unlinked."""
    before, after = np.zeros(len(last)), last["area_m2"].to_numpy(float).copy()
    if links.empty:
        return before, after
    offset = len(first)  # nodes: first-date buildings, then last-date ones
    pairs = np.column_stack([links.earlier.to_numpy(), links.later.to_numpy() + offset])
    area = np.concatenate([first["area_m2"].to_numpy(float), last["area_m2"].to_numpy(float)])
    for members in connected_groups(offset + len(last), pairs):
        members = np.asarray(members)
        earlier, later = members[members < offset], members[members >= offset] - offset
        if len(earlier) and len(later):
            before[later], after[later] = area[earlier].sum(), area[later + offset].sum()
    return before, after


@dataclass
class GroundSimilarity:
    """Mean picture similarity (−1..1, NaN: no evidence) per building: under its whole footprint
    and under the ground that changed (the footprint of a new one, the added or lost part of a
    grown or shrunk one)."""

    whole: np.ndarray
    changed: np.ndarray
    earlier: np.ndarray  # under what stood on its ground at the first date and it does not cover (NaN: nothing stood)


def changed_ground(geometries: np.ndarray, before: np.ndarray, change: np.ndarray) -> np.ndarray:
    """The ground each record's change is about: the added part of an expanded building, the lost part of
    a shrunk one, the whole footprint of the others (``before``: what stood under each, or None)."""
    ground = geometries.copy()
    for k in np.flatnonzero((change == "expanded") | (change == "shrunk")):
        part = (shapely.difference(geometries[k], before[k]) if change[k] == "expanded"
                else shapely.difference(before[k], geometries[k]))
        ground[k] = part if not part.is_empty else geometries[k]
    return ground


def partly_unseen(ground: np.ndarray, observed: shapely.Geometry | None) -> np.ndarray:
    """True where at least :data:`PARTLY_UNSEEN_SHARE` of a change's ground lies outside the ground seen at
    every date: a building cut by the edge of a cloud mask is not observed, not shrunk or grown."""
    if observed is None or len(ground) == 0:
        return np.zeros(len(ground), bool)
    area = shapely.area(ground)
    outside = area - shapely.area(shapely.intersection(ground, observed))
    return np.divide(outside, area, out=np.zeros(len(ground)), where=area > 0) >= PARTLY_UNSEEN_SHARE


#: The share of a change's ground that, unseen at some date, makes the change not observed (a quarter:
#: chosen by reasoning on the probe's cloud-edge case, 960 -> 88 m², not measured on a bench).
PARTLY_UNSEEN_SHARE = 0.25


def changed_ground_similarity(geometries: np.ndarray, before: np.ndarray, change: np.ndarray,
                              evidence: ImageEvidence | None, crs: CRS) -> GroundSimilarity:
    """The picture similarity of each building's ground (see :class:`GroundSimilarity`)."""
    if evidence is None:
        nothing = np.full(len(geometries), np.nan)
        return GroundSimilarity(nothing, nothing.copy(), nothing.copy())
    whole = evidence.similarity_under(geometries, crs)
    ground = changed_ground(geometries, before, change)
    changed = whole.copy()
    moved = np.flatnonzero(ground != geometries)
    if len(moved):
        changed[moved] = evidence.similarity_under(ground[moved], crs)
    earlier = np.full(len(geometries), np.nan)
    stood = np.flatnonzero([b is not None for b in before])
    if len(stood):  # the earlier ground the building does not cover now (all of it where it covers all)
        given_up = shapely.difference(np.array(list(before[stood]), dtype=object), geometries[stood])
        given_up = np.where(shapely.area(given_up) > 0, given_up, np.array(list(before[stood]), dtype=object))
        earlier[stood] = evidence.similarity_under(given_up, crs)
    return GroundSimilarity(whole, changed, earlier)


def earlier_probability(first: gpd.GeoDataFrame, links: pd.DataFrame, count: int) -> np.ndarray:
    """Per later building (``count``), the least ``mean_probability`` of the first-date buildings
    it links to (NaN: none linked, or no probability): how sure the model was of what stood there."""
    out = np.full(count, np.nan)
    if links.empty or "mean_probability" not in first:
        return out
    probability = first["mean_probability"].to_numpy(float)
    for later, group in links.drop_duplicates(["earlier", "later"]).groupby("later"):
        out[later] = np.min(probability[group.earlier.values])
    return out


def replaced_buildings(last: gpd.GeoDataFrame, before: np.ndarray, similarity: np.ndarray, rules: ChangeRules,
                       before_probability: np.ndarray | None = None) -> np.ndarray:
    """Buildings of the last date (metric CRS) standing on the ground of earlier ones that were
    pulled down (``before``: per building, the union of the first-date buildings it links to).

    All of: another outline (intersection over union with what stood there below
    ``replaced_max_iou``); the earlier building's ground mostly given up: at most
    ``replaced_max_kept_share`` of it lies under the new building and at most
    ``replaced_max_built_share`` under any building of the last date (a block re-traced with
    another outline, grown or split, still stands on its ground); another picture (similarity
    under the building and under the ground of the earlier one it does not cover below
    ``replaced_max_similarity``: ``similarity`` is the larger of the two); both confidently detected:
    each earlier building (``before_probability``, its mean probability) at least
    ``replaced_min_probability_before`` (the claim that it was pulled down rests on it), the new one at
    least ``replaced_min_probability_after`` (NaN: not known, not tested); both of at least
    ``demolished_min_area_m2``.
    """
    geometries = last.geometry.values
    out = np.zeros(len(geometries), bool)
    stood = np.flatnonzero([b is not None for b in before])
    if len(stood) == 0:
        return out
    old = np.array(list(before[stood]), dtype=object)
    new, old_area = geometries[stood], shapely.area(old)
    common = shapely.area(shapely.intersection(new, old))
    union = shapely.area(shapely.union(new, old))
    iou = np.divide(common, union, out=np.ones(len(stood)), where=union > 0)
    standing = shapely.union_all(geometries)
    kept = np.divide(common, old_area, out=np.ones(len(stood)), where=old_area > 0)
    built = np.divide(shapely.area(shapely.intersection(old, standing)), old_area, out=np.ones(len(stood)),
                      where=old_area > 0)
    sure_new = ~(last["mean_probability"].to_numpy(float)[stood] < rules.replaced_min_probability_after)
    sure_old = (np.ones(len(stood), bool) if before_probability is None
                else ~(np.asarray(before_probability, float)[stood] < rules.replaced_min_probability_before))
    big = np.minimum(shapely.area(new), old_area) >= rules.demolished_min_area_m2
    out[stood] = (big & (iou < rules.replaced_max_iou) & (kept <= rules.replaced_max_kept_share)
                  & (built <= rules.replaced_max_built_share) & (similarity[stood] < rules.replaced_max_similarity)
                  & sure_new & sure_old)
    return out


#: Width (m) of the ground around a building whose picture tells a local change from a global one.
SURROUNDINGS_M = 15.0


def surroundings_similarity(geometries: np.ndarray, evidence: ImageEvidence | None, crs: CRS,
                            pixel_m: float) -> np.ndarray:
    """Mean picture similarity of the ground around each polygon (a ring of ``SURROUNDINGS_M`` from a
    pixel outside it; NaN without evidence): high where only the building's ground changed, low where
    the whole scene looks different (another season, another sensor)."""
    if evidence is None:
        return np.full(len(geometries), np.nan)
    return evidence.similarity_around(geometries, crs, SURROUNDINGS_M, max(pixel_m, 1.0))


def rebuilt_in_place(last: gpd.GeoDataFrame, before: np.ndarray, similarity: np.ndarray, context: np.ndarray,
                     rules: ChangeRules, before_probability: np.ndarray, pixel_m: float) -> np.ndarray:
    """Buildings of the last date (metric CRS) linked to earlier ones on much the same ground whose
    picture is another one while the ground around them is not: similarity under the whole footprint
    below ``rebuilt_max_similarity``, around it (``context``, :func:`surroundings_similarity`) at least
    ``rebuilt_min_context_similarity`` (a pair of seasons or sensors changes every roof's picture; a
    rebuild changes one), and an outline that changed (IoU with what stood there, ``before``, below
    ``rebuilt_max_iou``); both sure and large, as for :func:`replaced_buildings` (also
    ``demolished_min_pixels`` of ``pixel_m``). NaN similarity (no picture evidence) is never a rebuild."""
    out = np.zeros(len(last), bool)
    stood = np.flatnonzero([b is not None for b in before])
    if len(stood) == 0:
        return out
    old = np.array(list(before[stood]), dtype=object)
    new = last.geometry.values[stood]
    common, union = shapely.area(shapely.intersection(new, old)), shapely.area(shapely.union(new, old))
    iou = np.divide(common, union, out=np.ones(len(stood)), where=union > 0)
    least = max(rules.demolished_min_area_m2, rules.demolished_min_pixels * pixel_m * pixel_m)
    big = np.minimum(shapely.area(new), shapely.area(old)) >= least
    sure = ~(last["mean_probability"].to_numpy(float)[stood] < rules.replaced_min_probability_after) & \
        ~(np.asarray(before_probability, float)[stood] < rules.replaced_min_probability_before)
    local = ((similarity[stood] < rules.rebuilt_max_similarity)
             & (context[stood] >= rules.rebuilt_min_context_similarity))
    out[stood] = big & sure & (iou < rules.rebuilt_max_iou) & local
    return out


def _wkt_lonlat(shape: shapely.Geometry | None, crs: CRS) -> str:
    """A polygon as WKT in EPSG:4326 (6 decimals), for a record that names an earlier building."""
    if shape is None:
        return ""
    return shapely.to_wkt(gpd.GeoSeries([shape], crs=crs).to_crs(4326).values[0], rounding_precision=6)


def classify_gone(first: gpd.GeoDataFrame, links: pd.DataFrame, rules: ChangeRules,
                  after_probability: np.ndarray | None, observed: shapely.Geometry | None,
                  evidence: ImageEvidence | None = None, pixel_m: float = 0.0) -> gpd.GeoDataFrame:
    """The first date's buildings that are gone at the last: ``demolished`` or ``not_observed``.

    Like a new building, a demolition is reported only when sure: the building was clear at the
    first date and its ground is clear of it at the last (a weak detection that flickers with a
    shift of a few pixels is not a demolition). The pictures must agree: the ground changed
    (similarity below ``demolished_max_similarity``), the building's outline stood out from its
    surroundings at the first date (``demolished_min_contrast``: bare pads and dirt yards the model
    took for roofs do not) and it covered at least ``demolished_min_area_m2`` and ``demolished_min_pixels``
    pixels of ``pixel_m`` (a house 3-4 pixels across on a 3-4 m raster that one month's detections lose is
    more often lost to the season or haze than pulled down).
    """
    after = np.zeros(len(first)) if after_probability is None else np.asarray(after_probability, float)
    gone = np.ones(len(first), bool)
    if not links.empty:
        gone[links.earlier.to_numpy()] = False
    gone &= after < rules.absent_max_probability
    geometries = first.geometry.values
    similarity = (evidence.similarity_under(geometries, first.crs) if evidence is not None
                  else np.full(len(first), np.nan))
    contrast = (evidence.contrast(geometries, first.crs, later=False) if evidence is not None
                else np.full(len(first), np.nan))
    confidence = sureness(first, after, similarity)
    area = first["area_m2"].to_numpy(float)
    gone &= ~too_weak(confidence, area, rules) & (area >= rules.demolished_min_area_m2) & (
        area >= rules.demolished_min_pixels * pixel_m * pixel_m)
    gone &= ~(similarity >= rules.demolished_max_similarity) & ~(contrast < rules.demolished_min_contrast)
    index = np.flatnonzero(gone)
    return first.iloc[index].assign(
        change=np.where(mostly_unseen(geometries[index], observed), "not_observed", "demolished"),
        area_before_m2=area[index], confidence=np.round(confidence[index], 3),
        image_similarity=np.round(similarity[index], 3), outline_contrast=np.round(contrast[index], 3),
        before_outline="")


def flag_changes(changes: gpd.GeoDataFrame, largest_existing_m2: float, rules: ChangeRules,
                 observed: shapely.Geometry | None, pixel_m: float) -> gpd.GeoDataFrame:
    """Number the changes (``change_id``), mark ``cut_by_edge`` and ``flag`` halls and housing, in place;
    return the housing clusters."""
    changes["flag"] = ""
    changes["cut_by_edge"] = touches_edge(changes.geometry.values, observed, max(2 * pixel_m, 1.0))
    is_new = changes["change"].isin(["new", "replaced"])  # a rebuilt building is a new one
    hall = is_new & assembly_hall_rule(changes, largest_existing_m2, rules, observed)
    similar = one_of_similar_neighbours(changes, is_new, rules)
    blocks = roof_block_counts(changes)
    hall &= ~similar & (blocks < 2)  # touching blocks traced as one footprint are no hall
    changes.loc[hall, "flag"] = "assembly_hall"
    changes["hall_note"] = hall_notes(changes, is_new & ~hall, similar, blocks, largest_existing_m2, rules, observed)
    changes.insert(0, "change_id", np.arange(1, len(changes) + 1))
    group = building_groups(changes, hall, blocks, rules, pixel_m)
    changes["unit"] = np.where(group, "building_group", "building")
    changes["estimated_count"] = np.where(group, np.maximum(blocks, np.round(
        changes["area_m2"].to_numpy(float) / rules.group_m2_per_building)), 1).astype(np.int64)
    candidates = (is_new & ~hall).to_numpy()
    several = (similar | (blocks >= 2) | group).to_numpy()  # members whatever their size
    stands_for = np.maximum(blocks.to_numpy(), changes["estimated_count"].to_numpy())  # buildings per record
    clusters = housing_clusters(changes[candidates], rules, changes.crs, several[candidates], stands_for[candidates])
    for members in clusters["member_ids"]:
        changes.loc[changes["change_id"].isin(members), "flag"] = "housing"
    return clusters


def hall_size_m2(largest_existing_m2: float, rules: ChangeRules) -> float:
    """The least area (m²) of a hall: ``hall_min_area_m2``, or the share of the largest existing
    building where that is smaller, never below the floor."""
    size = rules.hall_min_area_m2
    if largest_existing_m2 > 0:
        size = min(size, max(rules.hall_min_share_of_largest * largest_existing_m2, rules.hall_min_area_floor_m2))
    return size


def hall_notes(changes: gpd.GeoDataFrame, unflagged: pd.Series, similar: pd.Series, blocks: pd.Series,
               largest_existing_m2: float, rules: ChangeRules, observed: shapely.Geometry | None) -> pd.Series:
    """Why each new building of hall size is no hall ('' for the others), in words an analyst reads.

    Judged as :func:`assembly_hall_rule` judges, on the core a ``hall_min_width_m`` square sweeps
    (every reason that applies, '; '-joined): "2 roof blocks", "one of 4 similar new buildings (an
    estate)", "core 35 % of the outline (mostly paving or yard)", "core 800 m² (hall size
    1,000 m²)", "rectangularity 0.62", "elongation 11".
    """
    notes = pd.Series("", index=changes.index, dtype=object)
    size = hall_size_m2(largest_existing_m2, rules)
    area = changes["area_m2"].to_numpy(float)
    chosen = unflagged.to_numpy(bool) & (area >= size)
    if not chosen.any():
        return notes
    core = hall_core_shape(changes.geometry.values[chosen], rules.hall_min_width_m, rules, changes.crs, observed)
    core_area, rectangularity, elongation = core.area_m2, core.rectangularity, core.elongation
    neighbours = similar.to_numpy(bool)[chosen]
    for k, index in enumerate(changes.index[chosen]):
        reasons = []
        if blocks.loc[index] >= 2:
            reasons.append(f"{blocks.loc[index]} roof blocks")
        if neighbours[k]:
            reasons.append("one of several similar new buildings (an estate)")
        if core_area[k] < rules.hall_min_core_share * area[chosen][k]:
            reasons.append(f"core {100 * core_area[k] / area[chosen][k]:.0f} % of the outline (mostly paving, "
                           "yard or narrow parts)")
        if core_area[k] < size:
            reasons.append(f"core {core_area[k]:,.0f} m² (hall size {size:,.0f} m²)")
        if rectangularity[k] < rules.hall_min_rectangularity:
            reasons.append(f"rectangularity {rectangularity[k]:.2f}")
        if elongation[k] > rules.hall_max_elongation:
            reasons.append(f"elongation {elongation[k]:.0f}")
        notes.loc[index] = "; ".join(reasons) or "no single test fails alone"
    return notes


def building_groups(changes: gpd.GeoDataFrame, hall: pd.Series, blocks: pd.Series, rules: ChangeRules,
                    pixel_m: float) -> np.ndarray:
    """Records that are groups of buildings the pixels do not separate (rasters of at least
    ``group_min_pixel_m``): larger than one house (``housing_max_area_m2``), no hall, and several roof
    blocks or a core that falls apart under the ``hall_min_width_m`` sweep (merged houses and the yards
    between them, not one large roof)."""
    if pixel_m < rules.group_min_pixel_m or changes.empty:
        return np.zeros(len(changes), bool)
    large = changes["area_m2"].to_numpy(float) > rules.housing_max_area_m2
    core = shapely.area(hall_cores(changes.geometry.values, rules.hall_min_width_m))
    falls_apart = core < rules.hall_min_core_share * changes["area_m2"].to_numpy(float)
    return large & ~hall.to_numpy() & ((blocks.to_numpy() >= 2) | falls_apart)


def roof_block_counts(changes: gpd.GeoDataFrame) -> pd.Series:
    """Per record, the blocks its roof holds (``roof_blocks`` of the footprint stage,
    :func:`sitewatch.footprints.roof_blocks`; 1 where not measured)."""
    if "roof_blocks" not in changes:
        return pd.Series(np.ones(len(changes), np.int64), index=changes.index)
    return changes["roof_blocks"].fillna(1).astype(np.int64).clip(lower=1)


def hall_cores(geometries: np.ndarray, width_m: float) -> np.ndarray:
    """The largest part of each polygon that a ``width_m``-wide square can sweep (metric CRS).

    A morphological opening (inward then outward buffer by ``width_m / 2``, square corners): a
    long-span hall keeps nearly all of its roof, ragged outline or not, while houses merged into
    one blob fall apart at the yards and narrow links between them and keep one house-sized
    part. Empty geometry where nothing survives.
    """
    radius = width_m / 2
    opened = shapely.buffer(shapely.buffer(geometries, -radius, join_style="mitre"), radius,
                            join_style="mitre")
    parts, owner = shapely.get_parts(opened, return_index=True)
    cores = np.array([shapely.Polygon()] * len(geometries), dtype=object)
    best = np.zeros(len(geometries))
    for part, index, area in zip(parts, owner, shapely.area(parts), strict=True):
        if area > best[index]:
            best[index], cores[index] = area, part
    return cores


def sureness(frame: gpd.GeoDataFrame, other_date_probability: np.ndarray,
             similarity: np.ndarray | None = None) -> np.ndarray:
    """Confidence (0-1) of a change. The model's: the building's own mean probability × (1 − the
    mean probability on its ground at the other date). With picture evidence, the geometric mean
    of the model's and the picture's (1 − similarity of the changed ground, clipped to 0-1): a
    change the picture shows raises it, one the picture does not show lowers it."""
    own = frame["mean_probability"].fillna(0.5).to_numpy()
    model = np.clip(own * (1 - other_date_probability), 0, 1)
    if similarity is None:
        return model
    picture = 1 - np.clip(np.asarray(similarity, float), 0, 1)
    return np.where(np.isnan(picture), model, np.sqrt(model * np.nan_to_num(picture)))


def too_weak(confidence: np.ndarray, area_m2: np.ndarray, rules: ChangeRules) -> np.ndarray:
    """Changes not worth reporting: under the confidence or the area floor of a new building."""
    return (confidence < rules.new_min_confidence) | (area_m2 < rules.new_min_area_m2)


def mostly_unseen(geometries: np.ndarray, observed: shapely.Geometry | None) -> np.ndarray:
    """True for polygons with less than half their area on ground observed at every date."""
    if observed is None or len(geometries) == 0:
        return np.zeros(len(geometries), bool)
    area = shapely.area(geometries)
    inside = shapely.area(shapely.intersection(geometries, observed))
    return np.divide(inside, area, out=np.ones(len(geometries)), where=area > 0) < 0.5


def touches_edge(geometries: np.ndarray, observed: shapely.Geometry | None, margin_m: float) -> np.ndarray:
    """True for polygons within ``margin_m`` of the edge of the observed ground (cut by it)."""
    if observed is None or observed.is_empty:
        return np.zeros(len(geometries), bool)
    return shapely.dwithin(geometries, observed.boundary, margin_m)


#: Widths of the square the hall core is swept with, in multiples of ``hall_min_width_m``: the wider
#: ones cut off paving, yards or an access road the segmentation took in with the roof.
HALL_SPANS = (1.0, 1.5, 2.0, 3.0)


def assembly_hall_rule(buildings: gpd.GeoDataFrame, largest_existing_m2: float, rules: ChangeRules,
                       observed: shapely.Geometry | None = None) -> pd.Series:
    """Large, compact, long-span buildings, judged on their core (see :func:`hall_cores`).

    The core (what a ``hall_min_width_m`` square sweeps) must hold ``hall_min_core_share`` of the
    outline's area. Its shape, with notches narrower than half the span closed, must be large
    (``hall_min_area_m2``, or ``hall_min_share_of_largest`` of the largest existing building and
    at least the floor), rectangular and not too elongated. A building cut by the edge of the
    observed ground is judged on the core that is seen (a straight cut leaves a rectangle); its
    record says its area is a lower bound. Rectangularity is measured against the core's minimum
    rotated rectangle clipped to the ``observed`` ground: a hall cut diagonally by the edge of the
    image fills what can be seen of its rectangle.

    The core is also swept with wider squares (:data:`HALL_SPANS`): a hall whose traced outline
    took in neighbouring paving (a yard, a forecourt, an access road narrower than the hall) keeps
    its roof in the wider core while the paving falls away; a building passing the tests at any
    of these spans is a hall (each core still holding ``hall_min_core_share`` of the outline). A
    core cut out by a wider square must be a clean rectangle (``hall_min_wide_rectangularity``):
    what is left of a ragged blob of merged roofs is not.
    """
    if buildings.empty:
        return pd.Series(np.zeros(0, bool), index=buildings.index)
    hall = np.zeros(len(buildings), bool)
    for span in HALL_SPANS:
        least = rules.hall_min_rectangularity if span == 1.0 else rules.hall_min_wide_rectangularity
        hall |= _hall_at_span(buildings, span * rules.hall_min_width_m, least, largest_existing_m2, rules, observed)
    return pd.Series(hall, index=buildings.index)


@dataclass
class HallCore:
    """What the hall tests measure on each building's core (a ``width_m`` square's sweep): its area (m²),
    its rectangularity on the ground seen and its elongation, notches narrower than half the least span
    closed (bites of shadow or trees in a traced roof), not every wiggle of the outline."""

    area_m2: np.ndarray
    rectangularity: np.ndarray
    elongation: np.ndarray


def hall_core_shape(geometries: np.ndarray, width_m: float, rules: ChangeRules, crs: CRS | None,
                    observed: shapely.Geometry | None) -> HallCore:
    """The measures of :class:`HallCore` for each polygon (metric CRS)."""
    cores = hall_cores(geometries, width_m)
    notch = rules.hall_min_width_m / 4
    closed = shapely.buffer(shapely.buffer(cores, notch, join_style="mitre"), -notch, join_style="mitre")
    return HallCore(shapely.area(cores), seen_rectangularity(closed, observed),
                    measure(gpd.GeoSeries(closed, crs=crs))["elongation"])


def _hall_at_span(buildings: gpd.GeoDataFrame, width_m: float, least_rectangularity: float,
                  largest_existing_m2: float, rules: ChangeRules, observed: shapely.Geometry | None) -> np.ndarray:
    """The hall tests of :func:`assembly_hall_rule` on the core a ``width_m`` square sweeps, its
    rectangularity at least ``least_rectangularity``."""
    core = hall_core_shape(buildings.geometry.values, width_m, rules, buildings.crs, observed)
    large = core.area_m2 >= hall_size_m2(largest_existing_m2, rules)
    solid = core.area_m2 >= rules.hall_min_core_share * buildings["area_m2"].to_numpy(float)
    compact = (core.rectangularity >= least_rectangularity) & (core.elongation <= rules.hall_max_elongation)
    return large & solid & compact


def seen_rectangularity(shapes: np.ndarray, observed: shapely.Geometry | None) -> np.ndarray:
    """Area ÷ the part of its minimum rotated rectangle on ``observed`` ground (0-1; 0 for empty).

    The regularised outline of what is seen: a rectangle cut by the edge of the observed ground
    (straight or diagonal) scores 1, as a whole one does."""
    rectangles = shapely.oriented_envelope(shapes)
    if observed is not None and not observed.is_empty:
        rectangles = shapely.intersection(rectangles, observed)
    area, frame = shapely.area(shapes), shapely.area(rectangles)
    return np.divide(area, frame, out=np.zeros(len(shapes)), where=frame > 0)


def one_of_similar_neighbours(changes: gpd.GeoDataFrame, candidates: pd.Series, rules: ChangeRules) -> pd.Series:
    """Buildings that are one of a set of similar new neighbours (an estate of blocks or slabs,
    housing, not a hall): at least ``housing_min_count`` − 1 other new buildings within
    ``housing_max_gap_m`` (edge to edge, chained) whose area is within a factor of two of its own, each
    at most ``housing_max_block_m2`` (the halls of an industrial park built together are no estate)."""
    out = pd.Series(np.zeros(len(changes), bool), index=changes.index)
    block_sized = changes["area_m2"].to_numpy(float) <= rules.housing_max_block_m2
    index = np.flatnonzero(candidates.to_numpy() & block_sized)
    if len(index) < rules.housing_min_count:
        return out
    geoms, area = changes.geometry.values[index], changes["area_m2"].to_numpy(float)[index]
    pairs = shapely.STRtree(geoms).query(geoms, predicate="dwithin", distance=rules.housing_max_gap_m).T
    similar = [(a, b) for a, b in pairs if a != b and 0.5 <= area[a] / area[b] <= 2.0]
    for members in connected_groups(len(geoms), similar):
        if len(members) >= rules.housing_min_count:
            out.iloc[index[members]] = True
    return out


def housing_clusters(candidates: gpd.GeoDataFrame, rules: ChangeRules, crs: CRS | None,
                     repeated: np.ndarray | None = None, blocks: np.ndarray | None = None) -> gpd.GeoDataFrame:
    """Groups of ≥ ``housing_min_count`` new residential-size buildings ≤ ``housing_max_gap_m`` apart.

    ``repeated``: candidates that are one of a set of similar neighbours (blocks and slabs of an
    estate, see :func:`one_of_similar_neighbours`) or whose roof holds several touching blocks:
    members whatever their size. ``blocks``: per candidate, the buildings it stands for (its roof blocks,
    or a building group's estimated count; 1 each when None); a cluster needs ``housing_min_count`` of
    them and ``count`` is their number, so a row of touching apartment blocks traced as one footprint,
    or an estate of houses a 3-4 m raster does not separate, is housing.

    Single-linkage clustering on the footprints' edge-to-edge distance. Each cluster is one feature, a
    housing area: the convex hull of its members (``outline_area_m2``), their count (``count_estimated``
    where a building group's count is in it), ids (``change_id``) and total footprint area.
    """
    columns = {"cluster_id": [], "count": [], "member_ids": [], "total_area_m2": [], "outline_area_m2": [],
               "count_estimated": []}
    if candidates.empty or "change_id" not in candidates:
        return gpd.GeoDataFrame(columns, geometry=gpd.GeoSeries([], crs=crs), crs=crs)
    sized = ((candidates["area_m2"] >= rules.housing_min_area_m2)
             & (candidates["area_m2"] <= rules.housing_max_area_m2)).to_numpy()
    member = sized | (repeated if repeated is not None else False)
    houses = candidates[member]
    weight = (np.ones(len(candidates), np.int64) if blocks is None else np.asarray(blocks, np.int64))[member]
    geoms = houses.geometry.values
    links = (shapely.STRtree(geoms).query(geoms, predicate="dwithin", distance=rules.housing_max_gap_m).T
             if len(geoms) else [])
    groups = connected_groups(len(geoms), links)
    rows, shapes = [], []
    for members in sorted(groups, key=lambda m: -int(weight[m].sum())):
        if weight[members].sum() < rules.housing_min_count:
            continue
        ids = sorted(int(houses["change_id"].values[m]) for m in members)
        outline = shapely.convex_hull(shapely.union_all(geoms[members]))
        rows.append({"cluster_id": len(rows) + 1, "count": int(weight[members].sum()), "member_ids": ids,
                     "total_area_m2": round(float(houses["area_m2"].values[members].sum()), 1),
                     "outline_area_m2": round(float(shapely.area(outline)), 1),
                     "count_estimated": bool((houses["unit"].values[members] == "building_group").any())
                     if "unit" in houses else False})
        shapes.append(outline)
    if not rows:
        return gpd.GeoDataFrame(columns, geometry=gpd.GeoSeries([], crs=crs), crs=crs)
    return gpd.GeoDataFrame(rows, geometry=shapes, crs=crs)


def summarize(result: ChangeResult, site: str, model: ModelRun, coverage: CoverageRecord | None,
              rules: ChangeRules, images: list[ImageRecord]) -> SiteSummary:
    """The site's findings as a typed summary (new and enlarged buildings largest first)."""
    changes = result.changes.assign(lonlat=centroid_lonlat(result.changes))
    counts = ChangeCounts(**{name: int((changes["change"] == name).sum()) for name in CHANGE_CLASSES})
    cleared = _cleared_areas(result.land_cleared)
    flags = FlagCounts(**{name: int((changes["flag"] == name).sum()) for name in FLAGS},
                       housing_clusters=len(result.clusters), land_cleared=len(cleared))
    new = changes[changes["change"].isin(["new", "expanded", "replaced"])].sort_values("area_m2", ascending=False)
    gone = changes[(changes["date_seen"] == result.dates[0]) | changes["change"].isin(["shrunk", "unconfirmed"])
                   ].sort_values("area_m2", ascending=False)
    return SiteSummary(
        site=site, dates=[d.isoformat() for d in result.dates], counts=counts, flags=flags,
        largest_existing_building_m2=round(result.largest_existing_m2, 1),
        new_buildings=[_new_building(row) for row in new.itertuples()],
        housing_clusters=_clusters(result.clusters, changes),
        model=model, shift=[s.record() for s in result.shifts], coverage=coverage,
        per_date=per_date_counts(result), gone_buildings=[_gone_building(row) for row in gone.itertuples()],
        images=images, rules=dataclasses.asdict(rules), land_cleared=cleared,
        land_clearing_assessed=result.land_cleared is not None,
    )


def _cleared_areas(layer: gpd.GeoDataFrame | None) -> list[ClearedArea]:
    """The ``land_cleared`` layer's rows as records (largest first, as the layer keeps them)."""
    if layer is None:
        return []
    return [ClearedArea(int(row.clearing_id), float(row.area_m2), _iso(row.first_seen), int(row.later_dates_seen),
                        float(row.green_before), float(row.green_after), float(row.pattern_corr),
                        float(row.lon), float(row.lat)) for row in layer.itertuples()]


def _clusters(clusters: gpd.GeoDataFrame, changes: gpd.GeoDataFrame) -> list[HousingCluster]:
    first_seen = dict(zip(changes["change_id"], changes["first_seen"], strict=True))
    return [HousingCluster(int(c.cluster_id), int(c.count), tuple(int(i) for i in c.member_ids),
                           float(c.total_area_m2), _iso(min(first_seen[i] for i in c.member_ids)), *lonlat,
                           outline_area_m2=float(c.outline_area_m2), count_estimated=bool(c.count_estimated))
            for c, lonlat in zip(clusters.itertuples(), centroid_lonlat(clusters), strict=True)]


def per_date_counts(result: ChangeResult) -> list[DateCounts]:
    """Per date: footprints found, new buildings settled since that date, demolished ones gone from it."""
    changes, dates = result.changes, result.dates
    rows = []
    for k, (date, frame) in enumerate(zip(dates, result.footprints, strict=True)):
        new = int(((changes["change"] == "new") & (changes["first_seen"] == date)).sum())
        gone = int(((changes["change"] == "demolished") & (changes["last_seen"] == dates[k - 1])).sum()) if k else 0
        rows.append(DateCounts(date.isoformat(), len(frame), new, gone))
    return rows


def _iso(value) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _new_building(row) -> NewBuilding:
    return NewBuilding(
        id=int(row.change_id), change_class=row.change, flag=row.flag or None,
        area_m2=round(float(row.area_m2), 1), cut_by_edge=bool(row.cut_by_edge),
        ratio_to_largest_existing=None if pd.isna(row.ratio_to_largest_existing)
        else float(row.ratio_to_largest_existing),
        confidence=None if pd.isna(row.confidence) else float(row.confidence),
        first_seen=_iso(row.first_seen), last_seen=_iso(row.last_seen), presence=row.presence,
        lon=row.lonlat[0], lat=row.lonlat[1], image_similarity=_number(row.image_similarity),
        area_before_m2=_number(row.area_before_m2), before_outline=row.before_outline or None,
        unit=getattr(row, "unit", "building"), estimated_count=int(getattr(row, "estimated_count", 1)),
        hall_note=getattr(row, "hall_note", "") or None)


def _number(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _gone_building(row) -> GoneBuilding:
    return GoneBuilding(
        id=int(row.change_id), change_class=row.change, area_m2=round(float(row.area_m2), 1),
        confidence=None if pd.isna(row.confidence) else float(row.confidence),
        first_seen=_iso(row.first_seen), last_seen=_iso(row.last_seen), presence=row.presence,
        lon=row.lonlat[0], lat=row.lonlat[1], image_similarity=_number(row.image_similarity),
        outline_contrast=_number(row.outline_contrast))
