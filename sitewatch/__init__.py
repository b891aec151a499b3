"""sitewatch: building segmentation, footprints and change detection from above.

Importing the package sets ``HF_HUB_OFFLINE=1`` so that no library it uses ever tries to
reach a model hub: every weight sitewatch loads is a local file.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# GeoPackages record a "last change" time; a fixed one keeps outputs byte-identical across runs.
os.environ.setdefault("OGR_CURRENT_DATE", "2000-01-01T00:00:00.000Z")

__version__ = "0.1.0"

__all__ = ["__version__"]
