"""Stochastic gradient descent with momentum in any of the notes' three forms."""

from __future__ import annotations

from ..transforms import MOMENTUM_FORMS, hp, momentum
from . import validation as check
from ._common import build_defaults, check_common, structure, wrap
from .base import ChainOptimizer


class SGD(ChainOptimizer):
    """SGD, heavy-ball momentum and Nesterov: θ ← θ − γ·v (see
    :class:`descend.transforms.momentum` for the three forms' equations).

    ``momentum_form="modern"`` (torch, default) | ``"ema"`` | ``"lr_inside"`` (Keras);
    ``debias=True`` divides the ``ema`` velocity by 1 − βᵗ. Keywords as torch.optim.SGD.
    """

    def __init__(
        self,
        params,
        lr: float | None = None,
        momentum: float | None = None,
        dampening: float | None = None,
        weight_decay: float | None = None,
        nesterov: bool | None = None,
        *,
        maximize: bool = False,
        momentum_form: str | None = None,
        debias: bool = False,
        weight_decay_mode: str | None = None,
        decoupled_weight_decay: bool | None = None,
        convention: str = "torch",
        nonfinite: str = "propagate",
        max_grad_norm: float | None = None,
        clip_value: float | None = None,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
        process_group="auto",
    ):
        given = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            momentum_form=momentum_form,
        )
        defaults = build_defaults(
            "sgd",
            convention,
            given,
            maximize=maximize,
            weight_decay_mode=weight_decay_mode,
            decoupled_weight_decay=decoupled_weight_decay,
            max_grad_norm=max_grad_norm,
            clip_value=clip_value,
            differentiable=differentiable,
        )
        defaults["debias"] = debias
        self._chains: dict = {}
        super().__init__(
            params, defaults, nonfinite=nonfinite, fused=fused, process_group=process_group
        )

    def validate(self, group: dict) -> None:
        check_common(group)
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

    def chain(self, group: dict):
        key = structure(group, ("momentum_form", "nesterov", "debias"))
        if key not in self._chains:
            form = group["momentum_form"]
            core = [
                momentum(
                    nesterov=group["nesterov"],
                    form=form,
                    debias=group["debias"],
                    dampening=hp("dampening"),
                )
            ]
            self._chains[key] = wrap(group, core, lr_inside=form == "lr_inside")
        return self._chains[key]
