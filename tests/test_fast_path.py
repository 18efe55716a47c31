"""The fast path (descend.optim.fast) against the default path and torch.optim.

Every configuration runs 100 steps on both paths from the same start with the same
gradients (those of a loss with varying curvature); the fast path must match the default
path to fp32 ‖a − b‖/‖b‖ ≤ 1e-6 and fp64 ≤ 1e-12, on parameters of several shapes (a
scalar and an empty tensor included; a separate test splits large tensors between threads).
``fused=True`` guarantees the fast path ran (it raises otherwise). Then: state dicts move
between the paths, param groups, schedulers (lr and momentum), the non-finite policies,
different step counts per parameter, and every documented fallback.
"""

from __future__ import annotations

import copy
import math
import os
import re
import subprocess
import sys
import warnings

import pytest
import torch

import descend.optim as D
from descend.optim import fast
from descend.transforms import scale_by_adam, scale_by_lr

# every test steps the compiled kernels, at 1 thread unless it says otherwise (conftest)
pytestmark = pytest.mark.usefixtures("fast_kernels", "one_thread")


STEPS = 100
SHAPES = [(7, 3), (), (0,), (40,), (1001,)]


def make_params(dtype=torch.float32, shapes=SHAPES, seed=0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(s, generator=g, dtype=torch.float64).to(dtype).requires_grad_() for s in shapes
    ]


def set_grads(params, step: int, sign: float = 1.0) -> None:
    """∇ of Σ ¼p⁴ + ½p² + 0.3·p·sin(3p + t/10): the gradient moves with θ and with the step."""
    with torch.no_grad():
        for p in params:
            phase = 3 * p + step / 10
            p.grad = sign * (p**3 + p + 0.3 * torch.sin(phase) + 0.9 * p * torch.cos(phase))


def run(make_opt, dtype=torch.float32, steps=STEPS, params=None, each=None, grads=set_grads):
    """``steps`` steps from ``make_params`` (or ``params``), gradients from ``grads`` (as
    :func:`set_grads`); an optimizer that maximizes gets −∇ (so it still descends the loss
    and stays finite)."""
    params = make_params(dtype) if params is None else params
    opt = make_opt(params)
    sign = -1.0 if opt.defaults.get("maximize") else 1.0
    for t in range(steps):
        grads(params, t, sign)
        if each is not None:
            each(t, params, opt)
        opt.step()
    return [p.detach().clone() for p in params], opt


def _max_abs(x: torch.Tensor) -> float:
    return float(x.abs().max()) if x.numel() else 0.0


def rel(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    num = sum(float(((x.double() - y.double()) ** 2).sum()) for x, y in zip(a, b)) ** 0.5
    den = sum(float((y.double() ** 2).sum()) for y in b) ** 0.5
    return num / den


TOL = {torch.float32: 1e-6, torch.float64: 1e-12}

AMS_V_HAT = dict(amsgrad=True, amsgrad_of="corrected")
# (id, spec, keywords): every named optimizer × convention × the switches that change its kernel
CONFIGS = [
    *[(f"sgd-{c}", "sgd", dict(convention=c, lr=0.01)) for c in D.CONVENTIONS],
    *[(f"momentum-{c}", "momentum", dict(convention=c, lr=0.01)) for c in D.CONVENTIONS],
    *[(f"nesterov-{c}", "nesterov", dict(convention=c, lr=0.01)) for c in D.CONVENTIONS],
    ("momentum-dampening", "momentum", dict(lr=0.01, dampening=0.3)),
    ("momentum-ema", "momentum-ema", dict(lr=0.01)),
    ("momentum-ema-debias", "momentum-ema", dict(lr=0.01, debias=True)),
    ("momentum-ema-nesterov", "momentum-ema", dict(lr=0.01, nesterov=True)),
    ("sgd-l2", "momentum", dict(lr=0.01, weight_decay=0.1)),
    ("sgd-decoupled", "momentum", dict(lr=0.01, weight_decay=0.1, weight_decay_mode="decoupled")),
    ("sgd-independent", "sgd", dict(lr=0.01, weight_decay=0.01, weight_decay_mode="independent")),
    ("sgd-maximize", "momentum", dict(lr=0.01, maximize=True)),
    ("sgd-clip", "nesterov", dict(lr=0.01, max_grad_norm=5.0, clip_value=0.5)),
    *[(f"adagrad-{c}", "adagrad", dict(convention=c)) for c in D.CONVENTIONS],
    ("adagrad-decay", "adagrad", dict(lr_decay=0.05, weight_decay=0.01)),
    *[(f"rmsprop-{c}", "rmsprop", dict(convention=c, lr=1e-3)) for c in D.CONVENTIONS],
    *[
        (f"rmsprop-centered-{c}", "rmsprop-centered", dict(convention=c, lr=1e-3))
        for c in D.CONVENTIONS
    ],
    ("rmsprop-momentum", "rmsprop", dict(lr=1e-3, momentum=0.9)),
    ("rmsprop-centered-nesterov", "rmsprop-centered", dict(lr=1e-3, momentum=0.9, nesterov=True)),
    ("rmsprop-momentum-keras", "rmsprop", dict(convention="keras", momentum=0.9)),
    ("rmsprop-momentum-ema", "rmsprop", dict(lr=1e-3, momentum=0.5, momentum_form="ema")),
    (
        "rmsprop-bias-init",
        "rmsprop",
        dict(lr=1e-3, bias_correction=True, initial_accumulator_value=0.1),
    ),
    ("rmsprop-inside-l2", "rmsprop", dict(lr=1e-3, eps_placement="inside", weight_decay=0.01)),
    *[(f"adam-{c}", "adam", dict(convention=c)) for c in D.CONVENTIONS],
    *[(f"adamw-{c}", "adamw", dict(convention=c)) for c in D.CONVENTIONS],
    *[(f"amsgrad-{c}", "adam", dict(convention=c, amsgrad=True)) for c in D.CONVENTIONS],
    (
        "amsgrad-corrected-inside",
        "adam",
        dict(amsgrad=True, amsgrad_of="corrected", eps_placement="inside"),
    ),
    ("adam-no-bias-correction", "adam", dict(bias_correction=False)),
    ("adam-bias-m-only", "adam", dict(bias_correction=(True, False))),
    ("adam-bias-v-only-hat", "adam", dict(bias_correction=(False, True), eps_placement="hat")),
    ("adam-inside-l2", "adam", dict(eps_placement="inside", weight_decay=0.05)),
    ("adam-independent", "adam", dict(weight_decay=1e-3, weight_decay_mode="independent")),
    ("adam-small-beta1", "adam", dict(betas=(0.4, 0.9))),  # lerp weight ≥ ½: torch's other form
    ("adam-maximize-clip", "adamw", dict(maximize=True, max_grad_norm=1.0, clip_value=2.0)),
    *[(f"nadam-{c}", "nadam", dict(convention=c)) for c in D.CONVENTIONS],
    ("nadam-decoupled", "nadam", dict(weight_decay=0.01, decoupled_weight_decay=True)),
    ("nadam-l2-psi", "nadam", dict(weight_decay=0.01, momentum_decay=0.01)),
    *[(f"lion-{c}", "lion", dict(convention=c, lr=1e-3)) for c in D.CONVENTIONS],
    ("lion-decoupled", "lion", dict(lr=1e-3, weight_decay=0.5)),
    ("lion-l2", "lion", dict(lr=1e-3, weight_decay=0.1, weight_decay_mode="l2")),
    ("lion-independent", "lion", dict(lr=1e-3, weight_decay=1e-3, weight_decay_mode="independent")),
    ("lion-betas", "lion", dict(lr=3e-3, betas=(0.95, 0.98))),
    ("lion-maximize-clip", "lion", dict(lr=1e-3, maximize=True, max_grad_norm=1.0, clip_value=2.0)),
    # AdEMAMix, Schedule-Free (issue #14); bit for bit given a correctly rounded √:
    # tests/test_fast_ademamix_schedule_free.py
    *[(f"ademamix-{c}", "ademamix", dict(convention=c, lr=1e-3)) for c in ("torch", "optax")],
    (
        "ademamix-warmups-l2",
        "ademamix",
        dict(alpha_warmup=30, beta3_warmup=30, weight_decay=0.01, weight_decay_mode="l2"),
    ),
    ("sf-adamw", "schedule-free-adamw", dict(lr=0.01, weight_decay=0.1, warmup_steps=20)),
    (
        "sf-adamw-optax-z",
        "schedule-free-adamw",
        dict(convention="optax", lr=0.01, weight_decay=0.1, decay_at_z=True),
    ),
    ("sf-sgd", "schedule-free-sgd", dict(lr=0.01, weight_decay=0.1, warmup_steps=20)),
    (
        "sf-sgd-optax-maximize",
        "schedule-free-sgd",
        dict(convention="optax", lr=0.01, maximize=True, warmup_steps=20),
    ),
    # RAdam, Adamax, ADOPT (issue #14; every switch bitwise: test_fast_radam_adamax_adopt.py)
    ("radam-torch", "radam", {}),
    ("radam-decoupled", "radam", dict(weight_decay=0.1, decoupled_weight_decay=True)),
    ("radam-nesterov-root", "radam", dict(convention="optax", nesterov=True, eps_root=1e-6)),
    *[(f"adamax-{c}", "adamax", dict(convention=c)) for c in ("torch", "keras")],
    ("adopt", "adopt", {}),
    (
        "adopt-decoupled-nesterov",
        "adopt",
        dict(weight_decay=0.1, decoupled_weight_decay=True, nesterov=True),
    ),
    # Adadelta, Rprop, ASGD (issue #14)
    *[(f"adadelta-{c}", "adadelta", dict(convention=c)) for c in D.CONVENTIONS],
    ("adadelta-l2", "adadelta", dict(lr=0.5, rho=0.95, eps=1e-4, weight_decay=0.1)),
    ("adadelta-decoupled", "adadelta", dict(weight_decay=0.01, weight_decay_mode="decoupled")),
    ("adadelta-independent", "adadelta", dict(weight_decay=1e-3, weight_decay_mode="independent")),
    ("adadelta-maximize-clip", "adadelta", dict(maximize=True, max_grad_norm=1.0, clip_value=2.0)),
    ("rprop", "rprop", {}),
    ("rprop-etas-sizes", "rprop", dict(lr=0.05, etas=(0.3, 1.5), step_sizes=(1e-3, 0.2))),
    ("rprop-lr-below-min", "rprop", dict(lr=1e-8, etas=(0.6, 1.1), step_sizes=(1e-6, 1.0))),
    ("rprop-maximize-clip", "rprop", dict(maximize=True, max_grad_norm=1.0, clip_value=2.0)),
    ("asgd", "asgd", {}),  # t₀ = 10⁶: μ stays 1, θ̄ = θ
    ("asgd-averaging-l2", "asgd", dict(lr=0.03, lambd=0.01, alpha=0.6, t0=10, weight_decay=0.1)),
    ("asgd-maximize-clip", "asgd", dict(lr=0.01, t0=5, maximize=True, max_grad_norm=1.0)),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("spec,kwargs", [c[1:] for c in CONFIGS], ids=[c[0] for c in CONFIGS])
def test_fast_matches_default_after_100_steps(spec, kwargs, dtype):
    a, opt = run(lambda ps: D.from_spec(spec, ps, fused=True, **kwargs), dtype)
    b, ref = run(lambda ps: D.from_spec(spec, ps, fused=False, **kwargs), dtype)
    assert fast.last_path(opt) == {0: "fast"}
    assert rel(a, b) <= TOL[dtype]
    # the same state under the same keys, dtypes and shapes (state_dict compatibility)
    for p, q in zip(opt.param_groups[0]["params"], ref.param_groups[0]["params"]):
        sa, sb = opt.state[p], ref.state[q]
        assert sorted(sa) == sorted(sb)
        for key in sa:
            if not isinstance(sb[key], torch.Tensor):  # Schedule-Free's γ_max, Σw: numbers
                assert type(sa[key]) is type(sb[key]) and sa[key] == sb[key], key
                continue
            assert sa[key].dtype == sb[key].dtype and sa[key].shape == sb[key].shape, key
            diff = _max_abs(sa[key].double() - sb[key].double())
            assert diff <= max(1e-4 * _max_abs(sb[key].double()), 1e-12), key


LION = [c for c in CONFIGS if c[1] == "lion"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("spec,kwargs", [c[1:] for c in LION], ids=[c[0] for c in LION])
def test_lion_kernel_equals_the_chain_bitwise(spec, kwargs, dtype):
    """Lion's kernel spells out the chain's operations (m·β₁, then add_ with alpha = one fma;
    sign; m·β₂, then add_ = one fma): 100 steps agree bit for bit, θ and m, in both dtypes
    (a rounding difference could flip a sign, a full ±γ step)."""
    a, opt = run(lambda ps: D.from_spec(spec, ps, fused=True, **kwargs), dtype)
    b, ref = run(lambda ps: D.from_spec(spec, ps, fused=False, **kwargs), dtype)
    assert fast.last_path(opt) == {0: "fast"}
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    for p, q in zip(opt.param_groups[0]["params"], ref.param_groups[0]["params"]):
        assert torch.equal(opt.state[p]["exp_avg"], ref.state[q]["exp_avg"])
        assert torch.equal(opt.state[p]["step"], ref.state[q]["step"])


@pytest.mark.parametrize(
    "spec",
    ["adamw", "nesterov", "rmsprop-centered:momentum=0.9", "nadam", "adagrad", "lion"]
    + ["radam", "adamax", "adopt"]  # RAdam, Adamax, ADOPT (issue #14)
    + ["adadelta", "rprop", "asgd:t0=2"],  # Adadelta, Rprop, ASGD (issue #14)
)
def test_two_threads_split_the_work(spec):
    """Large tensors are cut into per-thread ranges across tensor boundaries."""
    torch.set_num_threads(2)
    shapes = [(40_000,), (3,), (33_001,), (70_001,)]
    results = []
    for fused in (True, False):
        params = make_params(torch.float64, shapes)
        results.append(
            run(lambda ps, f=fused: D.from_spec(spec, ps, fused=f), steps=5, params=params)
        )
    (a, opt), (b, _) = results
    assert fast.last_path(opt) == {0: "fast"}
    assert rel(a, b) <= 1e-12


TORCH = [
    ("adam", torch.optim.Adam, D.Adam, dict(lr=1e-3, weight_decay=0.01)),
    ("adamw-amsgrad", torch.optim.AdamW, D.AdamW, dict(lr=1e-3, amsgrad=True)),
    ("sgd-nesterov", torch.optim.SGD, D.SGD, dict(lr=0.01, momentum=0.9, nesterov=True)),
    ("sgd-dampening", torch.optim.SGD, D.SGD, dict(lr=0.01, momentum=0.9, dampening=0.2)),
    ("adagrad", torch.optim.Adagrad, D.Adagrad, dict(lr=0.05, lr_decay=0.01)),
    (
        "rmsprop-centered-momentum",
        torch.optim.RMSprop,
        D.RMSprop,
        dict(lr=1e-3, momentum=0.9, centered=True),
    ),
    ("nadam", torch.optim.NAdam, D.NAdam, dict(lr=2e-3, weight_decay=0.01)),
    (
        "nadam-decoupled",
        torch.optim.NAdam,
        D.NAdam,
        dict(weight_decay=0.01, decoupled_weight_decay=True),
    ),
    # RAdam, Adamax (issue #14): torch's for-loop, both of RAdam's weight decays
    ("radam", torch.optim.RAdam, D.RAdam, dict(lr=1e-2, weight_decay=0.01)),
    (
        "radam-decoupled",
        torch.optim.RAdam,
        D.RAdam,
        dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True),
    ),
    ("adamax", torch.optim.Adamax, D.Adamax, dict(lr=2e-3, weight_decay=0.01)),
]


@pytest.mark.parametrize("name,torch_cls,ours,kwargs", TORCH, ids=[t[0] for t in TORCH])
def test_fast_matches_torch_optim(name, torch_cls, ours, kwargs):
    """An independent reference: torch's own for-loop implementation, fp64."""
    a, _ = run(lambda ps: ours(ps, fused=True, **kwargs), torch.float64)
    b, _ = run(lambda ps: torch_cls(ps, foreach=False, **kwargs), torch.float64)
    assert rel(a, b) <= 1e-12


@pytest.mark.parametrize(
    "spec,kwargs",
    [
        ("adamw", {}),
        ("momentum", {}),
        ("nadam", {}),
        ("adagrad", {}),
        ("rmsprop-centered", dict(momentum=0.9)),
        ("lion", dict(lr=1e-3, weight_decay=0.1)),
        # AdEMAMix, Schedule-Free (issue #14)
        ("ademamix", dict(alpha_warmup=60, beta3_warmup=60, weight_decay=0.1)),
        ("schedule-free-adamw", dict(lr=0.01, weight_decay=0.1, warmup_steps=60)),
        ("schedule-free-sgd", dict(lr=0.01, warmup_steps=60)),
        # RAdam, Adamax, ADOPT (issue #14)
        ("radam", dict(weight_decay=0.1, decoupled_weight_decay=True)),
        ("adamax", dict(weight_decay=0.01)),
        ("adopt", dict(weight_decay=0.1, decoupled_weight_decay=True)),
        # Adadelta, Rprop, ASGD (issue #14)
        ("adadelta", dict(weight_decay=0.01)),
        ("rprop", {}),
        ("asgd", dict(lr=0.02, lambd=0.01, t0=30)),  # averaging starts after the switch
    ],
)
@pytest.mark.parametrize("direction", ["fast->default", "default->fast"])
def test_state_dict_moves_between_paths(spec, kwargs, direction):
    """Save after 50 steps on one path, load into an optimizer on the other path (through a
    serialised copy), continue 50 steps: the same as 100 steps on the default path."""
    first, second = (True, False) if direction == "fast->default" else (False, True)
    params = make_params(torch.float64)
    opt = D.from_spec(spec, params, fused=first, **kwargs)
    for t in range(50):
        set_grads(params, t)
        opt.step()
    saved = opt.state_dict()
    resumed = [p.detach().clone().requires_grad_() for p in params]
    opt2 = D.from_spec(spec, resumed, fused=second, **kwargs)
    opt2.load_state_dict(torch.load(_roundtrip(saved), weights_only=False))
    for t in range(50, STEPS):
        set_grads(resumed, t)
        opt2.step()
    expected, _ = run(lambda ps: D.from_spec(spec, ps, fused=False, **kwargs), torch.float64)
    assert rel([p.detach() for p in resumed], expected) <= 1e-12
    if second:
        assert fast.last_path(opt2) == {0: "fast"}


def _roundtrip(obj):
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


def test_torch_state_dict_loads_into_fast_sgd():
    """torch.optim.SGD's state (momentum buffers) continues on the fast path as in torch."""
    params = make_params(torch.float64)
    ref = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    for t in range(30):
        set_grads(params, t)
        ref.step()
    ours_params = [p.detach().clone().requires_grad_() for p in params]
    ours = D.SGD(ours_params, lr=0.01, momentum=0.9, fused=True)
    ours.load_state_dict(copy.deepcopy(ref.state_dict()))  # (loading shares the tensors)
    for t in range(30, 60):
        set_grads(params, t)
        set_grads(ours_params, t)
        ref.step()
        ours.step()
    assert rel([p.detach() for p in ours_params], [p.detach() for p in params]) <= 1e-12


def _two_groups(fused):
    def make(params):
        return D.Adam(
            [
                {"params": params[:2], "lr": 3e-3, "betas": (0.8, 0.99), "weight_decay": 0.1},
                {"params": params[2:], "eps": 1e-6, "amsgrad": True},
            ],
            lr=1e-3,
            fused=fused,
        )

    return make


def test_param_groups_with_different_hyperparameters():
    a, opt = run(_two_groups(True))
    b, _ = run(_two_groups(False))
    assert fast.last_path(opt) == {0: "fast", 1: "fast"}
    assert rel(a, b) <= 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_schedulers_change_lr_and_momentum(dtype):
    """OneCycleLR moves lr and cycles β₁ (Adam) or momentum (SGD) at every step."""

    def adam(params, fused):
        opt = D.Adam(params, lr=1e-3, fused=fused)
        return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=STEPS)

    def sgd(params, fused):
        opt = D.SGD(params, lr=0.01, momentum=0.9, nesterov=True, fused=fused)
        return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=STEPS)

    for build in (adam, sgd):
        results = []
        for fused in (True, False):
            params = make_params(dtype)
            opt, sched = build(params, fused)
            for t in range(STEPS):
                set_grads(params, t)
                opt.step()
                sched.step()
            results.append([p.detach() for p in params])
        assert rel(*results) <= TOL[dtype]


def test_momentum_switched_on_by_a_schedule():
    """momentum 0 → 0.9 mid-run: the velocity appears then (v₁ = g), as on the default path."""

    def each(t, params, opt):
        if t == 40:
            opt.param_groups[0]["momentum"] = 0.9

    a, _ = run(lambda ps: D.SGD(ps, lr=0.01, fused=True), torch.float64, each=each)
    b, _ = run(lambda ps: D.SGD(ps, lr=0.01, fused=False), torch.float64, each=each)
    assert rel(a, b) <= 1e-12


@pytest.mark.parametrize("policy", ["skip", "propagate"])
def test_nonfinite_gradients(policy):
    """A NaN and an Inf gradient at steps 20 and 21: skipped (counted) or propagated exactly
    as on the default path."""

    def each(t, params, opt):
        if t == 20:
            params[0].grad[0, 0] = float("nan")
        if t == 21:
            params[3].grad[5] = float("inf")

    results = []
    for fused in (True, False):
        a, opt = run(
            lambda ps, f=fused: D.Adam(ps, nonfinite=policy, fused=f), torch.float64, each=each
        )
        results.append((a, opt))
    (a, fast_opt), (b, ref) = results
    if policy == "skip":
        assert fast_opt.skipped_steps == ref.skipped_steps == 2
        assert rel(a, b) <= 1e-12
    else:
        for x, y in zip(a, b):
            assert torch.equal(torch.isnan(x), torch.isnan(y))
            assert torch.allclose(x, y, rtol=1e-12, atol=0, equal_nan=True)
        assert torch.isnan(a[0]).any() and torch.isnan(a[3]).any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
def test_lion_nonfinite_and_sign_edge_cases_match_the_chain_bitwise(dtype):
    """torch.sign(NaN) is 0 (its CPU kernel is (0 < x) − (x < 0)): a NaN gradient leaves θ
    where it is and poisons m; ±Inf moves θ by ∓γ and makes m infinite; a zero gradient on a
    zero moment gives c = 0, u = 0. The kernel does what the chain does, bit for bit."""

    def each(t, params, opt):
        if t == 20:
            params[0].grad[0, 0] = float("nan")
        if t == 21:
            params[3].grad[5] = float("inf")
            params[3].grad[6] = -float("inf")
        if t < 3:
            params[4].grad[:10] = 0.0  # c = 0 (m = 0 at first): no move

    results = [
        run(lambda ps, f=f: D.Lion(ps, lr=1e-2, weight_decay=0.1, fused=f), dtype, each=each)
        for f in (True, False)
    ]
    (a, opt), (b, ref) = results
    assert fast.last_path(opt) == {0: "fast"}
    for x, y in zip(a, b):
        assert torch.equal(x.isnan(), y.isnan()) and torch.equal(x.nan_to_num(), y.nan_to_num())
    assert not a[0].isnan().any()  # θ never took the NaN; m did
    assert opt.state[opt.param_groups[0]["params"][0]]["exp_avg"].isnan().any()
    for p, q in zip(opt.param_groups[0]["params"], ref.param_groups[0]["params"]):
        ma, mb = opt.state[p]["exp_avg"], ref.state[q]["exp_avg"]
        assert torch.equal(ma.isnan(), mb.isnan()) and torch.equal(ma.nan_to_num(), mb.nan_to_num())


@pytest.mark.parametrize("threads", [1, 2])
def test_finite_check_finds_every_nan_and_inf(threads):
    """The one-pass check that ``nonfinite="skip"|"raise"`` uses: NaN or ±Inf anywhere (first,
    last, either thread's range, an fp64 gradient beside fp32 ones) and nothing else (huge
    finite values, subnormals, −0 are finite)."""
    torch.set_num_threads(threads)
    opt = D.Adam([torch.zeros(1, requires_grad=True)])
    grads = [torch.randn(70_000), torch.randn(3, 2), torch.randn(5, dtype=torch.float64)]
    grads[0][:3] = torch.tensor([3.4e38, 1e-45, -0.0])
    assert fast.grads_finite(opt, grads) is True
    for i, index in [(0, 0), (0, 34_999), (0, 35_000), (0, 69_999), (1, (2, 1)), (2, 4)]:
        for bad in (float("nan"), float("inf"), -float("inf")):
            broken = [g.clone() for g in grads]
            broken[i][index] = bad
            assert fast.grads_finite(opt, broken) is False, (i, index, bad)
    opt.fused = False
    assert fast.grads_finite(opt, grads) is None  # the caller uses torch's check
    with pytest.raises(FloatingPointError):
        p = torch.zeros(2, requires_grad=True)
        strict = D.Adam([p], nonfinite="raise", fused=True)
        p.grad = torch.tensor([1.0, float("nan")])
        strict.step()
    assert torch.equal(p.detach(), torch.zeros(2)) and not strict.state[p]


def test_parameters_with_different_step_counts():
    """A parameter without a gradient on odd steps keeps its own step count (and bias
    corrections, NAdam's μ-product)."""

    def each(t, params, opt):
        if t % 2:
            params[0].grad = None

    for spec in ("adam", "nadam", "momentum-ema:debias=true"):
        a, opt = run(lambda ps, s=spec: D.from_spec(s, ps, fused=True), torch.float64, each=each)
        b, _ = run(lambda ps, s=spec: D.from_spec(s, ps, fused=False), torch.float64, each=each)
        steps = {int(st["step"]) for st in opt.state.values() if isinstance(st, dict)}
        assert steps == {50, 100}
        assert rel(a, b) <= 1e-12


def test_switching_paths_and_replacing_tensors_mid_run():
    """Alternate paths step by step, reload the state and reassign p.data halfway: the cached
    layout of the fast path must follow (same result as the default path throughout)."""

    def each(t, params, opt):
        opt.fused = None if t % 3 else False
        if t == 50:
            opt.load_state_dict(opt.state_dict())
        if t == 60:
            params[1].data = params[1].data.clone()
            opt.state[params[0]]["exp_avg"] = opt.state[params[0]]["exp_avg"].clone()

    a, _ = run(lambda ps: D.AdamW(ps, fused=None), torch.float64, each=each)
    b, _ = run(lambda ps: D.AdamW(ps, fused=False), torch.float64)
    assert rel(a, b) <= 1e-12


def test_autograd_sees_the_in_place_update():
    p = torch.randn(5, requires_grad=True)
    opt = D.Adam([p], fused=True)
    y = (p * p).sum()  # saves p for backward
    y.backward(retain_graph=True)
    opt.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()


# -- fallbacks --------------------------------------------------------------------------


def test_tracing_uses_the_chain_and_records_intermediates():
    params = make_params()
    opt = D.Adam(params, fused=None)
    set_grads(params, 0)
    with D.tracing(opt) as steps:
        opt.step()
    assert {"m", "v", "denom", "update"} <= set(steps[0])
    assert fast.last_path(opt) == {0: "default: a trace hook is registered"}
    set_grads(params, 1)
    opt.step()
    assert fast.last_path(opt) == {0: "fast"}


ROWS = [
    ("adam", {}),
    ("adamw", {"weight_decay": "rows"}),
    ("adam", {"weight_decay": "rows"}),  # L2, per run
    ("nadam", {}),
    ("momentum", {"weight_decay": "rows"}),
    ("sgd:convention=keras,momentum=0.9", {}),  # lr inside the velocity, per run
    ("rmsprop-centered:momentum=0.9", {}),
    ("rmsprop:convention=keras,momentum=0.9", {}),
    ("adagrad", {}),
    ("sgd:weight_decay_mode=independent", {"weight_decay": "rows"}),
    ("lion", {"weight_decay": "rows"}),
    ("lion:weight_decay_mode=l2", {"weight_decay": "rows"}),
    # AdEMAMix (issue #14); Schedule-Free's per-run lr keeps the chain (its own tests)
    ("ademamix", {"weight_decay": "rows"}),
    ("ademamix:weight_decay_mode=l2,alpha_warmup=20", {"weight_decay": "rows"}),
    # RAdam, Adamax, ADOPT (issue #14)
    ("radam:decoupled_weight_decay=True", {"weight_decay": "rows"}),
    ("adamax", {"weight_decay": "rows"}),
    ("adopt:weight_decay_mode=decoupled", {"weight_decay": "rows"}),
    # Adadelta, Rprop, ASGD (issue #14)
    ("adadelta", {"weight_decay": "rows"}),
    ("adadelta:convention=keras", {"weight_decay": "rows"}),
    ("rprop", {}),  # the (N, 1) lr is read once, as each row's η₀
]


def _per_run(spec, extra, dtype, n, steps):
    lr = torch.logspace(-4, -1.5, n, dtype=dtype).reshape(-1, 1)
    wd = torch.linspace(0, 0.05, n, dtype=dtype).reshape(-1, 1)

    def make(fused):
        def build(ps):
            opt = D.from_spec(spec, ps, fused=fused)
            opt.param_groups[0]["lr"] = lr
            if extra:
                opt.param_groups[0]["weight_decay"] = wd
            return opt

        return build

    (a, opt), (b, _) = [
        run(make(f), params=make_params(dtype, [(n, 3)]), steps=steps) for f in (None, False)
    ]
    assert fast.last_path(opt) == {0: "fast"}
    assert rel(a, b) <= TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("spec,extra", ROWS, ids=[f"{s}{'+wd' if e else ''}" for s, e in ROWS])
def test_per_run_learning_rate_and_weight_decay(spec, extra, dtype):
    """The lab's layout: one (N, d) parameter, one run per row, lr (and weight decay) given as
    (N, 1) tensors; the fast path reads them row by row."""
    _per_run(spec, extra, dtype, n=300, steps=STEPS)


@pytest.mark.parametrize("spec,extra", ROWS[1:3] + ROWS[5:7])
def test_per_run_rows_split_between_threads(spec, extra):
    """Two threads cut the rows (a range may start or end inside a row)."""
    torch.set_num_threads(2)
    _per_run(spec, extra, torch.float64, n=22_001, steps=5)


@pytest.mark.parametrize("change", ["new-tensor", "in-place"])
def test_per_run_learning_rate_changed_by_a_schedule(change):
    """The lab's schedules: a new (N, 1) lr every step, or the same tensor changed in place —
    the per-element copies the fast path keeps must follow both."""
    n = 200
    base = torch.logspace(-3, -1, n, dtype=torch.float64).reshape(-1, 1)

    def each(t, params, opt):
        group = opt.param_groups[0]
        if change == "new-tensor":
            group["lr"] = base * (0.5 + 0.5 * math.cos(math.pi * t / STEPS))
        elif t:
            group["lr"].mul_(0.97)

    results = []
    for fused in (None, False):

        def build(ps, f=fused):
            opt = D.AdamW(ps, fused=f)
            opt.param_groups[0]["lr"] = base.clone()
            return opt

        results.append(run(build, params=make_params(torch.float64, [(n, 2)]), each=each))
    (a, opt), (b, _) = results
    assert fast.last_path(opt) == {0: "fast"}
    assert rel(a, b) <= 1e-12


def test_tensor_hyperparameters_that_fall_back():
    """Per-run β (the default path takes βᵗ in float32), or an lr column that does not match
    a single (N, d) parameter, keep the default path; a one-element tensor is a number."""
    p = torch.randn(4, 2, requires_grad=True)
    opt = D.Adam([p], fused=None)
    opt.param_groups[0]["betas"] = (torch.full((4, 1), 0.9), 0.999)
    p.grad = torch.ones(4, 2)
    opt.step()
    assert fast.last_path(opt)[0].startswith("default: betas[0] is a tensor")
    qs = [torch.randn(4, 2, requires_grad=True), torch.randn(4, 3, requires_grad=True)]
    opt = D.Adam(qs, fused=None)
    opt.param_groups[0]["lr"] = torch.full((4, 1), 1e-3)
    for q in qs:
        q.grad = torch.ones_like(q)
    opt.step()
    assert "per-run values need one (N, d)" in fast.last_path(opt)[0]
    strict = D.Adam([torch.randn(3, requires_grad=True)], fused=True)
    strict.param_groups[0]["lr"] = torch.tensor(1e-3)
    strict.param_groups[0]["params"][0].grad = torch.ones(3)
    strict.step()
    assert fast.last_path(strict) == {0: "fast"}
    strict.param_groups[0]["eps"] = torch.tensor(1e-8).reshape(1, 1)  # one element: a number
    strict.step()
    assert fast.last_path(strict) == {0: "fast"}
    strict.param_groups[0]["eps"] = torch.full((3,), 1e-8)
    with pytest.raises(RuntimeError, match="fused=True.*eps is a tensor"):
        strict.step()


def test_unsupported_dtype_layout_and_class():
    bf16 = torch.randn(8, dtype=torch.bfloat16, requires_grad=True)
    with pytest.raises(ValueError, match="bfloat16"):
        D.Adam([bf16], fused=True)
    opt = D.Adam([bf16])
    bf16.grad = torch.ones(8, dtype=torch.bfloat16)
    opt.step()
    assert "dtypes" in fast.last_path(opt)[0]

    strided = torch.randn(4, 6).t().detach().requires_grad_()  # non-contiguous parameter
    assert not strided.is_contiguous()
    a, b = strided.detach().clone(), strided.detach().clone()
    opt = D.SGD([strided], lr=0.1, momentum=0.9)
    strided.grad = torch.ones_like(strided)
    opt.step()
    assert "non-contiguous" in fast.last_path(opt)[0]
    ref = torch.optim.SGD([b.requires_grad_()], lr=0.1, momentum=0.9)
    b.grad = torch.ones_like(b)
    ref.step()
    assert torch.equal(strided.detach(), b.detach()) and not torch.equal(a, b.detach())

    chained = D.from_chain(
        [torch.randn(3, requires_grad=True)],
        scale_by_adam(),
        scale_by_lr(),
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
    )
    chained.param_groups[0]["params"][0].grad = torch.ones(3)
    chained.step()
    assert "FromChain keeps the default" in fast.last_path(chained)[0]


def test_fused_argument_is_checked():
    with pytest.raises(ValueError, match="fused must be None, True or False"):
        D.Adam([torch.zeros(1, requires_grad=True)], fused="yes")


def test_environment_switch_turns_auto_off(monkeypatch):
    monkeypatch.setenv("DESCEND_FAST", "0")
    p = torch.randn(3, requires_grad=True)
    opt = D.Adam([p])
    p.grad = torch.ones(3)
    opt.step()
    assert fast.last_path(opt) == {0: "default: DESCEND_FAST=0"}


def test_missing_compiler_falls_back_with_a_warning(monkeypatch):
    """In-process: the loader reports no library; auto falls back and warns once,
    fused=True refuses at construction."""
    monkeypatch.setattr(fast._lib, "load", lambda: None)
    monkeypatch.setitem(fast._lib._state, "error", "no C++ compiler found")
    monkeypatch.setattr(fast, "_warned", False)
    a, b = make_params(torch.float64), make_params(torch.float64)
    opt, ref = D.Adam(a), D.Adam(b, fused=False)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler found"):
        set_grads(a, 0)
        opt.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # only once
        set_grads(a, 1)
        opt.step()
    for t in range(2):
        set_grads(b, t)
        ref.step()
    assert rel([p.detach() for p in a], [p.detach() for p in b]) == 0
    with pytest.raises(ValueError, match="unavailable"):
        D.Adam(make_params(), fused=True)


def test_missing_compiler_in_a_fresh_process(tmp_path):
    """A real process with no compiler and an empty cache: it trains on the default path."""
    code = (
        "import warnings, torch, descend.optim as D\n"
        "from descend.optim import fast\n"
        "p = torch.ones(3, requires_grad=True); opt = D.Adam([p], lr=0.1)\n"
        "p.grad = torch.ones(3)\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always'); opt.step()\n"
        "print(fast.available(), fast.last_path(opt)[0][:8], len(w), float(p[0]))\n"
    )
    env = dict(os.environ, DESCEND_CACHE_DIR=str(tmp_path), CXX="/nonexistent/g++")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "default:", "1", "0.8999999761581421"]
    assert list(tmp_path.iterdir()) == []


def test_build_status_and_cache_key():
    status = fast.status()
    assert status["available"] and status["error"] is None
    path = fast._lib.library_path(fast._lib._compiler())
    assert str(path) == status["path"] and path.exists()
    assert path.parent == fast._lib.cache_dir()


@pytest.mark.slow
def test_every_simd_loop_is_vectorised(tmp_path):
    """gcc's own report: no ``#pragma omp simd`` loop of the kernels (optimizers, landscapes,
    lab bookkeeping) may stay scalar (one did, silently: AMSGrad ran 5x slower until a run-time
    bool select became a template switch; the lab's loops did until their landscape constants
    and coordinates were passed as scalars)."""
    lib = fast._lib
    flags = [f for f in lib.FLAGS if f != "-shared"]
    messages = []
    for unit in lib.UNITS:
        cmd = [lib._compiler(), *flags, "-c", str(lib.HERE / unit), "-o", str(tmp_path / "k.o")]
        out = subprocess.run([*cmd, "-fopt-info-vec-missed"], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        messages += out.stderr.splitlines()
    checked = 0
    for name in lib.SOURCES:
        source = lib.HERE / name
        lines = source.read_text().splitlines()
        # gcc names a loop by its header line or, when the body wraps, by the body's first line
        pragmas = [i for i, ln in enumerate(lines) if ln.strip().startswith("#pragma omp simd")]
        simd = {i + 2 for i in pragmas} | {i + 3 for i in pragmas}
        missed = {
            int(m.split(":")[1])
            for m in messages
            if m.split(":")[0] in (str(source), name) and "couldn't vectorize loop" in m
        }
        assert not (missed & simd), (name, sorted(missed & simd))
        checked += len(pragmas)
    assert checked >= 15


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("nesterov", [False, True])
def test_plain_sgd_loop_equals_the_general_one_bitwise(dtype, nesterov):
    """torch's own SGD takes a shorter loop (``sgd_plain_range``: no clamp, sign, L2, decay or
    debiasing); maximize=True with −g takes the general one (sign −1) through the same
    arithmetic, so the two must agree bit for bit."""
    a, b = make_params(dtype), make_params(dtype)
    plain = D.SGD(a, lr=0.01, momentum=0.9, nesterov=nesterov, dampening=0.0, fused=True)
    general = D.SGD(b, lr=0.01, momentum=0.9, nesterov=nesterov, maximize=True, fused=True)
    for t in range(20):
        set_grads(a, t)
        set_grads(b, t, sign=-1.0)
        plain.step()
        general.step()
    assert fast.last_path(plain) == fast.last_path(general) == {0: "fast"}
    for x, y in zip(a, b):
        assert torch.equal(x, y)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_plain_adam_loop_agrees_with_the_general_one(dtype, weight_decay):
    """AdamW as torch runs it takes ``adam_plain_range``; maximize=True with −g takes the
    general loop through the same operations. gcc fuses a·b + c differently in the two loops
    (the general one's run-time selects stand between some products and sums), so they agree
    to rounding, not bit for bit: within an ulp a step, as the fast path and the default path
    do."""
    a, b = make_params(dtype), make_params(dtype)
    plain = D.AdamW(a, lr=0.01, weight_decay=weight_decay, fused=True)
    general = D.AdamW(b, lr=0.01, weight_decay=weight_decay, maximize=True, fused=True)
    for t in range(20):
        set_grads(a, t)
        set_grads(b, t, sign=-1.0)
        plain.step()
        general.step()
    assert fast.last_path(plain) == fast.last_path(general) == {0: "fast"}
    diff = rel([x.detach() for x in a], [y.detach() for y in b])
    assert diff <= (1e-6 if dtype == torch.float32 else 1e-14)


# -- memory safety: every call checks the tensors as they are now -------------------------


def _adam_after_one_step(n: int = 100_000):
    p = torch.randn(n, requires_grad=True)
    opt = D.Adam([p], lr=0.1, fused=True)
    p.grad = torch.randn(n)
    opt.step()
    return p, opt


def test_resized_data_is_refused_before_the_kernel_reads_past_it():
    """The issue's case: after ``p.data = p.data[:10]`` the kernel would read 100,000 gradient
    elements for a 10-element parameter. The check sees the sizes as they are now."""
    p, opt = _adam_after_one_step()
    p.data = p.data[:10]  # same data_ptr as before: a cache keyed by address would pass it
    before = {k: v.clone() for k, v in opt.state[p].items()}
    with pytest.raises(RuntimeError, match="gradient .* size that is not its parameter's"):
        opt.step()
    assert fast.last_path(opt)[0].startswith("default: a gradient")
    assert all(torch.equal(v, opt.state[p][k]) for k, v in before.items())  # untouched
    opt.fused = None  # the default choice takes the chain, which raises as torch would
    with pytest.raises(RuntimeError, match="doesn't match the broadcast shape|size of tensor"):
        opt.step()


def test_freed_storage_and_shrunk_state_are_refused():
    """A storage freed under the parameter (FSDP's ``resize_(0)``), a state tensor that is a
    short view, a state of another dtype: refused with the reason, nothing written."""
    p, opt = _adam_after_one_step(1000)
    state = opt.state[p]
    state["exp_avg"] = state["exp_avg"][:10]
    with pytest.raises(RuntimeError, match="state 'exp_avg' .*size that is not its parameter"):
        opt.step()
    state["exp_avg"] = torch.zeros(1000, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="state 'exp_avg' of dtype torch.float64"):
        opt.step()
    state["exp_avg"] = torch.zeros(1000)
    p.grad = torch.ones(1000)
    p.untyped_storage().resize_(0)  # p keeps its size; its storage holds nothing
    with pytest.raises(RuntimeError, match="parameter .*reaches past the end of its storage"):
        opt.step()
    assert float(state["step"]) == 1.0  # no call went through


@pytest.mark.parametrize("fused", [True, False])
def test_views_at_an_offset_and_channels_last(fused):
    """A parameter that is a view at an offset into a larger buffer is stepped in place
    (fast path), exactly as the chain steps it; a channels_last parameter is non-contiguous
    for the kernels and takes the chain under fused=None."""
    big = torch.randn(1000, dtype=torch.float64)
    ref = big.clone()
    p = big[100:400].view(30, 10).requires_grad_()
    q = ref[100:400].view(30, 10).requires_grad_()
    opt, chain = D.Adam([p], lr=0.1, fused=fused), D.Adam([q], lr=0.1, fused=False)
    for t in range(5):
        set_grads([p, q], t)
        opt.step()
        chain.step()
    assert fast.last_path(opt) == ({0: "fast"} if fused else {0: "default: fused=False"})
    assert rel([big], [ref]) <= 1e-12 and torch.equal(big[:100], ref[:100])
    cl = torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last).requires_grad_()
    opt = D.SGD([cl], lr=0.1, momentum=0.9, fused=None if fused else False)
    cl.grad = torch.ones_like(cl)
    opt.step()
    if fused:
        assert "non-contiguous" in fast.last_path(opt)[0]


class _Wrapper(torch.Tensor):
    """A wrapper subclass (like FakeTensor or DTensor): no storage of its own at its address."""

    @staticmethod
    def __new__(cls, inner):
        return torch.Tensor._make_wrapper_subclass(
            cls, inner.shape, dtype=inner.dtype, device=inner.device, requires_grad=True
        )

    def __init__(self, inner):
        self.inner = inner

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        def unwrap(x):
            return x.inner if isinstance(x, _Wrapper) else x

        args = torch.utils._pytree.tree_map(unwrap, args)
        kwargs = torch.utils._pytree.tree_map(unwrap, kwargs or {})
        return func(*args, **kwargs)


class _Plain(torch.Tensor):
    """A Python subclass that keeps torch's dispatch: its memory is its storage."""


def test_tensor_subclasses_never_reach_a_pointer():
    w = _Wrapper(torch.randn(8))
    with pytest.raises(ValueError, match="_Wrapper: a tensor subclass with its own dispatch"):
        D.Adam([w], fused=True)
    w.grad = _Wrapper(torch.randn(8))
    opt = D.SGD([w], lr=0.1)  # fused=None: the chain, through the subclass's dispatch
    try:
        opt.step()
    except Exception:  # noqa: BLE001 - what the chain does with it is the subclass's business
        pass
    assert "tensor subclass" in fast.last_path(opt)[0]
    # a plain Python subclass (and nn.Parameter) owns real storage: fast, equal to the chain
    a = torch.randn(50, dtype=torch.float64).as_subclass(_Plain).requires_grad_()
    b = torch.nn.Parameter(a.detach().clone().as_subclass(torch.Tensor))
    fa, fb = D.Adam([a], lr=0.1, fused=True), D.Adam([b], lr=0.1, fused=False)
    for t in range(5):
        set_grads([a, b], t)
        fa.step()
        fb.step()
    assert fast.last_path(fa) == {0: "fast"}
    assert rel([a.detach().as_subclass(torch.Tensor)], [b.detach()]) <= 1e-12


def test_a_failed_build_reports_the_compilers_message(tmp_path, monkeypatch):
    """A kernel source that does not compile: the error carries g++'s own words (what CI
    prints), not "no compiler"."""
    cxx = fast._lib._compiler()
    (tmp_path / "broken.cpp").write_text("int f() { return undeclared_name; }\n")
    monkeypatch.setattr(fast._lib, "HERE", tmp_path)
    monkeypatch.setattr(fast._lib, "UNITS", ("broken.cpp",))
    with pytest.raises(RuntimeError) as err:
        fast._lib._build(cxx, tmp_path / "out" / "lib.so")
    assert "the kernel build failed" in str(err.value)
    assert re.search(r"undeclared_name\W{0,3} was not declared", str(err.value))
    assert not (tmp_path / "out" / "lib.so").exists()


# -- Adadelta, Rprop, ASGD ---------------------------------------------------------------------
BITWISE = [c for c in CONFIGS if c[1] in ("rprop", "asgd")]


def _same_state(opt, ref, exact: bool = True) -> None:
    for p, q in zip(opt.param_groups[0]["params"], ref.param_groups[0]["params"]):
        sa, sb = opt.state[p], ref.state[q]
        assert sorted(sa) == sorted(sb)
        for key in sb:
            a, b = sa[key], sb[key]
            assert a.dtype == b.dtype and a.shape == b.shape, key
            if exact:
                assert torch.equal(a.isnan(), b.isnan()), key
                assert torch.equal(a.nan_to_num(), b.nan_to_num()), key


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("spec,kwargs", [c[1:] for c in BITWISE], ids=[c[0] for c in BITWISE])
def test_rprop_and_asgd_kernels_equal_the_chain_bitwise(spec, kwargs, dtype):
    """Rprop's and ASGD's kernels spell out the chain's operations (every product rounded,
    no square root): 100 steps agree bit for bit — θ and every state tensor (Rprop's prev and
    step_size; ASGD's ax, and η and μ, 0-d float32 tensors updated by the driver)."""
    a, opt = run(lambda ps: D.from_spec(spec, ps, fused=True, **kwargs), dtype)
    b, ref = run(lambda ps: D.from_spec(spec, ps, fused=False, **kwargs), dtype)
    assert fast.last_path(opt) == {0: "fast"}
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    _same_state(opt, ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
def test_adadelta_one_step_differs_from_the_chain_only_by_torchs_square_root(dtype):
    """Adadelta's kernel computes the chain's operations in its order (addcmul as one fma,
    products rounded), but torch's CPU sqrt is not correctly rounded (its vectorised kernel is
    off by one ulp on ~1% of fp64 and ~20% of fp32 inputs; std::sqrt is exact): v = E[g²]
    agrees bit for bit, and one step from the same state moves θ and E[Δ²] by the same amount
    within a few ulp (measured: θ within 2.5 ε·max(|θ|, |γΔ|), E[Δ²] within 4 ulp)."""
    g = torch.Generator().manual_seed(1)
    n = 20_000
    p0, grad = torch.randn(n, generator=g, dtype=dtype), torch.randn(n, generator=g, dtype=dtype)
    v0, a0 = torch.rand(n, generator=g, dtype=dtype), torch.rand(n, generator=g, dtype=dtype)
    out = {}
    for fused in (True, False):
        p = p0.clone().requires_grad_()
        opt = D.Adadelta([p], lr=0.5, weight_decay=0.01, fused=fused)
        p.grad = torch.zeros_like(p)
        opt.step()  # creates the state
        st = opt.state[p]
        with torch.no_grad():
            p.copy_(p0)
            st["square_avg"].copy_(v0)
            st["acc_delta"].copy_(a0 * 1e-2)
        p.grad = grad.clone()
        opt.step()
        out[fused] = (p.detach().clone(), st["square_avg"].clone(), st["acc_delta"].clone())
        assert fast.last_path(opt) == {0: "fast" if fused else "default: fused=False"}
    (pa, va, aa), (pb, vb, ab) = out[True], out[False]
    eps = torch.finfo(dtype).eps
    assert torch.equal(va, vb)
    assert ((aa - ab).abs() <= 4 * eps * ab.abs()).all()
    scale = torch.maximum(pb.abs(), (p0 - pb).abs())
    assert ((pa - pb).abs() <= 3 * eps * scale).all()
    assert not torch.equal(pa, p0)


def _rprop_by_hand(grads, lr, etas, sizes):
    """torch.optim.Rprop's step in plain Python, element by element (Riedmiller & Braun's
    iRprop⁻ as torch has it): s = sign(g·g₋₁) with sign(NaN) = 0; η ← clamp(η·(η₊ | η₋ | 1));
    g ← 0 where s < 0; θ ← θ − η·sign(g). Returns θ after each step (θ₀ = 0) and η."""

    def sign(x):
        return 0.0 if x != x or x == 0 else math.copysign(1.0, x)

    n = len(grads[0])
    theta, prev, size = [0.0] * n, [0.0] * n, [lr] * n
    thetas, sizes_seen = [], []
    for g in grads:
        for i in range(n):
            s = sign(g[i] * prev[i])
            factor = etas[1] if s > 0 else etas[0] if s < 0 else 1.0
            size[i] = min(max(size[i] * factor, sizes[0]), sizes[1])
            gi = 0.0 if s < 0 else g[i]
            prev[i] = gi
            theta[i] -= sign(gi) * size[i]
        thetas.append(list(theta))
        sizes_seen.append(list(size))
    return thetas, sizes_seen


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("fused", [True, False], ids=["fast", "chain"])
def test_rprop_every_sign_case_by_hand(fused, dtype):
    """Every branch of Rprop's step on both paths, against the rule written out in Python:
    s > 0 (η grows, to the Γ_max clamp), s < 0 (η shrinks, to the Γ_min clamp; the gradient
    is zeroed: no step, and the next step sees s = 0), s = 0 (first step; a zero gradient;
    after a flip), a NaN gradient (sign(NaN) = 0: η and θ unchanged, the NaN kept as g₋₁,
    and the next step's s = 0 again). Powers of two keep every product exact."""
    lr, etas, sizes = 0.25, (0.5, 2.0), (0.0625, 1.0)
    nan = float("nan")
    grads = [
        [1.0, 1.0, -2.0, 0.0, 3.0, 1.0],
        [2.0, -1.0, -1.0, 3.0, nan, -1.0],
        [1.0, 5.0, 1.0, 1.0, 1.0, 1.0],
        [1.0, -1.0, 1.0, -4.0, 1.0, -1.0],
        [1.0, 1.0, 1.0, 1.0, -1.0, 1.0],
        [1.0, -1.0, 1.0, 1.0, -1.0, -1.0],
    ]
    want, want_sizes = _rprop_by_hand(grads, lr, etas, sizes)
    flat = [x for row in want_sizes for x in row]
    assert sizes[1] in flat and sizes[0] in flat  # both clamps reached
    p = torch.zeros(6, dtype=dtype, requires_grad=True)
    opt = D.Rprop([p], lr=lr, etas=etas, step_sizes=sizes, fused=fused)
    for g, theta, size in zip(grads, want, want_sizes, strict=True):
        p.grad = torch.tensor(g, dtype=dtype)
        opt.step()
        assert p.detach().tolist() == theta
        assert opt.state[p]["step_size"].tolist() == size
    assert fast.last_path(opt) == {0: "fast" if fused else "default: fused=False"}
    assert math.isnan(grads[1][4]) and want[1][4] == want[0][4]  # the NaN step did not move


def test_rprop_reads_lr_only_when_its_step_sizes_are_created():
    """η₀ = γ; a later lr (a scheduler's) changes nothing on either path — as in torch."""

    def each(t, params, opt):
        opt.param_groups[0]["lr"] = 0.5 * (t + 1)

    a, opt = run(lambda ps: D.Rprop(ps, fused=True), torch.float64, steps=20, each=each)
    b, _ = run(lambda ps: D.Rprop(ps, fused=False), torch.float64, steps=20, each=each)
    c, _ = run(lambda ps: D.Rprop(ps, lr=0.5, fused=True), torch.float64, steps=20)
    assert fast.last_path(opt) == {0: "fast"}
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert all(torch.equal(x, y) for x, y in zip(a, c))


def test_asgd_per_tensor_eta_and_mu_follow_each_step_count():
    """ASGD's η and μ come from each parameter's own step count: a parameter without a
    gradient on odd steps keeps its own (t₀ = 10: one averages from step 12, the other from
    step 22), bit for bit on both paths; η and μ stay 0-d float32 tensors."""

    def each(t, params, opt):
        if t % 2:
            params[0].grad = None

    kwargs = dict(lr=0.05, lambd=0.02, alpha=0.6, t0=10, weight_decay=0.01)
    a, opt = run(lambda ps: D.ASGD(ps, fused=True, **kwargs), torch.float64, each=each)
    b, ref = run(lambda ps: D.ASGD(ps, fused=False, **kwargs), torch.float64, each=each)
    assert fast.last_path(opt) == {0: "fast"}
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    _same_state(opt, ref)
    st = [opt.state[p] for p in opt.param_groups[0]["params"][:2]]
    assert [int(s["step"]) for s in st] == [50, 100]
    assert all(s["eta"].dtype == s["mu"].dtype == torch.float32 and s["eta"].dim() == 0 for s in st)
    f32 = [torch.tensor(1 / (t - 10), dtype=torch.float32) for t in (50, 100)]
    assert [s["mu"] for s in st] == f32  # μ = 1/max(1, t − t₀), in float32


def test_asgd_per_run_lr_takes_the_chain_with_its_reason():
    """A per-run (N, 1) lr gives each run its own η (an (N, 1) state tensor): the kernel has one
    η per tensor, so such a group takes the default path and says why."""
    lr = torch.logspace(-3, -1, 20, dtype=torch.float64).reshape(-1, 1)

    def build(ps):
        opt = D.ASGD(ps, t0=5)
        opt.param_groups[0]["lr"] = lr
        return opt

    a, opt = run(build, params=make_params(torch.float64, [(20, 3)]), steps=10)
    assert fast.last_path(opt) == {0: "default: lr is a tensor (shape (20, 1)), not a number"}
    assert opt.state[opt.param_groups[0]["params"][0]]["eta"].shape == (20, 1)


@pytest.mark.parametrize("spec", ["adadelta", "rprop", "asgd:t0=10,lambd=0.01"])
def test_adadelta_rprop_asgd_switch_paths_every_step(spec):
    """Alternating fast and default steps (and a state-dict reload halfway) is the default
    path's run: bitwise for Rprop and ASGD, to fp64 rounding for Adadelta (torch's sqrt)."""

    def each(t, params, opt):
        opt.fused = None if t % 2 else False
        if t == 50:
            opt.load_state_dict(opt.state_dict())

    a, opt = run(lambda ps: D.from_spec(spec, ps), torch.float64, each=each)
    b, ref = run(lambda ps: D.from_spec(spec, ps, fused=False), torch.float64)
    assert fast.last_path(opt) == {0: "fast"}  # the last step (t = 99) was a fast one
    if spec == "adadelta":
        assert rel(a, b) <= 1e-13
    else:
        assert all(torch.equal(x, y) for x, y in zip(a, b))
        _same_state(opt, ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
def test_asgd_per_run_weight_decay_takes_the_kernel(dtype):
    """A per-run (N, 1) L2 weight decay with one lr: ASGD's kernel in the per-element row mode
    (the lab's layout), averaging from step 7, equal to the chain."""
    wd = torch.linspace(0, 0.1, 300, dtype=dtype).reshape(-1, 1)

    def make(fused):
        def build(ps):
            opt = D.ASGD(ps, lr=0.02, lambd=0.01, t0=5, fused=fused)
            opt.param_groups[0]["weight_decay"] = wd
            return opt

        return build

    (a, opt), (b, ref) = [
        run(make(f), dtype, params=make_params(dtype, [(300, 3)]), steps=30) for f in (None, False)
    ]
    assert fast.last_path(opt) == {0: "fast"}
    assert rel(a, b) <= TOL[dtype]
    _same_state(opt, ref, exact=False)
