"""The LR range test: the sweep, smoothing, stop rule, suggestion rules, exact restore, seeds,
and the quadratic whose stable range is known."""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from descend import landscapes, optim, schedules, train
from descend.train.lr_find import lr_find, minimum_over_10, steepest, sweep_lrs, valley
from descend.train.lr_find_lab import lr_find_landscape, lr_find_seeds


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small models: one thread avoids OpenMP stalls when the machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


CE = nn.CrossEntropyLoss()


@pytest.fixture(scope="module")
def cancer() -> train.Dataset:
    return train.load("breast-cancer")


class RecordingSGD(torch.optim.SGD):
    """SGD that remembers the lr of every step it takes."""

    def __init__(self, params, lr):
        super().__init__(params, lr=lr)
        self.seen: list[float] = []

    def step(self, closure=None):
        self.seen.append(self.param_groups[0]["lr"])
        return super().step(closure)


@pytest.mark.parametrize("mode", ["exp", "linear"])
def test_the_optimizer_steps_with_the_swept_rates(cancer, mode) -> None:
    model = train.logistic(cancer.n_features, 2)
    opt = RecordingSGD(model.parameters(), lr=0.123)
    res = lr_find(
        model,
        CE,
        cancer.loader("train", 16),
        opt,
        start_lr=1e-4,
        end_lr=1.0,
        num_steps=30,
        mode=mode,
        diverge_factor=1e9,
    )
    i = np.arange(30)
    expected = 1e-4 * (1e4 ** (i / 29)) if mode == "exp" else 1e-4 + (1.0 - 1e-4) * i / 29
    assert np.allclose(res.lrs, expected, rtol=1e-12)
    assert np.allclose(opt.seen, expected, rtol=1e-12)
    assert opt.param_groups[0]["lr"] == 0.123  # restored
    assert res.stop_reason == "completed"


def test_smoothing_is_pandas_adjusted_ewm_and_the_stop_rule_is_4x_the_best() -> None:
    ravine = landscapes.get("ravine")
    res = lr_find_landscape(ravine, "sgd", start_lr=1e-3, end_lr=20.0, num_steps=120).result
    reference = pd.Series(res.losses).ewm(alpha=1 - 0.98, adjust=True).mean().to_numpy()
    assert np.allclose(res.smoothed, reference, rtol=1e-12)
    above = reference > 4 * np.minimum.accumulate(reference)
    assert above[-1] and not above[:-1].any()  # stopped at the first point above 4× the best
    assert res.stop_reason.startswith("smoothed loss")
    assert len(res.lrs) < 120


def test_suggestion_rules_on_hand_made_curves() -> None:
    lrs = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    loss = np.array([5.0, 4.9, 4.0, 2.0, 1.5, 1.4, 3.0, 9.0])
    # np.gradient (central differences): index 2 → (2.0 − 4.9)/2 = −1.45, index 3 →
    # (1.5 − 4.0)/2 = −1.25, so the steepest point is index 2.
    assert steepest(lrs, loss) == 3.0
    assert minimum_over_10(lrs, loss) == pytest.approx(0.6)
    # Longest decreasing run: indices 0..5 (6 points), so fastai sets start = 5 − 6 = −1
    # and end = 5; (5 − (−1))/3 = 2, index −1 + 2 + 1 = 2.
    assert valley(lrs, loss) == 3.0


def test_model_optimizer_rng_and_schedule_are_restored_exactly(cancer) -> None:
    torch.manual_seed(0)
    model = train.mlp(cancer.n_features, (16,), 2, norm="batch", dropout=0.2)
    opt = optim.from_spec("adam:lr=0.01", model.parameters())
    handle = schedules.attach(opt, "cosine:steps=50")
    train.fit(model, CE, cancer.loader("train", 32), opt, epochs=1, progress=False)
    before_model = {k: v.clone() for k, v in model.state_dict().items()}
    before_opt = opt.state_dict()
    before_opt_tensors = {
        (i, k): v.clone() for i, s in before_opt["state"].items() for k, v in s.items()
    }
    before_groups = [dict(g) for g in before_opt["param_groups"]]
    before_step = handle.step
    torch_rng, np_rng, py_rng = torch.get_rng_state(), np.random.get_state(), random.getstate()
    res = lr_find(model, CE, cancer.loader("train", 32), opt, num_steps=40, seed=5)
    assert len(res.lrs) > 10  # it did train
    for key, value in model.state_dict().items():
        assert torch.equal(value, before_model[key]), key
    after = opt.state_dict()
    for (i, k), v in before_opt_tensors.items():
        assert torch.equal(after["state"][i][k], v), (i, k)
    # Every hyperparameter (lr, base_lr of the schedule, betas, …) is back. (A descend group
    # gains torch's "differentiable" flag on any load_state_dict; the others must be equal.)
    for group, old in zip(after["param_groups"], before_groups):
        assert {k: group[k] for k in old} == old
    assert handle.step == before_step
    assert torch.equal(torch.get_rng_state(), torch_rng)
    assert np.array_equal(np.random.get_state()[1], np_rng[1])
    assert random.getstate() == py_rng
    # The schedule's hooks are back: a real step advances it again.
    train.fit(
        model, CE, cancer.loader("train", 32), opt, epochs=None, max_updates=1, progress=False
    )
    assert handle.step == before_step + 1


def test_restored_even_when_the_sweep_fails(cancer) -> None:
    model = train.mlp(cancer.n_features, (8,), 2, norm="batch")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="batch of 1 sample"):
        lr_find(model, CE, cancer.loader("train", 1), opt, num_steps=10)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_spread_over_seeds(cancer) -> None:
    def build(seed):
        torch.manual_seed(seed)
        model = train.logistic(cancer.n_features, 2)
        return (
            model,
            CE,
            cancer.loader("train", 16, seed=seed),
            torch.optim.SGD(model.parameters(), lr=0.1),
        )

    spread = lr_find_seeds(build, seeds=[0, 1, 2], start_lr=1e-4, end_lr=10.0, num_steps=50)
    table = spread.table()
    assert list(table.index) == [0, 1, 2]
    assert list(table.columns) == ["steepest", "valley", "minimum/10"]
    assert not np.allclose(spread.results[0].losses, spread.results[1].losses)
    for rule, stats in spread.spread().items():
        values = table[rule].to_numpy(dtype=float)
        assert stats["max/min"] == pytest.approx(values.max() / values.min())
        assert stats["min"] <= stats["geomean"] <= stats["max"]


@pytest.mark.parametrize("lam2", [10.0, 40.0])
def test_landscape_stable_range_is_two_over_lambda_max(lam2) -> None:
    ls = landscapes.get("ravine", lam1=1.0, lam2=lam2)
    found = lr_find_landscape(ls, "sgd", num_steps=80)
    assert found.eigenvalues == pytest.approx((1.0, lam2))
    assert found.stable_limit == pytest.approx(2 / lam2)
    assert found.optimal_lr == pytest.approx(2 / (1 + lam2))
    for info in found.placement.values():
        assert info["fraction_of_limit"] == pytest.approx(info["lr"] * lam2 / 2)
        expected = "unstable" if info["lr"] >= 2 / lam2 else "stable"
        assert info["verdict"].startswith(expected)
    heavy_ball = lr_find_landscape(ls, "momentum:momentum=0.5", num_steps=80)
    assert heavy_ball.stable_limit == pytest.approx((2 + 2 * 0.5) / lam2)
    assert lr_find_landscape(ls, "adam", num_steps=30).stable_limit is None


def test_gd_on_the_quadratic_really_diverges_beyond_the_limit() -> None:
    """Independent check of the limit the report uses: run GD on ½(x² + 10y²) by hand."""

    def final_loss(lr: float) -> float:
        w = np.array([-1.8, 1.2])
        for _ in range(200):
            w = w - lr * np.array([1.0, 10.0]) * w
        return 0.5 * (w[0] ** 2 + 10 * w[1] ** 2)

    limit = lr_find_landscape("ravine", "sgd", num_steps=30).stable_limit
    assert final_loss(0.98 * limit) < 1e-3 and final_loss(1.02 * limit) > 1e3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"start_lr": 0.0}, "start_lr must be a positive finite number"),
        ({"end_lr": 1e-9}, "end_lr must be finite and > start_lr"),
        ({"num_steps": 1}, "num_steps must be an integer >= 2"),
        ({"mode": "cosine"}, "mode must be 'exp' or 'linear'"),
        ({"diverge_factor": 1.0}, "diverge_factor must be > 1"),
    ],
)
def test_bad_arguments(cancer, kwargs, message) -> None:
    model = train.logistic(cancer.n_features, 2)
    with pytest.raises(ValueError, match=message):
        lr_find(
            model, CE, cancer.loader("train"), torch.optim.SGD(model.parameters(), lr=0.1), **kwargs
        )


def test_sweep_lrs_endpoints() -> None:
    lrs = sweep_lrs(1e-6, 1.0, 7)
    assert lrs[0] == pytest.approx(1e-6) and lrs[-1] == pytest.approx(1.0)
    assert np.allclose(np.diff(np.log10(lrs)), 1.0)
    assert math.isclose(sweep_lrs(0.1, 0.5, 5, "linear")[2], 0.3)
