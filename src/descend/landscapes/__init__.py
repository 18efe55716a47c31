"""Test functions for optimizers, evaluated on batches of points.

    >>> from descend import landscapes
    >>> ls = landscapes.get("rosenbrock")
    >>> ls.f(points)            # (N,) values for points of shape (N, 2)
    >>> ls.grad(points)         # (N, 2), analytic or autograd
    >>> ls.hessian(points)      # (N, 2, 2)
    >>> landscapes.get("ravine", kappa=50, angle=30)
    >>> landscapes.get("expr:x**2 + 10*sin(y)")
    >>> landscapes.Noisy(ls, batch_size=8).grad(points, step, seeds)

Modules: `base` (the Landscape record, autograd fallbacks, nearest_minimum), `shapes` (ravine,
bowl, saddles, plateau, two dips), `classic` (Rosenbrock … Goldstein–Price), `one_d`, `noise`
(reproducible mini-batch gradient noise), `expr` (safe expression parser), `registry`.
"""

from descend.landscapes.base import Landscape, Minimum, nearest_minimum
from descend.landscapes.expr import Expression, ExpressionError, parse_expression
from descend.landscapes.noise import Noisy, noisy_grad, philox4x32, standard_normal
from descend.landscapes.registry import from_expression, get, names, parameters

__all__ = [
    "Expression",
    "ExpressionError",
    "Landscape",
    "Minimum",
    "Noisy",
    "from_expression",
    "get",
    "names",
    "nearest_minimum",
    "noisy_grad",
    "parameters",
    "parse_expression",
    "philox4x32",
    "standard_normal",
]
