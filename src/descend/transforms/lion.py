"""Lion's update: the sign of an interpolation between momentum and gradient."""

from __future__ import annotations

import torch
from torch import Tensor

from . import _ops
from .base import Context, KernelPlan, Transform, hp


class scale_by_lion(Transform):  # noqa: N801 - transforms are named like functions (optax style)
    """Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms",
    https://arxiv.org/abs/2302.06675), before the learning rate:

    .. math::
        c = β₁m + (1 − β₁)g,\\qquad u = \\operatorname{sign}(c),\\qquad
        m ← β₂m + (1 − β₂)g

    Every coordinate moves by exactly ±γ (0 where c = 0): the update has the size of the
    learning rate whatever the gradient's scale, so Lion wants a γ 3–10× below Adam's. m
    starts at zero under torch's key ``exp_avg`` (``lion-pytorch``, optax's ``mu``). Records
    ``sign_input`` (c), ``update`` and ``m``, in the reference's order of operations
    (``lion-pytorch``: ``m·β₁ + (1 − β₁)·g``, then the EWA of m).
    """

    state_keys = ("exp_avg",)
    columns = {"sign_input": ("c", "β₁m + (1 − β₁)g: its sign is the step (Lion)")}

    def __init__(self, b1=hp("betas", 0), b2=hp("betas", 1)):
        self.b1, self.b2 = b1, b2

    def init(self, param: Tensor, state: dict) -> None:
        if "exp_avg" not in state:
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def update(self, updates, states, params, ctx: Context):
        b1, b2 = ctx.value(self.b1), ctx.value(self.b2)
        m = [st["exp_avg"] for st in states]
        c = [x * b1 for x in m] if isinstance(b1, Tensor) else torch._foreach_mul(m, b1)
        _ops.add_scaled_(c, updates, 1 - b1)
        ctx.record("sign_input", c)
        out = torch._foreach_sign(c)
        _ops.mul_(m, b2)
        _ops.add_scaled_(m, updates, 1 - b2)
        ctx.record("m", m)
        ctx.owned = True
        return out

    kernel = "lion"

    def kernel_plan(self, read, fields: dict, absorbed=None) -> KernelPlan:
        fields["beta1"] = read.number(self.b1, "betas[0]")
        fields["beta2"] = read.number(self.b2, "betas[1]")
        return KernelPlan(slots=("exp_avg", None, None))
