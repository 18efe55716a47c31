"""State-dict interchange with torch.optim (single process; DCP across ranks is in
test_distributed.py) and the ``process_group`` switch of the global decisions."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

import descend.optim as D

TWINS = ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "NAdam"]


def _params(seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.nn.Parameter(torch.randn(4, 3, generator=g, dtype=dtype)),
        torch.nn.Parameter(torch.randn(3, generator=g, dtype=dtype)),
    ]


def _grads(params, step):
    g = torch.Generator().manual_seed(50 + step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)


@pytest.mark.parametrize("convention", ["torch", "keras", "optax"])
@pytest.mark.parametrize("name", TWINS)
def test_group_keys_are_torch_keys(name, convention):
    # DCP loads the keys of the loading optimizer's state dict: equal sets load both ways
    twin = getattr(torch.optim, name)(_params(), lr=0.1)
    ours = getattr(D, name)(_params(), lr=0.1, convention=convention)
    assert set(ours.state_dict()["param_groups"][0]) == set(twin.state_dict()["param_groups"][0])


def test_per_group_overrides_are_carried_and_defaults_filled():
    params = _params()
    opt = D.Adam(
        [{"params": [params[0]]}, {"params": [params[1]], "bias_correction": False}], lr=0.01
    )
    groups = opt.state_dict()["param_groups"]
    assert "bias_correction" not in groups[0] and groups[1]["bias_correction"] is False
    fresh = D.Adam([{"params": [params[0]]}, {"params": [params[1]]}], lr=0.01)
    fresh.load_state_dict(opt.state_dict())
    assert fresh.param_groups[1]["bias_correction"] is False
    assert fresh.param_groups[0]["bias_correction"] is True  # from the defaults
    assert fresh.param_groups[0]["eps_placement"] == "outside"


# the rest of torch.optim (issue 14): keywords that reach their own switches and branches
ROUND_TRIP = TWINS + ["RAdam", "Adamax", "Adadelta", "Rprop", "ASGD"]
KWARGS = {
    "SGD": dict(lr=0.05, momentum=0.9),
    "RAdam": dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
    "Adamax": dict(lr=0.01, weight_decay=0.1),
    "Adadelta": dict(lr=0.5, weight_decay=0.1),
    "Rprop": dict(lr=0.01, etas=(0.4, 1.3), step_sizes=(1e-4, 0.05)),
    # averaging from step 3 (μ ≠ 1 once t > t₀ + 1), a visible η decay, L2
    "ASGD": dict(lr=0.05, lambd=0.1, alpha=0.6, t0=1.0, weight_decay=0.1),
}


def _has_kernel(opt) -> bool:
    """Whether the optimizer's chain core declares a fast kernel (then fused=None takes it)."""
    return any(t.kernel is not None for t in opt.core(opt.param_groups[0]))


@pytest.mark.parametrize("fused", [None, False], ids=["fast", "chain"])
@pytest.mark.parametrize("name", ROUND_TRIP)
def test_torch_descend_torch_round_trip_steps_as_torch(name, fused):
    """torch's state dict (after 3 steps) loads into descend, which steps 4 more; its state
    dict loads back into torch, which steps 2 more: the same as torch's own 9 steps (RAdam's
    rectification starts at step 6, ASGD's averaging at step 3), with the same group keys."""
    kwargs = KWARGS.get(name, {"lr": 0.01})
    ref = _params()
    torch_opt = getattr(torch.optim, name)(ref, **kwargs)
    for step in range(3):
        _grads(ref, step)
        torch_opt.step()
    # torch → descend (with the Keras convention's defaults: torch's keys win) → torch
    ours_params = [torch.nn.Parameter(p.detach().clone()) for p in ref]
    ours = getattr(D, name)(ours_params, fused=fused, **kwargs)
    assert set(ours.state_dict()["param_groups"][0]) == set(
        torch_opt.state_dict()["param_groups"][0]
    )
    ours.load_state_dict(copy.deepcopy(torch_opt.state_dict()))  # no shared tensors
    for step in range(3, 7):
        _grads(ref, step)
        _grads(ours_params, step)
        torch_opt.step()
        ours.step()
    back_params = [torch.nn.Parameter(p.detach().clone()) for p in ours_params]
    back = getattr(torch.optim, name)(back_params, **kwargs)
    back.load_state_dict(copy.deepcopy(ours.state_dict()))
    for step in range(7, 9):
        _grads(ref, step)
        _grads(back_params, step)
        torch_opt.step()
        back.step()
    path = "fast" if fused is None and _has_kernel(ours) else None
    if path is not None or fused is False:
        assert D.fast.last_path(ours) == {0: path or "default: fused=False"}
    # torch's load_state_dict casts NAdam's float32 μ-product to the parameters' float64 (a
    # torch → torch load does too), so the loaded runs compute with a wider product
    tol = {"NAdam": 1e-9, "RAdam": 1e-13, "Adamax": 1e-13, "Adadelta": 1e-13}.get(name, 1e-12)
    for a, b in zip(back_params, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=tol)


def test_decoupled_weight_decay_decides_the_mode_of_a_torch_group():
    params = _params()
    torch_adam = torch.optim.Adam(params, lr=0.01, weight_decay=0.1)  # coupled L2
    keras = D.Adam(_params(), convention="keras", weight_decay=0.1)
    assert keras.defaults["weight_decay_mode"] != "l2"
    assert keras.state_dict()["param_groups"][0]["decoupled_weight_decay"] is True
    keras.load_state_dict(torch_adam.state_dict())
    assert keras.param_groups[0]["weight_decay_mode"] == "l2"  # the checkpoint's meaning


def test_sgd_state_dict_keeps_the_step_count_only_where_it_is_read():
    params = _params()
    plain = D.SGD(params, lr=0.1, momentum=0.9)
    debiased = D.SGD(_params(), lr=0.1, momentum=0.9, momentum_form="ema", debias=True)
    for opt in (plain, debiased):
        for p in opt.param_groups[0]["params"]:
            p.grad = torch.ones_like(p)
        opt.step()
    assert all("step" not in st for st in plain.state_dict()["state"].values())
    assert all("step" in st for st in debiased.state_dict()["state"].values())
    assert all("step" in st for st in plain.state.values())  # the optimizer still counts


def test_process_group_switch():
    with pytest.raises(ValueError, match="process_group"):
        D.Adam(_params(), process_group="world")
    # "auto" outside a ZeroRedundancyOptimizer (and without torch.distributed): no reduction
    opt = D.Adam(_params(), nonfinite="skip", max_grad_norm=1.0)
    assert opt.process_group is None
    for p in opt.param_groups[0]["params"]:
        p.grad = torch.ones_like(p)
    opt.step()
    assert copy.deepcopy(opt).process_group is None
    assert pickle.loads(pickle.dumps(opt)).process_group is None
