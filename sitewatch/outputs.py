"""Output folders and files sitewatch owns: it only ever replaces or deletes what it wrote itself.

One rule for every command that writes. Every output folder carries a marker file
(:data:`MARKER`) naming the command that made it and, for each file sitewatch wrote there
(relative path), its size, SHA-256 and, for a GeoPackage, its layer names.
A listed file whose content no longer matches its record (an analyst added a layer to
``changes.gpkg``, edited ``summary.json``) is the user's from then on.

* :func:`check_output_dir` (a command that owns a whole folder: ``segment``, ``change``,
  ``batch`` sites) and :func:`check_output_files` (a command that writes named files into a
  folder: ``vectorize``, ``evaluate``, the batch summaries) refuse before any work an output
  that holds or is an input, a folder or file sitewatch did not write, a file changed since,
  and a folder holding another command's result;
* :func:`publish_dir` moves a finished staging folder into place: a new folder is renamed in
  whole; an earlier result is replaced file by file, and only the files its marker lists are
  removed, so notes, photos or rasters an analyst added to a result folder are never touched;
  :func:`record_files` adds the files a command wrote into a folder to its marker.

Markers written before content records existed (a plain list of names) are read by name only.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sitewatch.errors import SitewatchError
from sitewatch.files import RESULT_MARK, STAGING_MARK, atomic_path, old_result_path
from sitewatch.jsontext import parse_json
from sitewatch.modelfile import file_sha256

#: The marker file of a folder sitewatch wrote.
MARKER = RESULT_MARK


@dataclass
class Marker:
    """A folder's marker: the command that made it and a record per file sitewatch wrote there."""

    command: str
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # name → record ({} for old markers)

    def to_json(self) -> str:
        return json.dumps({"tool": "sitewatch", "command": self.command, "files": sorted(self.files),
                           "records": {name: self.files[name] for name in sorted(self.files)}}, indent=1) + "\n"


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _layers(path: Path) -> list[str] | None:
    """The layer names of a GeoPackage (None for other files or an unreadable one)."""
    if path.suffix.lower() != ".gpkg":
        return None
    import pyogrio  # only for GeoPackages

    try:
        return sorted(str(name) for name in pyogrio.list_layers(path)[:, 0])
    except Exception:  # noqa: BLE001 - an unreadable GeoPackage simply has no layer list
        return None


def file_record(path: Path) -> dict[str, Any]:
    """What a file sitewatch wrote looks like: size, SHA-256 and, for a GeoPackage, its layers."""
    record: dict[str, Any] = {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
    layers = _layers(path)
    if layers is not None:
        record["layers"] = layers
    return record


def file_changed(path: Path, record: dict[str, Any]) -> str | None:
    """How a listed file differs from its record (None when it is as sitewatch wrote it).

    Size and SHA-256 decide (no modification time: a rerun's marker is byte-identical).
    """
    if path.is_symlink():
        return "replaced by a symbolic link"
    if not record:  # an old marker: names only
        return None
    if not path.is_file():
        return None  # gone: nothing of the user's to lose
    if path.stat().st_size == record.get("bytes") and file_sha256(path) == record.get("sha256"):
        return None
    before, now = set(record.get("layers") or []), set(_layers(path) or [])
    if record.get("layers") is not None and now != before:
        detail = [f"layer {name} added" for name in sorted(now - before)]
        detail += [f"layer {name} removed" for name in sorted(before - now)]
        return ", ".join(detail)
    return "content changed"


def read_marker(folder: Path) -> Marker | None:
    """The marker of a sitewatch output folder, or None without one."""
    path = Path(folder) / MARKER
    if not path.is_file():
        return None
    try:
        data = parse_json(path.read_text())
        names = [str(name) for name in data["files"]]
        records = data.get("records") or {}
        command = str(data.get("command") or ("change" if "summary.json" in names else "segment"))
        files = {name: dict(records.get(name) or {}) for name in names}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise SitewatchError(f"{folder}: its sitewatch marker {MARKER} is unreadable; "
                             "choose another output folder") from None
    for name in files:  # a marker must never point outside its folder
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise SitewatchError(f"{folder}: its sitewatch marker lists a path outside the folder ({name})")
    return Marker(command, files)


def owned_files(folder: Path) -> list[str] | None:
    """The relative paths a sitewatch output folder's marker lists, or None without a marker."""
    marker = read_marker(folder)
    return None if marker is None else sorted(marker.files)


def _refuse_changed(folder: Path, marker: Marker) -> None:
    """Refuse a folder where a file sitewatch wrote has changed since (it is the user's now)."""
    for name, record in sorted(marker.files.items()):
        how = file_changed(folder / name, record)
        if how is not None:
            raise SitewatchError(f"{folder / name}: changed since sitewatch wrote it ({how}), so it is yours "
                                 "now; move it away or choose another output folder")


def _refuse_outside(folder: Path, name: str) -> None:
    """Refuse a listed path that leads out of ``folder`` through a symbolic link (a folder on its way
    replaced by a link since): removing it would delete a file outside the output folder."""
    path = folder
    for part in Path(name).parts[:-1]:
        path = path / part
        if path.is_symlink():
            raise SitewatchError(f"{path}: is a symbolic link now, so what sitewatch wrote under it is not in the "
                                 f"output folder any more; move it away or choose another output folder")
    if not _inside((folder / name).parent.resolve(), folder.resolve()):
        raise SitewatchError(f"{folder / name}: lies outside the output folder; choose another output folder")


def _refuse_unwritable(target: Path) -> None:
    """Refuse an output whose nearest existing folder cannot be written (before any work, naming the
    user's path, not a temporary's)."""
    folder = target if target.is_dir() else target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        raise SitewatchError(f"{target}: cannot write there ({folder} is not writable); choose another output")
    if folder.exists() and not folder.is_dir():
        raise SitewatchError(f"{target}: {folder} is a file, not a folder; choose another output")


def _refuse_inputs(target: Path, inputs: Iterable[Path]) -> None:
    resolved = target.resolve()
    for path in inputs:
        source = Path(path).resolve()
        if _inside(source, resolved):
            raise SitewatchError(f"{target}: output folder holds the input {path}; choose another output folder")
        if _inside(resolved, source):
            raise SitewatchError(f"{target}: output folder lies inside the input {path}")


def check_output_dir(target: Path, inputs: Iterable[Path], command: str = "change") -> None:
    """Refuse an output folder that would put the user's files at risk (before any work).

    Refused: a folder that is, holds or lies inside an input; a path that is a file; an existing
    folder with files in it and no sitewatch marker (not a result of ours); a folder holding
    the result of another command (``command`` names this one); a result one of whose files
    changed since sitewatch wrote it.
    """
    target = Path(target)
    if target.is_symlink():
        raise SitewatchError(f"{target}: is a symbolic link; give the folder it points to, or a new folder")
    _refuse_inputs(target, inputs)
    _refuse_unwritable(target)
    if target.exists() and not target.is_dir():
        raise SitewatchError(f"{target}: exists and is not a folder; choose another output folder")
    if not target.is_dir() or not any(target.iterdir()):
        return
    marker = read_marker(target)
    if marker is None:
        raise SitewatchError(f"{target}: folder holds files sitewatch did not write; "
                             "choose an empty or new output folder")
    if marker.command != command:
        raise SitewatchError(f"{target}: folder holds the result of 'sitewatch {marker.command}', not of "
                             f"'sitewatch {command}'; choose another output folder")
    _refuse_changed(target, marker)
    for name in marker.files:
        _refuse_outside(target, name)


def check_output_files(folder: Path, names: Iterable[str], inputs: Iterable[Path], command: str | None = None) -> None:
    """Refuse, before any work, to write files ``names`` into ``folder`` when one is the user's.

    Refused: an output that is an input, a symbolic link, or that exists and is not listed in the
    folder's marker as sitewatch's, unchanged since (its size and SHA-256 as recorded); with
    ``command``, a folder holding the result of another command (whose next run would remove these
    files with its own).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise SitewatchError(f"{folder}: exists and is not a folder; choose another output folder")
    sources = {Path(path).resolve() for path in inputs}
    marker = read_marker(folder) if folder.is_dir() else None
    _refuse_unwritable(folder)
    if command is not None and marker is not None and marker.command != command:
        raise SitewatchError(f"{folder}: folder holds the result of 'sitewatch {marker.command}'; write the "
                             f"result of 'sitewatch {command}' into another folder")
    for name in names:
        target = folder / name
        if target.is_symlink():
            raise SitewatchError(f"{target}: is a symbolic link; sitewatch does not write through it. "
                                 "Choose another output")
        if target.resolve() in sources:
            raise SitewatchError(f"{target}: is an input of this command and would be overwritten; "
                                 "choose another output folder")
        if not target.exists() and not target.is_symlink():
            continue
        if marker is None or name not in marker.files:
            raise SitewatchError(f"{target}: exists and sitewatch did not write it; "
                                 "choose another output folder")
        how = file_changed(target, marker.files[name])
        if how is not None:
            raise SitewatchError(f"{target}: changed since sitewatch wrote it ({how}), so it is yours now; "
                                 "choose another output folder")


def record_files(folder: Path, names: Iterable[str], command: str) -> None:
    """Add files sitewatch just wrote into ``folder`` to its marker (created for ``command``)."""
    folder = Path(folder)
    marker = read_marker(folder) or Marker(command)
    for name in names:
        if (folder / name).is_file():
            marker.files[name] = file_record(folder / name)
    with atomic_path(folder / MARKER) as tmp:
        tmp.write_text(marker.to_json())


def mark_owned(folder: Path, command: str = "change") -> list[str]:
    """Write the marker recording every file under ``folder`` (relative paths); return the list."""
    folder = Path(folder)
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != MARKER)
    marker = Marker(command, {name: file_record(folder / name) for name in names})
    (folder / MARKER).write_text(marker.to_json())
    return names


def remove_owned(folder: Path) -> None:
    """Delete the files a sitewatch marker lists, unchanged since (and folders they leave empty); keep the rest."""
    folder = Path(folder)
    marker = read_marker(folder)
    if marker is None:
        return
    _refuse_changed(folder, marker)
    for name in marker.files:
        _refuse_outside(folder, name)
    for name in marker.files:
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


def publish_dir(staging: Path, target: Path, command: str = "change") -> None:
    """Move a finished staging folder onto ``target`` (marked as ``command``'s result).

    A new (or empty) ``target`` gets the folder in one rename. An earlier result of ours holding
    only our files is swapped whole; one that also holds files of the user's is updated file by
    file: the old result's files are removed, the new ones moved in, the user's files kept. The
    target is checked again first (nothing is touched when a file became the user's meanwhile).
    """
    staging, target = Path(staging), Path(target)
    (staging / STAGING_MARK).unlink(missing_ok=True)
    new_files = mark_owned(staging, command)
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    if not target.exists():
        staging.rename(target)
        return
    check_output_dir(target, [], command)
    old = read_marker(target)
    assert old is not None  # checked above: a non-empty folder without a marker is refused
    present = sorted(str(p.relative_to(target)) for p in target.rglob("*")
                     if p.is_file() and not p.is_symlink() and p.name != MARKER)
    theirs = set(present) - set(old.files)
    if not theirs:  # only our own files: swap the whole folder
        previous = old_result_path(target)
        target.rename(previous)
        staging.rename(target)
        shutil.rmtree(previous, ignore_errors=True)
        return
    clash = sorted(theirs & set(new_files))
    if clash:
        raise SitewatchError(f"{target / clash[0]}: sitewatch did not write it and would replace it; "
                             "move it away or choose another output folder")
    remove_owned(target)
    target.mkdir(exist_ok=True)
    for path in sorted(staging.rglob("*")):
        if path.is_file() and path.name != MARKER:
            destination = target / path.relative_to(staging)
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, destination)
    os.replace(staging / MARKER, target / MARKER)
    shutil.rmtree(staging, ignore_errors=True)
