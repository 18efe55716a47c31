"""Adamax (Kingma & Ba, ICLR 2015, §7.1, https://arxiv.org/abs/1412.6980): Adam with the L²
norm of the second moment generalised to L^p and p → ∞, which leaves an exponentially
weighted infinity norm u that needs no bias correction:

    m ← β₁m + (1 − β₁)g,   u ← max(β₂u, |g|),   θ ← θ − γ/(1 − β₁ᵗ) · m/u

The paper has no ε. The references put it in two places (``eps_placement``):

* ``inside`` (torch, optax): u ← max(β₂u, |g| + ε), u = m/u — ε enters the running max, so it
  is remembered and decays with β₂ like any gradient;
* ``outside`` (Keras): u ← max(β₂u, |g|), u = m/(u + ε) — ε only guards the division.

They differ by up to ε relatively per coordinate whenever |g| + ε wins the max, and more where
u is tiny (a coordinate whose gradient has been 0: torch divides by ε·β₂^k, Keras by ε).
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _ops
from .adam import _zeros
from .base import Context, KernelPlan, Transform, hp
from .momentum import bias_correction
from .rms import eps_fields

EPS_PLACEMENTS_ADAMAX = ("inside", "outside")


class scale_by_adamax(Transform):  # noqa: N801
    """Adamax's scaling.

    .. math::
        m ← β₁m + (1 − β₁)g,\\quad
        u ← \\max(β₂u, |g| + ε)\\ (\\text{inside}),\\quad
        u ← \\max(β₂u, |g|)\\ (\\text{outside})

        \\text{update} = \\frac{m}{(1 − β₁^t)\\,u}\\ (\\text{inside}),\\quad
        \\frac{m}{(1 − β₁^t)(u + ε)}\\ (\\text{outside})

    State under torch's keys ``exp_avg`` (m) and ``exp_inf`` (u). Records m, u_inf, m_hat,
    denom.
    """

    state_keys = ("exp_avg", "exp_inf")
    columns = {"u_inf": ("u∞", "exponentially weighted infinity norm of g (Adamax)")}

    def __init__(
        self,
        b1=hp("betas", 0),
        b2=hp("betas", 1),
        eps=hp("eps"),
        eps_placement: str = "inside",
    ):
        if eps_placement not in EPS_PLACEMENTS_ADAMAX:
            raise ValueError(
                f"eps_placement={eps_placement!r} is not one of {', '.join(EPS_PLACEMENTS_ADAMAX)}"
            )
        self.b1, self.b2, self.eps, self.eps_placement = b1, b2, eps, eps_placement

    def init(self, param: Tensor, state: dict) -> None:
        for key in self.state_keys:
            if key not in state:
                state[key] = _zeros(param)

    def update(self, updates, states, params, ctx: Context):
        b1, b2, eps = ctx.value(self.b1), ctx.value(self.b2), ctx.value(self.eps)
        m = [st["exp_avg"] for st in states]
        u = [st["exp_inf"] for st in states]
        _ops.lerp_(m, updates, 1 - b1)
        ctx.record("m", m)
        _ops.mul_(u, b2)
        size = torch._foreach_abs(updates)
        inside = self.eps_placement == "inside"
        if inside:
            _add(size, eps)
        torch._foreach_maximum_(u, size)  # torch: maximum(u·β₂, |g| + ε, out=u)
        ctx.record("u_inf", u)
        if inside:
            denom = u
        else:
            denom = [x.clone() for x in u]
            _add(denom, eps)
        ctx.record("denom", denom)
        c1 = bias_correction(b1, ctx)
        out = torch._foreach_div(m, denom)
        _ops.div_list_(out, c1)
        if ctx.tracing:
            ctx.record("m_hat", [x / c for x, c in zip(m, c1)])
            ctx.precond = [1 / (c * d) for c, d in zip(c1, denom)]
        ctx.owned = True
        return out

    kernel = "adamax"

    def kernel_plan(self, read, fields: dict, absorbed=None) -> KernelPlan:
        fields["beta1"] = read.number(self.b1, "betas[0]")
        fields["beta2"] = read.number(self.b2, "betas[1]")
        # ε inside the max (eps_in: |g| + ε) or added to u after it (eps_out)
        eps_fields(fields, read.number(self.eps, "eps"), self.eps_placement == "inside")
        return KernelPlan(slots=("exp_avg", "exp_inf", None))


def _add(xs: list[Tensor], s) -> None:
    """xs ← xs + s (s a number or a per-run tensor)."""
    if isinstance(s, Tensor):
        for x in xs:
            x.add_(s)
    else:
        torch._foreach_add_(xs, s)
