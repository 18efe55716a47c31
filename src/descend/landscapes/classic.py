"""Classic 2-D optimisation test functions (SFU virtual library; Wikipedia "Test functions for
optimization"): Rosenbrock, Beale, Booth, Himmelblau, Rastrigin, Ackley, six-hump camel,
Goldstein–Price.

Minima other than the exact ones (0 at (1, 1) and so on) are polished by Newton's method in
float64 from rounded published locations, so every listed minimum has zero gradient to ~1e-9.
Goldstein–Price relies on autograd; the others have analytic gradients.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

from descend.landscapes.base import Landscape, Minimum, optimizer_lrs, with_refined_minima
from descend.landscapes.shapes import (
    constant_hessian,
    require_finite,
    require_positive,
    stack_hessian2,
)

TWO_PI = 2.0 * math.pi


def rosenbrock(a: float = 1.0, b: float = 100.0) -> Landscape:
    """f = (a − x)² + b(y − x²)²; minimum 0 at (a, a²).

    ∇f = (−2(a − x) − 4bx(y − x²), 2b(y − x²));
    H = [[2 − 4by + 12bx², −4bx], [−4bx, 2b]]. At (1, 1) with b = 100 its eigenvalues are
    ≈ 0.399 and ≈ 1001.6 (κ ≈ 2508).
    """
    a = require_finite("a", a)
    b = require_positive("b", b)

    def value(p: Tensor) -> Tensor:
        x, y = p[:, 0], p[:, 1]
        return (a - x) ** 2 + b * (y - x * x) ** 2

    # Gradient and value written op by op into their outputs (no (N,) temporaries stacked
    # afterwards): at 100,000 points the stacked form cost ~1.5× as much. r = y − x², u = a − x.
    def _grad_into(p: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x, y = p[:, 0], p[:, 1]
        g = torch.empty_like(p)
        r = torch.addcmul(y, x, x, value=-1)
        u = torch.rsub(x, a)
        torch.mul(r, 2 * b, out=g[:, 1])  # ∂f/∂y = 2b·r
        gx = torch.mul(x, r, out=g[:, 0])
        gx.mul_(-4 * b).sub_(u, alpha=2)  # ∂f/∂x = −4b·x·r − 2u
        return g, r, u

    def grad(p: Tensor) -> Tensor:
        return _grad_into(p)[0]

    def value_and_grad(p: Tensor) -> tuple[Tensor, Tensor]:
        g, r, u = _grad_into(p)
        f = torch.mul(r, r).mul_(b).addcmul_(u, u)  # b·r² + u², sharing r and u
        return f, g

    def hessian(p: Tensor) -> Tensor:
        x, y = p[:, 0], p[:, 1]
        return stack_hessian2(2 - 4 * b * y + 12 * b * x * x, -4 * b * x, torch.full_like(x, 2 * b))

    return Landscape(
        name="rosenbrock",
        dim=2,
        value_fn=value,
        grad_fn=grad,
        hessian_fn=hessian,
        value_and_grad_fn=value_and_grad,
        kernel=("rosenbrock", (a, b)),
        domain=((-2.0, 2.0), (-1.0, 3.0)),
        minima=(Minimum((a, a * a), 0.0),),
        starts=((-1.2, 1.0), (0.0, 2.5), (1.5, 1.5)),
        contour="log",
        description=(
            "Rosenbrock's banana: a curved, flat-bottomed valley. Finding the valley is easy; "
            "following it to (1, 1) is slow, because the Hessian there has κ ≈ 2500."
        ),
        formula="(a − x)² + b(y − x²)², a = 1, b = 100",
        default_lrs=optimizer_lrs(sgd=1e-3, momentum=1e-3, adam=0.05),
        params={"a": a, "b": b},
    )


_BEALE_C = (1.5, 2.25, 2.625)


def beale() -> Landscape:
    """f = Σᵢ₌₁³ (cᵢ − x + xyⁱ)², c = (1.5, 2.25, 2.625); minimum 0 at (3, 0.5).

    With tᵢ = cᵢ − x + xyⁱ: ∂f/∂x = Σ 2tᵢ(yⁱ − 1), ∂f/∂y = Σ 2tᵢ·i·x·yⁱ⁻¹.
    """

    def value(p: Tensor) -> Tensor:
        x, y = p[:, 0], p[:, 1]
        return sum((c - x + x * y**i) ** 2 for i, c in enumerate(_BEALE_C, start=1))

    def grad(p: Tensor) -> Tensor:
        x, y = p[:, 0], p[:, 1]
        gx = torch.zeros_like(x)
        gy = torch.zeros_like(x)
        for i, c in enumerate(_BEALE_C, start=1):
            t = c - x + x * y**i
            gx = gx + 2 * t * (y**i - 1)
            gy = gy + 2 * t * i * x * y ** (i - 1)
        return torch.stack((gx, gy), dim=1)

    return Landscape(
        name="beale",
        dim=2,
        value_fn=value,
        grad_fn=grad,
        kernel=("beale", ()),
        domain=((-4.5, 4.5), (-4.5, 4.5)),
        minima=(Minimum((3.0, 0.5), 0.0),),
        starts=((1.0, 1.5), (-1.0, -1.0), (2.0, -1.5)),
        contour="log",
        description=(
            "Beale's function: flat plains and sharp ridges near the corners (the y³ term); "
            "the minimum at (3, 0.5) sits at the end of a narrow curved valley."
        ),
        formula="(1.5 − x + xy)² + (2.25 − x + xy²)² + (2.625 − x + xy³)²",
        default_lrs=optimizer_lrs(sgd=1e-3, momentum=5e-4, adam=0.02),
    )


def booth() -> Landscape:
    """f = (x + 2y − 7)² + (2x + y − 5)²; minimum 0 at (1, 3).

    ∇f = (10x + 8y − 34, 8x + 10y − 38), H = [[10, 8], [8, 10]] with eigenvalues 2 and 18
    (κ = 9).
    """

    def value(p: Tensor) -> Tensor:
        x, y = p[:, 0], p[:, 1]
        return (x + 2 * y - 7) ** 2 + (2 * x + y - 5) ** 2

    def grad(p: Tensor) -> Tensor:
        x, y = p[:, 0], p[:, 1]
        return torch.stack((10 * x + 8 * y - 34, 8 * x + 10 * y - 38), dim=1)

    return Landscape(
        name="booth",
        dim=2,
        value_fn=value,
        grad_fn=grad,
        hessian_fn=constant_hessian([[10.0, 8.0], [8.0, 10.0]]),
        kernel=("booth", ()),
        domain=((-10.0, 10.0), (-10.0, 10.0)),
        minima=(Minimum((1.0, 3.0), 0.0),),
        starts=((-8.0, -8.0), (8.0, -6.0), (-6.0, 9.0)),
        contour="log",
        description="Booth's function: a tilted elliptic bowl (κ = 9) centred at (1, 3).",
        formula="(x + 2y − 7)² + (2x + y − 5)²",
        default_lrs=optimizer_lrs(sgd=0.05, momentum=0.02, adam=0.5, adagrad=5.0),
    )


_HIMMELBLAU_MINIMA = (
    (3.0, 2.0), (-2.805118, 3.131312), (-3.779310, -3.283186), (3.584428, -1.848126),
)  # fmt: skip


def himmelblau() -> Landscape:
    """f = (x² + y − 11)² + (x + y² − 7)²; four minima of value 0 (see ``minima``).

    With a = x² + y − 11, b = x + y² − 7: ∇f = (4xa + 2b, 2a + 4yb),
    H = [[12x² + 4y − 42, 4x + 4y], [4x + 4y, 4x + 12y² − 26]].
    """

    def value(p: Tensor) -> Tensor:
        x, y = p[:, 0], p[:, 1]
        return (x * x + y - 11) ** 2 + (x + y * y - 7) ** 2

    def grad(p: Tensor) -> Tensor:
        x, y = p[:, 0], p[:, 1]
        a, b = x * x + y - 11, x + y * y - 7
        return torch.stack((4 * x * a + 2 * b, 2 * a + 4 * y * b), dim=1)

    def hessian(p: Tensor) -> Tensor:
        x, y = p[:, 0], p[:, 1]
        return stack_hessian2(12 * x * x + 4 * y - 42, 4 * x + 4 * y, 4 * x + 12 * y * y - 26)

    landscape = Landscape(
        name="himmelblau",
        dim=2,
        value_fn=value,
        grad_fn=grad,
        hessian_fn=hessian,
        kernel=("himmelblau", ()),
        domain=((-5.0, 5.0), (-5.0, 5.0)),
        starts=((0.0, 0.0), (-1.0, 4.5), (1.0, -4.5)),
        contour="log",
        description=(
            "Himmelblau's function: four equal minima around a local maximum near "
            "(−0.27, −0.92). Which one a run reaches depends on where it starts and on the "
            "optimizer: a good first landscape for basin maps."
        ),
        formula="(x² + y − 11)² + (x + y² − 7)²",
        default_lrs=optimizer_lrs(sgd=0.01, momentum=2e-3, adam=0.1),
    )
    return with_refined_minima(landscape, _HIMMELBLAU_MINIMA)


def rastrigin(amplitude: float = 10.0) -> Landscape:
    """f = 2A + Σᵢ (xᵢ² − A cos 2πxᵢ), A = ``amplitude`` (10); global minimum 0 at (0, 0).

    ∂f/∂xᵢ = 2xᵢ + 2πA sin 2πxᵢ; H = diag(2 + 4π²A cos 2πxᵢ). Local minima sit near every
    integer point; the 121 inside the domain are listed (found by Newton from the lattice).
    """
    amp = require_positive("amplitude", amplitude)

    def value(p: Tensor) -> Tensor:
        return 2 * amp + (p * p - amp * torch.cos(TWO_PI * p)).sum(dim=1)

    def hessian(p: Tensor) -> Tensor:
        return torch.diag_embed(2 + TWO_PI * TWO_PI * amp * torch.cos(TWO_PI * p))

    landscape = Landscape(
        name="rastrigin",
        dim=2,
        value_fn=value,
        grad_fn=lambda p: 2 * p + TWO_PI * amp * torch.sin(TWO_PI * p),
        hessian_fn=hessian,
        domain=((-5.12, 5.12), (-5.12, 5.12)),
        starts=((4.3, 4.6), (-3.2, 2.7), (2.4, -3.6)),
        description=(
            "Rastrigin's function: a bowl covered in an egg-crate of local minima, one near "
            "each integer point. Small steps stop in the nearest dimple; large or noisy steps "
            "hop between them."
        ),
        formula="20 + Σ(xᵢ² − 10 cos 2πxᵢ)",
        default_lrs=optimizer_lrs(sgd=2e-3, momentum=5e-4, adam=0.05),
        params={"amplitude": amp},
    )
    lattice = list(itertools.product(range(-5, 6), repeat=2))
    return with_refined_minima(landscape, lattice)


def _safe_norm(p: Tensor) -> tuple[Tensor, Tensor]:
    """r = √(mean xᵢ²) and the mask r > 0, differentiable everywhere (gradient 0 at r = 0).

    Both branches of the ``where`` are finite, so autograd never multiplies 0 by inf.
    """
    s = (p * p).mean(dim=1)
    positive = s > 0
    r = torch.where(positive, torch.sqrt(torch.where(positive, s, torch.ones_like(s))), 0.0)
    return r, positive


def ackley() -> Landscape:
    """f = −20 exp(−0.2 r) − exp(½ Σ cos 2πxᵢ) + 20 + e, r = √(½(x² + y²)); minimum 0 at 0.

    ∂f/∂xᵢ = 4 e^{−0.2r}·xᵢ/(2r) + π e^{½Σcos 2πxⱼ} sin 2πxᵢ. The cone term has a cusp at the
    origin (no derivative there); value, gradient and Hessian treat that term's derivatives as
    0 at r = 0, so everything stays finite and (0, 0) is a stationary point. Local minima near
    the integer points of the domain (121 of them) are listed after the global one.
    """

    def value(p: Tensor) -> Tensor:
        # Written with expm1 so that f(0) is exactly 0: −20(e^{−0.2r} − 1) − e(e^{c̄ − 1} − 1).
        r, _ = _safe_norm(p)
        mean_cos = torch.cos(TWO_PI * p).mean(dim=1)
        return -20 * torch.expm1(-0.2 * r) - math.e * torch.expm1(mean_cos - 1)

    def grad(p: Tensor) -> Tensor:
        r, positive = _safe_norm(p)
        dim = p.shape[1]
        cone = 4 * torch.exp(-0.2 * r) / (dim * torch.where(positive, r, 1))
        scale = torch.where(positive, cone, 0)
        ripple = torch.exp(torch.cos(TWO_PI * p).mean(dim=1))
        return scale.unsqueeze(1) * p + (TWO_PI / dim * ripple).unsqueeze(1) * torch.sin(TWO_PI * p)

    landscape = Landscape(
        name="ackley",
        dim=2,
        value_fn=value,
        grad_fn=grad,
        domain=((-5.0, 5.0), (-5.0, 5.0)),
        starts=((-4.2, 3.6), (3.3, -4.1), (1.6, 2.3)),
        description=(
            "Ackley's function: a nearly flat, rippled outer region around a deep funnel with a "
            "cusp at the origin. Local minima sit near every integer point."
        ),
        formula="−20 exp(−0.2 √(½(x² + y²))) − exp(½(cos 2πx + cos 2πy)) + 20 + e",
        default_lrs=optimizer_lrs(sgd=0.01, momentum=2e-3, adam=0.05),
    )
    # (0, 0) is a fixed point of Newton here: the gradient there is exactly 0 by construction.
    return with_refined_minima(landscape, list(itertools.product(range(-5, 6), repeat=2)))


# Published rounded locations: 2 global, then local minima (refined by Newton at build time).
_CAMEL_GUESSES = (
    (0.0898, -0.7126), (-0.0898, 0.7126), (-1.7036, 0.7961), (1.7036, -0.7961),
    (1.6071, 0.5687), (-1.6071, -0.5687),
)  # fmt: skip


def six_hump_camel() -> Landscape:
    """f = (4 − 2.1x² + x⁴/3)x² + xy + (−4 + 4y²)y²; global minimum ≈ −1.0316 at ±(0.0898, −0.7126).

    ∇f = (8x − 8.4x³ + 2x⁵ + y, x − 8y + 16y³); H = [[8 − 25.2x² + 10x⁴, 1], [1, −8 + 48y²]].
    Six local minima, two of them global.
    """

    def value(p: Tensor) -> Tensor:
        x, y = p[:, 0], p[:, 1]
        x2, y2 = x * x, y * y
        return (4 - 2.1 * x2 + x2 * x2 / 3) * x2 + x * y + (-4 + 4 * y2) * y2

    def grad(p: Tensor) -> Tensor:
        x, y = p[:, 0], p[:, 1]
        return torch.stack((8 * x - 8.4 * x**3 + 2 * x**5 + y, x - 8 * y + 16 * y**3), dim=1)

    def hessian(p: Tensor) -> Tensor:
        x, y = p[:, 0], p[:, 1]
        return stack_hessian2(8 - 25.2 * x * x + 10 * x**4, torch.ones_like(x), -8 + 48 * y * y)

    landscape = Landscape(
        name="six-hump-camel",
        dim=2,
        value_fn=value,
        grad_fn=grad,
        hessian_fn=hessian,
        kernel=("six-hump-camel", ()),
        domain=((-3.0, 3.0), (-2.0, 2.0)),
        starts=((-2.0, 1.5), (2.0, -1.5), (0.5, 1.8)),
        description=(
            "The six-hump camel: six local minima, two of them global (≈ −1.0316) near the "
            "centre; steep walls from the x⁶ term."
        ),
        formula="(4 − 2.1x² + x⁴/3)x² + xy + (−4 + 4y²)y²",
        default_lrs=optimizer_lrs(sgd=0.01, momentum=2e-3, adam=0.05),
    )
    return with_refined_minima(landscape, _CAMEL_GUESSES)


def goldstein_price() -> Landscape:
    """Goldstein–Price: f = [1 + (x+y+1)²(19 − 14x + 3x² − 14y + 6xy + 3y²)]
    × [30 + (2x − 3y)²(18 − 32x + 12x² + 48y − 36xy + 27y²)]; global minimum 3 at (0, −1).

    Values span 3 … ~1e6 on the domain, so contours are logarithmic. Gradient and Hessian by
    autograd. Three local minima (≈ 30 at (−0.6, −0.4), ≈ 84 at (1.8, 0.2), ≈ 840 at
    (1.2, 0.8)) are listed after the global one.
    """

    def value(p: Tensor) -> Tensor:
        x, y = p[:, 0], p[:, 1]
        first = 1 + (x + y + 1) ** 2 * (19 - 14 * x + 3 * x * x - 14 * y + 6 * x * y + 3 * y * y)
        second = 30 + (2 * x - 3 * y) ** 2 * (
            18 - 32 * x + 12 * x * x + 48 * y - 36 * x * y + 27 * y * y
        )
        return first * second

    landscape = Landscape(
        name="goldstein-price",
        dim=2,
        value_fn=value,
        kernel=("goldstein-price", ()),
        domain=((-2.0, 2.0), (-2.0, 2.0)),
        starts=((-1.5, 0.5), (1.5, 1.5), (1.0, -1.8)),
        contour="log",
        description=(
            "Goldstein–Price: values from 3 to about a million on [−2, 2]², a deep narrow "
            "global minimum at (0, −1) and three shallower local minima."
        ),
        formula="[1 + (x+y+1)²(19−14x+3x²−14y+6xy+3y²)]·[30 + (2x−3y)²(18−32x+12x²+48y−36xy+27y²)]",
        default_lrs=optimizer_lrs(sgd=2e-6, momentum=5e-7, adam=0.01),
    )
    guesses = ((0.0, -1.0), (-0.6, -0.4), (1.8, 0.2), (1.2, 0.8))
    return with_refined_minima(landscape, guesses)
