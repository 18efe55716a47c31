"""The flush's rows in one native call (``descend_monitor_rows``) against their reference, the
Python rows (``Monitor._finish_all`` step by step: ``_clip_and_noise``, ``_rates``,
``_select_all``, ``_finish``), bit for bit over the same reads, for every optimizer kind the
kernels read, with two groups at different learning rates, a scheduler changing them
between sampled steps, a skipped non-finite step, two backward passes per step and without
the layer tags; the radix selection it uses against ``descend_monitor_quantiles`` and numpy;
and refused arguments written nowhere."""

from __future__ import annotations

import ctypes
import math
from array import array

import numpy as np
import pytest
import torch

from conftest import require_kernels
from descend import optim
from descend.monitor import Monitor, fused, stats


@pytest.fixture(autouse=True)
def _kernels():
    require_kernels()


MAKERS = {
    "adam_fused": lambda p: optim.Adam(p, lr=1e-2, fused=True, nonfinite="skip"),
    "adam_chain": lambda p: optim.Adam(p, lr=1e-2, fused=False, nonfinite="skip"),
    "adamw": lambda p: optim.AdamW(p, lr=1e-2, weight_decay=0.1, nonfinite="skip"),
    "amsgrad": lambda p: optim.AMSGrad(p, lr=1e-2, nonfinite="skip"),
    "nadam": lambda p: optim.NAdam(p, lr=1e-2, nonfinite="skip"),
    "rmsprop_centered": lambda p: optim.RMSprop(p, lr=1e-2, centered=True, momentum=0.9),
    "adagrad": lambda p: optim.Adagrad(p, lr=1e-2, lr_decay=0.01),
    "sgd_momentum": lambda p: optim.SGD(p, lr=1e-2, momentum=0.9, nonfinite="skip"),
    "torch_adam": lambda p: torch.optim.Adam(p, lr=1e-2),
    "torch_adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, amsgrad=True),
    "torch_sgd": lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9),
    "torch_rmsprop": lambda p: torch.optim.RMSprop(p, lr=1e-2, centered=True),
    "torch_adagrad": lambda p: torch.optim.Adagrad(p, lr=1e-2, lr_decay=0.05),
}


def _run(make, native: bool, monkeypatch, *, layers=True, passes=2, nan_at=5, steps=11, clip=0):
    """Rows of a monitored run (every=2, defer=3: flushes of 3, 3 and the rest), and how
    many flushes the native call made (None: it was switched off)."""
    made = []
    if native:
        real = Monitor._native_rows

        def counted(self, pendings):
            rows = real(self, pendings)
            made.append(rows is not None)
            return rows

        monkeypatch.setattr(Monitor, "_native_rows", counted)
    else:
        monkeypatch.setattr(Monitor, "_native_rows", lambda self, pendings: None)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    opt = make([{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 3e-3}])
    schedule = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    mon = Monitor(opt, model, every=2, defer=3, layers=layers, batch_size=4, fused=True)
    x, y = torch.randn(16, 6), torch.randn(16, 3)
    for step in range(1, steps + 1):
        opt.zero_grad()
        for i in range(passes):
            part = slice(8 * i, 8 * i + 8) if passes == 2 else slice(None)
            loss = torch.nn.functional.mse_loss(model(x[part]), y[part])
            if step == nan_at and i == 0:
                loss = loss * float("nan")
            loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        schedule.step()
        mon.log_loss(loss.detach())
    rows = mon.rows
    assert mon.last_path == "fused"
    mon.close()
    monkeypatch.undo()
    return rows, made


def _same(native: list[dict], reference: list[dict]) -> None:
    assert [list(r) for r in native] == [list(r) for r in reference]  # tags and their order
    for a, b in zip(native, reference):
        for tag, value in a.items():
            assert np.array_equal(value, b[tag], equal_nan=True), (tag, value, b[tag])


SKIPPING = {"adam_fused", "adam_chain", "adamw", "amsgrad", "nadam", "sgd_momentum"}


@pytest.mark.parametrize("name", list(MAKERS))
def test_native_rows_equal_the_python_rows_bit_for_bit(name, monkeypatch):
    nan_at = 5 if name in SKIPPING else 0  # a non-finite gradient where the step is skipped
    native, made = _run(MAKERS[name], True, monkeypatch, nan_at=nan_at)
    reference, _ = _run(MAKERS[name], False, monkeypatch, nan_at=nan_at)
    assert made == [True, True], made  # every flush in one call
    _same(native, reference)
    sampled = [r for r in native if "opt/grad_norm" in r]
    assert len(sampled) == 6
    # StepLR halves the lr every 3 steps: the lr each sampled step (1, 3, …, 11) used
    halved = (1, 1, 0.5, 0.25, 0.25, 0.125)
    assert [r["opt/group0/lr"] for r in sampled] == [1e-2 * f for f in halved]
    assert [r["opt/group1/lr"] for r in sampled][-1] == 3e-3 * 0.125
    assert all(r["opt/micro_batches"] == 2.0 for r in sampled)
    assert "opt/gns_trace" in sampled[0] and any("opt/noise_scale" in r for r in sampled)
    assert "layer/0.weight/grad_norm" in sampled[0]
    if nan_at:
        assert [r["opt/nonfinite"] for r in sampled] == [0, 0, 1, 0, 0, 0]
        assert [r["opt/skipped_steps"] for r in sampled] == [0, 0, 1, 1, 1, 1]
    if name not in ("sgd_momentum", "torch_sgd"):
        assert "opt/group1/eff_lr_p50" in sampled[-1] and "opt/v_hat_p90" in sampled[-1]
        assert "layer/2.bias/eff_lr_p50" in sampled[-1]


@pytest.mark.parametrize("name", ["adam_fused", "rmsprop_centered", "torch_sgd"])
def test_native_rows_without_layers_and_with_one_pass(name, monkeypatch):
    native, made = _run(MAKERS[name], True, monkeypatch, layers=False, passes=1, nan_at=0)
    reference, _ = _run(MAKERS[name], False, monkeypatch, layers=False, passes=1, nan_at=0)
    assert made == [True, True]
    _same(native, reference)
    assert not any(tag.startswith("layer/") for r in native for tag in r)
    assert all("opt/gns_g2" not in r for r in native)
    assert any(r.get("opt/micro_batches") == 1.0 for r in native)


def test_radix_quantiles_equal_the_kernels_and_numpy():
    rng = np.random.default_rng(3)
    rows = [rng.integers(-3, 4, n).astype(np.float32) for n in (1, 2, 3, 7, 33, 40, 100)]
    rows += [
        rng.standard_normal(2048).astype(np.float32),
        np.exp(rng.uniform(-60, 5, 2048)).astype(np.float32),  # many magnitudes (v̂)
        (1e5 / (1 + rng.exponential(1e-3, 2048))).astype(np.float32),  # bunched near 1e5
        np.full(300, 0.25, np.float32),  # one value
        np.float32(1) + rng.integers(0, 3, 600).astype(np.float32) * np.float32(2**-23),
        # differing in bits 0..10 only: a first digit at bit 3, then one overlapping it at 0
        np.float32(1) + rng.integers(0, 2048, 3000).astype(np.float32) * np.float32(2**-23),
        rng.standard_normal(5000).astype(np.float32),
    ]
    rows[0][0] = -0.0
    rows[4][[1, 5, 9]] = [np.nan, np.inf, -np.inf]
    rows[7][::7] = np.nan
    rows.append(np.array([np.nan, np.inf], np.float32))
    data = np.concatenate(rows)
    spans, at = [], 0
    for r in rows:
        spans.append((at, len(r)))
        at += len(r)
    for qs in ((0.0, 0.1, 0.5, 0.9, 1.0), (0.5,), stats.QUANTILES):
        got = fused.radix_quantiles(data, spans, qs)
        # the same bits as the per-row kernel
        np.testing.assert_array_equal(got, fused.quantiles(data, spans, qs))
        for r, values in zip(rows, got):
            finite = r[np.isfinite(r)].astype(np.float64)
            if finite.size == 0:
                assert all(math.isnan(v) for v in values)
            else:
                np.testing.assert_allclose(values, np.quantile(finite, qs), rtol=1e-12, atol=0)
    assert fused.radix_quantiles(data, [(len(data) - 1, 2)], (0.5,)) is None
    assert fused.radix_quantiles(data, [(0, 5)], (0.9, 0.1)) is None


def test_radix_selection_of_ties_clusters_and_many_ranks():
    # the selection's harder paths against the per-row kernel and numpy: a cluster holding
    # the median that differs in bits 0..1 only (levels of one bucket, then buckets of one
    # value), heavy ties, a bucket of <= 32 ranked whole, 62 ranks (many buckets wanted,
    # each gathered alone) and 80 (a sort); lengths off a multiple of 16 (the vector tail)
    rng = np.random.default_rng(11)
    wide = np.exp(rng.uniform(-60, 5, 1500)).astype(np.float32)
    cluster = (np.float32(1) + rng.integers(0, 4, 1501) * np.float32(2**-23)).astype(np.float32)
    rows = [
        np.concatenate([wide, cluster]),
        rng.choice(np.float32([-2.5, -0.0, 0.0, 1e-30, 3.0, 7e20]), 2047),
        np.concatenate([rng.standard_normal(40), np.full(30, 5.0)]).astype(np.float32),
        -np.exp(rng.uniform(-20, 20, 999)).astype(np.float32),
    ]
    data = np.concatenate(rows)
    spans = list(zip(np.cumsum([0] + [len(r) for r in rows[:-1]]).tolist(), map(len, rows)))
    for qs in ((0.5,), tuple(np.linspace(0, 1, 31)), tuple(np.linspace(0, 1, 40))):
        got = fused.radix_quantiles(data, spans, qs)
        np.testing.assert_array_equal(got, fused.quantiles(data, spans, qs))
        for r, values in zip(rows, got):
            want = np.quantile(r.astype(np.float64), qs)
            np.testing.assert_allclose(values, want, rtol=1e-12, atol=0)


def _direct(rows: fused.Rows, **change):
    """``descend_monitor_rows`` called on a one-step, one-parameter, one-group input with
    ``change`` applied to its arguments, its outputs and noise prefilled with sentinels:
    (return code, present, packed, noise)."""
    lib = fused.rows_library()
    sums = np.ones((1, fused.SUMS))
    gathered = np.ones((1, rows.samples), np.float32)
    program = array("d", [0, 1, 0.5, 0, -1, 1, 0.5, 0, 1e-3, 1.0, 1e-8])
    micro, info = array("q", [1]), array("d", [1, 0, 0, 1])
    mode, given_eff = array("q", [0]), array("q", [0])
    lead = array("d", [0.1, 1, 0.0, 0, 0.0, 0])
    noise = array("d", [7.0, 8.0])
    present = array("B", b"\x05" * rows.columns)
    packed = array("d", [-3.0] * rows.columns)
    args = fused.RowsArgs(1, rows.n, 1, rows.samples, rows.groups)
    args.sums, args.gathered, args.programs = sums.ctypes.data, gathered.ctypes.data, None
    keep = rows._keep
    args.param_group, args.span, args.part, args.layer_part, args.group_of = (
        a.ctypes.data for a in keep
    )
    args.scopes, args.layers, args.head, args.columns = (
        rows.scopes,
        int(rows.layers),
        2,
        rows.columns,
    )
    args.noise_beta, args.unit = 0.9, 1.0
    for field, value in change.items():
        if field == "program":
            program = array("d", value)
        elif field == "micro":
            micro = array("q", value)
        elif field == "lead":
            lead = array("d", value)
        elif field == "info":
            info = array("d", value)
        elif field == "mode":
            mode, given_eff = array("q", value[:1]), array("q", value[1:])
        else:
            setattr(args, field, value)
    args.programs, args.micro = program.buffer_info()[0], micro.buffer_info()[0]
    args.micro_info, args.lead = info.buffer_info()[0], lead.buffer_info()[0]
    args.noise = noise.buffer_info()[0]
    args.mode, args.given_eff = mode.buffer_info()[0], given_eff.buffer_info()[0]
    args.given = gathered.ctypes.data  # (read for mode 1 only)
    args.present, args.packed = present.buffer_info()[0], packed.buffer_info()[0]
    rc = lib.descend_monitor_rows(ctypes.byref(args))
    return rc, present.tobytes(), packed.tolist(), noise.tolist()


def test_native_rows_refuse_bad_arguments_and_write_nothing():
    require_kernels()
    rows = fused.Rows(1, 4, [0], [(0, 1)], [(0, 4)], [(0, 4)], np.zeros(4, np.int64), 1, 2)
    rc, present, packed, noise = _direct(rows)
    assert rc == 0 and present[:2] == b"\x01\x00" and packed[0] == 0.1  # lr, no bc
    untouched = (b"\x05" * rows.columns, [-3.0] * rows.columns, [7.0, 8.0])
    for change in (
        {"columns": rows.columns + 1},  # not the layout's column count
        {"head": -1},
        {"scopes": 0},
        {"layers": 2},
        {"samples": 3},  # a part past the sampled coordinates
        {"program": [1, 1, 0.5, 0, -1, 1, 0.5, 0, 1e-3, 1.0, 1e-8]},  # row 1 of 1 source
        {"program": [0, 0.5, 0.5, 0, -1, 1, 0.5, 0, 1e-3, 1.0, 1e-8]},  # a flag not 0 or 1
        {"micro": [3]},
        {"info": [0, 0, 0, 1]},  # no pass with a parameter counted
        {"info": [1.5, 0, 0, 1]},
        {"lead": [0.1, 0.5, 0.0, 0, 0.0, 0]},  # a presence not 0 or 1
        {"mode": [3, 0]},
        {"mode": [1, 2]},  # a given rate's code not 0 or 1
    ):
        rc, present, packed, noise = _direct(rows, **change)
        assert rc == 1, change
        assert (present, packed, noise) == untouched, change
    bad = fused.Rows(1, 4, [0], [(0, 2)], [(0, 4)], None, np.zeros(4, np.int64), 1, 2)
    assert _direct(bad)[0] == 1  # a span past the parameters
    bad = fused.Rows(1, 4, [1], [(0, 1)], [(0, 4)], None, np.zeros(4, np.int64), 1, 2)
    assert _direct(bad)[0] == 1  # a parameter in a group that is not there
    bad = fused.Rows(1, 4, [0], [(0, 1)], [(2, 3)], None, np.zeros(4, np.int64), 1, 2)
    assert _direct(bad)[0] == 1  # a part past the samples
    bad = fused.Rows(1, 4, [0], [(0, 1)], [(0, 4)], None, np.full(4, 1, np.int64), 1, 2)
    assert _direct(bad)[0] == 1  # a sampled coordinate in a group that is not there
    # the Python side refuses arrays of the wrong type or size before any call
    noise = [1.0, 2.0]
    call = [np.ones((1, fused.SUMS)), np.ones(4, np.float32), array("d", [0.0] * 11)]
    call += [array("q", [0]), np.zeros(0, np.float32), array("q", [0])]
    rest = (array("q", [1]), array("d", [1, 0, 0, 1]), array("d", [0.0] * 6), noise, 0.9, 1)
    lib = fused.rows_library()
    assert rows(lib, *call, *rest) is not None
    assert rows(lib, np.ones((2, fused.SUMS)), *call[1:], *rest) is None
    assert rows(lib, call[0], np.ones(4), *call[2:], *rest) is None
    assert rows(lib, *call[:2], array("d", [0.0] * 10), *call[3:], *rest) is None
    assert rows(lib, *call[:3], array("q", [1]), *call[4:], *rest) is None  # given missing
    assert rows(lib, *call, array("i", [1]), *rest[1:]) is None
    assert noise == [1.0, 2.0]  # k = 1: the averages stay


def _one_step(rows: fused.Rows, source: np.ndarray, program: list, mode: int):
    """``descend_monitor_rows`` on one step of one parameter and one source: mode 0 (the
    program computes v̂ and the rate, each scope's pair selected once where it can) or mode
    1 (the same rows, computed by ``descend_monitor_rates``, given: each selected alone)."""
    lib = fused.rows_library()
    given = np.zeros(0, np.float32)
    if mode == 1:
        given = fused.rates([program], source[None], np.zeros(rows.samples, np.int64))
        given = np.ascontiguousarray(given).reshape(-1)
    got = rows(
        lib,
        np.ones((1, fused.SUMS)),
        source.astype(np.float32),
        array("d", program if mode == 0 else [-1, 0, 1.0, -1, -1, 0, 1.0, 0, 0.0, 1.0, 0.0]),
        array("q", [mode]),
        given,
        array("q", [mode]),  # with mode 1 the parameter has a rate
        array("q", [1]),
        array("d", [1, 0, 0, 1]),
        array("d", [1e-3, 1, 0, 0, 0, 0]),
        [0.0, 0.0],
        0.9,
        1,
    )
    assert got is not None
    return got


def test_rate_quantiles_from_the_v_hat_selection_equal_their_own():
    rng = np.random.default_rng(5)
    size = 300
    rows = fused.Rows(1, size, [0], [(0, 1)], [(0, size)], [(0, size)], np.zeros(size), 1, 2)
    typical = np.exp(rng.uniform(-40, 0, size)).astype(np.float32)
    typical[::9] = 0.0
    typical[::13] = typical[5]  # ties
    planted = []
    for values in ([-0.0], [np.nan], [np.inf], [-1e-3]):
        x = typical.copy()
        x[[3, 70, 200]] = values[0]
        planted.append(x)
    adam = [0, 1, 0.25, 0, -1, 1, 0.25, 0, 1e-3, 0.9, 1e-8]
    programs = [
        adam,
        [0, 1, 0.25, 0, -1, 1, 0.25, 1, 1e-3, 0.9, 1e-8],  # ε inside the root
        [0, 0, 1.0, 0, -1, 0, 1.0, 0, 1e-2, 1.3, 1e-10],  # Adagrad: no division
        [0, 1, 0.25, 0, -1, 1, 0.25, 0, 0.0, 0.9, 1e-8],  # lr 0: every rate 0
        [0, 1, 0.25, 0, -1, 1, 0.25, 0, 1e-3, 0.9, 0.0],  # ε 0: the zeros' rates infinite
        [0, 1, 0.25, 0, -1, 1, 0.5, 0, 1e-3, 0.9, 1e-8],  # divided otherwise: not paired
    ]
    for source in [typical, *planted]:
        for program in programs:
            paired, alone = (_one_step(rows, source, program, m) for m in (0, 1))
            assert paired == alone, program
            v, e = fused.rates([program], source[None].astype(np.float32), np.zeros(size, int))
            value = dict(zip([c for c, on in enumerate(paired[0]) if on], paired[1]))
            first = 2 + 6 + 7 + 1  # head, micro and skipped, the scope, clipped
            for row, at in ((v, first), (e, first + 3)):
                got = [value.get(c, math.nan) for c in range(at, at + 3)]
                finite = row[np.isfinite(row)].astype(np.float64)
                want = np.quantile(finite, (0.1, 0.5, 0.9))
                np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


def test_native_rows_of_an_accumulating_clipped_optimizer(monkeypatch):
    # Accumulate(k=2, average): the pre-clip norm is the average's, from two micro-batches;
    # each micro-batch's gradient clipped in place before it is added (clipped = 1)
    from descend.optim.accumulate import Accumulate

    def make(groups):
        return Accumulate(optim.Adam(groups, lr=1e-2), k=2)

    options = {"passes": 1, "nan_at": 0, "steps": 12, "clip": 0.05}
    native, made = _run(make, True, monkeypatch, **options)
    reference, _ = _run(make, False, monkeypatch, **options)
    assert made == [True]  # 6 updates, sampled 1, 3, 5: one flush of three
    _same(native, reference)
    sampled = [r for r in native if "opt/grad_norm" in r]
    assert [r["opt/micro_batches"] for r in sampled] == [2.0, 2.0, 2.0]
    assert [r["opt/clipped"] for r in sampled] == [1.0, 1.0, 1.0]
    assert all("opt/noise_scale" in r or "opt/gns_g2" in r for r in sampled)


def test_kernel_quantiles_interpolate_as_python_does_bit_for_bit():
    # x + (y − x)·f with the product rounded first (stats._interpolate, flat.row_quantiles):
    # a fused multiply-add gave one p10/p90 in ~600 an ulp away from the torch path's
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((600, 2048)).astype(np.float32)
    spans = [(2048 * r, 2048) for r in range(len(rows))]
    for select in (fused.quantiles, fused.radix_quantiles):
        got = select(rows.reshape(-1), spans, stats.QUANTILES)
        want = [stats.quantiles(torch.from_numpy(r), stats.QUANTILES) for r in rows]
        assert got == want
