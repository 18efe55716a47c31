"""Exponentially weighted averages (EWA): the filter behind momentum, RMSprop and Adam.

The recurrence, with β ∈ [0, 1) the memory and x_t the observation at step t = 1, 2, …::

    v_t = β v_{t−1} + (1 − β) x_t

unrolls to v_t = (1 − β) Σ_{k<t} β^k x_{t−k} + β^t v_0: the weight of an observation shrinks
by β per step, so the average remembers about ``effective_window(β) = 1/(1 − β)`` steps.

Starting from v_0 = 0 pulls the first values towards zero (the weights of the observations
sum to 1 − β^t, not 1). Bias correction divides that out::

    v̂_t = v_t / (1 − β^t)                      (bias_correction_factor(β, t) = 1/(1 − β^t))

Relation to pandas (α = 1 − β):
  - ``ewa(x, β, init="first")``                 == ``x.ewm(alpha=1-β, adjust=False).mean()``
  - ``ewa(x, β, bias_correction=True)``         == ``x.ewm(alpha=1-β, adjust=True).mean()``
    (the notes' ``df['value'].ewm(alpha=alpha).mean()`` is therefore the bias-corrected EWA.)

Missing values (NaN) are handled as pandas ``ewm(ignore_na=False)`` does: a missing x_t adds
nothing, but older values keep ageing by β per step, so weights follow absolute positions.

  - without bias correction (pandas' ``adjust=False`` rule): after g missing values,
    v_t = (β^{g+1} v_prev + (1 − β) x_t) / (β^{g+1} + 1 − β);
  - with bias correction (pandas' ``adjust=True`` rule):
    v̂_t = Σ_{i≤t observed} β^{t−i} x_i / Σ_{i≤t observed} β^{t−i}, which is v_t/(1 − β^t)
    when nothing is missing.

(pandas 3.0 departs from the first rule at exactly β = 0.5, where it special-cases com = 1
and gives the new value weight 1 − β^{g+1}: pandas-dev/pandas#66521. descend uses the rule
above for every β, as pandas 2.x did.)

At a missing position the output repeats the previous output. Before the first observation the
output is NaN when there is no value to repeat (``init="first"`` or bias correction) and the
initial value v_0 otherwise. ±inf count as observations.

Shapes: time runs along axis 0 (the rows of a Series or DataFrame); every other axis is an
independent series. With several betas at once (a list, tuple or 1-D array of them):

  - numpy array / torch tensor of shape S → shape (len(betas), *S), one slice per β;
  - Series → DataFrame with the same index and one column per β (column labels are the betas,
    the column axis is named "beta");
  - DataFrame → DataFrame with two column levels ("beta", then the original columns).

A single β (a plain number) returns the input's type and shape. Index, column names and the
Series name are kept. numpy and torch inputs keep their floating dtype (integer input becomes
float64, or torch's default float dtype); torch tensors stay on their device.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["ewa", "effective_window", "bias_correction_factor"]


def _check_beta(beta: Any, name: str = "beta") -> float:
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real):
        raise ValueError(f"{name} must be a real number in [0, 1), got {beta!r}")
    value = float(beta)
    if not 0.0 <= value < 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return value


def effective_window(beta: float) -> float:
    """Number of steps an EWA with memory β roughly averages over: 1/(1 − β).

    β = 0.9 → 10 steps, β = 0.98 → 50 steps. It is also the mean age (plus one) of the
    weights (1 − β)β^k, k = 0, 1, …
    """
    b = _check_beta(beta)
    return 1.0 / (1.0 - b)


def bias_correction_factor(beta: float, t: int | Sequence[int] | np.ndarray) -> Any:
    """The factor 1/(1 − β^t) that bias correction multiplies v_t by (t ≥ 1 counts the steps).

    Accepts one step (returns a float) or an array of steps (returns an array). It starts at
    1/(1 − β) at t = 1 and tends to 1 as t grows. β = 0 gives 1 for every t.
    """
    b = _check_beta(beta)
    steps = np.asarray(t)
    if steps.dtype.kind not in "iu" or steps.size and steps.min() < 1:
        raise ValueError(f"t must be an integer step >= 1 (or an array of them), got {t!r}")
    factor = 1.0 / (1.0 - b ** steps.astype(np.float64))
    return float(factor) if steps.ndim == 0 else factor


def _check_init(init: Any) -> str | float:
    if isinstance(init, str):
        if init in ("zero", "first"):
            return init
    elif isinstance(init, numbers.Real) and not isinstance(init, bool):
        if math.isfinite(float(init)):
            return float(init)
    raise ValueError(f"init must be 'zero', 'first' or a finite number, got {init!r}")


def _ewa_core(x: Any, beta: float, bias_correction: bool, init: str | float, xp: Any) -> Any:
    """EWA along axis 0 of a float numpy array or torch tensor; ``xp`` is numpy or torch."""
    out = xp.empty_like(x)
    if x.shape[0] == 0:
        return out
    keep = 1.0 - beta
    like = x[0]
    nan = float("nan")
    if bias_correction:
        # numerator Σ (1−β)β^{t−i} x_i and observed weight Σ (1−β)β^{t−i} over observed i.
        total = xp.zeros_like(like)
        weight = xp.zeros_like(like)
        previous = xp.full_like(like, nan)
        for t in range(x.shape[0]):
            xt = x[t]
            seen = ~xp.isnan(xt)
            total = beta * total + xp.where(seen, keep * xt, 0.0)
            weight = beta * weight + xp.where(seen, keep, 0.0)
            safe = xp.where(weight > 0, weight, 1.0)
            previous = xp.where(seen, total / safe, previous)
            out[t] = previous
        return out
    # Plain EWA: v holds the normalised average, decay the weight of v at the next observation
    # (β per step since the last observation, as pandas' adjust=False rule).
    start = nan if init == "first" else (0.0 if init == "zero" else init)
    v = xp.full_like(like, start)
    decay = xp.ones_like(like)
    for t in range(x.shape[0]):
        xt = x[t]
        seen = ~xp.isnan(xt)
        decay = decay * beta
        blended = (decay * v + keep * xt) / (decay + keep)
        new = xp.where(xp.isnan(v), xt, blended)  # init="first": the first observation
        v = xp.where(seen, new, v)
        decay = xp.where(seen, 1.0, decay)
        out[t] = v
    return out


def _betas(beta: Any) -> tuple[list[float], bool]:
    """(list of checked betas, whether several were asked for)."""
    if isinstance(beta, str):
        raise ValueError(f"beta must be a number in [0, 1) or a sequence of them, got {beta!r}")
    if isinstance(beta, numbers.Real) or (isinstance(beta, np.ndarray) and beta.ndim == 0):
        return [_check_beta(beta if isinstance(beta, numbers.Real) else beta.item())], False
    try:
        items = list(beta)
    except TypeError:
        raise ValueError(
            f"beta must be a number in [0, 1) or a sequence of them, got {beta!r}"
        ) from None
    if not items:
        raise ValueError("beta must hold at least one value in [0, 1), got an empty sequence")
    values = [_check_beta(b.item() if isinstance(b, np.generic) else b) for b in items]
    return values, True


def ewa(
    x: Any,
    beta: float | Sequence[float] | np.ndarray,
    bias_correction: bool = False,
    init: str | float = "zero",
) -> Any:
    """Exponentially weighted average of ``x`` along its first axis.

    v_t = β v_{t−1} + (1 − β) x_t for t = 1…T, with v_0 = 0 (``init="zero"``), v_0 = x_1
    (``init="first"``, so v_1 = x_1) or v_0 = c (``init=c``, a number). With
    ``bias_correction=True`` the result is v_t / (1 − β^t), which removes the pull of v_0 = 0;
    it is only defined for ``init="zero"``.

    Args:
        x: numpy array (or list), torch tensor, pandas Series or DataFrame; time along axis 0.
        beta: memory β ∈ [0, 1), or a sequence of them to compute several averages at once.
        bias_correction: divide by 1 − β^t (by the observed weight when values are missing).
        init: "zero", "first" or a finite number: the starting value v_0.

    Returns:
        The same type as ``x`` for one β; for several betas see the module docstring (an extra
        leading axis for arrays and tensors, one column per β for a Series, a "beta" column level
        for a DataFrame). NaNs follow pandas ``ewm(ignore_na=False)`` (module docstring).
    """
    betas, several = _betas(beta)
    init_value = _check_init(init)
    if bias_correction and init_value != "zero":
        raise ValueError(
            "bias_correction divides by 1 − β^t to undo the start v_0 = 0, so it needs "
            f"init='zero', got init={init!r}"
        )
    module = type(x).__module__.split(".")[0]
    if module == "pandas":
        return _ewa_pandas(x, betas, several, bias_correction, init_value)
    if module == "torch":
        return _ewa_torch(x, betas, several, bias_correction, init_value)
    return _ewa_numpy(x, betas, several, bias_correction, init_value)


def _as_float_array(x: Any, what: str = "x") -> np.ndarray:
    array = np.asarray(x)
    if array.dtype.kind in "iub":
        array = array.astype(np.float64)
    elif array.dtype.kind != "f":
        raise ValueError(f"{what} must hold real numbers, got dtype {array.dtype}")
    if array.ndim == 0:
        raise ValueError(f"{what} must have a time axis (at least 1-D), got a scalar")
    return array


def _ewa_numpy(x: Any, betas: list[float], several: bool, bc: bool, init: str | float) -> Any:
    array = _as_float_array(x)
    results = [_ewa_core(array, b, bc, init, np) for b in betas]
    return np.stack(results) if several else results[0]


def _ewa_torch(x: Any, betas: list[float], several: bool, bc: bool, init: str | float) -> Any:
    import torch

    if x.is_complex():
        raise ValueError(f"x must hold real numbers, got dtype {x.dtype}")
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if x.ndim == 0:
        raise ValueError("x must have a time axis (at least 1-D), got a scalar tensor")
    with torch.no_grad():
        results = [_ewa_core(x.detach(), b, bc, init, torch) for b in betas]
    return torch.stack(results) if several else results[0]


def _ewa_pandas(x: Any, betas: list[float], several: bool, bc: bool, init: str | float) -> Any:
    import pandas as pd

    if isinstance(x, pd.Series):
        if not pd.api.types.is_numeric_dtype(x.dtype):
            raise ValueError(f"series {x.name!r} must be numeric, got dtype {x.dtype}")
        values = _as_float_array(x.to_numpy(dtype=np.float64, na_value=np.nan))
        columns = {b: _ewa_core(values, b, bc, init, np) for b in betas}
        if not several:
            return pd.Series(columns[betas[0]], index=x.index, name=x.name)
        frame = pd.DataFrame(columns, index=x.index)
        frame.columns.name = "beta"
        return frame
    if isinstance(x, pd.DataFrame):
        bad = [c for c in x.columns if not pd.api.types.is_numeric_dtype(x[c].dtype)]
        if bad:
            raise ValueError(f"DataFrame columns must be numeric; not numeric: {bad}")
        values = _as_float_array(x.to_numpy(dtype=np.float64, na_value=np.nan))
        frames = {
            b: pd.DataFrame(_ewa_core(values, b, bc, init, np), index=x.index, columns=x.columns)
            for b in betas
        }
        if not several:
            return frames[betas[0]]
        return pd.concat(frames, axis=1, names=["beta"])
    raise ValueError(f"x must be a Series, DataFrame, array or tensor, got {type(x).__name__}")
