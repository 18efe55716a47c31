"""Optimizer step speed: descend's fast path against its default path and torch's three.

    python benchmarks/bench_optim.py             # full sizes, 1 and 2 threads (~10 min)
    python benchmarks/bench_optim.py --smoke     # tiny sizes, checks only, no timing claims

For every named optimizer (× convention) and three shapes — one 10M-element tensor, the 62
tensors of ResNet-18 (11.7M parameters) and 1,000 tensors of 10k — everything below runs in
one process, interleaved round by round with the order rotated, after warm-up rounds, fp32:

* **fast**: descend's optimizer with ``fused=True`` (the single-pass kernels), one per
  convention (torch, keras, optax);
* **default**: the same optimizer with ``fused=False`` (the chain of ``_foreach`` ops),
  torch convention; for ``from_chain`` chains that is the only path;
* **torch for-loop / foreach / fused**: ``torch.optim``'s closest optimizer (the same
  algorithm where torch has it; fused only where torch has a CPU kernel);
* **fused Adam**: ``torch.optim.Adam(fused=True)``, the yardstick of the targets;
* **axpy**: an in-place ``b += s·c`` over the same number of elements (12 B per element),
  the realistic ceiling of memory bandwidth.

Reported per row: ms per step (median, min–max), parameters/s, effective GB/s counted with
the minimal bytes per parameter of the algorithm (read θ, g and each state, write θ and each
state), the fraction of the axpy probe's GB/s, and speed ratios (their time ÷ fast's time,
medians of per-round ratios; > 1 means fast is faster). ``main`` replaces only the ``optim``
section of ``benchmarks/RESULTS.md``. One-off build cost is measured in a fresh process with
an empty cache directory.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from descend import optim
from descend.optim import fast
from descend.transforms import scale_by_adam, scale_by_lr

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _results  # noqa: E402  (the benchmarks' shared helpers, beside this file)

SECTION = "optim"
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
CONVENTIONS = ("torch", "keras", "optax")

# ResNet-18 (1000 classes): conv/bn/fc parameter shapes in model order, 62 tensors.
RESNET18: list[tuple[int, ...]] = [(64, 3, 7, 7), (64,), (64,)]
for _cin, _cout, _stride in ((64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)):
    for _block in range(2):
        _first = _cin if _block == 0 else _cout
        RESNET18 += [(_cout, _first, 3, 3), (_cout,), (_cout,), (_cout, _cout, 3, 3)]
        RESNET18 += [(_cout,), (_cout,)]
        if _block == 0 and _stride != 1:
            RESNET18 += [(_cout, _cin, 1, 1), (_cout,), (_cout,)]
RESNET18 += [(1000, 512), (1000,)]

SHAPES = {
    "10M": [(10_000_000,)],
    "resnet18": RESNET18,
    "1000x10k": [(10_000,)] * 1000,
}
SMOKE_SHAPES = {"one": [(4096,)], "list": [(64, 3, 3, 3), (64,), (10, 64), (10,), (1,)]}


@dataclass
class Case:
    """One row family: a descend optimizer and the torch optimizer it is compared with."""

    name: str  # spec name, or a label for extra variants
    descend: Callable[..., torch.optim.Optimizer]  # (params, convention, fused) -> optimizer
    torch_ref: Callable[..., torch.optim.Optimizer] | None  # (params, **impl) -> optimizer
    torch_label: str
    bytes_per_param: int
    conventions: tuple[str, ...] = CONVENTIONS
    torch_fused: bool = True
    note: str = ""
    chain_only: bool = False  # from_chain: the default path is the only path
    extra: dict = field(default_factory=dict)


def _spec(name: str, **kw):
    return lambda ps, convention, fused: optim.from_spec(
        name, ps, convention=convention, fused=fused, **kw
    )


def _from_chain(ps, convention, fused):
    return optim.from_chain(ps, scale_by_adam(b1=0.9, b2=0.999, eps=1e-8), scale_by_lr(), lr=1e-3)


def _torch(cls, **kw):
    return lambda ps, **impl: cls(ps, **kw, **impl)


T = torch.optim
CASES = [
    Case("sgd", _spec("sgd"), _torch(T.SGD, lr=1e-3), "SGD", 12),
    Case("momentum", _spec("momentum"), _torch(T.SGD, lr=1e-3, momentum=0.9), "SGD m=0.9", 20),
    Case(
        "momentum-ema",
        _spec("momentum-ema"),
        _torch(T.SGD, lr=1e-3, momentum=0.9),
        "SGD m=0.9 (no EMA form in torch)",
        20,
    ),
    Case(
        "nesterov",
        _spec("nesterov"),
        _torch(T.SGD, lr=1e-3, momentum=0.9, nesterov=True),
        "SGD nesterov",
        20,
    ),
    Case("adagrad", _spec("adagrad"), _torch(T.Adagrad, lr=1e-2), "Adagrad", 20),
    Case("rmsprop", _spec("rmsprop"), _torch(T.RMSprop, lr=1e-2), "RMSprop", 20, torch_fused=False),
    Case(
        "rmsprop-centered",
        _spec("rmsprop-centered"),
        _torch(T.RMSprop, lr=1e-2, centered=True),
        "RMSprop centered",
        28,
        torch_fused=False,
    ),
    Case("adam", _spec("adam"), _torch(T.Adam, lr=1e-3), "Adam", 28),
    Case(
        "adam-no-bias-correction",
        _spec("adam", bias_correction=False),
        _torch(T.Adam, lr=1e-3),
        "Adam (torch has no switch)",
        28,
    ),
    Case("adamw", _spec("adamw"), _torch(T.AdamW, lr=1e-3), "AdamW", 28),
    Case("amsgrad", _spec("adam", amsgrad=True), _torch(T.Adam, amsgrad=True), "Adam amsgrad", 36),
    Case("nadam", _spec("nadam"), _torch(T.NAdam, lr=2e-3), "NAdam", 28, torch_fused=False),
    Case(
        "lion",
        _spec("lion", weight_decay=0.1),
        None,
        "— (torch has no Lion)",
        20,
        note="decoupled weight decay 0.1; compared with torch's fused Adam only",
    ),
    # AdEMAMix, Schedule-Free (issue #14)
    Case(
        "ademamix",
        _spec("ademamix", weight_decay=0.1, alpha_warmup=1000, beta3_warmup=1000),
        None,
        "— (torch has no AdEMAMix)",
        36,
        conventions=("torch",),
        note="warm-ups of α and β₃ on, decoupled decay 0.1; compared with torch's fused Adam only",
    ),
    Case(
        "schedule-free-adamw",
        _spec("schedule-free-adamw", weight_decay=0.1, warmup_steps=1000),
        None,
        "— (torch has no Schedule-Free)",
        36,
        conventions=("torch",),
        note="warm-up on, decay at y 0.1; compared with torch's fused Adam only",
    ),
    Case(
        "schedule-free-sgd",
        _spec("schedule-free-sgd", lr=0.01),
        None,
        "— (torch has no Schedule-Free)",
        28,
        conventions=("torch",),
        note="compared with torch's fused Adam only",
    ),
    # RAdam, Adamax, ADOPT (issue #14)
    Case(
        "radam",
        _spec("radam"),
        _torch(T.RAdam, lr=1e-3),
        "RAdam",
        28,
        conventions=("torch", "optax"),
        torch_fused=False,
    ),
    Case("adamax", _spec("adamax"), _torch(T.Adamax, lr=2e-3), "Adamax", 28, torch_fused=False),
    Case(
        "adopt",
        _spec("adopt"),
        None,
        "— (torch has no ADOPT)",
        28,
        conventions=("torch", "optax"),
        note="compared with torch's fused Adam only",
    ),
    # Adadelta, Rprop, ASGD (torch has no fused kernel for them)
    Case("adadelta", _spec("adadelta"), _torch(T.Adadelta), "Adadelta", 28, torch_fused=False),
    Case(
        "rprop",
        _spec("rprop"),
        _torch(T.Rprop),
        "Rprop",
        28,
        conventions=("torch",),
        torch_fused=False,
    ),
    Case(
        "asgd",
        _spec("asgd"),
        _torch(T.ASGD),
        "ASGD",
        16,
        conventions=("torch",),
        torch_fused=False,
        note="torch's t0 = 1e6: θ̄ ← θ (a write, 16 B); averaging (μ ≠ 1) reads θ̄ too (20 B)",
    ),
    # cautious mask (issue #14, i14kc): two passes, the first reading g and the state again
    Case(
        "adam-cautious",
        _spec("adam", cautious=True),
        None,
        "— (torch has no cautious mask)",
        28,
        conventions=("torch",),
        note="cautious=True: minimal 28 B; the kernel reads g, m, v twice (40 B) where a "
        "tensor outgrows the cache",
    ),
    Case(
        "lion-cautious",
        _spec("lion", weight_decay=0.1, cautious=True),
        None,
        "— (torch has no Lion)",
        20,
        conventions=("torch",),
        note="cautious=True, decoupled decay 0.1: minimal 20 B; g and m read twice (28 B) where "
        "a tensor outgrows the cache",
    ),
    Case(
        "from_chain adam",
        _from_chain,
        _torch(T.Adam, lr=1e-3),
        "Adam",
        28,
        conventions=("torch",),
        chain_only=True,
        note="scale_by_adam → scale_by_lr built with from_chain: keeps the foreach path",
    ),
]
# The targets of the fast-steps issue: (case, convention) → the torch reference it must reach.
TARGETS = [
    ("adamw", "torch", "fused", 0.95),
    ("momentum", "torch", "fused", 0.95),
    ("rmsprop", "torch", "adam", 0.8),
    ("rmsprop-centered", "torch", "adam", 0.8),
    ("nadam", "torch", "adam", 0.8),
    ("momentum-ema", "torch", "adam", 0.8),
    ("adam-no-bias-correction", "torch", "adam", 0.8),
    ("adam", "keras", "adam", 0.8),
    ("lion", "torch", "adam", 0.8),
    # AdEMAMix, Schedule-Free (issue #14)
    ("ademamix", "torch", "adam", 0.8),
    ("schedule-free-adamw", "torch", "adam", 0.8),
    ("schedule-free-sgd", "torch", "adam", 0.8),
    # RAdam, Adamax, ADOPT (issue #14)
    ("radam", "torch", "adam", 0.8),
    ("adamax", "torch", "adam", 0.8),
    ("adopt", "torch", "adam", 0.8),
    # Adadelta, Rprop, ASGD (issue #14)
    ("adadelta", "torch", "adam", 0.8),
    ("rprop", "torch", "adam", 0.8),
    ("asgd", "torch", "adam", 0.8),
    # cautious mask (issue #14)
    ("adam-cautious", "torch", "adam", 0.8),
    ("lion-cautious", "torch", "adam", 0.8),
]


def make_params(shapes, grads: list[torch.Tensor]) -> list[torch.Tensor]:
    """Fresh parameters (same values for every implementation) with copies of the gradients
    (torch's foreach Nesterov adds to the gradients in place)."""
    gen = torch.Generator().manual_seed(0)
    params = []
    for shape, g in zip(shapes, grads):
        p = torch.randn(shape, generator=gen).requires_grad_(True)
        p.grad = g.clone()
        params.append(p)
    return params


class Axpy:
    """The bandwidth probe: b ← b + s·c in place over the same element count."""

    def __init__(self, shapes):
        self.b = [torch.zeros(s) for s in shapes]
        self.c = [torch.ones(s) for s in shapes]

    def step(self):
        torch._foreach_add_(self.b, self.c, alpha=1e-7)


def implementations(case: Case, shapes, grads, placement: int = 0) -> dict[str, object]:
    """Every implementation of ``case`` on fresh tensors. They are built in an order rotated
    by ``placement``: the first-built one measured slowest here (5.7 ms where the same step
    built third ran 5.2–5.3 ms on the ResNet-18 list), so no implementation keeps that place."""
    makers: dict[str, Callable[[], object]] = {}
    if case.chain_only:
        makers["default"] = lambda: case.descend(make_params(shapes, grads), "torch", None)
    else:
        for conv in case.conventions:
            makers[f"fast {conv}"] = lambda conv=conv: case.descend(
                make_params(shapes, grads), conv, True
            )
        makers["default"] = lambda: case.descend(make_params(shapes, grads), "torch", False)
    if case.torch_ref is not None:  # None: torch has no such optimizer (Lion)
        makers["torch for-loop"] = lambda: case.torch_ref(make_params(shapes, grads), foreach=False)
        makers["torch foreach"] = lambda: case.torch_ref(make_params(shapes, grads), foreach=True)
    if case.torch_ref is not None and case.torch_fused:
        makers["torch fused"] = lambda: case.torch_ref(make_params(shapes, grads), fused=True)
    makers["fused Adam"] = lambda: T.Adam(make_params(shapes, grads), lr=1e-3, fused=True)
    makers["axpy"] = lambda: Axpy(shapes)
    names = list(makers)
    shift = (placement * 3) % len(names)  # 3 is coprime to the usual 7–10 implementations
    built = {name: makers[name]() for name in names[shift:] + names[:shift]}
    return {name: built[name] for name in names}


class Scrub:
    """Leaves the caches in the same state before every timed step: reads a buffer larger
    than the last-level cache, so the previous step's dirty lines are written back before the
    clock starts, not during the next implementation's step. Without it each implementation
    paid for its predecessor in the rotated order (the rotation keeps the same predecessor):
    SGD-momentum after the axpy probe measured 5.7 ms where the same step after a read measured
    4.6–4.9 ms, level with torch's fused SGD."""

    def __init__(self, mib: int = 96):
        self.buffer = torch.ones(mib * 2**20 // 4)

    def __call__(self) -> None:
        float(self.buffer.sum())


def time_rounds(impls: dict[str, object], rounds: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per step of each implementation, one step each per round, order rotated, each
    step timed from the same (scrubbed) cache state."""
    names = list(impls)
    times: dict[str, list[float]] = {k: [] for k in names}
    scrub = Scrub()
    for r in range(warmup + rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            scrub()
            start = time.perf_counter()
            impls[name].step()
            elapsed = time.perf_counter() - start
            if r >= warmup:
                times[name].append(elapsed)
    return times


def _ratio(a: list[float], b: list[float]) -> tuple[float, float, float]:
    per_round = [x / y for x, y in zip(a, b)]
    return statistics.median(per_round), min(per_round), max(per_round)


def summarise(case: Case, times: dict[str, list[float]], n: int) -> list[dict]:
    """One row per fast implementation (or the default path of a from_chain case)."""
    rows = []
    subjects = ["default"] if case.chain_only else [f"fast {c}" for c in case.conventions]
    for subject in subjects:
        t = times[subject]
        med = statistics.median(t)
        axpy_frac = _ratio([case.bytes_per_param / x for x in t], [12 / y for y in times["axpy"]])
        row = {
            "case": case.name,
            "convention": subject.split(" ", 1)[1] if subject.startswith("fast") else "torch",
            "path": "fast" if subject.startswith("fast") else "default",
            "ms": (med * 1e3, min(t) * 1e3, max(t) * 1e3),
            "gparams": n / med / 1e9,
            "gbs": case.bytes_per_param * n / med / 1e9,
            "axpy": axpy_frac,
        }
        for label, key in (
            ("torch for-loop", "forloop"),
            ("torch foreach", "foreach"),
            ("torch fused", "fused"),
            ("fused Adam", "adam"),
            ("default", "default"),
        ):
            if label in times and label != subject:
                row[key] = _ratio(times[label], t)
        rows.append(row)
    return rows


def measure(args) -> list[dict]:
    rows = []
    shapes_by_name = SMOKE_SHAPES if args.smoke else SHAPES
    for threads in args.threads:
        torch.set_num_threads(threads)
        for shape_name, shapes in shapes_by_name.items():
            gen = torch.Generator().manual_seed(1)
            grads = [torch.randn(s, generator=gen) * 1e-2 for s in shapes]
            n = sum(g.numel() for g in grads)
            for case in CASES:
                if args.only and case.name not in args.only:
                    continue
                times: dict[str, list[float]] = {}
                for placement, rounds in enumerate(placement_rounds(args.rounds, args.placements)):
                    impls = implementations(case, shapes, grads, placement)
                    for name, ts in time_rounds(impls, rounds, args.warmup).items():
                        times.setdefault(name, []).extend(ts)
                    if args.check or args.smoke:
                        check_agreement(case, impls)
                    del impls
                for row in summarise(case, times, n):
                    row.update(threads=threads, shape=shape_name, n=n)
                    rows.append(row)
                    print(_line(row), flush=True)
    return rows


def placement_rounds(rounds: int, placements: int) -> list[int]:
    """``rounds`` split over ``placements`` fresh sets of tensors. Where an array lands in
    memory moves a bandwidth-bound step by up to ±15% here (the same 10M-element SGD step:
    4.6 ms or 5.4 ms depending on which of three optimizers was built first), the same for
    any implementation; so every implementation is built anew for each placement and its
    rounds are pooled over them."""
    placements = max(1, min(placements, rounds))
    return [rounds // placements + (i < rounds % placements) for i in range(placements)]


def check_agreement(case: Case, impls: dict) -> None:
    """The fast path must match the default path after the same steps (fp32, 1e-6)."""
    if case.chain_only:
        return
    fast_opt, default_opt = impls["fast torch"], impls["default"]
    paths = fast.last_path(fast_opt)
    if any(v != "fast" for v in paths.values()):
        raise AssertionError(f"{case.name}: fast path not taken: {paths}")
    a = [p.detach() for g in fast_opt.param_groups for p in g["params"]]
    b = [p.detach() for g in default_opt.param_groups for p in g["params"]]
    num = sum(float(((x - y) ** 2).sum()) for x, y in zip(a, b)) ** 0.5
    den = sum(float((y**2).sum()) for y in b) ** 0.5
    if not num <= 1e-6 * den:
        raise AssertionError(f"{case.name}: fast and default paths differ: rel {num / den:.2e}")


def _line(row: dict) -> str:
    ms = row["ms"][0]
    fused = row.get("fused", row.get("adam"))
    return (
        f"{row['threads']}T {row['shape']:>9} {row['case']:>24} {row['convention']:>6}: "
        f"{ms:8.2f} ms  {row['gparams']:.2f} Gp/s  {row['gbs']:5.1f} GB/s  "
        f"axpy {row['axpy'][0]:.2f}  vs torch fused/Adam {fused[0]:.2f}"
    )


def build_cost() -> dict:
    """Build the kernels from scratch in a fresh process (empty cache) and time it."""
    code = (
        "import time; t = time.perf_counter(); from descend.optim import fast; "
        "s = fast.status(); print(s['build_s'], time.perf_counter() - t, s['error'])"
    )
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, DESCEND_CACHE_DIR=tmp)
        cold = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        warm = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    build_s, cold_total, error = cold.stdout.split(maxsplit=2)
    _, warm_total, _ = warm.stdout.split(maxsplit=2)
    return {
        "build_s": float(build_s) if build_s != "None" else None,
        "cold_s": float(cold_total),
        "warm_s": float(warm_total),
        "error": None if error.strip() == "None" else error.strip(),
    }


def environment() -> str:
    cpu = _results.cpu_name()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"torch {torch.__version__}, {cpu}, {os.cpu_count()} CPUs, load average {load}, fp32"


def _fmt_ratio(r) -> str:
    if r is None:
        return "—"
    med, lo, hi = r
    return f"{med:.2f} ({lo:.2f}–{hi:.2f})"


def report(rows: list[dict], build: dict | None, args) -> str:
    out = [
        f"## Optimizer steps: fast path\n\n{environment()}; {args.rounds} rounds after "
        f"{args.warmup} warm-up, interleaved in one process, order rotated."
    ]
    if build is not None:
        out.append(
            f"One-off build of the kernels (g++, empty cache, fresh process): "
            f"**{build['build_s']:.1f} s** (first `import` + build {build['cold_s']:.1f} s); "
            f"later processes load the cached library: {build['warm_s']:.2f} s for the "
            "import."
            if build["build_s"] is not None
            else f"Kernels could not be built: {build['error']}"
        )
    out.append(targets_table(rows))
    for threads in sorted({r["threads"] for r in rows}):
        lines = [
            f"### {threads} thread{'s' if threads > 1 else ''}\n",
            "| shape | optimizer | conv. | path | ms/step (min–max) | G param/s | GB/s | "
            "× axpy | vs torch for-loop | vs torch foreach | vs torch fused | vs fused Adam "
            "| vs descend default |",
            "|" + "---|" * 13,
        ]
        for r in rows:
            if r["threads"] != threads:
                continue
            ms, lo, hi = r["ms"]
            lines.append(
                f"| {r['shape']} | {r['case']} | {r['convention']} | {r['path']} | "
                f"{ms:.2f} ({lo:.2f}–{hi:.2f}) | {r['gparams']:.2f} | {r['gbs']:.1f} | "
                f"{r['axpy'][0]:.2f} | {_fmt_ratio(r.get('forloop'))} | "
                f"{_fmt_ratio(r.get('foreach'))} | {_fmt_ratio(r.get('fused'))} | "
                f"{_fmt_ratio(r.get('adam'))} | {_fmt_ratio(r.get('default'))} |"
            )
        out.append("\n".join(lines))
    out.append(NOTES)
    return "\n\n".join(out)


def targets_table(rows: list[dict]) -> str:
    lines = [
        "### Targets (speed ratio = torch time ÷ fast time; median of rounds, 1 thread; "
        "2 threads beside)\n",
        "| optimizer | conv. | against | needed | "
        + " | ".join(f"{s} 1T | {s} 2T" for s in SHAPES)
        + " |",
        "|" + "---|" * (4 + 2 * len(SHAPES)),
    ]
    index = {(r["case"], r["convention"], r["shape"], r["threads"]): r for r in rows}
    for case, conv, against, need in TARGETS:
        if not any(key[:2] == (case, conv) for key in index):
            continue  # not measured in this run (--only)
        cells = []
        for shape in SHAPES:
            for threads in (1, 2):
                r = index.get((case, conv, shape, threads))
                value = r.get(against) if r else None
                if value is None:
                    cells.append("—")
                else:
                    mark = "" if value[0] >= need else " ✗"
                    cells.append(f"{value[0]:.2f}{mark}")
        label = "torch fused (same algorithm)" if against == "fused" else "torch fused Adam"
        lines.append(f"| {case} | {conv} | {label} | ≥ {need} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


NOTES = """\
Bytes per parameter (fp32, minimal traffic): SGD 12, ASGD before t₀ 16, SGD with momentum /
RMSprop / Adagrad / Lion 20, Adam / AdamW / NAdam / centered RMSprop / Adadelta / Rprop 28,
AMSGrad 36 (Keras-convention SGD keeps its
velocity even without momentum: 20 B moved, counted as 12). "× axpy" is the fast path's GB/s as a
fraction of the in-place axpy probe's GB/s in the same rounds. "vs torch fused" compares with
torch's fused kernel of the same algorithm (SGD, Adagrad, Adam, AdamW only — torch has none
for RMSprop or NAdam, and no switch for EMA momentum, Adam without bias correction or Keras'
ε̂: those rows compare with the nearest torch algorithm, named in the code). "vs fused Adam" is
the yardstick of the targets for the variants.

The fast path is C++ compiled once per machine and called through ctypes: per step and
param group, one call, one OpenMP parallel region over all the group's tensors (cut into equal
element ranges), each element of θ, g and the state read once and written once; the
gradients stay where autograd put them (no flat-buffer copy). torch's fused kernels open one
parallel region per tensor: at 2 threads, while another process keeps the second core busy,
each region can stall for milliseconds (see `shared/reference/performance.md`), which is where
the very large 2-thread ratios and min–max spreads come from; the 1-thread columns are the
steady comparison."""


def write_section(body: str, path: Path = RESULTS) -> None:
    """Replace (or append) this benchmark's section of RESULTS.md, leaving the others."""
    _results.write_section(SECTION, body, path)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes, few steps; checks only")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument(
        "--placements", type=int, default=4, help="fresh tensors this many times (rounds split)"
    )
    p.add_argument("--only", nargs="*", help="case names to run (default: all)")
    p.add_argument("--check", action="store_true", help="also check fast = default (slow)")
    p.add_argument("--no-build", action="store_true", help="skip timing the one-off build")
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md")
    p.add_argument("--results", type=Path, default=RESULTS, help="file to update")
    p.add_argument(
        "--section",
        default=SECTION,
        help="RESULTS.md section to replace (give a new one with --only, so the full table stays)",
    )
    args = p.parse_args(argv)
    args.threads = [int(t) for t in args.threads.split(",")]
    if args.smoke:
        args.rounds, args.warmup, args.threads, args.no_build = 2, 1, [1], True
        args.no_write = args.no_write or args.results == RESULTS
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if not fast.available():
        print(f"fast kernels unavailable: {fast.status()['error']}", file=sys.stderr)
        return 1
    threads_before = torch.get_num_threads()
    try:
        rows = measure(args)
    finally:
        torch.set_num_threads(threads_before)
    build = None if args.no_build else build_cost()
    body = report(rows, build, args)
    print(body)
    if not args.no_write:
        _results.write_section(args.section, body, args.results)
        print(f"updated the '{args.section}' section of {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
