"""1-D landscapes for the Newton and step-by-step explanation examples.

Points still come as (N, 1) tensors, so the same engine runs them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from descend.landscapes.base import Landscape, Minimum, optimizer_lrs
from descend.landscapes.shapes import require_positive


def quadratic(curvature: float = 1.0) -> Landscape:
    """f = ½ a x², a = ``curvature``; f′ = a x, f″ = a; minimum 0 at 0.

    Gradient descent multiplies x by (1 − lr·a) each step: it converges iff 0 < lr·a < 2, in one
    step at lr = 1/a (which is exactly Newton's step).
    """
    a = require_positive("curvature", curvature)
    return Landscape(
        name="quadratic",
        dim=1,
        value_fn=lambda p: 0.5 * a * p[:, 0] ** 2,
        grad_fn=lambda p: a * p,
        hessian_fn=lambda p: torch.full((p.shape[0], 1, 1), a, dtype=p.dtype, device=p.device),
        kernel=("quadratic", (a,)),
        domain=((-2.0, 2.0),),
        minima=(Minimum((0.0,), 0.0),),
        starts=((1.5,), (-1.8,)),
        description="½ a x²: the one-dimensional model every step-size rule is derived from.",
        formula="½ a x², a = curvature",
        default_lrs=optimizer_lrs(sgd=0.1 / a, momentum=0.05 / a, adam=0.1),
        params={"curvature": a},
    )


def double_well() -> Landscape:
    """f = (x² − 1)²; f′ = 4x³ − 4x, f″ = 12x² − 4; minima 0 at ±1, a local maximum at 0.

    f″ < 0 for |x| < 1/√3, so a pure Newton step there moves uphill, towards the maximum.
    """

    def value(p: Tensor) -> Tensor:
        return (p[:, 0] ** 2 - 1) ** 2

    return Landscape(
        name="double-well",
        dim=1,
        value_fn=value,
        grad_fn=lambda p: 4 * p**3 - 4 * p,
        hessian_fn=lambda p: (12 * p**2 - 4).unsqueeze(-1),
        kernel=("double-well", ()),
        domain=((-2.0, 2.0),),
        minima=(Minimum((-1.0,), 0.0), Minimum((1.0,), 0.0)),
        starts=((0.3,), (-1.8,), (1.9,)),
        description=(
            "(x² − 1)²: two equal wells at ±1 separated by a bump at 0. Where the curvature is "
            "negative (|x| < 0.577) Newton's method heads for the bump."
        ),
        formula="(x² − 1)²",
        default_lrs=optimizer_lrs(sgd=0.02, momentum=0.01, adam=0.05),
    )


def quartic() -> Landscape:
    """f = x⁴; f′ = 4x³, f″ = 12x²; a degenerate minimum 0 at 0 (f″(0) = 0).

    Newton's step is x − 4x³/(12x²) = (2/3)x: only linear convergence, because the minimum is
    not strongly convex. Gradient descent slows down even more as x → 0.
    """
    return Landscape(
        name="quartic",
        dim=1,
        value_fn=lambda p: p[:, 0] ** 4,
        grad_fn=lambda p: 4 * p**3,
        hessian_fn=lambda p: (12 * p**2).unsqueeze(-1),
        kernel=("quartic", ()),
        domain=((-2.0, 2.0),),
        minima=(Minimum((0.0,), 0.0),),
        starts=((1.5,), (-1.0,)),
        description=(
            "x⁴: flat at the bottom. Newton shrinks x by 2/3 per step instead of converging "
            "quadratically; gradient descent crawls."
        ),
        formula="x⁴",
        default_lrs=optimizer_lrs(sgd=0.01, momentum=0.005, adam=0.05),
    )
