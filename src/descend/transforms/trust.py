"""Layer-wise trust ratios: LARS (You, Gitman & Ginsburg 2017, https://arxiv.org/abs/1708.03888)
and LAMB (You et al., ICLR 2020, https://arxiv.org/abs/1904.00962).

Each tensor's update is rescaled so its norm is a fixed fraction of the parameter's norm,
whatever the gradient's scale in that layer:

    r = η · ‖θ‖ / (‖u‖ + ε)   (r = 1 where ‖θ‖ = 0 or ‖u‖ = 0),   u ← r · u

η is the trust coefficient (LARS: 1e-3, with the learning rate outside; LAMB: 1). This is
optax's ``scale_by_trust_ratio``; ``min_norm`` clamps both norms from below as it does.
"""

from __future__ import annotations

import torch

from ._sharded import norms
from .base import Context, Transform, hp


class scale_by_trust_ratio(Transform):  # noqa: N801
    """u ← r·u per tensor, r = η‖θ‖/(‖u‖ + ε), and r = 1 where either norm is 0.

    .. math::
        r = \\frac{η\\,\\max(‖θ‖, n_{\\min})}{\\max(‖u‖, n_{\\min}) + ε}

    Args:
        trust_coefficient: η (a group key by default).
        eps: ε added to the update's norm (a group key by default).
        min_norm: lower bound of both norms (optax's ``min_norm``, 0 by default).

    The ratio is per tensor: each parameter of the group is one "layer". Records
    ``param_norm``, ``update_norm`` and ``trust_ratio`` (one value per tensor).
    """

    columns = {
        "param_norm": ("‖θ‖", "the tensor's norm"),
        "update_norm": ("‖u‖", "the update's norm before the trust ratio"),
        "trust_ratio": ("r", "η‖θ‖/(‖u‖ + ε): the update's scale for this tensor"),
    }

    def __init__(self, trust_coefficient=hp("trust_coefficient"), eps=hp("eps"), min_norm=0.0):
        self.trust_coefficient, self.eps, self.min_norm = trust_coefficient, eps, min_norm

    def update(self, updates, states, params, ctx: Context):
        coef, eps = ctx.value(self.trust_coefficient), ctx.value(self.eps)
        min_norm = ctx.value(self.min_norm)
        # DTensor shards (FSDP2): each norm over the whole tensor, in one reduction across ranks
        both = [_safe_norm(n, min_norm) for n in norms([*params, *updates])]
        p_norms, u_norms = both[: len(params)], both[len(params) :]
        ratios = []
        for pn, un in zip(p_norms, u_norms):
            ratio = coef * pn / (un + eps)
            # r = 1 where the parameter or the update is zero: a layer starting at 0 (biases)
            # would otherwise never move, and 0/0 would be NaN.
            ratios.append(torch.where((pn == 0) | (un == 0), torch.ones_like(ratio), ratio))
        out = [u * r for u, r in zip(updates, ratios)]
        ctx.owned = True
        if ctx.tracing:
            ctx.record("param_norm", p_norms)
            ctx.record("update_norm", u_norms)
            ctx.record("trust_ratio", ratios)
            if ctx.precond is not None:
                ctx.precond = [p * r for p, r in zip(ctx.precond, ratios)]
            else:
                ctx.precond = [r * torch.ones_like(u) for u, r in zip(updates, ratios)]
        return out


def _safe_norm(norm: torch.Tensor, min_norm) -> torch.Tensor:
    """max(‖x‖, min_norm), as optax's ``safe_norm`` (the norm where it is above min_norm)."""
    if not isinstance(min_norm, torch.Tensor) and min_norm == 0:
        return norm
    return torch.where(norm <= min_norm, torch.as_tensor(min_norm, dtype=norm.dtype), norm)
