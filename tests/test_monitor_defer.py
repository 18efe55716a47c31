"""When the monitor writes its deferred rows: after ``defer`` sampled steps, at the first
sampled step ``max_delay`` seconds after the oldest held one, once the held sampled values
reach ``HELD_BYTES``; and every ``LOSS_BUFFER`` held loss tensors either a write (nothing sampled
held) or a read of the held loss tensors into floats (their graphs go), the rows unchanged."""

from __future__ import annotations

import pytest
import torch

from descend.monitor import Monitor, core


class Sink:
    def __init__(self):
        self.writes = []  # one list of (step, scalars) per write_many call

    def write_many(self, rows):
        self.writes.append([(s, dict(r)) for s, r in rows])

    def write(self, step, scalars):  # pragma: no cover - write_many is used
        self.writes.append([(step, dict(scalars))])

    def close(self):
        pass


def _run(steps, clock=None, **kwargs):
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sink = Sink()
    mon = Monitor(opt, model, log=sink, **kwargs)
    x, y = torch.randn(16, 6), torch.randn(16, 3)
    losses = []
    for i in range(steps):
        if clock is not None:
            clock[0] = float(i)  # one second a step
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        mon.log_loss(loss)
        losses.append(loss.item())
    return mon, sink, losses


def _sampled_steps(write):
    return [s for s, r in write if "opt/update_norm" in r]


def test_defer_and_max_delay_decide_when_rows_are_written(monkeypatch):
    # defer alone: every 4 sampled steps (every=2: steps 1, 3, 5, 7 then 9, 11, 13, 15)
    mon, sink, _ = _run(16, every=2, defer=4, max_delay=1e9)
    assert [_sampled_steps(w) for w in sink.writes] == [[1, 3, 5, 7], [9, 11, 13, 15]]
    # a clock of one second a step: with max_delay=5 s the first sampled step 5 s or more
    # after the oldest held one writes (steps 1..7 held at 0..6 s: written at step 7)
    clock = [0.0]
    monkeypatch.setattr(core.time, "monotonic", lambda: clock[0])
    mon2, sink2, _ = _run(16, clock, every=2, defer=100, max_delay=5.0)
    assert [_sampled_steps(w) for w in sink2.writes] == [[1, 3, 5, 7], [9, 11, 13, 15]]
    mon2.close()
    assert sink2.writes[-1] == [] or not _sampled_steps(sink2.writes[-1])
    # the rows are the same whenever they are written
    mon3, sink3, _ = _run(16, every=2, defer=1)
    mon.close(), mon3.close()
    rows = lambda s: [r for w in s.writes for r in w]  # noqa: E731
    assert rows(sink) == rows(sink3)


def test_held_bytes_bound_the_deferral(monkeypatch):
    """Each sampled step of Linear(6, 3) under Adam holds v̂ at its 42 sampled coordinates
    (the 21 of the model, then each layer's: float32, 168 bytes): with HELD_BYTES = 500 the
    third held step writes."""
    monkeypatch.setattr(core, "HELD_BYTES", 500)
    _, sink, _ = _run(12, every=2, defer=100, max_delay=1e9)
    assert [_sampled_steps(w) for w in sink.writes] == [[1, 3, 5], [7, 9, 11]]


def test_loss_buffer_reads_held_losses_while_rows_wait(monkeypatch):
    """Every LOSS_BUFFER loss tensors held: with sampled steps held, the loss tensors are read into
    floats (no write, the graph released) and written later with the rows, in step order;
    with none held, everything is written."""
    monkeypatch.setattr(core, "LOSS_BUFFER", 5)
    seen = []
    real = core._read_losses
    monkeypatch.setattr(core, "_read_losses", lambda kept: seen.append(len(kept)) or real(kept))
    mon, sink, losses = _run(12, every=3, defer=100, max_delay=1e9)
    assert sink.writes == []  # 12 losses + 4 sampled steps held: reads only
    assert seen == [5, 5]  # at the 5th and 10th loss
    read = [type(v) is float for _, v in mon._losses if not isinstance(v, core._Pending)]
    assert read == [True] * 10 + [False] * 2  # losses 11 and 12 still held as tensors
    mon.flush_losses()
    (write,) = sink.writes
    got = [(s, r["loss"]) for s, r in write if "loss" in r]
    assert got == [(i + 1, pytest.approx(x, rel=1e-7)) for i, x in enumerate(losses)]
    assert _sampled_steps(write) == [1, 4, 7, 10]
    # nothing sampled held (every=100: only step 1, written at once with defer=1)
    mon2, sink2, _ = _run(12, every=100, defer=1, max_delay=1e9)
    assert [len(w) for w in sink2.writes] == [1, 5, 5]  # step 1's row, then 5 losses twice


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), True, "5"])
def test_max_delay_must_be_positive_seconds(bad):
    model = torch.nn.Linear(2, 1)
    with pytest.raises(ValueError, match="max_delay must be a number of seconds > 0"):
        Monitor(torch.optim.SGD(model.parameters(), lr=0.1), model, max_delay=bad)


def test_keep_rows_false_keeps_nothing_and_the_sinks_get_everything():
    """keep_rows=False: the sinks get the same writes as with the default, nothing is kept
    in memory after a write, and rows / frame() / to_csv() say so (after writing what was
    held); keep_rows must be a bool."""
    kept_mon, kept, _ = _run(12, every=2, defer=3)
    lean_mon, lean, _ = _run(12, every=2, defer=3, keep_rows=False)
    assert lean_mon._unmade == [] and lean_mon._rows == []
    for method in (lambda m: m.rows, lambda m: m.frame(), lambda m: m.to_csv("x.csv")):
        with pytest.raises(RuntimeError, match=r"keep_rows=False\) keeps no rows"):
            method(lean_mon)
    kept_mon.flush_losses()
    assert lean.writes == kept.writes  # what was held was written before the error
    assert len(kept_mon.rows) == sum(map(len, kept.writes)) > 12
    with pytest.raises(ValueError, match="keep_rows must be True or False"):
        Monitor(torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1), keep_rows=1)
