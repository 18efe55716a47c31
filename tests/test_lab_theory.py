"""Quadratic theory (Goh 2017) against closed forms and against measured runs of the lab."""

from __future__ import annotations

import math

import numpy as np
import pytest

from descend import lab
from descend.lab import theory

KAPPA_100 = dict(lam1=1.0, lam2=100.0)


def _errors(
    spec: str, steps: int, start=(1.0, 1.0), angle: float = 30.0
) -> tuple[np.ndarray, bool]:
    """‖θ_t − θ*‖ for one run on ½(λ₁u² + λ₂v²) (minimum at the origin)."""
    from descend import landscapes

    ravine = landscapes.get("ravine", angle=angle, **KAPPA_100)
    result = lab.run(ravine, [spec], [start], steps=steps)
    return np.linalg.norm(result.trajectories[0], axis=1), bool(result.metrics["diverged"][0])


def test_closed_forms_for_kappa_100() -> None:
    # By hand: α* = 2/(1 + 100), rate (κ−1)/(κ+1) = 99/101; heavy ball α* = (2/(1 + 10))²,
    # β* = (9/11)², rate 9/11.
    alpha, rate = theory.gd_optimal(1, 100)
    assert alpha == pytest.approx(2 / 101, rel=1e-15)
    assert rate == pytest.approx(99 / 101, rel=1e-15)
    a, b, r = theory.heavy_ball_optimal(1, 100)
    assert (a, b, r) == pytest.approx((4 / 121, 81 / 121, 9 / 11), rel=1e-14)
    assert theory.condition_number(1, 100) == 100
    assert theory.gd_rate(alpha, [1, 100]) == pytest.approx(rate, rel=1e-14)
    # at the optimum both extreme directions are critically damped: |σ| = √β = 9/11
    assert theory.heavy_ball_rate(a, b, [1, 100]) == pytest.approx(9 / 11, rel=1e-6)
    assert theory.gd_max_lr(100) == 0.02
    assert theory.heavy_ball_max_lr(100, 0.5) == pytest.approx(0.03)
    assert theory.nesterov_max_lr(100, 0.5) == pytest.approx(3 / 200)
    # ≈691 GD steps and ≈69 heavy-ball steps shrink the error by 1e-6 (lab.md's worked check)
    assert theory.steps_to_reduce(99 / 101, 1e-6) == math.ceil(math.log(1e-6) / math.log(99 / 101))
    assert 688 <= theory.steps_to_reduce(99 / 101) <= 692
    assert 68 <= theory.steps_to_reduce(9 / 11) <= 70


def test_heavy_ball_rate_in_each_regime() -> None:
    # complex roots: |σ|² = β (product of the roots) so the rate is √β
    assert theory.heavy_ball_rate(0.01, 0.81, 1.0) == pytest.approx(0.9, rel=1e-12)
    # β = 0 is gradient descent
    assert theory.heavy_ball_rate(0.015, 0.0, [1, 100]) == pytest.approx(
        theory.gd_rate(0.015, [1, 100]), rel=1e-12
    )
    # critical damping β = (1 − √(αλ))²: rate 1 − √(αλ)
    beta = theory.critical_beta(0.04, 1.0)
    assert theory.heavy_ball_rate(0.04, beta, 1.0) == pytest.approx(1 - 0.2, rel=1e-6)


def test_measured_gd_rate_at_its_optimum() -> None:
    alpha, _ = theory.gd_optimal(1, 100)
    errors, diverged = _errors(f"sgd:lr={alpha!r}", 400)
    measured = theory.measured_rate(errors, 200, 400)
    assert not diverged
    assert measured == pytest.approx(0.9802, rel=0.02)
    assert measured == pytest.approx(99 / 101, rel=1e-9)  # exact for GD at α*: |1 − α*λ| both


def test_measured_heavy_ball_rate_at_its_optimum() -> None:
    alpha, beta, _ = theory.heavy_ball_optimal(1, 100)
    errors, diverged = _errors(f"momentum:lr={alpha!r},momentum={beta!r}", 400)
    measured = theory.measured_rate(errors, 200, 400)
    assert not diverged
    assert measured == pytest.approx(0.818, rel=0.02)


@pytest.mark.parametrize(
    "optimizer, edge",
    [
        ("momentum", theory.heavy_ball_max_lr(100, 0.5)),
        ("nesterov", theory.nesterov_max_lr(100, 0.5)),
    ],
)
def test_momentum_diverges_just_above_its_edge_and_converges_just_below(optimizer, edge) -> None:
    above, diverged_above = _errors(f"{optimizer}:lr={edge * 1.01!r},momentum=0.5", 1500)
    below, diverged_below = _errors(f"{optimizer}:lr={edge * 0.99!r},momentum=0.5", 1500)
    assert diverged_above
    assert not diverged_below and below[-1] < 1e-8 * below[0]


def test_sweep_reports_the_edge_of_the_quadratic() -> None:
    result = lab.sweep(
        "ravine", "momentum", {"lr": [0.01, 0.02], "momentum": [0.0, 0.5, 1.0]}, steps=5
    )
    # ravine's default λ₂ = 10: edges (2 + 2β)/10, NaN for the invalid β = 1
    np.testing.assert_allclose(result.edge[:2], [0.2, 0.3])
    assert math.isnan(result.edge[2])
    assert result.invalid[:, 2].all() and not result.invalid[:, :2].any()


def test_theory_rejects_bad_spectra() -> None:
    with pytest.raises(ValueError, match="lam_min"):
        theory.gd_optimal(0, 10)
    with pytest.raises(ValueError, match="lam_max"):
        theory.heavy_ball_optimal(2, 1)
    with pytest.raises(ValueError, match="rate"):
        theory.steps_to_reduce(1.2)
