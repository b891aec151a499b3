"""User-facing errors.

A :class:`SitewatchError` is a problem with what the user gave us (a path, a file, a setting).
The command-line layer prints its message on one line and exits non-zero, without a traceback.
Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class SitewatchError(Exception):
    """A user mistake or bad input, reported as one line with a non-zero exit code.

    ``setting`` names the parameter at fault (``tile_size``, ``dates``...) when there is one:
    the stage that raises says what is wrong in its own words, and the command line adds the
    option the user typed (``--tile-size``).
    """

    exit_code: int = 2

    def __init__(self, message: str, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting

    def __str__(self) -> str:  # keep it on one line whatever the cause text holds
        return " ".join(super().__str__().split())


class SitewatchWarning(UserWarning):
    """Something the user should know about an input that sitewatch repaired or read with care.

    The command line prints it as one ``sitewatch: warning:`` line; the run goes on.
    """
