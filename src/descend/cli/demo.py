"""`descend demo`: the guided tour; prints the optimizer race on ½(x² + 100y²) (computed by
:mod:`descend.lab.race` inside the report) and the sections with their budgets."""

from __future__ import annotations


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
    import sys

    # A terminal gets the report's rich bar; a pipe or a log (make demo, CI) a line a section.
    lines = not args.no_progress and not sys.stderr.isatty()
    sections = build(
        args.out,
        quick=args.quick,
        progress=not args.no_progress,
        on_section=progress.section_line if lines else None,
    )
    race = next((s.numbers.get("race") for s in sections if s.key == "momentum"), None)
    if race:
        table = Table(
            title="Every optimizer on ½(x² + 100y²) from (−1.5, 1), axis-aligned and rotated 45°",
            caption=next(s.numbers["race_budget"] for s in sections if s.key == "momentum"),
        )
        columns = ("rotation", "optimizer", "hyperparameters", "steps until f < 1e-6")
        for col in columns:
            table.add_column(col)
        for row in race:
            table.add_row(*(str(row[c]) for c in columns))
        console.print(table)
    for i, s in enumerate(sections, 1):
        console.print(f"[bold]{i:2d}. {s.title}[/bold]  ({s.seconds:.1f} s; {s.budget})")
    index = Path(args.out) / "index.html"
    console.print(f"\nReport: [bold]{index}[/bold] (open it in a browser; summary.md beside it)")
    return 0
