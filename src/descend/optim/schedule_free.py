"""Schedule-Free AdamW and SGD (Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky,
NeurIPS 2024, https://arxiv.org/abs/2405.15682): no learning-rate schedule, the iterate is
averaged instead, and the gradient is taken between the average and the base iterate.

Matched to the ``schedulefree`` package's reference classes (``SGDScheduleFreeReference``,
``AdamWScheduleFreeReference``, which the package documents as the simple implementation
that closely follows the theory), and under ``convention="optax"`` to
``optax.contrib.schedule_free_sgd`` / ``schedule_free_adamw``, whose base optimizer reads the
warm-up one step late (γₜ₋₁ on z, γₜ in the averaging weight: ``warmup_lag=1``).
"""

from __future__ import annotations

import torch

from ..transforms import hp, scale_by_rms, schedule_free
from . import validation as check
from ._common import wrap
from .declared import Declared, Spec

_AVERAGING = dict(warmup_steps=0, r=0.0, weight_lr_power=2.0, warmup_lag=0)


class _ScheduleFree(Declared):
    """What the Schedule-Free optimizers share: ``train()`` / ``eval()``, the guard on
    ``step()`` in eval mode, and decay inside the core (on z, not on θ)."""

    def add_param_group(self, param_group: dict) -> None:
        # The mode is per group, as in the reference (saved with the state dict); a new group
        # joins in the optimizer's current mode.
        groups = self.__dict__.get("param_groups") or []
        mode = groups[0].get("train_mode", True) if groups else True
        super().add_param_group({"train_mode": mode, **param_group})

    def lr_inside(self, group: dict) -> bool:
        return True

    def chain(self, group: dict):
        key = self.shape(group)
        chains = self.__dict__.setdefault("_chains", {})
        if key not in chains:
            # L2 goes on the gradient before the core; a decoupled decay acts on z inside it
            mode = group.get("weight_decay_mode")
            outer = {**group, "weight_decay_mode": "l2" if mode == "l2" else None}
            chains[key] = wrap(outer, self.core(group), lr_inside=True)
        return chains[key]

    def _beta(self, group: dict):
        raise NotImplementedError

    @torch.no_grad()
    def eval(self) -> None:
        """Swap every parameter to x, the average: the point to evaluate, checkpoint and ship.
        The training point y is kept in the state (``state["y"]``) until :meth:`train`."""
        for group in self.param_groups:
            if not group.get("train_mode", True):
                continue
            for p in group["params"]:
                st = self.state.get(p)
                if st and "x" in st:
                    st["y"] = p.detach().clone(memory_format=torch.preserve_format)
                    p.copy_(st["x"])
            group["train_mode"] = False

    @torch.no_grad()
    def train(self) -> None:
        """Swap every parameter back to y, the point where gradients are taken."""
        for group in self.param_groups:
            if group.get("train_mode", True):
                continue
            for p in group["params"]:
                st = self.state.get(p)
                if not st:
                    continue
                y = st.pop("y", None)
                if y is not None:
                    p.copy_(y)
                elif "x" in st and "z" in st:  # a state without y: y = βx + (1 − β)z
                    beta = self._beta(group)
                    p.copy_(st["x"].mul(beta).add_(st["z"], alpha=1 - beta))
            group["train_mode"] = True

    def step(self, closure=None):
        if not all(group.get("train_mode", True) for group in self.param_groups):
            raise RuntimeError(
                f"{type(self).__name__}.step() called in eval mode: the parameters hold the "
                "average x, not the training point y. Call optimizer.train() before training "
                "(and optimizer.eval() before evaluating or saving)"
            )
        return super().step(closure)

    def check(self, group: dict) -> None:
        check.flag("train_mode", group.get("train_mode", True))
        warmup = group["warmup_steps"]
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"warmup_steps={warmup!r} is invalid: it must be an integer ≥ 0")
        check.number("r", group["r"])
        check.choice("warmup_lag", group["warmup_lag"], (0, 1))
        check.non_negative("weight_lr_power", group["weight_lr_power"])


class ScheduleFreeAdamW(_ScheduleFree):
    """Schedule-Free AdamW (Defazio et al. 2024, https://arxiv.org/abs/2405.15682), as
    ``schedulefree.AdamWScheduleFreeReference``. With t the step, W = ``warmup_steps``,
    β₁, β₂ = ``betas``, λ = ``weight_decay``:

        γₜ = γ·min(1, t/W);  γ_max ← max(γ_max, γₜ);  cₜ = wₜ/Σwᵢ with wₜ = t^r·γ_max^p
        v ← β₂v + (1 − β₂)g²;  d = g / (√(v/(1 − β₂ᵗ)) + ε)
        z ← z − γₜλ·y  (at z with ``decay_at_z=True``);  z ← z − γₜ d
        x ← (1 − cₜ)x + cₜ z;  θ = y = β₁x + (1 − β₁)z

    There is no first moment: β₁ interpolates between the average x and z. The parameters
    hold y while training; call ``optimizer.eval()`` before evaluating or shipping the model
    (they then hold x) and ``optimizer.train()`` before training again; ``step()`` in eval
    mode raises. A checkpoint saved in either mode (model and optimizer together) resumes
    exactly. ``convention="optax"``: ``optax.contrib.schedule_free_adamw`` (same defaults; its
    warm-up steps z one step late, ``warmup_lag=1``).
    The optimizer starts in train mode (the reference starts in eval mode and asks for
    ``train()`` first; before the first step x = y = z, so the two agree). The averaging's
    bookkeeping (γ_max, Σw) is kept per parameter (the reference keeps it per group: the same
    numbers whenever every parameter gets a gradient at every step). ``weight_decay_mode``:
    ``"decoupled"`` (the reference's, on z) or ``"l2"`` (λy added to g before v).

    Chain: [clip] [maximize] [L2] → scale_by_rms(β₂, bias-corrected) → schedule_free(β₁).
    """

    keywords = (
        "lr",
        "betas",
        "eps",
        "weight_decay",
        "warmup_steps",
        "r",
        "weight_lr_power",
        "decay_at_z",
    )
    _ROW = dict(
        lr=0.0025,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        decay_at_z=False,
        weight_decay_mode="decoupled",
        **_AVERAGING,
    )
    conventions = {"torch": dict(_ROW), "optax": dict(_ROW, warmup_lag=1)}
    specs = {
        "schedule-free-adamw": Spec(
            "Schedule-Free AdamW: RMS-scaled steps on z, gradients at y, the average x",
            lab_lr=("adam", 3.0),
        )
    }
    structure = ("decay_at_z",)

    def _beta(self, group: dict):
        return group["betas"][0]

    def check(self, group: dict) -> None:
        super().check(group)
        check.betas(group["betas"])
        check.non_negative("eps", group["eps"])
        check.flag("decay_at_z", group["decay_at_z"])
        check.choice("weight_decay_mode", group["weight_decay_mode"], ("decoupled", "l2"))

    def effective_lr(self, group: dict, state: dict):
        """γₜ/(√(v/(1 − β₂ᵗ)) + ε), the per-element rate of z's step (the trace's lr_eff)."""
        if "square_avg" not in state:
            return None
        t, b2 = float(state["step"]), float(group["betas"][1])
        warmup, lag = group["warmup_steps"], group["warmup_lag"]
        lr = float(group["lr"])
        lr_t = lr * (t - lag) / warmup if warmup and t - lag - 1 < warmup else lr
        return lr_t / ((state["square_avg"] / (1 - b2**t)).sqrt() + float(group["eps"]))

    def core(self, group: dict) -> list:
        decoupled = group["weight_decay_mode"] == "decoupled"
        return [
            scale_by_rms(alpha=hp("betas", 1), eps=hp("eps"), bias_correction=True),
            schedule_free(
                momentum=hp("betas", 0),
                weight_decay=hp("weight_decay") if decoupled else 0.0,
                decay_at="z" if group["decay_at_z"] else "y",
                warmup_lag=hp("warmup_lag"),
            ),
        ]


class ScheduleFreeSGD(_ScheduleFree):
    """Schedule-Free SGD (Defazio et al. 2024, https://arxiv.org/abs/2405.15682), as
    ``schedulefree.SGDScheduleFreeReference``. With t the step, W = ``warmup_steps``,
    β = ``momentum``, λ = ``weight_decay``:

        γₜ = γ·min(1, t/W);  γ_max ← max(γ_max, γₜ);  cₜ = wₜ/Σwᵢ with wₜ = t^r·γ_max^p
        z ← z − γₜ(g + λy)
        x ← (1 − cₜ)x + cₜ z;  θ = y = βx + (1 − β)z

    ``momentum`` β ∈ (0, 1) is the interpolation, not a velocity. The parameters hold y while
    training; ``optimizer.eval()`` swaps them to x (evaluate and ship there),
    ``optimizer.train()`` back; ``step()`` in eval mode raises; a checkpoint saved in either
    mode resumes exactly. Weight decay is L2 on the gradient at y (for SGD the same update as
    a decay of z by γₜλy). ``convention="optax"``: ``optax.contrib.schedule_free_sgd``
    (``warmup_lag=1``).

    Chain: [clip] [maximize] [L2] → schedule_free(β).
    """

    keywords = ("lr", "momentum", "weight_decay", "warmup_steps", "r", "weight_lr_power")
    _ROW = dict(lr=1.0, momentum=0.9, weight_decay=0.0, weight_decay_mode="l2", **_AVERAGING)
    conventions = {"torch": dict(_ROW), "optax": dict(_ROW, warmup_lag=1)}
    specs = {
        "schedule-free-sgd": Spec(
            "Schedule-Free SGD: SGD steps on z, gradients at y, the average x",
            lab_lr=("momentum", 3.0),
        )
    }

    def _beta(self, group: dict):
        return group["momentum"]

    def check(self, group: dict) -> None:
        super().check(group)
        check.number("momentum", group["momentum"])
        values = check._values(group["momentum"])
        if any(not 0 < v < 1 for v in values):
            raise ValueError(
                f"momentum={check._show(group['momentum'])} is invalid: it must be in (0, 1) "
                "(the interpolation between the average x and z)"
            )
        if group["weight_decay_mode"] != "l2":
            raise ValueError(
                f"weight_decay_mode={group['weight_decay_mode']!r} is not valid for "
                "ScheduleFreeSGD: its weight decay is L2 on the gradient ('l2'), which for SGD "
                "is the same update as decaying z"
            )

    def core(self, group: dict) -> list:
        return [schedule_free(momentum=hp("momentum"), warmup_lag=hp("warmup_lag"))]
