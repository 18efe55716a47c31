"""Scaling by a running root-mean-square of the gradients: RMSprop and AdaGrad.

ε placement: ``outside`` divides by √v + ε (torch), ``inside`` by √(v + ε) (Keras, optax,
TensorFlow). The two differ most where v is tiny, i.e. for rarely-updated parameters.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _ops
from .base import Context, KernelPlan, Transform, hp
from .momentum import bias_correction, momentum

EPS_PLACEMENTS_RMS = ("outside", "inside")


class scale_by_rms(Transform):  # noqa: N801
    """RMSprop's scaling (Hinton, Coursera lecture 6e, 2012; Graves 2013 for ``centered``).

    .. math::
        v ← αv + (1 − α)g²,\\quad
        \\bar g ← α\\bar g + (1 − α)g \\;(\\text{centered}),\\quad
        \\tilde v = v − \\bar g^2 \\;(\\text{centered, else } v)

        u = g / (\\sqrt{\\tilde v / c} + ε)\\ \\text{(outside)}
        \\quad\\text{or}\\quad g / \\sqrt{\\tilde v / c + ε}\\ \\text{(inside)}

    with c = 1 − αᵗ when ``bias_correction`` (optax's option), else 1; centered and
    corrected, each moment is corrected before centring, ṽ/c = v/c − (ḡ/c)², as
    ``optax.scale_by_stddev`` does (the variance of the corrected moments). v starts at
    ``initial_accumulator_value`` (optax's ``initial_scale``; 0 in torch and Keras).
    Records ``v``, ``g_avg`` (centered), ``denom``.
    """

    def __init__(
        self,
        alpha=hp("alpha"),
        eps=hp("eps"),
        eps_placement: str = "outside",
        centered: bool = False,
        bias_correction: bool = False,
        initial_accumulator_value: float = 0.0,
    ):
        if eps_placement not in EPS_PLACEMENTS_RMS:
            raise ValueError(
                f"eps_placement={eps_placement!r} is not one of {', '.join(EPS_PLACEMENTS_RMS)}"
            )
        self.alpha, self.eps, self.eps_placement = alpha, eps, eps_placement
        self.centered, self.bias_correction = centered, bias_correction
        self.initial_accumulator_value = initial_accumulator_value
        self.state_keys = ("square_avg", "grad_avg") if centered else ("square_avg",)

    def init(self, param: Tensor, state: dict) -> None:
        if "square_avg" not in state:
            state["square_avg"] = torch.full_like(
                param, self.initial_accumulator_value, memory_format=torch.preserve_format
            )
        if self.centered and "grad_avg" not in state:
            state["grad_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def update(self, updates, states, params, ctx: Context):
        alpha, eps = ctx.value(self.alpha), ctx.value(self.eps)
        v = [st["square_avg"] for st in states]
        _ops.ewa_sq_(v, updates, alpha)
        ctx.record("v", v)
        corr = bias_correction(alpha, ctx) if self.bias_correction else None
        if self.centered:
            gbar = [st["grad_avg"] for st in states]
            _ops.lerp_(gbar, updates, 1 - alpha)
            ctx.record("g_avg", gbar)
            if corr is not None:  # optax's order: correct each moment, then centre
                v = [x / c for x, c in zip(v, corr)]
                gbar = [m / c for m, c in zip(gbar, corr)]
                ctx.record("v_hat", v)
            vt = [x - m * m for x, m in zip(v, gbar)]  # torch: addcmul(v, ḡ, ḡ, value=-1)
        elif corr is not None:
            vt = [x.clone() for x in v]
            _ops.div_list_(vt, corr)
            ctx.record("v_hat", vt)
        else:
            vt = v
        denom = _ops.sqrt_plus_eps(vt, eps, inside=self.eps_placement == "inside")
        ctx.record("denom", denom)
        out = torch._foreach_div(updates, denom)
        ctx.owned = True
        ctx.precond = torch._foreach_reciprocal(denom) if ctx.tracing else None
        return out

    kernel = "rmsprop"
    absorbs = (momentum,)  # RMSprop's momentum runs inside the same kernel

    def kernel_plan(self, read, fields: dict, absorbed: momentum | None) -> KernelPlan:
        fields["alpha"] = read.number(self.alpha, "alpha")
        eps_fields(fields, read.number(self.eps, "eps"), self.eps_placement == "inside")
        fields["centered"], fields["bias2"] = int(self.centered), int(self.bias_correction)
        key = absorbed.kernel_fields(read, fields) if absorbed is not None else None
        slots = ("square_avg", "grad_avg" if self.centered else None, key)
        lazy = key if key is not None and absorbed.form == "modern" else None
        return KernelPlan(slots=slots, lazy=lazy)


def eps_fields(fields: dict, eps: float, inside: bool) -> None:
    """A kernel's ε: ``eps_in`` under the root or ``eps_out`` added after it."""
    fields["eps_in"], fields["eps_out"] = (eps, 0.0) if inside else (0.0, eps)


class scale_by_adagrad(Transform):  # noqa: N801
    """AdaGrad's scaling (Duchi, Hazan & Singer, JMLR 2011).

    .. math::
        s ← s + g^2,\\qquad
        u = \\frac{g}{(1 + (t − 1)\\,δ)\\,(\\sqrt{s} + ε)}

    with δ = ``lr_decay`` (torch's, γ̃ = γ/(1 + (t − 1)δ)), s starting at
    ``initial_accumulator_value`` (0 in torch, 0.1 in Keras and optax), ε outside the root
    (torch, 1e-10) or ``inside`` (Keras, optax). Records ``sum``, ``denom``.
    """

    state_keys = ("sum",)

    def __init__(
        self,
        eps=hp("eps"),
        lr_decay=hp("lr_decay"),
        initial_accumulator_value=hp("initial_accumulator_value"),
        eps_placement: str = "outside",
    ):
        if eps_placement not in EPS_PLACEMENTS_RMS:
            raise ValueError(
                f"eps_placement={eps_placement!r} is not one of {', '.join(EPS_PLACEMENTS_RMS)}"
            )
        self.eps, self.lr_decay = eps, lr_decay
        self.initial_accumulator_value, self.eps_placement = (
            initial_accumulator_value,
            eps_placement,
        )

    def init(self, param: Tensor, state: dict) -> None:
        pass  # needs the group's initial value: created lazily in update

    def update(self, updates, states, params, ctx: Context):
        eps, decay = ctx.value(self.eps), ctx.value(self.lr_decay)
        init = ctx.value(self.initial_accumulator_value)
        for p, st in zip(params, states):
            if "sum" not in st:
                st["sum"] = torch.full_like(p, init, memory_format=torch.preserve_format)
        s = [st["sum"] for st in states]
        torch._foreach_addcmul_(s, updates, updates)
        ctx.record("sum", s)
        denom = _ops.sqrt_plus_eps(s, eps, inside=self.eps_placement == "inside")
        if isinstance(decay, Tensor) or decay != 0:
            _ops.mul_list_(denom, [1 + (t - 1) * decay for t in ctx.t])
        ctx.record("denom", denom)
        out = torch._foreach_div(updates, denom)
        ctx.owned = True
        ctx.precond = torch._foreach_reciprocal(denom) if ctx.tracing else None
        return out

    kernel = "adagrad"

    def kernel_plan(self, read, fields: dict, absorbed=None) -> KernelPlan:
        eps_fields(fields, read.number(self.eps, "eps"), self.eps_placement == "inside")
        fields["lr_decay"] = read.number(self.lr_decay, "lr_decay")
        fill = read.number(self.initial_accumulator_value, "initial_accumulator_value")
        return KernelPlan(slots=("sum", None, None), lazy="sum", lazy_fill=fill)
