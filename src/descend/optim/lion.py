"""Lion: evolved sign momentum."""

from __future__ import annotations

from ..transforms import scale_by_lion
from . import validation as check
from .declared import Declared, Spec


class Lion(Declared):
    """Lion (Chen et al. 2023, https://arxiv.org/abs/2302.06675):
    u = sign(β₁m + (1 − β₁)g), m ← β₂m + (1 − β₂)g, θ ← θ(1 − γλ) − γu.

    Keywords as ``lion-pytorch``'s ``Lion`` (lr 1e-4, betas (0.9, 0.99), decoupled weight
    decay); ``convention="optax"`` is ``optax.lion`` (weight decay 1e-3), ``"keras"`` is
    ``keras.optimizers.Lion`` (lr 1e-3). See :class:`descend.transforms.scale_by_lion`.
    Chain: [clip] [maximize] → scale_by_lion → scale_by_lr → [decoupled decay].
    """

    keywords = ("lr", "betas", "weight_decay")
    conventions = {
        "torch": dict(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, weight_decay_mode="decoupled"),
        "optax": dict(lr=1e-4, betas=(0.9, 0.99), weight_decay=1e-3, weight_decay_mode="decoupled"),
        "keras": dict(lr=1e-3, betas=(0.9, 0.99), weight_decay=0.0, weight_decay_mode="decoupled"),
    }
    specs = {"lion": Spec("Lion: the sign of an interpolated momentum", lab_lr=("adam", 0.3))}

    def check(self, group: dict) -> None:
        check.betas(group["betas"])

    def core(self, group: dict) -> list:
        return [scale_by_lion()]
