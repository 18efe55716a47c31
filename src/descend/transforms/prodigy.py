"""Prodigy (Mishchenko & Defazio, ICML 2024, https://arxiv.org/abs/2306.06101): Adam whose
step size d is estimated on line from how far the parameters have moved, as ``prodigyopt``
(its ``Prodigy`` class, version 1.1) computes it.

With γ the learning rate (a multiplier, 1 by default), c = √(1 − β₂ᵏ⁺¹)/(1 − β₁ᵏ⁺¹) with
``use_bias_correction`` (else 1), d₀ the initial estimate, θ₀ the parameters at the first step
and k the number of steps taken, each step is, with the current estimate d and dγ = d·γ·c:

    m ← β₁m + d(1 − β₁)g,     v ← β₂v + d²(1 − β₂)g²
    s ← β₃s + (d/d₀)·dγ·g     (safeguard_warmup: (d/d₀)·d·g)
    r ← β₃r + (d/d₀)·dγ·⟨g, θ₀ − θ⟩
    d̂ = d_coef · r / Σ‖s‖₁,   d_max ← max(d_max, d̂),   d ← min(d_max, d·growth_rate)
        (and d ← max(d, d̂) while d is still d₀)
    θ ← θ − dγ·λθ (decoupled decay) − dγ · m / (√v + d·ε)

β₃ = √β₂ by default. r, the sums and d are **global**: over every parameter of every group
(prodigyopt's estimate; the β's, β₃, d_coef, growth_rate and use_bias_correction are read
from the first group, ε, λ, d₀, safeguard_warmup and slice_p from each group). With β₁ = 0
there is no m and the step is dγ·d·g/(√v + dε). ``slice_p`` > 1 computes s and r on every
slice_p-th element of each tensor (prodigyopt's memory saving; an approximation). The last
step's dγ moves θ; the new d only enters through ε·d, as in prodigyopt.

Groups with lr = 0 are frozen (they add nothing to the estimate; prodigyopt then still
applies the shared dγ to them, decaying them — here they do not move). Other groups must
share the largest lr, as prodigyopt requires.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ._sharded import is_sharded
from .base import Context, Transform

#: the group keys prodigyopt keeps the shared estimate in (every group holds the same values)
ESTIMATE_KEYS = ("d", "d_max", "d_numerator", "d_denom", "d_hat", "k")


def fresh_estimate(d0: float) -> dict:
    """The estimate keys of a group that has not stepped yet (prodigyopt's defaults)."""
    return {"d": d0, "d_max": d0, "d_numerator": 0.0, "k": 0}


@dataclass
class ProdigyRound:
    """One step's shared quantities, computed from the first group (prodigyopt's rule)."""

    d: float
    d_max: float
    d_coef: float
    growth_rate: float
    numerator: float  # r·β₃, before this step's terms
    lr: float
    dlr: float
    beta1: float
    beta2: float
    beta3: float
    delta: float = 0.0
    denom: float = 0.0
    d_new: float | None = None

    @classmethod
    def start(cls, groups: list[dict]) -> ProdigyRound:
        """Read the first group's estimate and settings; check the learning rates."""
        first = groups[0]
        beta1, beta2 = first["betas"]
        beta3 = first["beta3"]
        beta3 = math.sqrt(beta2) if beta3 is None else beta3
        lr = max(float(g["lr"]) for g in groups)
        for i, g in enumerate(groups):
            if float(g["lr"]) not in (lr, 0.0):
                raise ValueError(
                    f"Prodigy: param group {i} has lr={float(g['lr'])!r}, but the step size d is "
                    f"shared by all groups: every group's lr must be the largest one ({lr!r}) "
                    "or 0 (a frozen group)"
                )
        k = first.get("k", 0)
        bias = (
            (1 - beta2 ** (k + 1)) ** 0.5 / (1 - beta1 ** (k + 1))
            if first["use_bias_correction"]
            else 1
        )
        d = first.get("d", first["d0"])
        return cls(
            d=d,
            d_max=first.get("d_max", d),
            d_coef=first["d_coef"],
            growth_rate=first["growth_rate"],
            numerator=first.get("d_numerator", 0.0) * beta3,
            lr=lr,
            dlr=d * lr * bias,
            beta1=beta1,
            beta2=beta2,
            beta3=beta3,
        )

    def finish(self, groups: list[dict]) -> bool:
        """Update d from this step's sums and store the estimate in every group; False when
        nothing was measured (every s is 0: no gradient yet), as prodigyopt then skips the
        step."""
        if self.denom == 0:
            return False
        numerator = self.numerator + self.delta
        d, d_max = self.d, self.d_max
        d_hat = d_hat_out = d
        if self.lr > 0.0:
            d_hat = d_hat_out = self.d_coef * numerator / self.denom
            if d == groups[-1]["d0"]:  # prodigyopt compares with the last group's d0
                d = max(d, d_hat)
            d_max = max(d_max, d_hat)
            d = min(d_max, d * self.growth_rate)
        self.d_new = d
        for g in groups:
            g.update(d_numerator=numerator, d_denom=self.denom, d=d, d_max=d_max, d_hat=d_hat_out)
        return True


class scale_by_prodigy(Transform):  # noqa: N801
    """Prodigy's moments, its d estimate and its step (see the module docstring).

    The update is complete: it includes the learning rate (dγ) and, with ``decouple``, the
    decoupled decay θ ← θ − dγλθ (put no ``scale_by_lr`` or decay link after it). L2 decay
    (``decouple=False``) is the usual link before it (g ← g + λθ, prodigyopt's coupled form).

    Used alone in a chain (``from_chain``) the group is the whole optimizer. The ``Prodigy``
    optimizer runs :meth:`measure` on every group, then :meth:`ProdigyRound.finish`, then
    :meth:`update` (the step) on every group, so d is one estimate over all of them.
    Records m, v, denom, d (the new estimate), d_hat, dlr and lr_eff (dγ/(√v + dε)).
    """

    state_keys = ("s", "p0", "exp_avg", "exp_avg_sq")
    columns = {
        "d": ("d", "the step-size estimate after the step (one for every parameter)"),
        "d_hat": ("d̂", "this step's estimate d_coef·r/Σ‖s‖₁"),
        "dlr": ("dγ", "the step taken: d·γ·c, d before the step"),
    }

    def __init__(self, decouple: bool = True):
        self.decouple = decouple

    # -- phase 1: moments and this group's share of the estimate ----------------------------
    def measure(self, updates, states, params, ctx: Context, rnd: ProdigyRound) -> None:
        group = ctx.group
        if float(group["lr"]) <= 0.0:  # a frozen group: no moments, no share
            for st, p in zip(states, params):
                _init(st, p, group, rnd.beta1)
            return
        d, d0, dlr = rnd.d, group["d0"], rnd.dlr
        beta1, beta2, beta3 = rnd.beta1, rnd.beta2, rnd.beta3
        slice_p = group["slice_p"]
        s_scale = (d / d0) * (d if group["safeguard_warmup"] else dlr)
        for g, st, p in zip(updates, states, params):
            _init(st, p, group, beta1)
            # a DTensor's shard (s and θ₀ sharded like θ): this rank's share of the sums
            g, p = _local(g), _local(p)
            flat_g = g.reshape(-1)[::slice_p]
            moved = _local(st["p0"]).reshape(-1) - p.reshape(-1)[::slice_p]
            rnd.delta += (d / d0) * dlr * torch.dot(flat_g, moved).item()
            if beta1 > 0:
                _local(st["exp_avg"]).mul_(beta1).add_(g, alpha=d * (1 - beta1))
            _local(st["exp_avg_sq"]).mul_(beta2).addcmul_(g, g, value=d * d * (1 - beta2))
            s = _local(st["s"]).view(-1)
            s.mul_(beta3).add_(flat_g, alpha=s_scale)
            rnd.denom += s.abs().sum().item()
        if ctx.tracing:
            if beta1 > 0:
                ctx.record("m", [st["exp_avg"] for st in states])
            ctx.record("v", [st["exp_avg_sq"] for st in states])

    # -- phase 2: the step ----------------------------------------------------------------
    def update(self, updates, states, params, ctx: Context):
        rnd = ctx.extras.get("prodigy")
        if rnd is None:  # alone in a chain: this group is the whole optimizer
            rnd = ProdigyRound.start([ctx.group])
            self.measure(updates, states, params, ctx, rnd)
            rnd.finish([ctx.group])
        group = ctx.group
        out = [torch.zeros_like(u) for u in updates]
        ctx.owned = True
        if rnd.d_new is None:  # nothing measured yet (all gradients 0 so far): no step
            return out
        group["k"] = group.get("k", 0) + 1
        d = rnd.d_new
        # frozen groups (lr = 0) step with dγ = 0
        dlr = rnd.dlr if float(group["lr"]) > 0 else 0.0
        eps, wd = group["eps"], group["weight_decay"]
        denom = [st["exp_avg_sq"].sqrt().add_(d * eps) for st in states]
        if self.decouple and wd != 0:
            if ctx.tracing:
                ctx.extras["decay"] = [p * (wd * dlr) for p in params]
            for p in params:
                p.add_(p, alpha=-wd * dlr)
        for o, g, st, den in zip(out, updates, states, denom):
            if rnd.beta1 > 0:
                o.addcdiv_(st["exp_avg"], den, value=dlr)
            else:
                o.addcdiv_(g, den, value=dlr * d)
        if ctx.tracing:
            n = len(params)
            ctx.record("denom", denom)
            ctx.record("d", [d] * n)
            ctx.record("d_hat", [group["d_hat"]] * n)
            ctx.record("dlr", [dlr] * n)
            scale = dlr if rnd.beta1 > 0 else dlr * d
            ctx.record("lr_eff", [scale / den for den in denom])
        return out


def _init(state: dict, param: Tensor, group: dict, beta1: float) -> None:
    """prodigyopt's state: s, θ₀ (every slice_p-th element; a 0-d zero when θ starts at 0),
    m (when β₁ > 0) and v. For a DTensor parameter (FSDP2), s and θ₀ have θ's shape and
    sharding (slice_p = 1: the flat vector of one process, laid out as θ so that each rank
    holds the part of its shard), and "θ starts at 0" is decided over the whole tensor."""
    if "s" in state:
        return
    if is_sharded(param):
        nonzero = bool(param.detach().ne(0).sum().full_tensor())
        flat = param.detach()
    else:
        flat = param.detach().reshape(-1)[:: group["slice_p"]]
        nonzero = bool(param.any())
    state["s"] = torch.zeros_like(flat)
    state["p0"] = (
        flat.clone() if nonzero else torch.tensor(0, device=param.device, dtype=param.dtype)
    )
    if beta1 > 0:
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)


def _local(t: Tensor) -> Tensor:
    """A DTensor's local shard (sharing its storage), or the tensor itself."""
    return t.to_local() if is_sharded(t) else t
