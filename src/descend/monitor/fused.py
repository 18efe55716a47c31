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
import operator
import sys
from array import array
from collections import deque
from collections.abc import Sequence

import numpy as np
import torch

from descend.native.abi import CheckArgs

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
        step_read = lib.descend_monitor_read
        step_read.argtypes = [ctypes.POINTER(ReadArgs)]
        step_read.restype = ctypes.c_int32
        events = lib.descend_monitor_events
        events.argtypes = [_I64, ctypes.c_double, _PTR, _PTR, _I64, _PTR, _PTR, _I64, _PTR, _I64]
        events.argtypes += [_PTR, _I64, _PTR, ctypes.POINTER(_I64)]
        events.restype = ctypes.c_int32
        size = lib.descend_monitor_read_args_size
        size.argtypes, size.restype = [], _I64
        if size() != ctypes.sizeof(ReadArgs):  # a stale library: the kernels are not used
            return None
        _declared["lib"] = lib
    return lib


_declared: dict = {}


class ReadArgs(ctypes.Structure):
    """Mirrors ``struct MonitorRead`` in ``monitor.cpp`` field by field."""

    _fields_ = [
        ("n", _I64),
        ("numel", _PTR),
        ("count", _I64),
        ("ptrs", _PTR),
        ("sizes", _PTR),
        ("theta", _PTR),
        ("grad", _PTR),
        ("momentum", _PTR),
        ("before", _I64),
        ("preclip", _I64),
        ("keys", _I64),
        ("sources", _PTR),
        ("samples", _I64),
        ("index", _PTR),
        ("sums", _PTR),
        ("gathered", _PTR),
    ]


def available() -> bool:
    return library() is not None


def unavailable_reason() -> str:
    from descend.native import build

    return build.status()["error"] or "unknown"


def _checked(lib, tensors: Sequence[torch.Tensor], numel: Sequence[int]) -> array | None:
    """Addresses of ``tensors`` after ``descend_check`` has read each one now: float32,
    strided, contiguous, CPU, ``numel`` elements inside its storage; None if one is not."""
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
_PLAIN_TYPES = frozenset(_PLAIN)
_CDATA = operator.attrgetter("_cdata")


class StepReadArgs(ctypes.Structure):
    """Mirrors ``struct MonitorStepRead`` in ``monitor.cpp`` field by field."""

    _fields_ = [
        ("n", _I64),
        ("numel", _PTR),
        ("count", _I64),
        ("ptrs", _PTR),
        ("sizes", _PTR),
        ("theta", _PTR),
        ("grad", _PTR),
        ("momentum", _PTR),
        ("before", _PTR),
        ("before_at", _PTR),
        ("preclip", _PTR),
        ("preclip_at", _PTR),
        ("keys", _I64),
        ("sources", _PTR),
        ("samples", _I64),
        ("index", _PTR),
        ("sums", _PTR),
        ("gathered", _PTR),
        ("check", _PTR),
        ("steps", _I64),
        ("step", _PTR),
        ("step_values", _PTR),
    ]


def step_library():
    """:func:`library` with ``descend_monitor_step_read`` declared (the entry point of
    :class:`Reader`), or None (no kernels, or a library whose ``MonitorStepRead`` is not
    :class:`StepReadArgs`)."""
    lib = library()
    if lib is None:
        return None
    if _declared.get("step") is not lib:
        fn = lib.descend_monitor_step_read
        fn.argtypes = [ctypes.POINTER(StepReadArgs)]
        fn.restype = ctypes.c_int32
        size = lib.descend_monitor_step_read_args_size
        size.argtypes, size.restype = [], _I64
        if size() != ctypes.sizeof(StepReadArgs):
            return None
        snap = lib.descend_monitor_snapshot
        snap.argtypes = [ctypes.POINTER(SnapshotArgs)]
        snap.restype = ctypes.c_int32
        size = lib.descend_monitor_snapshot_args_size
        size.argtypes, size.restype = [], _I64
        if size() != ctypes.sizeof(SnapshotArgs):
            return None
        _declared["step"] = lib
    return lib


class SnapshotArgs(ctypes.Structure):
    """Mirrors ``struct MonitorSnapshot`` in ``monitor.cpp`` field by field."""

    _fields_ = [("n", _I64), ("numel", _PTR), ("ptrs", _PTR), ("sizes", _PTR), ("check", _PTR)]


class Snapshot:
    """θ before a sampled step in one native call (``descend_monitor_snapshot``): the n
    parameters, checked by ``descend_check`` as they are now (float32, contiguous, CPU, their
    sizes, inside their storage) with the flat row, copied into the row end to end. A call
    returns False, and writes nothing, where a tensor is not one the kernels take."""

    def __init__(self, lengths: Sequence[int]) -> None:
        n = len(lengths)
        count = n + 1
        self.count = count
        self._keep = [
            array("q", lengths or [0]),
            array("q", [*lengths, sum(lengths)]),
            array("q", bytes(8 * count)),  # sizes, written by the check
            array("q", bytes(8 * count)),  # addresses, written by the check
        ]
        lens, want, sizes, ptrs = (a.buffer_info()[0] for a in self._keep)
        check = CheckArgs(count, 0, want, sizes)
        check.out_ptr, check.dtype = ptrs, 0
        self._check = check
        self._args = SnapshotArgs(n, lens, ptrs, sizes, ctypes.addressof(check))
        self._args_ref = ctypes.pointer(self._args)

    def __call__(self, lib, tensors: Sequence[torch.Tensor]) -> bool:
        """Copy ``tensors[:n]`` into ``tensors[n]`` (the flat row); False where refused."""
        if len(tensors) != self.count or not _PLAIN_TYPES.issuperset(map(type, tensors)):
            return False
        impl = array("q", map(_CDATA, tensors))
        self._check.impl = impl.buffer_info()[0]
        failed = lib.descend_monitor_snapshot(self._args_ref)
        self._check.impl = None  # no address of a list freed after this call stays behind
        return not failed


class Reader:
    """One sampled step's native read, its arguments built once for a fixed arrangement of
    tensors: per parameter θ and its gradient, which parameters have a momentum buffer, which
    have each gathered state source. A call hands over the live tensors (in the order below)
    to one native call, ``descend_monitor_step_read``: ``descend_check`` reads each of them
    (float32, contiguous, CPU, the expected size, inside its storage), every index, size and
    start is checked again, then the nine sums per parameter are computed (see :func:`sums`)
    and the sources gathered at ``index`` (see :func:`gather`). Nothing
    about the tensors is kept between calls: only where each role sits in the list. The
    results are written into arrays the reader made, reused once no one holds them.

    The order of the tensors: the n parameters, their n gradients, the momentum buffers
    present, θ before the step (flat), the gradients before clipping — flat, or with
    ``split`` one tensor per parameter (the gradients backward produced, held as they are) —
    then the sources present, source after source, then ``steps`` one-element float32
    tensors (the optimizer's step counts) whose values each call writes into
    :attr:`step_values`."""

    def __init__(
        self,
        lengths: Sequence[int],
        momentum: Sequence[bool],
        sources: Sequence[Sequence[bool]],
        index: np.ndarray,
        split: bool = False,
        steps: int = 0,
    ) -> None:
        n = len(lengths)
        total = sum(lengths)
        numel = [*lengths, *lengths]
        mom_at = []
        for j, present in enumerate(momentum):
            mom_at.append(len(numel) if present else -1)
            if present:
                numel.append(lengths[j])
        starts = [0]
        for length in lengths[:-1]:
            starts.append(starts[-1] + length)
        before = len(numel)
        numel.append(total)
        if split:
            preclip, preclip_at = list(range(len(numel), len(numel) + n)), [0] * n
            numel += lengths
        else:
            preclip, preclip_at = [len(numel)] * n, starts
            numel.append(total)
        src_at = []
        for column in sources:
            for j, present in enumerate(column):
                src_at.append(len(numel) if present else -1)
                if present:
                    numel.append(lengths[j])
        step_at = list(range(len(numel), len(numel) + steps))
        numel += [1] * steps
        count = len(numel)
        self.n, self.count, self.keys, self.split = n, count, len(sources), split
        self.samples = len(index)
        self._outputs: deque = deque()  # [sums, gathered, their addresses]: see _free_outputs
        self._keep = [
            array("q", lengths),
            array("q", numel),
            array("q", bytes(8 * count)),  # sizes, written by the check
            array("q", bytes(8 * count)),  # addresses, written by the check
            array("q", range(n)),
            array("q", range(n, 2 * n)),
            array("q", mom_at),
            array("q", [before] * n or [0]),
            array("q", starts if n else [0]),
            array("q", preclip or [0]),
            array("q", preclip_at or [0]),
            array("q", src_at or [0]),
            array("q", step_at or [0]),
            np.ascontiguousarray(index, dtype=np.int64),
        ]
        address = [a.buffer_info()[0] for a in self._keep[:-1]]
        check = CheckArgs(count, 0, address[1], address[2])
        check.out_ptr, check.dtype = address[3], 0
        self._check = check
        args = StepReadArgs(n, address[0], count, address[3], address[2], address[4])
        args.grad, args.momentum = address[5], address[6]
        args.before, args.before_at, args.preclip, args.preclip_at = address[7:11]
        args.keys, args.sources, args.samples = len(sources), address[11], self.samples
        args.index = self._keep[-1].ctypes.data
        args.check = ctypes.addressof(check)
        # the step counts, read at once by the caller after each call (not handed out)
        self.step_values = np.zeros(steps, np.float32)
        args.steps, args.step, args.step_values = steps, address[12], self.step_values.ctypes.data
        self._args_ref = ctypes.pointer(args)
        self._args = args
        step_library()  # declares descend_monitor_step_read once

    def run(self, lib, tensors: Sequence[torch.Tensor]) -> tuple[np.ndarray, np.ndarray] | None:
        """(sums as an n × 9 float64 array, the gathered sources as keys × samples float32),
        or None where a tensor is not one the kernels take (nothing written then)."""
        if len(tensors) != self.count or not _PLAIN_TYPES.issuperset(map(type, tensors)):
            return None  # a subclass or a non-tensor: the check reads plain tensors only
        impl = array("q", map(_CDATA, tensors))
        out = self._free_outputs()
        args = self._args
        args.sums, args.gathered = out[2], out[3]
        self._check.impl = impl.buffer_info()[0]
        failed = lib.descend_monitor_step_read(self._args_ref)  # descend_check first
        self._check.impl = None  # no address of a list freed after this call stays behind
        if failed:
            return None
        return out[0], out[1]

    def _free_outputs(self) -> list:
        """A pair of output arrays no one else holds (with their addresses): the oldest
        handed out, once every reference to it (the rows of a sampled step, their views) is
        gone — a reference count of 2: the ring's and ``getrefcount``'s own — else a new
        pair. The monitor holds a sampled step's arrays until its row is written, so
        ``defer`` + 1 pairs at most go round."""
        ring = self._outputs
        for _ in range(len(ring)):  # oldest first; each one looked at goes to the back
            out = ring[0]
            ring.rotate(-1)
            if sys.getrefcount(out[0]) == 2 and sys.getrefcount(out[1]) == 2:
                return out
        sums = np.empty((self.n, SUMS))
        gathered = np.empty((self.keys, self.samples), np.float32)
        out = [sums, gathered, sums.ctypes.data, gathered.ctypes.data]
        ring.append(out)
        return out

    __call__ = run  # the monitor's prebuilt reader is called; :func:`read`'s one-off runs


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
    the tensors (through a :class:`Reader` made for them: the same arithmetic as the
    monitor's prebuilt one); None where the kernels cannot take one of them."""
    lib = step_library()
    if lib is None:
        return None
    reader = Reader(
        lengths,
        [m is not None for m in momentum],
        [[t is not None for t in column] for column in sources],
        index,
    )
    tensors = [*params, *grads, *(m for m in momentum if m is not None), before, preclip]
    for column in sources:
        tensors += [t for t in column if t is not None]
    got = reader.run(lib, tensors)
    if got is None:
        return None
    out, gathered = got
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
    data: np.ndarray, rows: Sequence[tuple[int, int]], qs: Sequence[float], copy: bool = True
) -> list[list[float]] | None:
    """Quantiles ``qs`` of the finite entries of each row ``data[start:start + count]`` for
    ``(start, count)`` in ``rows`` (NaN where a row has none), selected in C++
    (``std::nth_element``, which keeps its pace on many equal entries where numpy's
    ``partition`` slows down); the same values as :func:`descend.monitor.stats.quantiles`.
    ``data`` (float32) is copied first, or with ``copy=False`` (a C-contiguous float32
    array) reordered in place within each row; None without the kernels."""
    lib = library()
    if lib is None:
        return None
    if copy:
        scratch = np.array(data, dtype=np.float32, copy=True).reshape(-1)
    else:
        if data.dtype != np.float32 or not data.flags.c_contiguous:
            raise ValueError("quantiles(copy=False) needs a C-contiguous float32 array")
        scratch = data.reshape(-1)
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


def scalars(tensors: Sequence[torch.Tensor]) -> list[float] | None:
    """The values of one-element float32 (or all float64) CPU tensors, read in one native call
    (``descend_read_scalars``: each tensor checked as ``descend_check`` checks it, then read);
    None where the kernels are unavailable or a tensor is not one they take (a subclass,
    another dtype or device, more than one element): read them with torch then."""
    lib = library()
    if lib is None or not tensors:
        return None
    n = len(tensors)
    impl = array("q", [t._cdata for t in tensors if type(t) in _PLAIN])
    if len(impl) != n:  # the C++ check reads a TensorImpl: plain tensors only
        return None
    sizes, ptrs = array("q", bytes(8 * n)), array("q", bytes(8 * n))
    out = array("d", bytes(8 * n))
    args = CheckArgs(n, impl.buffer_info()[0], None, sizes.buffer_info()[0])
    args.out_ptr = ptrs.buffer_info()[0]
    args.dtype = 1 if tensors[0].dtype == torch.float64 else 0
    if lib.descend_read_scalars(ctypes.byref(args), out.buffer_info()[0]):
        return None
    return out.tolist()
