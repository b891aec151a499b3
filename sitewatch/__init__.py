"""sitewatch: building segmentation, footprints and change detection from above.

Importing the package sets ``HF_HUB_OFFLINE=1`` so that no library it uses ever tries to
reach a model hub: every weight sitewatch loads is a local file.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

__version__ = "0.1.0"

__all__ = ["__version__"]
