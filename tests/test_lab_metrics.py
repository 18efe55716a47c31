"""Per-run metrics against hand derivations on 1-D quadratics, and basins on Himmelblau."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from descend import lab, landscapes
from descend.landscapes import Landscape

QUAD = landscapes.get("quadratic")  # f = ½x², f' = x, minimum 0 at 0


def _row(result, i: int = 0) -> pd.Series:
    return result.metrics.iloc[i]


def test_steps_to_tol_of_gradient_descent_on_a_quadratic() -> None:
    # lr = 0.5: x_t = 0.5ᵗ·x₀, f_t = ½·0.25ᵗ·x₀²; the first t with f_t < 1e-6 by hand:
    tol, x0 = 1e-6, 1.0
    first = next(t for t in range(100) if 0.5 * 0.25**t * x0**2 < tol)
    assert first == 10
    result = lab.run(QUAD, ["sgd:lr=0.5"], [(x0,)], steps=30, tol=tol)
    row = _row(result)
    assert row["steps_to_tol"] == first
    assert row["final_loss"] == pytest.approx(0.5 * 0.25**30)
    assert row["overshoots"] == 0  # always moving towards 0 from one side
    assert row["path_length"] == pytest.approx(x0 * (1 - 0.5**30))
    # never reached within the steps: missing, not 0
    short = lab.run(QUAD, ["sgd:lr=0.5"], [(x0,)], steps=5, tol=tol)
    assert short.metrics["steps_to_tol"].isna().all()


def test_overshoots_and_path_length_when_every_step_overshoots() -> None:
    # lr = 1.5: x_{t+1} = −0.5·x_t, the velocity Δ_t = −1.5·x_t alternates its sign every step:
    # T steps give T velocities and T − 1 sign changes; Σ|Δ_t| = 1.5·x₀·Σ0.5ᵗ.
    steps, x0 = 20, 2.0
    result = lab.run(QUAD, ["sgd:lr=1.5"], [(x0,)], steps=steps)
    row = _row(result)
    assert row["overshoots"] == steps - 1
    assert row["path_length"] == pytest.approx(1.5 * x0 * (1 - 0.5**steps) / 0.5)


def test_overshoots_of_heavy_ball_counted_by_hand() -> None:
    # Heavy ball on f = ½x² with lr 1, β 0.5, written out (torch form: v₁ = g, v = βv + g).
    x, v, velocities = 1.0, None, []
    for _ in range(15):
        g = x
        v = g if v is None else 0.5 * v + g
        velocities.append(-1.0 * v)
        x = x - 1.0 * v
    changes = sum(1 for a, b in zip(velocities, velocities[1:]) if a * b < 0)
    result = lab.run(QUAD, ["momentum:lr=1,momentum=0.5"], [(1.0,)], steps=15)
    assert result.trajectories[0, -1, 0] == pytest.approx(x, abs=1e-15)
    assert _row(result)["overshoots"] == changes
    assert changes >= 3  # the example does overshoot
    assert _row(result)["path_length"] == pytest.approx(sum(abs(d) for d in velocities))


def test_two_coordinates_count_their_sign_changes_separately() -> None:
    # f = ½(x² + 3y²) by expression; lr = 0.6: x shrinks by 0.4 (no overshoot), y flips by
    # 1 − 1.8 = −0.8 each step (every step after the first overshoots).
    bowl = landscapes.get("expr:0.5*x**2 + 1.5*y**2", domain=(-2, 2))
    result = lab.run(bowl, ["sgd:lr=0.6"], [(1.0, 1.0)], steps=12, tol=1e-3)
    row = _row(result)
    assert row["overshoots"] == 11
    assert pd.isna(row["basin"]) and math.isnan(row["distance"])  # no minima known
    assert pd.isna(row["steps_to_tol"])  # f* unknown


def test_divergence_step_freezing_and_records() -> None:
    # lr = 3: x_{t+1} = −2·x_t; the default bound is 100 × 2 (the domain [−2, 2]), first
    # exceeded by |x_8| = 256. The run is frozen at x_7; its path stops growing there.
    result = lab.run(QUAD, ["sgd:lr=3"], [(1.0,)], steps=20)
    row = _row(result)
    assert row["diverged"] and row["diverged_step"] == 8 and row["status"] == "diverged"
    assert math.isinf(row["final_loss"]) and pd.isna(row["basin"])
    assert row["end"] == (-128.0,)
    assert row["path_length"] == pytest.approx(3 * (2**7 - 1))
    assert row["overshoots"] == 6
    assert np.isfinite(result.trajectories[0, :8]).all()
    assert np.isnan(result.trajectories[0, 8:]).all() and np.isnan(result.losses[0, 8:]).all()


def test_a_nan_gradient_is_a_divergence_of_that_run_only() -> None:
    root = Landscape(
        name="root", dim=1, value_fn=lambda p: torch.sqrt(p[:, 0]), domain=((-1.0, 1.0),)
    )
    result = lab.run(root, ["sgd:lr=0.01"], [(-0.5,), (0.5,)], steps=5)
    assert result.metrics["diverged"].tolist() == [True, False]
    assert result.metrics["diverged_step"][0] == 1
    assert result.trajectories[1, -1, 0] < 0.5


def test_basin_on_himmelblau_from_near_each_minimum() -> None:
    himmel = landscapes.get("himmelblau")
    starts = [(m.location[0] + 0.3, m.location[1] - 0.3) for m in himmel.minima]
    result = lab.run(himmel, ["sgd:lr=0.01", "adam:lr=0.05"], starts, steps=600)
    m = result.metrics
    assert m["basin"].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert (m["distance"] < 1e-4).all()
    assert m["steps_to_tol"].notna().all()


def test_basins_map_labels() -> None:
    himmel = landscapes.get("himmelblau")
    b = lab.basins(himmel, ["sgd:lr=0.01", "sgd:lr=0.2"], grid=9, steps=300)
    assert b.labels.shape == (2, 9, 9)
    # start (xs[j], ys[i]) is row i, column j; its label is its end's minimum within the radius
    m = b.result.metrics.iloc[:81]
    assert m["start"].iloc[9 * 2 + 5] == (b.xs[5], b.ys[2])
    near = (m["distance"] <= b.radius).to_numpy()
    expected = np.where(near, m["basin"].fillna(-1).to_numpy(dtype=float), -1).reshape(9, 9)
    assert (b.labels[0] == expected).all()
    # the grid's corners are each in the basin of the minimum in that quadrant
    assert b.labels[0, -1, -1] == 0 and b.labels[0, 0, 0] == 3
    assert b.labels[0, -1, 0] == 2 and b.labels[0, 0, -1] == 1
    assert (b.labels[1] == lab.grids.DIVERGED).all()  # lr = 0.2 blows up everywhere
    shares = b.shares()["sgd:lr=0.01"]
    assert sum(shares.values()) == pytest.approx(1.0)


def test_metrics_table_columns() -> None:
    result = lab.run("booth", ["adam:lr=0.1", "momentum:momentum=0.8"], steps=20)
    cols = list(result.metrics.columns)
    for name in [
        "spec",
        "optimizer",
        "lr",
        "momentum",
        "start",
        "seed",
        "final_loss",
        "basin",
        "distance",
        "steps_to_tol",
        "path_length",
        "overshoots",
        "diverged",
        "diverged_step",
    ]:
        assert name in cols
    booth = landscapes.get("booth")
    assert result.metrics["lr_source"].tolist()[-1] == "landscape"
    assert result.default_lrs_used() == {"momentum": booth.default_lrs["momentum"]}
    assert math.isnan(result.metrics["momentum"][0]) and result.metrics["momentum"].iloc[-1] == 0.8


def test_a_converged_run_stops_counting_overshoots() -> None:
    # A run that has converged jitters by a few units in the last place, flipping sign every
    # step. Opposite steps count only when Δ_t·Δ_{t−1} < −τ² (τ = 8ε × the domain scale in the
    # engine), so the jitter adds nothing while flips of 1e-3 still count, one per flip.
    from descend.lab.tracker import Tracker

    eps = torch.finfo(torch.float64).eps
    theta = torch.tensor([[1.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    tracker = Tracker(theta, 40, 1, 0.0, 1e-6, 100.0, still=8 * eps * 3)
    for t in range(40):
        sign = 1 if t % 2 else -1
        theta[0] = 1.0 + sign * torch.tensor([eps, 2 * eps], dtype=torch.float64)
        theta[1] = sign * 1e-3
        tracker.after_step(t)
    assert tracker.overshoots.tolist() == [0, 2 * 39]
    naive = Tracker(theta.clone(), 3, 1, 0.0, 1e-6, 100.0)  # τ = 0: the jitter counts
    for t in range(3):
        naive.theta[0] = 1.0 + (1 if t % 2 else -1) * eps
        naive.after_step(t)
    assert naive.overshoots.tolist()[0] == 2 * 2
