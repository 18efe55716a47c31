"""The sampled step through descend's C++ kernels (``native/monitor.cpp``): the per-parameter
sums in one pass over θ, g and m where they live (no copies), and the optimizer state at the
sampled coordinates in one gather.

Every call checks the live tensors it is about to hand over — float32, strided, contiguous,
on the CPU, of the expected size, inside their storage — with ``descend_check``
(``native/check.cpp``) in one call, and gets their addresses from it; nothing is cached
between calls. Where a check fails or the kernels are unavailable, :class:`Reader` and
:func:`read` return None and the monitor takes its torch path (:mod:`descend.monitor.flat`),
whose results these equal (tested).

Two places of the kernels have a path the build picks from the CPU (``-march=native``): the
radix selection's gather (:func:`radix_quantiles`, :class:`Rows`: AVX-512, sixteen keys at a
time) and the TensorBoard records' CRC-32C (the CPU's crc32 instruction). Their portable code
(a scalar loop, a table), which other CPUs run, is compiled in too: :func:`portable_paths`
selects it for a block (the same results, bit for bit: tested), :func:`paths` says which one
each place takes.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import operator
import sys
from array import array
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

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
        _declare(lib, "descend_monitor_quantiles", [_I64, _PTR, _PTR, _I64, _PTR, _I64, _PTR, _PTR])
        events = [_I64, ctypes.c_double, _PTR, _PTR, _I64, _PTR, _PTR, _I64, _PTR, _I64]
        events += [_PTR, _I64, _PTR, ctypes.POINTER(_I64)]
        _declare(lib, "descend_monitor_events", events)
        _declare(lib, "descend_monitor_rates", [_I64, _PTR, _I64, _I64, _PTR, _PTR, _PTR])
        _declare(lib, "descend_monitor_combine", [_I64, _PTR, _I64, _PTR, _I64, _PTR])
        _declared["lib"] = lib
    return lib


def _declare(lib, name: str, argtypes: list) -> None:
    """Give entry point ``name`` its argument types (it returns an int32 status)."""
    fn = getattr(lib, name)
    fn.argtypes, fn.restype = argtypes, ctypes.c_int32


def _sized(lib, name: str, struct: type[ctypes.Structure]) -> bool:
    """Whether the library's ``name()`` (the sizeof of a C struct) is ``struct``'s size: a
    stale library whose struct differs is not used."""
    size = getattr(lib, name)
    size.argtypes, size.restype = [], _I64
    return size() == ctypes.sizeof(struct)


_declared: dict = {}


def _library_with(key: str, declare: Callable[[ctypes.CDLL], bool]) -> ctypes.CDLL | None:
    """:func:`library` once ``declare(lib)`` has run for it (once per loaded library, kept
    under ``key``), or None: no kernels, or ``declare`` found the library's structs not
    the ctypes mirrors (False)."""
    lib = library()
    if lib is None:
        return None
    if _declared.get(key) is not lib:
        if not declare(lib):
            return None
        _declared[key] = lib
    return lib


def available() -> bool:
    return library() is not None


def unavailable_reason() -> str:
    from descend.native import build

    return build.status()["error"] or "unknown"


class Paths(NamedTuple):
    """The code the two CPU-dependent places of ``native/monitor.cpp`` take now, and the code
    that ran there since the record was last cleared (:func:`clear_taken`, and on entering
    :func:`portable_paths`), marked where it runs (``descend_monitor_paths``). Where a fast
    path is not built or not taken, its portable code runs (the same results)."""

    simd_gather_built: bool  # the radix selection's AVX-512 gather is compiled (-mavx512f)
    simd_gather: bool  # and taken now: built, and the portable switch off
    hardware_crc_built: bool  # CRC-32C by the crc32 instruction (SSE 4.2, ARMv8 CRC) compiled
    hardware_crc: bool  # and taken now
    portable: bool  # the portable switch (set_portable) is on
    simd_gather_ran: bool  # the AVX-512 gather ran (sixteen keys at a time)
    scalar_gather_ran: bool  # the gather ran by its portable code alone
    hardware_crc_ran: bool  # a CRC was computed by the crc32 instruction
    table_crc_ran: bool  # a CRC was computed by the table alone


_PATH_BITS = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # Paths' fields, in order: monitor.cpp's bits


def paths_library():
    """:func:`library` with ``descend_monitor_paths``, ``descend_monitor_clear_taken`` and
    ``descend_monitor_set_portable`` declared, or None (no kernels)."""

    def declare(lib) -> bool:
        _declare(lib, "descend_monitor_paths", [])
        lib.descend_monitor_clear_taken.argtypes, lib.descend_monitor_clear_taken.restype = [], None
        _declare(lib, "descend_monitor_set_portable", [ctypes.c_int32])
        return True

    return _library_with("paths", declare)


def _paths_library() -> ctypes.CDLL:
    lib = paths_library()
    if lib is None:
        raise RuntimeError(
            "the monitor's native paths cannot be read or selected: the kernels are "
            f"unavailable ({unavailable_reason()})"
        )
    return lib


def paths() -> Paths:
    """Which code each CPU-dependent place of the kernels takes now, and which ran since
    :func:`clear_taken` (see :class:`Paths`); a RuntimeError, with the build's reason, where
    the kernels are unavailable."""
    flags = _paths_library().descend_monitor_paths()
    return Paths(*(bool(flags & bit) for bit in _PATH_BITS))


def clear_taken() -> None:
    """Clear the record of the code that ran (:class:`Paths`' ``…_ran`` fields), process-wide;
    a RuntimeError where the kernels are unavailable."""
    _paths_library().descend_monitor_clear_taken()


def set_portable(on: bool) -> None:
    """Switch both CPU-dependent places of the kernels to their portable code (``on=True``:
    the scalar gather, the table CRC, even where the fast paths are built) or back to the
    default (``False``). Process-wide — every thread and monitor, until switched back — and
    meant for tests and for comparing the paths (:func:`portable_paths` restores it); each
    native call reads it once, at its start. A RuntimeError where the kernels are
    unavailable, a ValueError for an ``on`` that is not a bool."""
    if not isinstance(on, bool | np.bool_):
        raise ValueError(f"set_portable: on must be True or False, got {on!r}")
    if _paths_library().descend_monitor_set_portable(int(on)):
        raise RuntimeError(f"descend_monitor_set_portable refused on={int(on)}")


@contextlib.contextmanager
def portable_paths(on: bool = True) -> Iterator[Paths]:
    """Within the block, the kernels' portable code (``on=True``) or their default paths
    (``False``), the switch restored as it was on leaving (an exception too); the record of
    the code that ran is cleared on entering, so :func:`paths` in the block says what ran in
    it. Yields :func:`paths` as set. Process-wide, as :func:`set_portable`: not for
    concurrent use."""
    before = paths().portable
    set_portable(on)
    clear_taken()
    try:
        yield paths()
    finally:
        set_portable(before)


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

    def declare(lib) -> bool:
        _declare(lib, "descend_monitor_step_read", [ctypes.POINTER(StepReadArgs)])
        _declare(lib, "descend_monitor_snapshot", [ctypes.POINTER(SnapshotArgs)])
        return _sized(lib, "descend_monitor_step_read_args_size", StepReadArgs) and _sized(
            lib, "descend_monitor_snapshot_args_size", SnapshotArgs
        )

    return _library_with("step", declare)


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
    start is checked again, then the nine sums per parameter are computed (float64: ‖θ_before‖²,
    ‖g_preclip‖², ‖g‖², ‖u‖², ‖m‖², m·g, #(u·g < 0), #(g ≠ 0), #(g non-finite), u = θ_before − θ,
    non-finite entries of g counted then taken as 0) and entry ``index[s]`` (a coordinate of
    all parameters laid end to end) of each source gathered (NaN where a parameter has
    none). Nothing
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
    """The nine sums per parameter (as nine lists) and ``sources`` gathered at ``index`` (a
    keys × len(index) float32 array) after one check of all the tensors, through a
    :class:`Reader` made for them (the same arithmetic as the monitor's prebuilt one); None
    where the kernels cannot take one of them. ``before`` and ``preclip`` are θ before the
    step and the gradients before clipping laid end to end; a None momentum or source
    counts as none."""
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
    if not _PLAIN_TYPES.issuperset(map(type, tensors)):  # the C++ check reads a TensorImpl:
        return None  # plain tensors only
    impl = array("q", map(_CDATA, tensors))
    sizes, ptrs = array("q", bytes(8 * n)), array("q", bytes(8 * n))
    out = array("d", bytes(8 * n))
    args = CheckArgs(n, impl.buffer_info()[0], None, sizes.buffer_info()[0])
    args.out_ptr = ptrs.buffer_info()[0]
    args.dtype = 1 if tensors[0].dtype == torch.float64 else 0
    if lib.descend_read_scalars(ctypes.byref(args), out.buffer_info()[0]):
        return None
    return out.tolist()


RATE_FIELDS = 11  # doubles per group in a program of descend_monitor_rates (see monitor.cpp)


def rate_program(
    group: dict, keys: Sequence[str], state: dict, rows: dict[str, int]
) -> list | None:
    """The program of ``descend_monitor_rates`` for one group: its v̂ and effective learning
    rate by the formulas of :func:`descend.monitor.flat.state_rates` (v̂) and
    :func:`descend.train.metrics._param_eff_lr` (the rate), the scalars computed here in
    Python exactly as they compute them, the per-coordinate float32 arithmetic left to C++.
    ``keys``: the group's state sources, ``state``: its scalars (``step``, ``mu_product``),
    ``rows``: each source's row in the gathered array. None where a formula is one this
    program does not express (the numpy formulas then run, and raise what they raise).

    The formula's branches (:func:`_shape`: which sources, which corrections) are found once
    per arrangement — the group's switches, the state's keys and the rows — and kept (the
    last :data:`_SHAPES_KEPT`); each call then computes only the numbers (:func:`_values`:
    lr, eps and the step's corrections, read from ``group`` and ``state`` as they are), so
    a program is the same list whether its shape was kept or found again (tested)."""
    try:
        switches = ("betas" in group, *map(group.get, _SWITCHES, _ABSENT_EACH))
        names = (*keys, None, *state)
        for kept in _SHAPES:  # == compares the switches' values (a changed one: a miss)
            if kept[0] == switches and kept[1] == names and kept[2] == rows:
                shape = kept[3]
                break
        else:
            shape = _MISSING
    except Exception:  # a switch that == cannot compare: the shape is found, not kept
        switches = shape = _MISSING
    try:
        if shape is _MISSING:
            shape = _shape(group, set(keys) | set(state), rows)
            if switches is not _MISSING:
                _SHAPES.insert(0, (switches, names, dict(rows), shape))
                del _SHAPES[_SHAPES_KEPT:]
        return None if shape is None else _values(shape, group, state)
    except (KeyError, TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None


_ABSENT = object()  # a switch the group does not hold
_MISSING = object()  # no kept shape
# the group's entries that pick a branch (besides whether it holds betas)
_SWITCHES = ("eps_placement", "bias_correction", "amsgrad_of", "amsgrad", "centered")
_ABSENT_EACH = (_ABSENT,) * len(_SWITCHES)
_SHAPES: list[tuple] = []  # (switches, state names, rows, shape), the last found first
_SHAPES_KEPT = 8
_PAIR: list = []  # descend.train.metrics._pair, imported on first use (~0.6 µs an import)
# the rate's branches (see _shape)
_NO_RATE, _NADAM, _ADAM, _ADAM_HAT, _ADAM_CORRECTED_MAX, _RMSPROP, _ADAGRAD = range(7)


def _shape(group: dict, merged: set, rows: dict[str, int]) -> tuple | None:
    """The branches of the group's formulas: v̂'s source row and whether it is Adam's
    (divided by 1 − β₂ᵗ), the rate's kind, its source and centering rows, eps inside the
    root, and Adam's two bias-correction switches; None where a source was not gathered."""
    if not _PAIR:
        from descend.train.metrics import _pair as found

        _PAIR.append(found)
    _pair = _PAIR[0]

    def row(key: str) -> int:
        if key not in rows:  # a source the gather did not read
            raise KeyError(key)
        return rows[key]

    try:
        # v̂ (flat._rates): Adam's v/(1 − β₂ᵗ), else RMSprop's square_avg or AdaGrad's sum
        v_src, v_adam = -1, False
        if "exp_avg_sq" in merged and "betas" in group:
            v_src, v_adam = row("exp_avg_sq"), True
        elif "square_avg" in merged or "sum" in merged:
            v_src = row("square_avg" if "square_avg" in merged else "sum")
        # the rate (metrics._param_eff_lr): lr / (c1 · sqrt_plus(y, eps))
        kind, e_src, center, bc_m, bc_v = _NO_RATE, -1, -1, False, False
        placement = group.get("eps_placement") or "outside"
        inside = int(placement == "inside")
        if "exp_avg_sq" in merged:
            if "betas" in group and "Q" not in merged:
                if "mu_product" in merged:  # NAdam
                    kind, e_src, inside = _NADAM, row("exp_avg_sq"), 0
                else:
                    bc_m, bc_v = _pair(group.get("bias_correction", True))
                    bc_m, bc_v = bool(bc_m), bool(bc_v)
                    corrected_max = group.get("amsgrad_of", "raw") == "corrected"
                    raw_max = group.get("amsgrad") and not corrected_max
                    source = "max_exp_avg_sq" if raw_max else "exp_avg_sq"
                    if placement == "hat":
                        kind, e_src, inside = _ADAM_HAT, row(source), 0
                    elif group.get("amsgrad") and corrected_max:
                        kind, e_src = _ADAM_CORRECTED_MAX, row("max_exp_avg_sq")
                    else:
                        kind, e_src = _ADAM, row(source)
        elif "square_avg" in merged:
            kind, e_src = _RMSPROP, row("square_avg")
            if group.get("centered", False):
                center = row("grad_avg")
            bc_v = bool(group.get("bias_correction", False))
        elif "sum" in merged:
            kind, e_src = _ADAGRAD, row("sum")
    except (KeyError, TypeError, ValueError):
        return None
    return v_src, v_adam, kind, e_src, center, inside, bc_m, bc_v


def _values(shape: tuple, group: dict, state: dict) -> list | None:
    """The program's numbers for ``shape`` (:func:`_shape`) from the group's and the state's
    values as they are now: raises what the formulas raise on values they cannot take."""
    v_src, v_adam, kind, e_src, center, inside, bc_m, bc_v = shape
    v_div, v_c = 0, 1.0
    if v_adam:
        t = float(state.get("step", 1))
        v_div, v_c = 1, 1 - float(group["betas"][1]) ** t
    e_div, e_c, c1, eps = 0, 1.0, 1.0, 0.0
    lr = float(group["lr"])
    t = max(float(state.get("step", 1)), 1.0)
    if kind == _NO_RATE:
        pass
    elif kind <= _ADAM_CORRECTED_MAX:  # Adam's family
        b1, b2 = map(float, group["betas"])
        eps = float(group["eps"])
        if kind == _NADAM:
            e_div, e_c = 1, 1 - b2**t
        else:
            c1 = 1 - b1**t if bc_m else 1.0
            c2 = 1 - b2**t if bc_v else 1.0
            if kind == _ADAM_HAT:
                lr = lr * math.sqrt(c2)
            elif kind == _ADAM:
                e_div, e_c = 1, c2
    elif kind == _RMSPROP:
        eps = float(group["eps"])
        if bc_v:
            e_div, e_c = 1, 1 - float(group["alpha"]) ** t
    else:  # AdaGrad
        eps = float(group["eps"])
        c1 = 1.0 + (t - 1.0) * float(group.get("lr_decay", 0.0))
    values = [v_src, v_div, v_c, e_src, center, e_div, e_c, inside, lr, c1, eps]
    if _EXACT.issuperset(map(type, values)):  # every one an int or a float (one C pass)
        return values
    for x in values:
        if not isinstance(x, _REAL) or isinstance(x, bool):
            return None  # e.g. a complex power: the numpy formulas decide
    return values


_REAL = (int, float)
_EXACT = frozenset(_REAL)


def rates(
    programs: Sequence[Sequence[float]], gathered: np.ndarray, group: np.ndarray
) -> np.ndarray | None:
    """v̂ and the effective learning rate at the sampled coordinates as a (2 × samples)
    float32 array, computed in C++ by each coordinate's group's program (see
    :func:`rate_program`; ``group[s]`` = -1: NaN); the same bits as the numpy formulas
    (tested). ``gathered``: the sources (keys × samples, float32). None without the kernels,
    or where the native side refuses the arguments (a row or group out of range)."""
    lib = library()
    if lib is None:
        return None
    gathered = np.ascontiguousarray(gathered, dtype=np.float32)
    if gathered.ndim != 2:
        raise ValueError(f"gathered must be 2-d (keys × samples), got shape {gathered.shape}")
    group = np.ascontiguousarray(group, dtype=np.int64)
    keys, samples = gathered.shape
    if group.shape != (samples,):
        raise ValueError(f"group must hold one entry per sample ({samples}), got {group.shape}")
    program = array("d", [float(x) for p in programs for x in p])
    if len(program) != RATE_FIELDS * len(programs):
        raise ValueError(f"each program holds {RATE_FIELDS} numbers")
    out = np.empty((2, samples), np.float32)
    rc = lib.descend_monitor_rates(
        len(programs), program.buffer_info()[0] if programs else None, keys, samples,
        gathered.ctypes.data, group.ctypes.data, out.ctypes.data,
    )  # fmt: skip
    return None if rc else out


COMBINED = 8  # values per scope of descend_monitor_combine (see monitor.cpp)


def combine(sums: np.ndarray, spans: Sequence[tuple[int, int]], layers: bool) -> list | None:
    """Per scope (parameters ``first:end`` of the n × 9 float64 ``sums``) the eight values of
    ``descend_monitor_combine`` — ‖g‖, ‖u‖, ‖θ‖, update ratio, opposed fraction, non-finite,
    momentum cosine, [‖m‖² > 0] — then, with ``layers``, each parameter's update ratio and
    ‖g‖, as one list; the same bits as :func:`descend.monitor.stats.combine` (tested). None
    without the kernels or where a span is refused."""
    lib = library()
    if lib is None:
        return None
    sums = np.ascontiguousarray(sums, dtype=np.float64)
    if sums.ndim != 2 or sums.shape[1] != SUMS:
        raise ValueError(f"sums must be n × {SUMS}, got shape {sums.shape}")
    n = sums.shape[0]
    span = array("q", [x for pair in spans for x in pair])
    if len(span) != 2 * len(spans):
        raise ValueError("each span is (first, end)")
    out = np.empty(COMBINED * len(spans) + (2 * n if layers else 0))
    rc = lib.descend_monitor_combine(
        n, sums.ctypes.data, len(spans), span.buffer_info()[0] if spans else None,
        int(bool(layers)), out.ctypes.data,
    )  # fmt: skip
    return None if rc else out.tolist()


class RowsArgs(ctypes.Structure):
    """Mirrors ``struct MonitorRows`` in ``monitor.cpp`` field by field."""

    _fields_ = [
        ("rows", _I64),
        ("n", _I64),
        ("keys", _I64),
        ("samples", _I64),
        ("groups", _I64),
        ("sums", _PTR),
        ("gathered", _PTR),
        ("programs", _PTR),
        ("mode", _PTR),
        ("given", _PTR),
        ("given_eff", _PTR),
        ("group_of", _PTR),
        ("param_group", _PTR),
        ("scopes", _I64),
        ("span", _PTR),
        ("part", _PTR),
        ("layers", _I64),
        ("layer_part", _PTR),
        ("micro", _PTR),
        ("micro_info", _PTR),
        ("noise_beta", ctypes.c_double),
        ("unit", ctypes.c_double),
        ("noise", _PTR),
        ("head", _I64),
        ("lead", _PTR),
        ("columns", _I64),
        ("present", _PTR),
        ("packed", _PTR),
    ]


def rows_library():
    """:func:`library` with ``descend_monitor_rows`` (and ``descend_monitor_quantiles_radix``)
    declared, or None (no kernels, or a library whose ``MonitorRows`` is not
    :class:`RowsArgs`)."""

    def declare(lib) -> bool:
        _declare(lib, "descend_monitor_rows", [ctypes.POINTER(RowsArgs)])
        radix = [_I64, _PTR, _PTR, _I64, _PTR, _I64, _PTR, _PTR]
        _declare(lib, "descend_monitor_quantiles_radix", radix)
        return _sized(lib, "descend_monitor_rows_size", RowsArgs)

    return _library_with("rows", declare)


def radix_quantiles(
    data: np.ndarray, rows: Sequence[tuple[int, int]], qs: Sequence[float]
) -> list[list[float]] | None:
    """:func:`quantiles` with the selection of ``descend_monitor_rows`` (a most significant
    digit radix selection of the entries' order keys; ``data`` is not reordered): the same
    values. None without the kernels or where a row or q is refused."""
    lib = rows_library()
    if lib is None:
        return None
    data = np.ascontiguousarray(data, dtype=np.float32).reshape(-1)
    start = array("q", [r[0] for r in rows])
    count = array("q", [r[1] for r in rows])
    q = array("d", qs)
    out = np.empty((len(rows), len(qs)))
    rc = lib.descend_monitor_quantiles_radix(
        len(rows), start.buffer_info()[0], count.buffer_info()[0], len(data), data.ctypes.data,
        len(qs), q.buffer_info()[0], out.ctypes.data,
    )  # fmt: skip
    return None if rc else out.tolist()


MICRO_INFO = 4  # per held step: k, Σ‖gᵢ‖² of the parameters with several passes, has it, scale


class Rows:
    """The rows of a flush's held sampled steps in one native call (``descend_monitor_rows``),
    its fixed arguments built once for a layout and an arrangement: ``n`` parameters in
    ``groups`` (``param_group``: each one's), ``scopes`` as (first, end) parameter spans with
    their sampled coordinates ``parts`` (start, count), each parameter's sampled coordinates
    ``layer_parts`` (with layers), each sampled coordinate's group ``group_of``, and ``head``
    columns the caller gives before the native ones (see ``monitor.cpp`` for the columns).

    A call takes per held step, each kind end to end: its sums (n × 9 float64, stacked:
    P·n × 9), its sources at the sampled coordinates (keys × samples float32), its groups'
    rate programs (groups × RATE_FIELDS, see :func:`rate_program`), its mode (0: v̂ and the
    rate by the programs, 1: given, 2: none), the given rows (2 × samples float32, read for
    the steps of mode 1; none at all without such steps) and which parameters have a given
    rate (n: 0 or 1), its backward-pass codes (n: 0 none, 1 one, 2 several),
    :data:`MICRO_INFO` numbers and its ``lead`` ((value, present) of the head columns and
    of the skipped count). It returns the presence of every column (bytes, P × columns)
    and the present values in column order, rows end to
    end, and advances ``noise`` (the two averages, in and out). Every array's type and size
    is checked here before its address is handed over, every index and count again in C++,
    which writes nothing on a refusal (then None)."""

    def __init__(
        self,
        n: int,
        samples: int,
        param_group: Sequence[int],
        spans: Sequence[tuple[int, int]],
        parts: Sequence[tuple[int, int]],
        layer_parts: Sequence[tuple[int, int]] | None,
        group_of: np.ndarray,
        groups: int,
        head: int,
    ) -> None:
        self.n, self.samples, self.groups, self.head = n, samples, groups, head
        self.scopes = len(spans)
        self.layers = layer_parts is not None
        self.columns = head + 6 + 13 * self.scopes + 1 + (3 * n if self.layers else 0)
        self._keep = [
            np.ascontiguousarray(param_group, dtype=np.int64).reshape(n),
            np.ascontiguousarray(spans, dtype=np.int64).reshape(self.scopes, 2),
            np.ascontiguousarray(parts, dtype=np.int64).reshape(self.scopes, 2),
            np.ascontiguousarray(layer_parts or [(0, 0)] * n, dtype=np.int64).reshape(n, 2),
            np.ascontiguousarray(group_of, dtype=np.int64).reshape(samples),
        ]
        self._noise = array("d", [0.0, 0.0])
        args = RowsArgs(0, n, 0, samples, groups)
        args.param_group, args.span, args.part, args.layer_part, args.group_of = (
            a.ctypes.data for a in self._keep
        )
        args.scopes, args.layers = self.scopes, int(self.layers)
        args.noise = self._noise.buffer_info()[0]
        args.head, args.columns = head, self.columns
        self._args = args
        self._args_ref = ctypes.pointer(args)

    def __call__(
        self,
        lib,
        sums: np.ndarray,
        gathered: np.ndarray,
        programs: array,
        mode: array,
        given: np.ndarray,
        given_eff: array,
        micro: array,
        micro_info: array,
        lead: array,
        noise: list[float],
        noise_beta: float,
        unit: float,
    ) -> tuple[bytes, list[float]] | None:
        p = len(micro_info) // MICRO_INFO
        n, t = self.n, self.columns
        if (
            sums.dtype != np.float64
            or sums.shape != (p * n, SUMS)
            or not sums.flags.c_contiguous
            or gathered.dtype != np.float32
            or gathered.ndim != 1
            or not gathered.flags.c_contiguous
            or gathered.size % max(p * self.samples, 1)
            or programs.typecode != "d"
            or len(programs) != p * self.groups * RATE_FIELDS
            or mode.typecode != "q"
            or len(mode) != p
            or given.dtype != np.float32
            or given.size != (2 * p * self.samples if 1 in mode else 0)
            or not given.flags.c_contiguous
            or given_eff.typecode != "q"
            or len(given_eff) != p * n
            or micro.typecode != "q"
            or len(micro) != p * n
            or micro_info.typecode != "d"
            or len(micro_info) != p * MICRO_INFO
            or lead.typecode != "d"
            or len(lead) != p * 2 * (self.head + 1)
        ):
            return None
        keys = gathered.size // (p * self.samples) if p * self.samples else 0
        present = array("B", bytes(p * t))
        packed = array("d", bytes(8 * p * t))
        args = self._args
        args.rows, args.keys = p, keys
        args.sums, args.gathered = sums.ctypes.data, gathered.ctypes.data
        args.programs, args.micro = programs.buffer_info()[0], micro.buffer_info()[0]
        args.mode, args.given = mode.buffer_info()[0], given.ctypes.data
        args.given_eff = given_eff.buffer_info()[0]
        args.micro_info, args.lead = micro_info.buffer_info()[0], lead.buffer_info()[0]
        args.present, args.packed = present.buffer_info()[0], packed.buffer_info()[0]
        args.noise_beta, args.unit = float(noise_beta), float(unit)
        self._noise[0], self._noise[1] = noise
        rc = lib.descend_monitor_rows(self._args_ref)
        args.sums = args.gathered = args.programs = args.micro = args.micro_info = None
        args.lead = args.present = args.packed = args.mode = args.given = args.given_eff = None
        if rc:
            return None
        noise[0], noise[1] = self._noise
        return present.tobytes(), packed.tolist()
