"""Hyperparameter checks shared by the optimizers: each error names the parameter, the value
and the accepted range, and is raised before any group or state is touched."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable

from torch import Tensor


def _values(value) -> list[float]:
    if isinstance(value, Tensor):
        return [float(x) for x in value.detach().flatten().tolist()]
    return [float(value)]


def _show(value) -> str:
    if isinstance(value, Tensor) and value.numel() > 1:
        vals = _values(value)
        return f"a tensor with values in [{min(vals):g}, {max(vals):g}]"
    return repr(float(value)) if isinstance(value, Tensor) else repr(value)


def number(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, Tensor)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if any(math.isnan(v) for v in _values(value)):
        raise ValueError(f"{name} must be a number, got NaN")


def non_negative(name: str, value) -> None:
    """value ≥ 0 (finite)."""
    number(name, value)
    if any(v < 0 or math.isinf(v) for v in _values(value)):
        raise ValueError(f"{name}={_show(value)} is invalid: it must be finite and ≥ 0")


def decay_rate(name: str, value) -> None:
    """β ∈ [0, 1): β = 1 would make the average never forget its start."""
    number(name, value)
    vals = _values(value)
    if any(v == 1 for v in vals):
        raise ValueError(
            f"{name}={_show(value)} is invalid: it must be in [0, 1). With {name} = 1 the "
            "exponentially weighted average never forgets: it stays at its initial value "
            "and new gradients get weight 1 − β = 0"
        )
    if any(v < 0 or v >= 1 for v in vals):
        raise ValueError(f"{name}={_show(value)} is invalid: it must be in [0, 1)")


def one_element_lr(lr, why: str) -> None:
    """lr is a number or a one-element tensor (torch's "Tensor lr must be 1-element"), for an
    optimizer whose update mixes a tensor's elements, so one lr per element or row means
    nothing; ``why`` says so for that optimizer."""
    if isinstance(lr, Tensor) and lr.numel() != 1:
        raise ValueError(
            f"lr must be a number or a 1-element tensor (Tensor lr must be 1-element): {why}"
        )


def unit_closed(name: str, value) -> None:
    """value ∈ [0, 1]."""
    number(name, value)
    if any(v < 0 or v > 1 for v in _values(value)):
        raise ValueError(f"{name}={_show(value)} is invalid: it must be in [0, 1]")


def choice(name: str, value, options: Iterable[str]) -> None:
    options = tuple(options)
    if value not in options:
        raise ValueError(f"{name}={value!r} is not valid; choose one of: {', '.join(options)}")


def flag(name: str, value) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def betas(value) -> None:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {value!r}")
    decay_rate("beta1 (betas[0])", value[0])
    decay_rate("beta2 (betas[1])", value[1])
    b1, b2 = value
    if not isinstance(b1, Tensor) and not isinstance(b2, Tensor) and b1 > b2:
        warnings.warn(
            f"betas=({b1}, {b2}): beta1 > beta2 — the betas look swapped (usually beta1 ≈ 0.9 "
            "averages the gradients and beta2 ≈ 0.999 their squares)",
            UserWarning,
            stacklevel=4,
        )


def optional_positive(name: str, value) -> None:
    if value is None:
        return
    number(name, value)
    if any(v <= 0 or math.isinf(v) for v in _values(value)):
        raise ValueError(f"{name}={_show(value)} is invalid: it must be > 0 (or None for off)")
