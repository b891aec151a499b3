"""The model file contract, readable without torch: format string, checksum, metadata.

An exported model is one ``.safetensors`` file whose header metadata key ``sitewatch`` holds a
JSON document with everything inference needs. This module reads that header by hand (8-byte
little-endian header length, then JSON), so commands that only look at a model (``sitewatch
info``, input checks before a run) answer without importing torch. It also holds the rule that
picks the ground pixel size inference works at.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sitewatch.errors import SitewatchError
from sitewatch.jsontext import parse_json

#: The ``format`` value of every exported model's metadata.
MODEL_FORMAT = "sitewatch-model/1"
_MAX_HEADER_BYTES = 100 * 2**20  # safetensors' own limit on the JSON header


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _safetensors_header(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise SitewatchError(f"{path}: not a readable model file (too short)")
            (length,) = struct.unpack("<Q", prefix)
            if not 2 <= length <= _MAX_HEADER_BYTES:
                raise SitewatchError(f"{path}: not a readable model file (no safetensors header)")
            raw = handle.read(length)
    except OSError as error:
        raise SitewatchError(f"{path}: not a readable model file ({error.strerror or error})") from None
    try:
        header = parse_json(raw)
    except ValueError:
        raise SitewatchError(f"{path}: not a readable model file (broken safetensors header)") from None
    if not isinstance(header, dict):
        raise SitewatchError(f"{path}: not a readable model file (broken safetensors header)")
    ends = [entry.get("data_offsets", [0, 0])[1] for name, entry in header.items()
            if name != "__metadata__" and isinstance(entry, dict)]
    expected = 8 + length + max([end for end in ends if isinstance(end, int)], default=0)
    size = path.stat().st_size
    if size < expected:
        raise SitewatchError(f"{path}: model file truncated ({size:,} of {expected:,} bytes)")
    return header


@dataclass(frozen=True)
class InputMapping:
    """How raw input values map onto the network's 0..1 range.

    Attributes:
        kind: ``percentile`` (a per-band stretch of every input) or ``legacy`` (uint8 as is).
        low_pct, high_pct: the percentiles (0-100) mapped to 0 and 1 (``percentile`` only).
    """

    kind: Literal["legacy", "percentile"] = "legacy"
    low_pct: float = 2.0
    high_pct: float = 98.0

    @classmethod
    def from_document(cls, document: dict[str, Any] | None) -> InputMapping:
        """The mapping a model's metadata names (``radiometry``); none: ``legacy``."""
        if not document:
            return LEGACY
        kind = document.get("kind")
        low, high = document.get("low_pct", 2.0), document.get("high_pct", 98.0)
        if kind not in ("legacy", "percentile") or not (isinstance(low, int | float) and isinstance(high, int | float)
                                                        and 0 <= low < high <= 100):
            raise SitewatchError(f"model metadata 'radiometry' {document!r}: kind must be legacy or percentile, "
                                 "with 0 <= low_pct < high_pct <= 100")
        return cls(kind, float(low), float(high))

    def document(self) -> dict[str, Any]:
        """The JSON form stored in model metadata and ``summary.json``."""
        return {"kind": self.kind, "low_pct": self.low_pct, "high_pct": self.high_pct}

    def describe(self) -> str:
        if self.kind == "legacy":
            return "uint8 as is (other types 2-98 % per band)"
        return f"per-band {self.low_pct:g}-{self.high_pct:g} % stretch of every input"


LEGACY = InputMapping()


@dataclass(frozen=True)
class FusionRule:
    """How a fine and a coarse pass are fused (``summary.json`` records it).

    Attributes:
        coarse_factor: the coarse pass works at the fine working pixel size × this.
        large_m2: coarse-pass buildings of at least this area (m²) may fill in the fine pass.
        split_share: a large coarse building whose ground the fine pass covers, by this share or
            more, with buildings all smaller than ``large_m2`` is a merged cluster: fine pass kept.
        min_input_gsd_m: as a model's default, the coarse pass runs on inputs whose pixel size (m) is at
            least this (coarse imagery such as PlanetScope, where it pays); finer inputs run one pass.
            An explicit ``--multiscale`` runs it on any input.
    """

    coarse_factor: float = 2.0
    large_m2: float = 2000.0
    split_share: float = 0.35
    min_input_gsd_m: float = 0.0

    def document(self) -> dict[str, float]:
        return {"coarse_factor": self.coarse_factor, "large_m2": self.large_m2, "split_share": self.split_share,
                "min_input_gsd_m": self.min_input_gsd_m}

    def applies_to(self, input_gsd_m: float) -> bool:
        """Whether the coarse pass runs on an input of this pixel size (m, the coarser axis)."""
        return input_gsd_m >= self.min_input_gsd_m * (1 - 1e-6)

    @classmethod
    def from_document(cls, document: dict[str, Any] | None) -> FusionRule | None:
        """The rule a model's metadata names (``multiscale``), None when it runs one pass by default."""
        if not document:
            return None
        try:
            rule = cls(float(document["coarse_factor"]), float(document["large_m2"]), float(document["split_share"]),
                       float(document.get("min_input_gsd_m", 0.0)))
        except (KeyError, TypeError, ValueError):
            raise SitewatchError(f"model metadata 'multiscale' {document!r}: needs coarse_factor, large_m2 and "
                                 "split_share numbers") from None
        if not (rule.coarse_factor > 1 and rule.large_m2 > 0 and 0 < rule.split_share <= 1
                and rule.min_input_gsd_m >= 0):
            raise SitewatchError(f"model metadata 'multiscale' {document!r}: coarse_factor > 1, large_m2 > 0, "
                                 "split_share in (0, 1] and min_input_gsd_m >= 0 needed")
        return rule


@dataclass(frozen=True)
class WorkGsdRule:
    """Inference works at the input's pixel size ÷ ``upsample``, clamped to ``range_m`` (metres)."""

    upsample: float
    range_m: tuple[float, float]


@dataclass(frozen=True)
class ModelMetadata:
    """What a model file tells inference, typed; ``document`` is the JSON as stored in the file.

    Attributes:
        network: the network settings :func:`sitewatch.network.build_network` takes.
        bands: input band names in order (``red, green, blue``).
        mean, std: per-band normalisation of pixel values scaled to 0-1.
        gsd_m: the reference ground pixel size (m) it was trained at.
        gsd_range_m: finest and coarsest trained pixel sizes (m) of a multi-scale model.
        work_gsd_rule: the pixel size inference works at, when the model names one.
        threshold: building probability above which a pixel is building.
        input_mapping: how raw input values map to the network's 0..1 range (``radiometry``).
        multiscale: the default multi-scale fusion of inference (``multiscale``); None: one pass.
    """

    network: dict[str, Any]
    bands: list[str]
    mean: list[float]
    std: list[float]
    gsd_m: float
    threshold: float
    gsd_range_m: tuple[float, float] | None = None
    work_gsd_rule: WorkGsdRule | None = None
    input_mapping: InputMapping = LEGACY
    multiscale: FusionRule | None = None
    document: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_document(cls, document: dict[str, Any], path: Path | str) -> ModelMetadata:
        """The typed view of a metadata document, refused unless inference can trust it."""
        check_metadata(document, path)
        rule, gsd_range = document.get("work_gsd_rule"), document.get("gsd_range_m")
        return cls(network=dict(document["network"]), bands=list(document["bands"]),
                   mean=[float(v) for v in document["mean"]], std=[float(v) for v in document["std"]],
                   gsd_m=float(document["gsd_m"]), threshold=float(document["threshold"]),
                   gsd_range_m=(float(gsd_range[0]), float(gsd_range[1])) if gsd_range else None,
                   work_gsd_rule=(WorkGsdRule(float(rule["upsample"]), (float(rule["range_m"][0]),
                                                                         float(rule["range_m"][1])))
                                  if rule else None),
                   input_mapping=InputMapping.from_document(document.get("radiometry")),
                   multiscale=FusionRule.from_document(document.get("multiscale")),
                   document=document)


def read_model_metadata(path: Path) -> dict[str, Any]:
    """The checked JSON metadata of an exported ``.safetensors`` model file (no torch needed)."""
    path = Path(path)
    header = _safetensors_header(path)
    extra = header.get("__metadata__") or {}
    if not isinstance(extra, dict) or "sitewatch" not in extra:
        raise SitewatchError(f"{path}: safetensors file without sitewatch metadata")
    try:
        metadata = parse_json(extra["sitewatch"])
    except (ValueError, TypeError) as error:
        raise SitewatchError(f"{path}: broken model metadata ({error})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != MODEL_FORMAT:
        found = metadata.get("format") if isinstance(metadata, dict) else None
        raise SitewatchError(f"{path}: unsupported model format {found!r}")
    check_metadata(metadata, path)
    return metadata


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


#: The pixel sizes (m) a model may work at: from drone imagery to the coarsest satellite imagery with
#: buildings in it (a 30 m Landsat pixel is wider than most buildings).
MIN_WORK_GSD_M = 0.01
MAX_WORK_GSD_M = 30.0


def check_metadata(metadata: dict[str, Any], path: Path | str) -> None:
    """Refuse metadata that inference cannot trust (bands, pixel sizes, normalisation, threshold)."""
    bands = metadata.get("bands")
    if not isinstance(bands, list) or not bands or not all(isinstance(b, str) for b in bands):
        raise SitewatchError(f"{path}: model metadata 'bands' must be a list of band names")
    for key in ("mean", "std"):
        values = metadata.get(key)
        if (not isinstance(values, list) or len(values) != len(bands)
                or not all(isinstance(v, int | float) and math.isfinite(v) for v in values)):
            raise SitewatchError(f"{path}: model metadata '{key}' must hold {len(bands)} numbers (one per band)")
    if not all(v > 0 for v in metadata["std"]):
        raise SitewatchError(f"{path}: model metadata 'std' must be positive")
    if not _positive(metadata.get("gsd_m")):
        raise SitewatchError(f"{path}: model metadata 'gsd_m' must be a positive pixel size in metres")
    gsd_range = metadata.get("gsd_range_m")
    if gsd_range is not None and (not isinstance(gsd_range, list) or len(gsd_range) != 2
                                  or not all(_positive(v) for v in gsd_range) or gsd_range[0] > gsd_range[1]):
        raise SitewatchError(f"{path}: model metadata 'gsd_range_m' must be [finest, coarsest] metres")
    rule = metadata.get("work_gsd_rule")
    if rule is not None and not (isinstance(rule, dict) and _positive(rule.get("upsample"))
                                 and isinstance(rule.get("range_m"), list) and len(rule["range_m"]) == 2
                                 and all(_positive(v) for v in rule["range_m"])
                                 and rule["range_m"][0] <= rule["range_m"][1]):
        raise SitewatchError(f"{path}: model metadata 'work_gsd_rule' must be "
                             "{{upsample: factor, range_m: [finest, coarsest]}}")
    threshold = metadata.get("threshold")
    if not (isinstance(threshold, int | float) and not isinstance(threshold, bool) and 0 < threshold < 1):
        raise SitewatchError(f"{path}: model metadata 'threshold' must be a number between 0 and 1")
    if not isinstance(metadata.get("network"), dict):
        raise SitewatchError(f"{path}: model metadata lacks the network settings")
    channels = metadata["network"].get("in_channels", 3)
    if channels != len(bands):
        raise SitewatchError(f"{path}: model metadata names {len(bands)} bands but its network takes {channels} "
                             "input channels; the file is inconsistent")
    # pixel sizes a network can work at: far outside, every raster becomes millions of tiles (or one pixel)
    for value in [metadata["gsd_m"], *(gsd_range or [])]:
        if not MIN_WORK_GSD_M <= value <= MAX_WORK_GSD_M:
            raise SitewatchError(f"{path}: model metadata pixel size {value:g} m is outside "
                                 f"{MIN_WORK_GSD_M:g}-{MAX_WORK_GSD_M:g} m")


def working_gsd_m(metadata: ModelMetadata, input_gsd_m: float, override_m: float | None = None) -> tuple[float, str]:
    """The ground pixel size (m) inference works at for an input of ``input_gsd_m``, and why.

    The rule, in order: a pixel size given by the user wins; a model whose metadata carries a
    ``work_gsd_rule`` ``{upsample: f, range_m: [lo, hi]}`` works at the input's pixel size
    divided by ``f`` and clamped to ``lo``-``hi`` (the shipped multi-scale model: 2×, 0.5-1 m,
    measured best on the held-out sources: a 3 m PlanetScope scene runs at 1 m, 9× its pixels,
    not blown up 36× to 0.5 m); a multi-scale model with only ``gsd_range_m`` works at the
    input's own pixel size clamped to that range; a single-scale model works at its ``gsd_m``.
    """
    if override_m is not None:
        return float(override_m), "set by the user"
    rule = metadata.work_gsd_rule
    if rule:
        factor, (finest, coarsest) = rule.upsample, rule.range_m
        chosen = min(max(float(input_gsd_m) / factor, finest), coarsest)
        return chosen, (f"the model's rule: input {input_gsd_m:.2f} m ÷ {factor:g}, "
                        f"within {finest:g}-{coarsest:g} m")
    if not metadata.gsd_range_m:
        return metadata.gsd_m, "the model's single trained pixel size"
    finest, coarsest = metadata.gsd_range_m
    chosen = min(max(float(input_gsd_m), finest), coarsest)
    if chosen == float(input_gsd_m):
        return chosen, f"the input's own pixel size (within the model's {finest:g}-{coarsest:g} m)"
    side = "finest" if chosen == finest else "coarsest"
    return chosen, (f"the model's {side} trained pixel size "
                    f"(input {input_gsd_m:.2f} m is outside {finest:g}-{coarsest:g} m)")


TYPICAL_INPUT_GSD_M = (0.3, 0.5, 1.0, 2.0, 3.0, 4.8)


def working_sizes_by_input(metadata: ModelMetadata) -> dict[str, list[float]]:
    """The pixel sizes (m) inference works at for typical input pixel sizes (m), as ``sitewatch info`` shows.

    ``gsd_range_m`` in a model file is the range of *working* pixel sizes the network was trained at,
    not the input sizes it serves: a 3 m PlanetScope scene works at 1 m (and 2 m in the coarse pass
    of a multi-scale model). This table says so for each typical input, keyed by the input's size.
    """
    table: dict[str, list[float]] = {}
    for input_gsd in TYPICAL_INPUT_GSD_M:
        fine = working_gsd_m(metadata, input_gsd)[0]
        passes = [fine]
        if metadata.multiscale is not None and metadata.multiscale.applies_to(input_gsd):
            passes.append(fine * metadata.multiscale.coarse_factor)
        table[f"{input_gsd:g}"] = [round(value, 3) for value in passes]
    return table
