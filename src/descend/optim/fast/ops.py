"""The fast kernels as torch custom ops, so ``torch.compile`` sees one opaque op per group.

Eagerly, descend calls its kernels through :mod:`ctypes` (:func:`descend.optim.fast.step.run`):
the cheapest call there is. Under ``torch.compile`` that code cannot be traced (ctypes
structures, ``array.array``), so a compiled step calls one op per param group instead,
``torch.ops.descend.<family>``, whose schema names exactly what the kernel writes::

    descend::sgd(int plan, Tensor(a!)[] params, Tensor[] grads,
                 Tensor(b!)[] momentum_buffer, Tensor(c!)[] step, Tensor[] hyper,
                 int[] fresh) -> ()
    descend::adagrad(… Tensor(b!)[] sum, Tensor(c!)[] step …)
    descend::rmsprop(… Tensor(b!)[] square_avg, Tensor(c!)[] grad_avg,
                     Tensor(d!)[] momentum_buffer, Tensor(e!)[] step …)
    descend::adam(… Tensor(b!)[] exp_avg, Tensor(c!)[] exp_avg_sq,
                  Tensor(d!)[] max_exp_avg_sq, Tensor(e!)[] step …)
    descend::nadam(… Tensor(b!)[] exp_avg, Tensor(c!)[] exp_avg_sq, Tensor(d!)[] step,
                   Tensor(e!)[] mu_product …)
    descend::lion(… Tensor(b!)[] exp_avg, Tensor(c!)[] step …)
    descend::ademamix(… Tensor(b!)[] exp_avg_fast, Tensor(c!)[] exp_avg_slow,
                      Tensor(d!)[] exp_avg_sq, Tensor(e!)[] step …)
    descend::schedule_free(… Tensor(b!)[] square_avg, Tensor(c!)[] z, Tensor(d!)[] x,
                           Tensor(e!)[] step …)  (not called: Schedule-Free's bookkeeping
                           is Python numbers, so a compiled Schedule-Free step runs the chain)
    descend::radam(… Tensor(b!)[] exp_avg, Tensor(c!)[] exp_avg_sq, Tensor(d!)[] step …)
    descend::adamax(… Tensor(b!)[] exp_avg, Tensor(c!)[] exp_inf, Tensor(d!)[] step …)
    descend::adopt(… Tensor(b!)[] exp_avg, Tensor(c!)[] exp_avg_sq, Tensor(d!)[] step …)
    descend::adadelta(… Tensor(b!)[] square_avg, Tensor(c!)[] acc_delta, Tensor(d!)[] step …)
    descend::rprop(… Tensor(b!)[] prev, Tensor(c!)[] step_size, Tensor(d!)[] step …)
    descend::asgd(… Tensor(b!)[] ax, Tensor(c!)[] step, Tensor(d!)[] eta, Tensor(e!)[] mu …)

(an unused slot, e.g. AMSGrad's maximum without ``amsgrad``, is an empty list). ``plan`` is a
token for the group's recognised chain and its non-tensor hyperparameters, registered when
the step was traced (:func:`register`; dynamo guards those values, so a changed one traces
again and registers anew); ``hyper`` holds the group's one-element tensor hyperparameters
(a tensor ``lr`` changed by a scheduler), read at each call; ``fresh`` the parameters whose
modern-momentum buffer was made for this step (the kernel sets it to its first input,
torch's v₁ = g). The CPU implementation resolves the step's numbers from both exactly as an
eager step does and runs the same checks of every tensor as it is at this call before a
pointer reaches the kernel; a tensor that fails them raises ``RuntimeError`` (a compiled
graph cannot switch to the chain mid-call). The fake implementation writes nothing and
returns nothing: shapes and dtypes do not change.
"""

from __future__ import annotations

import ctypes
import itertools
from dataclasses import dataclass

import torch
from torch import Tensor

from descend.native import build as _lib

from .plan import Shape, Unsupported
from .step import _split_rows, assemble

# Each family's state columns, as the kernel's slots s0, s1, s2 (None: unused) and the
# per-parameter counters (step, then NAdam's μ-product).
SLOTS = {
    "sgd": ("momentum_buffer", None, None),
    "adagrad": ("sum", None, None),
    "rmsprop": ("square_avg", "grad_avg", "momentum_buffer"),
    "adam": ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
    "nadam": ("exp_avg", "exp_avg_sq", None),
    "lion": ("exp_avg", None, None),
    # AdEMAMix, Schedule-Free (issue #14); Schedule-Free SGD has no square_avg (s0 unused)
    "ademamix": ("exp_avg_fast", "exp_avg_slow", "exp_avg_sq"),
    "schedule_free": ("square_avg", "z", "x"),
    # RAdam, Adamax, ADOPT (issue #14)
    "radam": ("exp_avg", "exp_avg_sq", None),
    "adamax": ("exp_avg", "exp_inf", None),
    "adopt": ("exp_avg", "exp_avg_sq", None),
    # Adadelta, Rprop, ASGD (issue #14)
    "adadelta": ("square_avg", "acc_delta", None),
    "rprop": ("prev", "step_size", None),
    "asgd": ("ax", None, None),
}
EXTRA = {"nadam": "mu_product"}
EXTRA["asgd"] = "eta"  # Adadelta, Rprop, ASGD
# further per-parameter 0-d state after the extra one (KernelPlan.scalars), in the op's order
SCALARS = {"asgd": ("mu",)}


def _schema(family: str) -> tuple[str, tuple[str, ...]]:
    columns = [name for name in SLOTS[family] if name is not None] + ["step"]
    if family in EXTRA:
        columns.append(EXTRA[family])
    columns += SCALARS.get(family, ())
    letters = iter("bcdefg")
    mutated = ", ".join(f"Tensor({next(letters)}!)[] {name}" for name in columns)
    schema = (
        f"(int plan, Tensor(a!)[] params, Tensor[] grads, {mutated}, Tensor[] hyper, "
        "int[] fresh) -> ()"
    )
    return schema, ("params", *columns)


@dataclass(frozen=True)
class Entry:
    """What a traced step fixed for one group: the chain's shape, the group's non-tensor
    hyperparameters and the keys of its tensor ones (passed to each call as ``hyper``)."""

    shape: Shape
    group: dict
    tensor_keys: tuple[str, ...]


_ENTRIES: dict[int, Entry] = {}
_tokens = itertools.count(1)


def register(shape: Shape, group: dict) -> tuple[int, tuple]:
    """A token for ``shape`` with ``group``'s hyperparameters (at trace time), and the keys
    of the one-element tensor hyperparameters each call passes in ``hyper``."""
    values = {k: v for k, v in group.items() if k != "params"}
    tensor_keys = tuple(k for k, v in values.items() if isinstance(v, Tensor))
    for key in tensor_keys:
        del values[key]
    token = next(_tokens)
    _ENTRIES[token] = Entry(shape, values, tensor_keys)
    return token, tensor_keys


def _run(
    family: str, plan: int, params: list, grads: list, columns: list, hyper: list, fresh: list
) -> None:
    entry = _ENTRIES.get(plan)
    if entry is None:
        raise RuntimeError(f"descend::{family}: unknown plan {plan} (traced in another process?)")
    lib = _lib.load()
    if lib is None:
        raise RuntimeError(f"descend::{family}: the fast kernels are unavailable")
    group = dict(entry.group)
    group.update(zip(entry.tensor_keys, hyper, strict=True))
    try:
        resolved = entry.shape.resolve(group)
        numbers, rows, _ = _split_rows(resolved, params)
        if rows:
            raise Unsupported("per-run hyperparameter tensors under torch.compile")
        if resolved.host:
            raise Unsupported("state numbers (Schedule-Free) under torch.compile")
        # the op's columns, in its schema's order, under the state keys the plan reads
        keys = [resolved.slots[i] for i, name in enumerate(SLOTS[family]) if name is not None]
        keys += ["step", resolved.extra] if family in EXTRA else ["step"]
        keys += [key for _, key in resolved.scalars]
        states: list[dict] = [{} for _ in params]
        for key, column in zip(keys, columns, strict=True):
            if key is not None:
                if len(column) != len(params):
                    raise Unsupported(f"state {key!r}: {len(column)} tensors, not {len(params)}")
                for st, t in zip(states, column):
                    st[key] = t
        if fresh and (resolved.lazy is None or not all(0 <= i < len(params) for i in fresh)):
            raise Unsupported(f"fresh buffers {list(fresh)} without a lazy momentum buffer")
        args, keep_alive = assemble(resolved, numbers, params, grads, states, fresh=fresh)
    except Unsupported as exc:
        raise RuntimeError(f"descend::{family}: {exc}") from None
    getattr(lib, f"descend_{family}")(ctypes.byref(args))
    del keep_alive  # the buffers the kernel read, alive until it returned


def _define(family: str):
    schema, mutated = _schema(family)

    def impl(plan: int, params: list, grads: list, *rest) -> None:
        *columns, hyper, fresh = rest
        _run(family, plan, params, grads, columns, hyper, fresh)

    op = torch.library.custom_op(
        f"descend::{family}", impl, mutates_args=mutated, device_types="cpu", schema=schema
    )

    @op.register_fake
    def _(plan, params, grads, *rest) -> None:
        return None

    return op


OPS = {family: _define(family) for family in SLOTS}


def call(family: str, plan: int, params, grads, columns, hyper, fresh=()) -> None:
    """``torch.ops.descend.<family>(plan, params, grads, *columns, hyper, fresh)``."""
    getattr(torch.ops.descend, family)(plan, params, grads, *columns, hyper, list(fresh))
