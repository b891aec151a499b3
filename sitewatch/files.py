"""Files and folders that appear whole or not at all: temporary siblings renamed into place.

A killed run leaves only temporary names behind (``.<name>.<pid>.…``), removed by the next run
once their process is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(target: Path) -> None:
    """Delete temporary siblings of ``target`` left by a killed run (their process is gone).

    Temporary names are ``.<name>.partial-<pid>-<random>`` (folders) and
    ``.<name>.<pid>.<random>.part<suffix>`` (files); those of live processes are kept.
    """
    target = Path(target)
    if not target.parent.is_dir():
        return
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(?:partial-)?(\d+)[.-]")
    for sibling in target.parent.iterdir():
        match = pattern.match(sibling.name)
        if match and not _pid_alive(int(match.group(1))):
            if sibling.is_dir():
                shutil.rmtree(sibling, ignore_errors=True)
            else:
                sibling.unlink(missing_ok=True)


def staging_dir(target: Path) -> Path:
    """A new empty folder beside ``target`` to build it in (then renamed onto it).

    Stale staging folders of killed runs are removed first. The folder gets the permissions a
    normal ``mkdir`` would (umask), not ``mkdtemp``'s private 0700.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(target)
    folder = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-{os.getpid()}-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    return folder


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only on success.

    A failure or interruption leaves no partial ``target`` and removes the temporary file.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(target)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.{os.getpid()}.", suffix=suffix or (".part" + target.suffix), dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask
