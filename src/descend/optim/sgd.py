"""Stochastic gradient descent with momentum in any of the notes' three forms."""

from __future__ import annotations

from ..transforms import MOMENTUM_FORMS, hp, momentum
from . import validation as check
from .declared import Declared, Spec

_SGD = dict(momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0, debias=False)


class SGD(Declared):
    """SGD, heavy-ball momentum and Nesterov: θ ← θ − γ·v (see
    :class:`descend.transforms.momentum` for the three forms' equations).

    ``momentum_form="modern"`` (torch, default) | ``"ema"`` | ``"lr_inside"`` (Keras);
    ``debias=True`` divides the ``ema`` velocity by 1 − βᵗ. Keywords as torch.optim.SGD.
    """

    keywords = ("lr", "momentum", "dampening", "weight_decay", "nesterov")
    conventions = {
        "torch": dict(_SGD, lr=1e-3, momentum_form="modern", weight_decay_mode="l2"),
        # Keras: velocity = μ·velocity − γg; θ += velocity (lr inside); decay decoupled.
        "keras": dict(_SGD, lr=1e-2, momentum_form="lr_inside", weight_decay_mode="decoupled"),
        # optax.sgd = trace(μ, nesterov) → scale(−γ): the modern form, buffer from zero.
        "optax": dict(_SGD, lr=1e-3, momentum_form="modern", weight_decay_mode="l2"),
    }
    specs = {
        "sgd": Spec("plain gradient descent: θ ← θ − γg", lab_lr=("sgd", 1.0)),
        "momentum": Spec(
            "heavy ball, modern form v = βv + g (torch)",
            preset={"momentum": 0.9},
            lab_lr=("momentum", 1.0),
        ),
        "momentum-ema": Spec(
            "heavy ball, EMA form v = βv + (1−β)g",
            preset={"momentum": 0.9, "momentum_form": "ema"},
            lab_lr=("sgd", 1.0),  # an average, not a sum: the plain SGD step size
        ),
        "nesterov": Spec(
            "Nesterov accelerated gradient",
            preset={"momentum": 0.9, "nesterov": True},
            lab_lr=("momentum", 1.0),
        ),
    }
    choices = {"momentum_form": MOMENTUM_FORMS}
    structure = ("momentum_form", "nesterov", "debias")

    def check(self, group: dict) -> None:
        check.decay_rate("momentum", group["momentum"])
        check.unit_closed("dampening", group["dampening"])
        check.flag("nesterov", group["nesterov"])
        check.choice("momentum_form", group["momentum_form"], MOMENTUM_FORMS)
        check.flag("debias", group["debias"])
        if group["debias"] and group["momentum_form"] != "ema":
            raise ValueError(
                f"debias=True with momentum_form={group['momentum_form']!r}: debiasing "
                "divides the 'ema' velocity v = βv + (1 − β)g by 1 − βᵗ; the other forms have "
                "no such bias to correct. Use momentum_form='ema' or debias=False"
            )
        if group["momentum_form"] != "modern" and any(
            v != 0 for v in check._values(group["dampening"])
        ):
            raise ValueError(
                f"dampening={group['dampening']!r} with momentum_form="
                f"{group['momentum_form']!r}: dampening (torch's (1 − τ)·g) belongs to the "
                "'modern' form only; the other forms would ignore it"
            )
        if group["nesterov"]:
            # Keras accepts Nesterov with its default momentum 0 (plain SGD: its update
            # β·v − γg is −γg); torch refuses it, and so does every other convention.
            floor = 0 if group.get("convention") == "keras" else None
            values = check._values(group["momentum"])
            if any(v < 0 if floor == 0 else v <= 0 for v in values) or any(
                v != 0 for v in check._values(group["dampening"])
            ):
                raise ValueError(
                    f"nesterov=True needs momentum > 0 and dampening = 0 (got momentum="
                    f"{group['momentum']!r}, dampening={group['dampening']!r}): Nesterov's "
                    "look-ahead is a momentum method (convention='keras' also accepts "
                    "momentum = 0, as Keras does)"
                )

    def _keeps_step(self, group: dict) -> bool:
        return bool(group["debias"])  # only the debiased 'ema' velocity reads the count

    def lr_inside(self, group: dict) -> bool:
        return group["momentum_form"] == "lr_inside"

    def core(self, group: dict) -> list:
        return [
            momentum(
                nesterov=group["nesterov"],
                form=group["momentum_form"],
                debias=group["debias"],
                dampening=hp("dampening"),
            )
        ]
