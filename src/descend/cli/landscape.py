"""``descend landscape``: run optimizers on a test function, draw them, print the metrics.

    descend landscape rosenbrock --optimizers adam:lr=0.02 momentum --steps 500 --out out/
    descend landscape ravine --params kappa=50,angle=30 --optimizers "sgd;nesterov" --out out/

Writes contour.png/svg (2-D functions), surface.png/svg (2-D), curve.png/svg (1-D),
loss.png/svg, metrics.csv, and with --animate animation.gif (+ .mp4 where ffmpeg exists).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from descend.cli import CommandError, checks, outputs, progress
from descend.cli.tables import add_format, emit, note

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
    add_format(p)


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
    p.add_argument(
        "--max-frames", type=int, default=80, help="frame cap of the animation (2 … 1000)"
    )
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


def check_steps(args: argparse.Namespace, max_steps: int = checks.MAX_LANDSCAPE_STEPS) -> None:
    checks.integer(args.steps, "--steps", 1, max_steps)
    checks.integer(args.noise_batch, "--noise-batch", 1)
    checks.number(args.tol, "--tol", 0, None, low_open=True)


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


def print_table(frame, columns, title: str, fmt: str = "rich", optional=()) -> None:
    """Print a pandas frame as a table (rich fits the terminal, dropping ``optional`` columns
    if it must; markdown; CSV)."""
    rows = [[_cell(row[c]) for c in columns] for _, row in frame.iterrows()]
    emit(rows, columns, title, fmt, left=("spec", "status", "optimizer"), optional=optional)


def print_defaults(landscape, result, fmt: str = "rich") -> None:
    used = result.default_lrs_used()
    if used:
        items = ", ".join(f"{name} lr={lr:g}" for name, lr in used.items())
        note(f"default learning rates of {landscape.name}: {items}", fmt)


def run(args: argparse.Namespace) -> int:
    check_steps(args)
    checks.integer(args.max_frames, "--max-frames", 2, 1000)
    checks.size(
        checks.count_specs(args.optimizers) * args.steps,
        checks.MAX_RECORDED,
        f"recorded positions: {checks.count_specs(args.optimizers)} specs × {args.steps:,} "
        "steps (per start)",
        "lower --steps or give fewer optimizers",
    )
    from descend import lab, plots
    from descend.lab.ranges import parse_points

    landscape = load_landscape(args)
    spec_list = checks.specs(args.optimizers, "--optimizers", dict(landscape.default_lrs))
    starts = None
    if args.start:
        starts = [p for text in args.start for p in parse_points(text, landscape.dim, "--start")]
    n_starts = len(starts) if starts else max(1, len(landscape.starts))
    runs = len(spec_list) * n_starts
    checks.size(
        runs * args.steps,
        checks.MAX_RECORDED,
        f"recorded positions: {len(spec_list)} specs × {n_starts} starts × {args.steps:,} steps",
        "lower --steps or give fewer optimizers/starts",
    )
    schedule = None
    if args.schedule:
        from descend import schedules

        try:
            schedule = schedules.from_spec(args.schedule, total_steps=args.steps)
        except ValueError as exc:
            raise CommandError(f"--schedule: {exc}") from None
    out = outputs.output_dir(args.out)
    progress.kernels(args.format)
    with progress.Stage(f"{runs} runs × {args.steps:,} steps on {landscape.name}", args.format):
        result = lab.run(
            landscape,
            spec_list,
            starts,
            args.steps,
            args.seed,
            noise_batch=args.noise_batch,
            schedule=schedule,
            tol=args.tol,
        )
    print_defaults(landscape, result, args.format)
    written = [result.to_csv(out / "metrics.csv")]
    with progress.Stage("drawing", args.format) as stage:
        if landscape.dim == 2:
            stage.update("drawing the contour map")
            written += plots.contour(result, out / "contour")
            stage.update("drawing the surface")
            written += plots.surface(result, out / "surface")
        elif landscape.dim == 1:
            written += plots.curve_1d(result, out / "curve")
        stage.update("drawing the loss curves")
        written += plots.loss_curves(result, out / "loss")
        if args.animate and landscape.dim == 2:
            stage.update(f"drawing the animation (up to {args.max_frames} frames)")
            written += plots.animate(result, out / "animation", max_frames=args.max_frames)
    if args.animate:
        if landscape.dim != 2:
            note("--animate: animations are drawn for 2-D functions only; skipped", args.format)
        elif not plots.ffmpeg_available():
            note("--animate: ffmpeg not found, wrote the GIF only", args.format)
    noise = f", noise batch {args.noise_batch}" if args.noise_batch else ""
    title = (
        f"{landscape.name}: {args.steps} steps{noise} (f* = {result.f_star}, tol = {args.tol:g})"
    )
    columns = list(TABLE_COLUMNS)
    if args.format == "rich":
        # 80 columns hold nine: the seed is in the title when there is only one.
        if result.metrics["seed"].nunique() == 1:
            columns.remove("seed")
            title += f", seed {int(result.metrics['seed'].iloc[0])}"
    optional = ("path_length", "distance", "basin", "overshoots")
    print_table(result.metrics, columns, title, args.format, optional)
    for row in result.metrics.itertuples():
        if row.status in ("invalid", "stopped"):
            note(f"{row.spec}: {row.status}: {row.message}", args.format)
    note("wrote " + ", ".join(str(p) for p in written), args.format)
    return 0
