"""descend.monitor: the numbers it writes are the ones computed by hand from the parameters,
gradients and optimizer state of the same steps; every sink stores them; it samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from descend import optim, train
from descend.monitor import CSV, JSONLines, MLflow, Monitor, TensorBoard, flat, monitor, stats
from descend.optim.accumulate import Accumulate
from descend.optim.fast import last_path


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


CHOSEN = (1, 101, 191)  # sampled steps (every=10 samples 1, 11, 21, …)


class _Spy:
    """The test's own record of chosen steps: θ before, the gradient used, θ and state after."""

    def __init__(self, opt, params, steps):
        self.opt, self.params, self.steps, self.count, self.seen = opt, params, steps, 0, {}
        opt.register_step_pre_hook(self.before)
        opt.register_step_post_hook(self.after)

    def before(self, *_):
        if self.count + 1 in self.steps:
            self._before = [p.detach().clone() for p in self.params]
            self._grad = [p.grad.detach().clone() for p in self.params]
            self._lr = self.opt.param_groups[0]["lr"]

    def after(self, *_):
        self.count += 1
        if self.count in self.steps:
            state = [
                {k: (v.clone() if torch.is_tensor(v) else v) for k, v in self.opt.state[p].items()}
                for p in self.params
            ]
            after = [p.detach().clone() for p in self.params]
            self.seen[self.count] = (self._before, self._grad, after, state, self._lr)


def _digits_run(make_opt, log, steps=200, clip=1.0, every=10):
    ds = train.load("digits")
    train.seed_everything(0)
    model = train.build("mlp", ds)
    opt = make_opt(model.parameters())
    spy = _Spy(opt, list(model.parameters()), CHOSEN)
    mon = monitor(opt, model, every=every, log=log)
    loss_fn = torch.nn.CrossEntropyLoss()
    batches = list(ds.loader("train", 32, seed=0))
    losses = []
    for i in range(steps):
        x, y = batches[i % len(batches)]
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        mon.log_loss(loss)
        losses.append(float(loss.detach()))
    mon.close()
    return model, opt, mon, spy, losses


def _by_hand(seen, names, b1=0.9, b2=0.999, eps=1e-8):
    """The monitor's definitions written out on the recorded tensors (Adam, torch's state)."""
    before, grad, after, state, lr = seen
    cat = lambda ts: torch.cat([t.reshape(-1).double() for t in ts])  # noqa: E731
    u = cat(before) - cat(after)
    g, m = cat(grad), cat([s["exp_avg"] for s in state])
    t = float(state[0]["step"])
    v_hat = cat([s["exp_avg_sq"] for s in state]) / (1 - b2**t)
    eff = lr / ((1 - b1**t) * (v_hat.sqrt() + eps))
    out = {
        "opt/group0/lr": lr,
        "opt/grad_norm": float(g.norm()),
        "opt/update_norm": float(u.norm()),
        "opt/update_ratio": float(u.norm() / cat(before).norm()),
        "opt/momentum_cos": float(m @ g / (m.norm() * g.norm())),
        "opt/opposed_frac": float(((u * g) < 0).sum() / (g != 0).sum()),
        "opt/eff_lr_p50": float(np.median(eff.numpy())),
        "opt/v_hat_p50": float(np.median(v_hat.numpy())),
        "opt/group0/v_bias_correction": 1 / (1 - b2**t),
        "_eff": eff.numpy(),
        "_v_hat": v_hat.numpy(),
    }
    w0 = before[0].double()
    out[f"layer/{names[0]}/update_ratio"] = float((w0 - after[0].double()).norm() / w0.norm())
    out[f"layer/{names[0]}/grad_norm"] = float(grad[0].double().norm())
    return out


def _read_tensorboard(logdir) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


OPTIMIZERS = {
    "descend-fused": lambda p: optim.Adam(p, lr=1e-3, fused=True),
    "descend-chain": lambda p: optim.Adam(p, lr=1e-3, fused=False),
    "torch": lambda p: torch.optim.Adam(p, lr=1e-3),
}


QUANTILE_TAGS = {"opt/eff_lr_p50": "eff", "opt/v_hat_p50": "v_hat"}


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_tensorboard_scalars_equal_hand_computed_values(kind, tmp_path, monkeypatch):
    """Every scalar equals the hand value at 3 steps. The quantiles read a sample of
    flat.SAMPLE = 2,048 of the model's 7,510 coordinates: with the default sample (descend's
    optimizers) the median must lie within the documented rank bound, 3σ = 3·√(¼/2048) ≈ 3.3
    percentile points, of the hand median; with a sample as large as the model (torch's
    optimizer here) the quantiles are exact, to 1e-5 like every other scalar."""
    exact = kind == "torch"
    if exact:
        monkeypatch.setattr(flat, "SAMPLE", 8192)
    model, opt, mon, spy, losses = _digits_run(OPTIMIZERS[kind], str(tmp_path / "tb"))
    if kind == "descend-fused":  # unsampled steps keep the fast kernels, sampled ones trace
        assert last_path(opt) == {0: "fast"}  # step 200 is not sampled
    assert mon.use_trace == (kind == "descend-chain")
    tb = _read_tensorboard(tmp_path / "tb")
    names = [n for n, _ in model.named_parameters()]
    sampled = sorted(tb["opt/update_ratio"])
    assert sampled == list(range(1, 201, 10))
    assert sorted(tb["loss"]) == list(range(1, 201))
    assert tb["loss"][37] == pytest.approx(losses[36], rel=1e-6)
    for step in CHOSEN:
        expected = _by_hand(spy.seen[step], names)
        for tag, value in expected.items():
            if tag in QUANTILE_TAGS and not exact:
                entries = expected["_" + QUANTILE_TAGS[tag]]
                delta = 3 * math.sqrt(0.25 / flat.SAMPLE)
                low, high = np.quantile(entries, [0.5 - delta, 0.5 + delta])
                assert low <= tb[tag][step] <= high, (tag, step, low, high)
                continue
            if tag.startswith("_"):
                continue
            # event files store float32
            assert tb[tag][step] == pytest.approx(value, rel=1e-5, abs=1e-12), (tag, step)
        # clipped at 1.0: the gradient used has norm 1, the one before clipping is larger
        preclip = tb["opt/grad_norm_preclip"][step]
        assert tb["opt/clipped"][step] == float(preclip > 1.0 + 1e-4)
        assert min(preclip, 1.0) == pytest.approx(tb["opt/grad_norm"][step], rel=1e-5)
    assert any(v == 1.0 for v in tb["opt/clipped"].values())
    frame = mon.frame()
    assert frame.loc[frame["step"] == 101, "opt/update_ratio"].item() == pytest.approx(
        tb["opt/update_ratio"][101], rel=1e-6
    )


def test_pre_clip_norm_is_the_norm_backward_produced(tmp_path):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(50))
    opt = torch.optim.SGD([w], lr=0.1)
    mon = Monitor(opt, every=1)
    for _ in range(3):
        opt.zero_grad()
        (3 * w).pow(2).sum().backward()
        raw = float(w.grad.norm())
        torch.nn.utils.clip_grad_norm_([w], 0.5)
        opt.step()
        row = mon.rows[-1]
        assert row["opt/grad_norm_preclip"] == pytest.approx(raw, rel=1e-6)
        assert row["opt/grad_norm"] == pytest.approx(0.5, rel=1e-5)
        assert row["opt/clipped"] == 1.0
        assert row["opt/opposed_frac"] == 0.0  # SGD moves every coordinate downhill


def test_every_k_samples_and_costs_nothing_in_between():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(8))
    opt = optim.SGD([w], lr=0.1, momentum=0.9, fused=True)
    mon = Monitor(opt, every=7, source="trace")  # auto would read the state (no trace)
    for step in range(1, 30):
        opt.zero_grad()
        (w**2).sum().backward()
        opt.__dict__.pop("_fast_last", None)  # what last_path reports is this step's
        opt.step()
        armed = bool(mon._armed)
        assert armed == mon.sampled(step + 1)  # hooks only around sampled steps
        if mon.sampled(step):  # the chain ran (traced): the fast path was not asked
            assert last_path(opt) == {0: "default: a trace hook is registered"}
            assert "velocity" in mon._records[0]
            buf, g = opt.state[w]["momentum_buffer"], w.grad
            cos = float(buf @ g / (buf.norm() * g.norm()))
            assert mon.rows[-1]["opt/momentum_cos"] == pytest.approx(cos, rel=1e-6)
        else:
            assert last_path(opt) == {0: "fast"}
    assert [r["step"] for r in mon.rows] == [1, 8, 15, 22, 29]
    mon.close()
    assert not opt._trace_hooks and not opt._optimizer_step_pre_hooks


@pytest.mark.parametrize("kind", ["torch", "descend-trace"])
def test_detached_steps_run_as_without_a_monitor_and_are_not_seen(kind):
    """Between detach() and attach() the optimizer and the parameter hold none of the
    monitor's hooks and the steps are not counted; the training is bit for bit that of a
    copy never monitored; after attach() sampling goes on from the count (the step armed
    when detached is armed again) and its row is the hand-computed one."""
    torch.manual_seed(0)
    w0 = torch.randn(40)
    target = torch.randn(40)

    def make():
        w = torch.nn.Parameter(w0.clone())
        if kind == "torch":
            return w, torch.optim.SGD([w], lr=0.05, momentum=0.9)
        return w, optim.SGD([w], lr=0.05, momentum=0.9, fused=False)  # the chain: traced

    w, opt = make()
    ref_w, ref_opt = make()
    mon = Monitor(opt, every=3)
    assert mon.use_trace == (kind == "descend-trace")
    mine = [
        opt.register_step_pre_hook(lambda *_: None),
        opt.register_step_post_hook(lambda *_: None),
    ]
    pre, post = opt._optimizer_step_pre_hooks, opt._optimizer_step_post_hooks

    def step(w, opt, log=None):
        opt.zero_grad()
        loss = (3 * (w - target)).pow(2).sum()
        loss.backward()
        raw = float(w.grad.norm())
        torch.nn.utils.clip_grad_norm_([w], 0.5)  # changes w.grad in place after backward
        before = w.detach().clone()
        opt.step()
        if log is not None:
            log(loss)
        return raw, float((before - w.detach()).norm())

    for _ in range(6):
        step(w, opt, mon.log_loss)
        step(ref_w, ref_opt)
    assert [r["step"] for r in mon.rows if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in mon.rows if "opt/update_norm" in r] == [1, 4]
    assert mon._armed  # step 7 is sampled: armed after step 6
    mon.detach()
    mon.detach()  # a second call does nothing
    assert not mon.attached
    assert list(pre) == [mine[0].id] and list(post) == [mine[1].id]  # the user's only
    assert w._backward_hooks is None
    assert not getattr(opt, "_trace_hooks", None)
    for _ in range(5):
        step(w, opt, mon.log_loss)  # not logged while detached
        step(ref_w, ref_opt)
    assert mon.steps == 6 and len(mon.rows) == 6 + 2
    mon.attach()
    assert mon.attached and mon._armed
    # the post-hook back in its place (one registered after it still runs after it); the
    # armed step's pre-hook put in last, as at every arming
    assert list(post) == [mon._post_id, mine[1].id] and list(pre) == [mine[0].id, mon._pre_id]
    raw, moved = step(w, opt)
    step(ref_w, ref_opt)
    row = mon.rows[-1]
    assert row["step"] == 7 and "opt/update_norm" in row
    assert row["opt/grad_norm_preclip"] == pytest.approx(raw, rel=1e-6)  # gradient hook back
    assert row["opt/update_norm"] == pytest.approx(moved, rel=1e-6)  # θ before the step
    assert row["opt/grad_norm"] == pytest.approx(0.5, rel=1e-5)
    for _ in range(3):
        step(w, opt)
        step(ref_w, ref_opt)
    assert [r["step"] for r in mon.rows if "opt/update_norm" in r] == [1, 4, 7, 10]
    assert torch.equal(w, ref_w)  # watched or not, the same training
    mon.close()
    assert not mon.attached
    assert list(pre) == [mine[0].id] and list(post) == [mine[1].id]
    with pytest.raises(RuntimeError, match="Monitor.attach: the monitor is closed"):
        mon.attach()
    with pytest.raises(RuntimeError, match="Monitor.detach: the monitor is closed"):
        mon.detach()


def test_noise_scale_matches_per_sample_gradient_covariance():
    """B_simple = tr(Σ)/|G|² from per-sample gradients at fixed weights (lr = 0), against the
    monitor's estimate from 4 accumulated micro-batches of 8 samples."""
    torch.manual_seed(0)
    n, d = 512, 6
    x = torch.randn(n, d)
    y = x @ torch.randn(d) + 0.8 * torch.randn(n)
    w = torch.nn.Parameter(torch.full((d,), 0.3))
    per_sample = (x @ w.detach() - y)[:, None] * x  # ∇ of ½(x·w − y)²
    G = per_sample.mean(0)
    trace = float(((per_sample - G) ** 2).sum(1).mean())
    reference = trace / float(G @ G)
    opt = torch.optim.SGD([w], lr=0.0)
    mon = Monitor(opt, every=1, batch_size=8, noise_beta=0.0)
    gen = torch.Generator().manual_seed(1)
    k = 4
    for _ in range(400):
        opt.zero_grad()
        for _ in range(k):  # accumulation: the loss of each micro-batch divided by k
            idx = torch.randint(0, n, (8,), generator=gen)
            (0.5 * ((x[idx] @ w - y[idx]) ** 2).mean() / k).backward()
        opt.step()
    rows = mon.rows
    assert all(r["opt/micro_batches"] == k for r in rows)
    estimate = (
        8 * np.mean([r["opt/gns_trace"] for r in rows]) / np.mean([r["opt/gns_g2"] for r in rows])
    )
    assert estimate == pytest.approx(reference, rel=0.15)
    assert reference > 5  # noisy enough that the micro-batches disagree


def test_noise_scale_parts_are_unbiased_on_a_closed_form_case():
    # two micro-gradients g1 = (1, 0), g2 = (0, 1): |G_small|² = 1, |G_big|² = 0.5
    g2, trace = stats.noise_scale_parts([2.0], 2.0, 2)
    assert g2 == pytest.approx((2 * 0.5 - 1) / 1) and trace == pytest.approx(2 * (1 - 0.5))
    assert stats.noise_scale_parts([1.0], 1.0, 1) is None


def test_accumulate_wrapper_pre_clip_is_the_average():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5))
    opt = Accumulate(optim.SGD([w], lr=0.1), k=3)
    mon = Monitor(opt, every=1)
    grads = []
    for i in range(3):
        opt.zero_grad()
        ((i + 1) * w).pow(2).sum().backward()
        grads.append(w.grad.clone())
        opt.step()
    row = mon.rows[-1]
    assert row["opt/micro_batches"] == 3
    assert row["opt/grad_norm_preclip"] == pytest.approx(float(sum(grads).norm() / 3), rel=1e-5)
    assert row["opt/clipped"] == 0.0


def test_skipped_and_nonfinite_steps_are_counted():
    w = torch.nn.Parameter(torch.ones(3))
    opt = optim.SGD([w], lr=0.1, nonfinite="skip")
    mon = Monitor(opt, every=1)
    for i in range(4):
        opt.zero_grad()
        (w.sum() * (math.nan if i % 2 else 1.0)).backward()
        opt.step()
    assert [r["opt/skipped_steps"] for r in mon.rows] == [0, 1, 1, 2]
    assert [r["opt/nonfinite"] for r in mon.rows] == [0, 1, 0, 1]
    assert mon.rows[1]["opt/update_norm"] == 0.0


def test_groups_and_rmsprop_state(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    opt = torch.optim.RMSprop(
        [{"params": net[0].parameters()}, {"params": net[1].parameters(), "lr": 1e-4}], lr=1e-2
    )
    mon = Monitor(opt, net, every=1)
    for _ in range(2):
        opt.zero_grad()
        net(torch.randn(8, 4)).pow(2).mean().backward()
        opt.step()
    row = mon.rows[-1]
    assert row["opt/group1/lr"] == 1e-4 and row["opt/group0/lr"] == 1e-2
    v = opt.state[net[1].weight]["square_avg"]
    eff = 1e-4 / (v.sqrt() + 1e-8)
    # the group's quantiles come from its two tensors together
    eff_bias = 1e-4 / (opt.state[net[1].bias]["square_avg"].sqrt() + 1e-8)
    both = torch.cat([eff.reshape(-1), eff_bias]).double().numpy()
    assert row["opt/group1/eff_lr_p50"] == pytest.approx(float(np.median(both)), rel=1e-6)
    assert row["layer/1.weight/eff_lr_p50"] == pytest.approx(
        float(np.median(eff.double().numpy())), rel=1e-6
    )
    assert "opt/group0/v_bias_correction" not in row  # RMSprop has no β₂ bias correction


def test_every_sink_stores_the_same_rows(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow_sink = MLflow(uri, experiment="t", run_name="digits")
    sinks = [JSONLines(tmp_path / "log.jsonl"), CSV(tmp_path / "log.csv"), mlflow_sink]
    _, _, mon, _, _ = _digits_run(OPTIMIZERS["torch"], sinks, steps=30)
    frame = mon.frame()
    from descend.monitor.diagnose import read_run

    for path in ("log.jsonl", "log.csv"):
        back = read_run(tmp_path / path)
        assert list(back["step"]) == list(frame["step"])
        np.testing.assert_allclose(back["opt/update_ratio"], frame["opt/update_ratio"], rtol=1e-12)
    from mlflow.tracking import MlflowClient

    history = MlflowClient(uri).get_metric_history(mlflow_sink.run_id, "opt/update_ratio")
    got = {m.step: m.value for m in history}
    want = frame.dropna(subset=["opt/update_ratio"]).set_index("step")["opt/update_ratio"]
    assert got == pytest.approx(want.to_dict(), rel=1e-12)
    assert MlflowClient(uri).get_run(mlflow_sink.run_id).info.status == "FINISHED"


def test_tensorboard_histograms_are_written(tmp_path):
    ds = train.load("digits")
    model = train.build("mlp", ds)
    opt = optim.Adam(model.parameters(), fused=False)
    mon = Monitor(opt, model, every=1, log=TensorBoard(tmp_path / "tb"), histogram_every=10)
    x, y = next(iter(ds.loader("train", 32, seed=0)))
    for _ in range(12):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    mon.close()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"histograms": 0})
    acc.Reload()
    tags = acc.Tags()["histograms"]
    assert {"layer/0.weight/update", "layer/0.weight/grad", "layer/0.weight/eff_lr"} <= set(tags)
    assert [e.step for e in acc.Histograms("layer/0.weight/update")] == [1, 11]
    assert acc.Histograms("layer/0.weight/grad")[0].histogram_value.num == 64 * 100


def test_bad_arguments_name_the_parameter():
    w = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([w], lr=0.1)
    with pytest.raises(ValueError, match="every must be an integer >= 1"):
        Monitor(opt, every=0)
    with pytest.raises(ValueError, match="source="):
        Monitor(opt, source="trace")
    with pytest.raises(ValueError, match="log must be"):
        Monitor(opt, log=3)
    with pytest.raises(ValueError, match="batch_size"):
        Monitor(opt, batch_size=0)
    assert not opt._optimizer_step_pre_hooks  # nothing attached by a rejected call


def test_bench_monitor_smoke_monitored_training_is_bit_for_bit_the_plain_one(capsys):
    """benchmarks/bench_monitor.py --smoke: the monitored phase (digits MLP, transformer),
    replayed without the monitor from the weights and optimizer state it started from, ends
    with exactly the same weights, since the monitor only observes (main exits 1 if not)."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_monitor.py"
    spec = importlib.util.spec_from_file_location("bench_monitor_smoke", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    assert module.main(["--smoke"]) == 0
    assert "Monitor overhead" in capsys.readouterr().out


def test_scalar_events_are_protobufs_own_bytes():
    """The TensorBoard sink writes scalar events straight in the wire format: the bytes must be
    those of protobuf's own serialization (steps 0, 1-byte and multi-byte varints, negative;
    NaN, ±inf, values past float32 that protobuf stores as ±inf, non-ASCII tags)."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.compat.proto.summary_pb2 import Summary

    from descend.monitor.sinks import scalar_event

    cases = [
        {"loss": 0.25},
        {},
        {"opt/x": math.nan, "layer/é.w/ü": -math.inf, "t" * 200: 3e38, "big": 1e300},
        {"neg": -1e300, "tiny": 1e-45, "one": 1.0},
    ]
    cache: dict = {}
    for step in (0, 1, 127, 128, 300, 2**40, -5):
        for scalars in cases:
            values = [Summary.Value(tag=k, simple_value=v) for k, v in scalars.items()]
            event = event_pb2.Event(
                wall_time=1.7e9 + step, step=step, summary=Summary(value=values)
            )
            got = scalar_event(1.7e9 + step, step, scalars, cache)
            assert got == event.SerializeToString(), (step, scalars)


@pytest.mark.parametrize("n", [1, 2, 10, 1000, 8192, 8193, 20000])
def test_quantiles_equal_numpys_on_the_finite_entries(n):
    rng = np.random.default_rng(n)
    for bad in (False, True):
        a = rng.standard_normal(n).astype(np.float32)
        if bad and n > 4:
            a[:3] = [np.nan, np.inf, -np.inf]
        finite = a[np.isfinite(a)].astype(np.float64)
        want = [float(np.quantile(finite, q)) for q in stats.QUANTILES]
        got = stats.quantiles(torch.from_numpy(a))
        np.testing.assert_allclose(got, want, rtol=1e-12)
    assert all(math.isnan(v) for v in stats.quantiles(torch.tensor([math.nan, math.inf])))


def test_a_loss_tensor_changed_after_it_was_logged_is_written_as_nan_with_a_warning():
    # log_loss holds the tensor and reads it at the flush: a tensor reused in place before then
    # (a running total) cannot be read as it was — NaN and a warning, never the later value
    net = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    mon = Monitor(opt, net, every=100)
    total = torch.zeros(())
    fresh = []
    for k in range(3):
        opt.zero_grad()
        loss = net(torch.ones(1, 2)).sum()
        loss.backward()
        opt.step()
        mon.log_loss(loss)
        fresh.append(loss.item())
        total += float(k + 1)
        mon.log_loss(total, step=10 + k)
    with pytest.warns(RuntimeWarning, match="changed in place before they were read"):
        rows = mon.rows
    by_step = {r["step"]: r["loss"] for r in rows if "loss" in r}
    assert [by_step[s] for s in (1, 2, 3)] == fresh
    assert math.isnan(by_step[10]) and math.isnan(by_step[11])  # moved on after logging
    assert by_step[12] == 6.0  # unchanged since it was given
    mon.close()


def test_losses_are_held_and_written_in_order(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    mon = Monitor(opt, net, every=4, log=str(tmp_path / "log.jsonl"))
    losses = []
    for _ in range(9):
        opt.zero_grad()
        loss = net(torch.randn(5, 3)).pow(2).mean()
        loss.backward()
        opt.step()
        mon.log_loss(loss)
        losses.append(float(loss.detach()))
    mon.log_loss(0.5, step=100)
    with pytest.raises(ValueError, match="loss must hold one value"):
        mon.log_loss(torch.ones(2))
    rows = [r for r in mon.rows if "loss" in r]
    assert [r["step"] for r in rows] == [*range(1, 10), 100]
    assert [r["loss"] for r in rows] == [*losses, 0.5]  # float32 values, read exactly
    mon.close()
    import json

    written = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in written]
    assert steps == sorted(steps)  # each write in the order it was made
    assert [r["loss"] for r in written if "loss" in r] == [*losses, 0.5]
