"""Where sitewatch finds its shipped files (the default model and its recorded checksum)."""

from __future__ import annotations

import os
from pathlib import Path

from sitewatch.errors import SitewatchError

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = REPO_ROOT / "models"
DEFAULT_MODEL_NAME = "sitewatch-unet-lite0-ms.safetensors"
CHECKSUMS = MODELS_DIR / "SHA256SUMS"
CONFIGS_DIR = REPO_ROOT / "configs"
DEMO_SITE = REPO_ROOT / "data" / "demo_site"


def default_rules_path() -> Path:
    """The change rules shipped in ``configs/change.yaml``."""
    return CONFIGS_DIR / "change.yaml"


def default_model_path() -> Path:
    """``$SITEWATCH_MODEL`` if set, else the shipped model in ``models/``."""
    return Path(os.environ.get("SITEWATCH_MODEL", MODELS_DIR / DEFAULT_MODEL_NAME))


def recorded_checksum(model: Path) -> str | None:
    """The SHA-256 recorded in ``models/SHA256SUMS`` for a shipped model file, else None."""
    model = Path(model).resolve()
    if model.parent != MODELS_DIR.resolve() or not CHECKSUMS.is_file():
        return None
    for line in CHECKSUMS.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == model.name:
            return parts[0]
    raise SitewatchError(f"{model}: shipped model has no checksum in {CHECKSUMS}")
