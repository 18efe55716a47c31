"""ADOPT (Taniguchi, Harada, Minegishi, Oshima, Jeong, Nagahara, Iiyama, Suzuki, Iwasawa &
Matsuo, NeurIPS 2024, https://arxiv.org/abs/2411.02853): Adam with the current gradient left
out of its own denominator, and the normalisation moved inside the momentum, so that it
converges for any β₂.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import _ops
from .base import Context, KernelPlan, Transform, hp


def clip_value_at(clip_lambda, step: float):
    """ADOPT's clipping value c(s) at step s (s = 1 at the first momentum update):
    ``clip_lambda(s)`` for a function (the authors' torch keyword), s^p for a number p
    (0.25, the paper's schedule, for which its convergence guarantee holds)."""
    return clip_lambda(step) if callable(clip_lambda) else step**clip_lambda


class scale_by_adopt(Transform):  # noqa: N801
    """ADOPT's scaling, as ``optax.contrib.scale_by_adopt`` and the authors' torch code
    (``torch-adopt``) compute it. With t the step (1 on the first step):

        t = 1:  v ← g²,  u = 0   (the first step only measures the gradient's scale)
        t ≥ 2:  n = clip(g / max(√v, ε), −c(t − 1), c(t − 1))   (v from the steps before)
                m ← β₁m + (1 − β₁)n
                v ← β₂v + (1 − β₂)g²
                u = m,  or β₁m + (1 − β₁)n with ``nesterov`` (optax's option)

    c from ``clip_lambda`` (:func:`clip_value_at`: a function of s, or a number p for s^p;
    0.25 is the paper's); ``use_clipping=False`` (optax's switch) or ``clip_lambda=None``
    turns clipping off (the paper's first version). State
    ``exp_avg`` (m) and ``exp_avg_sq`` (v), torch Adam's names.
    Records ``v`` (the v that divided g), ``denom`` = max(√v, ε), ``normed`` (n), ``m``, and
    sets the effective rate's factor 1/max(√v, ε) (``lr_eff`` = γ/max(√v, ε)).
    """

    state_keys = ("exp_avg", "exp_avg_sq")
    columns = {"normed": ("n", "g/max(√v, ε), clipped: what enters ADOPT's momentum")}

    def __init__(
        self,
        b1=hp("betas", 0),
        b2=hp("betas", 1),
        eps=hp("eps"),
        clip_lambda=hp("clip_lambda"),
        use_clipping=hp("use_clipping"),
        nesterov: bool = False,
    ):
        self.b1, self.b2, self.eps = b1, b2, eps
        self.clip_lambda, self.use_clipping, self.nesterov = clip_lambda, use_clipping, nesterov

    def init(self, param: Tensor, state: dict) -> None:
        for key in self.state_keys:
            if key not in state:
                state[key] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def update(self, updates, states, params, ctx: Context):
        b1, b2, eps = ctx.value(self.b1), ctx.value(self.b2), ctx.value(self.eps)
        clip = ctx.value(self.clip_lambda) if ctx.value(self.use_clipping) else None
        out: list[Tensor | None] = [None] * len(updates)
        later = []  # parameters past their first step
        for i, (g, st, t) in enumerate(zip(updates, states, ctx.t)):
            if t <= 1:  # v₁ = g₁², no step
                st["exp_avg_sq"].addcmul_(g, g)
                out[i] = torch.zeros_like(g)
            else:
                later.append(i)
        if not later:
            ctx.record("v", [st["exp_avg_sq"] for st in states])
        else:
            # trace lists hold one tensor per parameter: recorded when all are past step 1
            record = ctx.record if len(later) == len(updates) else _skip
            g = [updates[i] for i in later]
            m = [states[i]["exp_avg"] for i in later]
            v = [states[i]["exp_avg_sq"] for i in later]
            record("v", v)
            denom = torch._foreach_sqrt(v)
            _clamp_min_(denom, eps)
            record("denom", denom)
            normed = torch._foreach_div(g, denom)
            if clip is not None:
                for n, i in zip(normed, later):
                    c = clip_value_at(clip, ctx.t[i] - 1)
                    n.clamp_(-c, c)
            record("normed", normed)
            _ops.lerp_(m, normed, 1 - b1)
            record("m", m)
            _ops.ewa_sq_(v, g, b2)
            if self.nesterov:
                step = [n * _ops.const(1 - b1, n) for n in normed]
                _ops.add_scaled_(step, m, b1)
            else:
                step = [x.clone() for x in m]
            for i, s in zip(later, step):
                out[i] = s
            if ctx.tracing and len(later) == len(updates):
                # lr_eff = γ/max(√v, ε): the rate at which g enters the step through m
                ctx.precond = torch._foreach_reciprocal(denom)
        ctx.owned = True
        return out

    kernel = "adopt"

    def kernel_plan(self, read, fields: dict, absorbed=None) -> KernelPlan:
        fields["beta1"] = read.number(self.b1, "betas[0]")
        fields["beta2"] = read.number(self.b2, "betas[1]")
        fields["eps_out"] = read.number(self.eps, "eps")  # the floor of max(√v, ε)
        use = self.use_clipping
        use = use.resolve(read.group) if isinstance(use, hp) else use
        clip = self.clip_lambda
        clip = clip.resolve(read.group) if isinstance(clip, hp) else clip
        per_tensor = None
        if use and clip is not None:
            fields["adopt_clip"] = 1
            if callable(clip):  # c(t − 1) per tensor, evaluated in Python at each step

                def per_tensor(ts: list[float], f=clip) -> tuple[str, list[float]]:
                    # as update: never called on a first step (t = 1 has no clipping)
                    values = [float(clip_value_at(f, t - 1)) if t > 1 else math.inf for t in ts]
                    return "adopt_clip_at", values

            else:
                fields["adopt_clip_exp"] = read.number(clip, "clip_lambda")
        fields["adopt_nesterov"] = int(self.nesterov)
        return KernelPlan(slots=("exp_avg", "exp_avg_sq", None), per_tensor=per_tensor)


def _skip(name, tensors) -> None:
    pass


def _clamp_min_(xs: list[Tensor], low) -> None:
    if isinstance(low, Tensor):
        for x in xs:
            torch.maximum(x, low.to(x.dtype), out=x)
    else:
        torch._foreach_clamp_min_(xs, low)


class after_first_step(Transform):  # noqa: N801
    """Run ``link`` only on the parameters past their first step. ADOPT's first step measures
    v and moves nothing, its decoupled weight decay included (the authors' torch code skips
    the whole update on the first step)."""

    def __init__(self, link: Transform):
        self.link = link
        self.state_keys = link.state_keys

    def init(self, param: Tensor, state: dict) -> None:
        self.link.init(param, state)

    def update(self, updates, states, params, ctx: Context):
        later = [i for i, t in enumerate(ctx.t) if t > 1]
        if len(later) == len(updates):
            return self.link.update(updates, states, params, ctx)
        if not later:
            return updates
        sub = Context(ctx.group, [ctx.steps[i] for i in later])
        part = self.link.update(
            [updates[i] for i in later], [states[i] for i in later], [params[i] for i in later], sub
        )
        out = list(updates)
        for i, u in zip(later, part):
            out[i] = u
        return out
