"""``descend schedule``: draw one or several learning-rate schedules given as spec strings.

Each SPEC is ``name[:key=value,…]`` as :func:`descend.schedules.from_spec` reads it; a
missing ``steps`` is filled from ``--steps``. The values are factors of the base lr, for
t = 0 … steps − 1 updates done.
"""

from __future__ import annotations

import argparse
from typing import Any

from descend.cli import CommandError, checks, outputs
from descend.cli.tables import add_format, emit, note


def schedules_epilog() -> str:
    """Every schedule name with its keys (``=…`` marks a required key) for ``--help``."""
    from descend.schedules import REQUIRED, available

    lines = ["schedules (keys; steps=… is filled from --steps):"]
    for name, keys in available().items():
        shown = ", ".join(k + ("=…" if v == REQUIRED else f"={v}") for k, v in keys.items())
        lines.append(f"  {name:<16} {shown}")
    return "\n".join(lines)


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
        epilog=schedules_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("specs", nargs="+", metavar="SPEC", help="schedule spec(s)")
    p.add_argument(
        "--steps",
        type=int,
        required=True,
        help=f"number of updates to draw (1 … {checks.MAX_SCHEDULE_STEPS:,})",
    )
    p.add_argument("--plot", required=True, metavar="OUT.png", help="where to write the figure")
    p.add_argument("--out", metavar="FILE.csv", help="also write every factor as CSV")
    add_format(p)
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
    checks.integer(args.steps, "--steps", 1, checks.MAX_SCHEDULE_STEPS)
    schedules = _build(args.specs, args.steps)
    plot = outputs.output_file(args.plot, "--plot")
    out = outputs.output_file(args.out, "--out") if args.out else None
    values = [s.values(args.steps) for s in schedules]

    _plot(args.specs, values, args.steps, plot)
    rows = [[str(t), *(f"{v[t]:.6g}" for v in values)] for t in _sample_steps(args.steps)]
    emit(rows, ["step", *args.specs], None, args.format)
    note(f"{args.plot}: {len(schedules)} schedule(s) over {args.steps} steps", args.format)
    if out is not None:
        import csv

        with open(out, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["step", *args.specs])
            for t in range(args.steps):
                writer.writerow([t, *(repr(v[t]) for v in values)])
        note(f"{args.out}: {args.steps} rows", args.format)
    return 0


def _plot(specs: list[str], values: list[list[float]], steps: int, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    stride = max(1, steps // 20_000)  # a figure shows no more points than that
    for spec, v in zip(specs, values):
        ax.plot(range(0, steps, stride), v[::stride], lw=1.8, label=spec)
    ax.set_xlabel("step (updates done)")
    ax.set_ylabel("factor of base lr")
    ax.set_title("learning-rate schedules")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
