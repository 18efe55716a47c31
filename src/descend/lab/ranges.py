"""The lab's list and range syntax, shared by the commands and the web API.

* list: comma-separated numbers, ``0.1,0.2,0.5``;
* range: ``START:STOP:N`` is N points evenly spaced, both ends included;
  ``START:STOP:logN`` is N points evenly spaced in log, both ends included (START, STOP > 0);
* point: comma-separated coordinates, ``-1.2,1``; several points separated by ``;``.
"""

from __future__ import annotations

import math

import numpy as np

RANGE_FORMAT = (
    "use START:STOP:N (N evenly spaced points, both ends included), START:STOP:logN "
    "(N points evenly spaced in log, both ends included; START and STOP > 0) or a "
    "comma-separated list such as 0.1,0.2,0.5"
)


def _number(text: str, what: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}: {text.strip()!r} is not a number ({what})") from None
    if not math.isfinite(value):
        raise ValueError(f"{name}: {text.strip()!r} is not a finite number ({what})")
    return value


def parse_list(text: str, name: str = "list") -> list[float]:
    """``"0.1,0.2"`` → [0.1, 0.2]."""
    items = [item for item in str(text).split(",")]
    if not text or any(not item.strip() for item in items):
        raise ValueError(f"{name}: malformed list {text!r}: give comma-separated numbers")
    return [_number(item, "comma-separated list", name) for item in items]


def parse_range(text: str, name: str = "range") -> list[float]:
    """A range (``START:STOP:N`` or ``START:STOP:logN``), a list, or one number."""
    text = str(text).strip()
    if ":" not in text:
        try:
            return parse_list(text, name)
        except ValueError:
            raise ValueError(f"{name}: malformed range {text!r}: {RANGE_FORMAT}") from None
    parts = text.split(":")
    if len(parts) != 3:
        raise ValueError(f"{name}: malformed range {text!r}: {RANGE_FORMAT}")
    try:
        start, stop = (_number(p, "range", name) for p in parts[:2])
    except ValueError:
        raise ValueError(f"{name}: malformed range {text!r}: {RANGE_FORMAT}") from None
    count = parts[2].strip().lower()
    log = count.startswith("log")
    digits = count[3:] if log else count
    if not digits.isdigit() or int(digits) < 2:
        raise ValueError(
            f"{name}: malformed range {text!r}: the count must be an integer ≥ 2 "
            f"(N or logN); {RANGE_FORMAT}"
        )
    n = int(digits)
    if log:
        if start <= 0 or stop <= 0:
            raise ValueError(
                f"{name}: log range {text!r} needs START > 0 and STOP > 0; {RANGE_FORMAT}"
            )
        values = np.geomspace(start, stop, n)
        values[0], values[-1] = start, stop  # exact ends
    else:
        values = np.linspace(start, stop, n)
    return [float(v) for v in values]


def parse_point(text: str, dim: int, name: str = "point") -> tuple[float, ...]:
    """``"-1.2,1"`` → (−1.2, 1.0), checked to have ``dim`` coordinates."""
    values = parse_list(text, name)
    if len(values) != dim:
        raise ValueError(
            f"{name}: {text!r} has {len(values)} coordinate(s); this function needs {dim} "
            f"(e.g. {','.join(['0.5'] * dim)})"
        )
    return tuple(values)


def parse_points(text: str, dim: int, name: str = "points") -> list[tuple[float, ...]]:
    """``"-1.2,1;0,2"`` → [(−1.2, 1.0), (0.0, 2.0)]."""
    return [parse_point(chunk, dim, name) for chunk in str(text).split(";") if chunk.strip()]
