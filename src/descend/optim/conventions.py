"""Each framework's equations *and* default hyperparameters, per optimizer.

``convention="torch"`` (default) | ``"keras"`` | ``"optax"`` picks a row; any keyword given
explicitly overrides it. Sources: torch 2.13 ``torch/optim``, Keras 3 ``keras/src/optimizers``,
optax ``_src/alias.py`` (see ``shared/reference/conventions.md``). Where a framework has no
default learning rate (optax), torch's is used.
"""

from __future__ import annotations

CONVENTIONS = ("torch", "keras", "optax")

_SGD = dict(momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0)
_ADAM = dict(betas=(0.9, 0.999), weight_decay=0.0, amsgrad=False, bias_correction=True)

TABLE: dict[str, dict[str, dict]] = {
    "sgd": {
        "torch": dict(_SGD, lr=1e-3, momentum_form="modern", weight_decay_mode="l2"),
        # Keras: velocity = μ·velocity − γg; θ += velocity (lr inside); decay decoupled.
        "keras": dict(_SGD, lr=1e-2, momentum_form="lr_inside", weight_decay_mode="decoupled"),
        # optax.sgd = trace(μ, nesterov) → scale(−γ): the modern form, buffer from zero.
        "optax": dict(_SGD, lr=1e-3, momentum_form="modern", weight_decay_mode="l2"),
    },
    "adagrad": {
        "torch": dict(
            lr=1e-2,
            lr_decay=0.0,
            weight_decay=0.0,
            initial_accumulator_value=0.0,
            eps=1e-10,
            eps_placement="outside",
            weight_decay_mode="l2",
        ),
        "keras": dict(
            lr=1e-3,
            lr_decay=0.0,
            weight_decay=0.0,
            initial_accumulator_value=0.1,
            eps=1e-7,
            eps_placement="inside",
            weight_decay_mode="decoupled",
        ),
        "optax": dict(
            lr=1e-2,
            lr_decay=0.0,
            weight_decay=0.0,
            initial_accumulator_value=0.1,
            eps=1e-7,
            eps_placement="inside",
            weight_decay_mode="l2",
        ),
    },
    "rmsprop": {
        "torch": dict(
            lr=1e-2,
            alpha=0.99,
            eps=1e-8,
            weight_decay=0.0,
            momentum=0.0,
            centered=False,
            eps_placement="outside",
            bias_correction=False,
            momentum_form="modern",
            initial_accumulator_value=0.0,
            weight_decay_mode="l2",
            nesterov=False,
        ),
        # Keras: ρ = 0.9, ε = 1e-7 inside the root, velocity = μ·velocity + γ·g/√(v + ε).
        "keras": dict(
            lr=1e-3,
            alpha=0.9,
            eps=1e-7,
            weight_decay=0.0,
            momentum=0.0,
            centered=False,
            eps_placement="inside",
            bias_correction=False,
            momentum_form="lr_inside",
            initial_accumulator_value=0.0,
            weight_decay_mode="decoupled",
            nesterov=False,
        ),
        # optax.rmsprop = scale_by_rms(eps_in_sqrt) → scale_by_learning_rate → trace: lr inside.
        "optax": dict(
            lr=1e-2,
            alpha=0.9,
            eps=1e-8,
            weight_decay=0.0,
            momentum=0.0,
            centered=False,
            eps_placement="inside",
            bias_correction=False,
            momentum_form="lr_inside",
            initial_accumulator_value=0.0,
            weight_decay_mode="l2",
            nesterov=False,
        ),
    },
    "adam": {
        "torch": dict(
            _ADAM,
            lr=1e-3,
            eps=1e-8,
            eps_placement="outside",
            amsgrad_of="raw",
            weight_decay_mode="l2",
        ),
        "keras": dict(
            _ADAM,
            lr=1e-3,
            eps=1e-7,
            eps_placement="hat",
            amsgrad_of="raw",
            weight_decay_mode="decoupled",
        ),
        "optax": dict(
            _ADAM,
            lr=1e-3,
            eps=1e-8,
            eps_placement="outside",
            amsgrad_of="corrected",
            weight_decay_mode="l2",
        ),
    },
    "adamw": {
        "torch": dict(
            _ADAM,
            lr=1e-3,
            eps=1e-8,
            eps_placement="outside",
            amsgrad_of="raw",
            weight_decay=1e-2,
            weight_decay_mode="decoupled",
        ),
        "keras": dict(
            _ADAM,
            lr=1e-3,
            eps=1e-7,
            eps_placement="hat",
            amsgrad_of="raw",
            weight_decay=4e-3,
            weight_decay_mode="decoupled",
        ),
        "optax": dict(
            _ADAM,
            lr=1e-3,
            eps=1e-8,
            eps_placement="outside",
            amsgrad_of="corrected",
            weight_decay=1e-4,
            weight_decay_mode="decoupled",
        ),
    },
    "nadam": {
        "torch": dict(
            lr=2e-3,
            betas=(0.9, 0.999),
            eps=1e-8,
            weight_decay=0.0,
            momentum_decay=4e-3,
            schedule="torch",
            weight_decay_mode="l2",
        ),
        "keras": dict(
            lr=1e-3,
            betas=(0.9, 0.999),
            eps=1e-7,
            weight_decay=0.0,
            momentum_decay=4e-3,
            schedule="keras",
            weight_decay_mode="decoupled",
        ),
        "optax": dict(
            lr=1e-3,
            betas=(0.9, 0.999),
            eps=1e-8,
            weight_decay=0.0,
            momentum_decay=4e-3,
            schedule="none",
            weight_decay_mode="l2",
        ),
    },
}


def resolve(kind: str, convention: str, given: dict) -> dict:
    """The convention's defaults for optimizer ``kind``, overridden by the non-None ``given``."""
    if convention not in CONVENTIONS:
        raise ValueError(
            f"convention={convention!r} is not valid; choose one of: {', '.join(CONVENTIONS)}"
        )
    out = dict(TABLE[kind][convention])
    out.update({k: v for k, v in given.items() if v is not None})
    out["convention"] = convention
    return out
