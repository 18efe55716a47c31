"""The sampled step through descend's C++ kernels (``native/monitor.cpp``): the per-parameter
sums in one pass over θ, g and m where they live (no copies), and the optimizer state at the
sampled coordinates in one gather.

Every call checks the live tensors it is about to hand over — float32, strided, contiguous,
on the CPU, of the expected size, inside their storage — with ``descend_check``
(``native/check.cpp``) in one call, and gets their addresses from it; nothing is cached
between calls. Where a check fails or the kernels are unavailable, :func:`sums` and
:func:`gather` return None and the monitor takes its torch path (:mod:`descend.monitor.flat`),
whose results these equal (tested).
"""

from __future__ import annotations

import ctypes
from array import array
from collections.abc import Sequence

import numpy as np
import torch

SUMS = 9  # per parameter: w2 gp2 g2 u2 m2 mg opposed nonzero nonfinite (see monitor.cpp)
_PTR = ctypes.c_void_p
_I64 = ctypes.c_int64


def library():
    """The kernels with the monitor's entry points declared, or None (no compiler, a failed
    build, ``DESCEND_FAST_NO_BUILD``)."""
    from descend.native import build

    lib = build.load()
    if lib is None:
        return None
    if _declared.get("lib") is not lib:  # once per loaded library, before any call
        fn = lib.descend_monitor_sums
        fn.argtypes = [_I64, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR]
        fn.restype = ctypes.c_int32
        gather = lib.descend_monitor_gather
        gather.argtypes = [_I64, _PTR, _I64, _PTR, _I64, _PTR, _PTR]
        gather.restype = ctypes.c_int32
        select = lib.descend_monitor_quantiles
        select.argtypes = [_I64, _PTR, _PTR, _I64, _PTR, _I64, _PTR, _PTR]
        select.restype = ctypes.c_int32
        _declared["lib"] = lib
    return lib


_declared: dict = {}


def available() -> bool:
    return library() is not None


def unavailable_reason() -> str:
    from descend.native import build

    return build.status()["error"] or "unknown"


def _checked(lib, tensors: Sequence[torch.Tensor], numel: Sequence[int]) -> array | None:
    """Addresses of ``tensors`` after ``descend_check`` has read each one now: float32,
    strided, contiguous, CPU, ``numel`` elements inside its storage; None if one is not."""
    from descend.native.abi import CheckArgs

    n = len(tensors)
    if n == 0:
        return array("q")
    for t in tensors:  # the C++ check reads a TensorImpl: plain tensors only
        if type(t) not in _PLAIN:
            return None
    impl = array("q", [t._cdata for t in tensors])
    want = array("q", numel)
    sizes, ptrs = array("q", bytes(8 * n)), array("q", bytes(8 * n))
    args = CheckArgs(n, impl.buffer_info()[0], want.buffer_info()[0], sizes.buffer_info()[0])
    args.out_ptr, args.dtype = ptrs.buffer_info()[0], 0
    if lib.descend_check(ctypes.byref(args)):
        return None
    return ptrs


_PLAIN = (torch.Tensor, torch.nn.Parameter)


def sums(
    lengths: Sequence[int],
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    momentum: Sequence[torch.Tensor | None],
    before: torch.Tensor,
    preclip: torch.Tensor,
) -> list[list[float]] | None:
    """Per parameter the nine sums of ``monitor.cpp`` (float64), as nine lists (rows), or None
    where the kernels cannot take these tensors. ``before`` and ``preclip`` are the
    parameters' θ before the step and gradients before clipping laid end to end; a None
    momentum counts as none."""
    out = read(lengths, params, grads, momentum, before, preclip, [], np.zeros(0, np.int64))
    return None if out is None else out[0]


def gather(
    lengths: Sequence[int], sources: Sequence[Sequence[torch.Tensor | None]], index: np.ndarray
) -> np.ndarray | None:
    """``out[k, s]`` = entry ``index[s]`` (a coordinate of all parameters laid end to end) of
    the k-th list of per-parameter tensors in ``sources`` (NaN where that tensor is None), as a
    (keys × len(index)) float32 array; None where the kernels cannot take these tensors."""
    lib = library()
    if lib is None:
        return None
    return _gather(lib, lengths, sources, index, None)


def read(
    lengths: Sequence[int],
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    momentum: Sequence[torch.Tensor | None],
    before: torch.Tensor,
    preclip: torch.Tensor,
    sources: Sequence[Sequence[torch.Tensor | None]],
    index: np.ndarray,
) -> tuple[list[list[float]], np.ndarray] | None:
    """:func:`sums` and :func:`gather` of ``sources`` at ``index`` after one check of all
    the tensors; None where the kernels cannot take one of them."""
    lib = library()
    if lib is None:
        return None
    n = len(params)
    total = sum(lengths)
    present = [j for j, m in enumerate(momentum) if m is not None]
    listed = [
        (k, j, t) for k, column in enumerate(sources) for j, t in enumerate(column) if t is not None
    ]
    tensors = [*params, *grads, *(momentum[j] for j in present), before, preclip]
    tensors += [t for _, _, t in listed]
    numel = [*lengths, *lengths, *(lengths[j] for j in present), total, total]
    numel += [lengths[j] for _, j, _ in listed]
    ptrs = _checked(lib, tensors, numel)
    if ptrs is None:
        return None
    at = 2 * n + len(present)
    mom_ptr = None
    if present:
        mom = array("q", bytes(8 * n))
        for k, j in enumerate(present):
            mom[j] = ptrs[2 * n + k]
        mom_ptr = mom.buffer_info()[0]
    size = array("q", lengths)
    out = np.empty((n, SUMS))
    base = ptrs.buffer_info()[0]
    rc = lib.descend_monitor_sums(
        n, size.buffer_info()[0], base, base + 8 * n, mom_ptr, ptrs[at], ptrs[at + 1],
        out.ctypes.data,
    )  # fmt: skip
    if rc:
        return None
    gathered = np.empty((0, len(index)), np.float32)
    if sources:
        gathered = _gather(lib, lengths, sources, index, (listed, ptrs[at + 2 :]))
        if gathered is None:
            return None
    return out.T.tolist(), gathered


def _gather(lib, lengths, sources, index, checked) -> np.ndarray | None:
    n, keys = len(lengths), len(sources)
    if checked is None:
        listed = [
            (k, j, t)
            for k, column in enumerate(sources)
            for j, t in enumerate(column)
            if t is not None
        ]
        ptrs = _checked(lib, [t for _, _, t in listed], [lengths[j] for _, j, _ in listed])
        if ptrs is None:
            return None
    else:
        listed, ptrs = checked
    table = array("q", bytes(8 * n * keys))
    for (k, j, _), address in zip(listed, ptrs):
        table[k * n + j] = address
    index = np.ascontiguousarray(index, dtype=np.int64)
    out = np.empty((keys, len(index)), np.float32)
    size = array("q", lengths)
    rc = lib.descend_monitor_gather(
        n,
        size.buffer_info()[0],
        keys,
        table.buffer_info()[0],
        len(index),
        index.ctypes.data,
        out.ctypes.data,
    )
    return None if rc else out


def quantiles(
    data: np.ndarray, rows: Sequence[tuple[int, int]], qs: Sequence[float]
) -> list[list[float]] | None:
    """Quantiles ``qs`` of the finite entries of each row ``data[start:start + count]`` for
    ``(start, count)`` in ``rows`` (NaN where a row has none), selected in C++
    (``std::nth_element``, which keeps its pace on many equal entries where numpy's
    ``partition`` slows down); the same values as :func:`descend.monitor.stats.quantiles`.
    ``data`` (float32) is copied first; None without the kernels."""
    lib = library()
    if lib is None:
        return None
    scratch = np.array(data, dtype=np.float32, copy=True).reshape(-1)
    start = array("q", [r[0] for r in rows])
    count = array("q", [r[1] for r in rows])
    q = array("d", qs)
    out = np.empty((len(rows), len(qs)))
    rc = lib.descend_monitor_quantiles(
        len(rows),
        start.buffer_info()[0],
        count.buffer_info()[0],
        len(scratch),
        scratch.ctypes.data,
        len(qs),
        q.buffer_info()[0],
        out.ctypes.data,
    )
    return None if rc else out.tolist()
