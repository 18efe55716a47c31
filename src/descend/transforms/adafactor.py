"""Adafactor (Shazeer & Stern, ICML 2018, https://arxiv.org/abs/1804.04235), torch's form.

Adam-like scaling without the first moment and with a factored second moment: for a matrix
gradient only the row and column means of g² are kept (n + m numbers instead of n·m), and
the step is relative to the parameter's own scale.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._sharded import gather, is_sharded, local_like
from .base import Context, Transform, hp


class scale_by_adafactor(Transform):  # noqa: N801
    """Adafactor's update, exactly as ``torch.optim.Adafactor`` computes it (single-tensor
    path, torch's default on every device).

    .. math::
        \\hat β_{2,t} = 1 − t^{τ},\\quad ρ_t = \\min(γ, 1/\\sqrt t),\\quad
        α_t = \\max(ε_2, \\operatorname{RMS}(θ_{t-1}))\\,ρ_t

        R_t = \\hat β_{2,t} R_{t-1} + (1 − \\hat β_{2,t})\\,\\overline{g^2}^{\\,\\text{cols}},\\quad
        C_t = \\hat β_{2,t} C_{t-1} + (1 − \\hat β_{2,t})\\,\\overline{g^2}^{\\,\\text{rows}}

        \\hat V_t = R_t C_t / \\max(\\overline{R_t}, ε_1)\\ (\\text{≥ 2-D}),\\quad
        \\hat V_t = \\hat β_{2,t}\\hat V_{t-1} + (1 − \\hat β_{2,t}) g^2\\ (\\text{0/1-D})

        U_t = g / \\max(\\sqrt{\\hat V_t}, ε_1),\\qquad
        u = α_t\\, U_t / \\max(1, \\operatorname{RMS}(U_t)/d)

    with τ = ``beta2_decay`` (−0.8), (ε₁, ε₂) = ``eps`` (ε₁ = None: the machine epsilon of the
    group's first parameter's dtype, which torch then keeps for the rest of the group), d the
    clipping threshold and γ the group's lr. A ≥ 2-D tensor is factored over its last two
    dimensions (leading ones are batch dimensions). Where torch departs from the paper (and
    this follows torch): γ caps the relative step size ρ_t (the paper's constant 0.01); ε₁
    clamps the variance estimate and its square root instead of being added to g² (optax,
    Keras); row/column *means* of g² (the paper uses sums; same result). torch computes the
    mean of g² over a row as ‖g‖²/n (norm, then square), kept here for parity. The chain has
    no ``scale_by_lr`` link (γ enters through ρ_t only); torch's weight decay is decoupled,
    θ(1 − γλ), applied after α_t has read θ_{t−1}.
    State (torch's keys): ``row_var``, ``col_var`` (≥ 2-D) or ``variance`` (0/1-D).
    Records ``row_var``, ``col_var`` or ``v``, ``v_hat`` (V̂), ``rho`` (ρ_t), ``scale``
    (α_t / max(1, RMS(U)/d)).
    """

    state_keys = ("row_var", "col_var", "variance")
    columns = {
        "row_var": ("R", "EWA of the row means of g²"),
        "col_var": ("C", "EWA of the column means of g²"),
        "rho": ("ρ", "relative step size, min(γ, 1/√t)"),
        "scale": ("α/clip", "α_t = max(ε₂, RMS(θ))ρ_t over max(1, RMS(U)/d)"),
    }

    def __init__(self, beta2_decay=hp("beta2_decay"), eps=hp("eps"), d=hp("d"), lr=hp("lr")):
        self.beta2_decay, self.eps, self.d, self.lr = beta2_decay, eps, d, lr

    def init(self, param: Tensor, state: dict) -> None:
        if param.dim() > 1:
            if "row_var" not in state:
                state["row_var"] = _zeros(param, (*param.shape[:-1], 1))
            if "col_var" not in state:
                state["col_var"] = _zeros(param, (*param.shape[:-2], 1, param.shape[-1]))
        elif "variance" not in state:
            state["variance"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def update(self, updates, states, params, ctx: Context):
        lr, tau, d = ctx.value(self.lr), ctx.value(self.beta2_decay), ctx.value(self.d)
        eps1, eps2 = (ctx.value(e) for e in ctx.value(self.eps))
        out, v_hats, rhos, scales = [], [], [], []
        rows, cols, fulls = [], [], []
        for g, p, st, t in zip(updates, params, states, ctx.t):
            if eps1 is None:  # torch: the first parameter's dtype decides for the group
                eps1 = torch.finfo(p.dtype).eps
            hyper = (lr, tau, d, eps1, eps2, ctx.tracing)
            if is_sharded(g):
                u, rho, scale, v_hat = self._step_sharded(g, p, st, t, hyper)
            else:
                u, rho, scale, v_hat = self._step(g, p, st, t, hyper)
            if g.dim() > 1:
                rows.append(st["row_var"])
                cols.append(st["col_var"])
            else:
                fulls.append(st["variance"])
            if ctx.tracing:
                v_hats.append(v_hat)
            out.append(u)
            rhos.append(rho)
            scales.append(scale)
        if ctx.tracing:
            if rows:
                ctx.record("row_var", rows)
                ctx.record("col_var", cols)
            if fulls:
                ctx.record("v", fulls)
            ctx.record("v_hat", v_hats)
            ctx.record("rho", rhos)
            ctx.record("scale", scales)
        ctx.owned = True
        return out

    @staticmethod
    def _step(g: Tensor, p: Tensor, st: dict, t, hyper: tuple) -> tuple:
        """One parameter's update on whole tensors: (u, ρ_t, scale, V̂ when tracing)."""
        lr, tau, d, eps1, eps2, tracing = hyper
        w = t**tau  # 1 − β̂₂ₜ
        rho = min(lr, 1 / (t**0.5))
        alpha = max(eps2, p.norm(2).item() / (p.numel() ** 0.5)) * rho
        if g.dim() > 1:
            row_var, col_var = st["row_var"], st["col_var"]
            row_mean = torch.norm(g, dim=-1, keepdim=True).square_().div_(g.size(-1))
            row_var.lerp_(row_mean, w)
            col_mean = torch.norm(g, dim=-2, keepdim=True).square_().div_(g.size(-2))
            col_var.lerp_(col_mean, w)
            v_hat = row_var @ col_var
            v_hat.div_(row_var.mean(dim=-2, keepdim=True).clamp_(min=eps1))
        else:
            variance = st["variance"]
            variance.lerp_(g * g, w)
            v_hat = variance.clone()
        recorded = v_hat.clone() if tracing else None
        u = v_hat.clamp_(min=eps1 * eps1).rsqrt_()
        u.mul_(g)
        denom = max(1.0, u.norm(2).item() / ((u.numel() ** 0.5) * d))
        scale = alpha / denom
        return u.mul_(scale), rho, scale, recorded  # torch: θ.add_(U, alpha=−α/denom)

    def _step_sharded(self, g: Tensor, p: Tensor, st: dict, t, hyper: tuple) -> tuple:
        """A DTensor parameter (FSDP2): G and θ (and a vector's v, sharded like θ) gathered
        in one collective, :meth:`_step` on the whole tensors, this rank's shard of u kept.
        A matrix's factored R and C are reductions over the whole matrix: whole (plain) on
        every rank, each rank computing the same from the same gathered G."""
        if g.dim() > 1:
            full_g, full_p = gather(g, p)
            whole = st
        else:
            full_g, full_p, full_v = gather(g, p, st["variance"])
            whole = {"variance": full_v}
        u, rho, scale, v_hat = self._step(full_g, full_p, whole, t, hyper)
        if g.dim() <= 1:
            st["variance"].to_local().copy_(local_like(full_v, g).to_local())
        return local_like(u, g), rho, scale, v_hat if v_hat is None else local_like(v_hat, g)


def _zeros(param: Tensor, shape: tuple) -> Tensor:
    """A factored statistic's zeros: a plain tensor, whole on every rank, for a DTensor
    parameter too (see ``scale_by_adafactor._step_sharded``)."""
    if is_sharded(param):
        return torch.zeros(shape, dtype=param.dtype, device=param.device)
    return param.new_zeros(shape)
