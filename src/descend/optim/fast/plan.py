"""Read a chain of transforms as one kernel call.

A named optimizer's chain has the shape ``wrap`` gives it (``descend.optim._common``)::

    [clip_by_global_norm] [clip_by_value] [flip_sign] [L2 decay]  CORE  [scale_by_lr] [decay]

with CORE one of ``momentum`` (SGD), ``scale_by_adagrad``, ``scale_by_rms`` [+ ``momentum``],
``scale_by_adam`` or ``scale_by_nadam``. :func:`shape_of` recognises that grammar once per chain
object (the structural switches: form, Nesterov, ε placement, AMSGrad, centering, …), and
:meth:`Shape.resolve` reads the numbers from the param group at every step, exactly as the
transforms' ``hp`` references do, so schedulers and per-group values act on both paths alike.
The learning rate and the weight decay may be tensors of per-run values (the lab's (N, 1)
columns for an (N, d) parameter); any other tensor-valued hyperparameter (whose powers the
default path would take in float32), per-row clipping or an unknown link is reported as a
reason, and the optimizer keeps the default path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from ...transforms import (
    Transform,
    add_weight_decay,
    clip_by_global_norm,
    clip_by_value,
    flip_sign,
    momentum,
    scale_by_adagrad,
    scale_by_adam,
    scale_by_lr,
    scale_by_nadam,
    scale_by_rms,
)
from ...transforms.base import hp

CORES = (momentum, scale_by_adagrad, scale_by_rms, scale_by_adam, scale_by_nadam)
FAMILY = {
    momentum: "sgd",
    scale_by_adagrad: "adagrad",
    scale_by_rms: "rmsprop",
    scale_by_adam: "adam",
    scale_by_nadam: "nadam",
}


class Unsupported(Exception):
    """Why a group cannot take the fast path (the message says which setting)."""


@dataclass
class Shape:
    """The links of a recognised chain, by role."""

    family: str
    core: Transform
    mom: momentum | None = None  # SGD's core, or RMSprop's momentum link
    clip_norm: clip_by_global_norm | None = None
    clip_value: clip_by_value | None = None
    maximize: bool = False
    l2: add_weight_decay | None = None
    lr: scale_by_lr | None = None
    decay: add_weight_decay | None = None

    def resolve(self, group: dict) -> Resolved:
        """The step's numbers and switches, or :class:`Unsupported`."""
        return _resolve(self, group)


@dataclass
class Resolved:
    """One step's kernel settings for a group (fields of ``descend.native.abi.Args``) and its
    state keys."""

    family: str
    fields: dict
    slots: tuple[str | None, str | None, str | None]  # state keys of s0, s1, s2
    lazy: str | None = None  # momentum key created on first use (v₁ = input, torch's rule)
    lazy_fill: float | None = None  # adagrad's "sum": created filled with this value
    extra: str | None = None  # NAdam's μ-product
    max_norm: float | None = None  # global-norm clipping threshold, or None


def shape_of(links: list[Transform]) -> Shape:
    """Recognise a chain (see the module docstring) or raise :class:`Unsupported`."""
    rest = list(links)
    pre: dict = {}
    for role, kind in (
        ("clip_norm", clip_by_global_norm),
        ("clip_value", clip_by_value),
        ("flip", flip_sign),
    ):
        if rest and type(rest[0]) is kind:
            pre[role] = rest.pop(0)
    if rest and type(rest[0]) is add_weight_decay and rest[0].mode == "l2":
        pre["l2"] = rest.pop(0)
    if not rest or type(rest[0]) not in CORES:
        found = type(rest[0]).__name__ if rest else "nothing"
        raise Unsupported(f"chain core {found} has no fast kernel")
    core = rest.pop(0)
    mom = core if type(core) is momentum else None
    if type(core) is scale_by_rms and rest and type(rest[0]) is momentum:
        mom = rest.pop(0)
    lr = rest.pop(0) if rest and type(rest[0]) is scale_by_lr else None
    decay = None
    if rest and type(rest[0]) is add_weight_decay and rest[0].mode != "l2":
        decay = rest.pop(0)
    if rest:
        names = ", ".join(type(t).__name__ for t in rest)
        raise Unsupported(f"links after the core ({names}) have no fast kernel")
    clip_norm = pre.get("clip_norm")
    if clip_norm is not None and clip_norm.axis is not None:
        raise Unsupported("per-row clipping (clip_by_global_norm with axis) runs on the chain")
    return Shape(
        family=FAMILY[type(core)],
        core=core,
        mom=mom,
        clip_norm=clip_norm,
        clip_value=pre.get("clip_value"),
        maximize="flip" in pre,
        l2=pre.get("l2"),
        lr=lr,
        decay=decay,
    )


def _value(group: dict, ref):
    """The hyperparameter as the default path reads it (``Context.value``): a one-element
    tensor is a number."""
    value = ref.resolve(group) if isinstance(ref, hp) else ref
    return value.item() if isinstance(value, Tensor) and value.numel() == 1 else value


def _number(group: dict, ref, name: str) -> float:
    value = _value(group, ref)
    if isinstance(value, Tensor):
        raise Unsupported(f"{name} is a tensor (shape {tuple(value.shape)}), not a number")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Unsupported(f"{name}={value!r} is not a number")
    return float(value)


def _scaling(group: dict, ref, name: str) -> float | Tensor:
    """A hyperparameter that may be a tensor of per-run values (the learning rate, the weight
    decay): the kernels read it row by row (see ``step.run``). Anything derived from it is
    computed by the same Python/torch operations as on the default path, so the rounding of
    float32 tensors is the same."""
    value = _value(group, ref)
    if isinstance(value, Tensor):
        return value  # read only, under the step's no_grad
    return _number(group, value, name)


def _optional(group: dict, ref, name: str) -> float | None:
    value = _value(group, ref)
    return None if value is None else _number(group, value, name)


def _momentum_fields(mom: momentum, group: dict, f: dict) -> str | None:
    """Fill the momentum switches; returns the velocity's state key when one is used."""
    beta = _number(group, mom.momentum, "momentum")
    if mom.form != "lr_inside" and beta == 0:
        f["mom"] = 0  # plain gradient: no velocity, as the default path keeps none
        return None
    f["mom"] = 2 if mom.nesterov else 1
    f["beta"] = beta
    if mom.form == "modern":
        f["mom_gain"], f["nest_scale"] = 1 - _number(group, mom.dampening, "dampening"), 1.0
    elif mom.form == "ema":
        f["mom_gain"] = f["nest_scale"] = 1 - beta
        f["debias"] = int(mom.debias)
    else:  # lr_inside
        f["mom_gain"] = f["nest_scale"] = _scaling(group, mom.lr, "lr")
    return mom.key


def _resolve(shape: Shape, group: dict) -> Resolved:
    f: dict = {"gscale": -1.0 if shape.maximize else 1.0}  # × the clipping factor, per step
    max_norm = None
    if shape.clip_norm is not None:
        max_norm = _optional(group, shape.clip_norm.max_norm, "max_grad_norm")
    clip = None
    if shape.clip_value is not None:
        clip = _optional(group, shape.clip_value.clip_value, "clip_value")
    f["clip"] = math.inf if clip is None else clip
    if shape.l2 is not None:
        wd = _scaling(group, shape.l2.weight_decay, "weight_decay")
        f["l2"], f["l2_coef"] = int(isinstance(wd, Tensor) or wd != 0), wd
    f["lr"] = _scaling(group, shape.lr.lr, "lr") if shape.lr is not None else 1.0
    if shape.decay is not None:
        wd = _scaling(group, shape.decay.weight_decay, "weight_decay")
        if isinstance(wd, Tensor) or wd != 0:  # as add_weight_decay: θ ← θ·(1 − k)
            if shape.decay.mode == "decoupled":
                wd = _scaling(group, shape.decay.lr, "lr") * wd
            f["dec"], f["keep"] = 1, 1 - wd
    core, family = shape.core, shape.family
    lazy = extra = lazy_fill = None
    if family == "sgd":
        key = _momentum_fields(core, group, f)
        slots = (key, None, None)
        lazy = key if key is not None and core.form == "modern" else None
    elif family == "adagrad":
        _eps(f, _number(group, core.eps, "eps"), core.eps_placement == "inside")
        f["lr_decay"] = _number(group, core.lr_decay, "lr_decay")
        lazy_fill = _number(group, core.initial_accumulator_value, "initial_accumulator_value")
        slots = ("sum", None, None)
        lazy = "sum"
    elif family == "rmsprop":
        f["alpha"] = _number(group, core.alpha, "alpha")
        _eps(f, _number(group, core.eps, "eps"), core.eps_placement == "inside")
        f["centered"], f["bias2"] = int(core.centered), int(core.bias_correction)
        key = _momentum_fields(shape.mom, group, f) if shape.mom is not None else None
        slots = ("square_avg", "grad_avg" if core.centered else None, key)
        lazy = key if key is not None and shape.mom.form == "modern" else None
    elif family == "adam":
        f["beta1"] = _number(group, core.b1, "betas[0]")
        f["beta2"] = _number(group, core.b2, "betas[1]")
        _eps(f, _number(group, core.eps, "eps"), core.eps_placement == "inside")
        f["bias1"], f["bias2"] = (int(b) for b in core.bias_correction)
        f["hat"] = int(core.eps_placement == "hat")
        if core.amsgrad:
            # as scale_by_adam: the max of v̂ ("corrected") is taken only for ε outside/inside
            f["ams"] = 1 if core.amsgrad_of == "raw" else (0 if f["hat"] else 2)
        slots = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq" if core.amsgrad else None)
    else:  # nadam
        f["beta1"] = _number(group, core.b1, "betas[0]")
        f["beta2"] = _number(group, core.b2, "betas[1]")
        f["eps_out"] = _number(group, core.eps, "eps")
        f["psi"] = _number(group, core.momentum_decay, "momentum_decay")
        f["schedule"] = ("torch", "keras", "none").index(core.schedule)
        slots = ("exp_avg", "exp_avg_sq", None)
        extra = "mu_product"
    return Resolved(family, f, slots, lazy, lazy_fill, extra, max_norm)


def _eps(f: dict, eps: float, inside: bool) -> None:
    f["eps_in"], f["eps_out"] = (eps, 0.0) if inside else (0.0, eps)
