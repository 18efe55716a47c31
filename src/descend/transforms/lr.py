"""The learning rate as a link of the chain."""

from __future__ import annotations

from torch import Tensor

from . import _ops
from .base import Context, Transform, hp


class scale_by_lr(Transform):  # noqa: N801
    """u ← γ·u, with γ = ``group["lr"]`` by default, so torch's lr schedulers, OneCycleLR and
    descend's schedules all act through the parameter group. Records ``lr_eff``, the
    per-element effective learning rate γ·(preconditioner) when an adaptive link set one."""

    def __init__(self, lr=hp("lr")):
        self.lr = lr

    def update(self, updates, states, params, ctx: Context):
        lr = ctx.value(self.lr)
        if ctx.tracing:
            pre = ctx.precond
            ctx.record(
                "lr_eff",
                [p * lr for p in pre] if pre is not None else [lr * (u * 0 + 1) for u in updates],
            )
        if not isinstance(lr, Tensor) and lr == 1:
            return updates
        updates = ctx.writable(updates)
        _ops.mul_(updates, lr)
        return updates
