"""Both paths of the two places of ``native/monitor.cpp`` whose code the build picks from the
CPU (``-march=native``), run on one machine through the portable switch
(:func:`descend.monitor.fused.portable_paths`), each case asserting through
``descend_monitor_paths`` (:func:`fused.paths`) which path ran:

- the radix selection's gather (``gather_digits``): AVX-512, sixteen keys at a time (the
  "simd" case), or the scalar loop ("portable"; the AVX-512 build's tail too), under
  :func:`fused.radix_quantiles` and ``descend_monitor_rows`` (:class:`fused.Rows`), on rows
  of at least 16 entries and not multiples of 16, so the vector body and the tail both run;
- the TensorBoard records' CRC-32C (``Crc32c``): the CPU's crc32 instruction ("hardware",
  8 bytes a step and a byte tail) or the table ("portable"), under the events encoder.

Each path is held to an independent reference — the quantiles of the per-row
``std::nth_element`` kernel (:func:`fused.quantiles`, bit for bit) and numpy's; the bytes of
the Python encoder (``tf_record(scalar_event(…))``, TensorBoard's masked CRC) — and the fast
path's results to the portable path's, bit for bit.

Where this build has no fast path for a place, its fast case checks that this is right —
the compiler, asked for its predefined macros under the build's flags (``-dM -E``), does
not define ``__AVX512F__`` (``__SSE4_2__``; ``__ARM_FEATURE_CRC32`` on ARM), which is what
``monitor.cpp``'s ``#if`` reads — and then that the default (switch off) runs the portable
code: no case skips. A build that should have the fast path and does not, or has one the
CPU lacks (``avx512f``, ``sse4_2``, ``crc32`` in ``/proc/cpuinfo``), fails, under
``CI=true`` as anywhere; CI's CPU (AMD Zen 4) has both, so there both paths run.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
from array import array
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from conftest import require_kernels
from descend.monitor import fused


@pytest.fixture(autouse=True)
def _kernels():
    require_kernels()


@cache
def _cpu_flags() -> frozenset[str]:
    """The feature flags of the first CPU in /proc/cpuinfo (``flags`` on x86, ``Features``
    on ARM); empty where there is no such file."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


@cache
def _macros() -> frozenset[str]:
    """The compiler's predefined macros under the build's flags (``-dM -E``): what
    ``monitor.cpp``'s ``#if``s read, whatever the flags (``-march=native``, another level,
    ``-m…``)."""
    from descend.native import build

    cxx = build._compiler()
    assert cxx, "the kernels are built, so the compiler must be there"
    flags = [f for f in build.FLAGS if f not in ("-shared", "-fPIC")]
    cmd = [cxx, *flags, "-dM", "-E", "-x", "c++", os.devnull]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    return frozenset(line.split()[1] for line in out.splitlines() if line.startswith("#define "))


def _should_build(place: str) -> tuple[bool, str]:
    """Whether the build should hold ``place``'s fast path ("gather" or "crc"), from the
    compiler's macros under the build's flags, and why (for the failure)."""
    macros = _macros()
    if place == "gather":  # AVX-512 only (monitor.cpp has no other vector gather)
        need = "__AVX512F__"
    elif "__x86_64__" in macros:
        need = "__SSE4_2__"
    elif "__aarch64__" in macros:
        need = "__ARM_FEATURE_CRC32"
    else:
        return False, f"no crc32 instruction is used on {platform.machine()}"
    should = need in macros
    return should, f"the compiler {'defines' if should else 'does not define'} {need}"


CPU_FLAG = {"gather": ("avx512f",), "crc": ("sse4_2", "crc32")}  # /proc/cpuinfo's names


def _built(place: str) -> bool:
    now = fused.paths()
    return now.simd_gather_built if place == "gather" else now.hardware_crc_built


def _select(place: str, path: str):
    """``fused.portable_paths`` for ``path`` ("portable", or the fast one), after checking
    (fast) that the build holds the fast path exactly where it should (where it rightly does
    not, the fast case runs the default, which is then the portable code: see
    :func:`_assert_ran`)."""
    if path != "portable":
        built, (should, why) = _built(place), _should_build(place)
        assert built == should, f"the {place} fast path is {'' if built else 'not '}built: {why}"
        cpu = _cpu_flags()
        if built and cpu:  # code this CPU could not run would be a build defect
            assert any(f in cpu for f in CPU_FLAG[place]), f"the CPU lacks {CPU_FLAG[place]}"
    return fused.portable_paths(path == "portable")


def _assert_ran(place: str, path: str) -> None:
    """That ``place`` takes ``path`` now and that only that path ran since the record was
    cleared (on entering ``fused.portable_paths``): ``descend_monitor_paths``' bits, marked
    where the code runs. The fast path of a build without it (rightly: :func:`_select`) is
    the portable code."""
    if path != "portable" and not _built(place):
        path = "portable"
    now = fused.paths()
    if place == "gather":
        got = (now.simd_gather, now.simd_gather_ran, now.scalar_gather_ran)
    else:
        got = (now.hardware_crc, now.hardware_crc_ran, now.table_crc_ran)
    assert got == ((False, False, True) if path == "portable" else (True, True, False)), now


def _rows_data():
    """Rows for the selection: each ≥ 16 entries and not a multiple of 16 (the AVX-512 body
    and its tail), most > 32 (a bucket of ≤ 32 is ranked without a gather), with wide and
    narrow magnitudes, ties, a cluster differing in the low bits only, ±0 and non-finite
    entries; and their (start, count) spans."""
    rng = np.random.default_rng(7)
    cluster = np.float32(1) + rng.integers(0, 2048, 3001).astype(np.float32) * np.float32(2**-23)
    rows = [
        rng.standard_normal(17).astype(np.float32),
        rng.integers(-3, 4, 47).astype(np.float32),
        np.concatenate([rng.standard_normal(40), np.full(30, 5.0)]).astype(np.float32),
        np.exp(rng.uniform(-60, 5, 2049)).astype(np.float32),  # many magnitudes (v̂)
        rng.choice(np.float32([-2.5, -0.0, 0.0, 1e-30, 3.0, 7e20]), 1023),
        cluster,
        rng.standard_normal(5003).astype(np.float32),
        -np.exp(rng.uniform(-20, 20, 999)).astype(np.float32),
    ]
    rows[1][[2, 5, 11]] = [np.nan, np.inf, -np.inf]
    rows[6][::7] = np.nan
    assert all(len(r) >= 16 and len(r) % 16 for r in rows)
    spans = list(zip(np.cumsum([0] + [len(r) for r in rows[:-1]]).tolist(), map(len, rows)))
    return rows, np.concatenate(rows), spans


@pytest.mark.parametrize("path", ["simd", "portable"])
def test_radix_quantiles_on_each_gather_path(path):
    rows, data, spans = _rows_data()
    got = {}
    for qs in ((0.5,), (0.0, 0.1, 0.5, 0.9, 1.0), tuple(np.linspace(0, 1, 31))):
        with _select("gather", path):
            got[qs] = fused.radix_quantiles(data, spans, qs)
            _assert_ran("gather", path)
        # the per-row nth_element kernel (no radix gather) bit for bit, numpy to 1e-12
        np.testing.assert_array_equal(got[qs], fused.quantiles(data, spans, qs))
        for r, values in zip(rows, got[qs]):
            finite = r[np.isfinite(r)].astype(np.float64)
            np.testing.assert_allclose(values, np.quantile(finite, qs), rtol=1e-12, atol=0)
    if path == "simd":  # and the portable gather's bits, directly
        with fused.portable_paths():
            for qs, want in got.items():
                np.testing.assert_array_equal(fused.radix_quantiles(data, spans, qs), want)
            _assert_ran("gather", "portable")
    assert not fused.paths().portable  # the switch restored


SAMPLES, LAYER = 1237, 611  # two parameters' sampled coordinates: 611 and 626 (not ×16)
ADAM = [0, 1, 0.25, 0, -1, 1, 0.25, 0, 1e-3, 0.9, 1e-8]  # v̂ = v/0.25, lr/(0.9(√v̂ + ε))


def _rows_call(rows: fused.Rows, v: np.ndarray, given: np.ndarray):
    """Two held steps of ``descend_monitor_rows`` over one source ``v``: step 0 by the Adam
    program (mode 0: v̂ and the rate selected as a pair), step 1 with ``given`` rows (mode
    1: each selected alone); each row's columns as float64 (NaN where absent)."""
    got = rows(
        fused.rows_library(),
        np.ones((4, fused.SUMS)),
        np.concatenate([v, v]),
        array("d", ADAM * 2),
        array("q", [0, 1]),
        np.concatenate([np.zeros(2 * SAMPLES, np.float32), given]),
        array("q", [1, 1, 1, 1]),
        array("q", [1, 1, 1, 1]),
        array("d", [1, 0, 0, 1] * 2),
        array("d", [1e-3, 1, 0, 0, 0, 0] * 2),
        [0.0, 0.0],
        0.9,
        1,
    )
    assert got is not None
    present, packed = got
    full = np.full(2 * rows.columns, np.nan)
    on = np.frombuffer(present, np.uint8).astype(bool)
    full[on] = packed[: on.sum()]
    return full.reshape(2, rows.columns), got


@pytest.mark.parametrize("path", ["simd", "portable"])
def test_native_rows_quantiles_on_each_gather_path(path):
    rng = np.random.default_rng(13)
    v = np.exp(rng.uniform(-40, 0, SAMPLES)).astype(np.float32)
    v[::9] = 0.0
    v[::13] = v[5]  # ties
    given = np.concatenate([rng.standard_normal(SAMPLES), rng.exponential(1e-3, SAMPLES)])
    given = given.astype(np.float32)
    parts = [(0, LAYER), (LAYER, SAMPLES - LAYER)]
    rows = fused.Rows(2, SAMPLES, [0, 0], [(0, 2)], [(0, SAMPLES)], parts, np.zeros(SAMPLES), 1, 2)
    with _select("gather", path):
        values, raw = _rows_call(rows, v, given)
        _assert_ran("gather", path)
    # the reference: v̂ and the rate by descend_monitor_rates (step 0) or as given (step 1),
    # their quantiles by the nth_element kernel
    rated = fused.rates([ADAM], v[None], np.zeros(SAMPLES, np.int64))
    c_quant = rows.head + 6 + 7 * rows.scopes + 1  # v̂ p10 p50 p90, rate p10 p50 p90
    c_layer = c_quant + 6 * rows.scopes  # per parameter: ratio, ‖g‖, the rate's median
    for step, (v_hat, rate) in enumerate([rated, given.reshape(2, SAMPLES)]):
        want = fused.quantiles(
            np.concatenate([v_hat, rate]), [(0, SAMPLES), (SAMPLES, SAMPLES)], (0.1, 0.5, 0.9)
        )
        np.testing.assert_array_equal(values[step, c_quant : c_quant + 6], np.ravel(want))
        medians = fused.quantiles(rate, parts, (0.5,))
        np.testing.assert_array_equal(values[step, c_layer + 2 :: 3], np.ravel(medians))
    if path == "simd":  # every byte of the portable path's output
        with fused.portable_paths():
            assert _rows_call(rows, v, given)[1] == raw
            _assert_ran("gather", "portable")


def _records(blob: bytes) -> list[int]:
    """The data lengths of the TFRecords in ``blob`` (8-byte length, 4 CRC, data, 4 CRC)."""
    sizes, at = [], 0
    while at < len(blob):
        size = int.from_bytes(blob[at : at + 8], "little")
        sizes.append(size)
        at += 16 + size
    assert at == len(blob)
    return sizes


@pytest.mark.parametrize("path", ["hardware", "portable"])
def test_event_records_on_each_crc_path(path):
    from descend.monitor.sinks import _masked_crc, _NativeEvents, scalar_event, tf_record

    # tags of 1 .. 24 characters (one and two per row): events of every length mod 8, so the
    # instruction's 8-byte steps and its byte tail both run; the 8-byte header once a record
    rows = [(step, {"t" * k: 0.5 * k}) for step, k in enumerate(range(1, 25))]
    rows += [(2**40 + k, {"a" * k: -1e300, "é" * k: math.nan}) for k in range(1, 12)]
    rows.append((7, {}))
    want = b"".join(tf_record(scalar_event(1.7e9, s, d, {}), _masked_crc()) for s, d in rows)
    assert {size % 8 for size in _records(want)} == set(range(8))
    native = _NativeEvents.make()
    with _select("crc", path):
        got = bytes(native(1.7e9, rows))
        _assert_ran("crc", path)
    assert got == want
    if path == "hardware":
        with fused.portable_paths():
            assert bytes(native(1.7e9, rows)) == got
            _assert_ran("crc", "portable")


def _switch() -> tuple[bool, ...]:
    """:func:`fused.paths` without the record of what ran: what is built and taken now."""
    return fused.paths()[:5]


def test_the_switch_is_checked_restored_and_says_when_it_cannot_work(monkeypatch):
    lib = fused.paths_library()
    default = _switch()
    built_gather, gather, built_crc, crc, portable = default
    assert not portable
    # taken exactly where built while the switch is off
    assert (gather, crc) == (built_gather, built_crc)
    for bad in (2, -1, 16):  # refused, nothing changed
        assert lib.descend_monitor_set_portable(bad) == 1
        assert _switch() == default
    for bad in (1, "yes", None, 0.0):
        with pytest.raises(ValueError, match="on must be True or False"):
            fused.set_portable(bad)
    assert _switch() == default
    with pytest.raises(KeyError):  # restored on an exception, nested blocks too
        with fused.portable_paths() as outer:
            assert outer[:5] == (built_gather, False, built_crc, False, True)
            assert not any(outer[5:])  # the record cleared
            with fused.portable_paths(False) as inner:
                assert inner[:5] == default
            assert _switch() == outer[:5]
            raise KeyError("inside")
    assert _switch() == default
    fused.clear_taken()
    assert not any(fused.paths()[5:])
    # without the kernels: a RuntimeError naming why, not a silent no-op
    monkeypatch.setattr(fused, "library", lambda: None)
    calls = (fused.paths, fused.clear_taken, lambda: fused.set_portable(True))
    for call in (*calls, fused.portable_paths().__enter__):
        with pytest.raises(RuntimeError, match="kernels are unavailable"):
            call()
    monkeypatch.undo()
    assert _switch() == default
