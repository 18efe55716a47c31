"""``descend sweep``: one optimizer over a grid of learning rates (× one more hyperparameter).

    descend sweep ravine --optimizer momentum --lr 1e-4:1e-1:log30 --momentum 0:0.99:30 --out d/

Ranges: START:STOP:N (N points, ends included), START:STOP:logN (log-spaced) or a list
0.1,0.2. Grid points the optimizer rejects (momentum ≥ 1, …) are marked, not fatal. Writes
sweep.csv, hyperparameters.png/svg (two keys: steps to converge, diverged runs marked, the
theory's stability edge on top) and lr_sensitivity.png/svg (final loss against lr).
"""

from __future__ import annotations

import argparse
from typing import Any

from descend.cli import CommandError, checks, outputs, progress
from descend.cli.landscape import add_common, check_steps, load_landscape, print_table
from descend.cli.tables import note

SECOND_KEYS = ("momentum", "beta1", "beta2", "alpha", "eps", "weight_decay", "damping")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "sweep",
        help="sweep lr (× momentum, beta1, …) for one optimizer and map the outcome",
        description=(
            "Run one optimizer for every grid point of lr and optionally one more "
            "hyperparameter, from one start. Ranges: START:STOP:N, START:STOP:logN or a "
            "comma-separated list."
        ),
    )
    add_common(p, steps=300)
    p.add_argument(
        "--optimizer",
        required=True,
        metavar="SPEC",
        help="the optimizer, possibly with fixed keys (adam:beta2=0.99)",
    )
    p.add_argument(
        "--lr", required=True, metavar="RANGE", help="learning rates, e.g. 1e-4:1e-1:log30"
    )
    for key in SECOND_KEYS:
        p.add_argument(
            "--" + key.replace("_", "-"),
            metavar="RANGE",
            dest=key,
            help=f"values of {key} (at most one of the second keys)",
        )
    p.add_argument("--start", metavar="X,Y", help="start point (default: the function's first)")
    p.add_argument(
        "--workers",
        type=int,
        help="split the grid over a local Dask cluster of N processes (default: this process)",
    )
    p.add_argument(
        "--address",
        metavar="tcp://HOST:PORT",
        help="split the grid over the running Dask scheduler at this address",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_steps(args)
    given = [k for k in SECOND_KEYS if getattr(args, k) is not None]
    if len(given) > 1:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise CommandError(f"sweep takes lr and at most one more key; got {flags}")
    flags = {"lr": "--lr", **{k: "--" + k.replace("_", "-") for k in given}}
    sizes = {k: checks.range_size(getattr(args, k), flag) for k, flag in flags.items()}
    points = 1
    for n in sizes.values():
        points *= max(n, 1)
    what = " × ".join(f"{n:,} ({flags[k]})" for k, n in sizes.items())
    checks.size(points, checks.MAX_SWEEP_POINTS, f"grid points: {what}", "use fewer values")
    checks.size(
        points * args.steps,
        checks.MAX_SWEEP_WORK,
        f"steps to compute: {points:,} grid points × {args.steps:,} steps",
        "lower --steps or use fewer values",
    )
    import numpy as np

    from descend import lab, plots
    from descend.lab.ranges import parse_point, parse_range

    values = {k: parse_range(getattr(args, k), flag) for k, flag in flags.items()}
    landscape = load_landscape(args)
    start = parse_point(args.start, landscape.dim, "--start") if args.start else None
    lr0 = {"lr": values["lr"][0]}
    checks.specs([args.optimizer], "--optimizer", {})  # names and keys
    checks.spec(args.optimizer, "--optimizer", **lr0)  # the fixed values
    out = outputs.output_dir(args.out)
    progress.kernels(args.format)
    with progress.Stage(
        f"{points:,} grid points × {args.steps:,} steps on {landscape.name}", args.format
    ):
        result = lab.sweep(
            landscape,
            args.optimizer,
            values,
            start=start,
            steps=args.steps,
            seed=args.seed,
            noise_batch=args.noise_batch,
            tol=args.tol,
            workers=args.workers,
            address=args.address,
        )
    with progress.Stage("writing sweep.csv and drawing the maps", args.format):
        written = [result.result.to_csv(out / "sweep.csv")]
        if len(values) == 2:
            written += plots.hyperparameter_map(result, out / "hyperparameters")
        written += plots.lr_sensitivity(result, out / "lr_sensitivity")

    m = result.result.metrics
    n = len(m)
    n_div, n_inv = int(m["diverged"].sum()), int((m["status"] == "invalid").sum())
    reached = m[m["steps_to_tol"].notna()]
    note(
        f"{result.optimizer} on {landscape.name}: {n} grid points, {len(reached)} reached "
        f"f − f* < {args.tol:g}, {n_div} diverged, {n_inv} invalid for the optimizer",
        args.format,
    )
    if n_inv:
        first = m[m["status"] == "invalid"].iloc[0]
        note(f"  invalid, e.g. {first['spec']}: {first['message']}", args.format)
    if result.edge is not None:
        keys = list(values)
        if len(keys) == 2:
            pairs = ", ".join(
                f"{keys[1]}={b:.3g}: lr<{e:.4g}"
                for b, e in list(zip(values[keys[1]], result.edge))[
                    :: max(1, len(result.edge) // 5)
                ]
                if np.isfinite(e)
            )
        else:
            pairs = f"lr < {result.edge[0]:.4g}"
        note(
            f"  theory (λ_max = {result.lam_max:.4g} at the minimum): stable for {pairs}",
            args.format,
        )
    if len(reached):
        best = reached.sort_values(["steps_to_tol", "final_loss"]).head(5)
        columns = [c for c in ["spec", "lr", *values.keys()] if c in best.columns]
        columns = list(dict.fromkeys(columns)) + ["steps_to_tol", "final_loss"]
        print_table(best, columns, "fastest grid points", args.format)
    note("wrote " + ", ".join(str(p) for p in written), args.format)
    return 0
