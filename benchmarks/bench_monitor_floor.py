"""How low the monitor's overhead on the digits MLP can go: bench_monitor's MLP measure with
parts of the monitor made free, to see what each costs and what no tuning of the rest can
remove.

    python benchmarks/bench_monitor_floor.py              # 2 repeats × 24 rounds × 320 steps
    python benchmarks/bench_monitor_floor.py --smoke      # 1 repeat × 1 round, checks only

Variants (each in its own process, so that one's patches never reach another; run in turn,
``--repeats`` times):

- ``as is``: the monitor at every=10 (bench_monitor's MLP row);
- ``no sampled step``: the same monitor never sampling (every=10⁹): what the other steps cost
  on their own (the step post-hook and ``log_loss`` every step, the held losses read and
  written every 256);
- ``sampled, free reads``: every=10, but the sampled step's work made free: the gradient
  hooks are never armed (no pre-clip gradient held, so autograd copies nothing), θ is not
  copied before the step, and the native read returns its first result again (the sums and
  the gathered state of the first sampled step; the rows are then wrong, the cost is what
  is measured). What is left is the Python around them and the writes of the rows.

Not a test: the rows of the last variant are not the monitor's. Nothing is written to
RESULTS.md (its ``monitor`` section quotes these figures).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
VARIANTS = {
    "as is": "",
    "no sampled step": "never",
    "sampled, free reads": "free",
}


def _patch(kind: str) -> None:
    from descend.monitor import core, fused

    if kind == "never":
        init = core.Monitor.__init__

        @functools.wraps(init)  # (bench_monitor reads the signature's defaults)
        def never(self, *args, **kwargs):
            kwargs["every"] = 10**9
            init(self, *args, **kwargs)

        core.Monitor.__init__ = never
    elif kind == "free":
        core._GradHook.arm = lambda self: None
        fused.Snapshot.__call__ = lambda self, lib, tensors: True
        run, first = fused.Reader.run, {}

        def reused(self, lib, tensors):
            if id(self) not in first:
                first[id(self)] = run(self, lib, tensors)
            return first[id(self)]

        fused.Reader.run = fused.Reader.__call__ = reused


def one(kind: str, rounds: int, steps: int = 0) -> dict:
    """bench_monitor's MLP measure under ``kind``'s patches (in this process)."""
    import torch

    sys.path.insert(0, str(HERE))
    import bench_monitor

    torch.set_num_threads(1)
    _patch(kind)
    with tempfile.TemporaryDirectory() as tmp:
        r = bench_monitor.measure(bench_monitor.digits_workload, rounds, steps, Path(tmp))
    return {k: r[k] for k in ("cpu_overhead", "overhead", "plain_cpu_ms", "parts_us")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="1 repeat of 1 round, checks only")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--rounds", type=int, default=24)
    p.add_argument("--one", choices=list(VARIANTS.values()), help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one is not None:
        print(json.dumps(one(args.one, args.rounds, args.steps)))
        return 0
    repeats, rounds = (1, 1) if args.smoke else (args.repeats, args.rounds)
    if repeats < 1 or rounds < 1:
        p.error(f"--repeats and --rounds must be >= 1, got {repeats} and {rounds}")
    got: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for _ in range(repeats):
        for name, kind in VARIANTS.items():
            cmd = [sys.executable, __file__, "--one", kind, "--rounds", str(rounds)]
            cmd += ["--steps", "10" if args.smoke else "0"]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            got[name].append(json.loads(out.splitlines()[-1]))
    print("| digits MLP, every=10 | CPU overhead (each repeat) | extra CPU µs: sampled step |")
    print("|---|---|---:|")
    for name, runs in got.items():
        each = ", ".join(f"{r['cpu_overhead']:+.1%}" for r in runs)
        sampled = [r["parts_us"]["sampled"] for r in runs if r["parts_us"]["sampled"] > 0]
        cost = f"{statistics.median(sampled):.0f}" if sampled else "—"
        print(f"| {name} | {each} | {cost} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
