"""Momentum in the three forms of the notes, each with a Nesterov variant.

=========  ==========================================  ==============================
form       velocity                                     update u (θ ← θ − u)
=========  ==========================================  ==============================
modern     v = βv + (1 − τ)g   (v₁ = g, torch's rule)    u = v;  Nesterov: g + βv
ema        v = βv + (1 − β)g   (v₀ = 0)                  u = v;  Nesterov: βv + (1 − β)g
lr_inside  v = βv + γg         (v₀ = 0)                  u = v;  Nesterov: βv + γg
=========  ==========================================  ==============================

``modern`` is torch's SGD and optax's ``trace`` (Polyak 1964 heavy ball with the lr outside);
``ema`` is the "classic" exponentially-weighted form of the notes (seed 004, seed 003
formulation 1), optionally debiased by 1/(1 − βᵗ); ``lr_inside`` is Sutskever et al. 2013 and
Keras' SGD, where the learning rate γ is folded into the velocity (put no ``scale_by_lr`` after
it). With a constant lr ``modern`` and ``lr_inside`` give identical trajectories; with a
schedule they differ. Nesterov is the reparametrised form that needs only ∇L(θ) (Sutskever
et al. 2013; Bengio et al. 2012): it equals evaluating the gradient at the look-ahead point.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _ops
from .base import Context, KernelPlan, Transform, hp

FORMS = ("modern", "ema", "lr_inside")


class momentum(Transform):  # noqa: N801 - transforms are named like functions (optax style)
    """Heavy-ball momentum; see the module docstring for the equations of each ``form``.

    Args:
        momentum: β ∈ [0, 1).
        dampening: τ ∈ [0, 1], ``modern`` form only (torch's; skipped on the first step).
        nesterov: use the look-ahead (Nesterov) update.
        form: ``"modern"`` | ``"ema"`` | ``"lr_inside"``.
        debias: divide the ``ema`` velocity by 1 − βᵗ (Adam's bias correction).
        lr: the learning rate folded in by ``lr_inside`` (default: the group's ``lr``).
        key: state key of the velocity (torch: ``momentum_buffer``).
    """

    def __init__(
        self,
        momentum=hp("momentum"),
        dampening=0.0,
        nesterov: bool = False,
        form: str = "modern",
        debias: bool = False,
        lr=hp("lr"),
        key: str = "momentum_buffer",
    ):
        if form not in FORMS:
            raise ValueError(f"momentum_form={form!r} is not one of {', '.join(FORMS)}")
        if not isinstance(debias, bool):
            raise ValueError(f"debias must be True or False, got {debias!r}")
        if debias and form != "ema":
            raise ValueError(
                f"debias=True with form={form!r}: debiasing divides the 'ema' velocity "
                "v = βv + (1 − β)g by 1 − βᵗ; the other forms have no such bias to correct"
            )
        self.momentum, self.dampening, self.nesterov = momentum, dampening, nesterov
        self.form, self.debias, self.lr, self.key = form, debias, lr, key
        self.state_keys = (key,)

    def init(self, param: Tensor, state: dict) -> None:
        # torch's modern form creates the buffer from the first gradient (v₁ = g);
        # the other forms start from zero.
        if self.form != "modern" and state.get(self.key) is None:
            state[self.key] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def update(self, updates, states, params, ctx: Context):
        beta = ctx.value(self.momentum)
        if self.form != "lr_inside" and not isinstance(beta, Tensor) and beta == 0:
            return updates  # plain gradient descent: no velocity, as torch keeps none
        if self.form == "modern":
            bufs, scale = self._modern_velocity(updates, states, beta, ctx), 1.0
        else:
            bufs = [st[self.key] for st in states]
            scale = (1 - beta) if self.form == "ema" else ctx.value(self.lr)
            _ops.mul_(bufs, beta)
            _ops.add_scaled_(bufs, updates, scale)
        if self.nesterov:  # u = scale·g + β·v
            out = (
                [g * scale for g in updates]
                if isinstance(scale, Tensor)
                else torch._foreach_mul(updates, scale)
            )
            _ops.add_scaled_(out, bufs, beta)
        else:
            out = [b.clone() for b in bufs]
        ctx.owned = True
        if self.form == "ema" and self.debias:
            _ops.div_list_(out, bias_correction(beta, ctx))
            ctx.record("velocity_hat", out)
        if self.form == "lr_inside":
            ctx.record("lr_eff", [ctx.value(self.lr) * torch.ones_like(b) for b in bufs])
        ctx.record("velocity", bufs)
        return out

    kernel = "sgd"

    def kernel_fields(self, read, f: dict) -> str | None:
        """The momentum switches of a kernel (SGD's, or RMSprop's fused momentum); returns the
        velocity's state key when one is kept."""
        beta = read.number(self.momentum, "momentum")
        if self.form != "lr_inside" and beta == 0:
            f["mom"] = 0  # plain gradient: no velocity, as update keeps none
            return None
        f["mom"] = 2 if self.nesterov else 1
        f["beta"] = beta
        if self.form == "modern":
            f["mom_gain"], f["nest_scale"] = 1 - read.number(self.dampening, "dampening"), 1.0
        elif self.form == "ema":
            f["mom_gain"] = f["nest_scale"] = 1 - beta
            f["debias"] = int(self.debias)
        else:  # lr_inside
            f["mom_gain"] = f["nest_scale"] = read.scaling(self.lr, "lr")
        return self.key

    def kernel_plan(self, read, fields: dict, absorbed=None) -> KernelPlan:
        key = self.kernel_fields(read, fields)
        lazy = key if key is not None and self.form == "modern" else None  # v₁ = g
        return KernelPlan(slots=(key, None, None), lazy=lazy)

    def _modern_velocity(self, updates, states, beta, ctx) -> list[Tensor]:
        """v = βv + (1 − τ)g, except v₁ = g where the buffer does not exist yet."""
        damp = ctx.value(self.dampening)
        bufs, old_bufs, old_grads = [], [], []
        for g, st in zip(updates, states):
            buf = st.get(self.key)
            if buf is None:
                buf = st[self.key] = torch.clone(g).detach()
            else:
                old_bufs.append(buf)
                old_grads.append(g)
            bufs.append(buf)
        if old_bufs:
            _ops.mul_(old_bufs, beta)
            _ops.add_scaled_(old_bufs, old_grads, 1 - damp)
        return bufs


def bias_correction(beta, ctx: Context) -> list:
    """1 − βᵗ for each parameter (tensors when β is a tensor)."""
    if isinstance(beta, Tensor):
        return [1 - beta**t for t in ctx.t]
    return ctx.per_param(lambda t: 1 - beta**t)
