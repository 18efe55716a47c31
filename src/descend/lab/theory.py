"""Convergence theory of gradient descent and heavy-ball momentum on quadratics.

For f(w) = ½ wᵀAw − bᵀw with eigenvalues λ₁ ≤ … ≤ λₙ of A (κ = λₙ/λ₁), the error e = w − w*
evolves independently along each eigenvector (Goh, "Why Momentum Really Works", Distill 2017):

* **Gradient descent**, w ← w − α∇f: each component is multiplied by (1 − αλᵢ) per step, so
  GD converges iff 0 < αλᵢ < 2 for every i, with rate max(|1 − αλ₁|, |1 − αλₙ|). The best
  step α* = 2/(λ₁ + λₙ) gives the rate (κ − 1)/(κ + 1).
* **Heavy ball** (Polyak 1964), z ← βz + ∇f, w ← w − αz (torch's momentum form; the EMA form
  v ← βv + (1 − β)g is the same with α replaced by α(1 − β)): each component follows the 2×2
  linear map [[1 + β − αλ, −β], [1, 0]] whose eigenvalues are
  σ = ½(1 + β − αλ ± √((1 + β − αλ)² − 4β)); the rate is max |σ| over the spectrum. It
  converges iff 0 < αλᵢ < 2 + 2β; in the complex-root regime the rate is √β. The best pair
  α* = (2/(√λ₁ + √λₙ))², β* = ((√κ − 1)/(√κ + 1))² gives the rate (√κ − 1)/(√κ + 1).
* **Nesterov** in torch's form (v ← βv + g, w ← w − α(g + βv)) has the per-component map
  [[(1 + β)(1 − αλ), −β(1 − αλ)], [1, 0]] on (w_t, w_{t−1}); it converges iff
  0 < αλ < (2 + 2β)/(1 + 2β).

"Rate" is the asymptotic factor r with ‖e_t‖ ≈ C·rᵗ (up to a polynomial factor t when the roots
coincide, as at the heavy ball's optimum). ``steps_to_reduce(r, 1e-6)`` = ⌈ln 10⁻⁶ / ln r⌉.
"""

from __future__ import annotations

import cmath
import math
from collections.abc import Iterable

import numpy as np


def _spectrum(lam_min: float, lam_max: float) -> tuple[float, float]:
    lam_min, lam_max = float(lam_min), float(lam_max)
    if not (math.isfinite(lam_min) and lam_min > 0):
        raise ValueError(f"lam_min={lam_min!r} is invalid: it must be a finite number > 0")
    if not (math.isfinite(lam_max) and lam_max >= lam_min):
        raise ValueError(
            f"lam_max={lam_max!r} is invalid: it must be finite and ≥ lam_min={lam_min!r}"
        )
    return lam_min, lam_max


def _eigenvalues(eigenvalues: float | Iterable[float]) -> list[float]:
    values = [float(eigenvalues)] if np.ndim(eigenvalues) == 0 else [float(v) for v in eigenvalues]
    if not values or any(not math.isfinite(v) for v in values):
        raise ValueError(f"eigenvalues must be finite numbers, got {eigenvalues!r}")
    return values


def condition_number(lam_min: float, lam_max: float) -> float:
    """κ = λₙ / λ₁."""
    lam_min, lam_max = _spectrum(lam_min, lam_max)
    return lam_max / lam_min


# -- gradient descent --------------------------------------------------------------------------
def gd_rate(alpha: float, eigenvalues: float | Iterable[float]) -> float:
    """max |1 − αλ| over the eigenvalues: the per-step error factor of gradient descent."""
    return max(abs(1.0 - alpha * lam) for lam in _eigenvalues(eigenvalues))


def gd_optimal(lam_min: float, lam_max: float) -> tuple[float, float]:
    """(α*, rate) = (2/(λ₁ + λₙ), (κ − 1)/(κ + 1))."""
    lam_min, lam_max = _spectrum(lam_min, lam_max)
    kappa = lam_max / lam_min
    return 2.0 / (lam_min + lam_max), (kappa - 1.0) / (kappa + 1.0)


def gd_max_lr(lam_max: float) -> float:
    """The stability edge of gradient descent: α < 2/λₙ."""
    _spectrum(lam_max, lam_max)
    return 2.0 / lam_max


# -- heavy ball ---------------------------------------------------------------------------------
def heavy_ball_roots(alpha: float, beta: float, lam: float) -> tuple[complex, complex]:
    """σ₁,₂ = ½(1 + β − αλ ± √((1 + β − αλ)² − 4β)), the eigenvalues of one component's map."""
    a = 1.0 + beta - alpha * lam
    root = cmath.sqrt(a * a - 4.0 * beta)
    return (a + root) / 2.0, (a - root) / 2.0


def heavy_ball_rate(alpha: float, beta: float, eigenvalues: float | Iterable[float]) -> float:
    """max |σ| over the eigenvalues (see :func:`heavy_ball_roots`)."""
    return max(
        abs(s) for lam in _eigenvalues(eigenvalues) for s in heavy_ball_roots(alpha, beta, lam)
    )


def heavy_ball_optimal(lam_min: float, lam_max: float) -> tuple[float, float, float]:
    """(α*, β*, rate) = ((2/(√λ₁ + √λₙ))², ((√κ − 1)/(√κ + 1))², (√κ − 1)/(√κ + 1))."""
    lam_min, lam_max = _spectrum(lam_min, lam_max)
    s1, sn = math.sqrt(lam_min), math.sqrt(lam_max)
    rate = (sn - s1) / (sn + s1)
    return (2.0 / (s1 + sn)) ** 2, rate**2, rate


def heavy_ball_max_lr(lam_max: float, beta: float) -> float:
    """The stability edge of heavy ball: α < (2 + 2β)/λₙ."""
    _spectrum(lam_max, lam_max)
    return (2.0 + 2.0 * beta) / lam_max


def critical_beta(alpha: float, lam: float) -> float:
    """Critical damping β = (1 − √(αλ))², where the two roots meet and the rate is 1 − √(αλ)."""
    return (1.0 - math.sqrt(alpha * lam)) ** 2


# -- Nesterov (torch form) ----------------------------------------------------------------------
def nesterov_rate(alpha: float, beta: float, eigenvalues: float | Iterable[float]) -> float:
    """Spectral radius of [[(1 + β)(1 − αλ), −β(1 − αλ)], [1, 0]], maximised over λ."""
    worst = 0.0
    for lam in _eigenvalues(eigenvalues):
        q = 1.0 - alpha * lam
        a = (1.0 + beta) * q
        root = cmath.sqrt(a * a - 4.0 * beta * q)
        worst = max(worst, abs((a + root) / 2.0), abs((a - root) / 2.0))
    return worst


def nesterov_max_lr(lam_max: float, beta: float) -> float:
    """The stability edge of Nesterov momentum: α < (2 + 2β)/((1 + 2β)λₙ)."""
    _spectrum(lam_max, lam_max)
    return (2.0 + 2.0 * beta) / ((1.0 + 2.0 * beta) * lam_max)


# -- helpers ------------------------------------------------------------------------------------
def steps_to_reduce(rate: float, factor: float = 1e-6) -> int:
    """Steps for the error to shrink by ``factor`` at a constant ``rate``: ⌈ln factor / ln r⌉."""
    if not 0.0 < factor < 1.0:
        raise ValueError(f"factor={factor!r} is invalid: it must be in (0, 1)")
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"rate={rate!r} is invalid: only a rate in [0, 1) converges")
    if rate == 0.0:
        return 1
    return math.ceil(math.log(factor) / math.log(rate))


def max_lr(optimizer: str, lam_max: float, momentum: float = 0.0) -> float | None:
    """The largest stable learning rate of a named optimizer on a quadratic with top
    eigenvalue λₙ, or None where the theory here does not apply (adaptive methods).

    sgd: 2/λₙ; momentum (torch form): (2 + 2β)/λₙ; momentum-ema: (2 + 2β)/((1 − β)λₙ);
    nesterov: (2 + 2β)/((1 + 2β)λₙ).
    """
    if optimizer == "sgd" or (optimizer == "momentum" and momentum == 0):
        return gd_max_lr(lam_max)
    if optimizer == "momentum":
        return heavy_ball_max_lr(lam_max, momentum)
    if optimizer == "momentum-ema":
        return heavy_ball_max_lr(lam_max, momentum) / (1.0 - momentum)
    if optimizer == "nesterov":
        return nesterov_max_lr(lam_max, momentum)
    return None


def measured_rate(errors: np.ndarray, t1: int, t2: int) -> float:
    """(e_{t2}/e_{t1})^{1/(t2 − t1)}: the average per-step error factor between two steps."""
    if not 0 <= t1 < t2 < len(errors):
        raise ValueError(f"need 0 ≤ t1 < t2 < {len(errors)}, got t1={t1}, t2={t2}")
    return float((errors[t2] / errors[t1]) ** (1.0 / (t2 - t1)))
