"""descend diagnose: each planted fault is found, a healthy run flags nothing."""

from __future__ import annotations

import math

import pytest
import torch

from descend import optim, schedules, train
from descend.cli import main
from descend.monitor import Monitor
from descend.monitor.diagnose import diagnose


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _digits(make_opt, steps=200, every=5, loss_scale=None, clip=None, lr_at=None, nan_every=0):
    ds = train.load("digits")
    train.seed_everything(0)
    model = train.build("mlp", ds)
    opt = make_opt(model)
    mon = Monitor(opt, model, every=every)
    loss_fn = torch.nn.CrossEntropyLoss()
    batches = list(ds.loader("train", 32, seed=0))
    for i in range(steps):
        if lr_at is not None:
            for g in opt.param_groups:
                g["lr"] = lr_at(i)
        x, y = batches[i % len(batches)]
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        scaled = loss * loss_scale(i) if loss_scale else loss
        if nan_every and i % nan_every == nan_every - 1:
            scaled = scaled * math.nan
        scaled.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        mon.log_loss(loss)
    mon.close()
    return mon.frame()


def _kinds(frame) -> list[str]:
    return [f.kind for f in diagnose(frame)]


def test_healthy_run_flags_nothing(tmp_path):
    frame = _digits(lambda m: optim.Adam(m.parameters(), lr=1e-3))
    assert diagnose(frame) == []
    log = tmp_path / "healthy.csv"
    frame.to_csv(log, index=False)
    assert main(["diagnose", str(log), "--out", str(tmp_path / "d"), "--strict"]) == 0
    page = (tmp_path / "d" / "diagnosis.html").read_text()
    assert "Nothing flagged" in page and "data:image/png;base64" in page


def test_layer_with_a_tiny_update_ratio():
    def make(m):  # the first layer all but frozen by a tiny learning rate
        return optim.Adam(
            [{"params": m[0].parameters(), "lr": 1e-9}, {"params": m[2].parameters()}], lr=1e-3
        )

    found = diagnose(_digits(make))
    layers = {f.evidence["layer"] for f in found if f.kind == "update_ratio"}
    assert layers == {"0.weight", "0.bias"}
    ratio = next(f for f in found if f.kind == "update_ratio").evidence["median_update_ratio"]
    assert ratio < 1e-5


def test_effective_lr_collapse_from_a_growing_loss_scale():
    frame = _digits(lambda m: optim.Adam(m.parameters(), lr=1e-3), loss_scale=lambda i: 1.04**i)
    found = [f for f in diagnose(frame) if f.kind == "eff_lr_collapse"]
    assert len(found) == 1 and found[0].evidence["v_hat_growth"] > 100


def test_many_skipped_and_clipped_steps(tmp_path):
    frame = _digits(
        lambda m: optim.SGD(m.parameters(), lr=0.1, nonfinite="skip"), clip=0.05, nan_every=10
    )
    kinds = _kinds(frame)
    assert "skipped" in kinds and "clipped" in kinds
    skipped = next(f for f in diagnose(frame) if f.kind == "skipped")
    # every 10th step is NaN; the last measured step is 196, after 19 of them
    assert skipped.evidence["skipped"] == 19 and skipped.evidence["steps"] == 196


def _least_squares(opt_for, steps, every=1, log=None):
    torch.manual_seed(0)
    x = torch.randn(64, 5) * torch.tensor([3.0, 1, 1, 0.5, 0.3])
    y = x @ torch.randn(5)
    lam_max = float(torch.linalg.eigvalsh(x.T @ x / 64).max())
    w = torch.nn.Parameter(torch.zeros(5))
    opt = opt_for([w], lam_max)
    mon = Monitor(opt, every=every, log=log)
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.5 * ((x @ w - y) ** 2).mean()
        loss.backward()
        opt.step()
        mon.log_loss(loss)
    mon.close()
    return mon.frame()


def test_momentum_fighting_the_gradient():
    # heavy ball, β = 0.99 at lr = 1/λ_max: the iterate overshoots and swings back
    frame = _least_squares(lambda p, lam: optim.SGD(p, lr=1 / lam, momentum=0.99), 100)
    found = [f for f in diagnose(frame) if f.kind == "momentum"]
    assert found and found[0].evidence["fraction_negative"] > 0.25
    calm = _least_squares(lambda p, lam: optim.SGD(p, lr=0.5 / lam, momentum=0.5), 100)
    assert "momentum" not in _kinds(calm)


def test_warmup_too_short_for_adams_second_moment():
    warm = schedules.from_spec("linear_warmup:warmup=50", total_steps=200)
    frame = _digits(lambda m: optim.Adam(m.parameters(), lr=1e-3), lr_at=lambda i: 1e-3 * warm(i))
    found = [f for f in diagnose(frame) if f.kind == "warmup"]
    assert len(found) == 1
    e = found[0].evidence
    assert e["beta2"] == pytest.approx(0.999, rel=1e-6)
    assert e["steps_needed"] == pytest.approx(math.log(11) / -math.log(0.999), rel=1e-3)
    assert e["warmup_steps"] <= 60


def test_lr_past_the_stability_edge(tmp_path):
    """Least squares, full batch: lr = 1.1 · 2/λ_max makes the sharpest direction grow by
    |1 − lr·λ_max| = 1.2 per step with alternating sign; 0.9 · 2/λ_max converges."""
    log = tmp_path / "edge.jsonl"
    _least_squares(lambda p, lam: torch.optim.SGD(p, lr=1.1 * 2 / lam), 60, 5, str(log))
    found = [f for f in diagnose(log) if f.kind == "stability"]
    assert len(found) == 1 and found[0].evidence["amplitude_growth"] > 2
    stable = _least_squares(lambda p, lam: torch.optim.SGD(p, lr=0.9 * 2 / lam), 60, 5)
    assert diagnose(stable) == []
    assert main(["diagnose", str(log), "--out", str(tmp_path / "d"), "--strict"]) == 1
    assert "stability edge" in (tmp_path / "d" / "diagnosis.html").read_text()


def test_diagnose_reads_a_tensorboard_run(tmp_path):
    from descend.monitor import TensorBoard

    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(10))
    opt = torch.optim.SGD([w], lr=0.1)
    mon = Monitor(opt, every=2, log=TensorBoard(tmp_path / "tb"))
    for _ in range(20):
        opt.zero_grad()
        (w**2).sum().backward()
        opt.step()
        mon.log_loss((w**2).sum())
    mon.close()
    from descend.monitor.diagnose import read_run

    frame = read_run(tmp_path / "tb")
    assert list(frame.dropna(subset=["opt/update_ratio"])["step"]) == list(range(1, 21, 2))
    assert main(["diagnose", str(tmp_path / "missing"), "--out", str(tmp_path / "d")]) == 2
