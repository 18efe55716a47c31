"""Numeric details where descend's two paths or its conventions once disagreed with the
references (issue 12), each against a hand derivation or torch itself, on both paths.

* float64 kernels compute every scalar in float64: no product is left unrounded inside a fused
  multiply-add that gcc contracted on its own, and a fused multiply-add is written out exactly
  where torch's kernel for the default path's op rounds once (add/sub with alpha, lerp,
  addcmul). The SGD family then equals the default path bit for bit, even on a trajectory that
  amplifies every rounding difference (it was 1e-15 a step apart, 1e-8 after 50 steps there).
* NAdam's running product Π: torch's float32 scalar under ``convention="torch"`` (what
  torch.optim.NAdam keeps; a float64 Π moves θ by 3e-10 from torch in the parity runs), the
  parameter's precision under Keras' and optax's (what they keep; a float32 Π moved θ ~1e-8).
* centered RMSprop with ``bias_correction``: each moment corrected, then centred (optax).
"""

from __future__ import annotations

import math

import pytest
import torch

import descend.optim as D
from descend.optim.fast import last_path

BOTH = pytest.mark.parametrize("fused", [True, False], ids=["fused", "chain"])


def _run(cls, fused: bool, p0: torch.Tensor, grads, **kwargs):
    p = p0.clone().requires_grad_()
    opt = cls([p], fused=fused, **kwargs)
    for g in grads:
        p.grad = g(p.detach()) if callable(g) else g.clone()
        opt.step()
    assert last_path(opt) == ({0: "fast"} if fused else {0: "default: fused=False"})
    return p.detach(), opt


SGD_FAMILY = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.1, momentum=0.9, nesterov=True),
    dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.1),
    dict(lr=0.1, momentum=0.9, momentum_form="ema", nesterov=True),  # (debias: a reciprocal)
    dict(lr=0.1, momentum=0.9, nesterov=True, convention="keras"),
    dict(lr=0.1, momentum=0.8, weight_decay=0.1, convention="keras"),
    dict(lr=0.1, momentum=0.9, nesterov=True, convention="optax"),
]


@pytest.mark.parametrize(
    "kwargs", SGD_FAMILY, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items())
)
def test_fp64_sgd_kernels_equal_the_default_path_bit_for_bit(kwargs: dict) -> None:
    g = torch.Generator().manual_seed(3)
    p0 = torch.randn(4099, generator=g, dtype=torch.float64)  # vector body and scalar tail
    grads = [torch.randn(4099, generator=g, dtype=torch.float64) for _ in range(12)]
    fast, _ = _run(D.SGD, True, p0, grads, **kwargs)
    chain, _ = _run(D.SGD, False, p0, grads, **kwargs)
    assert not torch.equal(fast, p0)
    assert torch.equal(fast, chain), (fast - chain).abs().max().item()


def test_fp64_paths_agree_where_the_trajectory_amplifies_rounding() -> None:
    """Nesterov at lr·λ_max > 2 on a non-convex loss: any rounding difference grows by orders
    of magnitude (a perturbation of one ulp reaches 1e-5 here); the paths stay identical."""
    a = torch.tensor([[3.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 0.3]], dtype=torch.float64)
    b = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    theta0 = torch.tensor([2.0, 1.0, -1.5], dtype=torch.float64)

    def grad(t):
        return a @ t - b + 0.5 * torch.sin(t)

    kw = dict(lr=0.5, momentum=0.9, nesterov=True, convention="keras")
    steps = [grad] * 40
    fast, _ = _run(D.SGD, True, theta0, steps, **kw)
    chain, _ = _run(D.SGD, False, theta0, steps, **kw)
    nudged, _ = _run(D.SGD, False, torch.nextafter(theta0, theta0 + 1), steps, **kw)
    assert (nudged - chain).abs().max() > 1e-9  # the trajectory really amplifies
    assert torch.equal(fast, chain)


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (D.Adam, dict(lr=0.01, convention="keras")),
        (D.AdamW, dict(lr=0.01, weight_decay=0.1)),
        (D.RMSprop, dict(lr=0.01, centered=True, momentum=0.9)),
        (D.Adagrad, dict(lr=0.1, weight_decay=0.1)),
        (D.NAdam, dict(lr=0.01, convention="optax")),
    ],
    ids=lambda x: x.__name__ if isinstance(x, type) else "",
)
def test_fp64_adaptive_kernels_stay_within_an_ulp_of_the_default_path(cls, kwargs) -> None:
    """Beside the products, the kernels multiply by the reciprocal of a per-tensor constant
    where the default path divides (one rounding apart, for speed)."""
    g = torch.Generator().manual_seed(5)
    p0 = torch.randn(4099, generator=g, dtype=torch.float64)
    grads = [torch.randn(4099, generator=g, dtype=torch.float64) for _ in range(12)]
    fast, _ = _run(cls, True, p0, grads, **kwargs)
    chain, _ = _run(cls, False, p0, grads, **kwargs)
    ulp = torch.finfo(torch.float64).eps * chain.abs().clamp(min=1.0)
    assert ((fast - chain).abs() <= 4 * ulp).all()
    assert (fast != chain).float().mean() < 0.1


# -------------------------------------------------------------------- NAdam's product ----


@BOTH
@pytest.mark.parametrize("convention", ["keras", "optax"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nadam_product_has_the_parameters_precision_under_keras_and_optax(
    convention: str, dtype: torch.dtype, fused: bool
) -> None:
    grads = [torch.full((3,), 0.5, dtype=dtype) * (i + 1) for i in range(30)]
    _, opt = _run(D.NAdam, fused, torch.ones(3, dtype=dtype), grads, convention=convention)
    (st,) = opt.state.values()
    assert st["mu_product"].dtype == dtype
    beta1 = 0.9
    if convention == "optax":  # no schedule: Π_t = β₁ᵗ, exact to float64's rounding
        assert st["mu_product"].item() == pytest.approx(
            beta1**30, rel=1e-15 if dtype == torch.float64 else 1e-6
        )
    else:  # Keras: μ_t = β₁(1 − ½·0.96ᵗ)
        expected = math.prod(beta1 * (1 - 0.5 * 0.96**t) for t in range(1, 31))
        tol = 1e-14 if dtype == torch.float64 else 1e-6
        assert st["mu_product"].item() == pytest.approx(expected, rel=tol)


@BOTH
def test_nadam_product_follows_torch_under_torch_convention(fused: bool) -> None:
    """torch.optim.NAdam keeps Π (and step) in its scalar dtype: float32 unless the default
    dtype is float64, whatever the parameter's dtype. So does convention='torch'."""
    grads = [torch.full((3,), 0.5, dtype=torch.float64)] * 5
    _, ours = _run(D.NAdam, fused, torch.ones(3, dtype=torch.float64), grads)
    p = torch.ones(3, dtype=torch.float64, requires_grad=True)
    ref = torch.optim.NAdam([p])
    for g in grads:
        p.grad = g.clone()
        ref.step()
    (mine,), (theirs,) = ours.state.values(), ref.state.values()
    assert mine["mu_product"].dtype == theirs["mu_product"].dtype == torch.float32
    assert torch.equal(mine["mu_product"], theirs["mu_product"])
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        _, ours64 = _run(D.NAdam, fused, torch.ones(3, dtype=torch.float64), grads)
        (st,) = ours64.state.values()
        assert st["mu_product"].dtype == torch.float64
    finally:
        torch.set_default_dtype(previous)


def test_nadam_product_keeps_its_dtype_through_a_state_dict() -> None:
    def make(convention):
        p = torch.ones(3, dtype=torch.float64, requires_grad=True)
        opt = D.NAdam([p], convention=convention)
        p.grad = torch.full((3,), 0.5, dtype=torch.float64)
        opt.step()
        return p, opt

    for convention, dtype in (("keras", torch.float64), ("torch", torch.float32)):
        _, a = make(convention)
        p, b = make(convention)
        b.load_state_dict(a.state_dict())
        assert b.state[p]["mu_product"].dtype == dtype, convention


# -------------------------------------------- centered RMSprop with bias correction ----


@BOTH
def test_centered_rmsprop_corrects_each_moment_before_centring(fused: bool) -> None:
    """Step 1 by hand: v = (1 − α)g², ḡ = (1 − α)g, c = 1 − α, so optax's v/c − (ḡ/c)² is
    g² − g² = 0 and θ₁ = θ₀ − γ·g/√(0 + ε) (ε inside, optax). Correcting after centring,
    (v − ḡ²)/c = αg², would give θ₀ − γ·g/√(αg² + ε)."""
    lr, alpha, eps = 0.01, 0.9, 1e-2
    g = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    theta0 = torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64)
    kw = dict(lr=lr, alpha=alpha, eps=eps, centered=True, bias_correction=True)
    theta1, _ = _run(D.RMSprop, fused, theta0, [g], convention="optax", **kw)
    torch.testing.assert_close(theta1, theta0 - lr * g / math.sqrt(eps), rtol=0, atol=1e-15)
    wrong = theta0 - lr * g / torch.sqrt(alpha * g * g + eps)
    assert (theta1 - wrong).abs().max() > 1e-3


@BOTH
def test_centered_rmsprop_with_bias_correction_over_several_steps(fused: bool) -> None:
    """Ten steps against the written-out rule: v̂ = v/c, ḡ̂ = ḡ/c, u = g/√(v̂ − ḡ̂² + ε). The
    kernel multiplies by 1/c where the rule divides by c (one rounding apart), and v̂ − ḡ̂²
    cancels to ~1e-3 of v̂ here, so the fast path is held to 1e-10 (the other order is ~1e-2
    away), the chain to 1e-13."""
    lr, alpha, eps = 0.02, 0.8, 1e-3
    theta0 = torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64)

    def grad(t):
        return t**3 - t + 0.2

    theta, v, m = (
        theta0.clone(),
        torch.zeros(3, dtype=torch.float64),
        torch.zeros(3, dtype=torch.float64),
    )
    for t in range(1, 11):
        g = grad(theta)
        v = alpha * v + (1 - alpha) * g * g
        m = alpha * m + (1 - alpha) * g
        c = 1 - alpha**t
        theta = theta - lr * g / torch.sqrt(v / c - (m / c) ** 2 + eps)
    kw = dict(lr=lr, alpha=alpha, eps=eps, centered=True, bias_correction=True)
    ours, _ = _run(D.RMSprop, fused, theta0, [grad] * 10, convention="optax", **kw)
    torch.testing.assert_close(ours, theta, rtol=0, atol=1e-10 if fused else 1e-13)
    kw["bias_correction"] = False
    uncorrected, _ = _run(D.RMSprop, fused, theta0, [grad] * 10, convention="optax", **kw)
    assert (uncorrected - theta).abs().max() > 1e-3
