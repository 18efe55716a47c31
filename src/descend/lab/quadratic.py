"""Exact results on noisy quadratics that the report's claims are checked against.

f(w) = ½ Σᵢ λᵢ uᵢ² in the eigenbasis (u = the coordinates of w along A's eigenvectors). With
the DeepOBS gradient noise ∇f + ξ̄, ξ̄ ~ N(0, σ²I/B) (isotropic, so the same in every basis),
SGD with learning rates α₀, α₁, … moves each component as uᵢ ← (1 − αₜλᵢ)uᵢ − αₜξ̄ᵢ. The
moments follow exactly:

    E[uᵢ]   ← (1 − αₜλᵢ) E[uᵢ]
    E[uᵢ²]  ← (1 − αₜλᵢ)² E[uᵢ²] + αₜ² σ²/B,     E[f] = ½ Σᵢ λᵢ E[uᵢ²].

At a constant α with every αλᵢ < 2 the second moment settles at E[uᵢ²] = ασ²/(Bλᵢ(2 − αλᵢ)),
the **noise floor** E[f] = ασ²/(2B) · Σᵢ 1/(2 − αλᵢ); at αλᵢ ≥ 2 for some i it diverges.

Also here: the optimally tuned Nesterov momentum (torch form) on a quadratic, found by
minimising the closed-form rate of :func:`descend.lab.theory.nesterov_rate` over (α, β), and
"steps to a tolerance" read from a recorded loss curve in the two ways that differ when a run
rebounds (first crossing, and the step from which it stays below).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence

import numpy as np

from . import theory


def _eigs(eigenvalues: float | Iterable[float]) -> np.ndarray:
    lam = np.atleast_1d(np.asarray(eigenvalues, dtype=float))
    if lam.size == 0 or not np.all(np.isfinite(lam)) or np.any(lam <= 0):
        raise ValueError(f"eigenvalues must be finite numbers > 0, got {eigenvalues!r}")
    return lam


def noise_floor(
    lr: float, eigenvalues: float | Iterable[float], sigma: float = 1.0, batch: int = 1
) -> float:
    """ασ²/(2B) · Σᵢ 1/(2 − αλᵢ): the stationary E[f] of constant-lr SGD with gradient noise
    N(0, σ²/B) per coordinate; ``inf`` when αλᵢ ≥ 2 for some i (SGD diverges)."""
    lam = _eigs(eigenvalues)
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr={lr!r} is invalid: it must be a finite number > 0")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch={batch!r} is invalid: it must be an integer ≥ 1")
    if np.any(lr * lam >= 2.0):
        return math.inf
    return float(lr * sigma**2 / (2.0 * batch) * np.sum(1.0 / (2.0 - lr * lam)))


def expected_sgd_loss(
    lrs: Sequence[float] | np.ndarray,
    eigenvalues: float | Iterable[float],
    start: Sequence[float],
    sigma: float = 1.0,
    batch: int = 1,
) -> np.ndarray:
    """E[f(w_t)] for t = 0 … T of SGD with step sizes ``lrs`` (length T) from ``start`` (the
    coordinates along the eigenvectors), exactly, by the moment recursion above.

    ``lrs`` may also be a 2-D array (K, T): K schedules at once, result (K, T + 1).
    """
    lam = _eigs(eigenvalues)
    u0 = np.asarray(start, dtype=float)
    if u0.shape != lam.shape:
        raise ValueError(f"start needs {lam.size} coordinates, got {u0.shape}")
    a = np.asarray(lrs, dtype=float)
    single = a.ndim == 1
    a = np.atleast_2d(a)
    var = sigma**2 / batch
    second = np.broadcast_to(u0**2, (a.shape[0], lam.size)).copy()
    out = np.empty((a.shape[0], a.shape[1] + 1))
    out[:, 0] = 0.5 * second @ lam
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(a.shape[1]):
            at = a[:, t : t + 1]
            second = (1.0 - at * lam) ** 2 * second + at**2 * var
            out[:, t + 1] = 0.5 * second @ lam
    out[~np.isfinite(out)] = np.inf
    return out[0] if single else out


def nesterov_rates(alpha: np.ndarray, beta: np.ndarray, eigenvalues: Iterable[float]) -> np.ndarray:
    """:func:`descend.lab.theory.nesterov_rate` on arrays of (α, β) (broadcast together)."""
    alpha, beta = np.broadcast_arrays(np.asarray(alpha, float), np.asarray(beta, float))
    worst = np.zeros(alpha.shape)
    for lam in _eigs(list(eigenvalues)):
        q = 1.0 - alpha * lam
        a = (1.0 + beta) * q
        root = np.sqrt((a * a - 4.0 * beta * q).astype(complex))
        worst = np.maximum(worst, np.maximum(np.abs((a + root) / 2), np.abs((a - root) / 2)))
    return worst


@functools.lru_cache(maxsize=32)
def nesterov_optimal(lam_min: float, lam_max: float) -> tuple[float, float, float]:
    """(α*, β*, rate*) minimising the torch-form Nesterov rate on the spectrum [λ₁, λₙ].

    No closed form is used: a 200 × 200 grid over α ∈ (0, 2/λₙ), β ∈ [0, 1) locates the
    basin, and Nelder–Mead on the exact rate refines it (the rate is a max of two smooth
    branches, so the optimum sits on their crossing, where a simplex method converges).
    """
    from scipy.optimize import minimize

    lam = [float(lam_min), float(lam_max)]
    theory.condition_number(*lam)  # validates the spectrum
    alphas = np.linspace(1e-3, 1.0, 200) * (2.0 / lam[1])
    betas = np.linspace(0.0, 0.995, 200)
    rates = nesterov_rates(alphas[:, None], betas[None, :], lam)
    i, j = np.unravel_index(np.argmin(rates), rates.shape)

    def rate(x: np.ndarray) -> float:
        a, b = float(x[0]), float(x[1])
        if not (0 < a and 0 <= b < 1):
            return 2.0
        return theory.nesterov_rate(a, b, lam)

    res = minimize(
        rate,
        [alphas[i], betas[j]],
        method="Nelder-Mead",
        options={"xatol": 1e-13, "fatol": 1e-15, "maxiter": 4000},
    )
    return float(res.x[0]), float(res.x[1]), float(res.fun)


def first_below(losses: np.ndarray, tol: float) -> int | None:
    """The first index t with losses[t] < tol, or None."""
    hit = np.nonzero(np.asarray(losses) < tol)[0]
    return int(hit[0]) if hit.size else None


def stays_below(losses: np.ndarray, tol: float) -> int | None:
    """The first index t from which every later loss is < tol (and finite), or None."""
    losses = np.asarray(losses, dtype=float)
    above = np.nonzero(~(losses < tol))[0]
    if above.size == 0:
        return 0
    t = int(above[-1]) + 1
    return t if t < len(losses) else None
