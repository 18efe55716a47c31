"""One param group's step on the fast kernels: check the tensors, create missing state, call.

This runs at every step for every parameter, so it is written column by column: each check
or address is one ``map`` of a C-level method over the whole group (about 50 ns a tensor),
not a Python loop, and what does not change between steps (state tensors, addresses) is kept
in a :class:`Layout` that is only re-checked by identity. Gradients are read where autograd
left them: nothing is gathered into a flat buffer, so there is no copy to time. Every check
guards memory safety (the kernels trust sizes and layouts) or exact agreement with the
default path; a group that fails one raises :class:`Unsupported` before anything changes.
"""

from __future__ import annotations

import ctypes
from array import array
from operator import attrgetter, is_, itemgetter

import torch
from torch import Tensor
from torch.optim.optimizer import _get_scalar_dtype

from descend.native import build as _lib
from descend.native.abi import DTYPES as _KIND

from .plan import Resolved, Unsupported

_ROW_ARG = {
    "lr": "row_lr",
    "keep": "row_keep",
    "l2_coef": "row_l2",
    "mom_gain": "row_gain",
    "nest_scale": "row_nest",
}
_grad = attrgetter("grad")
_dtype = attrgetter("dtype")
_is_cpu = attrgetter("is_cpu")
_contiguous = Tensor.is_contiguous
_numel = Tensor.numel
_ptr = Tensor.data_ptr


def _clip_factor(grads: list[Tensor], max_norm: float, dtype: torch.dtype) -> float:
    """``clip_by_global_norm``'s factor, computed by the same torch calls."""
    norms = torch._foreach_norm(grads, 2.0)
    wide = [n.to(torch.promote_types(n.dtype, torch.float32)) for n in norms]
    total = torch.linalg.vector_norm(torch.stack(wide), 2.0)
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    value = coef.to(dtype).item()
    return value if value < 1.0 else 1.0


def _init_missing(links, plan: Resolved, params: list[Tensor], states: list[dict]) -> list:
    """Create absent state as the chain would (only on a group's first step, or after a
    parameter joined); returns the indices of modern-momentum buffers created here, which
    the kernel sets to the first input (torch's v₁ = g)."""
    keys = tuple(k for k in plan.slots if k is not None and k != plan.lazy)
    if plan.extra is not None:
        keys += (plan.extra,)
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
    parameter's dtype, size and (contiguous) layout. KeyError/AttributeError: absent."""
    ts = list(map(itemgetter(key), states))
    if (
        set(map(_dtype, ts)) != {dtype}
        or list(map(_numel, ts)) != numel
        or not all(map(_contiguous, ts))
    ):
        raise Unsupported(f"state {key!r} does not match its parameters' dtype or layout")
    return list(map(_ptr, ts))


def _scalar_column(states: list[dict], key: str) -> tuple[int, list[int]]:
    """(0 float32 | 1 float64, addresses) of a one-element per-parameter counter (step,
    μ-product), which the kernel reads and updates in place."""
    ts = list(map(itemgetter(key), states))
    dtypes = set(map(_dtype, ts))
    if len(dtypes) != 1 or not dtypes <= _KIND.keys():
        raise Unsupported(f"state {key!r} has dtypes {dtypes} (fast kernels: one of fp32/64)")
    if set(map(_numel, ts)) != {1} or not all(map(_is_cpu, ts)):
        raise Unsupported(f"state {key!r} is not a one-element CPU tensor everywhere")
    return _KIND[dtypes.pop()], list(map(_ptr, ts))


def _columns(plan: Resolved, states: list[dict], dtype, numel: list[int]) -> tuple:
    slots = [
        _state_column(states, key, dtype, numel) if key is not None else None for key in plan.slots
    ]
    step = _scalar_column(states, "step")
    extra = _scalar_column(states, plan.extra) if plan.extra is not None else (0, None)
    return slots, step, extra


class Layout:
    """A group's parameters, state tensors and their addresses, checked once.

    Each later step re-checks it cheaply, by identity and address (the parameters, their
    state dicts, every state tensor, every ``data_ptr``), and builds it again when anything
    moved: a ``load_state_dict``, a state tensor replaced, ``p.data`` reassigned, a parameter
    joining or leaving the group. Only the gradients are new at every step.
    """

    def __init__(self, opt, links, plan: Resolved, params: list[Tensor], dtype):
        if not all(map(_is_cpu, params)):
            raise Unsupported("a parameter not on the CPU (fast kernels: CPU)")
        if not all(map(_contiguous, params)):
            raise Unsupported("a non-contiguous parameter")
        self.keys = (plan.slots, plan.extra)
        self.dtype, self.n = dtype, len(params)
        self.state_obj = opt.state
        self.params = list(params)
        self.states = states = list(map(opt.state.__getitem__, params))
        numel = list(map(_numel, params))
        self.fresh: list[int] = []
        try:
            slots, step, extra = _columns(plan, states, dtype, numel)
        except (KeyError, AttributeError):  # absent state (first step), or None (torch's buffer)
            self.fresh = _init_missing(links, plan, params, states)
            try:
                slots, step, extra = _columns(plan, states, dtype, numel)
            except (Unsupported, KeyError, AttributeError) as exc:
                self.discard(plan)
                if isinstance(exc, Unsupported):
                    raise
                raise Unsupported(f"state {exc} is not a tensor") from None
        self.step_kind, self.extra_kind = step[0], extra[0]
        self.param_ptr = list(map(_ptr, params))
        # (state key, tensors, addresses) of every column the kernel writes
        self.columns = [
            (key, list(map(itemgetter(key), states)), ptrs)
            for key, ptrs in zip(
                (*plan.slots, "step", plan.extra), (*slots, step[1], extra[1]), strict=True
            )
            if key is not None
        ]
        self.arrays = {"numel": array("q", numel), "param": array("q", self.param_ptr)}
        for name, (key, ptrs) in zip(
            ("s0", "s1", "s2", "step", "extra"),
            zip((*plan.slots, "step", plan.extra), (*slots, step[1], extra[1]), strict=True),
            strict=True,
        ):
            if key is not None:
                self.arrays[name] = array("q", ptrs)

    def discard(self, plan: Resolved) -> None:
        """Undo the buffers created for the first step: the default path must find them
        absent, to set v₁ = g itself."""
        for i in self.fresh:
            del self.states[i][plan.lazy]
        self.fresh = []

    def current(self, opt, plan: Resolved, params: list[Tensor]) -> bool:
        """Whether nothing moved since the layout was built (see the class docstring)."""
        if self.keys != (plan.slots, plan.extra) or opt.state is not self.state_obj:
            return False
        if len(params) != self.n or not all(map(is_, params, self.params)):
            return False
        if list(map(_ptr, params)) != self.param_ptr or not all(map(_contiguous, params)):
            return False
        states = list(map(opt.state.__getitem__, params))
        if not all(map(is_, states, self.states)):
            return False
        try:
            for key, tensors, ptrs in self.columns:
                now = list(map(itemgetter(key), states))
                if not all(map(is_, now, tensors)) or list(map(_ptr, now)) != ptrs:
                    return False
        except KeyError:
            return False
        return True


def _split_rows(plan: Resolved, params: list[Tensor]) -> tuple[dict, dict, int]:
    """``plan.fields`` as (numbers, per-row (N, 1) tensors, row length d). A one-element
    tensor is a number (its value, exactly); an (N, 1) tensor gives one value per row of the
    group's only parameter, of shape (N, d), as the default path broadcasts it."""
    numbers, rows, row_len = {}, {}, 0
    for name, value in plan.fields.items():
        if not isinstance(value, Tensor):
            numbers[name] = value
        elif value.numel() == 1 and value.is_cpu:
            numbers[name] = value.item()
        else:
            p = params[0]
            if not (
                len(params) == 1
                and p.dim() == 2
                and tuple(value.shape) == (p.shape[0], 1)
                and value.is_cpu
                and value.dtype in _KIND
            ):
                raise Unsupported(
                    f"{name} is a tensor of shape {tuple(value.shape)}: per-run values need "
                    "one (N, d) CPU parameter in the group and an (N, 1) tensor"
                )
            rows[name] = value
            row_len = p.shape[1]
    return numbers, rows, row_len


def _per_element(opt, name: str, value, shape: tuple, dtype) -> Tensor:
    """``value`` (a number or an (N, 1) column) repeated along each row of an (N, d)
    parameter, in its dtype; kept between steps while the value is the same object."""
    cache = opt.__dict__.setdefault("_fast_elements", {})
    tensor = isinstance(value, Tensor)
    key = (shape, dtype, value._version if tensor else float(value))
    hit = cache.get(name)
    if hit is not None and hit[0] == key and (not tensor or hit[2] is value):
        return hit[1]
    if tensor:
        values = value.to(dtype).expand(shape).contiguous()
    else:
        values = torch.full(shape, float(value), dtype=dtype)
    cache[name] = (key, values, value if tensor else None)
    return values


class Prepared:
    """One group's kernel call, ready: ``args`` (a :class:`~descend.native.build.Args`) for
    the entry point ``descend_<family>``, with every buffer it points to kept alive."""

    def __init__(self, family: str, args, keep_alive: list, params: list[Tensor]):
        self.family, self.args, self.keep_alive, self.params = family, args, keep_alive, params

    def done(self) -> None:
        """After the kernel ran: tell autograd the parameters changed in place."""
        torch.autograd.graph.increment_version(self.params)


def prepare(opt, index: int, links, plan: Resolved, params: list[Tensor]) -> Prepared:
    """Everything a step of ``params`` (all with gradients) needs but the kernel call itself:
    checks, missing state (a group's first step), addresses, coefficients. Raises
    :class:`Unsupported` before touching anything when a tensor does not qualify."""
    numbers, rows, row_len = _split_rows(plan, params)
    grads = list(map(_grad, params))
    dtypes = set(map(_dtype, params)) | set(map(_dtype, grads))
    if len(dtypes) != 1 or not dtypes <= _KIND.keys():
        raise Unsupported(f"parameters or gradients of dtypes {dtypes} (fast: float32 or float64)")
    dtype = dtypes.pop()
    if not all(map(_contiguous, grads)):
        raise Unsupported("a non-contiguous gradient")
    layouts = opt.__dict__.setdefault("_fast_layouts", {})
    lay = layouts.get(index)
    if lay is None or not lay.current(opt, plan, params):
        layouts.pop(index, None)
        lay = layouts[index] = Layout(opt, links, plan, params, dtype)

    args = _lib.Args(**numbers)
    args.n, args.dtype = lay.n, _KIND[dtype]
    keep_alive: list = [grads]
    if rows:
        args.row_len = row_len
        if rows.keys() & {"mom_gain", "nest_scale"}:  # lr inside the velocity: row by row
            for name, column in rows.items():
                values = column.to(torch.float64).reshape(-1).contiguous()
                keep_alive.append(values)
                setattr(args, _ROW_ARG[name], values.data_ptr())
        else:  # vectorised: lr, keep and l2 per element
            shape = tuple(params[0].shape)
            for name, arg in (("lr", "el_lr"), ("keep", "el_keep"), ("l2_coef", "el_l2")):
                value = plan.fields.get(name, 1.0 if name == "keep" else 0.0)  # no decay: θ·1
                values = _per_element(opt, name, value, shape, dtype)
                keep_alive.append(values)
                setattr(args, arg, values.data_ptr())
    args.step_f64, args.extra_f64 = lay.step_kind, lay.extra_kind
    if plan.max_norm is not None:
        args.gscale *= _clip_factor(grads, plan.max_norm, dtype)
    grad_ptr = array("q", map(_ptr, grads))
    keep_alive.append(grad_ptr)
    args.grad = grad_ptr.buffer_info()[0]
    for name, buf in lay.arrays.items():
        setattr(args, name, buf.buffer_info()[0])
    flags = None
    if lay.fresh:
        flags = (ctypes.c_uint8 * lay.n)()
        for i in lay.fresh:
            flags[i] = 1
        keep_alive.append(flags)
        args.fresh = ctypes.addressof(flags)
        lay.fresh = []
    keep_alive.append(lay)
    return Prepared(plan.family, args, keep_alive, params)


def run(lib: ctypes.CDLL, opt, index: int, links, plan: Resolved, params: list[Tensor]) -> None:
    """Step ``params`` (all with gradients) with the settings in ``plan``; raises
    :class:`Unsupported` before touching anything when a tensor does not qualify."""
    prepared = prepare(opt, index, links, plan, params)
    getattr(lib, f"descend_{plan.family}")(ctypes.byref(prepared.args))
    prepared.done()  # in-place writes autograd should know of


def all_finite(lib: ctypes.CDLL, grads: list[Tensor]) -> bool:
    """Whether every element of every gradient is finite: one parallel read pass, no
    temporaries (``torch.isfinite(g).all()`` allocates a bool tensor per gradient).
    Raises :class:`Unsupported` for gradients the kernel cannot read."""
    by_dtype: dict = {}
    for g in grads:
        by_dtype.setdefault(g.dtype, []).append(g)
    if not by_dtype.keys() <= _KIND.keys():
        raise Unsupported(f"gradients of dtypes {set(by_dtype)}")
    if not (all(map(_is_cpu, grads)) and all(map(_contiguous, grads))):
        raise Unsupported("a gradient not on the CPU or not contiguous")
    for dtype, gs in by_dtype.items():
        numel = array("q", map(_numel, gs))
        ptrs = array("q", map(_ptr, gs))
        args = _lib.Args(n=len(gs), dtype=_KIND[dtype])
        args.numel, args.grad = numel.buffer_info()[0], ptrs.buffer_info()[0]
        if not lib.descend_all_finite(ctypes.byref(args)):
            return False
    return True
