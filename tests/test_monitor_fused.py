"""The monitor's two paths — descend's C++ kernels (fused) and torch's operations — write the
same rows; the kernels' quantiles equal numpy's; what the kernels cannot read falls back (or
raises with fused=True) without a crash; deferred rows equal immediate ones."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from conftest import require_kernels
from descend import optim, train
from descend.monitor import Monitor, fused, stats


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _kernels():
    require_kernels()


COUNTS = ("opt/opposed_frac", "opt/nonfinite", "opt/clipped", "opt/micro_batches")


def _twin_runs(make_opt, steps=25, every=4, clip=0.5, **options):
    """The same digits MLP run twice, monitored through the kernels and through torch."""
    ds = train.load("digits")
    train.seed_everything(0)
    model = train.build("mlp", ds)
    twin = copy.deepcopy(model)
    runs = []
    for m, path in ((model, True), (twin, False)):
        opt = make_opt(m)
        mon = Monitor(opt, m, every=every, fused=path, **options)
        batches = list(ds.loader("train", 32, seed=0))
        for i in range(steps):
            x, y = batches[i % len(batches)]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(m(x), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), clip)
            opt.step()
            mon.log_loss(loss)
        runs.append(mon)
    return runs


def _groups(m):
    return [{"params": m[0].parameters()}, {"params": m[2].parameters(), "lr": 3e-3}]


MAKERS = {
    "torch-adam": lambda m: torch.optim.Adam(m.parameters(), lr=1e-3),
    "descend-adamw-groups": lambda m: optim.AdamW(_groups(m), lr=1e-3),
    "torch-sgd-momentum": lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9),
    "torch-rmsprop-centered": lambda m: torch.optim.RMSprop(m.parameters(), lr=1e-3, centered=True),
    "descend-adam-chain": lambda m: optim.Adam(m.parameters(), lr=1e-3, fused=False),
}


@pytest.mark.parametrize("name", list(MAKERS))
def test_fused_and_torch_paths_write_the_same_rows(name):
    fast, slow = _twin_runs(MAKERS[name])
    assert fast.last_path == "fused"
    assert slow.last_path == "torch"
    a, b = fast.rows, slow.rows
    assert [r["step"] for r in a] == [r["step"] for r in b]
    tags = set()
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for tag, value in ra.items():
            tags.add(tag)
            if tag in COUNTS or tag.endswith(("_p10", "_p50", "_p90", "lr", "loss")):
                # counts, and quantiles: the same sampled entries and formulas (float32
                # arithmetic rounds the same in numpy and torch)
                assert value == pytest.approx(rb[tag], rel=1e-6, abs=0), tag
            else:  # sums of float64 squares (kernel) against float32 squares (torch)
                assert value == pytest.approx(rb[tag], rel=2e-6, abs=1e-12), tag
    assert "opt/update_ratio" in tags and "opt/grad_norm_preclip" in tags
    if name != "torch-sgd-momentum":
        assert "opt/eff_lr_p50" in tags and "layer/0.weight/eff_lr_p50" in tags


def test_nonfinite_gradients_are_counted_the_same_on_both_paths():
    rows = []
    for path in (True, False):
        w = torch.nn.Parameter(torch.ones(6))
        opt = optim.SGD([w], lr=0.1, momentum=0.9, nonfinite="skip")
        mon = Monitor(opt, every=1, fused=path)
        for i in range(4):
            opt.zero_grad()
            scale = torch.tensor([1.0, 2.0, math.inf, -3.0, math.nan, 0.0]) if i % 2 else 1.0
            (w * scale).sum().backward()
            opt.step()
        assert mon.last_path == ("fused" if path else "torch")
        rows.append(mon.rows)
    fast, slow = rows
    assert [r["opt/nonfinite"] for r in fast] == [0, 1, 0, 1]
    for ra, rb in zip(fast, slow):
        for tag in ("opt/nonfinite", "opt/opposed_frac", "opt/grad_norm", "opt/update_norm"):
            assert ra[tag] == pytest.approx(rb[tag], rel=1e-6, nan_ok=True), tag
    # the skipped step: g = (1, 2, inf, -3, nan, 0) → 2 non-finite entries left out, ‖g‖ of the rest
    assert fast[1]["opt/grad_norm"] == pytest.approx(math.sqrt(1 + 4 + 9), rel=1e-6)
    assert fast[1]["opt/update_norm"] == 0.0


@pytest.mark.parametrize("n", [0, 1, 2, 7, 10, 513, 2048])
def test_kernel_quantiles_equal_numpys_on_the_finite_entries(n):
    rng = np.random.default_rng(n)
    rows, data = [], []
    at = 0
    for case in range(4):
        a = rng.standard_normal(n).astype(np.float32)
        if case == 1 and n > 4:
            a[:3] = [np.nan, np.inf, -np.inf]
        if case == 2:
            a = np.round(a)  # many ties (as v̂ = 0 for inputs that never fire)
        if case == 3 and n:
            a[:] = np.nan
        data.append(a)
        rows.append((at, n))
        at += n
    flat = np.concatenate(data) if at else np.zeros(0, np.float32)
    got = fused.quantiles(flat, rows, stats.QUANTILES)
    for a, values in zip(data, got):
        want = stats.quantiles(torch.from_numpy(a))
        np.testing.assert_allclose(values, want, rtol=1e-12, equal_nan=True)
    if at:  # the caller's array is untouched (the kernel reorders a copy)
        np.testing.assert_array_equal(flat, np.concatenate(data))


def test_kernels_refuse_bad_rows_and_indices_without_writing():
    data = np.arange(10, dtype=np.float32)
    assert fused.quantiles(data, [(5, 6)], (0.5,)) is None  # past the end
    assert fused.quantiles(data, [(0, 10)], (0.9, 0.1)) is None  # q not ascending
    a, b = torch.arange(6.0), torch.arange(4.0) + 100
    theta, zero = [a, b], [torch.zeros(6), torch.zeros(4)]
    flat_ = torch.cat(theta)

    def gather(sources, index):
        got = fused.read([6, 4], theta, zero, [None, None], flat_, flat_, sources, index)
        return None if got is None else got[1]

    out = gather([[a, b], [None, b]], np.array([0, 5, 6, 9]))
    np.testing.assert_array_equal(out[0], [0, 5, 100, 103])
    assert np.isnan(out[1, :2]).all() and out[1, 2:].tolist() == [100, 103]
    assert gather([[a, b]], np.array([10])) is None  # outside Σ numel
    assert gather([[a, b]], np.array([-1])) is None


def test_tensors_the_kernels_cannot_read_fall_back_or_raise():
    """A float64 model: the kernel check refuses it, the monitor reads it through torch (and
    says why); fused=True raises instead."""
    net = torch.nn.Linear(3, 2).double()
    x = torch.randn(8, 3, dtype=torch.float64)
    for path in (None, True):
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        mon = Monitor(opt, net, every=1, fused=path)
        opt.zero_grad()
        net(x).pow(2).mean().backward()
        if path is True:
            refused = r"Monitor\(fused=True\) could not use the kernels"
            with pytest.raises(RuntimeError, match=refused):
                opt.step()
            mon.close()
            continue
        opt.step()
        assert mon.last_path.startswith("torch: a tensor the kernels do not take")
        w = net.weight.grad.double()
        b = net.bias.grad.double()
        assert mon.rows[-1]["opt/grad_norm"] == pytest.approx(
            float(torch.cat([w.flatten(), b]).norm())
        )
        mon.close()


def test_deferred_rows_equal_immediate_ones_under_a_schedule():
    """defer=8 computes the rates of 8 sampled steps at once, after the learning rate has
    moved on: each row must still use its own step's hyperparameters, and the sinks get the
    rows in the order they were made."""

    class Count:
        def __init__(self):
            self.rows = []

        def write(self, step, scalars):
            self.rows.append((step, dict(scalars)))

        def close(self):
            pass

    results = []
    for defer in (1, 8):
        ds = train.load("digits")
        train.seed_everything(0)
        model = train.build("mlp", ds)
        opt = optim.Adam(model.parameters(), lr=1e-2)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
        sink = Count()
        mon = Monitor(opt, model, every=2, defer=defer, log=sink)
        batches = list(ds.loader("train", 32, seed=0))
        for i in range(20):
            x, y = batches[i]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            sched.step()
            mon.log_loss(loss)
            if defer == 8 and i == 12:  # 7 sampled steps held: nothing written yet
                assert not any("opt/update_ratio" in r for _, r in sink.rows)
        mon.close()
        results.append(sink.rows)
    now, later = results
    assert [s for s, _ in now] == [s for s, _ in later]
    assert [sorted(r) for _, r in now] == [sorted(r) for _, r in later]
    for (_, a), (_, b) in zip(now, later):
        assert a == b
    lrs = [r["opt/group0/lr"] for _, r in now if "opt/group0/lr" in r]
    assert len(set(lrs)) > 3  # the schedule moved the lr between sampled steps


def test_segment_sums_on_the_host_equal_the_device_loop():
    """The torch path sums per parameter with numpy's reduceat on the CPU and one sum per
    parameter elsewhere (an accelerator): both in float64, the same sums."""
    from descend.monitor import flat

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((8, 1111)).astype(np.float32))
    lengths = [1000, 0, 100, 10, 1]
    want = [[float(c.double().sum()) for c in row.split(lengths)] for row in x]
    for got in (flat.reduceat_sums(x, lengths), flat.loop_sums(x, lengths)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_kernel_events_are_the_python_encoders_bytes():
    """The TensorBoard sink's C++ encoder (events framed as TFRecords, CRC-32C) writes the
    bytes of ``tf_record(scalar_event(…))``, which test_monitor holds to protobuf's own
    serialization, checksummed by TensorBoard's masked CRC; values it cannot take: None."""
    from descend.monitor.sinks import _masked_crc, _NativeEvents, scalar_event, tf_record

    cases = [
        {"loss": 0.25},
        {},
        {"opt/x": math.nan, "layer/é.w/ü": -math.inf, "t" * 200: 3e38, "big": 1e300},
        {"neg": -1e300, "tiny": 1e-45, "one": 1, "zero": -0.0, "f32": np.float32(0.1)},
        {"loss": 0.5},
    ]
    rows = [(step, row) for step in (0, 1, 127, 128, 300, 2**40, -5) for row in cases]
    native = _NativeEvents.make()
    for batch in (rows, rows[:1], []):
        want = b"".join(tf_record(scalar_event(1.7e9, s, d, {}), _masked_crc()) for s, d in batch)
        assert bytes(native(1.7e9, batch)) == want
    assert native(1.0, [(1, {"x": "not a number"})]) is None
    assert native(1.0, [(2**63, {"x": 1.0})]) is None  # past int64


def test_loss_rows_given_as_floats_are_the_bytes_of_their_dicts(tmp_path, monkeypatch):
    """The monitor hands the TensorBoard sink each loss row as its float (no dict per step):
    C++ and Python encoders, and the SummaryWriter path, write the bytes of ``{"loss": x}``;
    sinks without ``loss_rows`` get the dicts, and :attr:`Monitor.rows` the same rows."""
    from descend.monitor import sinks
    from descend.monitor.core import Monitor
    from descend.monitor.sinks import _masked_crc, scalar_event, tf_record

    crc = _masked_crc()

    row = {"opt/a": 1.5, "opt/b": -0.0, "loss": 2.0}
    shapes = [
        [(1, 0.25), (2, 0.5), (3, row), (4, 0.75), (5, row), (6, row), (7, 1.0), (8, 1e300)],
        [(3, row), (4, 0.125)],
        [(9, 3.0)],
        [(1, row)],
    ]
    native = sinks._NativeEvents.make()
    for rows in shapes:
        dicts = [(s, {"loss": x}) if type(x) is float else (s, x) for s, x in rows]
        assert bytes(native(1.7e9, rows)) == bytes(native(1.7e9, dicts))
        # the same arrangement again (its kept offsets and tags), other steps and values
        again = [
            (s + 7, x * 3 if type(x) is float else dict.fromkeys(x, -x["loss"])) for s, x in rows
        ]
        want = b"".join(
            tf_record(scalar_event(1.0, s, {"loss": x} if type(x) is float else x, {}), crc)
            for s, x in again
        )
        assert bytes(native(1.0, again)) == want
    for rows in ([(1, 0.5), (2, {"a": 1.0})], [(1, 0.5), (2, {"b": 2.0, "c": 3.0})]):
        want = tf_record(scalar_event(1.0, 1, {"loss": 0.5}, {}), crc)
        want += tf_record(scalar_event(1.0, 2, rows[1][1], {}), crc)
        assert bytes(native(1.0, rows)) == want  # other keys at the same places
    monkeypatch.setattr(sinks.time, "time", lambda: 1.7e9)
    written = {}
    for name, native_on in (("cpp", True), ("python", False)):
        for form in ("floats", "dicts"):
            tb = sinks.TensorBoard(tmp_path / f"{name}-{form}")
            tb._native = sinks._NativeEvents.make() if native_on else None
            for rows in shapes:
                if form == "dicts":
                    rows = [(s, {"loss": x}) if type(x) is float else (s, x) for s, x in rows]
                tb.write_many(rows)
            tb.close()
            (path,) = (tmp_path / f"{name}-{form}").iterdir()
            written[name, form] = path.read_bytes()
    assert len(set(written.values())) == 1

    class Recorder:
        def __init__(self):
            self.got = []

        def write(self, step, scalars):
            self.got.append((step, scalars))

        def close(self):
            pass

    recorder = Recorder()
    net = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    mon = Monitor(opt, net, every=2, log=[recorder], defer=2)
    for i in range(5):
        opt.zero_grad()
        loss = net(torch.ones(1, 2)).sum()
        loss.backward()
        opt.step()
        mon.log_loss(loss if i % 2 else loss.item())
    mon.close()
    assert all(type(scalars) is dict for _, scalars in recorder.got)
    assert [{"step": s, **d} for s, d in recorder.got] == mon.rows
    assert [r["step"] for r in mon.rows if "loss" in r] == [1, 2, 3, 4, 5]


def _mlp_run(steps=12, every=2, patch=None, **options):
    ds = train.load("digits")
    train.seed_everything(0)
    model = train.build("mlp", ds)
    opt = optim.Adam(model.parameters(), lr=1e-2)
    mon = Monitor(opt, model, every=every, **options)
    if patch is not None:
        patch(mon)
    batches = list(ds.loader("train", 32, seed=0))
    for i in range(steps):
        x, y = batches[i]
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        opt.step()
        mon.log_loss(loss)
    return mon, model, opt


def test_prebuilt_reader_writes_the_general_reads_rows(monkeypatch):
    """After the first sampled step the read goes through the prebuilt fused.Reader (two
    native calls); its rows are bit for bit those of the general read (per-key checks, one
    fused.read call) on the same run."""
    calls = []
    real = fused.Reader.__call__
    monkeypatch.setattr(fused.Reader, "__call__", lambda *a: calls.append(1) or real(*a))
    fast, _, _ = _mlp_run()
    general, _, _ = _mlp_run(patch=lambda mon: setattr(mon, "_fast_read", lambda layout: None))
    assert len(calls) == 5  # sampled steps 3, 5, …, 11 (step 1 builds the reader)
    assert fast.last_path == general.last_path == "fused"
    assert fast.rows == general.rows


def test_reader_refuses_a_changed_tensor_and_the_general_read_takes_over():
    """A state tensor swapped for a non-contiguous one: the Reader's check refuses it (no
    write), the general read falls back to torch and says why; a tensor of the wrong size
    handed to a Reader is refused too."""

    def swap(opt):
        for st in opt.state.values():
            st["exp_avg_sq"] = (
                st["exp_avg_sq"].t().contiguous().t()
                if st["exp_avg_sq"].dim() == 2
                else st["exp_avg_sq"]
            )

    mon, model, opt = _mlp_run(steps=4)
    assert mon._reader[1] is not None  # built at step 1, used at step 3
    swap(opt)
    w = model[0].weight if isinstance(model, torch.nn.Sequential) else next(model.parameters())
    assert not opt.state[w]["exp_avg_sq"].is_contiguous()
    before = len(mon.rows)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(8, 64)).pow(2).mean().backward()
        opt.step()
    assert mon.last_path.startswith("torch: a tensor the kernels do not take")
    assert len(mon.rows) == before + 1
    reader = fused.Reader([3, 2], [False, False], [], np.array([0, 4]))
    a, b = torch.zeros(3), torch.zeros(2)
    good = [a, b, a.clone(), b.clone(), torch.zeros(5), torch.zeros(5)]
    assert reader(fused.library(), good) is not None
    bad = [a, b, a.clone(), torch.zeros(3), torch.zeros(5), torch.zeros(5)]  # g of size 3
    assert reader(fused.library(), bad) is None
    assert reader(fused.library(), good[:-1]) is None


def test_gradient_hooks_leave_nothing_on_the_parameters_between_sampled_steps():
    """Between sampled steps no hook of the monitor's is on a parameter (its hook dict, which
    the monitor created, is back to None); a user's own hook stays and runs every step."""
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 2)
    seen = []
    net.bias.register_hook(lambda g: seen.append(1))
    opt = torch.optim.Adam(net.parameters())
    mon = Monitor(opt, net, every=3)
    for step in range(1, 8):
        opt.zero_grad()
        net(torch.randn(5, 4)).pow(2).sum().backward()
        opt.step()
        armed = mon.sampled(step + 1)
        assert (net.weight._backward_hooks is not None) == armed
        assert len(net.bias._backward_hooks) == 1 + armed  # the user's, and ours when armed
    assert len(seen) == 7
    assert [r["step"] for r in mon.rows if "opt/grad_norm_preclip" in r] == [1, 4, 7]
    mon.close()
    assert net.weight._backward_hooks is None and len(net.bias._backward_hooks) == 1


@pytest.mark.parametrize("n", [1023, 1024, 4099])
def test_kernel_quantiles_through_the_bucket_histogram_equal_numpys(n):
    """Rows of ≥ 1,024 entries select through a histogram of the keys' top bits: the same
    order statistics as numpy's whatever the spread — one bucket holding nearly everything
    (values within one quarter-binade), signs mixed, ties, ±0, non-finite entries."""
    rng = np.random.default_rng(n)
    cases = [
        1.0 + rng.random(n) * 0.2,  # one bucket
        rng.standard_normal(n) * np.exp(rng.uniform(-20, 20, n)),  # many buckets
        np.round(rng.standard_normal(n)),  # ties (-0.0 and 0.0 among them)
        np.where(rng.random(n) < 0.1, np.nan, rng.standard_normal(n)),
    ]
    data = [np.asarray(a, np.float32) for a in cases]
    rows = [(i * n, n) for i in range(len(data))]
    got = fused.quantiles(np.concatenate(data), rows, (0.0, 0.1, 0.5, 0.9, 1.0))
    for a, values in zip(data, got):
        want = stats.quantiles(torch.from_numpy(a), (0.0, 0.1, 0.5, 0.9, 1.0))
        np.testing.assert_allclose(values, want, rtol=1e-12, atol=0)


class _Sub(torch.Tensor):
    pass


def test_held_losses_are_read_by_one_native_call_equal_to_torch(monkeypatch):
    # descend_read_scalars reads one-element float32 (or float64) CPU tensors after checking
    # each; anything else is refused (None, nothing read) and the monitor reads with torch
    f32 = [torch.tensor(0.1), torch.tensor([2.5]), torch.tensor([[-3.25]]), torch.ones(3)[1:2]]
    assert fused.scalars(f32) == [float(t) for t in f32]
    f64 = [torch.tensor(0.1, dtype=torch.float64), torch.tensor([1e-300], dtype=torch.float64)]
    assert fused.scalars(f64) == [0.1, 1e-300]
    refused = (
        [torch.tensor(0.1), torch.tensor(0.2, dtype=torch.float64)],  # mixed dtypes
        [torch.tensor(1.0, dtype=torch.bfloat16)],
        [torch.ones(2)],  # two elements
        [torch.ones(0)],
        [torch.empty((), device="meta")],
        [torch.tensor(2.0), torch.tensor(1.0).as_subclass(_Sub)],  # never a raw pointer
    )
    for tensors in refused:
        assert fused.scalars(tensors) is None
    net = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    mon = Monitor(opt, net, every=100)
    calls = []
    native = fused.scalars
    monkeypatch.setattr(fused, "scalars", lambda ts: calls.append(len(ts)) or native(ts))
    want = []
    for dtype in (torch.float32, torch.float32, torch.bfloat16):  # the last read by torch
        opt.zero_grad()
        loss = net(torch.ones(1, 2)).sum()
        loss.backward()
        opt.step()
        mon.log_loss(loss.to(dtype))
        want.append(loss.to(dtype).item())
    assert [r["loss"] for r in mon.rows if "loss" in r] == want
    assert calls == [3]  # one call for the three, refused for the bfloat16 one
    mon.log_loss(torch.tensor(0.5))
    mon.log_loss(torch.tensor(0.75))
    assert [r["loss"] for r in mon.rows if "loss" in r][-2:] == [0.5, 0.75]
    assert calls == [3, 2]
    mon.close()
