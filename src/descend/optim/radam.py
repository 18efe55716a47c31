"""RAdam: Adam whose adaptive step waits until the second moment is trustworthy."""

from __future__ import annotations

import math

from ..transforms import EPS_PLACEMENTS, hp, scale_by_radam
from . import validation as check
from .declared import Declared, Spec

_RADAM = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, threshold=5.0)
_RADAM.update(eps_root=0.0, nesterov=False, weight_decay_mode="l2")


class RAdam(Declared):
    """RAdam (Liu et al., ICLR 2020, https://arxiv.org/abs/1908.03265): Adam with the adaptive
    step rectified by r_t once the second moment averages enough gradients (ρ_t > threshold),
    and momentum SGD on m̂ before that:

        m ← β₁m + (1 − β₁)g,   v ← β₂v + (1 − β₂)g²,   m̂ = m/(1 − β₁ᵗ)
        ρ_∞ = 2/(1 − β₂) − 1,   ρ_t = ρ_∞ − 2tβ₂ᵗ/(1 − β₂ᵗ)
        r_t = √((ρ_t − 4)(ρ_t − 2)ρ_∞ / ((ρ_∞ − 4)(ρ_∞ − 2)ρ_t))
        ρ_t > threshold:  θ ← θ − γ·r_t·m̂·√(1 − β₂ᵗ)/(√v + ε)       (torch, "hat")
                                θ ← θ − γ·r_t·m̂/(√(v/(1 − β₂ᵗ)) + ε)      (optax, "outside")
        otherwise:        θ ← θ − γ·m̂

    torch.optim.RAdam's keywords and defaults (lr 1e-3, betas (0.9, 0.999), eps 1e-8,
    ``weight_decay`` as L2, ``decoupled_weight_decay=True`` for θ(1 − γλ), the same as
    ``weight_decay_mode="decoupled"``), threshold 5 as torch hard-codes it.
    ``convention="optax"`` is ``optax.radam``: ε outside the root after the bias correction,
    and its ``eps_root`` (inside the root) and ``nesterov`` (m̂ ← β₁m/(1 − β₁ᵗ⁺¹) +
    (1 − β₁)g/(1 − β₁ᵗ)) keywords; optax rectifies at ρ_t ≥ threshold where torch (and descend)
    need ρ_t > threshold, equal unless ρ_t is exactly the threshold. Keras has no RAdam.
    See :class:`descend.transforms.scale_by_radam`.
    Chain: [clip] [maximize] [L2] → scale_by_radam → scale_by_lr → [decoupled decay].
    """

    keywords = ("lr", "betas", "eps", "weight_decay", "decoupled_weight_decay")
    conventions = {
        "torch": dict(_RADAM, eps_placement="hat"),
        "optax": dict(_RADAM, eps_placement="outside"),
    }
    # its first steps (ρ_t ≤ threshold: 5 for β₂ = 0.999) are SGD steps γ·m̂: at Adam's rate they
    # diverge on steep landscapes (rosenbrock, himmelblau, goldstein-price), at 3× SGD's they
    # overshoot rosenbrock from (1.5, 1.5); SGD's own rate is safe on every landscape
    specs = {
        "radam": Spec(
            "Rectified Adam: momentum SGD until v is trustworthy, then rectified Adam",
            lab_lr=("sgd", 1.0),
        )
    }
    choices = {"eps_placement": EPS_PLACEMENTS}
    structure = ("eps_placement", "nesterov")

    def check(self, group: dict) -> None:
        check.betas(group["betas"])
        check.non_negative("eps", group["eps"])
        check.non_negative("eps_root", group["eps_root"])
        check.number("threshold", group["threshold"])
        if any(v < 4 or math.isinf(v) for v in check._values(group["threshold"])):
            raise ValueError(
                f"threshold={group['threshold']!r} is invalid: it must be finite and ≥ 4 "
                "(r_t = √((ρ_t − 4)(ρ_t − 2)ρ_∞/…) is not real for 2 < ρ_t < 4; torch uses 5)"
            )
        check.flag("nesterov", group["nesterov"])
        check.choice("eps_placement", group["eps_placement"], EPS_PLACEMENTS)
        root = group["eps_root"]
        if group["eps_placement"] == "hat" and any(v != 0 for v in check._values(root)):
            raise ValueError(
                f"eps_root={root!r} needs eps_placement 'outside' or 'inside' (optax's "
                "√(v̂ + eps_root) + ε); torch's 'hat' form divides by √v + ε"
            )

    def core(self, group: dict) -> list:
        return [
            scale_by_radam(
                eps_placement=group["eps_placement"],
                eps_root=hp("eps_root"),
                nesterov=group["nesterov"],
            )
        ]
