"""``descend basins``: colour each start of a grid by the minimum each optimizer reaches.

    descend basins himmelblau --optimizers sgd adam momentum --grid 200 --out out/

Writes basins.png/svg (one panel per optimizer) and basins.csv (spec, x, y, label: the index
of the minimum reached, −1 none within the radius, −2 diverged, −3 invalid or stopped), and
prints each optimizer's share of starts per minimum.
"""

from __future__ import annotations

import argparse
from typing import Any

from descend.cli import CommandError, checks, outputs, progress
from descend.cli.landscape import add_common, check_steps, load_landscape, print_table
from descend.cli.tables import note


def register(sub: Any) -> None:
    p = sub.add_parser(
        "basins",
        help="basins of attraction: which minimum each start reaches, per optimizer",
        description=(
            "Start a run at every point of a GRID×GRID lattice over the function's domain for "
            "each optimizer spec (one batched computation per optimizer) and colour each start "
            "by the minimum its run ends near."
        ),
    )
    add_common(p, steps=500)
    p.add_argument(
        "--optimizers",
        nargs="+",
        required=True,
        metavar="SPEC",
        help="optimizer specs such as adam:lr=0.01, separated by spaces or ';'",
    )
    p.add_argument("--grid", type=int, default=200, help="points per side, 2 … 1000 (default 200)")
    p.add_argument(
        "--radius",
        type=float,
        help="a run reached a minimum if it ends within this distance "
        "(default 2%% of the domain's width)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_steps(args, max_steps=checks.MAX_LANDSCAPE_STEPS)
    checks.integer(args.grid, "--grid", 2, 1000)
    checks.number(args.radius, "--radius", 0, None, low_open=True)
    n_specs = checks.count_specs(args.optimizers)
    runs = args.grid**2 * n_specs
    what = f"runs: {args.grid}² starts × {n_specs} specs"
    checks.size(runs, checks.MAX_BASIN_RUNS, what, "lower --grid or give fewer optimizers")
    checks.size(
        runs * args.steps,
        checks.MAX_BASIN_WORK,
        f"steps to compute: {args.grid}² starts × {n_specs} specs × {args.steps:,} steps",
        "lower --grid or --steps",
    )
    import numpy as np
    import pandas as pd

    from descend import lab, plots
    from descend.lab.grids import DIVERGED, FAILED, NOT_REACHED

    landscape = load_landscape(args)
    if landscape.dim != 2:
        raise CommandError(
            f"basin maps need a 2-D function; {landscape.name} has {landscape.dim} dimension(s)"
        )
    if not landscape.minima:
        raise CommandError(f"{landscape.name} lists no minima, so there are no basins to colour")
    spec_list = checks.specs(args.optimizers, "--optimizers", dict(landscape.default_lrs))
    out = outputs.output_dir(args.out)
    progress.kernels(args.format)
    with progress.Stage(
        f"{runs:,} runs × {args.steps:,} steps ({args.grid}×{args.grid} starts) on "
        f"{landscape.name}",
        args.format,
    ):
        result = lab.basins(
            landscape,
            spec_list,
            grid=args.grid,
            steps=args.steps,
            radius=args.radius,
            seed=args.seed,
            noise_batch=args.noise_batch,
            tol=args.tol,
        )
    gx, gy = np.meshgrid(result.xs, result.ys)
    frames = [
        pd.DataFrame({"spec": spec, "x": gx.ravel(), "y": gy.ravel(), "label": labels.ravel()})
        for spec, labels in zip(result.specs, result.labels)
    ]
    csv = out / "basins.csv"
    with progress.Stage("writing basins.csv and drawing the basin maps", args.format):
        pd.concat(frames).to_csv(csv, index=False)
        written = [csv] + plots.basin_map(result, out / "basins")
    names = {NOT_REACHED: "none", DIVERGED: "diverged", FAILED: "invalid/stopped"}
    columns = [f"min {i}" for i in range(len(landscape.minima))]
    where = ", ".join(
        f"{i} = {tuple(round(v, 3) for v in m.location)}" for i, m in enumerate(landscape.minima)
    )
    rows = []
    for spec, shares in result.shares().items():
        row = {"spec": spec}
        for i, column in enumerate(columns):
            row[column] = f"{shares.get(i, 0.0):.1%}"
        for code, name in names.items():
            row[name] = f"{shares.get(code, 0.0):.1%}"
        rows.append(row)
    table = pd.DataFrame(rows)
    print_table(
        table,
        list(table.columns),
        f"{landscape.name}: share of {args.grid}×{args.grid} starts reaching each minimum "
        f"({args.steps} steps, radius {result.radius:.3g})",
        args.format,
        optional=["invalid/stopped", "diverged"],
    )
    note(f"minima: {where}", args.format)
    for row in result.result.metrics.drop_duplicates("spec").itertuples():
        if row.status == "invalid":
            note(f"{row.spec}: invalid: {row.message}", args.format)
    note("wrote " + ", ".join(str(p) for p in written), args.format)
    return 0
