"""Planet products as analysts receive them: what a file's name and the metadata beside it say.

A light module (no raster library): the band order of a product, the scene's acquisition time and
provenance (satellite, instrument, sun elevation, cloud cover) and the usable-data mask
(``*_udm2.tif``, UDM1 ``*_udm.tif``) next to an image. Read from

* the file name: ``20230514_101112_12_2480_3B_AnalyticMS_SR_8b.tif`` (PlanetScope),
  ``20200101_083456_ssc2d1_0010_pansharpened.tif`` (SkySat), with or without ``_clip``;
* ``<item id>_metadata.json`` (the item's properties: ``acquired``, ``satellite_id``,
  ``instrument``, ``sun_elevation``, ``cloud_cover``, ``gsd``) and
  ``<item id>*_metadata*.xml`` (the product's EO metadata) in the same folder.

Band orders: PlanetScope and SkySat 4-band analytic / pansharpened products are blue, green, red,
NIR; 8-band SuperDove products are coastal blue, blue, green I, green, yellow, red, red edge,
NIR; visual products are red, green, blue.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sitewatch.jsontext import parse_json

#: Planet's band names per band count of an analytic product.
BANDS_4 = ("blue", "green", "red", "nir")
BANDS_8 = ("coastal_blue", "blue", "green_i", "green", "yellow", "red", "rededge", "nir")
VISUAL = ("red", "green", "blue")

#: A Planet item id at the start of a file name, then the asset.
_ITEM = re.compile(r"^(?P<id>\d{8}_\d{6}(?:_\d{2})?_[0-9a-z]+(?:_\d{4})?)(?:_(?P<asset>.*))?$", re.IGNORECASE)
_MASK_ASSETS = ("udm2", "udm")
#: Parts of a Planet asset's file name (``3B_AnalyticMS_SR_8b``, ``pansharpened``...): a name with a
#: Planet-like item id but none of these is not taken for a Planet product.
_ASSET_TOKENS = ("3b", "1b", "analytic", "bgrn", "pansharpened", "ortho", "basic", "8b")
#: The asset words only a Planet product carries ("ortho" and "basic" also name drone orthos and the like).
_PLANET_ONLY_TOKENS = ("3b", "1b", "analytic", "bgrn", "pansharpened", "8b", "visual")


def named_like_planet_only(path: Path) -> bool:
    """Whether a file's name carries an asset word only Planet products carry (``3B_AnalyticMS``, ``BGRN``...)."""
    return item_id(path) is not None and any(token in _asset(path) for token in _PLANET_ONLY_TOKENS)


@dataclass(frozen=True)
class SceneInfo:
    """What the metadata next to a Planet image says (every field optional)."""

    item_id: str | None = None
    acquired: dt.datetime | None = None
    provider: str | None = None  # planetscope, skysat
    satellite: str | None = None
    instrument: str | None = None  # PS2, PS2.SD, PSB.SD, SkySat
    sun_elevation_deg: float | None = None
    cloud_cover: float | None = None  # 0-1
    gsd_m: float | None = None
    band_count: int | None = None  # of the analytic product the XML describes
    sources: list[str] = field(default_factory=list)  # the metadata files read

    def provenance(self) -> dict[str, Any]:
        """The provenance fields that are known, as ``summary.json`` records them."""
        values = {"item_id": self.item_id, "acquired": self.acquired.isoformat() if self.acquired else None,
                  "provider": self.provider, "satellite": self.satellite, "instrument": self.instrument,
                  "sun_elevation_deg": self.sun_elevation_deg, "cloud_cover": self.cloud_cover,
                  "gsd_m": self.gsd_m, "metadata": [Path(s).name for s in self.sources] or None}
        return {key: value for key, value in values.items() if value is not None}


def item_id(path: Path) -> str | None:
    """The Planet item id a file name starts with (``20151119_025740_0c74``), else None."""
    match = _ITEM.match(Path(path).stem)
    if not match:
        return None
    stem = Path(path).stem
    for marker in ("_3B_", "_1B_", "_metadata", "_udm", "_BGRN", "_pansharpened", "_analytic", "_visual", "_ortho",
                   "_panchromatic", "_basic"):
        where = stem.lower().find(marker.lower(), 15)
        if where > 0:
            return stem[:where]
    return match.group("id")


def _asset(path: Path) -> str:
    """The asset part of a Planet file name, lower case, without ``_clip`` (``3b_analyticms_sr_8b``)."""
    stem, found = Path(path).stem, item_id(path)
    rest = stem[len(found):] if found and stem.startswith(found) else stem
    return rest.lower().strip("_").replace("_clip", "")


def product_bands(path: Path, count: int, info: SceneInfo | None = None) -> tuple[tuple[str, ...], str] | None:
    """The band names of a Planet product of ``count`` bands (from its file name, else the metadata
    beside it), with how they were known; None when nothing says the file is a Planet product."""
    if not item_id(path):
        return None
    asset = _asset(path)
    if any(m in asset for m in _MASK_ASSETS):
        return None
    if "visual" in asset and count in (3, 4):
        return (VISUAL if count == 3 else (*VISUAL, "alpha")), "Planet visual product (file name)"
    if count in (4, 8) and any(token in asset for token in _ASSET_TOKENS):
        kind = "8-band SuperDove" if count == 8 else "4-band analytic"
        return (BANDS_8 if count == 8 else BANDS_4), f"Planet {kind} product (file name)"
    info = info if info is not None else scene_info(path)
    if info.sources and count in (4, 8):
        return (BANDS_8 if count == 8 else BANDS_4), f"Planet {count}-band product (metadata beside it)"
    return None


def _sidecars(path: Path, suffix: str) -> list[Path]:
    found = item_id(path)
    if not found:
        return []
    folder = Path(path).parent
    try:
        return sorted(p for p in folder.glob(f"{found}*") if p.suffix.lower() == suffix and "metadata" in p.name)
    except OSError:
        return []


def scene_info(path: Path) -> SceneInfo:
    """The scene's metadata from ``<item id>_metadata.json`` and the product XML beside ``path``."""
    found = item_id(path)
    if not found:
        return SceneInfo()
    values: dict[str, Any] = {"item_id": found, "sources": []}
    for json_path in _sidecars(path, ".json"):
        values.update(_from_json(json_path))
        values["sources"].append(str(json_path))
        break
    for xml_path in _sidecars(path, ".xml"):
        for key, value in _from_xml(xml_path).items():
            values.setdefault(key, value)
        values["sources"].append(str(xml_path))
        break
    if "acquired" not in values:
        values["acquired"] = _time_in_name(found)
    return SceneInfo(**values)


def _time_in_name(found: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(found[:15], "%Y%m%d_%H%M%S").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def _parse_time(text: Any) -> dt.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _from_json(path: Path) -> dict[str, Any]:
    try:
        properties = parse_json(path.read_text()).get("properties", {})
    except (OSError, ValueError, AttributeError):
        return {}
    if not isinstance(properties, dict):
        return {}
    values = {"acquired": _parse_time(properties.get("acquired")), "provider": properties.get("provider"),
              "satellite": properties.get("satellite_id"), "instrument": properties.get("instrument"),
              "sun_elevation_deg": _number(properties.get("sun_elevation")),
              "cloud_cover": _number(properties.get("cloud_cover")),
              "gsd_m": _number(properties.get("pixel_resolution", properties.get("gsd")))}
    return {key: value for key, value in values.items() if value is not None}


def _from_xml(path: Path) -> dict[str, Any]:
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return {}
    text = {}
    for element in root.iter():
        name = element.tag.rsplit("}", 1)[-1]
        text.setdefault(name, []).append((element.text or "").strip())
    cloud = _number((text.get("cloudCoverPercentage") or [None])[0])
    values = {"acquired": _parse_time((text.get("acquisitionDateTime") or text.get("acquisitionDate") or [None])[0]),
              "satellite": (text.get("serialIdentifier") or [None])[0],
              "instrument": (text.get("shortName") or [None, None])[-1],
              "sun_elevation_deg": _number((text.get("illuminationElevationAngle") or [None])[0]),
              "cloud_cover": cloud / 100 if cloud is not None else None,
              "band_count": int(n) if (n := (text.get("numBands") or [""])[0]).isdigit() else None}
    return {key: value for key, value in values.items() if value is not None}


def usable_data_mask(path: Path) -> Path | None:
    """The UDM2 (else UDM1) file beside a Planet image (same item id; a clipped image prefers the
    clipped mask); None for a file that is not a Planet product or has none."""
    found = item_id(path)
    if not found or any(m in _asset(path) for m in _MASK_ASSETS):
        return None
    clipped = "_clip" in Path(path).stem.lower()
    try:
        candidates = [p for p in Path(path).parent.glob(f"{found}*udm*") if p.suffix.lower() in (".tif", ".tiff")]
    except OSError:
        return None

    def rank(candidate: Path) -> tuple[int, int, str]:
        name = candidate.name.lower()
        return (0 if "udm2" in name else 1, 0 if ("_clip" in name) == clipped else 1, name)

    return min(candidates, key=rank) if candidates else None


def is_udm2(descriptions: tuple[str | None, ...], path: Path) -> bool:
    """Whether a mask raster is a UDM2 (8 bands: clear, snow, shadow, light haze, heavy haze, cloud,
    confidence, UDM1), by its band descriptions or its name."""
    names = [(d or "").lower() for d in descriptions]
    return len(names) == 8 and (names[:2] == ["clear", "snow"] or "udm2" in Path(path).name.lower())


#: UDM2 bands (1-based) whose pixels are ground the date did not see, by name.
UDM2_UNSEEN = {"snow": 2, "shadow": 3, "heavy haze": 5, "cloud": 6}
#: UDM2 band 8 (the UDM1 bits: blackfill, missing or suspect data): nonzero is unusable.
UDM2_UNUSABLE_BAND = 8
