"""GPU step speed: compiled descend AdamW / centered RMSprop / NAdam against torch's fused AdamW.

    python benchmarks/bench_gpu.py            # on a CUDA machine: times, writes the 'gpu'
                                              # section of benchmarks/RESULTS.md
    python benchmarks/bench_gpu.py --smoke    # tiny sizes; without CUDA: one "skipped" line
    python benchmarks/bench_gpu.py --device cpu --backend eager --smoke --no-write
                                              # the harness itself, on the CPU (no claims)

descend's kernels are CPU code; on CUDA a descend optimizer steps through its chain of
``_foreach`` ops, and ``torch.compile`` (inductor) turns that chain into fused GPU kernels:
the compiled chain *is* descend's fused path there. This benchmark measures that claim, in
one process, on the ResNet-18 parameter shapes (62 tensors, 11.7M fp32 parameters):

* **torch AdamW fused**: ``torch.optim.AdamW(fused=True)``, the yardstick;
* **torch AdamW compiled**: torch's own AdamW with ``torch.compile(opt.step)``;
* **descend AdamW / RMSprop centered (momentum 0.9) / NAdam compiled**: descend's
  optimizers with ``torch.compile(opt.step)``; the learning rate is a tensor, as a
  scheduler needs for a compiled step.

Every implementation steps its own copy of the parameters with the same gradients. After
warm-up steps (the compilation), the implementations run interleaved round by round with
the order rotated; each round times ``--steps`` steps of each between CUDA synchronisations.
Reported: ms per step (median of rounds), effective GB/s at the algorithm's minimal bytes
per parameter (28 B for all five: read θ, g and two states, write θ and two states), and the
speed ratio torch-fused time ÷ its time (median of per-round ratios; > 1 is faster than
torch's fused AdamW). Before timing, each compiled descend optimizer is checked against its
own eager run over three steps (largest relative difference, reported; exit status 1 past
1e-4). Without CUDA (and without ``--device cpu``) it prints a skip line and exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from descend import optim

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _results  # noqa: E402  (the benchmarks' shared helpers, beside this file)
from bench_optim import RESNET18  # noqa: E402

SECTION = "gpu"
SKIP = "bench_gpu: skipped: no CUDA (torch.cuda.is_available() is False); nothing was timed"
BYTES = 28  # per fp32 parameter and step, for every row (see the module docstring)
CHECK_TOL = 1e-4
SMOKE_SHAPES = [(64, 3, 3, 3), (64,), (10, 64), (10,), (1,)]


def _descend(cls, **kw) -> Callable:
    return lambda ps, lr: cls(ps, lr=lr, **kw)


IMPLS: dict[str, tuple[Callable, bool]] = {  # name: (make(params, lr), compiled)
    "torch AdamW fused": (lambda ps, lr: torch.optim.AdamW(ps, lr=lr, fused=True), False),
    "torch AdamW compiled": (lambda ps, lr: torch.optim.AdamW(ps, lr=lr), True),
    "descend AdamW compiled": (_descend(optim.AdamW), True),
    "descend RMSprop centered compiled": (
        _descend(optim.RMSprop, centered=True, momentum=0.9),
        True,
    ),
    "descend NAdam compiled": (_descend(optim.NAdam), True),
}
YARDSTICK = "torch AdamW fused"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Runner:
    """One implementation: its parameters (with fixed gradients), optimizer and step."""

    def __init__(self, name: str, shapes: list, device, backend: str, seed: int = 0):
        make, compiled = IMPLS[name]
        g = torch.Generator().manual_seed(seed)
        self.params = []
        for shape in shapes:
            p = torch.randn(shape, generator=g).to(device).requires_grad_()
            p.grad = torch.randn(shape, generator=g).mul_(1e-2).to(device)
            self.params.append(p)
        self.opt = make(self.params, torch.tensor(1e-3, device=device))
        self.step = torch.compile(self.opt.step, backend=backend) if compiled else self.opt.step


def check(name: str, shapes: list, device, backend: str, steps: int = 3) -> float:
    """Largest relative difference between ``name`` compiled and eager after ``steps``."""
    compiled = Runner(name, shapes, device, backend)
    eager = Runner(name, shapes, device, backend)
    for _ in range(steps):
        compiled.step()
        eager.opt.step()
    _sync(device)
    return max(
        float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
        for a, b in zip(compiled.params, eager.params, strict=True)
        for a, b in [(a.detach(), b.detach())]
    )


def measure(shapes: list, device, backend: str, rounds: int, steps: int, warmup: int) -> dict:
    """``{name: (ms per step per round, ratios to the yardstick per round)}``."""
    torch._dynamo.reset()  # the checks' compiled steps share the step's code object
    runners = {name: Runner(name, shapes, device, backend) for name in IMPLS}
    for runner in runners.values():
        for _ in range(warmup):  # compiles
            runner.step()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            step = runners[name].step
            _sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                step()
            _sync(device)
            times[name].append((time.perf_counter() - start) / steps * 1e3)
    base = times[YARDSTICK]
    return {
        name: (ms, [b / t for b, t in zip(base, ms, strict=True)]) for name, ms in times.items()
    }


def report(results: dict, diffs: dict, device, shapes: str, n: int, rounds: int, steps: int) -> str:
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else _results.cpu_name()
    lines = [
        "## GPU: compiled descend against torch's fused AdamW",
        "",
        f"{card}, torch {torch.__version__}, fp32, {shapes} ({n:,} parameters); "
        f"{rounds} rounds × {steps} steps, interleaved with the order rotated. Ratio = torch "
        "fused AdamW time ÷ this time (median of per-round ratios; > 1 is faster). "
        f"GB/s at {BYTES} B per parameter. Compiled vs eager: largest relative difference "
        "after 3 steps.",
        "",
        "| implementation | ms/step | GB/s | ratio to torch AdamW fused | compiled vs eager |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, (ms, ratios) in results.items():
        med = statistics.median(ms)
        gbs = n * BYTES / (med * 1e-3) / 1e9
        diff = f"{diffs[name]:.2g}" if name in diffs else "—"
        lines.append(
            f"| {name} | {med:.3f} | {gbs:.0f} | {statistics.median(ratios):.2f} | {diff} |"
        )
    return "\n".join(lines) + "\n"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes, few steps")
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (the harness only)")
    p.add_argument("--backend", default="inductor", help="torch.compile backend")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--steps", type=int, default=20, help="steps per round")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md")
    p.add_argument("--results", type=Path, default=_results.RESULTS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(SKIP)
        return 0
    shapes = SMOKE_SHAPES if args.smoke else RESNET18
    rounds, steps = (2, 2) if args.smoke else (args.rounds, args.steps)
    n = sum(torch.Size(s).numel() for s in shapes)
    diffs = {
        name: check(name, shapes, device, args.backend)
        for name, (_, compiled) in IMPLS.items()
        if compiled and name.startswith("descend")
    }
    results = measure(shapes, device, args.backend, rounds, steps, args.warmup)
    label = "smoke shapes" if args.smoke else "ResNet-18 shapes"
    body = report(results, diffs, device, label, n, rounds, steps)
    print(body)
    bad = {name: d for name, d in diffs.items() if not d <= CHECK_TOL}
    if bad:
        print(f"compiled differs from eager by more than {CHECK_TOL}: {bad}", file=sys.stderr)
        return 1
    if device.type == "cuda" and not args.smoke and not args.no_write:
        _results.write_section(SECTION, body, args.results)
        print(f"updated the '{SECTION}' section of {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
