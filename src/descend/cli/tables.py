"""Tables of the commands: a rich table that fits the terminal (80 columns in a pipe: long
cells and headers wrap instead of being cut), or ``--format markdown`` / ``--format csv``.

With markdown or CSV the table is all that goes to stdout (notes go to stderr), so
``descend landscape … --format csv > metrics.csv`` is a clean file.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterable, Sequence
from typing import Any

FORMATS = ("rich", "markdown", "csv")


def add_format(p: argparse.ArgumentParser) -> None:
    """The ``--format`` option of every command that prints a table."""
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="rich",
        help="how to print the table: rich (default; fits the terminal), markdown or csv "
        "(then only the table goes to stdout, notes to stderr)",
    )


def note(text: str, fmt: str = "rich") -> None:
    """A line beside the table: stdout for rich, stderr for markdown/CSV."""
    print(text, file=sys.stdout if fmt == "rich" else sys.stderr, flush=True)


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def emit(
    rows: Iterable[Sequence[Any]],
    columns: Sequence[str],
    title: str | None = None,
    fmt: str = "rich",
    *,
    left: Sequence[str] = (),
    optional: Sequence[str] = (),
    width: int | None = None,
) -> None:
    """Print ``rows`` (already formatted cells) under ``columns``. ``left`` names the columns
    justified left (the others are numbers, justified right). A rich table wider than the
    terminal drops the ``optional`` columns, first ones first, until it fits (a note says which;
    markdown and CSV keep every column), then wraps what remains."""
    rows = [[("" if c is None else str(c)) for c in row] for row in rows]
    columns = list(columns)
    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
        return
    if fmt == "markdown":
        out = []
        if title:
            out += [f"**{_markdown_cell(title)}**", ""]
        out.append("| " + " | ".join(_markdown_cell(c) for c in columns) + " |")
        out.append("|" + "|".join(":--" if c in left else "--:" for c in columns) + "|")
        out += ["| " + " | ".join(_markdown_cell(c) for c in row) + " |" for row in rows]
        print("\n".join(out))
        return
    if fmt != "rich":
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    from rich import box
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table
    from rich.text import Text

    console = Console(width=width)
    keep = list(range(len(columns)))
    dropped: list[str] = []

    def build() -> Table:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for i in keep:
            table.add_column(
                columns[i].replace("_", " "),  # lets a header wrap between words
                justify="left" if columns[i] in left else "right",
                overflow="fold",
            )
        for row in rows:
            table.add_row(*(row[i] for i in keep))
        return table

    table = build()
    wide = console.options.update_width(100_000)
    for name in optional:
        if Measurement.get(console, wide, table).maximum <= console.width:
            break
        if name in columns and columns.index(name) in keep:
            keep.remove(columns.index(name))
            dropped.append(name)
            table = build()
    if title:  # above the table, wrapped at the terminal's width rather than the table's
        console.print(Text(title, style="italic"))
    console.print(table)
    if dropped:
        console.print(
            f"(not shown to fit {console.width} columns: {', '.join(dropped)}; "
            "--format csv or markdown has every column)",
            highlight=False,
        )
