"""Adadelta: per-coordinate steps whose units come from the past steps."""

from __future__ import annotations

from ..transforms import scale_by_adadelta
from . import validation as check
from .declared import Declared, Spec


class Adadelta(Declared):
    """Adadelta (Zeiler 2012, https://arxiv.org/abs/1212.5701): RMSprop's running average of
    g² in the denominator and a running average of the squared past steps in the numerator,
    so the step has the units of θ without a learning rate (γ = 1, torch's default):

        v ← ρv + (1 − ρ)g²
        Δ = √(a + ε)/√(v + ε) · g
        a ← ρa + (1 − ρ)Δ²
        θ ← θ − γΔ

    torch.optim.Adadelta's keywords and defaults (lr 1.0, rho 0.9, eps 1e-6, ``weight_decay``
    as L2); ρ must be in [0, 1) (torch also takes ρ = 1, which freezes v and a at 0 and makes
    Δ = g: plain gradient descent). ``convention="keras"`` is ``keras.optimizers.Adadelta``
    (lr 1e-3, ρ 0.95, ε 1e-7, decoupled decay); ``"optax"`` is ``optax.adadelta`` (ρ 0.9,
    ε 1e-6, its weight decay added to g before the scaling, as L2; no default lr: torch's).
    State as torch's: ``square_avg`` (v) and ``acc_delta`` (a).
    See :class:`descend.transforms.scale_by_adadelta`.
    Chain: [clip] [maximize] [L2] → scale_by_adadelta → scale_by_lr → [decoupled decay].
    """

    keywords = ("lr", "rho", "eps", "weight_decay", "foreach")
    conventions = {
        "torch": dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, weight_decay_mode="l2"),
        "keras": dict(lr=1e-3, rho=0.95, eps=1e-7, weight_decay=0.0, weight_decay_mode="decoupled"),
        "optax": dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, weight_decay_mode="l2"),
    }
    # γ = 1 (the paper, torch) on every landscape: the step's size comes from the past steps
    specs = {
        "adadelta": Spec("Adadelta: steps scaled by RMS(past steps)/RMS(g)", lab_lr=("newton", 1.0))
    }

    def check(self, group: dict) -> None:
        check.decay_rate("rho", group["rho"])
        check.non_negative("eps", group["eps"])

    def core(self, group: dict) -> list:
        return [scale_by_adadelta()]
