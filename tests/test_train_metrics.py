"""Effective per-parameter learning rates: read from the state, checked against descend's trace
and against the step Adam really took."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from descend import optim, train
from descend.optim import tracing
from descend.train.metrics import _param_eff_lr, effective_lr_stats


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small models: one thread avoids OpenMP stalls when the machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SPECS = [
    "adam",
    "adamw:weight_decay=0.1",
    "amsgrad",
    "adam:amsgrad=true,amsgrad_of=corrected",
    "nadam",
    "rmsprop",
    "rmsprop-centered",
    "rmsprop:bias_correction=true",
    "rmsprop:momentum=0.9",
    "adagrad:lr_decay=0.1",
    "adam:eps_placement=inside,eps=1e-3",
    "adam:eps_placement=hat,eps=1e-3",
    "adam:bias_correction=false",
    "adam:convention=keras",
    "rmsprop:convention=keras",
    "adagrad:convention=keras",
]


@pytest.mark.parametrize("spec", SPECS)
def test_state_formula_equals_descends_traced_lr_eff(spec: str) -> None:
    torch.manual_seed(0)
    w = torch.randn(5, 3, requires_grad=True)
    opt = optim.from_spec(spec, [w])
    for _ in range(3):
        opt.zero_grad()
        (w**3).sum().backward()
        opt.step()
    opt.zero_grad()
    (w**3).sum().backward()
    with tracing(opt) as records:
        opt.step()
    traced = records[-1]["lr_eff"][0]
    assert "denom" in records[-1]  # an adaptive optimizer
    mine = _param_eff_lr(opt.param_groups[0], opt.state[w])
    assert torch.allclose(mine, traced, rtol=1e-6, atol=0)


@pytest.mark.parametrize("spec", ["sgd", "momentum", "nesterov"])
def test_non_adaptive_optimizers_report_no_distribution(spec: str) -> None:
    w = torch.randn(4, requires_grad=True)
    opt = optim.from_spec(spec, [w], lr=0.1)
    (w**2).sum().backward()
    opt.step()
    assert effective_lr_stats(opt) is None


def test_torch_adam_effective_lr_is_the_observed_step_over_the_raw_momentum() -> None:
    """torch's Adam moves θ by −γ·(m/c₁)/(√v̂ + ε): the rate applied to m is −Δθ/m."""
    ds = train.load("breast-cancer")
    torch.manual_seed(3)
    model = train.logistic(ds.n_features, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.9, 0.99))
    loader = ds.loader("train", 50, seed=0)
    ce = torch.nn.CrossEntropyLoss()
    train.fit(model, ce, loader, opt, epochs=1, progress=False)
    before = [p.detach().clone() for p in model.parameters()]
    h = train.fit(model, ce, [next(iter(loader))], opt, epochs=1, progress=False)
    observed = np.concatenate(
        [
            ((p0 - p.detach()) / opt.state[p]["exp_avg"]).numpy().ravel()
            for p, p0 in zip(model.parameters(), before)
        ]
    ).astype(np.float64)
    row = h.steps[0]
    assert row["eff_lr_median"] == pytest.approx(np.quantile(observed, 0.5), rel=1e-3)
    assert row["eff_lr_p10"] == pytest.approx(np.quantile(observed, 0.1), rel=1e-3)
    assert row["eff_lr_min"] == pytest.approx(observed.min(), rel=1e-3)
    assert row["eff_lr_max"] == pytest.approx(observed.max(), rel=1e-3)
    assert row["eff_lr_geomean"] == pytest.approx(np.exp(np.log(observed).mean()), rel=1e-3)


def test_accuracy_for_multiclass_binary_logit_and_regression() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 5.0], [1.0, 0.0, 0.0]])
    assert train.accuracy(logits, torch.tensor([0, 1, 0, 0])) == pytest.approx(3 / 4)
    one_logit = torch.tensor([[0.3], [-1.0], [2.0]])  # BCEWithLogits style: sign decides
    assert train.accuracy(one_logit, torch.tensor([1.0, 0.0, 0.0])) == pytest.approx(2 / 3)
    assert train.accuracy(torch.randn(3, 4), torch.rand(3, 4)) is None  # not classification


def test_evaluate_weights_batches_by_size() -> None:
    x = torch.tensor([[1.0], [2.0], [3.0]])
    y = torch.tensor([0.0, 0.0, 0.0])
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    mse = torch.nn.MSELoss()
    loss, acc = train.evaluate(
        model, lambda o, t: mse(o.squeeze(1), t), [(x[:2], y[:2]), (x[2:], y[2:])], None
    )
    assert loss == pytest.approx((1 + 4 + 9) / 3)  # the mean over samples, not over batches
    assert acc is None


def test_history_json_round_trip(tmp_path) -> None:
    import json

    h = train.History(
        steps=[{"step": 1, "loss": float("nan")}],
        epochs=[{"epoch": 1}],
        diverged="loss became nan at step 1",
        config={"seed": 3},
    )
    h.save(tmp_path / "h.json")
    data = json.loads((tmp_path / "h.json").read_text())
    assert data["steps"][0]["loss"] is None  # NaN is written as null
    again = train.History.from_dict(data)
    assert again.diverged == h.diverged and again.config == {"seed": 3}
