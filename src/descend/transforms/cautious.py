"""The cautious mask (Liang, Chen, Liu & Liu 2024, "Cautious Optimizers: Improving Training
with One Line of Code", https://arxiv.org/abs/2411.16085).

A momentum method's update u may point against the current gradient g (the momentum still
carries the old direction). The cautious variant keeps only the coordinates where the two
agree, and rescales what is kept so the update keeps its size on average:

    φ = 1[u ⊙ g > 0],   u ← u ⊙ φ · n / (Σφ + 1)

per tensor, with n its number of elements — the renormalisation of the authors' code and of
``pytorch_optimizer`` (``BaseOptimizer.apply_cautious``). The paper's Algorithm 1 writes the
same scale with n the dimension of the whole parameter vector; timm's variants divide by
max(mean φ, 1e-3) per tensor instead (n / Σφ, no +1), which differs by a factor (Σφ + 1)/Σφ.
"""

from __future__ import annotations

import torch

from .base import Chain, Context, Transform


class cautious(Transform):  # noqa: N801 - transforms are named like functions (optax style)
    """Wrap a momentum core so its update only moves where it agrees with the gradient.

    .. math::
        u = \\text{inner}(g),\\quad φ = 1[u ⊙ g > 0],\\quad
        u ← u ⊙ φ · \\frac{n}{\\sum φ + 1}\\ \\text{(per tensor, n its size)}

    ``g`` is the update list the wrapper receives (the gradient after clipping, ``maximize``
    and L2 decay: what the core sees), ``inner`` any transform (the core of a momentum-based
    optimizer: ``scale_by_adam``, ``momentum``, ``scale_by_lion`` …); the learning rate and
    decoupled decay come after, outside the mask, as in the reference implementations.
    Records ``cautious_mask`` (φ).
    """

    columns = {"cautious_mask": ("φ", "1[u·g > 0]: where the update is kept (rescaled n/(Σφ+1))")}

    def __init__(self, inner: Transform):
        if not isinstance(inner, Transform):
            raise TypeError(f"cautious() wraps a transform, got {type(inner).__name__}")
        self.inner = inner
        self.state_keys = inner.state_keys
        # the wrapped transforms' own explain columns are this link's too
        inner_links = inner.transforms if isinstance(inner, Chain) else [inner]
        own = {k: v for t in inner_links for k, v in getattr(t, "columns", {}).items()}
        self.columns = {**own, **type(self).columns}

    def init(self, param, state: dict) -> None:
        self.inner.init(param, state)

    def update(self, updates, states, params, ctx: Context):
        # The inner core may modify a list the chain owns in place: keep g apart then.
        grads = [g.clone() for g in updates] if ctx.owned else list(updates)
        out = ctx.writable(self.inner.update(updates, states, params, ctx))
        masks = mask_and_scale(out, grads)
        torch._foreach_mul_(out, masks)
        if ctx.tracing:
            ctx.record("cautious_mask", [(m > 0).to(m.dtype) for m in masks])
            # the effective lr of the kept coordinates, rescaled (update = lr_eff · moment)
            pre = ctx.precond
            ctx.precond = masks if pre is None else [p * m for p, m in zip(pre, masks)]
        ctx.owned = True
        return out

    def __repr__(self) -> str:
        return f"cautious({self.inner!r})"


def mask_and_scale(updates: list, grads: list) -> list:
    """φ · n/(Σφ + 1) for each tensor, φ = 1[u ⊙ g > 0] (new tensors, the updates' dtype)."""
    products = torch._foreach_mul(updates, grads)
    masks = [(p > 0).to(u.dtype) for p, u in zip(products, updates)]
    for m in masks:
        m.mul_(m.numel() / (m.sum() + 1))
    return masks
