"""Rectified Adam (Liu et al., ICLR 2020, https://arxiv.org/abs/1908.03265).

Adam's adaptive step has a large variance while v holds only a few gradients. RAdam measures
how many gradients v effectively holds — the length ρ_t of the simple moving average that the
EWA approximates — and uses the adaptive step only once ρ_t passes a threshold, multiplied by
the factor r_t that makes its variance that of the converged ρ_∞; before that the step is
momentum SGD on m̂:

    ρ_∞ = 2/(1 − β₂) − 1,   ρ_t = ρ_∞ − 2tβ₂ᵗ/(1 − β₂ᵗ)
    r_t = √( (ρ_t − 4)(ρ_t − 2)ρ_∞ / ((ρ_∞ − 4)(ρ_∞ − 2)ρ_t) )
    u = r_t·m̂/(√v̂ + ε)   if ρ_t > threshold,   else u = m̂

(with β₂ = 0.999, ρ_t ≤ 5 for the first 5 steps). The references differ in two places, both
switches here: torch divides by √v + ε and multiplies by √(1 − β₂ᵗ) (ε̂ placement, ``"hat"``,
as in the paper's code), optax by √v̂ + ε (``"outside"``) with an optional ``eps_root`` inside
the root; torch rectifies when ρ_t > 5 (hard-coded), optax when ρ_t ≥ ``threshold`` (5) —
the same except when ρ_t equals the threshold exactly, which a float ρ_t practically never
does (descend uses torch's strict ``>``). optax's ``nesterov=True`` replaces m̂ by
β₁m/(1 − β₁ᵗ⁺¹) + (1 − β₁)g/(1 − β₁ᵗ).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import _ops
from .adam import EPS_PLACEMENTS, _moments, _zeros
from .base import Context, KernelPlan, Transform, hp
from .momentum import bias_correction
from .rms import eps_fields


def radam_rho(b2, t: float):
    """(ρ_∞, ρ_t) for β₂ (a number or a per-run tensor) at step t, in torch's float order."""
    rho_inf = 2 / (1 - b2) - 1
    return rho_inf, rho_inf - 2 * t * (b2**t) / (1 - b2**t)


def radam_rect(rho_t, rho_inf):
    """The variance rectification r_t, real for ρ_t ≥ 4 (its callers use it only past the
    threshold, ≥ 4): NaN where it is not (as optax's ``jnp.sqrt``), for numbers and per-run
    tensors alike."""
    ratio = (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
    if isinstance(ratio, Tensor):
        return ratio.sqrt()
    return ratio**0.5 if ratio >= 0 else math.nan


class scale_by_radam(Transform):  # noqa: N801
    """RAdam's scaling: Adam's moments, the adaptive step rectified by r_t once ρ_t > threshold,
    plain m̂ before.

    .. math::
        m ← β₁m + (1 − β₁)g,\\quad v ← β₂v + (1 − β₂)g^2,\\quad
        u = r_t\\,\\frac{m/c₁}{\\sqrt{v/c₂} + ε}\\ (ρ_t > \\text{threshold}),\\quad
        u = m/c₁\\ \\text{(else)}

    with cᵢ = 1 − βᵢᵗ and ρ_t, r_t as in the module docstring. ``eps_placement``: ``"hat"``
    (torch: √c₂·m̂/(√v + ε)), ``"outside"`` (optax: m̂/(√v̂ + ε)), ``"inside"``
    (m̂/√(v̂ + ε)); ``eps_root`` is optax's ε inside the root, added to v̂ before ``"outside"``'s
    ε (0 in both references). ``nesterov`` is optax's look-ahead m̂. Records m, v, m_hat,
    v_hat, denom, rho (ρ_t) and rect (r_t, 0 on an un-rectified step, where u = m̂).
    """

    state_keys = ("exp_avg", "exp_avg_sq")
    columns = {
        "rho": ("ρ_t", "length of the moving average v approximates; adaptive once > threshold"),
        "rect": ("r_t", "variance rectification of the adaptive step (0: u = m̂, un-rectified)"),
    }

    def __init__(
        self,
        b1=hp("betas", 0),
        b2=hp("betas", 1),
        eps=hp("eps"),
        threshold=hp("threshold"),
        eps_placement: str = "hat",
        eps_root=0.0,
        nesterov: bool = False,
    ):
        if eps_placement not in EPS_PLACEMENTS:
            raise ValueError(
                f"eps_placement={eps_placement!r} is not one of {', '.join(EPS_PLACEMENTS)}"
            )
        if not isinstance(nesterov, bool):
            raise ValueError(f"nesterov must be True or False, got {nesterov!r}")
        self.b1, self.b2, self.eps, self.threshold = b1, b2, eps, threshold
        self.eps_placement, self.eps_root, self.nesterov = eps_placement, eps_root, nesterov

    def init(self, param: Tensor, state: dict) -> None:
        for key in self.state_keys:
            if key not in state:
                state[key] = _zeros(param)

    def update(self, updates, states, params, ctx: Context):
        b1, b2, eps = ctx.value(self.b1), ctx.value(self.b2), ctx.value(self.eps)
        threshold, eps_root = ctx.value(self.threshold), ctx.value(self.eps_root)
        m, v = _moments(updates, states, b1, b2, ctx)
        c1 = bias_correction(b1, ctx)
        c2 = bias_correction(b2, ctx)
        m_hat = [x / c for x, c in zip(m, c1)]
        if self.nesterov:  # optax: β₁·m/(1 − β₁ᵗ⁺¹) + (1 − β₁)·g/(1 − β₁ᵗ)
            c1_next = [1 - b1 ** (t + 1) for t in ctx.t]
            m_hat = [
                (x / cn) * b1 + (g / c) * (1 - b1) for x, g, c, cn in zip(m, updates, c1, c1_next)
            ]
        ctx.record("m_hat", m_hat)
        rhos = [radam_rho(b2, t) for t in ctx.t]
        if self.eps_placement == "hat":  # torch: √c₂ / (√v + ε)
            denom = _ops.sqrt_plus_eps(v, eps, inside=False)
            factor = [_sqrt(c) for c in c2]
        else:
            v_hat = [x / c for x, c in zip(v, c2)]
            ctx.record("v_hat", v_hat)
            if isinstance(eps_root, Tensor) or eps_root != 0:
                v_hat = [x + _ops.const(eps_root, x) for x in v_hat]
            denom = _ops.sqrt_plus_eps(v_hat, eps, inside=self.eps_placement == "inside")
            factor = [1.0] * len(v)
        ctx.record("denom", denom)
        out, used = [], []
        for i, (mh, d) in enumerate(zip(m_hat, denom)):
            rho_inf, rho_t = rhos[i]
            on = rho_t > threshold
            if isinstance(on, Tensor):  # per-run β₂ or threshold (the lab): choose per row
                r = torch.as_tensor(radam_rect(rho_t, rho_inf), dtype=mh.dtype, device=mh.device)
                out.append(torch.where(on, mh * factor[i] / d * r, mh))
                used.append(torch.where(on, r, torch.zeros_like(r)))
            elif on:  # r_t only here: ρ_∞ = 4 or 2 (β₂ = 0.6 or 1/3) never gets here
                r = radam_rect(rho_t, rho_inf)
                out.append(mh * factor[i] / d * r)
                used.append(r)
            else:
                out.append(mh.clone())
                used.append(0.0)
        if ctx.tracing:
            ctx.record("rho", [_like(rho_t, x) for (_, rho_t), x in zip(rhos, m)])
            ctx.record("rect", [_like(r, x) for r, x in zip(used, m)])
            ctx.precond = [
                torch.where(_on(r), f * r / (c * d), 1 / c + 0 * d)
                for r, f, c, d in zip(used, factor, c1, denom)
            ]
        ctx.owned = True
        return out

    kernel = "radam"

    def kernel_plan(self, read, fields: dict, absorbed=None) -> KernelPlan:
        fields["beta1"] = read.number(self.b1, "betas[0]")
        fields["beta2"] = read.number(self.b2, "betas[1]")
        eps_fields(fields, read.number(self.eps, "eps"), self.eps_placement == "inside")
        fields["hat"] = int(self.eps_placement == "hat")
        fields["radam_threshold"] = read.number(self.threshold, "threshold")
        fields["radam_eps_root"] = read.number(self.eps_root, "eps_root")
        fields["radam_nesterov"] = int(self.nesterov)
        return KernelPlan(slots=("exp_avg", "exp_avg_sq", None))


def _like(value, like: Tensor) -> Tensor:
    """A number as a 0-d tensor of ``like``'s dtype (a float64 run records float64 ρ_t)."""
    if isinstance(value, Tensor):
        return value
    return torch.tensor(value, dtype=like.dtype, device=like.device)


def _on(r) -> Tensor:
    return torch.as_tensor(r) > 0


def _sqrt(x):
    return x.sqrt() if isinstance(x, Tensor) else math.sqrt(x)
