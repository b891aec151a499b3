"""Where sitewatch finds its shipped files: the default model, its checksum, the change rules, the demo site.

They are package data (``sitewatch/assets``, found through :mod:`importlib.resources`), so an
installed wheel carries them and every command works from any folder; ``$SITEWATCH_MODEL`` and
``--model`` choose another model.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

from sitewatch.errors import SitewatchError


def _assets_dir() -> Path:
    """The package's ``assets`` folder on the file system (wheels install unzipped)."""
    folder = files("sitewatch") / "assets"
    if not isinstance(folder, Path):
        raise SitewatchError(f"sitewatch's package data is not on the file system ({folder}); reinstall it unzipped")
    return folder


ASSETS_DIR = _assets_dir()
MODELS_DIR = ASSETS_DIR
DEFAULT_MODEL_NAME = "sitewatch-unet-lite0-ms.safetensors"
#: Other shipped models, by the name ``--model`` accepts (models/MODEL_CARD.md).
SHIPPED_MODELS = {"planetscope": "sitewatch-unet-lite0-ps.safetensors"}
CHECKSUMS = MODELS_DIR / "SHA256SUMS"
DEMO_SITE = ASSETS_DIR / "demo_site"
DEFAULT_RULES = ASSETS_DIR / "change.yaml"


def default_rules_path() -> Path:
    """The shipped change rules (``sitewatch/assets/change.yaml``; ``sitewatch rules`` prints them)."""
    return DEFAULT_RULES


def default_model_path() -> Path:
    """``$SITEWATCH_MODEL`` if set, else the shipped model."""
    return model_path(Path(os.environ.get("SITEWATCH_MODEL", MODELS_DIR / DEFAULT_MODEL_NAME)))


def model_path(given: Path | str | None) -> Path:
    """The model file ``--model`` names: a path, a shipped model's name (``planetscope``: the model
    for PlanetScope-class imagery) where no such file exists, or None for the default."""
    if given is None:
        return default_model_path()
    given = Path(given)
    if not given.exists() and str(given) in SHIPPED_MODELS:
        return MODELS_DIR / SHIPPED_MODELS[str(given)]
    return given


def recorded_checksum(model: Path) -> str | None:
    """The SHA-256 recorded in the shipped ``SHA256SUMS`` for a shipped model file, else None."""
    model = Path(model).resolve()
    if model.parent != MODELS_DIR.resolve() or not CHECKSUMS.is_file():
        return None
    for line in CHECKSUMS.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == model.name:
            return parts[0]
    raise SitewatchError(f"{model}: shipped model has no checksum in {CHECKSUMS}")
