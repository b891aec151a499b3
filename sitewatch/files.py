"""Files and folders that appear whole or not at all: temporary siblings renamed into place.

One rule for what a temporary is, so that cleaning up never touches a file of the user's:

* a temporary's name is ``.<name>.sitewatch-<pid>-<8 random>.<kind>`` beside its target
  ``<name>`` (kinds: ``staging`` folders, ``old`` folders of a replaced result, ``part<suffix>``
  files), a form no backup or dated copy takes by chance;
* a temporary folder is also recorded inside itself: a staging folder holds :data:`STAGING_MARK`
  (the process that made it), an old result its own sitewatch marker (``.sitewatch-owned.json``);
* only temporaries of that form whose process is gone are removed by a later run
  (:func:`remove_stale_partials`); anything else beside the target is left alone.

One writer per output: :func:`output_lock` holds ``.<name>.sitewatch-lock`` (the process id in
it) while a run builds and publishes ``<name>``; a second run into the same output is refused
while the first lives, and takes over the lock of a run that died.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sitewatch.errors import SitewatchError

#: The file inside a staging folder that records it as sitewatch's (its content: the process id).
STAGING_MARK = ".sitewatch-staging"
#: The marker of a finished result folder (also in :mod:`sitewatch.outputs`).
RESULT_MARK = ".sitewatch-owned.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temporary_prefix(target: Path) -> str:
    """The start of every temporary name of ``target`` made by this process."""
    return f".{Path(target).name}.sitewatch-{os.getpid()}-"


def _temporary_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(name)}\.sitewatch-(\d+)-[a-z0-9_]{{8}}\.(staging|old|part[^/]*)$")


def is_stale_temporary(path: Path, target: Path) -> bool:
    """Whether ``path`` is a temporary of ``target`` that sitewatch made and whose process is gone."""
    match = _temporary_pattern(Path(target).name).match(path.name)
    if match is None or path.is_symlink() or _pid_alive(int(match.group(1))):
        return False
    kind = match.group(2)
    if kind == "staging":
        return path.is_dir() and (path / STAGING_MARK).is_file()
    if kind == "old":
        return path.is_dir() and (path / RESULT_MARK).is_file()
    return path.is_file()


def remove_stale_partials(target: Path) -> None:
    """Delete temporaries of ``target`` left by a killed run (see the module docstring); nothing else."""
    target = Path(target)
    if not target.parent.is_dir():
        return
    for sibling in target.parent.iterdir():
        if is_stale_temporary(sibling, target):
            if sibling.is_dir():
                shutil.rmtree(sibling, ignore_errors=True)
            else:
                sibling.unlink(missing_ok=True)


def staging_dir(target: Path) -> Path:
    """A new empty folder beside ``target`` to build it in (then renamed onto it).

    Stale temporaries of killed runs are removed first. The folder gets the permissions a
    normal ``mkdir`` would (umask), not ``mkdtemp``'s private 0700, and holds :data:`STAGING_MARK`
    until it is published (:func:`sitewatch.outputs.publish_dir` removes it).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(target)
    folder = Path(tempfile.mkdtemp(prefix=temporary_prefix(target), suffix=".staging", dir=target.parent))
    (folder / STAGING_MARK).write_text(f"{os.getpid()}\n")
    folder.chmod(0o777 & ~_umask())
    return folder


def old_result_path(target: Path) -> Path:
    """A free temporary name beside ``target`` to move its previous result to before removing it."""
    return Path(target).with_name(f"{temporary_prefix(target)}{os.urandom(4).hex()}.old")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only on success.

    A failure or interruption leaves no partial ``target`` and removes the temporary file.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(target)
    fd, tmp_name = tempfile.mkstemp(prefix=temporary_prefix(target), suffix=suffix or (".part" + target.suffix),
                                    dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def lock_path(target: Path) -> Path:
    """The lock file of an output ``target``."""
    return Path(target).with_name(f".{Path(target).name}.sitewatch-lock")


@contextlib.contextmanager
def output_lock(target: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the one-writer lock of ``target`` (see the module docstring) while the block runs.

    Raises:
        SitewatchError: another living sitewatch process is writing ``target``.
    """
    lock = lock_path(Path(target))
    made = [folder for folder in [lock.parent, *lock.parent.parents] if not folder.exists()]
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            holder = _lock_holder(lock)
            if holder is None and _age_s(lock) < 10:  # just made by another run, its id not written yet
                raise SitewatchError(f"{target}: another sitewatch run is starting to write it; wait for it to "
                                     "finish or choose another output") from None
            if holder is not None and holder != os.getpid() and _pid_alive(holder):
                raise SitewatchError(f"{target}: another sitewatch run (process {holder}) is writing it; wait for "
                                     "it to finish or choose another output") from None
            if lock.is_symlink() or not lock.is_file():
                raise SitewatchError(f"{lock}: is not sitewatch's lock file; move it away") from None
            lock.unlink(missing_ok=True)  # the lock of a run that died
    else:
        raise SitewatchError(f"{target}: could not take its lock {lock.name}; try again")
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        yield
    finally:
        if _lock_holder(lock) == os.getpid():
            lock.unlink(missing_ok=True)
        for folder in made:  # folders made only for the lock, left empty by a refused run
            with contextlib.suppress(OSError):
                folder.rmdir()


def _age_s(path: Path) -> float:
    try:
        return time.time() - path.lstat().st_mtime
    except OSError:
        return float("inf")


def _lock_holder(lock: Path) -> int | None:
    try:
        text = lock.read_text()[:32].strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask
