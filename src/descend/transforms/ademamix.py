"""AdEMAMix (Pagliardini, Ablin & Grangier, ICLR 2025, https://arxiv.org/abs/2409.03137):
Adam whose numerator mixes the usual fast EMA of the gradients with a slow one (β₃ ≈ 0.9999,
a memory of ~10k steps), with warm-ups of the mixing weight α and of β₃.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import _ops
from .base import Context, KernelPlan, Transform, hp
from .momentum import bias_correction


def alpha_warmup_value(alpha, step, warmup):
    """α's linear warm-up (the paper's ``alpha_scheduler`` from 0): α·s/T for s < T, then α."""
    if warmup is None or not step < warmup:
        return alpha
    return (step / float(warmup)) * alpha


def beta3_warmup_value(beta3, beta_start, step, warmup):
    """β₃'s warm-up, linear in the half-life (the paper's ``beta3_scheduler``): with
    f(β) = ln ½ / ln β − 1 the number of steps over which β's weights halve and
    f⁻¹(h) = ½^{1/(h + 1)}, β₃(s) = f⁻¹((1 − s/T)·f(β_start) + (s/T)·f(β₃)) for s < T."""
    if warmup is None or not step < warmup:
        return beta3
    a = step / float(warmup)

    def f(beta):
        if isinstance(beta, Tensor):
            return math.log(0.5) / torch.log(beta) - 1
        return math.log(0.5) / math.log(beta) - 1 if beta > 0 else -1.0  # f(0⁺) = −1

    h = (1.0 - a) * f(beta_start) + a * f(beta3)
    if not isinstance(h, Tensor) and h + 1 == 0:
        return 0.0  # β_start = 0 at s = 0: ½^∞
    return 0.5 ** (1 / (h + 1))


class scale_by_ademamix(Transform):  # noqa: N801
    """AdEMAMix's scaling, as ``optax.contrib.scale_by_ademamix`` computes it. With t the step
    (1 on the first step) and s = t − 1 the step count the warm-ups read:

        m₁ ← β₁m₁ + (1 − β₁)g               (fast EMA, bias-corrected)
        m₂ ← β₃(s)m₂ + (1 − β₃(s))g          (slow EMA, not bias-corrected)
        v  ← β₂v + (1 − β₂)g²
        u = (m₁/(1 − β₁ᵗ) + α(s)·m₂) / (√(v/(1 − β₂ᵗ)) + ε)

    α(s) = α·min(1, s/T_α) and β₃(s) as :func:`beta3_warmup_value` from β_start = β₁ over
    T_β₃ steps; ``None`` for either warm-up: the constant value. optax evaluates a schedule
    at the count before the step (s = t − 1, α = 0 on the first step), the authors' torch code
    at t (one step later): descend follows optax, the reference of its tests.

    State ``exp_avg_fast``, ``exp_avg_slow``, ``exp_avg_sq`` (the authors' torch names).
    Records m (fast), m_slow, v, m_hat, v_hat, denom, alpha and beta3 (the values used).
    """

    state_keys = ("exp_avg_fast", "exp_avg_slow", "exp_avg_sq")
    columns = {
        "m_slow": ("m₂", "the slow EMA of g, with β₃(s) (AdEMAMix)"),
        "alpha": ("α(s)", "the slow EMA's weight in the numerator, after its warm-up"),
        "beta3": ("β₃(s)", "the slow EMA's decay rate, after its warm-up"),
    }

    def __init__(
        self,
        b1=hp("betas", 0),
        b2=hp("betas", 1),
        b3=hp("beta3"),
        alpha=hp("alpha"),
        eps=hp("eps"),
        alpha_warmup=hp("alpha_warmup"),
        beta3_warmup=hp("beta3_warmup"),
    ):
        self.b1, self.b2, self.b3, self.alpha, self.eps = b1, b2, b3, alpha, eps
        self.alpha_warmup, self.beta3_warmup = alpha_warmup, beta3_warmup

    def init(self, param: Tensor, state: dict) -> None:
        for key in self.state_keys:
            if key not in state:
                state[key] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def update(self, updates, states, params, ctx: Context):
        b1, b2, b3 = ctx.value(self.b1), ctx.value(self.b2), ctx.value(self.b3)
        alpha, eps = ctx.value(self.alpha), ctx.value(self.eps)
        t_alpha, t_beta3 = ctx.value(self.alpha_warmup), ctx.value(self.beta3_warmup)
        alphas = ctx.per_param(lambda t: alpha_warmup_value(alpha, t - 1, t_alpha))
        beta3s = ctx.per_param(lambda t: beta3_warmup_value(b3, b1, t - 1, t_beta3))
        m1 = [st["exp_avg_fast"] for st in states]
        m2 = [st["exp_avg_slow"] for st in states]
        v = [st["exp_avg_sq"] for st in states]
        _ops.lerp_(m1, updates, 1 - b1)
        if len(set(map(id, beta3s))) == 1:
            _ops.lerp_(m2, updates, 1 - beta3s[0])
        else:
            for m, g, b in zip(m2, updates, beta3s):
                _ops.lerp_([m], [g], 1 - b)
        _ops.ewa_sq_(v, updates, b2)
        ctx.record("m", m1)
        ctx.record("m_slow", m2)
        ctx.record("v", v)
        m_hat = [m / _ops.const(c, m) for m, c in zip(m1, bias_correction(b1, ctx))]
        v_hat = [x / _ops.const(c, x) for x, c in zip(v, bias_correction(b2, ctx))]
        ctx.record("m_hat", m_hat)
        ctx.record("v_hat", v_hat)
        denom = _ops.sqrt_plus_eps(v_hat, eps, inside=False)
        ctx.record("denom", denom)
        num = m_hat
        _ops.add_scaled_list_(num, m2, alphas)
        out = torch._foreach_div(num, denom)
        if ctx.tracing:
            ctx.record("alpha", [_ops.const(a, m) * torch.ones_like(m) for a, m in zip(alphas, m1)])
            ctx.record("beta3", [_ops.const(b, m) * torch.ones_like(m) for b, m in zip(beta3s, m1)])
            # the mixed numerator's factor: u = lr_eff·(m̂₁ + α m₂)
            ctx.precond = torch._foreach_reciprocal(denom)
        ctx.owned = True
        return out

    kernel = "ademamix"

    def kernel_plan(self, read, fields: dict, absorbed=None) -> KernelPlan:
        fields["beta1"] = read.number(self.b1, "betas[0]")
        fields["beta2"] = read.number(self.b2, "betas[1]")
        fields["eps_out"] = read.number(self.eps, "eps")
        fields["ademamix_beta3"] = read.number(self.b3, "beta3")
        fields["ademamix_alpha"] = read.number(self.alpha, "alpha")
        for name, ref in (("alpha_warmup", self.alpha_warmup), ("beta3_warmup", self.beta3_warmup)):
            value = read.optional(ref, name)  # None: no warm-up, the driver's 0 (T ≥ 1)
            fields[f"ademamix_{name}"] = 0.0 if value is None else value
        return KernelPlan(slots=("exp_avg_fast", "exp_avg_slow", "exp_avg_sq"))
