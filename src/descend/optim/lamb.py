"""LAMB: Adam with a per-layer trust ratio."""

from __future__ import annotations

from ..transforms import WEIGHT_DECAY_MODES, add_weight_decay, cautious, scale_by_adam
from ..transforms.trust import scale_by_trust_ratio
from . import validation as check
from ._common import wrap
from .declared import Declared, Spec

#: LAMB's weight-decay placements: "trust_ratio" (the paper's and optax's: λθ joins the Adam
#: ratio inside the trust ratio) and the three common ones
LAMB_DECAY_MODES = ("trust_ratio",) + WEIGHT_DECAY_MODES


class LAMB(Declared):
    """LAMB (You et al., ICLR 2020, https://arxiv.org/abs/1904.00962): Adam's ratio, rescaled
    per tensor so its step is γ times the parameter's norm.

        m ← β₁m + (1 − β₁)g,   v ← β₂v + (1 − β₂)g²
        r = m̂/(√v̂ + ε) + λθ,   m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ)
        θ ← θ − γ · (‖θ‖/‖r‖) · r      (ratio 1 where ‖θ‖ = 0 or ‖r‖ = 0)

    Each parameter tensor is one layer (under FSDP2 its norms are the whole tensor's: every
    tensor's squared shard norms in one all-reduce per step).
    ``weight_decay_mode="trust_ratio"`` (default; the paper and ``optax.lamb``) puts λθ inside
    r as above; ``"decoupled"`` (Keras' ``Lamb``, whose decay is every Keras optimizer's)
    shrinks θ ← θ(1 − γλ) outside the ratio, *before* the step as Keras does, so the ratio
    reads the shrunk ‖θ‖ (``"independent"``: θ(1 − λ), likewise); ``"l2"`` adds λθ to g.
    Exclusion masks are param groups: a group with ``weight_decay=0`` is optax's ``mask``, and
    ``trust_ratio=False`` turns the adaptation off (plain AdamW steps) for a group — e.g.
    ``param_groups(model, 0.01, no_decay_options={"trust_ratio": False})`` for biases and norms
    (:func:`descend.optim.param_groups`). ``cautious=True`` masks Adam's ratio before the decay
    and the trust ratio, as timm's ``Lamb(caution=True)``.

    Conventions: ``"torch"`` (the default; torch has no LAMB, so ``optax.lamb``'s defaults with
    lr 1e-3), ``"optax"`` (ε 1e-6, eps_root 0) and ``"keras"`` (ε 1e-7, decoupled decay).
    Chain: [clip] [maximize] [L2] → [decoupled decay] → scale_by_adam → [+λθ] →
    scale_by_trust_ratio → scale_by_lr.
    """

    keywords = ("lr", "betas", "eps", "weight_decay")
    _ROW = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, trust_ratio=True)
    conventions = {
        "torch": dict(_ROW, weight_decay_mode="trust_ratio"),
        "optax": dict(_ROW, weight_decay_mode="trust_ratio"),
        "keras": dict(_ROW, eps=1e-7, weight_decay_mode="decoupled"),
    }
    specs = {"lamb": Spec("LAMB: Adam with a per-layer trust ratio ‖θ‖/‖r‖", lab_lr=("adam", 0.3))}
    choices = {"weight_decay_mode": LAMB_DECAY_MODES}
    structure = ("trust_ratio",)
    couples = True  # the trust ratio reads the whole tensor's norms
    momentum_based = True

    def validate(self, group: dict) -> None:
        check.choice("weight_decay_mode", group["weight_decay_mode"], LAMB_DECAY_MODES)
        if group["weight_decay_mode"] == "trust_ratio":  # the common checks know three modes
            group = dict(group, weight_decay_mode="decoupled")
        super().validate(group)

    def check(self, group: dict) -> None:
        check.betas(group["betas"])
        check.non_negative("eps", group["eps"])
        check.flag("trust_ratio", group["trust_ratio"])

    def wrap(self, group: dict, core):
        # the decay placements other than L2 are the core's own (see core)
        outer = "l2" if group["weight_decay_mode"] == "l2" else None
        return wrap({**group, "weight_decay_mode": outer}, core)

    def core(self, group: dict) -> list:
        mode = group["weight_decay_mode"]
        # Keras decays θ before its update step: the trust ratio reads the shrunk ‖θ‖
        core = [add_weight_decay(mode=mode)] if mode in ("decoupled", "independent") else []
        core.append(scale_by_adam())
        if mode == "trust_ratio":
            core.append(add_weight_decay(mode="l2"))  # u ← u + λθ where it stands
        if group["trust_ratio"]:
            core.append(scale_by_trust_ratio(trust_coefficient=1.0, eps=0.0))
        return core

    def cautious_core(self, group: dict, core: list) -> list:
        """timm's placement: the mask acts on Adam's ratio, before λθ and the trust ratio."""
        i = next(i for i, t in enumerate(core) if isinstance(t, scale_by_adam))
        return [*core[:i], cautious(core[i]), *core[i + 1 :]]
