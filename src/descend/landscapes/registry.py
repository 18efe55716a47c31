"""Look landscapes up by name, or build one from an expression.

``get(name, **params)`` resolves, in this order:

1. a registered name (case-insensitive; ``_`` and ``-`` are interchangeable), built with
   ``params`` (each factory documents its parameters, e.g. ``get("ravine", kappa=50, angle=30)``);
2. ``"expr:<text>"``: a user expression, e.g. ``get("expr:x**2 + 10*sin(y)")``;
3. any other text that is not a bare word (it contains an operator, digit, parenthesis, ...)
   is also read as an expression, e.g. ``get("x**2 + y**2")``.

A bare word that is not registered (``"rosenbrok"``) is an error that lists the valid names;
write ``"expr:x"`` for the expression made of a single variable.
Expression parameters: ``dim`` (default: the highest variable used), ``domain`` (one (lo, hi)
for every coordinate, or a list of them; default (−2, 2)), ``starts``, ``contour``.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable, Sequence
from typing import Any

from descend.landscapes import classic, one_d, shapes
from descend.landscapes.base import Landscape, optimizer_lrs
from descend.landscapes.expr import parse_expression

_FACTORIES: dict[str, Callable[..., Landscape]] = {
    "ravine": shapes.ravine,
    "bowl": shapes.bowl,
    "rosenbrock": classic.rosenbrock,
    "beale": classic.beale,
    "booth": classic.booth,
    "himmelblau": classic.himmelblau,
    "rastrigin": classic.rastrigin,
    "ackley": classic.ackley,
    "six-hump-camel": classic.six_hump_camel,
    "goldstein-price": classic.goldstein_price,
    "saddle": shapes.saddle,
    "monkey-saddle": shapes.monkey_saddle,
    "plateau": shapes.plateau,
    "two-dips": shapes.two_dips,
    "quadratic": one_d.quadratic,
    "double-well": one_d.double_well,
    "quartic": one_d.quartic,
}
_DIMS = {name: 1 if name in ("quadratic", "double-well", "quartic") else 2 for name in _FACTORIES}
EXPR_PREFIX = "expr:"
_BARE_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]*(-[A-Za-z0-9_]+)*")


def names(dim: int | None = None) -> list[str]:
    """Registered landscape names, in registry order; only those of dimension ``dim`` if given."""
    return [name for name in _FACTORIES if dim is None or _DIMS[name] == dim]


def parameters(name: str) -> dict[str, Any]:
    """The parameters of a registered landscape and their defaults."""
    factory = _FACTORIES[_canonical(name)]
    return {p.name: p.default for p in inspect.signature(factory).parameters.values()}


def _canonical(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    if key not in _FACTORIES:
        raise ValueError(_unknown_message(name))
    return key


def _unknown_message(name: str) -> str:
    close = difflib.get_close_matches(name.strip().lower().replace("_", "-"), list(_FACTORIES))
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return (
        f"unknown landscape {name!r}.{hint} Valid names: {', '.join(_FACTORIES)}; "
        f"or an expression such as 'expr:x**2 + 10*sin(y)'"
    )


def get(name: str, **params: Any) -> Landscape:
    """The landscape called ``name`` (see the module docstring for the lookup rules)."""
    if not isinstance(name, str):
        raise ValueError(f"landscape name must be a string, got {type(name).__name__}")
    key = name.strip().lower().replace("_", "-")
    if key in _FACTORIES:
        _check_params(key, _FACTORIES[key], params)
        return _FACTORIES[key](**params)
    text = name.strip()
    if text.startswith(EXPR_PREFIX):
        text = text[len(EXPR_PREFIX) :]
    elif _BARE_WORD.fullmatch(text):
        raise ValueError(_unknown_message(name))
    _check_params("expr:…", from_expression, params, skip=("text",))
    return from_expression(text, **params)


def _check_params(
    label: str, factory: Callable[..., Landscape], params: dict[str, Any], skip: tuple = ()
) -> None:
    accepted = [p for p in inspect.signature(factory).parameters if p not in skip]
    for param in params:
        if param not in accepted:
            listing = ", ".join(accepted) if accepted else "none"
            raise ValueError(
                f"landscape {label!r} has no parameter {param!r}; its parameters: {listing}"
            )


def _domain(
    domain: Sequence[float] | Sequence[Sequence[float]], dim: int
) -> tuple[tuple[float, float], ...]:
    try:
        entries = list(domain)
        if len(entries) == 2 and all(isinstance(v, int | float) for v in entries):
            entries = [entries] * dim
        box = tuple((float(lo), float(hi)) for lo, hi in entries)
    except (TypeError, ValueError):
        box = ()
    if len(box) != dim:
        raise ValueError(f"domain must be (lo, hi) or {dim} such pairs, got {domain!r}")
    return box


def from_expression(
    text: str,
    dim: int | None = None,
    domain: Sequence[float] | Sequence[Sequence[float]] = (-2.0, 2.0),
    starts: Sequence[Sequence[float]] | None = None,
    contour: str = "linear",
) -> Landscape:
    """A landscape from a user expression; gradient and Hessian by autograd.

    Nothing is known about its minima (``minima`` is empty). The default starts sit at 20% and
    80% across the domain; the default learning rates are generic guesses (SGD 0.01, Adam 1% of
    the mean domain width), since the curvature is unknown.
    """
    expression = parse_expression(text)
    if dim is None:
        dim = expression.dim
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < expression.dim:
        raise ValueError(
            f"dim must be an integer >= {expression.dim} (the variables used), got {dim!r}"
        )
    box = _domain(domain, dim)
    if starts is None:
        fractions = [(0.2, 0.8), (0.8, 0.3)]
        starts = [
            tuple(lo + (a if i % 2 == 0 else b) * (hi - lo) for i, (lo, hi) in enumerate(box))
            for a, b in fractions
        ]
    try:
        starts = tuple(tuple(float(v) for v in s) for s in starts)
    except (TypeError, ValueError):
        raise ValueError(f"starts must be a list of points, got {starts!r}") from None
    width = sum(hi - lo for lo, hi in box) / dim
    return Landscape(
        name=EXPR_PREFIX + expression.text,
        dim=dim,
        value_fn=expression,
        domain=box,
        starts=starts,
        contour=contour,
        description=f"User expression {expression.text!r} (gradient and Hessian by autograd).",
        formula=expression.text,
        default_lrs=optimizer_lrs(sgd=0.01, momentum=0.005, adam=0.01 * width),
        params={"dim": dim},
    )
