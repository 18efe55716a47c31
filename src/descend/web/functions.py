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

:func:`quadratic_form` recognises a quadratic (a Hessian that is the same, to 1e-9 relative, at
the domain's centre and corners, its suggested starts and a few fixed points) and returns its
Hessian H and minimizer θ* = p − H⁻¹∇f(p); the theory panel builds on it, and a user's quadratic
expression gets f* = f(θ*) as the target of "steps to converge".
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
RELATIVE_TOL = 1e-9  # a Hessian this close to constant makes a quadratic


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


def _probe_points(landscape: Landscape) -> torch.Tensor:
    boxes = np.array(landscape.domain, dtype=np.float64)  # (d, 2)
    centre = boxes.mean(axis=1)
    corners = np.array(np.meshgrid(*boxes)).reshape(landscape.dim, -1).T
    fixed = np.random.default_rng(0).uniform(boxes[:, 0], boxes[:, 1], size=(4, landscape.dim))
    starts = np.array(landscape.starts, dtype=np.float64).reshape(-1, landscape.dim)
    return torch.from_numpy(np.vstack([centre[None], corners, fixed, starts]))


def quadratic_form(landscape: Landscape) -> tuple[np.ndarray, np.ndarray] | str:
    """(H, θ*) for a quadratic with a positive definite Hessian, else the reason it is not."""
    points = _probe_points(landscape)
    with torch.no_grad():
        hessians = landscape.hessian(points).double()
    if not bool(torch.isfinite(hessians).all()):
        return "the Hessian is not finite everywhere, so this is not a quadratic"
    h0 = hessians[0]
    spread = float((hessians - h0).abs().max())
    if spread > RELATIVE_TOL * (1.0 + float(h0.abs().max())):
        return "the Hessian changes from point to point: the theory is for quadratics"
    h = 0.5 * (h0 + h0.T)
    eigenvalues = torch.linalg.eigvalsh(h)
    if float(eigenvalues[0]) <= RELATIVE_TOL * max(1.0, float(eigenvalues.abs().max())):
        shown = ", ".join(f"{float(v):.4g}" for v in eigenvalues)
        return f"the Hessian's eigenvalues ({shown}) are not all positive: there is no minimum"
    centre = points[:1]
    with torch.no_grad():
        g = landscape.grad(centre).double()[0]
    minimizer = centre[0] - torch.linalg.solve(h, g)
    return h.numpy(), minimizer.numpy()


def target_value(landscape: Landscape) -> float | None:
    """f* for "steps to converge": the lowest known minimum, or for a quadratic without listed
    minima (a user expression) the value at θ* = p − H⁻¹∇f(p)."""
    if landscape.f_min is not None:
        return landscape.f_min
    form = quadratic_form(landscape)
    if isinstance(form, str):
        return None
    with torch.no_grad():
        point = torch.from_numpy(form[1]).reshape(1, -1)
        value = float(landscape.f(point)[0])
    return value if math.isfinite(value) else None
