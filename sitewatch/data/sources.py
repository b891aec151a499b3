"""The registry of public data sources: name → reader.

Every reader takes the data root (the folder laid out as ``../shared/data``) and yields
:class:`~sitewatch.data.common.LabeledImage` one at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from sitewatch.data.common import LabeledImage
from sitewatch.data.georaster import read_open_cities, read_shanghai
from sitewatch.data.masks import read_benchmark_samples, read_dubai, read_inria_austin
from sitewatch.data.slippy import read_fair_banepa, read_fair_ramp
from sitewatch.data.spacenet7 import read_spacenet7
from sitewatch.data.xbd import read_idabd, read_joplin, read_xbd
from sitewatch.errors import SitewatchError

Reader = Callable[[Path], Iterator[LabeledImage]]

#: Every source sitewatch can read, with the folder it lives in under the data root.
SOURCES: dict[str, tuple[str, Reader]] = {
    "fair_ramp": ("fair_ramp", read_fair_ramp),
    "fair_banepa": ("fair_banepa", read_fair_banepa),
    "dubai": ("dubai", read_dubai),
    "xbd": ("xbd/xbd", read_xbd),
    "idabd": ("xbd/idabd", read_idabd),
    "joplin": ("xbd/joplin", read_joplin),
    "benchmark_samples": ("benchmark_samples", read_benchmark_samples),
    "inria_austin": ("inria_austin", read_inria_austin),
    "shanghai": ("shanghai", read_shanghai),
    "open_cities": ("open_cities", read_open_cities),
    "spacenet7": ("spacenet7_dev", read_spacenet7),
}


def available_sources(root: Path) -> list[str]:
    """Names of the sources whose folder exists under ``root``."""
    return [name for name, (folder, _) in SOURCES.items() if (root / folder).is_dir()]


def read_source(root: Path, name: str) -> Iterator[LabeledImage]:
    """Yield the labelled images of source ``name`` under ``root``."""
    if name not in SOURCES:
        raise SitewatchError(f"unknown data source '{name}' (known: {', '.join(SOURCES)})")
    folder, reader = SOURCES[name]
    if not (root / folder).is_dir():
        raise SitewatchError(f"{root / folder}: folder of source '{name}' not found")
    return reader(root)
