"""Rprop: resilient backpropagation (Riedmiller & Braun, ICNN 1993), torch.optim.Rprop's form.

A step size per element that grows while the gradient keeps its sign and shrinks when it
flips; the update uses only the sign of the gradient, never its size. Paper:
https://doi.org/10.1109/ICNN.1993.298623
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Context, KernelPlan, Transform, hp


class scale_by_rprop(Transform):  # noqa: N801
    """Rprop's per-element step sizes, exactly as ``torch.optim.Rprop`` computes them.

    .. math::
        s = \\operatorname{sign}(g_t\\, g_{t-1}),\\qquad
        η_t = \\operatorname{clip}\\big(η_{t-1}·\\{η_+ \\text{ if } s > 0;\\ η_- \\text{ if }
        s < 0;\\ 1 \\text{ else}\\},\\ Γ_{\\min},\\ Γ_{\\max}\\big)

        g_t ← 0 \\text{ where } s < 0,\\qquad u = η_t \\operatorname{sign}(g_t),\\qquad
        g_{t-1} ← g_t

    with (η₋, η₊) = ``etas`` and (Γ_min, Γ_max) = ``step_sizes``. The step sizes start at the
    learning rate γ of the group when the state is created (η₀ = γ: a later change of γ, e.g.
    by a scheduler, has no effect, as in torch), so the chain has no ``scale_by_lr`` link.
    This is torch's variant, iRprop⁻ (Igel & Hüsken 2000): where the sign flipped the step
    size shrinks and the gradient is zeroed, so no step is taken there and the next step sees
    s = 0; the 1993 paper instead takes back the previous step there (weight backtracking).
    The clip applies to every element each step. ``optax.scale_by_rprop`` (0.2.8) clips only the
    elements it grows or shrinks (the two agree while γ ∈ [Γ_min, Γ_max]), and returns the
    *previous* step's update (zero at the first step: google-deepmind/optax PR #1725), so it
    is no convention here.
    State (torch's keys): ``prev`` (g_{t−1} after masking), ``step_size`` (η).
    Records ``agree`` (s) and ``step_size`` (η_t).
    """

    state_keys = ("prev", "step_size")
    columns = {
        "agree": ("sign(g·g₋₁)", "sign of g times the previous (masked) gradient"),
        "step_size": ("η", "per-element step size"),
    }

    def __init__(self, etas=hp("etas"), step_sizes=hp("step_sizes"), lr=hp("lr")):
        self.etas, self.step_sizes, self.lr = etas, step_sizes, lr

    def init(self, param: Tensor, state: dict) -> None:
        if "prev" not in state:
            state["prev"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        # step_size needs the group's lr: created in update

    def update(self, updates, states, params, ctx: Context):
        eta_minus, eta_plus = (ctx.value(e) for e in ctx.value(self.etas))
        lo, hi = (ctx.value(s) for s in ctx.value(self.step_sizes))
        lr = None
        signs, sizes, out = [], [], []
        for g, p, st in zip(updates, params, states):
            if "step_size" not in st:
                if lr is None:
                    lr = ctx.value(self.lr)
                st["step_size"] = _full_like(p, lr)
            prev, size = st["prev"], st["step_size"]
            s = g.mul(prev).sign()
            factor = torch.where(
                s > 0, _like(eta_plus, s), torch.where(s < 0, _like(eta_minus, s), s)
            )
            factor = torch.where(s == 0, torch.ones_like(s), factor)  # NaN stays NaN, as torch's
            size.mul_(factor).clamp_(lo, hi)
            masked = torch.where(s < 0, torch.zeros_like(g), g)
            prev.copy_(masked)
            out.append(masked.sign().mul_(size))
            signs.append(s)
            sizes.append(size)
        ctx.record("agree", signs)
        ctx.record("step_size", sizes)
        ctx.owned = True
        return out

    kernel = "rprop"

    def kernel_plan(self, read, fields: dict, absorbed=None) -> KernelPlan:
        etas = self.etas.resolve(read.group) if isinstance(self.etas, hp) else self.etas
        sizes = self.step_sizes
        sizes = sizes.resolve(read.group) if isinstance(sizes, hp) else sizes
        fields["rprop_eta_minus"] = read.number(etas[0], "etas[0]")
        fields["rprop_eta_plus"] = read.number(etas[1], "etas[1]")
        fields["rprop_step_min"] = read.number(sizes[0], "step_sizes[0]")
        fields["rprop_step_max"] = read.number(sizes[1], "step_sizes[1]")
        # η₀ = γ, read when a parameter's step_size is created (the lab's (N, 1) γ too)
        lr = read.scaling(self.lr, "lr")
        return KernelPlan(slots=("prev", "step_size", None), lazy="step_size", lazy_fill=lr)


def _like(x, like: Tensor):
    """A number, or a per-run tensor cast to ``like``'s dtype and device, for torch.where."""
    return x.to(dtype=like.dtype, device=like.device) if isinstance(x, Tensor) else x


def _full_like(p: Tensor, value) -> Tensor:
    """η₀ = γ for every element (a per-run (N, 1) γ broadcasts over each run's row)."""
    if isinstance(value, Tensor):
        return torch.zeros_like(p, memory_format=torch.preserve_format).add_(
            value.to(dtype=p.dtype, device=p.device)
        )
    return torch.full_like(p, value, memory_format=torch.preserve_format)
