"""One param group's step on the fast kernels: check the tensors, create missing state, call.

This runs at every step for every parameter, so it is written column by column: each check
or address is one ``map`` of a C-level method over the whole group (about 50 ns a tensor),
not a Python loop. Gradients are read where autograd left them: nothing is gathered into a
flat buffer, so there is no copy to time. Every check here guards memory safety (the kernels
trust sizes and layouts) or exact agreement with the default path; a group that fails one
raises :class:`Unsupported` before anything is modified.
"""

from __future__ import annotations

import ctypes
from array import array
from itertools import repeat
from operator import attrgetter, is_, itemgetter

import torch
from torch import Tensor
from torch.optim.optimizer import _get_scalar_dtype

from . import _lib
from .plan import Resolved, Unsupported

_KIND = {torch.float32: 0, torch.float64: 1}
_grad = attrgetter("grad")
_dtype = attrgetter("dtype")
_is_cpu = attrgetter("is_cpu")
_contiguous = Tensor.is_contiguous
_numel = Tensor.numel
_ptr = Tensor.data_ptr
_dim = Tensor.dim


def _address(values) -> tuple[array, int]:
    buf = array("q", values)
    return buf, buf.buffer_info()[0]


def _clip_factor(grads: list[Tensor], max_norm: float, dtype: torch.dtype) -> float:
    """``clip_by_global_norm``'s factor, computed by the same torch calls."""
    norms = torch._foreach_norm(grads, 2.0)
    wide = [n.to(torch.promote_types(n.dtype, torch.float32)) for n in norms]
    total = torch.linalg.vector_norm(torch.stack(wide), 2.0)
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    value = coef.to(dtype).item()
    return value if value < 1.0 else 1.0


def _init_missing(opt, links, plan: Resolved, params: list[Tensor], states: list[dict]) -> list:
    """Create absent state as the chain would; returns the indices of modern-momentum buffers
    created here (the kernel sets them to the first input, torch's v₁ = g)."""
    keys = ("step",) + tuple(k for k in plan.slots if k is not None and k != plan.lazy)
    if plan.extra is not None:
        keys += (plan.extra,)
    present = all(all(map(dict.__contains__, states, repeat(k))) for k in keys)
    if present and plan.lazy is not None:
        present = not any(map(is_, map(dict.get, states, repeat(plan.lazy)), repeat(None)))
    if present:
        return []  # every step after the first
    scalar = _get_scalar_dtype()
    fresh = []
    for i, (p, st) in enumerate(zip(params, states)):
        if "step" not in st:
            st["step"] = torch.tensor(0.0, dtype=scalar)
        if any(k not in st for k in keys):
            links.init(p, st)
        if plan.lazy is not None and st.get(plan.lazy) is None:
            if plan.lazy_fill is None:
                st[plan.lazy] = torch.zeros_like(p, memory_format=torch.preserve_format)
                fresh.append(i)
            else:
                fill = plan.lazy_fill
                st[plan.lazy] = torch.full_like(p, fill, memory_format=torch.preserve_format)
    return fresh


def _state_column(states: list[dict], key: str, dtype, numel: list[int]) -> list[int]:
    """Addresses of ``state[key]`` for every parameter, after checking each matches its
    parameter's dtype, size and (contiguous) layout."""
    ts = list(map(itemgetter(key), states))
    if (
        set(map(_dtype, ts)) != {dtype}
        or list(map(_numel, ts)) != numel
        or not all(map(_contiguous, ts))
    ):
        raise Unsupported(f"state {key!r} does not match its parameters' dtype or layout")
    return list(map(_ptr, ts))


def _scalar_column(states: list[dict], key: str) -> tuple[int, list[int]]:
    """(0 float32 | 1 float64, addresses) of a 0-d per-parameter counter (step, μ-product)."""
    ts = list(map(itemgetter(key), states))
    if set(map(type, ts)) != {Tensor}:
        raise Unsupported(f"state {key!r} is not a tensor everywhere")
    dtypes = set(map(_dtype, ts))
    if len(dtypes) != 1 or not dtypes <= _KIND.keys():
        raise Unsupported(f"state {key!r} has dtypes {dtypes} (fast kernels: one of fp32/64)")
    if any(map(_dim, ts)) or not all(map(_is_cpu, ts)):
        raise Unsupported(f"state {key!r} is not a 0-d CPU tensor everywhere")
    return _KIND[dtypes.pop()], list(map(_ptr, ts))


def run(lib: ctypes.CDLL, opt, links, plan: Resolved, params: list[Tensor]) -> None:
    """Step ``params`` (all with gradients) with the settings in ``plan``; raises
    :class:`Unsupported` before touching anything when a tensor does not qualify."""
    grads = list(map(_grad, params))
    dtypes = set(map(_dtype, params)) | set(map(_dtype, grads))
    if len(dtypes) != 1 or not dtypes <= _KIND.keys():
        raise Unsupported(f"parameters or gradients of dtypes {dtypes} (fast: float32 or float64)")
    dtype = dtypes.pop()
    if not all(map(_is_cpu, params)):
        raise Unsupported("a parameter not on the CPU (fast kernels: CPU)")
    if not (all(map(_contiguous, params)) and all(map(_contiguous, grads))):
        raise Unsupported("a non-contiguous parameter or gradient")
    states = list(map(opt.state.__getitem__, params))
    fresh = _init_missing(opt, links, plan, params, states)
    try:
        numel = list(map(_numel, params))
        slots = [
            _state_column(states, key, dtype, numel) if key is not None else None
            for key in plan.slots
        ]
        step_kind, step_ptr = _scalar_column(states, "step")
        extra_kind, extra_ptr = (0, None)
        if plan.extra is not None:
            extra_kind, extra_ptr = _scalar_column(states, plan.extra)
    except Unsupported:
        for i in fresh:  # the default path must find these buffers absent (v₁ = g)
            del states[i][plan.lazy]
        raise

    args = _lib.Args(**plan.fields)
    args.n, args.dtype = len(params), _KIND[dtype]
    args.step_f64, args.extra_f64 = step_kind, extra_kind
    if plan.max_norm is not None:
        args.gscale *= _clip_factor(grads, plan.max_norm, dtype)
    keep = []  # the arrays must outlive the call
    columns = (
        ("numel", numel),
        ("param", map(_ptr, params)),
        ("grad", map(_ptr, grads)),
        ("s0", slots[0]),
        ("s1", slots[1]),
        ("s2", slots[2]),
        ("step", step_ptr),
        ("extra", extra_ptr),
    )
    for name, values in columns:
        if values is not None:
            buf, addr = _address(values)
            keep.append(buf)
            setattr(args, name, addr)
    if fresh:
        flags = bytearray(len(params))
        for i in fresh:
            flags[i] = 1
        cflags = (ctypes.c_uint8 * len(params)).from_buffer(flags)
        keep.append(cflags)
        args.fresh = ctypes.addressof(cflags)
    getattr(lib, f"descend_{plan.family}")(ctypes.byref(args))
    torch.autograd.graph.increment_version(params)  # in-place writes autograd should know of
