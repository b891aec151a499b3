"""JSON read from files sitewatch did not write (Planet metadata, model files, markers): bounded.

``json.loads`` turns a 400-digit number into an int that later overflows a float conversion, and
a document nested 100,000 deep into a ``RecursionError``; both used to escape as tracebacks. Here
any such document is a ``ValueError`` with a plain reason, which each reader turns into its own
one-line error about its file.
"""

from __future__ import annotations

import json
import math
from typing import Any

#: Longest integer literal accepted (digits): ample for sizes, offsets and ids.
MAX_INT_DIGITS = 30
#: Deepest nesting accepted.
MAX_DEPTH = 64


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"a number of {len(text)} digits")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"a number out of range ({text[:20]})")
    return value


def _constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _depth(text: str) -> int:
    """The deepest nesting of brackets outside strings."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                return deepest
        elif char in "]}":
            depth -= 1
    return deepest


def parse_json(text: str | bytes) -> Any:
    """Parse a JSON document of bounded depth and number size.

    Raises:
        ValueError: not JSON, nested deeper than :data:`MAX_DEPTH`, or a number too large.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")  # UnicodeDecodeError is a ValueError
    if _depth(text) > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    return json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
