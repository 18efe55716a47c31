"""Teaching shapes in 2-D: ravine, bowl, saddle, monkey saddle, plateau, bowl with two dips.

Each factory returns a `Landscape` with analytic gradient and Hessian. Parameters are checked
and rejected (never clamped) when out of range.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from descend.landscapes.base import (
    Landscape,
    Minimum,
    PointFn,
    optimizer_lrs,
    with_refined_minima,
)


def require_finite(name: str, value: float) -> float:
    """``value`` as a float, or ValueError naming the parameter if it is not a finite number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def require_positive(name: str, value: float) -> float:
    """``value`` as a float, or ValueError naming the parameter if it is not finite and > 0."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def stack_hessian2(hxx: Tensor, hxy: Tensor, hyy: Tensor) -> Tensor:
    """(N, 2, 2) symmetric Hessians from their three distinct entries, each (N,)."""
    return torch.stack((torch.stack((hxx, hxy), -1), torch.stack((hxy, hyy), -1)), -2)


def constant_hessian(matrix: list[list[float]]) -> PointFn:
    """A Hessian function returning the same matrix for every point (dtype of the points)."""

    def hessian(p: Tensor) -> Tensor:
        h = torch.tensor(matrix, dtype=p.dtype, device=p.device)
        return h.expand(p.shape[0], *h.shape).clone()

    return hessian


def ravine(
    lam1: float = 1.0,
    lam2: float | None = None,
    kappa: float | None = None,
    angle: float = 0.0,
) -> Landscape:
    """f(p) = ½ pᵀ H p with H = R(θ) diag(λ₁, λ₂) R(θ)ᵀ: a quadratic valley.

    ``lam1``, ``lam2``: curvatures along the valley axes (default λ₂ = 10λ₁); or give ``kappa``
    (λ₂ = κλ₁) instead of ``lam2``. ``angle``: rotation θ in **degrees**, counter-clockwise, of
    the λ₁ axis from the x axis. Condition number κ = λ₂/λ₁; gradient descent converges iff
    0 < lr·λ < 2 for both eigenvalues, fastest at lr = 2/(λ₁ + λ₂).
    """
    lam1 = require_positive("lam1", lam1)
    if lam2 is not None and kappa is not None:
        raise ValueError(f"give lam2 or kappa, not both (got lam2={lam2}, kappa={kappa})")
    if kappa is not None:
        lam2 = lam1 * require_positive("kappa", kappa)
    lam2 = 10.0 * lam1 if lam2 is None else require_positive("lam2", lam2)
    angle = require_finite("angle", angle)
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    h = [
        [lam1 * c * c + lam2 * s * s, (lam1 - lam2) * c * s],
        [(lam1 - lam2) * c * s, lam1 * s * s + lam2 * c * c],
    ]

    def value(p: Tensor) -> Tensor:
        x, y = p[:, 0], p[:, 1]
        return 0.5 * (h[0][0] * x * x + 2 * h[0][1] * x * y + h[1][1] * y * y)

    def grad(p: Tensor) -> Tensor:
        x, y = p[:, 0], p[:, 1]
        return torch.stack((h[0][0] * x + h[0][1] * y, h[1][0] * x + h[1][1] * y), dim=1)

    top = max(lam1, lam2)
    return Landscape(
        name="ravine",
        dim=2,
        value_fn=value,
        grad_fn=grad,
        hessian_fn=constant_hessian(h),
        kernel=("ravine", (h[0][0], h[0][1], h[1][1])),
        domain=((-2.0, 2.0), (-2.0, 2.0)),
        minima=(Minimum((0.0, 0.0), 0.0),),
        starts=((-1.8, 1.2), (1.5, -1.6)),
        contour="linear",
        description=(
            "A quadratic valley with curvatures λ₁ and λ₂ along axes rotated by `angle` degrees. "
            "Large κ = λ₂/λ₁ makes plain gradient descent zig-zag across the valley while "
            "crawling along it; momentum and per-coordinate scaling (when the axes are not "
            "rotated) help."
        ),
        formula="½(λ₁u² + λ₂v²), (u, v) = rotation of (x, y) by −angle",
        default_lrs=optimizer_lrs(sgd=1.0 / top, momentum=1.0 / top, adam=0.05),
        params={"lam1": lam1, "lam2": lam2, "angle": angle},  # κ = lam2 / lam1
    )


def bowl() -> Landscape:
    """f = x² + y²: the round bowl, Hessian 2I, κ = 1."""

    def value(p: Tensor) -> Tensor:
        return (p * p).sum(dim=1)

    return Landscape(
        name="bowl",
        dim=2,
        value_fn=value,
        grad_fn=lambda p: 2 * p,
        hessian_fn=constant_hessian([[2.0, 0.0], [0.0, 2.0]]),
        kernel=("bowl", ()),
        domain=((-2.0, 2.0), (-2.0, 2.0)),
        minima=(Minimum((0.0, 0.0), 0.0),),
        starts=((-1.5, 1.5), (1.8, 0.4)),
        description="The round bowl x² + y²: every direction equally curved, the easy case.",
        formula="x² + y²",
        default_lrs=optimizer_lrs(sgd=0.1, momentum=0.05, adam=0.05, adagrad=0.5),
    )


def saddle() -> Landscape:
    """f = x² − y²: unbounded below, a saddle point at 0 (Hessian diag(2, −2))."""

    def value(p: Tensor) -> Tensor:
        return p[:, 0] ** 2 - p[:, 1] ** 2

    return Landscape(
        name="saddle",
        dim=2,
        value_fn=value,
        grad_fn=lambda p: torch.stack((2 * p[:, 0], -2 * p[:, 1]), dim=1),
        hessian_fn=constant_hessian([[2.0, 0.0], [0.0, -2.0]]),
        kernel=("saddle", ()),
        domain=((-2.0, 2.0), (-2.0, 2.0)),
        starts=((-1.8, 0.01), (1.5, -0.05)),
        description=(
            "x² − y²: no minimum. Started almost on the x axis, gradient descent first slides "
            "towards the saddle at 0 and only slowly escapes along y; Newton's method jumps "
            "straight onto the saddle."
        ),
        formula="x² − y²",
        default_lrs=optimizer_lrs(sgd=0.05, momentum=0.02, adam=0.05),
    )


def monkey_saddle() -> Landscape:
    """f = x³ − 3xy²: a degenerate critical point at 0 (Hessian 0 there), three valleys."""

    def value(p: Tensor) -> Tensor:
        x, y = p[:, 0], p[:, 1]
        return x**3 - 3 * x * y * y

    def grad(p: Tensor) -> Tensor:
        x, y = p[:, 0], p[:, 1]
        return torch.stack((3 * x * x - 3 * y * y, -6 * x * y), dim=1)

    def hessian(p: Tensor) -> Tensor:
        x, y = p[:, 0], p[:, 1]
        return stack_hessian2(6 * x, -6 * y, -6 * x)

    return Landscape(
        name="monkey-saddle",
        dim=2,
        value_fn=value,
        grad_fn=grad,
        hessian_fn=hessian,
        kernel=("monkey-saddle", ()),
        domain=((-1.5, 1.5), (-1.5, 1.5)),
        starts=((1.2, 0.1), (0.5, 1.0)),
        description=(
            "x³ − 3xy²: three ridges and three valleys meet at a flat critical point where the "
            "gradient and the Hessian both vanish; unbounded below."
        ),
        formula="x³ − 3xy²",
        default_lrs=optimizer_lrs(sgd=0.01, momentum=0.005, adam=0.02),
    )


def plateau(width: float = 0.5) -> Landscape:
    """f = 1 − exp(−r²/(2w²)): a narrow well in a plain where the gradient all but vanishes.

    ∇f = e^{−r²/2w²}·p/w², so at r = 2 (w = 0.5) the gradient is ~3e-3: plain SGD stalls while
    sign-like methods (Adam, RMSprop) keep their step size.
    """
    width = require_positive("width", width)
    inv = 1.0 / (width * width)

    def bump(p: Tensor) -> Tensor:
        return torch.exp(-0.5 * inv * (p * p).sum(dim=1))

    def hessian(p: Tensor) -> Tensor:
        e = bump(p)
        x, y = p[:, 0], p[:, 1]
        return stack_hessian2(
            e * inv * (1 - inv * x * x), -e * inv * inv * x * y, e * inv * (1 - inv * y * y)
        )

    return Landscape(
        name="plateau",
        dim=2,
        value_fn=lambda p: 1 - bump(p),
        grad_fn=lambda p: (bump(p) * inv).unsqueeze(1) * p,
        hessian_fn=hessian,
        domain=((-3.0, 3.0), (-3.0, 3.0)),
        minima=(Minimum((0.0, 0.0), 0.0),),
        starts=((1.8, 1.0), (-1.5, -1.5)),
        description=(
            "A narrow Gaussian well in a flat plain. Far from the well the gradient is tiny, so "
            "SGD barely moves; optimizers that divide by a running RMS of the gradient do not "
            "care about its scale and walk in."
        ),
        formula="1 − exp(−(x² + y²)/(2w²))",
        default_lrs=optimizer_lrs(sgd=0.2, momentum=0.05, adam=0.05, adagrad=0.5),
        params={"width": width},
    )


# Two Gaussian dips of different depth on the bowl x² + y²: (centre, depth); common width 0.4.
_DIPS = (((-1.0, 0.0), 2.0), ((1.0, 0.0), 1.0))
_DIP_WIDTH = 0.4


def two_dips() -> Landscape:
    """f = x² + y² − Σₖ aₖ exp(−|p − cₖ|²/(2s²)): a deep dip near (−1, 0), a shallow near (1, 0).

    Depths a = 2 and 1, s = 0.4. The minima (about (−0.854, 0), f ≈ −1.142, and (0.703, 0),
    f ≈ −0.265) are found by Newton's method from the dip centres.
    """
    inv = 1.0 / (_DIP_WIDTH * _DIP_WIDTH)

    def dips(p: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
        """For each dip: a·e (N,), dx (N,), dy (N,) with e = exp(−|p−c|²/2s²)."""
        out = []
        for (cx, cy), depth in _DIPS:
            dx, dy = p[:, 0] - cx, p[:, 1] - cy
            out.append((depth * torch.exp(-0.5 * inv * (dx * dx + dy * dy)), dx, dy))
        return out

    def value(p: Tensor) -> Tensor:
        return (p * p).sum(dim=1) - sum(ae for ae, _, _ in dips(p))

    def grad(p: Tensor) -> Tensor:
        g = 2 * p
        for ae, dx, dy in dips(p):
            g = g + (ae * inv).unsqueeze(1) * torch.stack((dx, dy), dim=1)
        return g

    def hessian(p: Tensor) -> Tensor:
        two = torch.full_like(p[:, 0], 2.0)
        hxx, hxy, hyy = two, torch.zeros_like(two), two
        for ae, dx, dy in dips(p):
            k = ae * inv
            hxx = hxx + k * (1 - inv * dx * dx)
            hxy = hxy - k * inv * dx * dy
            hyy = hyy + k * (1 - inv * dy * dy)
        return stack_hessian2(hxx, hxy, hyy)

    landscape = Landscape(
        name="two-dips",
        dim=2,
        value_fn=value,
        grad_fn=grad,
        hessian_fn=hessian,
        domain=((-2.0, 2.0), (-2.0, 2.0)),
        starts=((1.8, 1.2), (1.2, -1.8), (-0.2, 1.8)),
        description=(
            "A bowl with two dips: a deep one near (−1, 0) and a shallow one near (1, 0). "
            "From the right, gradient descent settles in the shallow dip; enough momentum "
            "carries a run over the ridge into the deep one."
        ),
        formula="x² + y² − 2·exp(−((x+1)² + y²)/0.32) − exp(−((x−1)² + y²)/0.32)",
        default_lrs=optimizer_lrs(sgd=0.05, momentum=0.02, adam=0.05),
    )
    return with_refined_minima(landscape, [centre for centre, _ in _DIPS])
