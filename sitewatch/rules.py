"""The change rules: thresholds of matching and flagging.

Read from ``sitewatch/assets/change.yaml`` (package data; ``sitewatch rules`` prints it) or a user's copy.

A light module (no raster or torch imports), so a rules file is checked before any slow work.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from sitewatch.errors import SitewatchError
from sitewatch.paths import default_rules_path


class _StrictLoader(yaml.SafeLoader):
    """YAML as people write it in settings files: ``1e3`` is a number (YAML 1.1 wants ``1.0e+3``), and
    a key given twice in one mapping is an error (PyYAML keeps the last one without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise SitewatchError(f"key '{key}' is given twice (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def load_yaml(path: Path) -> Any:
    """Parse a small YAML settings file safely: UTF-8 (a BOM is fine), no aliases, no key given twice,
    ``1e3`` read as a number.

    Aliases are refused before anything is built, so an alias bomb (a few hundred bytes that
    expand to gigabytes) costs nothing.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SitewatchError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SitewatchError(f"{path}: cannot read ({error})") from None
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                mark = event.start_mark
                raise SitewatchError(f"{path}: YAML aliases (*name) are not allowed (line {mark.line + 1})")
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except SitewatchError as error:
        if str(error).startswith(str(path)):
            raise
        raise SitewatchError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SitewatchError(f"{path}: not valid YAML{where}") from None


#: Rules that are shares or probabilities (0-1); every other rule is a size, count or ratio ≥ 0.
_UNIT_INTERVAL_RULES = ("overlap", "share", "rectangularity", "probability", "confidence", "response")


def check_rule(name: str, value: Any, kind: str) -> None:
    """Refuse a rule value of the wrong type or out of range, naming the rule."""
    if kind == "int":
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise SitewatchError(f"change rule '{name}' must be a whole number ≥ 1, got {value!r}")
        return
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise SitewatchError(f"change rule '{name}' must be a number, got {value!r}")
    if any(word in name for word in _UNIT_INTERVAL_RULES):
        if not 0.0 <= value <= 1.0:
            raise SitewatchError(f"change rule '{name}' is a share and must be in 0..1, got {value!r}")
    elif value < 0:
        raise SitewatchError(f"change rule '{name}' must not be negative, got {value!r}")
    if name == "hall_max_elongation" and value < 1:
        raise SitewatchError(f"change rule '{name}' must be at least 1, got {value!r}")


@dataclass(frozen=True)
class ChangeRules:
    """Thresholds of matching and flagging (areas m², distances m, shares 0-1).

    The values live in one place, the shipped ``sitewatch/assets/change.yaml`` (what each one
    means is there and in ``docs/CHANGE_RULES.md``): :meth:`default` reads them, and a user's
    file (:meth:`from_yaml`) replaces only the rules it names.
    """

    match_min_overlap: float
    expanded_min_share: float
    expanded_min_m2: float
    shrunk_min_share: float
    shrunk_min_m2: float
    hall_min_area_m2: float
    hall_min_share_of_largest: float
    hall_min_area_floor_m2: float
    hall_min_rectangularity: float
    hall_max_elongation: float
    hall_min_width_m: float
    hall_min_core_share: float
    hall_min_wide_rectangularity: float
    roof_block_min_m2: float
    housing_min_area_m2: float
    housing_max_area_m2: float
    housing_max_gap_m: float
    housing_min_count: int
    housing_max_block_m2: float
    group_min_pixel_m: float
    group_m2_per_building: float
    absent_max_probability: float
    new_min_confidence: float
    new_min_area_m2: float
    evidence_max_similarity: float
    demolished_max_similarity: float
    demolished_min_contrast: float
    demolished_min_area_m2: float
    demolished_min_pixels: float
    growth_min_pixels: float
    replaced_max_iou: float
    replaced_max_similarity: float
    replaced_max_kept_share: float
    replaced_max_built_share: float
    replaced_min_probability_before: float
    replaced_min_probability_after: float
    rebuilt_max_similarity: float
    rebuilt_max_iou: float
    rebuilt_min_context_similarity: float
    max_shift_px: float
    max_shift_m: float
    min_shift_response: float
    misregistered_min_response: float
    rotation_min_corner_px: float
    rotation_max_rms_px: float
    rotation_max_deg: float
    clearing_green_min: float
    clearing_bare_max: float
    clearing_max_pattern_corr: float
    clearing_worked_brighten_min: float
    clearing_worked_bright_min: float
    clearing_ndvi_before_min: float
    clearing_ndvi_after_max: float
    land_cleared_min_area_m2: float

    def __post_init__(self) -> None:
        for rule in fields(self):
            check_rule(rule.name, getattr(self, rule.name), rule.type)

    @classmethod
    def default(cls) -> ChangeRules:
        """The shipped rules; a shipped file that misses a rule is a broken installation."""
        values = _rules_in(default_rules_path())
        missing = sorted({f.name for f in fields(cls)} - set(values))
        if missing:
            raise SitewatchError(f"{default_rules_path()}: the shipped change rules miss {missing}")
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: Path) -> ChangeRules:
        """The shipped rules with those named in ``path`` replaced; unknown names are errors."""
        return dataclasses.replace(cls.default(), **_rules_in(path))


def _rules_in(path: Path) -> dict[str, Any]:
    """The rule values of a YAML file (a mapping of rule names, under ``rules:`` or at the top)."""
    if not Path(path).is_file():
        raise SitewatchError(f"{path}: change rules file not found")
    data = load_yaml(path) or {}
    if not isinstance(data, dict):
        raise SitewatchError(f"{path}: change rules must be a mapping")
    if "rules" in data and len(data) > 1:
        others = sorted(str(key) for key in data if key != "rules")
        raise SitewatchError(f"{path}: key(s) {others} beside the 'rules:' block would be ignored; put every rule "
                             "under 'rules:'")
    data = data.get("rules", data)
    if not isinstance(data, dict):
        raise SitewatchError(f"{path}: 'rules' must be a mapping of rule names to values")
    unknown = sorted(set(data) - {f.name for f in fields(ChangeRules)})
    if unknown:
        raise SitewatchError(f"{path}: unknown change rule(s) {unknown}")
    return data
