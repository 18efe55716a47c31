"""``descend compare``: optimizers, batch sizes or schedules on one task, over seeds, with an
equal and stated budget; a table on stdout and PNG/CSV/JSON files in ``--out``.

Built-in studies: ``--study batch-size`` (the notes' B = 1 … full with the linear scaling rule)
and ``--study adamw`` (Adam + L2 against AdamW over a weight-decay grid). Their default budget
runs in well under a minute on 2 cores; ``--quick`` is a smaller smoke run and ``--full`` the
larger study. The budget used is always printed and saved.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from descend.cli import CommandError, checks, outputs

QUICK_SAMPLES = 2000


def register(sub: Any) -> None:
    p = sub.add_parser(
        "compare",
        help="compare optimizers / batch sizes / schedules on a task over seeds",
        description=(
            "Train every configuration on one task for every seed with the same budget (epochs "
            "or updates), the same initial weights and the same data order per seed; report "
            "means and 95% intervals and save PNG, CSV and JSON. Exit status 1 when a trial "
            "failed (reported with its error; the rest is written, and a rerun tries only the "
            "failed ones)."
        ),
    )
    p.add_argument("--study", help="a built-in study: batch-size or adamw")
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_true",
        help="smallest budget (seconds), for a smoke run; the budget is printed",
    )
    size.add_argument(
        "--full", action="store_true", help="studies only: the larger budget (minutes)"
    )
    add_task_arguments(p)
    p.add_argument(
        "--optimizers",
        nargs="+",
        metavar="SPEC",
        help="optimizer specs, e.g. sgd:lr=0.1 adam:lr=0.001 (default: the notes' five)",
    )
    p.add_argument(
        "--batch-sizes",
        nargs="+",
        default=["32"],
        metavar="B",
        help="batch sizes: integers or 'full' (default 32)",
    )
    p.add_argument(
        "--schedules",
        nargs="+",
        metavar="SPEC",
        help="schedule specs, e.g. cosine:final=0.1 ('none' = constant)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        help=f"number of seeds, 1 … {checks.MAX_SEEDS} (default 3; --quick 2)",
    )
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, help="budget in epochs (default 5; --quick 3)")
    budget.add_argument("--updates", type=int, help="budget in optimizer updates")
    p.add_argument(
        "--lr-grid",
        type=float,
        nargs="+",
        metavar="LR",
        help="learning rates to try for every optimizer (grid size is reported)",
    )
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1/V2/…",
        help="another hyperparameter grid, e.g. weight_decay=1e-4/1e-2 (repeatable)",
    )
    p.add_argument(
        "--scale-lr",
        choices=["linear", "sqrt"],
        help="scale each lr with the batch size relative to --base-batch",
    )
    p.add_argument("--base-batch", type=int, default=32, help="batch size of the given lr")
    p.add_argument("--target", type=float, help="val accuracy for time-to-target")
    p.add_argument(
        "--select",
        default="final_val_acc",
        help="metric choosing a grid point: final_val_acc (default), best_val_acc, "
        "final_val_loss, best_val_loss",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: steadier timings for small models)",
    )
    p.add_argument("--out", default="compare_results", help="output folder (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from descend.cli.tables import add_format

    add_format(p)
    add_executor_arguments(p)
    p.set_defaults(func=run)


def add_executor_arguments(p: argparse.ArgumentParser) -> None:
    """--workers, --address, --fresh (shared with ``descend lr-find``)."""
    p.add_argument(
        "--workers",
        type=int,
        help="run the trials on a local Dask cluster of N processes (default: serially here)",
    )
    p.add_argument(
        "--address",
        metavar="tcp://HOST:PORT",
        help="run the trials on the running Dask scheduler at this address",
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="ignore trials stored by an earlier run in --out (default: resume from them)",
    )


def executor_options(args: argparse.Namespace, store) -> dict[str, Any]:
    """The executor keywords from the parsed arguments; the store is emptied with --fresh."""
    from descend.executor import check_workers

    try:
        check_workers(args.workers, args.address)
    except ValueError as exc:
        raise CommandError(
            str(exc).replace("workers", "--workers").replace("address", "--address")
        ) from None
    if args.fresh and store.exists():
        store.unlink()
    from descend.cli import outputs

    outputs.keep(store)  # Ctrl-C keeps the finished trials: a rerun resumes from them
    return {"workers": args.workers, "address": args.address, "store": store}


def add_task_arguments(p: argparse.ArgumentParser) -> None:
    """--task, --task-option, --model, --hidden, --norm (shared with ``descend lr-find``)."""
    p.add_argument("--task", default="cat-dog", help="dataset (default cat-dog)")
    p.add_argument(
        "--task-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="task option, e.g. n_samples=2000 or snr=1.5 (repeatable)",
    )
    p.add_argument("--model", default="mlp", help="logistic, mlp (default) or cnn")
    p.add_argument("--hidden", type=int, nargs="+", help="MLP hidden sizes (default 100)")
    p.add_argument("--norm", help="normalisation layers: batch, layer or group")


def _key_values(items: list[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise CommandError(f"{what}: expected KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _number(text: str) -> Any:
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def _batch_sizes(items: list[str]) -> list[int | str]:
    out: list[int | str] = []
    for item in items:
        if item == "full":
            out.append("full")
            continue
        try:
            out.append(int(item))
        except ValueError:
            raise CommandError(f"--batch-sizes: {item!r} is not an integer or 'full'") from None
    return out


def _grid(items: list[str]) -> dict[str, list[float]]:
    grid = {}
    for key, text in _key_values(items, "--grid").items():
        try:
            grid[key] = [float(v) for v in text.split("/")]
        except ValueError:
            raise CommandError(f"--grid {key}: values must be numbers separated by '/'") from None
    return grid


def check_arguments(args: argparse.Namespace) -> None:
    """Ranges and sizes, refused before torch or any data is loaded."""
    checks.integer(args.seeds, "--seeds", 1, checks.MAX_SEEDS)
    checks.integer(args.epochs, "--epochs", 1, checks.MAX_EPOCHS)
    checks.integer(args.updates, "--updates", 1, checks.MAX_UPDATES)
    checks.integer(args.threads, "--threads", 1, checks.MAX_THREADS)
    checks.integer(args.base_batch, "--base-batch", 1)
    checks.number(args.target, "--target", 0, 1)
    for lr in args.lr_grid or []:
        checks.number(lr, "--lr-grid", 0, None, low_open=True)
    for size in _batch_sizes(args.batch_sizes):
        if size != "full":
            checks.integer(size, "--batch-sizes", 1)
    if args.study is None:
        from descend.cli.lr_find import task_options

        task_options(args)


def _comparison(args: argparse.Namespace):
    from pathlib import Path

    from descend.train import data
    from descend.train.compare import compare
    from descend.train.studies import STUDIES, run_study

    progress = not args.quiet
    store = Path(args.out) / f"{args.study or 'compare'}_trials.jsonl"
    run_options = executor_options(args, store)
    if args.study is not None:
        if args.study not in STUDIES:
            raise CommandError(f"unknown study {args.study!r}; valid choices: {', '.join(STUDIES)}")
        if args.updates is not None:
            raise CommandError("--study uses an epoch budget; give --epochs, not --updates")
        budget = "quick" if args.quick else "full" if args.full else "default"
        return run_study(
            args.study,
            budget=budget,
            seeds=args.seeds,
            epochs=args.epochs,
            threads=args.threads,
            progress=progress,
            **run_options,
        )
    if args.full:
        raise CommandError("--full applies to --study only; set --epochs/--seeds instead")
    if args.task not in data.available():
        raise CommandError(
            f"unknown task {args.task!r}; valid choices: {', '.join(data.available())}"
        )
    task_options = {
        k: _number(v) for k, v in _key_values(args.task_option, "--task-option").items()
    }
    target = args.target
    if args.quick and args.task == "cat-dog":
        task_options.setdefault("n_samples", QUICK_SAMPLES)
        target = 0.65 if target is None else target  # what the small set reaches in 3 epochs
    model_options: dict[str, Any] = {}
    if args.hidden:
        model_options["hidden"] = tuple(args.hidden)
    if args.norm:
        model_options["norm"] = args.norm
    epochs = args.epochs
    if epochs is None and args.updates is None:
        epochs = 3 if args.quick else 5
    schedules = [None if s in ("none", "constant") else s for s in (args.schedules or ["none"])]
    kwargs: dict[str, Any] = {}
    if args.optimizers:
        from descend.lab.configs import split_specs

        kwargs["optimizers"] = split_specs(args.optimizers)
    return compare(
        args.task,
        model=args.model,
        batch_sizes=_batch_sizes(args.batch_sizes),
        schedules=schedules,
        seeds=args.seeds or (2 if args.quick else 3),
        epochs=epochs,
        updates=args.updates,
        lr_grid=args.lr_grid,
        grid=_grid(args.grid),
        scale_lr=args.scale_lr,
        base_batch=args.base_batch,
        target_accuracy=target,
        task_options=task_options,
        model_options=model_options,
        select=args.select,
        threads=args.threads,
        progress=progress,
        **run_options,
        **kwargs,
    )


def _cell(mean: float, half: float, fmt: str) -> str:
    if mean is None or not math.isfinite(mean):
        return "–"
    if abs(mean) >= 1e4:  # a run that blew up without reaching NaN
        fmt = ".3g"
    text = format(mean, fmt)
    return text if half is None or not math.isfinite(half) else f"{text} ± {format(half, fmt)}"


COLUMNS = (
    "configuration",
    "lr",
    "final val loss",
    "final val acc",
    "best val acc",
    "test acc",
    "updates",
    "train time s",
    "to target: s / updates",
    "diverged",
)
# Dropped first when the rich table is wider than the terminal (CSV/markdown keep them).
OPTIONAL = ("best val acc", "train time s", "to target: s / updates", "updates", "test acc")


def print_table(cmp: Any, fmt: str = "rich") -> None:
    """The summary as a table (selected grid points only when there is a grid)."""
    from descend.cli.tables import emit

    summary = cmp.summary()
    grid_size = cmp.config["grid_size"]
    shown = summary if grid_size == 1 else summary[summary["selected"]]
    title = "selected grid points (all points in the CSV/JSON)" if grid_size != 1 else None
    rows = []
    for _, r in shown.iterrows():
        reached = f"{r['reached']}/{r['runs']}"
        to_target = (
            f"{_cell(r['time_to_target'], math.nan, '.2f')} / "
            f"{_cell(r['updates_to_target'], math.nan, '.0f')} ({reached})"
        )
        rows.append(
            [
                r["label"],
                f"{r['lr']:.3g}",
                _cell(r["final_val_loss"], r["final_val_loss_ci"], ".3f"),
                _cell(r["final_val_acc"], r["final_val_acc_ci"], ".3f"),
                _cell(r["best_val_acc"], r["best_val_acc_ci"], ".3f"),
                _cell(r["test_acc"], r["test_acc_ci"], ".3f"),
                f"{r['updates']:.0f}",
                _cell(r["wall_time"], r["wall_time_ci"], ".2f"),
                to_target,
                f"{r['diverged']}/{r['runs']}",
            ]
        )
    emit(rows, COLUMNS, title, fmt, left=("configuration",), optional=OPTIONAL)


def print_grid(cmp: Any, fmt: str = "rich") -> None:
    """Final val accuracy and loss at every grid point: one row per value, one column per
    optimizer family (the view that shows how each responds to the hyperparameter)."""
    from descend.cli.tables import emit, note

    summary = cmp.summary()
    keys = [
        k
        for k in ["lr", *cmp.config.get("grid_keys", [])]
        if summary.groupby("family")[k].nunique().max() > 1
    ]
    families = list(dict.fromkeys(summary["family"]))
    for key in keys:
        title = f"final val accuracy / loss at each {key} (mean ± 95% interval)"
        lines = []
        for value in sorted(summary[key].unique()):
            cells = []
            for family in families:
                rows = summary[(summary["family"] == family) & (summary[key] == value)]
                if rows.empty:
                    cells.append("")
                    continue
                r = rows.iloc[0]
                mark = " *" if r["selected"] else ""
                cells.append(
                    f"{_cell(r['final_val_acc'], r['final_val_acc_ci'], '.3f')} / "
                    f"{_cell(r['final_val_loss'], r['final_val_loss_ci'], '.3f')}{mark}"
                )
            lines.append([f"{value:g}", *cells])
        emit(lines, [key, *families], title, fmt)
        note("* = selected", fmt)


def run(args: argparse.Namespace) -> int:
    from descend.cli.tables import note

    check_arguments(args)
    outputs.output_dir(args.out)
    cmp = _comparison(args)
    study = cmp.config.get("study")
    head = f"study {study} ({cmp.config['study_budget']} budget): " if study else ""
    note(head + cmp.budget_text(), args.format)
    note(
        "val = final validation values; ± = half-width of the 95% t-interval over seeds; "
        "time = training seconds (evaluation excluded); to target = first evaluation at or "
        "above the target (runs that reached it)",
        args.format,
    )
    note(
        f"executor: {cmp.config['executor']}; {cmp.config['n_resumed']} of "
        f"{cmp.config['n_runs']} trials resumed from {args.out}",
        args.format,
    )
    print_table(cmp, args.format)
    if cmp.config["grid_size"] != 1:
        print_grid(cmp, args.format)
    failed = cmp.runs[cmp.runs["error"].notna()] if "error" in cmp.runs else cmp.runs[:0]
    for _, r in failed.iterrows():
        note(f"failed: {r['label']} seed {r['seed']}: {r['error']}", args.format)
    diverged = cmp.runs[cmp.runs["diverged"]]
    for message in diverged["diverged_message"].head(3):
        note(f"diverged: {message}", args.format)
    paths = cmp.save(args.out, prefix=study or "compare")
    note("wrote " + ", ".join(str(p) for p in paths), args.format)
    if len(failed):  # reported and saved with the others; a script must still see it
        note(
            f"{len(failed)} of {cmp.config['n_runs']} trials failed: the same command again "
            "runs only those (the finished ones are resumed); exit status 1",
            args.format,
        )
        return 1
    return 0
