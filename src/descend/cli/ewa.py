"""``descend ewa``: smooth one column of a CSV file with several EWA memories and plot them.

The workflow of the notes: load a (date, value) series, add v_t = β v_{t−1} + (1 − β) x_t for a
few β, and look at the raw series with one curve per β. Rows are used in file order. Empty
cells are missing values, handled as pandas ``ewm(ignore_na=False)`` does (see
``descend.ewa``): a gap repeats the last average and still ages it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from descend.cli import CommandError, outputs

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "daily_temperature.csv"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "ewa",
        help="smooth a CSV column with exponentially weighted averages and plot them",
        description=(
            "Smooth one column of a CSV file with v_t = beta*v_{t-1} + (1-beta)*x_t for each beta "
            "and draw the raw series with one curve per beta. Empty cells are missing values "
            "(pandas ewm(ignore_na=False) rule)."
        ),
        epilog="example: descend ewa sample --column temperature --date-column date "
        "--plot temperature.png",
    )
    p.add_argument(
        "file",
        metavar="FILE.csv",
        help="CSV file with a header row, or 'sample' for the bundled series (a generated year "
        "of daily temperatures: columns date, temperature; three readings missing)",
    )
    p.add_argument("--column", required=True, help="the column to smooth")
    p.add_argument("--date-column", help="column of dates used as the x axis (optional)")
    p.add_argument(
        "--beta",
        default="0.5,0.9,0.98",
        help="comma-separated memories in [0, 1) (default 0.5,0.9,0.98)",
    )
    p.add_argument(
        "--bias-correction",
        action="store_true",
        help="divide by 1 - beta^t (undoes the start at v_0 = 0)",
    )
    p.add_argument(
        "--init",
        default="zero",
        help="v_0: 'zero' (default), 'first' (v_1 = x_1) or a number",
    )
    p.add_argument("--plot", required=True, metavar="OUT.png", help="where to write the figure")
    p.add_argument("--out", metavar="SMOOTHED.csv", help="also write the averages as CSV")
    p.set_defaults(func=run)


def _parse_betas(text: str) -> list[float]:
    betas = []
    for item in text.split(","):
        try:
            value = float(item)
        except ValueError:
            raise CommandError(f"--beta: {item.strip()!r} is not a number") from None
        if not 0.0 <= value < 1.0:
            raise CommandError(f"--beta: each beta must be in [0, 1), got {value!r}")
        betas.append(value)
    return betas


def _parse_init(text: str) -> str | float:
    if text in ("zero", "first"):
        return text
    try:
        return float(text)
    except ValueError:
        raise CommandError(f"--init must be 'zero', 'first' or a number, got {text!r}") from None


def _read_series(args: argparse.Namespace) -> Any:
    """The column as a float Series (index: dates or row numbers), checked for bad values."""
    import pandas as pd

    path = SAMPLE if args.file == "sample" else Path(args.file)
    if path.is_dir():
        raise CommandError(f"{path} is a folder; give a CSV file")
    if not path.is_file():
        raise CommandError(f"{path}: no such file")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CommandError(f"{path}: cannot read as CSV ({str(exc).splitlines()[0]})") from None
    for name in (args.column, args.date_column):
        if name is not None and name not in frame.columns:
            raise CommandError(
                f"column {name!r} not in {path}; columns: {', '.join(map(str, frame.columns))}"
            )
    raw = frame[args.column]
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() & raw.notna()
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise CommandError(
            f"column {args.column!r} has non-numeric values, e.g. {raw.iloc[row]!r} "
            f"on data row {row + 1}"
        )
    values = values.astype("float64")
    if args.date_column is not None:
        try:
            dates = pd.to_datetime(frame[args.date_column])
        except (ValueError, TypeError) as exc:
            raise CommandError(
                f"column {args.date_column!r} is not dates ({str(exc).splitlines()[0]})"
            ) from None
        if dates.isna().any() or not dates.is_monotonic_increasing:
            raise CommandError(
                f"column {args.date_column!r} must hold dates in increasing order "
                "with none missing; sort the file first"
            )
        values.index = pd.DatetimeIndex(dates, name=args.date_column)
    else:
        values.index.name = "row"
    values.name = args.column
    if len(values) == 0:
        raise CommandError(f"{path} has no data rows")
    return values


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from descend.ewa import effective_window, ewa

    betas = _parse_betas(args.beta)
    init = _parse_init(args.init)
    series = _read_series(args)
    outputs.output_file(args.plot, "--plot")
    if args.out:
        outputs.output_file(args.out, "--out")
    smoothed = ewa(series, betas, bias_correction=args.bias_correction, init=init)

    _plot(series, smoothed, betas, args)
    print(f"{args.plot}: {len(series)} points of {args.column!r}, {len(betas)} averages")
    for beta in betas:
        last = smoothed[beta].iloc[-1]
        print(f"  beta={beta!r}: window ~ {effective_window(beta):g} steps, last value {last:.6g}")
    if args.out:
        table = pd.DataFrame({args.column: series})
        for beta in betas:
            table[f"{args.column}_ewa_{beta!r}"] = smoothed[beta]
        table.to_csv(args.out)
        print(f"{args.out}: {len(table)} rows")
    return 0


def _plot(series: Any, smoothed: Any, betas: list[float], args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from descend.ewa import effective_window

    fig, ax = plt.subplots(figsize=(10, 5))
    ax.plot(series.index, series.to_numpy(), color="0.6", lw=0.8, marker=".", ms=3, label="raw")
    for beta in betas:
        window = effective_window(beta)
        ax.plot(
            smoothed.index,
            smoothed[beta].to_numpy(),
            lw=1.8,
            label=f"β={beta!r} (window ≈ {window:.4g})",
        )
    kind = "bias-corrected EWA" if args.bias_correction else f"EWA, v0={args.init}"
    ax.set_title(f"{args.column}: {kind}")
    ax.set_xlabel(args.date_column or "row")
    ax.set_ylabel(args.column)
    ax.legend()
    ax.grid(alpha=0.3)
    if args.date_column:
        fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(args.plot, dpi=100)
    plt.close(fig)
