"""Schedule-Free averaging (Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky, NeurIPS 2024,
https://arxiv.org/abs/2405.15682), as the ``schedulefree`` package's reference classes
(``SGDScheduleFreeReference``, ``AdamWScheduleFreeReference``) compute it.

Three sequences: z (the base optimizer's iterate), x (a weighted average of the z's, the point
to evaluate and ship) and y (the interpolation between them where the gradient is taken, the
parameter during training). With d the base direction (g for SGD, g/(√v̂ + ε) for AdamW), t the
step (1 on the first step), γ the learning rate, W the warm-up steps and β the interpolation
("momentum" / β₁):

    γₜ = γ · min(1, t/W)                           (linear warm-up; W = 0: none)
    γ_max ← max(γ_max, γₜ)                          (starts at −1)
    wₜ = t^r · γ_max^p,  Wₜ = Wₜ₋₁ + wₜ,  cₜ = wₜ/Wₜ   (r = ``r``, p = ``weight_lr_power``)
    z ← z − γₜλ·y   (AdamW's decoupled decay, or at z with ``decay_at="z"``)
    z ← z − γₜ d
    x ← (1 − cₜ) x + cₜ z
    y ← β x + (1 − β) z

The parameter holds y while training; ``ScheduleFree*.eval()`` swaps it to x. optax's
``schedule_free`` differs in one place: its base optimizer counts steps from 0, so z's step
takes γₜ₋₁ during the warm-up (``warmup_lag=1``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import _ops
from .base import Context, KernelPlan, Transform, hp
from .rms import scale_by_rms

DECAY_AT = ("y", "z")


class schedule_free(Transform):  # noqa: N801
    """The Schedule-Free step on a base direction d (the incoming updates); see the module
    docstring for the equations. The learning rate is applied here (put no ``scale_by_lr``
    after it), and the output is u = θ − y_new, so the optimizer's θ ← θ − u lands on the new y.

    State per parameter: ``z`` and ``x`` (the reference's names; created from θ on the first
    step), and the averaging's bookkeeping ``lr_max`` and ``weight_sum`` (Python numbers, or
    tensors of one value per run when the lab gives each run its own learning rate, so runs
    never mix). The reference keeps the bookkeeping (and its step count ``k``) per param group;
    here it is per parameter, like torch's step counts: the same numbers whenever every
    parameter of a group gets a gradient at every step. Records y, z, x and ``lr_eff``.

    Args:
        momentum: β, the interpolation between x and z (the reference's ``momentum`` for SGD,
            ``betas[0]`` for AdamW).
        lr: γ.
        warmup_steps: W (linear warm-up of γ over the first W steps).
        r: the averaging weight's power of t.
        weight_lr_power: the averaging weight's power of γ_max.
        weight_decay: λ, decoupled decay applied to z (AdamW's); 0 for none (SGD's decay is L2
            on the gradient, a link before this one).
        decay_at: ``"y"`` (the reference's default) or ``"z"`` (its ``decay_at_z=True``).
        warmup_lag: 0 (the reference): z's step (and decay) take γₜ; 1 (optax's
            ``schedule_free``, whose base optimizer counts from 0): they take γₜ₋₁, one
            warm-up step behind the averaging weight's γₜ (γ₀ = 0: no step on z at t = 1).
    """

    state_keys = ("z", "x", "lr_max", "weight_sum")
    columns = {
        "y": ("y", "βx + (1 − β)z: where the gradient is taken, θ while training"),
        "z": ("z", "the base iterate, z ← z − γₜd (Schedule-Free)"),
        "x": ("x", "the weighted average of the z's: the point to evaluate"),
    }

    def __init__(
        self,
        momentum=hp("momentum"),
        lr=hp("lr"),
        warmup_steps=hp("warmup_steps"),
        r=hp("r"),
        weight_lr_power=hp("weight_lr_power"),
        weight_decay=0.0,
        decay_at: str = "y",
        warmup_lag=0,
    ):
        if decay_at not in DECAY_AT:
            raise ValueError(f"decay_at={decay_at!r} is not one of {', '.join(DECAY_AT)}")
        self.momentum, self.lr, self.warmup_steps = momentum, lr, warmup_steps
        self.r, self.weight_lr_power = r, weight_lr_power
        self.weight_decay, self.decay_at, self.warmup_lag = weight_decay, decay_at, warmup_lag

    def init(self, param: Tensor, state: dict) -> None:
        if "z" not in state:
            state["z"] = torch.clone(param, memory_format=torch.preserve_format).detach()
        if "x" not in state:
            state["x"] = torch.clone(param, memory_format=torch.preserve_format).detach()
        state.setdefault("lr_max", -1.0)
        state.setdefault("weight_sum", 0.0)

    def update(self, updates, states, params, ctx: Context):
        beta = ctx.value(self.momentum)
        lr, wd = ctx.value(self.lr), ctx.value(self.weight_decay)
        warmup, r, power = (
            ctx.value(self.warmup_steps),
            ctx.value(self.r),
            ctx.value(self.weight_lr_power),
        )
        lag = ctx.value(self.warmup_lag)
        z = [st["z"] for st in states]
        x = [st["x"] for st in states]
        lrs, coefs = [], []
        for st, t in zip(states, ctx.t):
            lr_t = _warm(lr, t, warmup)
            lr_max = st["lr_max"] = _maximum(lr_t, st["lr_max"])
            weight = (t**r) * _power(lr_max, power)
            weight_sum = st["weight_sum"] = st["weight_sum"] + weight
            lrs.append(lr_t if lag == 0 else _warm(lr, t - lag, warmup))
            coefs.append(_ratio(weight, weight_sum))
        if _nonzero(wd):
            point = z if self.decay_at == "z" else params
            _ops.add_scaled_list_(z, point, [-(a * wd) for a in lrs])
        _ops.add_scaled_list_(z, updates, [-a for a in lrs])
        # x ← (1 − c)x + c·z, in the reference's order
        _ops.mul_list_(x, [1 - c for c in coefs])
        _ops.add_scaled_list_(x, z, coefs)
        # y = βx + (1 − β)z, computed as the reference does (x.mul(β).add_(z, alpha=1 − β))
        y = [xi * _ops.const(beta, xi) for xi in x]
        _ops.add_scaled_(y, z, 1 - beta)
        if ctx.tracing:
            ctx.record("y", y)
            ctx.record("z", z)
            ctx.record("x", x)
            # γₜ times the base direction's preconditioner (1/(√v̂ + ε) for AdamW, 1 for SGD)
            pre = ctx.precond or [torch.ones_like(u) for u in updates]
            ctx.record("lr_eff", [q * a for q, a in zip(pre, lrs)])
            ctx.precond = None
        out = torch._foreach_sub(params, y)
        ctx.owned = True
        return out

    kernel = "schedule_free"
    absorbs_before = (scale_by_rms,)  # Schedule-Free AdamW's base direction g/(√v̂ + ε)

    def kernel_plan(self, read, fields: dict, absorbed: scale_by_rms | None) -> KernelPlan:
        if absorbed is not None:
            if absorbed.centered or absorbed.eps_placement != "outside":
                read.refuse(
                    "Schedule-Free's kernel runs scale_by_rms uncentred with ε outside the root"
                )
            fields["sf_rms"] = 1
            fields["beta2"] = read.number(absorbed.alpha, "betas[1]")
            fields["eps_out"] = read.number(absorbed.eps, "eps")
            fields["bias2"] = int(absorbed.bias_correction)
        fields["beta"] = read.number(self.momentum, "momentum")
        fields["sf_lr"] = read.number(self.lr, "lr")
        fields["sf_warmup"] = read.number(self.warmup_steps, "warmup_steps")
        fields["sf_r"] = read.number(self.r, "r")
        fields["sf_power"] = read.number(self.weight_lr_power, "weight_lr_power")
        wd = read.number(self.weight_decay, "weight_decay")
        fields["sf_wd"] = wd
        fields["sf_decay"] = 0 if wd == 0 else (2 if self.decay_at == "z" else 1)
        fields["sf_lag"] = int(read.number(self.warmup_lag, "warmup_lag"))
        v = "square_avg" if absorbed is not None else None
        return KernelPlan(
            slots=(v, "z", "x"), host={"sf_lr_max": "lr_max", "sf_weight_sum": "weight_sum"}
        )


def _warm(lr, t, warmup):
    """γ·t/W during the warm-up (t ≤ W), else γ."""
    return lr * (t / warmup) if warmup and t - 1 < warmup else lr


def _maximum(a, b):
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        a = a if isinstance(a, Tensor) else torch.tensor(a, dtype=torch.float64)
        return torch.maximum(a, b if isinstance(b, Tensor) else torch.full_like(a, b))
    return max(a, b)


def _power(x, p):
    return x**p if isinstance(x, Tensor) or isinstance(p, Tensor) else math.pow(x, p)


def _ratio(weight, weight_sum):
    """w/W, 0 where W = 0 (the reference's ZeroDivisionError branch: γ = 0 from the start)."""
    if isinstance(weight_sum, Tensor):
        return torch.where(weight_sum == 0, torch.zeros_like(weight_sum), weight / weight_sum)
    return weight / weight_sum if weight_sum != 0 else 0.0


def _nonzero(x) -> bool:
    return isinstance(x, Tensor) or x != 0
