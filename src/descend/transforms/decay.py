"""Weight decay in its three placements.

* ``l2``: g ← g + λθ, before any moment estimate (torch's ``weight_decay`` on SGD/Adam/…;
  "Adam + L2"). Adaptive optimizers then divide the decay by √v, which is why Loshchilov &
  Hutter (ICLR 2019) proposed decoupling it.
* ``decoupled``: u ← u + γλθ, i.e. θ ← θ(1 − γλ) beside the optimizer's step (torch AdamW,
  Keras' ``weight_decay`` on every optimizer, optax ``adamw``).
* ``independent``: u ← u + λθ, not multiplied by the learning rate (the paper's fully
  decoupled form; the decay rate does not change when a schedule changes γ).
"""

from __future__ import annotations

from torch import Tensor

from . import _ops
from .base import Context, Transform, hp

WEIGHT_DECAY_MODES = ("l2", "decoupled", "independent")


class add_weight_decay(Transform):  # noqa: N801
    """Add λθ to the gradient (``l2``), or shrink the parameters in place by γλθ / λθ
    (``decoupled`` / ``independent``) before the optimizer applies θ ← θ − u. Place ``l2``
    first in a chain and the other two last.

    .. math::  g ← g + λθ \\quad|\\quad θ ← θ(1 − γλ) \\quad|\\quad θ ← θ(1 − λ)

    The decoupled forms leave u unchanged (when tracing, ``ctx.extras["decay"]`` holds the
    amount removed, which the optimizer adds to the recorded ``update``).
    """

    def __init__(self, weight_decay=hp("weight_decay"), mode: str = "l2", lr=hp("lr")):
        if mode not in WEIGHT_DECAY_MODES:
            raise ValueError(
                f"weight_decay_mode={mode!r} is not one of {', '.join(WEIGHT_DECAY_MODES)}"
            )
        self.weight_decay, self.mode, self.lr = weight_decay, mode, lr

    @property
    def keeps_scales(self) -> bool:  # type: ignore[override]
        """The decoupled forms shrink θ and leave u alone: an earlier link's pending factor
        (``ctx.scales``) stays valid; ``l2`` adds to u."""
        return self.mode != "l2"

    def update(self, updates, states, params, ctx: Context):
        wd = ctx.value(self.weight_decay)
        if not isinstance(wd, Tensor) and wd == 0:
            return updates
        if self.mode == "l2":
            updates = ctx.writable(ctx.materialise(updates, params))
            _ops.add_scaled_(updates, params, wd)
            ctx.record("grad", updates)
            return updates
        if self.mode == "decoupled":
            wd = ctx.value(self.lr) * wd
        # θ ← θ(1 − γλ) in place, then the optimizer applies θ ← θ − u: torch's order
        # (param.mul_(1 − lr·wd) before the step), so trajectories match torch's to rounding.
        # Adding γλθ to u instead is the same maths but drifts by ~1e-6 in fp32 over 100 steps.
        if ctx.tracing:
            ctx.extras["decay"] = [p * wd for p in params]
        _ops.mul_(params, 1 - wd)
        return updates


def weight_decay_links(wd_mode: str) -> tuple[list[Transform], list[Transform]]:
    """The decay link to put (before the chain, after the chain) for ``wd_mode``."""
    link = add_weight_decay(mode=wd_mode)
    return ([link], []) if wd_mode == "l2" else ([], [link])
