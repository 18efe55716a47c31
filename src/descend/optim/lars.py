"""LARS: momentum SGD with a per-layer trust ratio."""

from __future__ import annotations

from ..transforms import momentum, scale_by_trust_ratio
from . import validation as check
from .declared import Declared, Spec


class LARS(Declared):
    """LARS (You, Gitman & Ginsburg 2017, https://arxiv.org/abs/1708.03888): each tensor's
    (decayed) gradient is rescaled to η‖θ‖ before a heavy-ball momentum, as ``optax.lars``:

        u = g + λθ                          (L2 decay, before the ratio)
        r = η‖θ‖/(‖u‖ + ε)                  (r = 1 where ‖θ‖ = 0 or ‖u‖ = 0)
        v ← μv + γ·r·u,   θ ← θ − v         (nesterov: θ ← θ − (μv + γ·r·u))

    Each parameter tensor is one layer (under FSDP2 its norms are the whole tensor's: every
    tensor's squared shard norms in one all-reduce per step); the learning rate sits inside
    the velocity (optax scales before its ``trace``: the same trajectory as torch's lr-outside
    form while γ is constant, not under a schedule). Exclusion masks are param groups: a group with
    ``weight_decay=0`` is optax's ``weight_decay_mask``, ``trust_ratio=False`` its
    ``trust_ratio_mask`` — ``param_groups(model, 1e-4, no_decay_options={"trust_ratio":
    False})`` excludes biases and norms from both (:func:`descend.optim.param_groups`).

    Conventions: ``"torch"`` (the default; torch has no LARS: optax's defaults with lr 1.0, the
    scale of the paper's global rate, as timm's ``Lars``) and ``"optax"``. Chain: [clip]
    [maximize] [L2] → scale_by_trust_ratio → momentum(lr inside) → [decoupled decay].
    """

    keywords = ("lr", "weight_decay", "trust_coefficient", "eps", "momentum", "nesterov")
    _ROW = dict(
        lr=1.0,
        weight_decay=0.0,
        weight_decay_mode="l2",
        trust_coefficient=1e-3,
        eps=0.0,
        trust_ratio=True,
        momentum=0.9,
        nesterov=False,
    )
    conventions = {"torch": dict(_ROW), "optax": dict(_ROW)}
    specs = {
        "lars": Spec("LARS: heavy ball on a per-layer trust ratio η‖θ‖/‖g‖", lab_lr=("newton", 3.0))
    }
    structure = ("nesterov", "trust_ratio")
    couples = True  # the trust ratio reads the whole tensor's norms
    momentum_based = True

    def check(self, group: dict) -> None:
        check.decay_rate("momentum", group["momentum"])
        check.flag("nesterov", group["nesterov"])
        check.non_negative("eps", group["eps"])
        check.flag("trust_ratio", group["trust_ratio"])
        check.number("trust_coefficient", group["trust_coefficient"])
        if any(v <= 0 for v in check._values(group["trust_coefficient"])):
            raise ValueError(
                f"trust_coefficient={group['trust_coefficient']!r} is invalid: it must be > 0 "
                "(η scales every step: η = 0 never moves)"
            )

    def has_momentum(self, group: dict) -> bool:
        return any(v != 0 for v in check._values(group["momentum"]))

    def lr_inside(self, group: dict) -> bool:
        return True

    def core(self, group: dict) -> list:
        core = [scale_by_trust_ratio()] if group["trust_ratio"] else []
        return core + [momentum(form="lr_inside", nesterov=group["nesterov"])]
