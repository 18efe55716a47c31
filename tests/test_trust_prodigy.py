"""Prodigy, LAMB and LARS beyond the case table's one-group rows: Prodigy's d shared by every
group (against prodigyopt), LAMB's and LARS's exclusion masks as param groups (against
optax's masks, x64), their switches, and what the lab and explain see."""

from __future__ import annotations

import copy
import importlib.util
import math

import numpy as np
import pandas as pd
import pytest
import torch

import descend.optim as D
from conftest import require
from descend.optim.fast import last_path
from optimizer_cases import THETA0, grad, optax_reference, torch_reference

STEPS = 100


def _need(module: str, package: str) -> None:
    require(importlib.util.find_spec(module) is not None, f"pip install {package}")


def _run(build, steps: int = STEPS, flip: bool = False) -> tuple[list, object]:
    """``build(params)`` → optimizer, stepped on the case table's gradients (negated when
    ``flip``)."""
    params = [torch.tensor(t, dtype=torch.float64, requires_grad=True) for t in THETA0]
    opt = build(params)
    for t in range(steps):
        for p, g in zip(params, grad(torch, [p.detach() for p in params], t), strict=True):
            p.grad = -g if flip else g
        opt.step()
    return [p.detach().numpy().copy() for p in params], opt


def _err(a: list, b: list) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


def _moved(a: list) -> float:
    return max(float(np.abs(x - t).max()) for x, t in zip(a, THETA0, strict=True))


# -- Prodigy -----------------------------------------------------------------------------------
GROUPS = [
    # (descend/prodigyopt keywords, per-group settings of the two tensors)
    (dict(weight_decay=0.05), [dict(), dict(weight_decay=0.0, eps=1e-6, d0=1e-5)]),
    (dict(decouple=False, weight_decay=0.05), [dict(safeguard_warmup=True), dict(slice_p=2)]),
    (dict(use_bias_correction=True), [dict(), dict(lr=0.0)]),  # a frozen group
]


@pytest.mark.parametrize(("kwargs", "groups"), GROUPS, ids=["decay", "l2", "frozen"])
def test_prodigy_d_is_one_estimate_over_all_groups(kwargs, groups) -> None:
    _need("prodigyopt", "prodigyopt")
    import prodigyopt

    def build(cls):
        return lambda ps: cls(
            [dict(g, params=[p]) for p, g in zip(ps, groups, strict=True)], **kwargs
        )

    ours, opt = _run(build(D.Prodigy))
    ref, ref_opt = _run(build(prodigyopt.Prodigy))
    assert _moved(ref) > 1e-2
    assert _err(ours, ref) <= 1e-10
    for key in ("d", "d_max", "d_numerator", "d_hat", "k"):
        for mine, theirs in zip(opt.param_groups, ref_opt.param_groups, strict=True):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-10, abs=0), key
    # one estimate: the first group alone would learn another d — unless the other is frozen
    alone, _ = _run(lambda ps: D.Prodigy([dict(groups[0], params=[ps[0]])], **kwargs))
    if groups[1].get("lr") == 0.0:
        assert np.array_equal(alone[0], ours[0]) and np.array_equal(ours[1], THETA0[1])
    else:
        assert abs(alone[0] - ours[0]).max() > 1e-6
    no_kernel = "default: chain core scale_by_prodigy has no fast kernel"
    assert set(last_path(opt).values()) == {no_kernel}


def test_prodigy_maximize_ascends_what_prodigyopt_descends() -> None:
    """maximize=True on g is prodigyopt on −g (prodigyopt has no maximize)."""
    _need("prodigyopt", "prodigyopt")
    import prodigyopt

    ours, _ = _run(lambda ps: D.Prodigy(ps, maximize=True, weight_decay=0.1), flip=True)
    ref, _ = _run(lambda ps: prodigyopt.Prodigy(ps, weight_decay=0.1))
    assert _moved(ref) > 1e-2 and _err(ours, ref) <= 1e-10


def test_prodigy_decay_switches_agree_or_are_refused() -> None:
    p = [torch.zeros(2, requires_grad=True)]
    for kwargs, mode in [
        (dict(), "decoupled"),
        (dict(decouple=False), "l2"),
        (dict(weight_decay_mode="l2"), "l2"),
        (dict(decoupled_weight_decay=False), "l2"),
        (dict(decouple=True, weight_decay_mode="decoupled"), "decoupled"),
    ]:
        group = D.Prodigy(p, **kwargs).param_groups[0]
        assert (group["weight_decay_mode"], group["decouple"]) == (mode, mode == "decoupled")
    with pytest.raises(ValueError, match="decouple=False contradicts weight_decay_mode"):
        D.Prodigy(p, decouple=False, weight_decay_mode="decoupled")
    with pytest.raises(ValueError, match="weight_decay_mode='independent' is not valid"):
        D.Prodigy(p, weight_decay_mode="independent")
    with pytest.raises(ValueError, match="fsdp_in_use"):
        D.Prodigy(p, fsdp_in_use=True)
    # prodigyopt's positional order: lr, betas, beta3, eps, weight_decay, decouple, …
    group = D.Prodigy(p, 1.0, (0.9, 0.99), 0.95, 1e-8, 0.1, False).param_groups[0]
    assert (group["beta3"], group["weight_decay"], group["decouple"]) == (0.95, 0.1, False)


def test_prodigy_groups_share_one_lr_or_are_frozen() -> None:
    a, b = (torch.zeros(2, requires_grad=True) for _ in range(2))
    opt = D.Prodigy([a], lr=1.0)
    before = copy.deepcopy(opt.state_dict())
    with pytest.raises(ValueError, match=r"lr=0\.5.*largest one \(1\.0\) or 0"):
        opt.add_param_group({"params": [b], "lr": 0.5})
    assert opt.state_dict() == before and len(opt.param_groups) == 1
    opt.add_param_group({"params": [b], "lr": 0.0})
    opt.param_groups[1]["lr"] = 0.3  # a scheduler that breaks the rule: refused at the step
    a.grad, b.grad = torch.ones(2), torch.ones(2)
    with pytest.raises(ValueError, match="param group 1 has lr=0.3"):
        opt.step()
    assert opt.state_dict()["state"] == {} and torch.equal(a.detach(), torch.zeros(2))


def test_prodigy_skipped_step_leaves_the_estimate() -> None:
    p = torch.ones(3, dtype=torch.float64, requires_grad=True)
    opt = D.Prodigy([p], nonfinite="skip")
    p.grad = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    opt.step()
    opt.step()
    before = copy.deepcopy(opt.state_dict())
    p.grad = torch.tensor([1.0, math.nan, 3.0], dtype=torch.float64)
    opt.step()
    assert opt.skipped_steps == 1
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]


def test_prodigy_complex_parameters_step_as_their_real_views() -> None:
    z = torch.tensor([1 + 2j, -0.5 + 1j], dtype=torch.complex128, requires_grad=True)
    r = torch.view_as_real(z.detach()).clone().requires_grad_(True)
    oz, orr = D.Prodigy([z], weight_decay=0.1), D.Prodigy([r], weight_decay=0.1)
    for t in range(20):
        g = torch.tensor([[0.3 + t * 0.01, -0.2], [0.1, 0.4 - t * 0.02]], dtype=torch.float64)
        z.grad, r.grad = torch.view_as_complex(g.clone()), g.clone()
        oz.step()
        orr.step()
    assert torch.equal(torch.view_as_real(z.detach()), r.detach())
    assert oz.param_groups[0]["d"] == orr.param_groups[0]["d"] > 1e-6


def test_prodigy_trace_shows_d() -> None:
    from descend.explain import explain

    frame = explain("prodigy", gradients=[0.02, 0.01, -0.03], start=1.0)
    assert {"d", "d_hat", "dlr", "first_moment", "second_moment", "denominator"} <= set(
        frame.columns
    )
    assert frame["d"].iloc[0] == pytest.approx(1e-6) and frame["d"].iloc[-1] > 1e-6


# -- LAMB and LARS: masks as param groups ----------------------------------------------------
def _optax_run(make):
    _need("optax", "optax")
    return optax_reference(lambda _: make())({}, [t.copy() for t in THETA0], STEPS)


def test_lamb_decay_mask_is_a_group_without_decay() -> None:
    import optax

    ref = _optax_run(lambda: optax.lamb(0.02, weight_decay=0.1, mask=[True, False]))
    groups = lambda ps: [{"params": [ps[0]]}, {"params": [ps[1]], "weight_decay": 0.0}]  # noqa: E731
    ours, _ = _run(lambda ps: D.LAMB(groups(ps), lr=0.02, weight_decay=0.1))
    assert _moved(ref) > 1e-2 and _err(ours, ref) <= 1e-12


@pytest.mark.parametrize("nesterov", [False, True])
def test_lars_masks_are_groups(nesterov) -> None:
    import optax

    ref = _optax_run(
        lambda: optax.lars(
            0.5,
            weight_decay=0.01,
            weight_decay_mask=[True, False],
            trust_coefficient=0.01,
            trust_ratio_mask=[True, False],
            nesterov=nesterov,
        )
    )
    groups = lambda ps: [  # noqa: E731
        {"params": [ps[0]]},
        {"params": [ps[1]], "weight_decay": 0.0, "trust_ratio": False},
    ]
    ours, _ = _run(
        lambda ps: D.LARS(
            groups(ps), lr=0.5, weight_decay=0.01, trust_coefficient=0.01, nesterov=nesterov
        )
    )
    assert _moved(ref) > 1e-2 and _err(ours, ref) <= 1e-12


def test_param_groups_excludes_biases_and_norms_from_decay_and_adaptation() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3), torch.nn.Linear(3, 2))
    groups = D.param_groups(model, 1e-4, no_decay_options={"trust_ratio": False})
    opt = D.LARS(groups)
    kept, excluded = opt.param_groups
    assert [p.shape for p in kept["params"]] == [(3, 4), (2, 3)]
    assert len(excluded["params"]) == 4  # two biases, the norm's weight and bias
    assert (kept["weight_decay"], kept["trust_ratio"]) == (1e-4, True)
    assert (excluded["weight_decay"], excluded["trust_ratio"]) == (0.0, False)


def test_lamb_weight_decay_placements() -> None:
    """trust_ratio (optax): λθ inside the ratio; decoupled (Keras): θ(1 − γλ) outside; the
    two differ, and without the ratio "decoupled" is AdamW exactly (torch's, on its fast path
    when the kernels are there)."""
    _need("optax", "optax")
    inside, _ = _run(lambda ps: D.LAMB(ps, lr=0.02, weight_decay=0.1))
    outside, _ = _run(lambda ps: D.LAMB(ps, lr=0.02, weight_decay=0.1, convention="keras"))
    assert _err(inside, outside) > 1e-4
    adamw = torch_reference(torch.optim.AdamW)(
        dict(lr=0.02, weight_decay=0.1, eps=1e-6), [t.copy() for t in THETA0], STEPS
    )
    plain, _ = _run(
        lambda ps: D.LAMB(
            ps, lr=0.02, weight_decay=0.1, weight_decay_mode="decoupled", trust_ratio=False
        )
    )
    assert _err(plain, adamw) <= 1e-10


def test_lars_and_lamb_step_each_lab_run_alone() -> None:
    """The trust ratio reads a tensor's norm: in the lab every run has its own optimizer, so
    a run's path is the one it has alone."""
    from descend.lab import run

    for spec in ("lars", "lamb", "prodigy", "adam:cautious=true"):
        both = run("rosenbrock", [spec], starts=[(-1.5, 2.0), (1.5, -0.5)], steps=30)
        alone = run("rosenbrock", [spec], starts=[(-1.5, 2.0)], steps=30)
        np.testing.assert_array_equal(both.trajectories[0], alone.trajectories[0])


# -- everywhere the old ones are -----------------------------------------------------------------
def test_each_makes_progress_on_rosenbrock_at_its_lab_rate() -> None:
    from descend.lab import run
    from descend.landscapes import get

    land = get("rosenbrock")
    assert land.default_lrs["lamb"] == pytest.approx(0.3 * land.default_lrs["adam"])
    assert land.default_lrs["lars"] == 3.0 and land.default_lrs["prodigy"] == 0.1
    for spec in ("prodigy", "lamb", "lars", "adam:cautious=true", "nesterov:cautious=true"):
        result = run("rosenbrock", [spec], steps=300)
        first, last = result.losses[:, 0], result.losses[:, -1]
        assert np.all(last < 0.1 * first), (spec, first, last)


@pytest.mark.parametrize(
    ("spec", "columns"),
    [
        ("lamb", {"trust_ratio", "param_norm", "update_norm", "first_moment"}),
        ("lars", {"trust_ratio", "velocity"}),
        ("adam:cautious=true", {"cautious_mask", "first_moment"}),
    ],
)
def test_explain_shows_the_new_columns(spec, columns) -> None:
    from descend.explain import explain

    frame = explain(spec, gradients=[0.02, 0.01, -0.03], start=1.0)
    assert columns <= set(frame.columns)


def test_compare_and_lr_find_take_them(tmp_path, capsys) -> None:
    from descend.cli import main

    specs = ["prodigy", "lamb:lr=0.01", "lars", "adam:lr=0.01,cautious=true"]
    argv = ["--task", "breast-cancer", "--model", "logistic", "--seeds", "1"]
    rc = main(["compare", *argv, "--optimizers", *specs, "--epochs", "1", "--out", str(tmp_path)])
    assert rc == 0
    capsys.readouterr()
    runs = pd.read_csv(tmp_path / "compare_runs.csv")
    assert list(runs["optimizer"]) == specs and not runs["diverged"].any()
    assert (runs["final_val_acc"] > 0.6).all()  # one epoch of logistic regression learnt
    for spec in specs:
        rc = main(["lr-find", *argv, "--optimizer", spec, "--steps", "20", "--out", str(tmp_path)])
        assert rc == 0 and "suggested lr: steepest" in capsys.readouterr().out


def test_the_web_lab_runs_and_explains_them() -> None:
    from fastapi.testclient import TestClient

    from descend.web import create_app
    from descend.web.catalogue import optimizers

    keys = {h["key"]: h for h in optimizers()["prodigy"]["hyperparameters"]}
    assert keys["beta3"]["optional"] and keys["weight_decay_mode"]["choices"] == [
        "decoupled",
        "l2",
    ]
    client = TestClient(create_app())
    start = {"function": {"name": "rosenbrock"}, "starts": [[-1.2, 1.0]]}
    for spec, column in [("prodigy", "d"), ("lamb", "trust_ratio"), ("lars", "trust_ratio")]:
        run = client.post("/api/run", json={**start, "optimizers": [spec], "steps": 100})
        assert run.status_code == 200 and run.json()["runs"][0]["final_loss"] < 24.2
        body = {"function": {"name": "rosenbrock"}, "optimizer": spec, "start": [-1.2, 1.0]}
        answer = client.post("/api/explain", json={**body, "step": 3}).json()
        assert column in [q["name"] for q in answer["quantities"]]


def test_prodigy_takes_a_share_of_the_model_per_process_and_refuses_slicing_it() -> None:
    """d is reduced across the ranks that share the model (2 ranks: tests/test_distributed.py);
    here, on one rank, sharded (DTensor) parameters and a process group are accepted and step
    as plain ones, and slice_p > 1 on a DTensor — whose sliced s would have no sharding —
    is refused naming it, at construction and at a step after a change of the group."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Shard, distribute_tensor

    assert not dist.is_initialized()
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        mesh = init_device_mesh("cpu", (1,))
        torch.manual_seed(0)
        w, grads = torch.randn(4, 2, dtype=torch.float64), torch.randn(3, 4, 2, dtype=torch.float64)
        plain = torch.nn.Parameter(w.clone())
        shard = torch.nn.Parameter(distribute_tensor(w.clone(), mesh, [Shard(0)]))
        grouped = torch.nn.Parameter(w.clone())
        opts = [
            D.Prodigy([plain], weight_decay=0.1),
            D.Prodigy([shard], weight_decay=0.1),
            D.Prodigy([grouped], weight_decay=0.1, process_group=dist.group.WORLD),
        ]
        for g in grads:
            plain.grad, grouped.grad = g.clone(), g.clone()
            shard.grad = distribute_tensor(g.clone(), mesh, [Shard(0)])
            for opt in opts:
                opt.step()
        assert torch.equal(grouped, plain)
        assert torch.allclose(shard.full_tensor(), plain, rtol=0, atol=1e-15)
        assert plain.sub(w).abs().max() > 1e-6  # d grew and the parameters moved
        ds = [opt.param_groups[0]["d"] for opt in opts]
        assert ds[1] == pytest.approx(ds[0], rel=1e-12) and ds[2] == ds[0]
        state = opts[1].state[shard]
        assert isinstance(state["s"], DTensor) and state["s"].shape == shard.shape
        with pytest.raises(ValueError, match="slice_p=2 is invalid for sharded"):
            D.Prodigy([shard], slice_p=2)
        opts[1].param_groups[0]["slice_p"] = 2
        with pytest.raises(ValueError, match="slice_p=2 is invalid for sharded"):
            opts[1].step()
        D.Prodigy([torch.zeros(2, requires_grad=True)], slice_p=2)  # plain: sliced as before
    finally:
        dist.destroy_process_group()
