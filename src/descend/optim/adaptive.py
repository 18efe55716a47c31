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
from .declared import Declared, Spec

_ADAGRAD = dict(lr_decay=0.0, weight_decay=0.0)
_RMSPROP = dict(weight_decay=0.0, momentum=0.0, centered=False, bias_correction=False)
_RMSPROP.update(initial_accumulator_value=0.0, nesterov=False)


class Adagrad(Declared):
    """AdaGrad (Duchi et al. 2011, https://jmlr.org/papers/v12/duchi11a.html):
    θ ← θ − γ/(1 + (t−1)δ) · g/(√s + ε), s = Σg².

    ``eps_placement="outside"`` (torch) | ``"inside"`` (Keras/optax: g/√(s + ε)).
    Chain: [clip] [maximize] [L2] → scale_by_adagrad → scale_by_lr → [decoupled decay].
    """

    keywords = ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps")
    conventions = {
        "torch": dict(
            _ADAGRAD,
            lr=1e-2,
            initial_accumulator_value=0.0,
            eps=1e-10,
            eps_placement="outside",
            weight_decay_mode="l2",
        ),
        "keras": dict(
            _ADAGRAD,
            lr=1e-3,
            initial_accumulator_value=0.1,
            eps=1e-7,
            eps_placement="inside",
            weight_decay_mode="decoupled",
        ),
        "optax": dict(
            _ADAGRAD,
            lr=1e-2,
            initial_accumulator_value=0.1,
            eps=1e-7,
            eps_placement="inside",
            weight_decay_mode="l2",
        ),
    }
    # Adagrad's steps shrink like 1/√t: on a landscape it takes the "adagrad" rate (10× Adam's
    # unless the landscape measured its own).
    specs = {
        "adagrad": Spec("AdaGrad: divide by the root of the sum of g²", lab_lr=("adagrad", 1.0))
    }
    choices = {"eps_placement": EPS_PLACEMENTS_RMS}
    structure = ("eps_placement",)

    def check(self, group: dict) -> None:
        check.non_negative("lr_decay", group["lr_decay"])
        check.non_negative("initial_accumulator_value", group["initial_accumulator_value"])
        check.non_negative("eps", group["eps"])
        check.choice("eps_placement", group["eps_placement"], EPS_PLACEMENTS_RMS)

    def core(self, group: dict) -> list:
        return [scale_by_adagrad(eps_placement=group["eps_placement"])]


class RMSprop(Declared):
    """RMSprop (Hinton 2012; centered: Graves 2013, https://arxiv.org/abs/1308.0850),
    optionally with momentum.

    v = αv + (1−α)g²; u = g/(√ṽ + ε) (``outside``) or g/√(ṽ + ε) (``inside``), with
    ṽ = v − ḡ² when ``centered``; optional ``bias_correction`` (ṽ/(1 − αᵗ)) and
    ``initial_accumulator_value``. With momentum μ: buf = μ·buf + u, θ ← θ − γ·buf (torch,
    ``momentum_form="modern"``) or buf = μ·buf + γu, θ ← θ − buf (Keras/optax, ``lr_inside``).
    """

    keywords = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered")
    conventions = {
        "torch": dict(
            _RMSPROP,
            lr=1e-2,
            alpha=0.99,
            eps=1e-8,
            eps_placement="outside",
            momentum_form="modern",
            weight_decay_mode="l2",
        ),
        # Keras: ρ = 0.9, ε = 1e-7 inside the root, velocity = μ·velocity + γ·g/√(v + ε).
        "keras": dict(
            _RMSPROP,
            lr=1e-3,
            alpha=0.9,
            eps=1e-7,
            eps_placement="inside",
            momentum_form="lr_inside",
            weight_decay_mode="decoupled",
        ),
        # optax.rmsprop = scale_by_rms(eps_in_sqrt) → scale_by_learning_rate → trace: lr inside.
        "optax": dict(
            _RMSPROP,
            lr=1e-2,
            alpha=0.9,
            eps=1e-8,
            eps_placement="inside",
            momentum_form="lr_inside",
            weight_decay_mode="l2",
        ),
    }
    specs = {
        "rmsprop": Spec("RMSprop: divide by the root of an EWA of g²"),
        "rmsprop-centered": Spec(
            "RMSprop divided by the gradient's std", preset={"centered": True}
        ),
    }
    choices = {"momentum_form": MOMENTUM_FORMS, "eps_placement": EPS_PLACEMENTS_RMS}
    structure = (
        "momentum_form",
        "nesterov",
        "eps_placement",
        "centered",
        "bias_correction",
        "initial_accumulator_value",
    )

    def check(self, group: dict) -> None:
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

    @staticmethod
    def _with_momentum(group: dict) -> bool:
        return check._values(group["momentum"]) != [0.0]

    def shape(self, group: dict) -> tuple:
        return super().shape(group) + (self._with_momentum(group),)

    def lr_inside(self, group: dict) -> bool:
        return self._with_momentum(group) and group["momentum_form"] == "lr_inside"

    def core(self, group: dict) -> list:
        core = [
            scale_by_rms(
                eps_placement=group["eps_placement"],
                centered=group["centered"],
                bias_correction=group["bias_correction"],
                initial_accumulator_value=group["initial_accumulator_value"],
            )
        ]
        if self._with_momentum(group):
            core.append(momentum(form=group["momentum_form"], nesterov=group["nesterov"]))
        return core
