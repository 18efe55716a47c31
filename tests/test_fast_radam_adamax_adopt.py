"""RAdam, Adamax and ADOPT on the fast path (issue #14): each kernel against its chain.

The chain is the reference; the kernels spell out its floating-point operations in its order
(products rounded, lerp / add_ with alpha / addcmul as one fma, divisions as divisions). One
operation may not be torch's: the square root. torch's CPU ``sqrt`` need not be correctly
rounded (here √8.85666e-05 in float32 came out one ulp above the IEEE result), while the
kernels' ``std::sqrt`` (one ``vsqrtps``) is. So the tests that assert bit-for-bit equality run the
chain with its square roots (``torch._foreach_sqrt``, the only ones these chains take) replaced
by numpy's correctly rounded ones (:func:`exact_sqrt`): then 100 steps agree bit for bit, θ and
every state tensor, in float32 and float64, which shows that every other operation is the
chain's. Adamax takes no square root and is bitwise without it; with torch's own square root
RAdam and ADOPT stay within test_fast_path.py's tolerances (its table runs them too).
Then every branch a family has, on both paths: RAdam's un-rectified first steps
(ρ_t ≤ 5: u = m̂) and rectified ones, per tensor when their step counts differ; ADOPT's
first step (v ← g², θ unmoved, its decoupled decay skipped) and its clipping schedule, a
number p or a function of s; Adamax's ε inside or outside the max and a coordinate whose
gradient stays 0. A hand derivation pins the first steps on the fast path.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import descend.optim as D
from descend.optim import fast
from test_fast_path import make_params, run, set_grads

# every test steps the compiled kernels, at 1 thread unless it says otherwise (conftest)
pytestmark = pytest.mark.usefixtures("fast_kernels", "one_thread")


def _np_sqrt(x: torch.Tensor) -> torch.Tensor:
    with np.errstate(invalid="ignore"):
        return torch.from_numpy(np.asarray(np.sqrt(x.detach().numpy()))).reshape(x.shape)


@pytest.fixture
def exact_sqrt(monkeypatch):
    """The chain's square roots correctly rounded (numpy's, IEEE sqrt), as the kernels' are."""

    def sqrt_(xs):
        for x in xs:
            x.copy_(_np_sqrt(x))

    monkeypatch.setattr(torch, "_foreach_sqrt", lambda xs: [_np_sqrt(x) for x in xs])
    monkeypatch.setattr(torch, "_foreach_sqrt_", sqrt_)


def test_the_patched_sqrt_is_correctly_rounded(exact_sqrt):
    """What :func:`exact_sqrt` gives the chain: the IEEE square root. In float32 it equals
    float64's √ rounded once to float32 (exact: 53 ≥ 2·24 + 2 bits), over 100,000 values
    across the exponent range, the one of the docstring included (torch's own float32 sqrt
    gave 1 ulp more there on the machine these kernels were written on)."""
    g = torch.Generator().manual_seed(0)
    x = torch.exp(torch.empty(100_000, dtype=torch.float64).uniform_(-80, 80, generator=g))
    x = torch.cat([x.float(), torch.tensor([8.856660861056298e-05, 0.0, 1.0])])
    ieee = torch.tensor([math.sqrt(v) for v in x.double().tolist()]).float()  # libm's IEEE √
    assert torch.equal(torch._foreach_sqrt([x])[0], ieee)
    y = x.clone()
    torch._foreach_sqrt_([y])
    assert torch.equal(y, ieee)


DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])

# every switch of each family's kernel (the table of test_fast_path.py runs these too)
BITWISE = [
    ("radam-torch", "radam", dict(lr=1e-3)),
    ("radam-l2", "radam", dict(lr=1e-3, weight_decay=0.1)),
    ("radam-decoupled", "radam", dict(lr=1e-3, weight_decay=0.1, decoupled_weight_decay=True)),
    ("radam-optax", "radam", dict(convention="optax", lr=1e-3, betas=(0.9, 0.99))),
    ("radam-optax-root", "radam", dict(convention="optax", eps_root=1e-6, threshold=6.0)),
    ("radam-inside", "radam", dict(eps_placement="inside", lr=1e-3, betas=(0.4, 0.99))),
    ("radam-nesterov", "radam", dict(convention="optax", nesterov=True, lr=1e-3)),
    ("radam-maximize-clip", "radam", dict(maximize=True, max_grad_norm=1.0, clip_value=2.0)),
    *[(f"adamax-{c}", "adamax", dict(convention=c)) for c in D.CONVENTIONS],
    ("adamax-l2", "adamax", dict(weight_decay=0.1, betas=(0.4, 0.9))),
    ("adamax-decoupled", "adamax", dict(convention="keras", weight_decay=0.1)),
    ("adamax-independent", "adamax", dict(weight_decay=1e-3, weight_decay_mode="independent")),
    ("adamax-maximize-clip", "adamax", dict(maximize=True, max_grad_norm=1.0, clip_value=2.0)),
    ("adopt", "adopt", dict(lr=1e-3)),
    ("adopt-noclip", "adopt", dict(lr=1e-3, use_clipping=False, betas=(0.4, 0.99))),
    ("adopt-clip-p", "adopt", dict(lr=1e-3, clip_lambda=0.5, eps=1e-3)),
    ("adopt-clip-fn", "adopt", dict(lr=1e-3, clip_lambda=lambda s: 0.1 * s**0.3)),
    ("adopt-nesterov", "adopt", dict(convention="optax", nesterov=True, lr=1e-3)),
    ("adopt-l2", "adopt", dict(lr=1e-3, weight_decay=0.1)),
    ("adopt-decoupled", "adopt", dict(lr=1e-3, weight_decay=0.1, decoupled_weight_decay=True)),
    ("adopt-independent", "adopt", dict(weight_decay=1e-3, weight_decay_mode="independent")),
    ("adopt-maximize-clip", "adopt", dict(maximize=True, max_grad_norm=1.0, clip_value=2.0)),
]


def _state_equal(opt, ref) -> None:
    for p, q in zip(opt.param_groups[0]["params"], ref.param_groups[0]["params"]):
        sa, sb = opt.state[p], ref.state[q]
        assert sorted(sa) == sorted(sb)
        for key in sa:
            assert sa[key].dtype == sb[key].dtype, key
            assert torch.equal(sa[key], sb[key]), key


@DTYPES
@pytest.mark.parametrize("spec,kwargs", [c[1:] for c in BITWISE], ids=[c[0] for c in BITWISE])
def test_kernel_equals_the_chain_bitwise(spec, kwargs, dtype, exact_sqrt):
    """100 steps on each path from the same start and gradients: θ, m, v / u and the step
    counters are equal bit for bit (RAdam's first 5 steps are un-rectified, the rest
    rectified; ADOPT's first only measures v)."""
    a, opt = run(lambda ps: D.from_spec(spec, ps, fused=True, **kwargs), dtype)
    b, ref = run(lambda ps: D.from_spec(spec, ps, fused=False, **kwargs), dtype)
    assert fast.last_path(opt) == {0: "fast"}
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    _state_equal(opt, ref)


def _mixed_steps(make, dtype):
    """Parameters that start at different steps: #0 and #2 take no gradient for the first
    `late` steps (a parameter that joins later), so one group holds tensors at different t."""
    params = make_params(dtype)
    opt = make(params)
    late = {0: 7, 2: 3}
    for t in range(12):
        set_grads(params, t)
        for i, first in late.items():
            if t < first:
                params[i].grad = None
        opt.step()
    return [p.detach().clone() for p in params], opt


@DTYPES
@pytest.mark.parametrize(
    "spec,kwargs",
    [
        ("radam", dict(lr=1e-3)),
        ("radam", dict(convention="optax", nesterov=True)),
        ("adopt", dict(weight_decay=0.1, decoupled_weight_decay=True)),
        ("adopt", dict(clip_lambda=lambda s: s**0.25)),
        ("adamax", {}),
    ],
    ids=["radam", "radam-nesterov", "adopt-decoupled", "adopt-clip-fn", "adamax"],
)
def test_tensors_at_different_steps_take_their_own_branch(spec, kwargs, dtype, exact_sqrt):
    """Every per-step coefficient is per tensor: with step counts 5, 9 and 12 in one group,
    RAdam rectifies some tensors and not others (ρ₅ ≤ 5 < ρ₆), ADOPT's joining tensors take
    their first step (v only, no decay) while the others move, and the clipping bound is
    each tensor's (t − 1)^p — bitwise as the chain."""
    a, opt = _mixed_steps(lambda ps: D.from_spec(spec, ps, fused=True, **kwargs), dtype)
    b, ref = _mixed_steps(lambda ps: D.from_spec(spec, ps, fused=False, **kwargs), dtype)
    assert fast.last_path(opt) == {0: "fast"}
    steps = sorted({float(opt.state[p]["step"]) for p in opt.param_groups[0]["params"]})
    assert steps == [5.0, 9.0, 12.0]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    _state_equal(opt, ref)


def test_radam_first_steps_are_momentum_sgd_then_rectified_adam():
    """Hand derivation (β = (0.9, 0.999), torch's ε̂ form), fp64, on the fast path:
    ρ_∞ = 2/(1 − β₂) − 1 = 1999; ρ_t = ρ_∞ − 2tβ₂ᵗ/(1 − β₂ᵗ) is 4.990 at t = 5 and 5.988 at
    t = 6, so steps 1–5 are θ ← θ − γ·m/(1 − β₁ᵗ) and step 6 is
    θ ← θ − γ·r₆·√(1 − β₂⁶)/(1 − β₁⁶)·m/(√v + ε)."""
    b1, b2, lr, eps = 0.9, 0.999, 0.1, 1e-8
    p = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
    opt = D.RAdam([p], lr=lr, fused=True)
    theta = p.detach().clone()
    m = torch.zeros(3, dtype=torch.float64)
    v = torch.zeros(3, dtype=torch.float64)
    rho_inf = 2 / (1 - b2) - 1
    for t in range(1, 8):
        g = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64) * t
        p.grad = g.clone()
        opt.step()
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        rho_t = rho_inf - 2 * t * b2**t / (1 - b2**t)
        m_hat = m / (1 - b1**t)
        if t <= 5:
            assert rho_t <= 5
            theta = theta - lr * m_hat
        else:
            assert rho_t > 5
            r = math.sqrt(
                (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
            )
            theta = theta - lr * r * math.sqrt(1 - b2**t) * m_hat / (v.sqrt() + eps)
        torch.testing.assert_close(p.detach(), theta, rtol=1e-13, atol=1e-14)
    assert fast.last_path(opt) == {0: "fast"}


@pytest.mark.parametrize("mode", ["l2", "decoupled"])
def test_adopt_first_step_only_measures_v(mode):
    """ADOPT's first step on the fast path: v = g² (with L2, (g + λθ)²), m stays 0 and θ does
    not move — the decoupled decay waits for the second step too (the authors' code skips
    the whole update); on the second step θ ← θ(1 − γλ) − γ(1 − β₁)·clip(g/max(√v, ε), ±1)."""
    lr, wd, b1 = 0.1, 0.5, 0.9
    p = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
    theta0 = p.detach().clone()
    opt = D.ADOPT([p], lr=lr, weight_decay=wd, weight_decay_mode=mode, fused=True)
    g1 = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    p.grad = g1.clone()
    opt.step()
    assert fast.last_path(opt) == {0: "fast"}
    assert torch.equal(p.detach(), theta0)
    gd = g1 + wd * theta0 if mode == "l2" else g1
    assert torch.equal(opt.state[p]["exp_avg_sq"], gd * gd)
    assert torch.equal(opt.state[p]["exp_avg"], torch.zeros(3, dtype=torch.float64))
    g2 = torch.tensor([0.1, 4.0, -2.0], dtype=torch.float64)
    p.grad = g2.clone()
    opt.step()
    gd2 = g2 + wd * theta0 if mode == "l2" else g2
    n = (gd2 / (gd * gd).sqrt().clamp(min=1e-6)).clamp(-1.0, 1.0)  # c(1) = 1**0.25 = 1
    keep = 1 - lr * wd if mode == "decoupled" else 1.0
    expected = theta0 * keep - lr * (1 - b1) * n
    torch.testing.assert_close(p.detach(), expected, rtol=1e-14, atol=1e-15)


def test_adopt_clip_function_is_evaluated_per_step_but_not_in_the_lab_call():
    """A clip_lambda function runs on the fast path (Python evaluates c(t − 1) for each
    tensor at each step); the lab's fused call, which runs many steps in C++, declines it."""
    calls = []

    def clip(s):
        calls.append(s)
        return s**0.25

    p = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    opt = D.ADOPT([p], lr=0.01, clip_lambda=clip, fused=True)
    for t in range(4):
        p.grad = torch.full((4,), float(t + 1), dtype=torch.float64)
        opt.step()
    assert fast.last_path(opt) == {0: "fast"}
    assert calls == [1.0, 2.0, 3.0]  # steps 2, 3, 4: c(t − 1)
    group = opt.param_groups[0]
    with pytest.raises(fast.Unsupported, match="computes at each step"):
        fast.prepare_group(opt, 0, group, group["params"])


@DTYPES
def test_adamax_zero_gradient_coordinates_and_nonfinite_values(dtype, exact_sqrt):
    """Adamax's u of a coordinate whose gradient stays 0 decays as ε·β₂ᵏ (torch) — the step
    stays m/u = 0; a NaN gradient poisons m and u (torch.maximum propagates NaN) and θ; ±Inf
    makes u infinite. Both paths agree bit for bit, NaN positions included."""

    def each(t, params, opt):
        params[0].grad[0, :] = 0.0
        if t == 30:
            params[3].grad[2] = float("nan")
        if t == 31:
            params[3].grad[5] = float("inf")
            params[3].grad[6] = -float("inf")

    for spec in ("adamax", "adamax:convention=keras", "radam", "adopt"):
        (a, opt), (b, ref) = [
            run(lambda ps, f=f, s=spec: D.from_spec(s, ps, fused=f), dtype, steps=40, each=each)
            for f in (True, False)
        ]
        assert fast.last_path(opt) == {0: "fast"}
        assert torch.isnan(a[3]).any()
        for x, y in zip(a, b):
            assert torch.equal(x.isnan(), y.isnan()) and torch.equal(x.nan_to_num(), y.nan_to_num())
        for p, q in zip(opt.param_groups[0]["params"], ref.param_groups[0]["params"]):
            for key, sa in opt.state[p].items():
                sb = ref.state[q][key]
                assert torch.equal(sa.isnan(), sb.isnan()), (spec, key)
                assert torch.equal(sa.nan_to_num(), sb.nan_to_num()), (spec, key)


@pytest.mark.parametrize("spec", ["radam", "adamax", "adopt:decoupled_weight_decay=True"])
def test_switching_paths_mid_run(spec, exact_sqrt):
    """Fast for 3 steps (ADOPT's first, RAdam's un-rectified ones), the chain for 4, fast
    again: the same as the chain all along, bit for bit (one state, one layout)."""
    kwargs = dict(weight_decay=0.05)
    params = make_params(torch.float64)
    opt = D.from_spec(spec, params, **kwargs)
    for t in range(12):
        opt.fused = t < 3 or t >= 7
        set_grads(params, t)
        opt.step()
        assert fast.last_path(opt) == {0: "fast" if opt.fused else "default: fused=False"}
    b, _ = run(lambda ps: D.from_spec(spec, ps, fused=False, **kwargs), torch.float64, steps=12)
    assert all(torch.equal(x.detach(), y) for x, y in zip(params, b))
