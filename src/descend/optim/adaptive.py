"""AdaGrad and RMSprop: per-parameter step sizes from a running sum or average of g²."""

from __future__ import annotations

from ..transforms import (
    EPS_PLACEMENTS_RMS,
    MOMENTUM_FORMS,
    momentum,
    scale_by_adagrad,
    scale_by_rms,
)
from . import validation as check
from ._common import build_defaults, check_common, structure, wrap
from .base import ChainOptimizer


class Adagrad(ChainOptimizer):
    """AdaGrad (Duchi et al. 2011): θ ← θ − γ/(1 + (t−1)δ) · g/(√s + ε), s = Σg².

    ``eps_placement="outside"`` (torch) | ``"inside"`` (Keras/optax: g/√(s + ε)).
    Chain: [clip] [maximize] [L2] → scale_by_adagrad → scale_by_lr → [decoupled decay].
    """

    def __init__(
        self,
        params,
        lr: float | None = None,
        lr_decay: float | None = None,
        weight_decay: float | None = None,
        initial_accumulator_value: float | None = None,
        eps: float | None = None,
        *,
        maximize: bool = False,
        eps_placement: str | None = None,
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
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            eps=eps,
            eps_placement=eps_placement,
        )
        defaults = build_defaults(
            "adagrad",
            convention,
            given,
            maximize=maximize,
            weight_decay_mode=weight_decay_mode,
            decoupled_weight_decay=decoupled_weight_decay,
            max_grad_norm=max_grad_norm,
            clip_value=clip_value,
            differentiable=differentiable,
        )
        self._chains: dict = {}
        super().__init__(
            params, defaults, nonfinite=nonfinite, fused=fused, process_group=process_group
        )

    def validate(self, group: dict) -> None:
        check_common(group)
        check.non_negative("lr_decay", group["lr_decay"])
        check.non_negative("initial_accumulator_value", group["initial_accumulator_value"])
        check.non_negative("eps", group["eps"])
        check.choice("eps_placement", group["eps_placement"], EPS_PLACEMENTS_RMS)

    def chain(self, group: dict):
        key = structure(group, ("eps_placement",))
        if key not in self._chains:
            core = [scale_by_adagrad(eps_placement=group["eps_placement"])]
            self._chains[key] = wrap(group, core)
        return self._chains[key]


class RMSprop(ChainOptimizer):
    """RMSprop (Hinton 2012; centered: Graves 2013), optionally with momentum.

    v = αv + (1−α)g²; u = g/(√ṽ + ε) (``outside``) or g/√(ṽ + ε) (``inside``), with
    ṽ = v − ḡ² when ``centered``; optional ``bias_correction`` (ṽ/(1 − αᵗ)) and
    ``initial_accumulator_value``. With momentum μ: buf = μ·buf + u, θ ← θ − γ·buf (torch,
    ``momentum_form="modern"``) or buf = μ·buf + γu, θ ← θ − buf (Keras/optax, ``lr_inside``).
    """

    def __init__(
        self,
        params,
        lr: float | None = None,
        alpha: float | None = None,
        eps: float | None = None,
        weight_decay: float | None = None,
        momentum: float | None = None,
        centered: bool | None = None,
        *,
        maximize: bool = False,
        nesterov: bool | None = None,
        momentum_form: str | None = None,
        eps_placement: str | None = None,
        bias_correction: bool | None = None,
        initial_accumulator_value: float | None = None,
        weight_decay_mode: str | None = None,
        decoupled_weight_decay: bool | None = None,
        convention: str = "torch",
        nonfinite: str = "propagate",
        max_grad_norm: float | None = None,
        clip_value: float | None = None,
        foreach: bool | None = None,
        differentiable: bool = False,
        capturable: bool = False,
        fused: bool | None = None,
        process_group="auto",
    ):
        given = dict(
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
            nesterov=nesterov,
            momentum_form=momentum_form,
            eps_placement=eps_placement,
            bias_correction=bias_correction,
            initial_accumulator_value=initial_accumulator_value,
        )
        defaults = build_defaults(
            "rmsprop",
            convention,
            given,
            maximize=maximize,
            weight_decay_mode=weight_decay_mode,
            decoupled_weight_decay=decoupled_weight_decay,
            max_grad_norm=max_grad_norm,
            clip_value=clip_value,
            differentiable=differentiable,
            capturable=capturable,
        )
        self._chains: dict = {}
        super().__init__(
            params, defaults, nonfinite=nonfinite, fused=fused, process_group=process_group
        )

    def validate(self, group: dict) -> None:
        check_common(group)
        check.decay_rate("alpha", group["alpha"])
        check.non_negative("eps", group["eps"])
        check.decay_rate("momentum", group["momentum"])
        check.flag("centered", group["centered"])
        check.flag("nesterov", group["nesterov"])
        check.flag("bias_correction", group["bias_correction"])
        check.non_negative("initial_accumulator_value", group["initial_accumulator_value"])
        check.choice("momentum_form", group["momentum_form"], MOMENTUM_FORMS)
        check.choice("eps_placement", group["eps_placement"], EPS_PLACEMENTS_RMS)
        if group["nesterov"] and any(v <= 0 for v in check._values(group["momentum"])):
            raise ValueError("nesterov=True needs momentum > 0")

    def chain(self, group: dict):
        key = structure(
            group,
            (
                "momentum_form",
                "nesterov",
                "eps_placement",
                "centered",
                "bias_correction",
                "initial_accumulator_value",
            ),
        )
        key += (check._values(group["momentum"]) != [0.0],)
        if key not in self._chains:
            form = group["momentum_form"]
            core = [
                scale_by_rms(
                    eps_placement=group["eps_placement"],
                    centered=group["centered"],
                    bias_correction=group["bias_correction"],
                    initial_accumulator_value=group["initial_accumulator_value"],
                )
            ]
            with_momentum = key[-1]
            if with_momentum:
                core.append(momentum(form=form, nesterov=group["nesterov"]))
            lr_inside = with_momentum and form == "lr_inside"
            self._chains[key] = wrap(group, core, lr_inside=lr_inside)
        return self._chains[key]
