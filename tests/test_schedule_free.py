"""Schedule-Free AdamW and SGD beyond the parity rows of ``optimizer_cases.py``: the
``train()`` / ``eval()`` swap against the ``schedulefree`` reference classes, the refusal to
step in eval mode, state dicts saved in either mode, new groups, and runs that never mix."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io

import numpy as np
import pytest
import torch

import descend.optim as D
from conftest import require
from optimizer_cases import THETA0, grad, runs_together_and_alone

KINDS = {
    "adamw": (D.ScheduleFreeAdamW, "AdamWScheduleFreeReference", dict(lr=0.02, weight_decay=0.1)),
    "sgd": (D.ScheduleFreeSGD, "SGDScheduleFreeReference", dict(lr=0.05, weight_decay=0.1)),
}


def _params() -> list[torch.Tensor]:
    return [torch.tensor(t, dtype=torch.float64, requires_grad=True) for t in THETA0]


def _step(opt, params, t: int) -> None:
    for p, g in zip(params, grad(torch, [p.detach() for p in params], t), strict=True):
        p.grad = g
    opt.step()


def _reference(name: str, params, kwargs):
    require(importlib.util.find_spec("schedulefree") is not None, "pip install schedulefree")
    import schedulefree

    opt = getattr(schedulefree, name)(params, **kwargs)
    with contextlib.redirect_stdout(io.StringIO()):
        opt.train()
    return opt


@pytest.mark.parametrize("kind", KINDS)
def test_eval_holds_the_references_average_and_train_restores_y_exactly(kind) -> None:
    cls, ref_name, kwargs = KINDS[kind]
    ours, theirs = _params(), _params()
    opt, ref = cls(ours, **kwargs), _reference(ref_name, theirs, kwargs)
    for t in range(20):
        _step(opt, ours, t)
        _step(ref, theirs, t)
    y = [p.detach().clone() for p in ours]
    opt.eval()
    with contextlib.redirect_stdout(io.StringIO()):
        ref.eval()
    assert all(not g["train_mode"] for g in opt.param_groups)
    for a, b, before in zip(ours, theirs, y, strict=True):
        assert float((a - b).detach().abs().max()) <= 1e-12  # x, the reference's eval point
        assert float((a.detach() - before).abs().max()) > 1e-4  # x is not y: the swap happened
    opt.eval()  # twice is once
    for a, b in zip(ours, theirs, strict=True):
        assert float((a - b).detach().abs().max()) <= 1e-12
    opt.train()
    assert all(torch.equal(a.detach(), b) for a, b in zip(ours, y, strict=True))
    assert all("y" not in opt.state[p] for p in ours)


@pytest.mark.parametrize("kind", KINDS)
def test_a_step_in_eval_mode_raises_naming_train_and_changes_nothing(kind) -> None:
    cls, _, kwargs = KINDS[kind]
    params = _params()
    opt = cls(params, **kwargs)
    _step(opt, params, 0)
    opt.eval()
    before = [p.detach().clone() for p in params]
    state = copy.deepcopy(opt.state_dict())
    with pytest.raises(RuntimeError, match=r"eval mode.*optimizer\.train\(\)"):
        _step(opt, params, 1)
    assert all(torch.equal(a.detach(), b) for a, b in zip(params, before, strict=True))
    after = opt.state_dict()
    assert after["param_groups"] == state["param_groups"]
    for i, st in state["state"].items():
        assert all(
            torch.equal(v, after["state"][i][k])
            if torch.is_tensor(v)
            else v == after["state"][i][k]
            for k, v in st.items()
        )


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_state_dict_saved_in_either_mode_resumes_bitwise(kind, mode) -> None:
    cls, _, kwargs = KINDS[kind]
    full = _params()
    opt = cls(full, **kwargs)
    for t in range(12):
        _step(opt, full, t)
    params = _params()
    opt = cls(params, **kwargs)
    for t in range(6):
        _step(opt, params, t)
    if mode == "eval":
        opt.eval()
    # a checkpoint: the model's parameters as they are now (x in eval mode) and the optimizer
    saved = copy.deepcopy({"model": [p.detach() for p in params], "opt": opt.state_dict()})
    params = [p.clone().requires_grad_(True) for p in saved["model"]]
    opt = cls(params, **kwargs)
    opt.load_state_dict(saved["opt"])
    assert opt.param_groups[0]["train_mode"] is (mode == "train")
    if mode == "eval":
        with pytest.raises(RuntimeError, match="train"):
            _step(opt, params, 6)
        opt.train()
    for t in range(6, 12):
        _step(opt, params, t)
    for a, b in zip(full, params, strict=True):
        assert torch.equal(a.detach(), b.detach())


def test_a_new_group_joins_in_the_current_mode() -> None:
    params = _params()
    opt = D.ScheduleFreeSGD(params[:1], lr=0.1)
    opt.eval()
    opt.add_param_group({"params": params[1:]})
    assert [g["train_mode"] for g in opt.param_groups] == [False, False]
    opt.train()
    opt.add_param_group({"params": [torch.zeros(2, requires_grad=True)]})
    assert [g["train_mode"] for g in opt.param_groups] == [True, True, True]


@pytest.mark.parametrize("kind", KINDS)
def test_runs_with_their_own_learning_rates_never_mix(kind) -> None:
    """The lab's form: N runs as one (N, d) parameter with an (N, 1) learning rate. Each
    run's averaging (γ_max, Σw, cₜ) must be its own: equal to N separate optimizers."""
    cls, _, kwargs = KINDS[kind]
    lrs = torch.tensor([[0.01], [0.05], [0.2]], dtype=torch.float64)
    opt, together, gap = runs_together_and_alone(cls, dict(kwargs, warmup_steps=4), lrs)
    assert gap <= 1e-12
    st = opt.state[together]
    assert st["lr_max"].shape == (3, 1) and torch.equal(st["lr_max"], lrs)


def test_training_evaluates_at_the_average_and_goes_on_at_y() -> None:
    """``fit`` (and so ``descend compare``) validates a Schedule-Free model at x, the point
    the paper evaluates, and trains on at y."""
    from descend.train import evaluate, fit

    torch.manual_seed(0)
    x = torch.randn(64, 5)
    y = x @ torch.randn(5, 1) + 0.1 * torch.randn(64, 1)
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    model = torch.nn.Linear(5, 1)
    opt = D.ScheduleFreeAdamW(model.parameters(), lr=0.05, warmup_steps=3)
    loss = torch.nn.functional.mse_loss
    history = fit(model, loss, batches, opt, epochs=3, val_loader=batches, progress=False)
    assert opt.param_groups[0]["train_mode"]
    at_y, _ = evaluate(model, loss, batches, None)
    opt.eval()
    at_x, _ = evaluate(model, loss, batches, None)
    opt.train()
    assert history.evals[-1]["val_loss"] == at_x != at_y


@pytest.mark.parametrize("name", ["schedule-free-adamw", "schedule-free-sgd"])
def test_the_lab_runs_it_at_its_own_rate_and_makes_progress(name) -> None:
    from descend.explain import explain
    from descend.lab import run

    for landscape in ("rosenbrock", "beale"):
        result = run(landscape, [name], steps=200)
        assert result.metrics["status"].eq("ok").all()
        assert (result.losses[:, -1] < 0.5 * result.losses[:, 0]).all()
    table = explain(name, gradients=[0.02, 0.01, -0.03])
    assert {"y", "z", "x"} <= set(table.columns)
    # θ is y while training, and y = βx + (1 − β)z
    beta = 0.9
    assert np.allclose(table["y"], beta * table["x"] + (1 - beta) * table["z"], rtol=1e-12)
    assert np.allclose(table["new_param"], table["y"], rtol=1e-12)
