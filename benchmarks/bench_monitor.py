"""Monitor overhead: a training step with ``descend.monitor`` attached at every=10, against
the same loop without it.

    python benchmarks/bench_monitor.py            # 32 (MLP) / 8 (transformer) rounds × 320 steps
    python benchmarks/bench_monitor.py --smoke    # 2 rounds × 10 steps, checks only
    python benchmarks/bench_monitor.py --every 30 --results /tmp/x.md   # another every

Workloads: the digits MLP (64 → 100 → 10, batch 32, descend Adam) and a small transformer
(2 encoder layers, width 64, 4 heads, sequences of 32 tokens, batch 16, descend AdamW). One
model and optimizer train in blocks of every × defer = 320 steps, so a block holds the same
share of sampled steps and of writes of the deferred rows as the whole run. Each round trains
two blocks on the same batches (order alternated): one with a
:class:`~descend.monitor.Monitor` writing TensorBoard event files to a temporary folder
attached, one with it detached (``Monitor.detach``: no hook of it left in the optimizer or
the parameters). Both blocks train the same model, so nothing but the monitor tells them
apart (with two copies of the model, their tensors in different memory moved a 9 ms
transformer step by up to ±4% between runs). The overhead is the median over rounds of
(monitored time / plain time − 1), in CPU time. Before the monitor is attached the same
rounds run with both blocks plain (an A/A run): its median is the method's zero, reported
beside the overhead. Each step's CPU time against the plain step on the same batch also
splits the cost into its parts. At the end the monitored phase is replayed from the weights
and optimizer state it started from, without the monitor: the weights must come out the same
bit for bit (the monitor only observes). One torch thread (see shared notes on 2-thread
stalls). Target from the issue: ≤ 5% at every=10. ``main`` replaces only the ``monitor``
section of RESULTS.md, and only for every=10.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _results  # noqa: E402

SECTION = "monitor"
TARGET = 0.05
EVERY = 10


def digits_workload():
    from descend import optim, train

    ds = train.load("digits")
    train.seed_everything(0)
    model = train.build("mlp", ds)
    batches = list(ds.loader("train", 32, seed=0))
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(m, x, y):
        return loss_fn(m(x), y)

    return "digits MLP (64-100-10, B=32, Adam)", model, lambda p: optim.Adam(p), batches, step


class TinyTransformer(torch.nn.Module):
    def __init__(self, vocab=128, width=64, heads=4, layers=2, length=32):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, width)
        self.pos = torch.nn.Parameter(torch.randn(length, width) * 0.02)
        layer = torch.nn.TransformerEncoderLayer(
            width, heads, 4 * width, dropout=0.0, batch_first=True
        )
        self.encoder = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = torch.nn.Linear(width, vocab)

    def forward(self, ids):
        return self.head(self.encoder(self.embed(ids) + self.pos[: ids.shape[1]]))


def transformer_workload():
    from descend import optim

    torch.manual_seed(0)
    model = TinyTransformer()
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randint(0, 128, (16, 32), generator=gen),) * 2 for _ in range(20)]
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(m, ids, _):
        logits = m(ids[:, :-1])
        return loss_fn(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))

    name = "transformer (2 layers, width 64, 4 heads, T=32, B=16, AdamW)"
    return name, model, lambda p: optim.AdamW(p, lr=1e-3), batches, step


def _train(model, opt, batches, step_fn, steps, start, mon=None) -> tuple[float, float, list]:
    """(wall, CPU) seconds of ``steps`` training steps, and each step's CPU nanoseconds."""
    clock = time.thread_time_ns
    each = []
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(steps):
        x, y = batches[(start + i) % len(batches)]
        s0 = clock()
        opt.zero_grad()
        loss = step_fn(model, x, y)
        loss.backward()
        opt.step()
        if mon is not None:
            mon.log_loss(loss)
        each.append(clock() - s0)
    return time.perf_counter() - t0, time.process_time() - c0, each


def measure(workload, rounds: int, steps: int, logdir: Path, every: int = EVERY) -> dict:
    from descend.monitor import Monitor, TensorBoard

    name, model, make_opt, batches, step_fn = workload()
    opt = make_opt(model.parameters())
    defer = inspect.signature(Monitor).parameters["defer"].default
    cycle = every * defer  # steps from one write of the deferred rows to the next
    steps = steps or cycle
    played: list[tuple[int, int]] = []  # (first batch, steps) of each block, in order

    def block(start: int, n: int, mon=None) -> tuple[float, float, list]:
        played.append((start, n))
        return _train(model, opt, batches, step_fn, n, start, mon)

    block(0, cycle)  # warm-up (kernels, allocator)
    # A/A: the same alternation with both blocks plain: the method's zero (noise only, since
    # both blocks train the same model); reported, not divided out
    aa_wall, aa_cpu = [], []
    for r in range(rounds):
        start = cycle + r * steps
        a, b = block(start, steps), block(start, steps)
        if r % 2:
            a, b = b, a
        aa_wall.append(b[0] / a[0] - 1)
        aa_cpu.append(b[1] / a[1] - 1)
    # the weights and optimizer state where the monitor comes in: the monitored phase is
    # replayed from here without it at the end, and must end with the same weights
    reference = (copy.deepcopy(model), copy.deepcopy(opt.state_dict()), len(played))
    warm = cycle + rounds * steps
    mon = Monitor(opt, model, every=every, log=TensorBoard(logdir / name.split()[0]))
    assert mon.defer == defer
    block(warm, cycle, mon)  # the monitor warmed up (layouts, readers, a first write)
    mon.detach()
    block(warm, cycle)
    begin = warm + cycle  # where the measured rounds start in the batches
    ratios, plain_times, mon_times, plain_cpu, mon_cpu, cpu_ratios = [], [], [], [], [], []
    parts: dict[str, list[float]] = {"sampled": [], "unsampled": [], "write": []}
    for r in range(rounds):
        start = begin + r * steps
        times = {}
        for watched in (True, False) if r % 2 else (False, True):
            if watched:
                first = mon.steps
                mon.attach()
                times[True] = block(start, steps, mon)
                mon.detach()
                steps_of = range(first + 1, first + steps + 1)
            else:
                times[False] = block(start, steps)
        ratios.append(times[True][0] / times[False][0] - 1)
        cpu_ratios.append(times[True][1] / times[False][1] - 1)
        plain_times.append(times[False][0] / steps)
        mon_times.append(times[True][0] / steps)
        plain_cpu.append(times[False][1] / steps)
        mon_cpu.append(times[True][1] / steps)
        # each step's extra CPU time against the plain step on the same batch
        for step, a, b in zip(steps_of, times[False][2], times[True][2]):
            extra = (b - a) / 1e3
            if mon.sampled(step):
                sample = (step - 1) // every + 1
                parts["write" if sample % mon.defer == 0 else "sampled"].append(extra)
            else:
                parts["unsampled"].append(extra)
    mon.close()
    tags = len(mon.rows[0]) - 1 if mon.rows else 0
    ref_model, ref_state, since = reference
    ref_opt = make_opt(ref_model.parameters())
    ref_opt.load_state_dict(ref_state)
    for start, n in played[since:]:
        _train(ref_model, ref_opt, batches, step_fn, n, start)
    same = all(torch.equal(a, b) for a, b in zip(ref_model.parameters(), model.parameters()))
    return {
        "name": name,
        "overhead": statistics.median(ratios),
        "plain_ms": statistics.median(plain_times) * 1e3,
        "monitored_ms": statistics.median(mon_times) * 1e3,
        "plain_cpu_ms": statistics.median(plain_cpu) * 1e3,
        "monitored_cpu_ms": statistics.median(mon_cpu) * 1e3,
        "cpu_overhead": statistics.median(cpu_ratios),
        "cpu_quartiles": statistics.quantiles(cpu_ratios, n=4)[::2] if rounds > 1 else [],
        "cpu_aa": statistics.median(aa_cpu),
        "parts_us": {k: statistics.median(v) if v else math.nan for k, v in parts.items()},
        "rounds": rounds,
        "steps": steps,
        "defer": mon.defer,
        "sampled": mon.samples,
        "tags": tags,
        "same_weights": same,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes, checks only")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument(
        "--steps",
        type=int,
        default=0,
        help="steps per round (default: every × defer = 320, one write of the deferred rows each)",
    )
    p.add_argument("--every", type=int, default=EVERY, help=f"sample every k steps ({EVERY})")
    p.add_argument("--results", type=Path, default=_results.RESULTS)
    args = p.parse_args(argv)
    rounds, steps = (2, 10) if args.smoke else (args.rounds, args.steps)
    if steps < 0:
        p.error(f"--steps must be >= 0, got {steps}")
    if args.every < 1:
        p.error(f"--every must be >= 1, got {args.every}")
    if args.every != EVERY and args.results == _results.RESULTS:
        p.error(f"--every {args.every}: RESULTS.md holds every={EVERY}; pass --results PATH")
    every = args.every
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results = [
                measure(w, rounds * scale, steps, Path(tmp), every) for w, scale in WORKLOADS
            ]
    finally:
        torch.set_num_threads(threads)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    cycle, defer = results[0]["steps"], results[0]["defer"]
    lines = [
        f"## Monitor overhead (`descend.monitor` at every={every}, TensorBoard sink)",
        "",
        f"{_results.cpu_name()}, torch {torch.__version__}, 1 thread; {rounds * 4} (MLP) and "
        f"{rounds} (transformer) rounds, each of two blocks of {cycle} steps on the same batches "
        f"(every × defer: a block holds {defer} sampled steps and one write of their rows, so "
        "its ratio is that of the average step), one with the monitor attached and one with it "
        "detached, on the same model and optimizer (order alternated); overhead = median over "
        f"rounds of monitored/plain − 1. Target ≤ {TARGET:.0%}. Load average at the end of the "
        f"run: {load} (shared machine: the per-operation cost of the sampled step grows with "
        "the load, the plain step less).",
        "",
        "| workload | CPU: plain ms/step | CPU: monitored ms/step | CPU: A/A (plain/plain) "
        "| CPU: overhead | CPU: overhead, quartiles over rounds | wall: overhead "
        "| extra CPU µs: sampled step | extra CPU µs: "
        f"sampled step that writes {defer} rows "
        "| extra CPU µs: other steps | tags per sampled step | target (CPU) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        verdict = "met" if r["cpu_overhead"] <= TARGET else "**missed**"
        part = r["parts_us"]
        spread = " to ".join(f"{q:+.1%}" for q in r["cpu_quartiles"]) or "–"
        lines.append(
            f"| {r['name']} | {r['plain_cpu_ms']:.3f} | {r['monitored_cpu_ms']:.3f} | "
            f"{r['cpu_aa']:+.1%} | {r['cpu_overhead']:+.1%} | {spread} | {r['overhead']:+.1%} | "
            f"{part['sampled']:.0f} | "
            f"{part['write']:.0f} | {part['unsampled']:.1f} | {r['tags']} | {verdict} |"
        )
    lines += [
        "",
        "CPU columns: process time (less disturbed by the other processes of a shared machine "
        "than the wall clock). A/A: the same rounds with both blocks plain, before the monitor "
        "is attached — the method's zero (noise only), not divided out. Extra µs: median over "
        "steps of the monitored step's thread CPU time minus the plain step's on the same "
        "batch, for the sampled steps, the "
        f"sampled step that also writes the {defer} "
        "deferred rows, and the other steps (the latter two include the cache misses the "
        "monitor's work causes to the training step after it). What a sampled step costs: θ "
        "copied before the step (`descend_monitor_snapshot`: the check, one memcpy per "
        "parameter), each backward's gradient held by a tensor hook armed for that step only "
        "(the pre-clip norm; holding it makes autograd copy it into `p.grad`), then one native "
        "call (`descend_monitor_step_read`: `descend_check` of every live tensor, the nine "
        "float64 sums per parameter over θ, g, m, θ before and g before clipping, the gather of "
        "the optimizer state at 2,048 fixed sampled coordinates + ≤ 512 per layer); the "
        "effective lr and v̂ of the samples, their quantiles and the combinations of the sums "
        f"(C++: one call for all {defer} rows, `descend_monitor_rows`) and the TensorBoard events "
        "(encoded and framed in C++, one file write) are computed for "
        f"{defer} sampled steps at once (`defer={defer}`, the default; at most `max_delay`=10 s "
        "late). The other steps cost one optimizer hook call and holding the loss tensor "
        "(`log_loss`; the held losses are read by one native call every 256 losses or at the "
        "write, where their graphs are freed — cheaper here than freeing each step's); the "
        "step pre-hook that copies θ is in the optimizer only while a step is armed. Where the "
        "target is missed, a larger `every` brings it under 5%: the cost per sampled step does "
        "not depend on `every`, so the sampled steps' share falls as 1/`every` (that of the "
        "other steps stays).",
    ]
    body = "\n".join(lines)
    print(body)
    bad = [r["name"] for r in results if not r["same_weights"]]
    if bad:  # the monitor only observes: the trained weights must be the same bit for bit
        print(f"monitored training changed the weights: {', '.join(bad)}", file=sys.stderr)
        return 1
    if not args.smoke:
        _results.write_section(SECTION, body, args.results)
    return 0


# (workload, rounds factor): the MLP's rounds take milliseconds, so it gets 4× as many (its
# per-round ratio is the noisier one on a shared machine)
WORKLOADS = ((digits_workload, 4), (transformer_workload, 1))

if __name__ == "__main__":
    sys.exit(main())
