"""Read a chain of transforms as one kernel call.

A named optimizer's chain has the shape ``wrap`` gives it (``descend.optim._common``)::

    [clip_by_global_norm] [clip_by_value] [flip_sign] [L2]  CORE [absorbed]  [scale_by_lr] [decay]

where ``CORE [absorbed]`` may be wrapped in :class:`~descend.transforms.cautious`
(``cautious=True``: the kernel masks the core's update, for the families in
``descend.native.abi.CAUTIOUS``)

with CORE any transform that declares a kernel (``Transform.kernel``: SGD's ``momentum``,
``scale_by_adagrad``, ``scale_by_rms`` — which absorbs a following ``momentum`` —,
``scale_by_adam``, ``scale_by_nadam``). :func:`shape_of` recognises that grammar once per chain
object, and :meth:`Shape.resolve` reads the numbers from the param group at every step: the
wrapping links here, the core's through its own :meth:`~descend.transforms.Transform.kernel_plan`
— exactly as the transforms' ``hp`` references do, so schedulers and per-group values act on
both paths alike. No list of optimizer classes: a new core gets the fast path by declaring
its kernel. The learning rate and the weight decay may be tensors of per-run values (the lab's
(N, 1) columns for an (N, d) parameter); any other tensor-valued hyperparameter (whose powers
the default path would take in float32), per-row clipping or an unknown link is reported as a
reason, and the optimizer keeps the default path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from ...native.abi import CAUTIOUS
from ...transforms import (
    Chain,
    Transform,
    add_weight_decay,
    after_first_step,
    cautious,
    clip_by_global_norm,
    clip_by_value,
    flip_sign,
    scale_by_lr,
)
from ...transforms.base import hp


class Unsupported(Exception):
    """Why a group cannot take the fast path (the message says which setting)."""


@dataclass
class Shape:
    """The links of a recognised chain, by role."""

    family: str
    core: Transform
    absorbed: Transform | None = None  # a link the core's kernel runs too (RMSprop's momentum)
    clip_norm: clip_by_global_norm | None = None
    clip_value: clip_by_value | None = None
    maximize: bool = False
    l2: add_weight_decay | None = None
    lr: scale_by_lr | None = None
    decay: add_weight_decay | None = None
    # the decay skips each parameter's first step (ADOPT's after_first_step; its kernel only)
    decay_after_first: bool = False
    cautious: bool = False  # the core wrapped in the cautious mask (issue #14, i14kc)

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
    host: dict | None = None  # {Args field: state key} of per-parameter Python numbers
    per_tensor: object = None  # KernelPlan.per_tensor (ADOPT's clip_lambda function)
    extra_fill: float | None = None  # the extra scalar's first value (ASGD's η₀ = γ)
    scalars: tuple[tuple[str, str], ...] = ()  # further 0-d state: (Args field, state key)


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
    before = None  # a link the core's kernel runs first (Schedule-Free AdamW's scale_by_rms)
    if len(rest) > 1 and type(rest[0]) in getattr(type(rest[1]), "absorbs_before", ()):
        before = rest.pop(0)
    masked = before is None and bool(rest) and type(rest[0]) is cautious
    if masked:
        core, absorbed = _cautious_core(rest.pop(0))
    else:
        if not rest or type(rest[0]).kernel is None:
            found = type(rest[0]).__name__ if rest else "nothing"
            raise Unsupported(f"chain core {found} has no fast kernel")
        core = rest.pop(0)
        absorbed = before
        if absorbed is None and rest and type(rest[0]) in type(core).absorbs:
            absorbed = rest.pop(0)
    lr = rest.pop(0) if rest and type(rest[0]) is scale_by_lr else None
    decay = None
    if rest and type(rest[0]) is add_weight_decay and rest[0].mode != "l2":
        decay = rest.pop(0)
    after_first = False
    if decay is None and rest and _decay_after_first(core, rest[0]):
        decay, after_first = rest.pop(0).link, True
    if rest:
        names = ", ".join(type(t).__name__ for t in rest)
        raise Unsupported(f"links after the core ({names}) have no fast kernel")
    clip_norm = pre.get("clip_norm")
    if clip_norm is not None and clip_norm.axis is not None:
        raise Unsupported("per-row clipping (clip_by_global_norm with axis) runs on the chain")
    return Shape(
        family=type(core).kernel,
        core=core,
        absorbed=absorbed,
        clip_norm=clip_norm,
        clip_value=pre.get("clip_value"),
        maximize="flip" in pre,
        l2=pre.get("l2"),
        lr=lr,
        decay=decay,
        decay_after_first=after_first,
        cautious=masked,
    )


def _decay_after_first(core: Transform, link: Transform) -> bool:
    """ADOPT's decoupled decay, ``after_first_step(add_weight_decay)``: its kernel knows each
    parameter's first step and skips the decay there."""
    return (
        type(core).kernel == "adopt"
        and type(link) is after_first_step
        and type(link.link) is add_weight_decay
        and link.link.mode != "l2"
    )


def _cautious_core(wrapper: cautious) -> tuple[Transform, Transform | None]:
    """(core, absorbed) of a ``cautious(core [absorbed])`` link whose kernel has the mask."""
    inner = wrapper.inner.transforms if isinstance(wrapper.inner, Chain) else [wrapper.inner]
    core = inner[0] if inner else None
    kernel = type(core).kernel if core is not None else None
    if kernel is None:
        raise Unsupported(f"cautious core {type(core).__name__} has no fast kernel")
    if kernel not in CAUTIOUS:
        raise Unsupported(
            f"the {kernel} kernel has no cautious mask (cautious=True runs the chain)"
        )
    absorbed = inner[1] if len(inner) > 1 and type(inner[1]) in type(core).absorbs else None
    rest = inner[1 + (absorbed is not None) :]
    if rest:
        names = ", ".join(type(t).__name__ for t in rest)
        raise Unsupported(f"links inside the cautious mask ({names}) have no fast kernel")
    return core, absorbed


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


class _Reader:
    """What a core's ``kernel_plan`` reads hyperparameters with (``Transform.kernel_plan``)."""

    def __init__(self, group: dict):
        self.group = group

    def number(self, ref, name: str) -> float:
        return _number(self.group, ref, name)

    def scaling(self, ref, name: str) -> float | Tensor:
        return _scaling(self.group, ref, name)

    def optional(self, ref, name: str) -> float | None:
        """A number, or None (AdEMAMix's warm-ups)."""
        return _optional(self.group, ref, name)

    def refuse(self, reason: str):
        """Raise :class:`Unsupported` (a core's setting its kernel does not run)."""
        raise Unsupported(reason)


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
        if shape.family == "adopt":
            f["adopt_first_decay"] = int(not shape.decay_after_first)
    plan = shape.core.kernel_plan(_Reader(group), f, shape.absorbed)
    if shape.cautious:
        per_run = [k for k, v in f.items() if isinstance(v, Tensor)]
        if per_run:
            raise Unsupported(
                f"cautious=True with per-run tensor hyperparameters ({', '.join(per_run)}): the "
                "mask's scale n/(Σφ + 1) is per tensor, so runs sharing one would be coupled "
                "(the lab steps each cautious run alone)"
            )
        f["cautious"] = 1
    return Resolved(
        shape.family,
        f,
        plan.slots,
        plan.lazy,
        plan.lazy_fill,
        plan.extra,
        max_norm,
        plan.host,
        plan.per_tensor,
        plan.extra_fill,
        plan.scalars,
    )
