"""Landscapes for the web page: resolving a request's function, describing it, sampling a grid.

A request names its function with ``{"name": ..., "params": {...}, "domain": [...]}``: a
registry name (``descend.landscapes.names()``) with that landscape's parameters, or an
expression (``"expr:x**2 + 10*sin(y)"``, or any text that is not a bare word) read by the
landscape lab's safe parser, whose plotting box ``domain`` may be given. The page draws 1-D
functions as a curve and 2-D functions as a contour map, so expressions may use at most two
variables.

The contour grid is computed here and coloured in the browser (and by :mod:`.gif`): the
plotted value is f itself (``linear``) or log₁₀(f − f_low + δ) (``log``), with f_low the lowest
known minimum (or the lowest grid value) and δ = 10⁻⁶·(f_high − f_low) + 10⁻¹², so that a
Rosenbrock valley spanning six decades stays visible.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
import torch

from descend import landscapes
from descend.landscapes import Landscape
from descend.landscapes.registry import _BARE_WORD, EXPR_PREFIX

from .errors import RequestError

MAX_WEB_DIM = 2
LOG_DELTA_FRACTION = 1e-6
SCALES = ("auto", "linear", "log")


def is_registered(name: str) -> bool:
    """Whether ``name`` is a registry name (case, ``_`` and ``-`` as the registry allows)."""
    return name.strip().lower().replace("_", "-") in landscapes.names()


def resolve(
    name: str,
    params: Mapping[str, float] | None = None,
    domain: Sequence[Sequence[float]] | None = None,
    loc: tuple = ("function",),
) -> Landscape:
    """The landscape a request names, or a :class:`RequestError` saying what is accepted."""
    params = dict(params or {})
    registered = is_registered(name)
    if registered and domain is not None:
        raise RequestError(
            loc + ("domain",),
            "domain can only be given for an expression; registered functions have their own",
        )
    if not registered and params:
        raise RequestError(
            loc + ("params",),
            f"params are only for registered functions ({', '.join(landscapes.names())}); "
            "an expression has none",
        )
    key_domain = None if domain is None else tuple(tuple(float(v) for v in b) for b in domain)
    try:
        landscape = _cached(name.strip(), tuple(sorted(params.items())), key_domain)
    except ValueError as exc:
        field = "params" if registered and params else "name"
        raise RequestError(loc + (field,), str(exc)) from None
    if landscape.dim > MAX_WEB_DIM:
        raise RequestError(
            loc + ("name",),
            f"the web lab draws functions of 1 or 2 variables (x, y); this expression uses "
            f"{landscape.dim}",
        )
    return landscape


@lru_cache(maxsize=64)
def _cached(name: str, params: tuple, domain: tuple | None) -> Landscape:
    if domain is None or is_registered(name) or _BARE_WORD.fullmatch(name):
        # the registry's own lookup: names, "expr:…", other expressions, and a helpful
        # "did you mean" for a misspelt name
        return landscapes.get(name, **dict(params))
    text = name[len(EXPR_PREFIX) :] if name.lower().startswith(EXPR_PREFIX) else name
    if len(domain) == 1:  # one (lo, hi) for every variable
        return landscapes.from_expression(text, domain=domain[0])
    return landscapes.from_expression(text, dim=len(domain), domain=domain)


def describe(landscape: Landscape) -> dict:
    """Everything the page shows about a landscape (JSON-ready)."""
    registered = not landscape.name.startswith(EXPR_PREFIX)
    return {
        "name": landscape.name,
        "kind": "registry" if registered else "expression",
        "dim": landscape.dim,
        "domain": [list(b) for b in landscape.domain],
        "contour": landscape.contour,
        "formula": landscape.formula,
        "description": landscape.description,
        "params": {k: _number(v) for k, v in landscape.params.items()} if registered else {},
        "parameters": (
            {k: _number(v) for k, v in landscapes.parameters(landscape.name).items()}
            if registered
            else {}
        ),
        "minima": [{"location": list(m.location), "value": m.value} for m in landscape.minima],
        "f_min": landscape.f_min,
        "starts": [list(s) for s in landscape.starts],
        "default_lrs": dict(landscape.default_lrs),
    }


def catalogue() -> list[dict]:
    """Every registered landscape, described with its default parameters."""
    return [describe(landscapes.get(name)) for name in landscapes.names()]


def _number(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def grid(landscape: Landscape, resolution: int) -> dict:
    """f sampled on ``resolution`` points per axis of the landscape's domain.

    2-D: ``x`` (n), ``y`` (n) and ``z`` (n rows of n values, row i at y[i]); 1-D: ``x`` and
    ``z`` (n values). Non-finite values become None. ``low``/``high`` are the finite extremes.
    """
    axes = [np.linspace(lo, hi, resolution) for lo, hi in landscape.domain]
    if landscape.dim == 1:
        points = torch.from_numpy(axes[0]).reshape(-1, 1)
    else:
        gx, gy = np.meshgrid(axes[0], axes[1])  # gx[i, j] = x[j], gy[i, j] = y[i]
        points = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], axis=1))
    with torch.no_grad():
        values = landscape.f(points).detach().double().numpy()
    values = np.broadcast_to(values, (points.shape[0],))
    if landscape.dim == 2:
        values = values.reshape(resolution, resolution)
    finite = np.isfinite(values)
    low = float(values[finite].min()) if finite.any() else None
    high = float(values[finite].max()) if finite.any() else None
    out = {"x": axes[0].tolist(), "z": to_json_array(values), "low": low, "high": high}
    if landscape.dim == 2:
        out["y"] = axes[1].tolist()
    return out


def plot_scale(landscape: Landscape, requested: str) -> str:
    """``linear`` or ``log``: the request's choice, or the landscape's own for ``auto``."""
    return landscape.contour if requested == "auto" else requested


def plotted(values: np.ndarray, scale: str, f_min: float | None) -> np.ndarray:
    """The values that get coloured: f, or log₁₀(f − f_low + δ) (see the module docstring)."""
    values = np.asarray(values, dtype=np.float64)
    if scale == "linear":
        return values
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return values
    low = float(finite.min()) if f_min is None else min(float(f_min), float(finite.min()))
    delta = LOG_DELTA_FRACTION * (float(finite.max()) - low) + 1e-12
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.log10(values - low + delta)


def to_json_array(values: np.ndarray) -> list:
    """A nested list with non-finite entries as None (JSON has no NaN or Infinity)."""
    array = np.asarray(values, dtype=np.float64)
    as_object = array.astype(object)
    as_object[~np.isfinite(array)] = None
    return as_object.tolist()
