"""The learning rate as a link of the chain."""

from __future__ import annotations

from torch import Tensor

from . import _ops
from .base import Context, Transform, hp


class scale_by_lr(Transform):  # noqa: N801
    """u ← γ·u, with γ = ``group["lr"]`` by default, so torch's lr schedulers, OneCycleLR and
    descend's schedules all act through the parameter group. Records ``lr_eff``, the
    per-element effective learning rate γ·(preconditioner) when an adaptive link set one.
    After a link that left u = s·D pending (``ctx.scales``), a number γ is folded into the
    factors (s ← γs) and D is not touched; a tensor γ (the lab's per-row column) is applied
    to the materialised u."""

    keeps_scales = True

    def __init__(self, lr=hp("lr")):
        self.lr = lr

    def update(self, updates, states, params, ctx: Context):
        lr = ctx.value(self.lr)
        if ctx.scales is not None and isinstance(lr, Tensor):
            updates = ctx.materialise(updates, params)
        if ctx.tracing:
            pre = ctx.precond
            like = params if ctx.scales is not None else updates  # D may be bfloat16
            ctx.record(
                "lr_eff",
                [p * lr for p in pre] if pre is not None else [lr * (u * 0 + 1) for u in like],
            )
        if ctx.scales is not None:  # γ joins the pending factors
            ctx.scales = [lr if s is None else lr * s for s in ctx.scales]
            return updates
        if not isinstance(lr, Tensor) and lr == 1:
            return updates
        updates = ctx.writable(updates)
        _ops.mul_(updates, lr)
        return updates
