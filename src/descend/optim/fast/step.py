"""One param group's step on the fast kernels: check the live tensors, create missing state, call.

The kernels trust what they are given, so every call checks every tensor they will touch —
each parameter, its gradient and each state tensor, as it is at this step — before anything
changes: a plain tensor (a subclass with its own dispatch never reaches a pointer: a DTensor
group is stepped through its local shards, see :func:`_local_group`, any other falls back),
float32/float64, strided, on the CPU, contiguous, as many elements as its parameter, and those
elements inside its storage (``(storage_offset + numel) · itemsize ≤ untyped_storage().nbytes()``).
Nothing is remembered between steps: a ``p.data = p.data[:10]``, a ``resize_``, a storage freed
by FSDP, a replaced state tensor are all seen at the next call. The checks of a column of
tensors are one C++ call (``descend/native/check.cpp``, reading each tensor through torch's C
shim), fed the tensors' ``TensorImpl`` addresses: about 0.1 µs a tensor, where a dozen Python
attribute reads would cost about 1 µs. Gradients are read where autograd left them: nothing is
gathered into a flat buffer. A group that fails a check raises :class:`Unsupported` before
anything changes, and takes the default path.
"""

from __future__ import annotations

import ctypes
import sys
from array import array
from operator import attrgetter, itemgetter

import torch
from torch import Tensor
from torch.optim.optimizer import _get_scalar_dtype

from descend.native import build as _lib
from descend.native.abi import CHECK_REASONS
from descend.native.abi import DTYPES as _KIND
from descend.native.abi import CheckArgs as _CheckArgs

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
_cdata = attrgetter("_cdata")  # the TensorImpl* check.cpp reads
_ZERO, _ONE = (0,), (1,)
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


def _addresses(ts: list, what: str, dtype, numel: array | None) -> tuple[array, array]:
    """(addresses, sizes) of ``ts`` after checking each is a plain, contiguous, strided CPU
    tensor of ``dtype`` with ``numel`` elements (None: any, e.g. the parameters themselves)
    that all lie inside its storage — read in C++ through torch's C shim (``check.cpp``), one
    call for the column. Raises :class:`Unsupported` naming the failed check."""
    _check_types(ts, what)
    lib = _lib.load()
    if lib is None:
        raise Unsupported(f"the fast kernels are unavailable: {_lib.status()['error']}")
    n = len(ts)
    impl = array("q", map(_cdata, ts))
    sizes, ptrs = array("q", _ZERO) * n, array("q", _ZERO) * n
    args = _CheckArgs(n, impl.buffer_info()[0], None, sizes.buffer_info()[0])
    args.out_ptr, args.dtype = ptrs.buffer_info()[0], _KIND.get(dtype, -1)
    if numel is not None:
        args.numel = numel.buffer_info()[0]
    if args.dtype < 0 or lib.descend_check(ctypes.byref(args)):
        raise Unsupported(_reason(ts, what, dtype, args))
    return ptrs, sizes


def _reason(ts: list, what: str, dtype, args) -> str:
    """The words for ``descend_check``'s verdict on tensor ``args.bad``."""
    if args.dtype < 0:
        return f"{what} of dtype {dtype} (fast kernels: float32/float64)"
    t = ts[args.bad]
    if args.reason == 3:
        return f"{what} of dtype {t.dtype} where {dtype} is needed"
    if args.reason == 4:
        devices = sorted({str(t.device) for t in ts if not t.is_cpu})
        return f"a {what} not on the CPU ({', '.join(devices)}; fast kernels: CPU)"
    return f"a {what} (#{args.bad}) {CHECK_REASONS.get(args.reason, args.reason)}"


def _local_group(params: list, grads: list) -> tuple[list, list, list | None, int]:
    """(parameters, gradients, layouts, ranks) the kernels may point at. Plain tensors are
    their own (layouts None, ranks 1). A group of DTensors is stepped through its local
    shards (``to_local()``, which shares their storage, so the kernel writes through): exact
    for an element-wise update when each gradient has its parameter's mesh and placements
    and none is ``Partial`` (a pending sum: its local values are not the tensor's). ``layouts``
    holds each parameter's (mesh, placements), ``ranks`` the largest mesh's size."""
    dtensor = _dtensor_type()
    if dtensor is None:
        return params, grads, None, 1
    kinds = set(map(type, params)) | set(map(type, grads))
    if dtensor not in kinds:
        return params, grads, None, 1
    if kinds != {dtensor}:
        raise Unsupported("a group mixing DTensor and other parameters or gradients")
    layouts = [(p.device_mesh, p.placements) for p in params]
    for g, layout in zip(grads, layouts):
        if (g.device_mesh, g.placements) != layout:
            raise Unsupported("a DTensor gradient whose mesh or placements are not its parameter's")
    if any(pl.is_partial() for _, placements in layouts for pl in placements):
        raise Unsupported("a DTensor with a Partial placement (its shards are not its values)")
    ranks = max(mesh.size() for mesh, _ in layouts)
    with torch.no_grad():
        return [t.to_local() for t in params], [t.to_local() for t in grads], layouts, ranks


def _local_states(ts: list, what: str, layouts: list, scalar: bool) -> list:
    """A state column of a DTensor group as local tensors: each state tensor a DTensor with
    its parameter's mesh and placements (as ``zeros_like(p)`` makes it); a one-element counter
    (step, μ-product) may be a plain tensor or a replicated DTensor."""
    dtensor = _dtensor_type()
    out = []
    for t, (mesh, placements) in zip(ts, layouts):
        if type(t) is dtensor:
            if t.device_mesh != mesh:
                raise Unsupported(f"{what} is a DTensor on another mesh than its parameter")
            if scalar and not all(p.is_replicate() for p in t.placements):
                raise Unsupported(f"{what} is a DTensor that is not replicated")
            if not scalar and t.placements != placements:
                raise Unsupported(f"{what} has other placements than its parameter")
            with torch.no_grad():
                out.append(t.to_local())
        elif scalar or not isinstance(t, Tensor):
            out.append(t)
        else:
            raise Unsupported(f"{what} is a plain tensor for a DTensor parameter")
    return out


def check_parameters(params: list) -> None:
    """Raise :class:`Unsupported` for a parameter the kernels cannot take as it is now
    (``fused=True``'s check at construction; each step checks again)."""
    for p in params:
        (local,), _, _, _ = _local_group([p], [])
        if local.dtype not in _KIND:
            raise Unsupported(f"a parameter of dtype {local.dtype} (fast kernels: float32/float64)")
        _addresses([local], "parameter", local.dtype, None)


def _scalar_addresses(ts: list, what: str) -> tuple[int, list[int]]:
    """(0 float32 | 1 float64, addresses) of a one-element per-parameter counter (step,
    μ-product), which the kernel reads and updates in place."""
    _check_types(ts, what)  # before reading a dtype: None (absent state) is _NotTensor
    dtype = ts[0].dtype  # every other counter must have it too (checked in C++)
    if dtype not in _KIND:
        raise Unsupported(f"{what} has dtype {dtype} (fast kernels: fp32 or fp64)")
    return _KIND[dtype], _addresses(ts, what, dtype, array("q", _ONE) * len(ts))[0]


def _state_columns(plan: Resolved, states: list[dict], dtype, numel: array, layouts) -> dict:
    """Every state column the kernel reads and writes, checked as it is now:
    ``{arg name: (kind or None, tensors, addresses)}``. ``_NotTensor`` or ``KeyError`` when a
    state is absent (a first step, a parameter that joined, torch's None buffer)."""
    out = {}
    names = ("s0", "s1", "s2", "step", "extra", *(name for name, _ in plan.scalars))
    keys = (*plan.slots, "step", plan.extra, *(key for _, key in plan.scalars))
    for name, key in zip(names, keys, strict=True):
        if key is None:
            continue
        what, scalar = f"state {key!r}", name not in ("s0", "s1", "s2")
        ts = list(map(itemgetter(key), states))
        if layouts is not None:
            ts = _local_states(ts, what, layouts, scalar)
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
    if plan.extra is not None and plan.extra_fill is None:
        keys += (plan.extra,)
    keys += tuple(key for _, key in plan.scalars)
    scalar = _get_scalar_dtype()
    fresh = []
    for i, (p, st) in enumerate(zip(params, states)):
        if "step" not in st:
            st["step"] = torch.tensor(0.0, dtype=scalar)
        if any(k not in st for k in keys):
            links.init(p, st)
        if plan.extra_fill is not None and plan.extra not in st:  # ASGD's η₀ = γ
            st[plan.extra] = torch.as_tensor(plan.extra_fill, dtype=scalar).clone()
        if plan.lazy is not None and st.get(plan.lazy) is None:
            if plan.lazy_fill is None:
                st[plan.lazy] = torch.zeros_like(p, memory_format=torch.preserve_format)
                fresh.append(i)
            elif isinstance(plan.lazy_fill, Tensor):  # per-run values (Rprop's η₀ = γ)
                st[plan.lazy] = torch.zeros_like(p, memory_format=torch.preserve_format).add_(
                    plan.lazy_fill.to(dtype=p.dtype, device=p.device)
                )
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


def _per_element(cache: dict, name: str, value, shape: tuple, dtype) -> Tensor:
    """``value`` (a number or an (N, 1) column) repeated along each row of an (N, d)
    parameter, in its dtype; kept in ``cache`` between steps while the value is the same
    object."""
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
        """After the kernel ran: tell autograd the parameters changed in place, and put the
        per-parameter numbers the kernel updated back in the state (:class:`HostNumbers`)."""
        torch.autograd.graph.increment_version(self.params)
        for item in self.keep_alive:
            if type(item) is HostNumbers:
                item.write_back()


class HostNumbers:
    """Per-parameter Python numbers of the state (``KernelPlan.host``: Schedule-Free's γ_max
    and Σw) as arrays of doubles the kernel reads and updates in place; :meth:`write_back`
    stores the new values in the state dicts as Python floats, as the chain keeps them."""

    def __init__(self, host: dict, states: list[dict]):
        self.states, self.columns = states, []
        for arg, key in host.items():
            values = list(map(itemgetter(key), states))  # KeyError: absent
            for v in values:
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise Unsupported(
                        f"state {key!r} is {type(v).__name__}, not a number (per-run values "
                        "run on the chain)"
                    )
            self.columns.append((arg, key, array("d", map(float, values))))

    def point(self, args) -> None:
        for arg, _, values in self.columns:
            setattr(args, arg, values.buffer_info()[0])

    def write_back(self) -> None:
        for _, key, values in self.columns:
            for st, v in zip(self.states, values):
                st[key] = v


def prepare(opt, index: int, links, plan: Resolved, params: list[Tensor]) -> Prepared:
    """Everything a step of ``params`` (all with gradients) needs but the kernel call itself:
    checks of every tensor as it is now, missing state (a group's first step), addresses,
    coefficients. Raises :class:`Unsupported` before touching anything when a tensor does
    not qualify."""
    numbers, rows, row_len = _split_rows(plan, params)
    local, grads, layouts, ranks = _local_group(params, list(map(_grad, params)))
    if layouts is not None:
        if rows:
            raise Unsupported("per-run hyperparameter tensors with DTensor parameters")
        agreed = opt.__dict__.get("_global_norms", {}).get(index)
        sharded = any(not pl.is_replicate() for _, placements in layouts for pl in placements)
        if plan.fields.get("cautious") and ranks > 1 and sharded:  # cautious mask (i14kc)
            raise Unsupported(
                f"cautious=True with DTensor parameters sharded over {ranks} ranks: the mask's "
                "scale n/(Σφ + 1) counts the whole tensor, not one shard"
            )
        if plan.max_norm is not None and ranks > 1 and agreed is None:
            raise Unsupported(
                f"global-norm clipping of DTensor parameters on a mesh of {ranks} ranks "
                "needs a reduction across ranks"
            )
    states = list(map(opt.state.__getitem__, params))
    args, keep_alive = assemble(
        plan,
        numbers,
        local,
        grads,
        states,
        layouts=layouts,
        init=lambda: _init_missing(links, plan, params, states),
        rows=rows,
        row_len=row_len,
        cache=opt.__dict__.setdefault("_fast_elements", {}),
        agreed=opt.__dict__.get("_global_norms", {}).get(index),  # across ranks
    )
    targets = local if layouts is None else [*local, *params]
    return Prepared(plan.family, args, keep_alive, targets)


def assemble(
    plan: Resolved,
    numbers: dict,
    local: list[Tensor],
    grads: list[Tensor],
    states: list[dict],
    *,
    layouts=None,
    init=None,
    rows: dict | None = None,
    row_len: int = 0,
    cache: dict | None = None,
    agreed: Tensor | None = None,
    fresh: list[int] | tuple = (),
) -> tuple:
    """(``Args``, buffers to keep alive) of one kernel call on ``local`` (the parameters the
    kernel writes), ``grads`` and ``states`` (one state dict per parameter), after checking
    every tensor as it is now. ``init()`` creates absent state and returns the indices of
    fresh modern-momentum buffers (None: absent state is an error); ``fresh``: such buffers
    the caller made (the kernel sets them to their first input, v₁ = g). Raises
    :class:`Unsupported` before touching anything."""
    dtype = local[0].dtype
    try:
        param_ptr, numel = _addresses(local, "parameter", dtype, None)
        grad_ptr = _addresses(grads, "gradient", dtype, numel)[0]
    except Unsupported:
        dtypes = set(map(_dtype, local)) | set(map(_dtype, grads))
        if len(dtypes) != 1 or not dtypes <= _KIND.keys():
            raise Unsupported(
                f"parameters or gradients of dtypes {dtypes} (fast: float32 or float64)"
            ) from None
        raise
    if any(map(_is_neg, grads)):
        raise Unsupported("a gradient with the negative bit set (a lazy view of -x)")
    try:
        columns = _state_columns(plan, states, dtype, numel, layouts)
    except (_NotTensor, KeyError) as exc:  # absent state (first step), or None (torch's buffer)
        if init is None:
            raise Unsupported(f"state {exc} is absent") from None
        fresh = list(fresh) + init()
        try:
            columns = _state_columns(plan, states, dtype, numel, layouts)
        except (Unsupported, _NotTensor, KeyError) as exc:
            for i in fresh:  # the default path must find them absent, to set v₁ = g itself
                del states[i][plan.lazy]
            if isinstance(exc, Unsupported):
                raise
            raise Unsupported(f"state {exc} is not a tensor") from None

    host = None
    if plan.host:
        try:
            host = HostNumbers(plan.host, states)
        except KeyError as exc:
            raise Unsupported(f"state {exc} is absent") from None

    args = _lib.Args(**numbers)
    args.n, args.dtype = len(local), _KIND[dtype]
    keep_alive: list = [local, grads, grad_ptr]
    if host is not None:
        host.point(args)
        keep_alive.append(host)
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
                value = plan.fields.get(name, 1.0 if name == "keep" else 0.0)  # no decay: θ·1
                values = _per_element(cache, name, value, shape, dtype)
                keep_alive.append(values)
                setattr(args, arg, values.data_ptr())
    if plan.max_norm is not None:
        args.gscale *= _clip_factor(grads, plan.max_norm, dtype, agreed)
    arrays = {"numel": numel, "param": param_ptr}
    for name, (kind, tensors, ptrs) in columns.items():
        arrays[name] = ptrs
        keep_alive.append(tensors)
        if kind is not None:  # a scalar column: step, extra, plan.scalars
            setattr(args, f"{name}_f64", kind)
    if plan.per_tensor is not None:  # from each tensor's t of this step (its counter + 1)
        field, values = plan.per_tensor([float(s) + 1.0 for s in columns["step"][1]])
        per_tensor = array("d", values)
        keep_alive.append(per_tensor)
        setattr(args, field, per_tensor.buffer_info()[0])
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
    return args, keep_alive


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
    grads, _, _, ranks = _local_group(grads, [])
    if ranks > 1:
        raise Unsupported(f"DTensor gradients on a mesh of {ranks} ranks")
    by_dtype: dict = {}
    for g in grads:
        by_dtype.setdefault(g.dtype, []).append(g)
    if not by_dtype.keys() <= _KIND.keys():
        raise Unsupported(f"gradients of dtypes {set(by_dtype)}")
    for dtype, gs in by_dtype.items():
        ptrs, numel = _addresses(gs, "gradient", dtype, None)
        args = _lib.Args(n=len(gs), dtype=_KIND[dtype])
        args.numel, args.grad = numel.buffer_info()[0], ptrs.buffer_info()[0]
        if not lib.descend_all_finite(ctypes.byref(args)):
            return False
    return True
