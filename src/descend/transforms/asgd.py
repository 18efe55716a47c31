"""Averaged SGD (Polyak & Juditsky, SIAM J. Control Optim. 1992), torch.optim.ASGD's form.

SGD with a decaying step size and a running average of the iterates, which converges at the
optimal rate for a stochastic convex problem. Paper: https://doi.org/10.1137/0330046 ;
torch's step-size schedule is Bottou's (https://arxiv.org/abs/1107.2490, section 5).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.optim.optimizer import _get_scalar_dtype

from .base import Context, KernelPlan, Transform, hp


class averaged_sgd(Transform):  # noqa: N801
    """ASGD's step, step-size schedule and iterate average, as ``torch.optim.ASGD`` computes
    them by default (its single-tensor path, the default on CPU).

    .. math::
        θ_t = θ_{t-1}(1 − λη_{t-1}) − η_{t-1} g_t,\\qquad
        \\bar θ_t = \\bar θ_{t-1} + μ_{t-1}(θ_t − \\bar θ_{t-1})
        \\ (\\bar θ_t = θ_t \\text{ while } μ = 1)

        η_t = γ / (1 + λγt)^{α},\\qquad μ_t = 1 / \\max(1, t − t_0)

    with λ = ``lambd``, α = ``alpha``, t₀ = ``t0``, γ the group's lr, η₀ = γ and μ₀ = 1. η and μ
    are kept as torch keeps them, 0-d tensors of torch's scalar dtype (float32 unless the
    default dtype is float64), so η is rounded to float32 as in torch. torch's multi-tensor
    path (the default on CUDA) computes θ_t = θ_{t−1} − η(g + λθ_{t−1}), always averages, and
    computes η_t in float32 arithmetic from the float32 step tensor: it is another rounding of
    the same algorithm (6e-9 apart from the single-tensor path in fp64 after 100 steps).

    The ``(1 − λη)`` shrink is applied to θ in place (as decoupled weight decay is) and the
    transform returns u = η g; the average needs the new θ = θ(1 − λη) − u, so this must be
    the chain's last link (the optimizer then applies θ ← θ − u, the same subtraction).
    State (torch's keys): ``eta``, ``mu``, ``ax`` (θ̄). Records ``eta`` and ``mu`` (the values
    this step used) and ``ax``.
    """

    state_keys = ("eta", "mu", "ax")
    columns = {
        "eta": ("η", "the step size this step used, γ/(1 + λγ(t − 1))^α"),
        "mu": ("μ", "the averaging weight this step used, 1/max(1, t − 1 − t₀)"),
        "ax": ("θ̄", "average of the iterates"),
    }

    def __init__(self, lambd=hp("lambd"), alpha=hp("alpha"), t0=hp("t0"), lr=hp("lr")):
        self.lambd, self.alpha, self.t0, self.lr = lambd, alpha, t0, lr

    def init(self, param: Tensor, state: dict) -> None:
        if "mu" not in state:
            state["mu"] = torch.ones((), device=param.device, dtype=_get_scalar_dtype())
        if "ax" not in state:
            state["ax"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        # eta starts at the group's lr: created in update

    def update(self, updates, states, params, ctx: Context):
        lr, lambd = ctx.value(self.lr), ctx.value(self.lambd)
        alpha, t0 = ctx.value(self.alpha), ctx.value(self.t0)
        out, etas, mus, shrunk = [], [], [], []
        for g, p, st, t in zip(updates, params, states, ctx.t):
            if "eta" not in st:
                st["eta"] = _scalar_state(lr, p)
            eta, mu, ax = st["eta"], st["mu"], st["ax"]
            e = _value(eta)
            if isinstance(e, Tensor):  # per-run η: float32-rounded as torch's, then p's dtype
                e = e.to(p.dtype)
            if ctx.tracing:
                shrunk.append(p * (lambd * e))
            p.mul_(1 - lambd * e)  # θ(1 − λη), in place as torch
            u = g * e  # torch: θ.add_(g, alpha=−η)
            new = p - u  # what the optimizer's θ ← θ − u gives
            m = _value(mu)
            if isinstance(m, Tensor) or m != 1:
                ax.add_(new.sub_(ax).mul_(mu))
            else:
                ax.copy_(new)
            new_eta = lr / ((1 + lambd * lr * t) ** alpha)
            if isinstance(new_eta, Tensor) and new_eta.shape != eta.shape:
                st["eta"] = eta = _scalar_state(new_eta, p)
            else:
                eta.copy_(torch.as_tensor(new_eta))
            mu.copy_(torch.as_tensor(1 / max(1, t - t0)))
            out.append(u)
            etas.append(e)
            mus.append(m)
        if ctx.tracing:
            ctx.extras["decay"] = shrunk  # the shrink belongs to the recorded update
            ctx.record("eta", etas)
            ctx.record("mu", mus)
            ctx.record("ax", [st["ax"] for st in states])
        ctx.owned = True
        return out

    kernel = "asgd"

    def kernel_plan(self, read, fields: dict, absorbed=None) -> KernelPlan:
        # η and μ are per-parameter 0-d state (extra, asgd_mu); the step's 1 − λη, η, μ and the
        # next η, μ are computed by the driver in double as ``update`` does in Python
        lr = read.number(self.lr, "lr")  # a per-run (N, 1) γ means one η per run: the chain
        fields["asgd_lr"] = lr
        fields["asgd_lambd"] = read.number(self.lambd, "lambd")
        fields["asgd_alpha"] = read.number(self.alpha, "alpha")
        fields["asgd_t0"] = read.number(self.t0, "t0")
        default = torch.get_default_dtype()  # torch.as_tensor(new η) is of this dtype
        if default not in (torch.float32, torch.float64):
            read.refuse(f"ASGD's η under default dtype {default} (fast kernels: fp32, fp64)")
        fields["asgd_round32"] = int(default == torch.float32)
        return KernelPlan(
            slots=("ax", None, None), extra="eta", extra_fill=lr, scalars=(("asgd_mu", "mu"),)
        )


def _scalar_state(value, p: Tensor) -> Tensor:
    """η as torch stores it: a 0-d tensor of the scalar dtype; a per-run (N, 1) γ of the lab
    keeps its shape (one η per run)."""
    if isinstance(value, Tensor):
        return value.detach().to(device=p.device, dtype=_get_scalar_dtype()).clone()
    return torch.as_tensor(value, device=p.device, dtype=_get_scalar_dtype()).clone()


def _value(x: Tensor):
    """A 0-d state tensor as a Python number (torch's ``_get_value``); per-run tensors stay."""
    return x.item() if x.numel() == 1 else x
