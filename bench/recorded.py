"""What a benchmark's JSON records about how it was run, without this machine's paths.

Results are committed: a model or raster path inside the repository is written relative to it,
and the command line with the same paths (and any path named in ``hide`` by a placeholder).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def repo_path(path: Path | str) -> str:
    """``path`` relative to the repository when it lies inside it, else as given."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def command_line(hide: dict[str, str] | None = None) -> str:
    """``python`` and this process's arguments, repository paths made relative, ``hide``'s replaced."""
    hide = hide or {}
    words = [hide.get(word, repo_path(word) if Path(word).exists() else word) for word in sys.argv]
    return "python " + " ".join(words)
