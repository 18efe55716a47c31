"""Adadelta (Zeiler 2012, https://arxiv.org/abs/1212.5701, Algorithm 1): AdaGrad's per-coordinate
scaling with the sum of g² replaced by a running average, and the learning rate's units
supplied by a running average of the past steps themselves:

    E[g²] ← ρE[g²] + (1 − ρ)g²
    Δ = √(E[Δ²] + ε) / √(E[g²] + ε) · g
    E[Δ²] ← ρE[Δ²] + (1 − ρ)Δ²
    θ ← θ − γΔ

The paper has no γ (γ = 1, torch's default); torch, Keras and optax all multiply the step by a
learning rate afterwards, and keep E[Δ²] of the step *before* γ. The three references compute
the same thing (Keras writes it as −(√(E[Δ²] + ε)·g)/√(E[g²] + ε), which differs only in
rounding); their defaults differ: torch ρ = 0.9, ε = 1e-6, γ = 1; Keras ρ = 0.95, ε = 1e-7,
γ = 1e-3; optax ρ = 0.9, ε = 1e-6 and no default γ.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _ops
from .adam import _zeros
from .base import Context, KernelPlan, Transform, hp


class scale_by_adadelta(Transform):  # noqa: N801
    """Adadelta's scaling.

    .. math::
        v ← ρv + (1 − ρ)g^2,\\quad
        Δ = \\frac{\\sqrt{a + ε}}{\\sqrt{v + ε}}\\,g,\\quad
        a ← ρa + (1 − ρ)Δ^2

    with v = E[g²] and a = E[Δ²] under torch's state keys ``square_avg`` and ``acc_delta``;
    the output is Δ (the learning rate, 1 in the paper, is the next link). Records v, denom
    (√(v + ε)), rms_delta (√(a + ε), with the a of the previous step) and delta_avg (the new a).
    """

    state_keys = ("square_avg", "acc_delta")
    columns = {
        "rms_delta": ("√(E[Δ²]+ε)", "RMS of the past steps: the numerator of Adadelta's step"),
        "delta_avg": ("E[Δ²]", "EWA of the squared steps before the lr (Adadelta)"),
    }

    def __init__(self, rho=hp("rho"), eps=hp("eps")):
        self.rho, self.eps = rho, eps

    def init(self, param: Tensor, state: dict) -> None:
        for key in self.state_keys:
            if key not in state:
                state[key] = _zeros(param)

    def update(self, updates, states, params, ctx: Context):
        rho, eps = ctx.value(self.rho), ctx.value(self.eps)
        v = [st["square_avg"] for st in states]
        acc = [st["acc_delta"] for st in states]
        _ops.ewa_sq_(v, updates, rho)  # torch: square_avg.mul_(ρ).addcmul_(g, g, 1 − ρ)
        ctx.record("v", v)
        std = _ops.sqrt_plus_eps(v, eps, inside=True)
        delta = _ops.sqrt_plus_eps(acc, eps, inside=True)
        ctx.record("denom", std)
        ctx.record("rms_delta", delta)
        if ctx.tracing:
            ctx.precond = torch._foreach_div(delta, std)
        torch._foreach_div_(delta, std)  # torch: delta.div_(std).mul_(grad)
        torch._foreach_mul_(delta, updates)
        _ops.ewa_sq_(acc, delta, rho)
        ctx.record("delta_avg", acc)
        ctx.owned = True
        return delta

    kernel = "adadelta"

    def kernel_plan(self, read, fields: dict, absorbed=None) -> KernelPlan:
        fields["alpha"] = read.number(self.rho, "rho")  # Args.alpha: the EWA's decay
        fields["eps_in"] = read.number(self.eps, "eps")
        return KernelPlan(slots=("square_avg", "acc_delta", None))
