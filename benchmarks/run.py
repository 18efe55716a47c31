"""Run every ``benchmarks/bench_*.py`` (``make bench``): each module's ``main(argv)``.

    python benchmarks/run.py             # full sizes; each benchmark updates its section of
                                         # benchmarks/RESULTS.md
    python benchmarks/run.py --smoke     # tiny sizes, checks only (what CI runs)
    python benchmarks/run.py --only optim lab

``--smoke`` is passed through to every benchmark; nothing else is, so each keeps its own
defaults. Benchmarks run one after another in this process (timings are interleaved inside
each benchmark, never across them). The exit status is the first non-zero status returned.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def discover() -> dict[str, Path]:
    """``{"optim": .../bench_optim.py, ...}`` sorted by name."""
    return {p.stem.removeprefix("bench_"): p for p in sorted(HERE.glob("bench_*.py"))}


def load(path: Path):
    spec = importlib.util.spec_from_file_location(f"benchmarks_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look modules up there
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes, checks only")
    p.add_argument("--only", nargs="*", help="benchmark names (bench_NAME.py) to run")
    args = p.parse_args(argv)
    found = discover()
    names = args.only or list(found)
    unknown = [n for n in names if n not in found]
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(found)}")
    status = 0
    for name in names:
        print(f"== bench_{name}.py{' --smoke' if args.smoke else ''}", flush=True)
        start = time.perf_counter()
        code = load(found[name]).main(["--smoke"] if args.smoke else []) or 0
        print(f"== bench_{name}.py: exit {code}, {time.perf_counter() - start:.1f} s", flush=True)
        status = status or code
    return status


if __name__ == "__main__":
    sys.exit(main())
