"""``descend basins``: colour each start of a grid by the minimum each optimizer reaches.

    descend basins himmelblau --optimizers sgd adam momentum --grid 200 --out out/

Writes basins.png/svg (one panel per optimizer) and basins.csv (spec, x, y, label: the index
of the minimum reached, −1 none within the radius, −2 diverged, −3 invalid or stopped), and
prints each optimizer's share of starts per minimum.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from descend.cli import CommandError
from descend.cli.landscape import add_common, check_steps, load_landscape, print_table


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
    p.add_argument("--grid", type=int, default=200, help="points per side (default 200)")
    p.add_argument(
        "--radius",
        type=float,
        help="a run reached a minimum if it ends within this distance "
        "(default 2%% of the domain's width)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd

    from descend import lab, plots
    from descend.lab.grids import DIVERGED, FAILED, NOT_REACHED

    check_steps(args)
    if not 2 <= args.grid <= 2000:
        raise CommandError(f"--grid must be an integer in [2, 2000], got {args.grid}")
    if args.radius is not None and not args.radius > 0:
        raise CommandError(f"--radius must be > 0, got {args.radius}")
    landscape = load_landscape(args)
    result = lab.basins(
        landscape,
        args.optimizers,
        grid=args.grid,
        steps=args.steps,
        radius=args.radius,
        seed=args.seed,
        noise_batch=args.noise_batch,
        tol=args.tol,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gx, gy = np.meshgrid(result.xs, result.ys)
    frames = [
        pd.DataFrame({"spec": spec, "x": gx.ravel(), "y": gy.ravel(), "label": labels.ravel()})
        for spec, labels in zip(result.specs, result.labels)
    ]
    csv = out / "basins.csv"
    pd.concat(frames).to_csv(csv, index=False)
    written = [csv] + plots.basin_map(result, out / "basins")
    names = {NOT_REACHED: "none", DIVERGED: "diverged", FAILED: "invalid/stopped"}
    columns = [
        f"min {i} {tuple(round(v, 3) for v in m.location)}" for i, m in enumerate(landscape.minima)
    ]
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
    )
    for row in result.result.metrics.drop_duplicates("spec").itertuples():
        if row.status == "invalid":
            print(f"{row.spec}: invalid: {row.message}")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
