"""Web lab latency: how long the page waits for its answers, over real HTTP on 127.0.0.1.

    python benchmarks/bench_web.py            # 4 optimizers × 1,000 steps and the other calls
    python benchmarks/bench_web.py --smoke    # tiny sizes, checks only, no timing claims

The app (``descend.web.create_app``) runs under uvicorn in a background thread of this process,
as ``descend serve`` runs it; a keep-alive ``httpx`` client posts the requests the page makes.
The target from the issue: **a run of 4 optimizers × 1,000 steps answers within 500 ms on 2
cores** (Rosenbrock, one start, sgd/momentum/nesterov/adam at the landscape's learning rates,
every step returned, as the page asks).

Baseline, interleaved round by round in the same process (order rotated): the same run as a
direct ``descend.lab.run`` call — the trajectory engine's own time. Their ratio is the cost of
the web layer (validation, JSON for ~8,000 numbers, HTTP). Latencies are medians over rounds;
the ratio is the median of per-round ratios. ``main`` replaces only the ``web`` section of
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _results  # noqa: E402  (the benchmarks' shared helpers, beside this file)

SECTION = "web"
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
TARGET_MS = 500.0
SPECS = ["sgd", "momentum", "nesterov", "adam"]
START = [-1.2, 1.0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The web lab under uvicorn in a daemon thread."""

    def __init__(self) -> None:
        import uvicorn

        from descend.web import create_app

        self.port = free_port()
        config = uvicorn.Config(create_app(), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def requests(steps: int, small: bool) -> dict[str, tuple[str, dict]]:
    """The calls the page makes, by name: (path, body)."""
    run = {
        "function": {"name": "rosenbrock"},
        "optimizers": SPECS,
        "starts": [START],
        "steps": steps,
    }
    grid = 12 if small else 40
    return {
        "run": ("/api/run", run),
        "contour 160²": ("/api/contour", {"function": {"name": "rosenbrock"}, "resolution": 160}),
        "theory (ravine)": (
            "/api/theory",
            {**run, "function": {"name": "ravine", "params": {"kappa": 100}}},
        ),
        f"basins {grid}² × 2 × 300 steps": (
            "/api/basins",
            {
                "function": {"name": "himmelblau"},
                "optimizers": ["sgd", "adam"],
                "grid": grid,
                "steps": 300,
            },
        ),
        "GIF 60 frames, 420 px": (
            "/api/gif",
            {**run, "frames": 8 if small else 60, "size": 420},
        ),
    }


def direct_run(steps: int):
    from descend import lab

    return lab.run("rosenbrock", SPECS, starts=[START], steps=steps)


def measure(args: argparse.Namespace, threads: int) -> dict:
    import httpx

    torch.set_num_threads(threads)
    calls = requests(args.steps, args.smoke)
    times: dict[str, list[float]] = {name: [] for name in calls}
    times["lab.run (baseline)"] = []
    ratios = []
    with Server() as base, httpx.Client(base_url=base, timeout=120) as client:
        # warm-up (first calls build caches: landscapes, optimizer table, torch kernels)
        for path, body in calls.values():
            client.post(path, json=body).raise_for_status()
        direct_run(args.steps)
        for k in range(args.rounds):
            order = ["web", "lab"] if k % 2 == 0 else ["lab", "web"]
            pair = {}
            for which in order:
                start = time.perf_counter()
                if which == "web":
                    response = client.post(calls["run"][0], json=calls["run"][1])
                    response.raise_for_status()
                else:
                    direct_run(args.steps)
                pair[which] = time.perf_counter() - start
            times["run"].append(pair["web"])
            times["lab.run (baseline)"].append(pair["lab"])
            ratios.append(pair["web"] / pair["lab"])
        for name, (path, body) in calls.items():
            if name == "run":
                continue
            for _ in range(args.other_rounds):
                start = time.perf_counter()
                client.post(path, json=body).raise_for_status()
                times[name].append(time.perf_counter() - start)
        agreement = check(client, calls["run"], args.steps)
    return {"times": times, "ratio": statistics.median(ratios), "agreement": agreement}


def check(client, call: tuple[str, dict], steps: int) -> float:
    """Largest |difference| between the web trajectories and a direct lab run."""
    data = client.post(call[0], json=call[1]).json()
    direct = direct_run(steps)
    web = np.array([run["trajectory"] for run in data["runs"]], dtype=float)
    return float(np.nanmax(np.abs(web - direct.trajectories)))


def environment() -> str:
    cpu = _results.cpu_name()
    return f"torch {torch.__version__}, {cpu}, {os.cpu_count()} cores"


def table(args: argparse.Namespace, results: dict[int, dict]) -> str:
    lines = [
        "| request | " + " | ".join(f"{t} thread{'s' if t > 1 else ''}" for t in results) + " |",
        "|---|" + "---|" * len(results),
    ]
    names = list(next(iter(results.values()))["times"])
    for name in names:
        cells = []
        for data in results.values():
            values = data["times"][name]
            median = statistics.median(values) * 1000
            cells.append(f"{median:,.0f} ms (max {max(values) * 1000:,.0f})")
        label = f"run: 4 optimizers × {args.steps:,} steps" if name == "run" else name
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append(
        "| run ÷ lab.run (web layer cost) | "
        + " | ".join(f"{d['ratio']:.2f}×" for d in results.values())
        + " |"
    )
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes; check it runs, no claims")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=15, help="rounds of the run request")
    p.add_argument("--other-rounds", type=int, default=3, help="rounds of the other requests")
    p.add_argument("--threads", default="2,1", help="comma-separated torch thread counts")
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md")
    args = p.parse_args(argv)
    args.threads = [int(t) for t in args.threads.split(",")]
    if args.smoke:
        args.steps, args.rounds, args.other_rounds, args.threads = 50, 2, 1, [1]
        args.no_write = True
    return args


def write_section(body: str, path: Path = RESULTS) -> None:
    """Replace (or append) this benchmark's section of RESULTS.md, leaving the others."""
    _results.write_section(SECTION, body, path)


def main(argv: list[str] | None = None) -> int:
    try:
        import httpx  # noqa: F401
        import uvicorn  # noqa: F401

        import descend.web.app  # noqa: F401
    except ImportError as exc:
        print(f"bench_web needs the web and test extras: {exc}", file=sys.stderr)
        return 1
    args = parse(argv)
    threads_before = torch.get_num_threads()
    try:
        results = {t: measure(args, t) for t in args.threads}
    finally:
        torch.set_num_threads(threads_before)
    body = table(args, results)
    print(body)
    worst = max(d["agreement"] for d in results.values())
    if worst > 1e-9:
        print(f"web and direct lab trajectories differ by {worst:.3g}", file=sys.stderr)
        return 1
    if not args.no_write:
        two = results.get(2) or next(iter(results.values()))
        median = statistics.median(two["times"]["run"]) * 1000
        verdict = "meets" if median <= TARGET_MS else "misses"
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
        header = (
            "## Web lab: request latency over HTTP\n\n"
            f"{environment()}; load average at the end {load}. uvicorn in a thread of the "
            "benchmark process, keep-alive httpx client on 127.0.0.1; medians of "
            f"{args.rounds} rounds for the run (interleaved with a direct `lab.run`), "
            f"{args.other_rounds} for the others.\n\n"
            f"Target: 4 optimizers × 1,000 steps within {TARGET_MS:.0f} ms on 2 cores — "
            f"this run **{verdict}** it ({median:,.0f} ms median at "
            f"{2 if 2 in results else args.threads[0]} threads).\n\n"
        )
        notes = (
            f"\n\nWeb and direct trajectories agree to {worst:.1g} (the same engine). The run "
            "is 4 optimizer groups × 1,000 steps of `descend.lab.run` on one 2-D point; "
            "nearly all of its time is the engine's per-step Python overhead (one descend "
            "optimizer step, the landscape's value and gradient, the tracker), which is "
            "`descend.lab`'s to reduce; the web layer's share is the ratio row."
        )
        write_section(header + body + notes)
        print(f"updated the '{SECTION}' section of {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
