"""Output folders sitewatch owns: it only ever replaces or deletes what it wrote itself.

Every output folder sitewatch creates carries a marker file (:data:`MARKER`) listing, relative to
the folder, the files it wrote. Before any work, :func:`check_output_dir` refuses an output
folder that holds or lies inside an input, or that already holds files without such a marker.
:func:`publish_dir` moves a finished staging folder into place: a new folder is renamed in whole;
an earlier result is replaced file by file, and only the files its marker lists are removed, so
notes, photos or rasters an analyst added to a result folder are never touched.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from sitewatch.errors import SitewatchError

#: The marker file of a folder sitewatch wrote.
MARKER = ".sitewatch-owned.json"


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def owned_files(folder: Path) -> list[str] | None:
    """The relative paths a sitewatch output folder's marker lists, or None without a marker."""
    marker = Path(folder) / MARKER
    if not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text())
        files = [str(name) for name in data["files"]]
    except (OSError, ValueError, KeyError, TypeError):
        raise SitewatchError(f"{folder}: its sitewatch marker {MARKER} is unreadable; "
                             "choose another output folder") from None
    for name in files:  # a marker must never point outside its folder
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise SitewatchError(f"{folder}: its sitewatch marker lists a path outside the folder ({name})")
    return files


def check_output_dir(target: Path, inputs: Iterable[Path]) -> None:
    """Refuse an output folder that would put the user's files at risk (before any work).

    Refused: a folder that is, holds or lies inside an input; a path that is a file; an existing
    folder with files in it and no sitewatch marker (not a result of ours).
    """
    target = Path(target)
    resolved = target.resolve()
    for path in inputs:
        source = Path(path).resolve()
        if _inside(source, resolved):
            raise SitewatchError(f"{target}: output folder holds the input {path}; choose another output folder")
        if _inside(resolved, source):
            raise SitewatchError(f"{target}: output folder lies inside the input {path}")
    if target.exists() and not target.is_dir():
        raise SitewatchError(f"{target}: exists and is not a folder; choose another output folder")
    if target.is_dir() and any(target.iterdir()) and owned_files(target) is None:
        raise SitewatchError(f"{target}: folder holds files sitewatch did not write; "
                             "choose an empty or new output folder")


def mark_owned(folder: Path) -> list[str]:
    """Write the marker listing every file under ``folder`` (relative paths); return the list."""
    folder = Path(folder)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != MARKER)
    (folder / MARKER).write_text(json.dumps({"tool": "sitewatch", "files": files}, indent=1) + "\n")
    return files


def remove_owned(folder: Path) -> None:
    """Delete the files a sitewatch marker lists (and folders they leave empty); keep the rest."""
    folder = Path(folder)
    files = owned_files(folder)
    if files is None:
        return
    for name in files:
        path = folder / name
        if path.is_file() or path.is_symlink():
            path.unlink()
        parent = path.parent
        while parent != folder and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    (folder / MARKER).unlink(missing_ok=True)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def publish_dir(staging: Path, target: Path) -> None:
    """Move a finished staging folder onto ``target`` (marked as ours).

    A new (or empty) ``target`` gets the folder in one rename. An earlier result of ours holding
    only our files is swapped whole; one that also holds files of the user's is updated file by
    file: the old result's files are removed, the new ones moved in, the user's files kept.
    """
    staging, target = Path(staging), Path(target)
    mark_owned(staging)
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    if not target.exists():
        staging.rename(target)
        return
    old_files = owned_files(target)
    if old_files is None:
        raise SitewatchError(f"{target}: folder holds files sitewatch did not write; nothing was replaced")
    present = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file() and p.name != MARKER)
    if set(present) <= set(old_files):  # only our own files: swap the whole folder
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{os.urandom(4).hex()}")
        target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
        return
    remove_owned(target)
    target.mkdir(exist_ok=True)
    for path in sorted(staging.rglob("*")):
        if path.is_file() and path.name != MARKER:
            destination = target / path.relative_to(staging)
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, destination)
    os.replace(staging / MARKER, target / MARKER)
    shutil.rmtree(staging, ignore_errors=True)
