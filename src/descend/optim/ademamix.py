"""AdEMAMix (Pagliardini, Ablin & Grangier, ICLR 2025, https://arxiv.org/abs/2409.03137)."""

from __future__ import annotations

from ..transforms import scale_by_ademamix
from . import validation as check
from .declared import Declared, Spec

_ROW = dict(
    lr=1e-3,
    betas=(0.9, 0.999),
    beta3=0.9999,
    beta3_warmup=None,
    alpha_warmup=None,
    eps=1e-8,
    weight_decay=0.0,
    weight_decay_mode="decoupled",
)


class AdEMAMix(Declared):
    """AdEMAMix (Pagliardini et al. 2024, https://arxiv.org/abs/2409.03137): AdamW whose
    numerator adds a slow EMA of the gradients (β₃ ≈ 0.9999) to the fast one, as
    ``optax.contrib.ademamix``. With t the step and s = t − 1:

        m₁ ← β₁m₁ + (1 − β₁)g;  m₂ ← β₃(s)m₂ + (1 − β₃(s))g;  v ← β₂v + (1 − β₂)g²
        θ ← θ(1 − γλ) − γ·(m₁/(1 − β₁ᵗ) + α(s)·m₂) / (√(v/(1 − β₂ᵗ)) + ε)

    The slow EMA is not bias-corrected (it fills slowly on purpose). Warm-ups (the paper's,
    ``None`` = off): α(s) = α·s/T_α for s < T_α (``alpha_warmup`` = T_α), and β₃(s) linear in
    the half-life from β₁ to β₃ over ``beta3_warmup`` steps
    (:func:`descend.transforms.ademamix.beta3_warmup_value`). The warm-ups read the step count
    before the step, s = t − 1, as optax's schedules do; the authors' torch code reads t (its
    warm-ups run one step ahead). Keywords, their order and the torch row's defaults (α = 2)
    follow the authors' torch code, except that β₃ is its own keyword ``beta3`` (optax's b3)
    and ``betas`` the pair (β₁, β₂) as in every descend optimizer; the optax row has optax's
    α = 5.

    Chain: [clip] [maximize] [L2] → scale_by_ademamix → scale_by_lr → [decoupled decay].
    """

    keywords = ("lr", "betas", "alpha", "beta3_warmup", "alpha_warmup", "eps", "weight_decay")
    conventions = {"torch": dict(_ROW, alpha=2.0), "optax": dict(_ROW, alpha=5.0)}
    specs = {
        "ademamix": Spec(
            "AdEMAMix: Adam plus a slow EMA of the gradients in the numerator",
            lab_lr=("adam", 1.0),
        )
    }

    def check(self, group: dict) -> None:
        betas = group["betas"]
        if isinstance(betas, (tuple, list)) and len(betas) == 3:
            raise ValueError(
                f"betas={tuple(betas)!r}: descend's AdEMAMix takes betas=(beta1, beta2) and "
                f"beta3 on its own (optax's b1, b2, b3): betas={tuple(betas[:2])!r}, "
                f"beta3={betas[2]!r}"
            )
        check.betas(betas)
        check.decay_rate("beta3", group["beta3"])
        check.non_negative("alpha", group["alpha"])
        check.non_negative("eps", group["eps"])
        for key in ("alpha_warmup", "beta3_warmup"):
            value = group[key]
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"{key}={value!r} is invalid: it must be an integer ≥ 1 or None")

    def effective_lr(self, group: dict, state: dict):
        """γ/(√(v/(1 − β₂ᵗ)) + ε): the factor on the mixed numerator m̂₁ + α(s)m₂ (lr_eff)."""
        if "exp_avg_sq" not in state:
            return None
        t, b2 = float(state["step"]), float(group["betas"][1])
        v_hat = state["exp_avg_sq"] / (1 - b2**t)
        return float(group["lr"]) / (v_hat.sqrt() + float(group["eps"]))

    def core(self, group: dict) -> list:
        return [scale_by_ademamix()]
