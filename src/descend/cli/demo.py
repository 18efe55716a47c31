"""`descend demo`: every optimizer on the ill-conditioned quadratic ½(x² + 100y²)."""

from __future__ import annotations

# Hyperparameters per spec for f = ½(x² + 100y²) (λ = 1, 100). GD and heavy ball use the
# closed-form optima (Goh 2017): α = 2/(λ₁+λ₂); α = (2/(√λ₁+√λ₂))², β = ((√κ−1)/(√κ+1))².
QUADRATIC_SPECS = [
    "sgd:lr=0.0198",
    "momentum:lr=0.0331,momentum=0.669",
    "momentum-ema:lr=0.1,momentum=0.669",
    "nesterov:lr=0.01,momentum=0.9",
    "adagrad:lr=0.5",
    "rmsprop:lr=0.01",
    "rmsprop-centered:lr=0.01",
    "adam:lr=0.1",
    "adamw:lr=0.1,weight_decay=0",
    "amsgrad:lr=0.1",
    "nadam:lr=0.1",
    "newton:lr=1",
]


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="run the guided tour and write an HTML report",
        description="Run a curated tour of the notes on embedded data and write a "
        "self-contained HTML report (DIR/index.html) plus DIR/summary.md.",
    )
    p.add_argument(
        "--out", default="descend-report", help="output folder (default: descend-report)"
    )
    p.add_argument("--quick", action="store_true", help="smaller budgets: under a minute")
    p.add_argument("--no-progress", action="store_true", help="no progress display")
    p.set_defaults(func=run)


def quadratic_race(specs: list[str], start: tuple[float, float], steps: int, tol: float = 1e-6):
    """Run each spec on ½(x² + 100y²) with the landscape lab and return rows of (spec, the
    group's hyperparameters, steps to f < tol or None, final loss)."""
    import pandas as pd
    import torch

    from descend import lab
    from descend.landscapes import get
    from descend.optim import from_spec

    result = lab.run(
        get("ravine", lam1=1.0, lam2=100.0), specs, starts=[start], steps=steps, tol=tol
    )
    rows = []
    for spec, (_, m) in zip(specs, result.metrics.iterrows()):
        group = from_spec(spec, [torch.zeros(2, requires_grad=True)]).param_groups[0]
        shown = {k: group[k] for k in ("lr", "momentum", "betas", "alpha", "eps") if k in group}
        reached = int(m["steps_to_tol"]) if pd.notna(m["steps_to_tol"]) else None
        rows.append((spec, shown, reached, float(m["final_loss"])))
    return rows


def race_table(steps: int = 2000, start: tuple[float, float] = (-1.5, 1.0)):
    """The optimizer race on ½(x² + 100y²) as a pandas DataFrame."""
    import pandas as pd

    rows = quadratic_race(QUADRATIC_SPECS, start, steps)
    return pd.DataFrame(
        [
            {
                "optimizer": spec.split(":")[0],
                "hyperparameters": ", ".join(f"{k}={v}" for k, v in shown.items()),
                "steps to f < 1e-6": reached if reached else f"did not converge in {steps}",
                "final loss": loss,
            }
            for spec, shown, reached, loss in rows
        ]
    )


def run(args) -> int:
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from descend.cli import outputs, progress
    from descend.report import build

    # The folder is checked (and created) before the tour; Ctrl-C or an error removes what
    # the tour wrote (descend.cli.main rolls back).
    outputs.output_dir(args.out)
    console = Console()
    if not args.no_progress:
        progress.kernels()
    sections = build(args.out, quick=args.quick, progress=not args.no_progress)
    race = next((s.numbers.get("race") for s in sections if s.key == "momentum"), None)
    if race:
        table = Table(
            title="Every optimizer on the ill-conditioned quadratic ½(x² + 100y²), from (−1.5, 1)"
        )
        for col in race[0]:
            table.add_column(col)
        for row in race:
            table.add_row(*(f"{v:.3e}" if isinstance(v, float) else str(v) for v in row.values()))
        console.print(table)
    for i, s in enumerate(sections, 1):
        console.print(f"[bold]{i:2d}. {s.title}[/bold]  ({s.seconds:.1f} s; {s.budget})")
    index = Path(args.out) / "index.html"
    console.print(f"\nReport: [bold]{index}[/bold] (open it in a browser; summary.md beside it)")
    return 0
