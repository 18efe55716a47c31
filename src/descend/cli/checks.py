"""Argument checks shared by the commands, run before any data is loaded or memory allocated.

Each check raises :class:`~descend.cli.CommandError` with one line naming the flag and the
accepted range or form. The size limits bound what one command may allocate and compute on a
laptop; each message says which flag to lower.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from descend.cli import CommandError

# Landscape runs record every step: runs × steps positions (2-D float64: ~24 bytes each).
MAX_LANDSCAPE_STEPS = 1_000_000
MAX_RECORDED = 10_000_000
# Basin maps keep the ends only; one run per start and optimizer.
MAX_BASIN_RUNS = 1_000_000
MAX_BASIN_WORK = 1_000_000_000  # runs × steps
# Sweeps run one optimizer per grid point.
MAX_SWEEP_POINTS = 20_000
MAX_SWEEP_WORK = 100_000_000  # grid points × steps
MAX_SCHEDULE_STEPS = 1_000_000
MAX_EXPLAIN_STEPS = 10_000
MAX_LR_FIND_STEPS = 100_000
MAX_SEEDS = 100
MAX_EPOCHS = 10_000
MAX_UPDATES = 10_000_000
MAX_THREADS = 256


def integer(value: int | None, flag: str, low: int, high: int | None = None) -> None:
    """``low ≤ value ≤ high`` (None passes: the option was not given)."""
    if value is None:
        return
    if value < low or (high is not None and value > high):
        accepted = f"an integer in [{low:,}, {high:,}]" if high is not None else f"≥ {low:,}"
        raise CommandError(f"{flag} must be {accepted}, got {value:,}")


def number(
    value: float | None,
    flag: str,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """A finite number in the interval given by ``low``/``high`` (open ends when asked)."""
    if value is None:
        return
    ok = math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "−∞" if low is None else f"{low:g}"
        hi = "∞" if high is None else f"{high:g}"
        if low is None:
            left = "("
        if high is None:
            right = ")"
        raise CommandError(
            f"{flag} must be a finite number in {left}{lo}, {hi}{right}, got {value}"
        )


def size(count: int, limit: int, what: str, advice: str) -> None:
    """Refuse a computation larger than ``limit`` (``what`` = how ``count`` is made)."""
    if count > limit:
        raise CommandError(f"{what} = {count:,} is over the limit of {limit:,}; {advice}")


def range_size(text: str, flag: str) -> int:
    """How many values a range or list (:mod:`descend.lab.ranges`) holds, without building it
    (``1e-4:1:log100000000`` would allocate before any check)."""
    text = str(text).strip()
    if ":" not in text:
        return len(text.split(","))
    parts = text.split(":")
    count = parts[-1].strip().lower()
    digits = count[3:] if count.startswith("log") else count
    if len(parts) == 3 and digits.isdigit():
        return int(digits)
    return 0  # malformed: parse_range says how


def specs(items: Sequence[str] | str, flag: str, default_lrs: dict[str, float]) -> list[str]:
    """Split and check optimizer specs (names, keys and values: ``lr=abc``, ``lr=nan``,
    ``momentum=1.5`` are refused here rather than marked per run)."""
    from descend.lab.configs import build_configs, split_specs

    try:
        spec_list = split_specs(items)
        configs = build_configs(spec_list, default_lrs)
    except ValueError as exc:
        raise CommandError(f"{flag}: {exc}") from None
    for config in configs:
        if config.error:
            raise CommandError(f"{flag}: {config.text}: {config.error}")
    return spec_list


def spec(text: str, flag: str, **overrides: Any) -> None:
    """One optimizer spec, built on a dummy parameter (``overrides`` as in ``from_spec``)."""
    import torch

    from descend.optim import from_spec

    try:
        from_spec(text, [torch.zeros(1, requires_grad=True)], **overrides)
    except (ValueError, TypeError) as exc:
        raise CommandError(f"{flag}: {text}: {exc}") from None


def count_specs(items: Sequence[str] | str) -> int:
    """How many specs :func:`descend.lab.configs.split_specs` will find (same rule: ``;`` and
    spaces separate), without importing torch, so size limits are checked first."""
    items = [items] if isinstance(items, str) else list(items)
    return sum(len(chunk.split()) for item in items for chunk in str(item).split(";"))
