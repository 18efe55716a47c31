"""RAdam, Adamax and Adadelta (issue 14, the rest of torch.optim, part A), beyond the shared case
table (``tests/optimizer_cases.py``: 100-step parity with torch.optim, optax x64 and Keras fp64)
and the ported torch suite (``tests/test_torch_suite.py``):

* the first steps written out by hand from the papers (RAdam's un-rectified steps and r_t,
  Adamax's two ε placements, Adadelta's units-from-the-past-steps ratio);
* torch's signatures (positional order, defaults) and the convention rows against the
  installed Keras and optax signatures;
* state-dict interchange with torch.optim (the decoupled-decay switch; the torch → descend →
  torch round trip is ``tests/test_interchange.py``'s);
* the checks of their own keywords (their fast paths: ``tests/test_fast_radam_adamax_adopt.py``,
  ``tests/test_fast_path.py``);
* the surfaces: the lab (rows of per-run hyperparameters equal runs alone; the default rates
  make progress), ``explain`` (their own columns), ``compare`` and ``lr-find``.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import os

import numpy as np
import pytest
import torch

import descend.optim as D
from conftest import require
from descend import lab
from descend.cli import main
from descend.explain import explain

NAMES = ("RAdam", "Adamax", "Adadelta")


def _param(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, requires_grad=True)


def _steps(opt, p, grads) -> list[np.ndarray]:
    out = []
    for g in grads:
        p.grad = torch.as_tensor(g, dtype=torch.float64)
        opt.step()
        out.append(p.detach().numpy().copy())
    return out


# -- the first steps by hand ------------------------------------------------------------------
def _rho(b2: float, t: int) -> tuple[float, float]:
    """Liu et al. 2020, eqs. (5)–(6): ρ_∞ = 2/(1 − β₂) − 1, ρ_t = ρ_∞ − 2tβ₂ᵗ/(1 − β₂ᵗ)."""
    rho_inf = 2 / (1 - b2) - 1
    return rho_inf, rho_inf - 2 * t * b2**t / (1 - b2**t)


def _rect(b2: float, t: int) -> float:
    """Algorithm 2: r_t = √((ρ_t − 4)(ρ_t − 2)ρ_∞ / ((ρ_∞ − 4)(ρ_∞ − 2)ρ_t))."""
    rho_inf, rho_t = _rho(b2, t)
    return math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))


@pytest.mark.parametrize(("threshold", "first"), [(None, 6), (7.0, 8)])
@pytest.mark.parametrize("convention", ["torch", "optax"])
def test_radam_is_momentum_sgd_until_rho_passes_the_threshold(threshold, first, convention):
    """A constant gradient g makes m̂ = g and v̂ = g² exactly (up to rounding), so the steps are
    θ ← θ − γg while ρ_t ≤ threshold (t < 6 for β₂ = 0.999 and torch's 5; t < 8 for 7), then
    θ ← θ − γ·r_t·g·√(1 − β₂ᵗ)/(√(1 − β₂ᵗ)|g| + ε) (torch) or γ·r_t·g/(|g| + ε) (optax)."""
    lr, eps, b2 = 0.01, 1e-3, 0.999
    assert _rho(b2, 5)[1] < 5 < _rho(b2, 6)[1] and _rho(b2, 7)[1] < 7 < _rho(b2, 8)[1]
    g = np.array([0.5, -0.02, 3.0])
    p = _param([1.0, 2.0, -1.0])
    extra = {} if threshold is None else {"threshold": threshold}
    opt = D.RAdam([p], lr=lr, eps=eps, convention=convention, **extra)
    theta = p.detach().numpy().copy()
    for t, got in enumerate(_steps(opt, p, [g] * 10), start=1):
        if t < first:
            theta = theta - lr * g
        elif convention == "torch":
            c2 = 1 - b2**t
            theta = theta - lr * _rect(b2, t) * g * math.sqrt(c2) / (math.sqrt(c2) * abs(g) + eps)
        else:
            theta = theta - lr * _rect(b2, t) * g / (abs(g) + eps)
        np.testing.assert_allclose(got, theta, rtol=1e-14, atol=0)


def test_radam_unrectified_step_with_eps_zero_is_plain_momentum_sgd():
    """u = m̂ on an un-rectified step, whatever √v + ε is: with ε = 0 a coordinate whose
    gradient is 0 stays put, as torch's default (single-tensor) RAdam does (its foreach path
    divides 0 by 0 there and writes NaN: a torch quirk descend does not copy)."""
    p = _param([0.0, 0.0, 0.0])
    ours = _steps(D.RAdam([p], lr=0.1, eps=0.0), p, [[1.0, 0.0, -2.0]])[-1]
    q = _param([0.0, 0.0, 0.0])
    torch_opt = torch.optim.RAdam([q], lr=0.1, eps=0.0, foreach=False)
    np.testing.assert_array_equal(ours, [-0.1, 0.0, 0.2])
    np.testing.assert_array_equal(ours, _steps(torch_opt, q, [[1.0, 0.0, -2.0]])[-1])


def test_adamax_eps_inside_the_max_or_outside_two_steps_by_hand():
    """Kingma & Ba §7.1 with ε as torch/optax (u = max(β₂u, |g| + ε)) and as Keras
    (u = max(β₂u, |g|), divide by u + ε); the second gradient is 0, where they part."""
    lr, b1, b2, eps = 0.1, 0.9, 0.99, 1e-2
    g1 = np.array([0.5, -2e-3, 0.0])
    grads = [g1, np.zeros(3)]
    m1, m2 = (1 - b1) * g1, b1 * (1 - b1) * g1
    want = {}
    u1 = np.abs(g1) + eps  # torch, optax
    u2 = np.maximum(b2 * u1, eps)
    th1 = -lr / (1 - b1) * m1 / u1
    want["inside"] = [th1, th1 - lr / (1 - b1**2) * m2 / u2]
    u1 = np.abs(g1)  # Keras
    u2 = b2 * u1
    th1 = -lr / (1 - b1) * m1 / (u1 + eps)
    want["outside"] = [th1, th1 - lr / (1 - b1**2) * m2 / (u2 + eps)]
    for convention, placement in (("torch", "inside"), ("optax", "inside"), ("keras", "outside")):
        p = _param(np.zeros(3))
        opt = D.Adamax([p], lr=lr, betas=(b1, b2), eps=eps, convention=convention)
        assert opt.param_groups[0]["eps_placement"] == placement
        for got, expected in zip(_steps(opt, p, grads), want[placement], strict=True):
            np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-18)
    assert np.abs(want["inside"][1] - want["outside"][1]).max() > 1e-5  # they do differ


def test_adadelta_three_steps_by_hand():
    """Zeiler 2012, Algorithm 1, with torch's learning rate on Δ."""
    lr, rho, eps = 0.7, 0.8, 1e-4
    grads = [np.array([0.3, -1.0]), np.array([0.1, 2.0]), np.array([-0.2, 0.0])]
    p = _param([0.5, -0.5])
    opt = D.Adadelta([p], lr=lr, rho=rho, eps=eps)
    eg, ex, theta = np.zeros(2), np.zeros(2), np.array([0.5, -0.5])
    for g, got in zip(grads, _steps(opt, p, grads), strict=True):
        eg = rho * eg + (1 - rho) * g**2
        delta = np.sqrt(ex + eps) / np.sqrt(eg + eps) * g
        ex = rho * ex + (1 - rho) * delta**2
        theta = theta - lr * delta
        np.testing.assert_allclose(got, theta, rtol=1e-14)
    np.testing.assert_allclose(opt.state[p]["square_avg"].numpy(), eg, rtol=1e-14)
    np.testing.assert_allclose(opt.state[p]["acc_delta"].numpy(), ex, rtol=1e-14)


# -- signatures and convention rows ----------------------------------------------------------
def _positional(fn) -> list[str]:
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.POSITIONAL_ONLY)
    return [p.name for p in inspect.signature(fn).parameters.values() if p.kind in kinds]


@pytest.mark.parametrize("name", NAMES)
def test_torch_positional_order_keywords_and_defaults(name):
    ours, theirs = getattr(D, name), getattr(torch.optim, name)
    assert _positional(ours) == _positional(theirs)
    torch_keys = set(inspect.signature(theirs).parameters)
    assert torch_keys <= set(inspect.signature(ours).parameters)
    mine = ours([torch.zeros(2, requires_grad=True)]).param_groups[0]
    twin = theirs([torch.zeros(2, requires_grad=True)]).param_groups[0]
    for key in ("lr", "betas", "rho", "eps", "weight_decay", "maximize"):
        if key in twin:
            assert mine[key] == twin[key], key
    # a torch-style positional call means what it means for torch
    args = {"RAdam": (0.01, (0.8, 0.9), 1e-6, 0.1, True), "Adamax": (0.01, (0.8, 0.9), 1e-6, 0.1)}
    args["Adadelta"] = (0.5, 0.8, 1e-5, 0.1)
    mine = ours([torch.zeros(2, requires_grad=True)], *args[name]).param_groups[0]
    twin = theirs([torch.zeros(2, requires_grad=True)], *args[name]).param_groups[0]
    for key in ("lr", "betas", "rho", "eps", "weight_decay", "decoupled_weight_decay"):
        if key in twin and key != "decoupled_weight_decay":
            assert mine[key] == twin[key], key
    if name == "RAdam":
        assert mine["weight_decay_mode"] == "decoupled"


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")  # before keras is first imported
    require(importlib.util.find_spec("keras") is not None, "pip install keras")
    import keras

    return keras


def _defaults(fn) -> dict:
    return {k: p.default for k, p in inspect.signature(fn).parameters.items()}


def test_keras_rows_are_keras_defaults():
    keras = _keras()
    k = _defaults(keras.optimizers.Adamax)
    group = D.Adamax([torch.zeros(1, requires_grad=True)], convention="keras").param_groups[0]
    assert (group["lr"], group["betas"], group["eps"]) == (
        k["learning_rate"],
        (k["beta_1"], k["beta_2"]),
        k["epsilon"],
    )
    k = _defaults(keras.optimizers.Adadelta)
    group = D.Adadelta([torch.zeros(1, requires_grad=True)], convention="keras").param_groups[0]
    assert (group["lr"], group["rho"], group["eps"]) == (
        k["learning_rate"],
        k["rho"],
        k["epsilon"],
    )
    assert not hasattr(keras.optimizers, "RAdam")  # hence no keras row
    with pytest.raises(ValueError, match="frameworks that have it are torch, optax"):
        D.RAdam([torch.zeros(1, requires_grad=True)], convention="keras")


def test_optax_rows_are_optax_defaults():
    require(importlib.util.find_spec("optax") is not None, "pip install optax")
    import optax

    o = _defaults(optax.radam)
    group = D.RAdam([torch.zeros(1, requires_grad=True)], convention="optax").param_groups[0]
    assert group["betas"] == (o["b1"], o["b2"]) and group["eps"] == o["eps"]
    assert group["eps_root"] == o["eps_root"] and group["threshold"] == o["threshold"]
    assert group["nesterov"] == o["nesterov"]
    o = _defaults(optax.adamax)
    group = D.Adamax([torch.zeros(1, requires_grad=True)], convention="optax").param_groups[0]
    assert group["betas"] == (o["b1"], o["b2"]) and group["eps"] == o["eps"]
    o = _defaults(optax.adadelta)
    group = D.Adadelta([torch.zeros(1, requires_grad=True)], convention="optax").param_groups[0]
    assert group["rho"] == o["rho"] and group["eps"] == o["eps"]
    assert o["learning_rate"] is None and group["lr"] == 1.0  # optax has none: torch's


# -- their own checks ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("RAdam", dict(threshold=3.0), "threshold=3.0 is invalid: it must be finite and ≥ 4"),
        ("RAdam", dict(threshold=math.inf), "threshold"),
        ("RAdam", dict(eps_root=1e-4), "eps_root=0.0001 needs eps_placement 'outside'"),
        ("RAdam", dict(nesterov=1), "nesterov must be True or False"),
        ("RAdam", dict(eps_placement="under"), "eps_placement='under' is not valid"),
        ("RAdam", dict(decoupled_weight_decay=True, weight_decay_mode="l2"), "contradicts"),
        ("Adamax", dict(eps_placement="hat"), "eps_placement='hat' is not valid"),
        ("Adadelta", dict(rho=1.0), "rho=1.0 is invalid: it must be in \\[0, 1\\)"),
        ("Adadelta", dict(rho=1.1), "rho=1.1 is invalid"),
    ],
)
def test_own_keywords_are_checked(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        getattr(D, name)([torch.zeros(2, requires_grad=True)], **kwargs)


# -- state dicts with torch (the round trip is tests/test_interchange.py's) ---------------------
def _torch_params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(4, 3, generator=g, dtype=torch.float64))]


def test_radam_decoupled_weight_decay_is_the_decoupled_mode_both_ways():
    mine = D.RAdam(_torch_params(), weight_decay=0.1, decoupled_weight_decay=True)
    assert mine.param_groups[0]["weight_decay_mode"] == "decoupled"
    assert mine.state_dict()["param_groups"][0]["decoupled_weight_decay"] is True
    coupled = torch.optim.RAdam(_torch_params(), weight_decay=0.1).state_dict()
    mine.load_state_dict(coupled)  # the checkpoint's meaning wins
    assert mine.param_groups[0]["weight_decay_mode"] == "l2"
    twin = torch.optim.RAdam(_torch_params(), weight_decay=0.1)
    twin.load_state_dict(
        D.RAdam(_torch_params(), weight_decay=0.1, weight_decay_mode="decoupled").state_dict()
    )
    assert twin.param_groups[0]["decoupled_weight_decay"] is True


# -- the lab, explain, compare, lr-find ---------------------------------------------------------
@pytest.mark.parametrize(
    "specs",
    [
        ["radam:lr=0.003,beta2=0.99", "radam:lr=0.002,beta1=0.5,beta2=0.9,eps=1e-3"],
        ["adamax:lr=0.05,beta2=0.9", "adamax:lr=0.02,beta1=0.8"],
        ["adamax:lr=0.05,convention=keras,eps=1e-3", "adamax:lr=0.01,convention=keras"],
        ["adadelta:lr=1,eps=1e-4", "adadelta:lr=0.5"],
    ],
)
def test_lab_rows_of_per_run_hyperparameters_equal_runs_alone(specs):
    """The lab steps the runs of one configuration group as rows of one (N, d) tensor with
    (N, 1) hyperparameter columns; every row must follow the run it would be alone."""
    together = lab.run("rosenbrock", specs, steps=60)
    for i, spec in enumerate(specs):
        alone = lab.run("rosenbrock", [spec], steps=60)
        rows = slice(3 * i, 3 * i + 3)  # rosenbrock's three starts
        np.testing.assert_allclose(
            together.trajectories[rows], alone.trajectories, rtol=0, atol=1e-13
        )


@pytest.mark.parametrize("name", ["radam", "adamax", "adadelta"])
def test_the_default_lab_rates_make_progress(name):
    """With its spec's ``lab_lr`` (RAdam the SGD rate: its first steps are SGD steps γ·m̂;
    Adamax 2× Adam's, as torch's 2e-3 for 1e-3; Adadelta γ = 1, the paper's), every run on
    three landscapes ends below where it started, none diverges."""
    for landscape in ("rosenbrock", "himmelblau", "beale"):
        result = lab.run(landscape, [name], steps=300)
        metrics = result.metrics
        assert not metrics["diverged"].any(), (landscape, metrics)
        assert (result.losses[:, -1] < result.losses[:, 0]).all(), landscape
        assert metrics["lr_source"].eq("landscape").all()


def test_explain_shows_their_own_columns(capsys):
    table = explain("radam:lr=0.01", gradients=[0.02, 0.01, -0.03] * 3)
    rho = [_rho(0.999, t)[1] for t in range(1, 10)]
    np.testing.assert_allclose(table["rho"], rho, rtol=1e-14)
    np.testing.assert_allclose(table["rect"][:5], 0.0)
    np.testing.assert_allclose(table["rect"][5:], [_rect(0.999, t) for t in range(6, 10)])
    symbols = {
        "radam": ("ρ_t", "r_t"),
        "adamax": ("u∞",),
        "adadelta": ("√(E[Δ²]+ε)", "E[Δ²]"),
    }
    for name, wanted in symbols.items():
        assert main(["explain", name, "--grads", "0.02,0.01,-0.03"]) == 0
        out = capsys.readouterr().out
        for symbol in wanted:
            assert symbol in out, (name, symbol)
        if name == "adadelta":
            assert "adadelta (lr=1.0, rho=0.9, eps=1e-06)" in out  # its ρ in the title


def test_compare_and_lr_find_take_them(tmp_path, capsys):
    argv = ["compare", "--task", "breast-cancer", "--model", "logistic", "--seeds", "1"]
    argv += ["--epochs", "1", "--optimizers", "radam;adamax;adadelta", "--out", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert all(f"{name} B=32" in out for name in ("radam", "adamax", "adadelta"))
    for name in ("radam", "adamax", "adadelta"):
        argv = ["lr-find", "--task", "breast-cancer", "--model", "logistic", "--optimizer", name]
        argv += ["--steps", "20", "--quiet", "--out", str(tmp_path / name)]
        assert main(argv) == 0
        assert "suggested lr" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("spec", "make"),
    [
        ("radam:lr=0.002", lambda w: torch.optim.RAdam(w, lr=0.002)),
        ("adamax:lr=0.05,beta1=0.8", lambda w: torch.optim.Adamax(w, lr=0.05, betas=(0.8, 0.999))),
        ("adadelta:rho=0.95", lambda w: torch.optim.Adadelta(w, rho=0.95)),
    ],
)
def test_the_web_lab_runs_them_as_torch_optim(spec, make):
    from descend.web import create_app
    from test_web_api import Client

    client = Client(create_app())
    try:
        body = {"function": {"name": "rosenbrock"}, "optimizers": [spec]}
        r = client.post("/api/run", json={**body, "starts": [[-1.2, 1.0]], "steps": 40})
        got = np.array(r.json()["runs"][0]["trajectory"])
    finally:
        client.close()
    w = torch.tensor([-1.2, 1.0], dtype=torch.float64, requires_grad=True)
    opt = make([w])
    expected = [w.detach().numpy().copy()]
    for _ in range(40):
        opt.zero_grad()
        x, y = w[0], w[1]
        ((1 - x) ** 2 + 100 * (y - x * x) ** 2).backward()
        opt.step()
        expected.append(w.detach().numpy().copy())
    np.testing.assert_allclose(got, np.array(expected), rtol=1e-10, atol=1e-12)
