"""Gradient clipping and the sign flip for maximisation."""

from __future__ import annotations

import torch

from .base import Context, Transform, hp


class clip_by_global_norm(Transform):  # noqa: N801
    """Rescale the whole update list when its global L2 norm exceeds ``max_norm``
    (Pascanu, Mikolov & Bengio, ICML 2013), exactly as ``torch.nn.utils.clip_grad_norm_``:

    .. math::  ‖g‖ = \\sqrt{\\textstyle\\sum_i ‖g_i‖^2},\\qquad
               g ← g · \\min\\big(1, \\text{max\\_norm}/(‖g‖ + 10^{-6})\\big)

    The norm is taken over the parameters the chain runs on (one param group) — over all
    ranks' shards when they are spread over processes (:mod:`descend.optim.distributed`). With
    ``axis`` set, each tensor is instead clipped along that axis on its own (``axis=-1`` on an
    (N, d) tensor of N independent trajectories clips each row: the lab's per-run clipping).
    Records ``grad_norm`` (before clipping).
    """

    def __init__(self, max_norm=hp("max_grad_norm"), axis: int | None = None):
        self.max_norm, self.axis = max_norm, axis

    def update(self, updates, states, params, ctx: Context):
        max_norm = ctx.value(self.max_norm)
        if max_norm is None or not updates:
            return updates
        if self.axis is not None:
            updates = ctx.writable(updates)
            for u in updates:
                norm = torch.linalg.vector_norm(u, 2.0, dim=self.axis, keepdim=True)
                u.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0))
            ctx.record("grad", updates)
            return updates
        agreed = ctx.extras.get("global_grad_norm")
        if agreed is not None:
            # the gradients are spread over ranks, and the optimizer reduced their norm
            # (descend.optim.distributed): valid only for the raw gradients, as in every
            # named optimizer, where clipping is the first link
            if ctx.owned:
                raise ValueError(
                    "clip_by_global_norm across ranks must be the first link of the chain "
                    "(the agreed norm is the raw gradients')"
                )
            wide = torch.promote_types(updates[0].dtype, torch.float32)
            total = agreed.to(wide)
        else:
            norms = _norms(updates)
            # at least float32 (bf16 norms are coarse), but fp64 gradients keep an fp64
            # norm; gathered on the first tensor's device, as clip_grad_norm_ (a group may
            # span devices)
            device = updates[0].device
            wide = [n.to(torch.promote_types(n.dtype, torch.float32)).to(device) for n in norms]
            total = torch.linalg.vector_norm(torch.stack(wide), 2.0)
        ctx.extras["grad_norm"] = total
        ctx.record("grad_norm", [total])
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        # not `coef < 1`: a NaN/Inf norm must reach the gradients (NaN, or 0·Inf = NaN), as
        # torch's clip_grad_norm_ multiplies them by the NaN or zero factor
        if torch.compiler.is_compiling():  # no branch on a value: × 1 leaves them exact
            updates = ctx.writable(updates)
            torch._foreach_mul_(updates, coef.to(updates[0].dtype))
        elif not coef.item() >= 1.0:
            updates = ctx.writable(updates)
            torch._foreach_mul_(updates, coef.to(updates[0].dtype).item())
            ctx.record("grad", updates)
        return updates


def _norms(tensors: list) -> list:
    """‖t‖₂ of each tensor, one ``_foreach_norm`` per device (torch's grouping for the
    multi-tensor kernels, which take tensors of one device), in the input order."""
    devices = {t.device for t in tensors}
    if len(devices) == 1:
        return list(torch._foreach_norm(tensors, 2.0))
    out: list = [None] * len(tensors)
    for device in devices:
        idx = [i for i, t in enumerate(tensors) if t.device == device]
        for i, n in zip(idx, torch._foreach_norm([tensors[i] for i in idx], 2.0)):
            out[i] = n
    return out


class clip_by_value(Transform):  # noqa: N801
    """Clamp each gradient element to [−c, c] (``torch.nn.utils.clip_grad_value_``,
    Keras ``clipvalue``):  g ← clip(g, −c, c)."""

    def __init__(self, clip_value=hp("clip_value")):
        self.clip_value = clip_value

    def update(self, updates, states, params, ctx: Context):
        c = ctx.value(self.clip_value)
        if c is None:
            return updates
        updates = ctx.writable(updates)
        torch._foreach_clamp_min_(updates, -c)
        torch._foreach_clamp_max_(updates, c)
        ctx.record("grad", updates)
        return updates


class flip_sign(Transform):  # noqa: N801
    """``maximize``: ascend instead of descend, g ← −g (torch's ``maximize=True``)."""

    def update(self, updates, states, params, ctx: Context):
        if ctx.owned:
            torch._foreach_neg_(updates)
        else:
            ctx.owned = True
            updates = torch._foreach_neg(updates)
        ctx.record("grad", updates)
        return updates
