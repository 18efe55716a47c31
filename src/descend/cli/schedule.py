"""``descend schedule``: draw one or several learning-rate schedules given as spec strings.

Each SPEC is ``name[:key=value,…]`` as :func:`descend.schedules.from_spec` reads it; a
missing ``steps`` is filled from ``--steps``. The values are factors of the base lr, for
t = 0 … steps − 1 updates done.
"""

from __future__ import annotations

import argparse
from typing import Any

from descend.cli import CommandError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "schedule",
        help="plot learning-rate schedules given as specs",
        description=(
            "Plot learning-rate schedules (factors of the base lr) for --steps updates. "
            "SPEC is name[:key=value,...], e.g. cosine:final=0.1 or "
            "'linear_warmup:warmup=100>cosine' (parts joined by > run in sequence); "
            "a missing steps= is filled from --steps."
        ),
    )
    p.add_argument("specs", nargs="+", metavar="SPEC", help="schedule spec(s)")
    p.add_argument("--steps", type=int, required=True, help="number of updates to draw")
    p.add_argument("--plot", required=True, metavar="OUT.png", help="where to write the figure")
    p.add_argument("--out", metavar="FILE.csv", help="also write every factor as CSV")
    p.set_defaults(func=run)


def _build(specs: list[str], steps: int) -> list[Any]:
    from descend.schedules import from_spec

    built = []
    for spec in specs:
        try:
            built.append(from_spec(spec, total_steps=steps))
        except ValueError as exc:
            raise CommandError(f"{spec}: {exc}") from None
    return built


def _sample_steps(steps: int) -> list[int]:
    return sorted({0, steps // 4, steps // 2, (3 * steps) // 4, steps - 1})


def run(args: argparse.Namespace) -> int:
    if args.steps < 1:
        raise CommandError(f"--steps must be an integer >= 1, got {args.steps}")
    schedules = _build(args.specs, args.steps)
    values = [s.values(args.steps) for s in schedules]

    _plot(args.specs, values, args.steps, args.plot)
    widths = [max(10, len(spec)) + 2 for spec in args.specs]
    print("step".rjust(8) + "".join(spec.rjust(w) for spec, w in zip(args.specs, widths)))
    for t in _sample_steps(args.steps):
        print(f"{t:8d}" + "".join(f"{v[t]:{w}.6g}" for v, w in zip(values, widths)))
    print(f"{args.plot}: {len(schedules)} schedule(s) over {args.steps} steps")
    if args.out:
        import csv

        with open(args.out, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["step", *args.specs])
            for t in range(args.steps):
                writer.writerow([t, *(repr(v[t]) for v in values)])
        print(f"{args.out}: {args.steps} rows")
    return 0


def _plot(specs: list[str], values: list[list[float]], steps: int, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for spec, v in zip(specs, values):
        ax.plot(range(steps), v, lw=1.8, label=spec)
    ax.set_xlabel("step (updates done)")
    ax.set_ylabel("factor of base lr")
    ax.set_title("learning-rate schedules")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
