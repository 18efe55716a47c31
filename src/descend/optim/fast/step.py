"""One param group's step on the fast kernels: check the live tensors, create missing state, call.

The kernels trust what they are given, so every call checks every tensor they will touch —
each parameter, its gradient and each state tensor, as it is at this step — before anything
changes: a plain tensor (a subclass without storage of its own never reaches a pointer: a
DTensor is stepped through its local shard, see :func:`_local`, any other subclass falls back),
float32/float64, on the CPU, contiguous, as many elements as its parameter, and those elements
inside its storage (``storage_offset + numel`` elements within ``untyped_storage().nbytes()``).
Nothing is cached between steps: a ``p.data = p.data[:10]``, a ``resize_``, a storage freed by
FSDP, a replaced state tensor are all seen at the next step. The checks run column by column,
each one ``map`` of a C-level method over the group (about 50 ns a tensor), not a Python loop.
Gradients are read where autograd left them: nothing is gathered into a flat buffer. A group
that fails a check raises :class:`Unsupported` before anything changes, and takes the default
path.
"""

from __future__ import annotations

import ctypes
import sys
from array import array
from itertools import repeat
from operator import add, attrgetter, itemgetter, le, mul

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
_offset = Tensor.storage_offset
_storage = Tensor.untyped_storage
_capacity = torch.UntypedStorage.nbytes
_ptr = Tensor.data_ptr
_is_neg = Tensor.is_neg
_PLAIN = frozenset((Tensor, torch.nn.Parameter))
_TORCH_FUNCTION = (Tensor.__torch_function__.__func__, torch._C._disabled_torch_function_impl)


def _dtensor_type() -> type | None:
    """DTensor's class when ``torch.distributed.tensor`` is imported (no DTensor exists
    before), else None: the check costs no import."""
    module = sys.modules.get("torch.distributed.tensor")
    return None if module is None else module.DTensor


def _check_types(ts: list, what: str) -> None:
    """Every element a tensor whose memory is its own storage: ``torch.Tensor``,
    ``nn.Parameter`` or a Python subclass that keeps torch's dispatch (no
    ``__torch_dispatch__`` of its own, torch's ``__torch_function__``). Wrapper subclasses
    (FakeTensor, functional and other ``__torch_dispatch__`` tensors) hold no data at their
    address. ``_NotTensor`` for a non-tensor (absent state: the caller creates it)."""
    for cls in set(map(type, ts)) - _PLAIN:
        if not issubclass(cls, Tensor):
            raise _NotTensor(what)
        dispatch = cls.__torch_dispatch__ is torch._C._disabled_torch_dispatch_impl
        function = getattr(cls.__torch_function__, "__func__", cls.__torch_function__)
        if not (dispatch and function in _TORCH_FUNCTION):
            raise Unsupported(
                f"{what} of type {cls.__name__}: a tensor subclass with its own dispatch "
                "(the fast kernels take plain tensors; DTensor is stepped through its shards)"
            )


class _NotTensor(Exception):
    """A column holds something that is not a tensor (absent or None state)."""


def _addresses(ts: list, what: str, dtype, numel: list[int] | None) -> tuple[list, list]:
    """(addresses, numels) of ``ts`` after checking each is a plain contiguous CPU tensor of
    ``dtype`` with ``numel`` elements (None: any, e.g. the parameters themselves) that all lie
    inside its storage. Raises :class:`Unsupported` naming the failed check."""
    _check_types(ts, what)
    dtypes = set(map(_dtype, ts))
    if dtypes != {dtype}:
        raise Unsupported(f"{what} of dtypes {sorted(map(str, dtypes))} (needs {dtype})")
    if not all(map(_is_cpu, ts)):
        devices = sorted({str(t.device) for t in ts if not t.is_cpu})
        raise Unsupported(f"a {what} not on the CPU ({', '.join(devices)}; fast kernels: CPU)")
    try:
        if not all(map(_contiguous, ts)):
            raise Unsupported(f"a non-contiguous {what}")
        sizes = list(map(_numel, ts))
        if numel is not None and sizes != numel:
            raise Unsupported(f"a {what} whose size is not its parameter's")
        ends = map(mul, map(add, map(_offset, ts), sizes), repeat(dtype.itemsize))
        if not all(map(le, ends, map(_capacity, map(_storage, ts)))):
            raise Unsupported(f"a {what} reaching past the end of its storage")
        if any(map(_is_neg, ts)):
            raise Unsupported(f"a {what} with the negative bit set (a lazy -x view)")
        return list(map(_ptr, ts)), sizes
    except RuntimeError as exc:  # sparse, mkldnn, functional: no strided storage to point at
        raise Unsupported(f"a {what} without plain strided storage ({exc})") from None


def _local_group(params: list, grads: list) -> tuple[list, list, object]:
    """(parameters, gradients, mesh) the kernels may point at. Plain tensors are their own;
    a group of DTensors is stepped through its local shards (``to_local()``, which shares
    their storage, so the kernel writes through), which is exact for an element-wise update
    when every parameter and gradient has the same mesh and placements and none is
    ``Partial`` (a pending sum: its local values are not the gradient). ``mesh`` is None for
    plain tensors."""
    dtensor = _dtensor_type()
    if dtensor is None:
        return params, grads, None
    kinds = set(map(type, params)) | set(map(type, grads))
    if dtensor not in kinds:
        return params, grads, None
    if kinds != {dtensor}:
        raise Unsupported("a group mixing DTensor and other parameters or gradients")
    mesh, placements = params[0].device_mesh, params[0].placements
    for t in (*params, *grads):
        if t.device_mesh != mesh or t.placements != placements:
            raise Unsupported("DTensor parameters or gradients on different meshes/placements")
    if any(p.is_partial() for p in placements):
        raise Unsupported("a DTensor with a Partial placement (its shards are not its values)")
    with torch.no_grad():
        return [t.to_local() for t in params], [t.to_local() for t in grads], mesh


def _local_states(ts: list, what: str, mesh, scalar: bool) -> list:
    """A state column of a DTensor group as local tensors: each state tensor a DTensor on the
    parameters' mesh and placements (as ``zeros_like(p)`` makes it); a one-element counter
    (step, μ-product) may be a plain tensor or a replicated DTensor."""
    dtensor = _dtensor_type()
    out = []
    for t in ts:
        if type(t) is dtensor and t.device_mesh == mesh:
            if scalar and not all(p.is_replicate() for p in t.placements):
                raise Unsupported(f"{what} is a DTensor that is not replicated")
            with torch.no_grad():
                out.append(t.to_local())
        elif scalar or not isinstance(t, Tensor):
            out.append(t)
        else:
            raise Unsupported(f"{what} is not a DTensor on its parameter's mesh")
    return out


def check_parameters(params: list) -> None:
    """Raise :class:`Unsupported` for a parameter the kernels cannot take as it is now
    (``fused=True``'s check at construction; each step checks again)."""
    for p in params:
        (local,), _, _ = _local_group([p], [])
        if local.dtype not in _KIND:
            raise Unsupported(f"a parameter of dtype {local.dtype} (fast kernels: float32/float64)")
        _addresses([local], "parameter", local.dtype, None)


def _scalar_addresses(ts: list, what: str) -> tuple[int, list[int]]:
    """(0 float32 | 1 float64, addresses) of a one-element per-parameter counter (step,
    μ-product), which the kernel reads and updates in place."""
    _check_types(ts, what)
    dtypes = set(map(_dtype, ts))
    if len(dtypes) != 1 or not dtypes <= _KIND.keys():
        raise Unsupported(f"{what} has dtypes {dtypes} (fast kernels: one of fp32/64)")
    dtype = dtypes.pop()
    return _KIND[dtype], _addresses(ts, what, dtype, [1] * len(ts))[0]


def _state_columns(plan: Resolved, states: list[dict], dtype, numel: list[int], mesh) -> dict:
    """Every state column the kernel reads and writes, checked as it is now:
    ``{arg name: (kind or None, tensors, addresses)}``. ``_NotTensor`` or ``KeyError`` when a
    state is absent (a first step, a parameter that joined, torch's None buffer)."""
    out = {}
    names = ("s0", "s1", "s2", "step", "extra")
    for name, key in zip(names, (*plan.slots, "step", plan.extra), strict=True):
        if key is None:
            continue
        what, scalar = f"state {key!r}", name in ("step", "extra")
        ts = list(map(itemgetter(key), states))
        if mesh is not None:
            ts = _local_states(ts, what, mesh, scalar)
        if scalar:
            kind, ptrs = _scalar_addresses(ts, what)
        else:
            kind, ptrs = None, _addresses(ts, what, dtype, numel)[0]
        out[name] = (kind, ts, ptrs)
    return out


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


def _clip_factor(
    grads: list[Tensor], max_norm: float, dtype: torch.dtype, agreed: Tensor | None = None
) -> float:
    """``clip_by_global_norm``'s factor, computed by the same torch calls; ``agreed`` is the
    norm of the whole gradient when it is spread over ranks (reduced by the optimizer)."""
    if agreed is not None:
        total = agreed.to(torch.promote_types(dtype, torch.float32))
    else:
        norms = torch._foreach_norm(grads, 2.0)
        wide = [n.to(torch.promote_types(n.dtype, torch.float32)) for n in norms]
        total = torch.linalg.vector_norm(torch.stack(wide), 2.0)
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    value = coef.to(dtype).item()
    return 1.0 if value >= 1.0 else value  # a NaN norm gives NaN, as clip_grad_norm_


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
    the entry point ``descend_<family>``, with every buffer it points to kept alive. Good for
    one call: the checks it passed hold for the tensors as they were when it was made."""

    def __init__(self, family: str, args, keep_alive: list, params: list[Tensor]):
        self.family, self.args, self.keep_alive, self.params = family, args, keep_alive, params

    def done(self) -> None:
        """After the kernel ran: tell autograd the parameters changed in place."""
        torch.autograd.graph.increment_version(self.params)


def prepare(opt, index: int, links, plan: Resolved, params: list[Tensor]) -> Prepared:
    """Everything a step of ``params`` (all with gradients) needs but the kernel call itself:
    checks of every tensor as it is now, missing state (a group's first step), addresses,
    coefficients. Raises :class:`Unsupported` before touching anything when a tensor does
    not qualify."""
    numbers, rows, row_len = _split_rows(plan, params)
    local, grads, mesh = _local_group(params, list(map(_grad, params)))
    if mesh is not None:
        if rows:
            raise Unsupported("per-run hyperparameter tensors with DTensor parameters")
        agreed = opt.__dict__.get("_global_norms", {}).get(index)
        if plan.max_norm is not None and mesh.size() > 1 and agreed is None:
            raise Unsupported(
                f"global-norm clipping of DTensor parameters on a mesh of {mesh.size()} ranks "
                "needs a reduction across ranks"
            )
    dtypes = set(map(_dtype, local)) | set(map(_dtype, grads))
    if len(dtypes) != 1 or not dtypes <= _KIND.keys():
        raise Unsupported(f"parameters or gradients of dtypes {dtypes} (fast: float32 or float64)")
    dtype = next(iter(dtypes))
    param_ptr, numel = _addresses(local, "parameter", dtype, None)
    grad_ptr = array("q", _addresses(grads, "gradient", dtype, numel)[0])
    states = list(map(opt.state.__getitem__, params))
    fresh: list[int] = []
    try:
        columns = _state_columns(plan, states, dtype, numel, mesh)
    except (_NotTensor, KeyError):  # absent state (first step), or None (torch's buffer)
        fresh = _init_missing(links, plan, params, states)
        try:
            columns = _state_columns(plan, states, dtype, numel, mesh)
        except (Unsupported, _NotTensor, KeyError) as exc:
            for i in fresh:  # the default path must find them absent, to set v₁ = g itself
                del states[i][plan.lazy]
            if isinstance(exc, Unsupported):
                raise
            raise Unsupported(f"state {exc} is not a tensor") from None

    args = _lib.Args(**numbers)
    args.n, args.dtype = len(local), _KIND[dtype]
    keep_alive: list = [local, grads, grad_ptr]
    if rows:
        args.row_len = row_len
        if rows.keys() & {"mom_gain", "nest_scale"}:  # lr inside the velocity: row by row
            for name, column in rows.items():
                values = column.to(torch.float64).reshape(-1).contiguous()
                keep_alive.append(values)
                setattr(args, _ROW_ARG[name], values.data_ptr())
        else:  # vectorised: lr, keep and l2 per element
            shape = tuple(local[0].shape)
            for name, arg in (("lr", "el_lr"), ("keep", "el_keep"), ("l2_coef", "el_l2")):
                value = plan.fields.get(name, 0.0)
                values = _per_element(opt, name, value, shape, dtype)
                keep_alive.append(values)
                setattr(args, arg, values.data_ptr())
    if plan.max_norm is not None:
        agreed = opt.__dict__.get("_global_norms", {}).get(index)  # across ranks
        args.gscale *= _clip_factor(grads, plan.max_norm, dtype, agreed)
    arrays = {"numel": array("q", numel), "param": array("q", param_ptr)}
    for name, (kind, tensors, ptrs) in columns.items():
        arrays[name] = array("q", ptrs)
        keep_alive.append(tensors)
        if name == "step":
            args.step_f64 = kind
        elif name == "extra":
            args.extra_f64 = kind
    keep_alive.append(arrays)
    args.grad = grad_ptr.buffer_info()[0]
    for name, buf in arrays.items():
        setattr(args, name, buf.buffer_info()[0])
    if fresh:
        flags = (ctypes.c_uint8 * len(local))()
        for i in fresh:
            flags[i] = 1
        keep_alive.append(flags)
        args.fresh = ctypes.addressof(flags)
    targets = local if mesh is None else [*local, *params]
    return Prepared(plan.family, args, keep_alive, targets)


def run(lib: ctypes.CDLL, opt, index: int, links, plan: Resolved, params: list[Tensor]) -> None:
    """Step ``params`` (all with gradients) with the settings in ``plan``; raises
    :class:`Unsupported` before touching anything when a tensor does not qualify."""
    prepared = prepare(opt, index, links, plan, params)
    getattr(lib, f"descend_{plan.family}")(ctypes.byref(prepared.args))
    prepared.done()  # in-place writes autograd should know of


def all_finite(lib: ctypes.CDLL, grads: list[Tensor]) -> bool:
    """Whether every element of every gradient is finite: one parallel read pass, no
    temporaries (``torch.isfinite(g).all()`` allocates a bool tensor per gradient).
    Raises :class:`Unsupported` for gradients the kernel cannot read, and for DTensor
    gradients on a mesh of several ranks (the answer needs every rank's shards)."""
    grads, _, mesh = _local_group(grads, [])
    if mesh is not None and mesh.size() > 1:
        raise Unsupported(f"DTensor gradients on a mesh of {mesh.size()} ranks")
    by_dtype: dict = {}
    for g in grads:
        by_dtype.setdefault(g.dtype, []).append(g)
    if not by_dtype.keys() <= _KIND.keys():
        raise Unsupported(f"gradients of dtypes {set(by_dtype)}")
    for dtype, gs in by_dtype.items():
        ptrs, numel = _addresses(gs, "gradient", dtype, None)
        numel, ptrs = array("q", numel), array("q", ptrs)
        args = _lib.Args(n=len(gs), dtype=_KIND[dtype])
        args.numel, args.grad = numel.buffer_info()[0], ptrs.buffer_info()[0]
        if not lib.descend_all_finite(ctypes.byref(args)):
            return False
    return True
