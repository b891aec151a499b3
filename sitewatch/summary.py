"""What one site's change run found, as typed values: the hand-over from the change stage to
the report, the command line and the batch; ``summary.json`` is written and read here only.

A light module (no raster or torch imports): ``batch`` reads a finished site's summary back
when it skips the site.
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

CHANGE_CLASSES = ("new", "expanded", "shrunk", "replaced", "unchanged", "demolished", "not_observed", "unconfirmed")
FLAGS = ("assembly_hall", "housing")


class _Record:
    """A flat record written to JSON field by field, in field order (``_json_names`` renames)."""

    _json_names: ClassVar[dict[str, str]] = {}

    def as_dict(self) -> dict[str, Any]:
        return {self._json_names.get(f.name, f.name): _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, item: dict[str, Any]):
        # a field added later (with a default) may be missing from an older summary.json
        values = {f.name: item[cls._json_names.get(f.name, f.name)] for f in fields(cls)
                  if cls._json_names.get(f.name, f.name) in item or f.default is MISSING}
        return cls(**{name: tuple(v) if isinstance(v, list) and name.endswith("_ids") else v
                      for name, v in values.items()})


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else dict(value) if isinstance(value, dict) else value


@dataclass(frozen=True)
class ChangeCounts(_Record):
    """Buildings per change class."""

    new: int = 0
    expanded: int = 0
    shrunk: int = 0
    replaced: int = 0
    unchanged: int = 0
    demolished: int = 0
    not_observed: int = 0
    unconfirmed: int = 0  # found at an earlier date, not at the last; no change claimed


@dataclass(frozen=True)
class FlagCounts(_Record):
    """Flagged buildings (halls, houses of a cluster), housing clusters and cleared areas."""

    assembly_hall: int = 0
    housing: int = 0
    housing_clusters: int = 0
    land_cleared: int = 0


@dataclass(frozen=True)
class NewBuilding(_Record):
    """A new or enlarged building at the last date (areas in m², ratio and confidence 0-1).

    ``lon``/``lat``: its centroid in EPSG:4326 degrees; ``first_seen``/``last_seen``: ISO dates;
    ``presence``: one character per date (1 present, 0 absent, - ground not seen);
    ``image_similarity``: mean similarity (−1..1) of the two dates' pictures on its changed ground
    (:mod:`sitewatch.evidence`; None without picture evidence); ``area_before_m2`` and
    ``before_outline`` (WKT, EPSG:4326): what stood on its ground at the first date (a replaced
    building names the building it replaced).
    """

    _json_names: ClassVar[dict[str, str]] = {"change_class": "class"}

    id: int
    change_class: str
    flag: str | None
    area_m2: float
    cut_by_edge: bool
    ratio_to_largest_existing: float | None
    confidence: float | None
    first_seen: str
    last_seen: str
    presence: str
    lon: float
    lat: float
    image_similarity: float | None = None
    area_before_m2: float | None = None
    before_outline: str | None = None
    judged_at_m: float | None = None  # a mixed-sensor series: the change judged at this pixel size (m)
    unit: str = "building"  # or building_group: buildings the pixels do not separate (docs/CHANGE_RULES.md)
    estimated_count: int = 1  # the buildings a building_group stands for, estimated from its area
    hall_note: str | None = None  # of hall size but not flagged: why ("2 roof blocks", "elongation 11")


@dataclass(frozen=True)
class GoneBuilding(_Record):
    """A building of the first date that is gone and stays gone (demolished), not observed at a
    date, or a building that lost a large part of its area (shrunk; ``area_m2`` is what is left).
    ``image_similarity`` and ``outline_contrast``: the picture evidence (:mod:`sitewatch.evidence`)."""

    _json_names: ClassVar[dict[str, str]] = {"change_class": "class"}

    id: int
    change_class: str
    area_m2: float
    confidence: float | None
    first_seen: str
    last_seen: str
    presence: str
    lon: float
    lat: float
    image_similarity: float | None = None
    outline_contrast: float | None = None
    judged_at_m: float | None = None  # a mixed-sensor series: the change judged at this pixel size (m)


@dataclass(frozen=True)
class DateCounts(_Record):
    """One date of the series: buildings seen, buildings that appeared and stayed, buildings gone."""

    date: str
    buildings: int
    new: int
    demolished: int


@dataclass(frozen=True)
class HousingCluster(_Record):
    """A housing area: new residential-size buildings close together: their ``change_id`` values, total
    area (m²), the earliest ``first_seen`` of its members and the centroid of its hull (EPSG:4326).
    ``count``: its buildings, a footprint of several touching blocks counting as its blocks and a group of
    buildings the pixels do not separate as its estimated count (``count_estimated``)."""

    id: int
    count: int
    member_ids: tuple[int, ...]
    total_area_m2: float
    first_seen: str
    lon: float
    lat: float
    outline_area_m2: float | None = None  # the housing area's outline (convex hull of its members)
    count_estimated: bool = False  # a member is a building group whose count is estimated from its area


@dataclass(frozen=True)
class ClearedArea(_Record):
    """Ground green at the first date and bare, in a new pattern, from ``first_seen`` on, outside
    buildings (:mod:`sitewatch.clearing`).

    ``area_m2``: its area; ``later_dates_seen``: dates after ``first_seen`` that saw it still
    cleared (0: found at the last date, not yet confirmed); ``green_before``/``green_after``: mean
    excess-green index at the first and last date; ``pattern_corr``: mean correlation of the two
    dates' brightness (near 0 or below: a new pattern); ``lon``/``lat``: centroid, EPSG:4326.
    """

    id: int
    area_m2: float
    first_seen: str
    later_dates_seen: int
    green_before: float
    green_after: float
    pattern_corr: float
    lon: float
    lat: float


@dataclass(frozen=True)
class ImageRecord(_Record):
    """One date's image: where its date came from, its size (px on the site's grid) and its own ground
    pixel size (m); the bands used for red, green, blue and how they were known; the masks used and
    the share of the site each class of ground not seen removed; the value mapping; the Planet
    provenance (acquisition time, satellite, instrument, sun elevation, cloud cover); for a date without a
    mask, the share of the site bright and colourless at that date only (clouds?, never masked)."""

    date: str
    date_source: str
    file: str
    width: int
    height: int
    pixel_m: float
    bands: str = ""
    masks: list[str] = field(default_factory=list)
    mask_removed: dict[str, float] = field(default_factory=dict)
    input_mapping: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    cloud_like: float = 0.0  # share of the site bright and colourless at this date only (no mask given)


@dataclass(frozen=True)
class ModelRun(_Record):
    """Which model ran where, at which ground pixel size (m) and why."""

    name: str
    sha256: str
    gsd_m: float
    gsd_rule: str
    trained_gsd_m: float | list[float] | None
    device: str
    pass_gsds_m: list[float] = field(default_factory=list)  # working pixel size (m) of each pass
    multiscale: dict[str, float] | None = None  # the fusion rule of a multi-scale run
    input_mapping: str = ""  # how input values reached the network (sitewatch.radiometry)
    choice: str = ""  # why this network sees the site (sitewatch.choice)
    chosen_automatically: bool = False  # chosen from the inputs, not named with --model


@dataclass(frozen=True)
class ShiftRecord(_Record):
    """The measured misregistration of a later date against the first (pixels, metres)."""

    dx_px: float
    dy_px: float
    response: float
    applied: bool
    dx_m: float
    dy_m: float
    rotation_deg: float = 0.0  # the date turned back by this much (clockwise) before the shift was measured


@dataclass(frozen=True)
class CoverageRecord(_Record):
    """Share (0-1) of the site with valid data at each date (ISO date → share) and at all of them."""

    valid_share_per_date: dict[str, float]
    observed_at_every_date_share: float


@dataclass(frozen=True)
class SiteSummary:
    """The site's findings: ``summary.json``, the report's numbers and the batch row's counts."""

    site: str
    dates: list[str]
    counts: ChangeCounts
    flags: FlagCounts
    largest_existing_building_m2: float
    new_buildings: list[NewBuilding]
    housing_clusters: list[HousingCluster]
    model: ModelRun
    shift: list[ShiftRecord] = field(default_factory=list)
    coverage: CoverageRecord | None = None
    per_date: list[DateCounts] = field(default_factory=list)
    gone_buildings: list[GoneBuilding] = field(default_factory=list)
    images: list[ImageRecord] = field(default_factory=list)
    rules: dict[str, float] = field(default_factory=dict)
    land_cleared: list[ClearedArea] = field(default_factory=list)
    land_clearing_assessed: bool = True  # False: some date had no colour bands (grey imagery)

    def as_dict(self) -> dict[str, Any]:
        document = {
            "site": self.site, "dates": list(self.dates), "counts": self.counts.as_dict(),
            "per_date": [d.as_dict() for d in self.per_date],
            "flags": self.flags.as_dict(), "largest_existing_building_m2": self.largest_existing_building_m2,
            "new_buildings": [b.as_dict() for b in self.new_buildings],
            "gone_buildings": [b.as_dict() for b in self.gone_buildings],
            "housing_clusters": [c.as_dict() for c in self.housing_clusters],
            "land_clearing_assessed": self.land_clearing_assessed,
            "land_cleared": [a.as_dict() for a in self.land_cleared],
            "model": self.model.as_dict(), "shift": [s.as_dict() for s in self.shift],
        }
        if self.coverage is not None:
            document["coverage"] = self.coverage.as_dict()
        document.update(images=[i.as_dict() for i in self.images], rules=dict(self.rules))
        return document

    def to_json(self) -> str:
        """``summary.json`` text: strict JSON, non-finite numbers written as null."""
        return json.dumps(_finite(self.as_dict()), indent=2, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> SiteSummary:
        """Read back a ``summary.json`` this module wrote."""
        item = json.loads(text)
        coverage = item.get("coverage")
        return cls(
            site=item["site"], dates=list(item["dates"]), counts=ChangeCounts(**item["counts"]),
            flags=FlagCounts(**item["flags"]), largest_existing_building_m2=item["largest_existing_building_m2"],
            new_buildings=[NewBuilding.from_dict(b) for b in item["new_buildings"]],
            housing_clusters=[HousingCluster.from_dict(c) for c in item["housing_clusters"]],
            model=ModelRun(**item["model"]), shift=[ShiftRecord(**s) for s in item["shift"]],
            coverage=CoverageRecord(**coverage) if coverage else None,
            per_date=[DateCounts(**d) for d in item.get("per_date", [])],
            gone_buildings=[GoneBuilding.from_dict(b) for b in item.get("gone_buildings", [])],
            images=[ImageRecord(**i) for i in item.get("images", [])], rules=dict(item.get("rules", {})),
            land_cleared=[ClearedArea.from_dict(a) for a in item.get("land_cleared", [])],
            land_clearing_assessed=bool(item.get("land_clearing_assessed", True)),
        )


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value
