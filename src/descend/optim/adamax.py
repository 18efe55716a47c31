"""Adamax: Adam with an infinity norm in place of the second moment."""

from __future__ import annotations

from ..transforms import EPS_PLACEMENTS_ADAMAX, scale_by_adamax
from . import validation as check
from .declared import Declared, Spec

_ADAMAX = dict(betas=(0.9, 0.999), weight_decay=0.0)


class Adamax(Declared):
    """Adamax (Kingma & Ba, ICLR 2015, §7.1, https://arxiv.org/abs/1412.6980): Adam's L²
    second moment replaced by an exponentially weighted infinity norm, which needs no bias
    correction:

        m ← β₁m + (1 − β₁)g
        u ← max(β₂u, |g| + ε),   θ ← θ − γ/(1 − β₁ᵗ) · m/u          (torch, optax: "inside")
        u ← max(β₂u, |g|),       θ ← θ − γ/(1 − β₁ᵗ) · m/(u + ε)    (Keras: "outside")

    torch.optim.Adamax's keywords and defaults (lr 2e-3, betas (0.9, 0.999), eps 1e-8,
    ``weight_decay`` as L2). ``convention="keras"`` is ``keras.optimizers.Adamax`` (lr 1e-3,
    ε 1e-7 outside the max, decoupled decay); ``"optax"`` is ``optax.adamax`` /
    ``optax.adamaxw`` (ε inside the max as torch; a weight decay is adamaxw's, decoupled).
    See :class:`descend.transforms.scale_by_adamax`.
    Chain: [clip] [maximize] [L2] → scale_by_adamax → scale_by_lr → [decoupled decay].
    """

    keywords = ("lr", "betas", "eps", "weight_decay", "foreach")
    conventions = {
        "torch": dict(_ADAMAX, lr=2e-3, eps=1e-8, eps_placement="inside", weight_decay_mode="l2"),
        "keras": dict(
            _ADAMAX, lr=1e-3, eps=1e-7, eps_placement="outside", weight_decay_mode="decoupled"
        ),
        "optax": dict(
            _ADAMAX, lr=2e-3, eps=1e-8, eps_placement="inside", weight_decay_mode="decoupled"
        ),
    }
    # torch's default rate is twice Adam's (2e-3): so is the lab's
    specs = {
        "adamax": Spec("Adam with an infinity norm: divide by max(β₂u, |g|)", lab_lr=("adam", 2.0))
    }
    choices = {"eps_placement": EPS_PLACEMENTS_ADAMAX}
    structure = ("eps_placement",)

    def check(self, group: dict) -> None:
        check.betas(group["betas"])
        check.non_negative("eps", group["eps"])
        check.choice("eps_placement", group["eps_placement"], EPS_PLACEMENTS_ADAMAX)

    def core(self, group: dict) -> list:
        return [scale_by_adamax(eps_placement=group["eps_placement"])]
