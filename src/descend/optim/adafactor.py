"""Adafactor, torch.optim.Adafactor's factored second moments."""

from __future__ import annotations

import math

from ..transforms import scale_by_adafactor
from . import validation as check
from .declared import Declared, Spec


class Adafactor(Declared):
    """Adafactor (Shazeer & Stern 2018, https://arxiv.org/abs/1804.04235), torch's form:
    β̂₂ = 1 − t^τ, ρ = min(γ, 1/√t), α = max(ε₂, RMS(θ))·ρ; for ≥2-D tensors row and column
    EWAs R, C of g², V̂ = RC/max(mean(R), ε₁) (0/1-D: an EWA V̂ of g²);
    U = g/max(√V̂, ε₁), θ ← θ(1 − γλ) − α·U/max(1, RMS(U)/d).

    torch's keywords and defaults (lr=1e-2, beta2_decay=−0.8, eps=(None, 1e-3), d=1,
    weight_decay=0, decoupled); see :class:`descend.transforms.scale_by_adafactor` for where
    torch departs from the paper (lr caps ρ; ε₁ clamps instead of being added to g²).
    Chain: [clip] [maximize] → scale_by_adafactor → [decoupled decay]. Not element-wise: the
    factored moments mix each matrix's rows and columns (and RMS(θ), RMS(U) the whole tensor).
    Under FSDP2 (DTensor shards) each tensor is gathered (g and θ in one all-gather), stepped
    whole on every rank and the rank's shard of the update kept; R and C are whole on every
    rank, a vector's V̂ sharded like it (:mod:`descend.transforms._sharded`).
    """

    keywords = ("lr", "beta2_decay", "eps", "d", "weight_decay")
    conventions = {
        "torch": dict(
            lr=1e-2,
            beta2_decay=-0.8,
            eps=(None, 1e-3),
            d=1.0,
            weight_decay=0.0,
            weight_decay_mode="decoupled",
        ),
    }
    specs = {
        "adafactor": Spec(
            "Adafactor: relative steps scaled by factored (row × column) second moments",
            lab_lr=("adam", 1.0),
        )
    }
    couples = True

    def check(self, group: dict) -> None:
        check.one_element_lr(
            group["lr"],
            "Adafactor's update mixes a tensor's elements, so a per-row lr has no meaning",
        )
        eps = group["eps"]
        if not isinstance(eps, (tuple, list)) or len(eps) != 2:
            raise ValueError(f"eps must be a pair (epsilon1, epsilon2), got {eps!r}")
        if eps[0] is not None:
            check.number("eps[0] (epsilon1)", eps[0])
            if not eps[0] >= 0 or math.isinf(eps[0]):
                raise ValueError(
                    f"eps[0] (epsilon1)={eps[0]!r} is invalid: epsilon1 should be >= 0 and "
                    "finite (or None: the parameter dtype's machine epsilon)"
                )
        check.number("eps[1] (epsilon2)", eps[1])
        if not eps[1] >= 0 or math.isinf(eps[1]):
            raise ValueError(
                f"eps[1] (epsilon2)={eps[1]!r} is invalid: epsilon2 should be >= 0 and finite"
            )
        check.number("d", group["d"])
        if not group["d"] >= 1 or math.isinf(group["d"]):
            raise ValueError(
                f"d={group['d']!r} is invalid: Clipping threshold d should be >= 1 (and finite)"
            )
        check.number("beta2_decay", group["beta2_decay"])
        if not group["beta2_decay"] <= 0:
            raise ValueError(
                f"beta2_decay={group['beta2_decay']!r} is invalid: beta2_decay should be <= 0 "
                "(β̂₂ = 1 − t^beta2_decay must not decrease)"
            )

    def lr_inside(self, group: dict) -> bool:
        return True

    def core(self, group: dict) -> list:
        return [scale_by_adafactor()]

    def _step_group(self, index: int, group: dict, params: list) -> None:
        if any(p.is_complex() for p in params):
            raise RuntimeError(
                "Adafactor does not support complex parameters (its factored moments are "
                "defined for real matrices; torch refuses them too)"
            )
        super()._step_group(index, group, params)
