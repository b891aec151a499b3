"""User-facing errors.

A :class:`SitewatchError` is a problem with what the user gave us (a path, a file, a setting).
The command-line layer prints its message on one line and exits non-zero, without a traceback.
Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class SitewatchError(Exception):
    """A user mistake or bad input, reported as one line with a non-zero exit code."""

    exit_code: int = 2

    def __str__(self) -> str:  # keep it on one line whatever the cause text holds
        return " ".join(super().__str__().split())
