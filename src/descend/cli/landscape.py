"""``descend landscape``: run optimizers on a test function, draw them, print the metrics.

    descend landscape rosenbrock --optimizers adam:lr=0.02 momentum --steps 500 --out out/
    descend landscape ravine --params kappa=50,angle=30 --optimizers "sgd;nesterov" --out out/

Writes contour.png/svg (2-D functions), surface.png/svg (2-D), curve.png/svg (1-D),
loss.png/svg, metrics.csv, and with --animate animation.gif (+ .mp4 where ffmpeg exists).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from descend.cli import CommandError

TABLE_COLUMNS = (
    "spec",
    "start",
    "seed",
    "final_loss",
    "steps_to_tol",
    "distance",
    "basin",
    "path_length",
    "overshoots",
    "status",
)


def add_common(p: argparse.ArgumentParser, steps: int) -> None:
    """Arguments shared by landscape, basins and sweep."""
    p.add_argument(
        "function",
        help="a landscape name (rosenbrock, himmelblau, ravine, …) or "
        "an expression 'expr:x**2 + 10*sin(y)'",
    )
    p.add_argument(
        "--params",
        default="",
        metavar="K=V,…",
        help="the function's parameters, e.g. kappa=50,angle=30 for ravine",
    )
    p.add_argument("--steps", type=int, default=steps, help=f"steps per run (default {steps})")
    p.add_argument(
        "--noise-batch",
        type=int,
        metavar="B",
        help="noisy gradients ∇f + ξ with ξ ~ N(0, 1/B) (DeepOBS's mini-batch model)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the gradient noise (default 0)")
    p.add_argument(
        "--tol",
        type=float,
        default=1e-6,
        help="steps_to_tol counts steps until f − f* < tol (default 1e-6)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="directory for the files")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "landscape",
        help="run optimizers on a test function; draw paths and print metrics",
        description=(
            "Run each optimizer spec from each start on a test function (one batched "
            "computation), write contour/surface/loss pictures and a CSV of metrics, and print "
            "the metrics table. Specs without lr use the function's default lr (printed)."
        ),
    )
    add_common(p, steps=300)
    p.add_argument(
        "--optimizers",
        nargs="+",
        required=True,
        metavar="SPEC",
        help="optimizer specs such as adam:lr=0.01, separated by spaces or ';'",
    )
    p.add_argument(
        "--start",
        action="append",
        metavar="X,Y",
        help="start point (repeat, or separate with ';'); default: the function's suggested starts",
    )
    p.add_argument(
        "--schedule",
        metavar="SPEC",
        help="lr schedule as a factor of each lr, e.g. cosine or "
        "linear_warmup:warmup=20>cosine (see `descend schedule`)",
    )
    p.add_argument("--animate", action="store_true", help="also write animation.gif (and .mp4)")
    p.add_argument("--max-frames", type=int, default=80, help="frame cap of the animation")
    p.set_defaults(func=run)


def parse_params(text: str) -> dict[str, float]:
    """``"kappa=50,angle=30"`` → {"kappa": 50.0, "angle": 30.0}."""
    out: dict[str, float] = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise CommandError(f"--params: malformed item {item!r}; use key=value,key=value")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise CommandError(f"--params: {key.strip()}={value!r} is not a number") from None
    return out


def load_landscape(args: argparse.Namespace):
    from descend import lab

    return lab.resolve_landscape(args.function, **parse_params(args.params))


def check_steps(args: argparse.Namespace) -> None:
    if args.steps < 1:
        raise CommandError(f"--steps must be ≥ 1, got {args.steps}")
    if args.noise_batch is not None and args.noise_batch < 1:
        raise CommandError(f"--noise-batch must be an integer ≥ 1, got {args.noise_batch}")
    if not (args.tol > 0 and math.isfinite(args.tol)):
        raise CommandError(f"--tol must be a number > 0, got {args.tol}")


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    try:
        import pandas as pd

        if value is pd.NA:
            return "–"
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, tuple):
        return "(" + ", ".join(f"{v:.4g}" for v in value) + ")"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.4g}"
    return str(value)


def print_table(frame, columns, title: str) -> None:
    """Print a pandas frame as a rich table (wide enough not to wrap in a pipe)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 160))
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column, justify="left" if column in ("spec", "status") else "right")
    for _, row in frame.iterrows():
        table.add_row(*(_cell(row[c]) for c in columns))
    console.print(table)


def print_defaults(landscape, result) -> None:
    used = result.default_lrs_used()
    if used:
        items = ", ".join(f"{name} lr={lr:g}" for name, lr in used.items())
        print(f"default learning rates of {landscape.name}: {items}")


def run(args: argparse.Namespace) -> int:
    from descend import lab, plots
    from descend.lab.ranges import parse_points

    check_steps(args)
    landscape = load_landscape(args)
    starts = None
    if args.start:
        starts = [p for text in args.start for p in parse_points(text, landscape.dim, "--start")]
    schedule = None
    if args.schedule:
        from descend import schedules

        schedule = schedules.from_spec(args.schedule, total_steps=args.steps)
    if args.max_frames < 2:
        raise CommandError(f"--max-frames must be ≥ 2, got {args.max_frames}")
    result = lab.run(
        landscape,
        args.optimizers,
        starts,
        args.steps,
        args.seed,
        noise_batch=args.noise_batch,
        schedule=schedule,
        tol=args.tol,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print_defaults(landscape, result)
    written = [result.to_csv(out / "metrics.csv")]
    if landscape.dim == 2:
        written += plots.contour(result, out / "contour")
        written += plots.surface(result, out / "surface")
    elif landscape.dim == 1:
        written += plots.curve_1d(result, out / "curve")
    written += plots.loss_curves(result, out / "loss")
    if args.animate:
        if landscape.dim != 2:
            print("--animate: animations are drawn for 2-D functions only; skipped")
        else:
            written += plots.animate(result, out / "animation", max_frames=args.max_frames)
            if not plots.ffmpeg_available():
                print("--animate: ffmpeg not found, wrote the GIF only")
    noise = f", noise batch {args.noise_batch}" if args.noise_batch else ""
    title = (
        f"{landscape.name}: {args.steps} steps{noise} (f* = {result.f_star}, tol = {args.tol:g})"
    )
    print_table(result.metrics, TABLE_COLUMNS, title)
    for row in result.metrics.itertuples():
        if row.status in ("invalid", "stopped"):
            print(f"{row.spec}: {row.status}: {row.message}")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
