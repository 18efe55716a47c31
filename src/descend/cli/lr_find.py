"""``descend lr-find``: the learning-rate range test on a task (over one or several seeds) or on
a landscape whose stable range is known; prints the suggestions and writes a plot and a CSV.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path
from typing import Any

from descend.cli import CommandError, checks, outputs, progress

TASKS = ("breast-cancer", "cat-dog", "digits", "digits-binary", "wine")  # descend.train.data


def register(sub: Any) -> None:
    p = sub.add_parser(
        "lr-find",
        help="learning-rate range test: suggestions from the steepest, valley and min/10 rules",
        description=textwrap.fill(
            "Sweep the learning rate from --start to --end over --steps steps, smooth the loss "
            "with a bias-corrected EWA, stop when it exceeds --diverge times the best, and "
            "suggest a learning rate by three rules. The model and optimizer are restored "
            "afterwards. With --landscape the sweep runs on a 2-D test function and each "
            "suggestion is placed in the gradient-descent stable range.",
            78,
        ),
        epilog="\n".join(
            [
                "tasks (--task; bundled scikit-learn sets or generated, no download):",
                *(f"  {name}" for name in TASKS),
                "--task-option passes a task's keyword (cat-dog: n_samples, snr, …); an",
                "unknown one is refused with the valid ones.",
                "landscapes (--landscape): any 2-D name of `descend landscape`, e.g. ravine,",
                "rosenbrock, himmelblau.",
            ]
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from descend.cli.compare import add_task_arguments

    add_task_arguments(p)
    p.add_argument(
        "--optimizer",
        default="sgd",
        metavar="SPEC",
        help="optimizer spec (its lr is swept), default sgd",
    )
    p.add_argument("--batch-size", default="32", help="batch size or 'full' (default 32)")
    p.add_argument("--landscape", help="run on a landscape instead (e.g. ravine)")
    p.add_argument(
        "--noise",
        type=float,
        default=0.0,
        help="landscape only: gradient noise sigma (DeepOBS model)",
    )
    p.add_argument("--start", type=float, help="first lr (default 1e-7; landscape 1e-4)")
    p.add_argument("--end", type=float, default=10.0, help="last lr (default 10)")
    p.add_argument(
        "--steps",
        type=int,
        default=100,
        help=f"sweep length, 2 … {checks.MAX_LR_FIND_STEPS:,} (default 100)",
    )
    p.add_argument(
        "--mode", default="exp", choices=("exp", "linear"), help="exp (default) or linear spacing"
    )
    p.add_argument("--beta", type=float, default=0.98, help="smoothing memory (default 0.98)")
    p.add_argument(
        "--diverge",
        type=float,
        default=4.0,
        help="stop when the smoothed loss exceeds this times the best (default 4)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=1,
        help=f"repeat over this many seeds, 1 … {checks.MAX_SEEDS} (default 1)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--out", default="lr_find_results", help="output folder (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="print only the suggestions")
    from descend.cli.compare import add_executor_arguments

    add_executor_arguments(p)
    p.set_defaults(func=run)


def _landscape(args: argparse.Namespace) -> tuple[list[Any], dict[str, Any]]:
    from descend.train.lr_find_lab import lr_find_landscape

    results = []
    found = None
    for seed in range(args.seeds):
        with progress.Stage(f"range test on {args.landscape}, seed {seed}"):
            found = lr_find_landscape(
                args.landscape,
                args.optimizer,
                noise=args.noise,
                seed=seed,
                **_range_options(args, default_start=1e-4),
            )
        results.append(found.result)
        if not args.quiet or seed == 0:
            print(found.summary() if args.seeds == 1 else f"seed {seed}:\n{found.summary()}")
    assert found is not None
    extra = {
        "eigenvalues": list(found.eigenvalues),
        "stable_limit": found.stable_limit,
        "optimal_lr": found.optimal_lr,
        "placement": found.placement,
        "monotone_limit": (1.0 / found.eigenvalues[-1] if found.optimal_lr is not None else None),
    }
    return results, extra


def _range_options(args: argparse.Namespace, default_start: float) -> dict[str, Any]:
    """The range test's keywords from the command line (landscapes and tasks alike; only the
    default start differs)."""
    return dict(
        start_lr=args.start if args.start is not None else default_start,
        end_lr=args.end,
        num_steps=args.steps,
        mode=args.mode,
        beta=args.beta,
        diverge_factor=args.diverge,
    )


def _task(args: argparse.Namespace) -> list[Any]:
    import torch

    from descend import optim, train
    from descend.train.lr_find_lab import lr_find_seeds

    options = task_options(args)
    batch = args.batch_size if args.batch_size == "full" else _int_or_error(args.batch_size)
    checks.spec(args.optimizer, "--optimizer")
    with progress.Stage(f"loading the {args.task} data"):
        ds = train.load(args.task, **options)
    model_options: dict[str, Any] = {}
    if args.hidden:
        model_options["hidden"] = tuple(args.hidden)
    if args.norm:
        model_options["norm"] = args.norm

    def build(seed: int):
        train.seed_everything(seed)
        model = train.build(args.model, ds, **model_options)
        opt = optim.from_spec(args.optimizer, model.parameters())
        return model, torch.nn.CrossEntropyLoss(), ds.loader("train", batch, seed=seed), opt

    from descend.cli.compare import executor_options

    name = f"lr_find_{args.task}"
    run_options = executor_options(args, Path(args.out) / f"{name}_trials.jsonl")
    described = {
        k: getattr(args, k)
        for k in ("task", "task_option", "model", "hidden", "norm", "optimizer", "batch_size")
    }
    stage = progress.Stage(
        f"range test: {args.seeds} seed(s) × up to {args.steps:,} steps of {args.optimizer}"
    )
    with stage:
        spread = lr_find_seeds(
            build,
            seeds=list(range(args.seeds)),
            threads=args.threads,
            key=described,
            **run_options,
            **_range_options(args, default_start=1e-7),
        )
    for seed, res in zip(spread.seeds, spread.results):
        print(f"seed {seed}: {res.summary()}")
    if args.seeds > 1:
        print("spread over seeds (min / geometric mean / max, max/min):")
        for rule, s in spread.spread().items():
            if s["n"]:
                print(
                    f"  {rule:<11} {s['min']:.3g} / {s['geomean']:.3g} / {s['max']:.3g}"
                    f"   x{s['max/min']:.1f}"
                )
    return spread.results


def _int_or_error(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise CommandError(f"--batch-size must be an integer ≥ 1 or 'full', got {text!r}") from None
    checks.integer(value, "--batch-size", 1)
    return value


def task_options(args: argparse.Namespace) -> dict[str, Any]:
    """``--task-option`` pairs as the task's keywords, checked against its signature before
    any data is loaded."""
    import inspect

    from descend.cli.compare import _key_values, _number

    if args.task not in TASKS:
        raise CommandError(f"--task: unknown task {args.task!r}; valid choices: {', '.join(TASKS)}")
    from descend.train import data

    options = {k: _number(v) for k, v in _key_values(args.task_option, "--task-option").items()}
    valid = [n for n in inspect.signature(data.TASKS[args.task]).parameters if n != "seed"]
    for key in options:
        if key not in valid:
            raise CommandError(
                f"--task-option: {args.task} has no option {key!r}; valid options: "
                f"{', '.join(valid) or '(none)'}"
            )
    return options


def check_arguments(args: argparse.Namespace) -> None:
    """Every range and size, before torch or the data is loaded."""
    checks.integer(args.seeds, "--seeds", 1, checks.MAX_SEEDS)
    checks.integer(args.steps, "--steps", 2, checks.MAX_LR_FIND_STEPS)
    checks.integer(args.threads, "--threads", 1, checks.MAX_THREADS)
    checks.number(args.start, "--start", 0, None, low_open=True)
    checks.number(args.end, "--end", 0, None, low_open=True)
    start = args.start if args.start is not None else (1e-4 if args.landscape else 1e-7)
    if not args.end > start:
        raise CommandError(
            f"--end must be above --start: the sweep goes from --start={start:g} up to "
            f"--end={args.end:g}"
        )
    checks.number(args.beta, "--beta", 0, 1, high_open=True)
    checks.number(args.diverge, "--diverge", 1, None, low_open=True)
    checks.number(args.noise, "--noise", 0, None)


def _check_sweepable(text: str) -> None:
    """Refuse an optimizer that reads lr only once (Rprop's initial step size): sweeping it
    would print suggestions that mean nothing."""
    from descend.optim import REGISTRY, parse_spec

    try:
        name, _ = parse_spec(text)
    except ValueError as exc:
        raise CommandError(f"--optimizer: {exc}") from None
    cls = REGISTRY[name].cls
    if getattr(cls, "lr_is_initial_step_size", False):
        raise CommandError(
            f"--optimizer {text}: {cls.__name__} reads lr once, as the initial step size of "
            "every element, then adapts each step size itself (etas, step_sizes): only its "
            "first step sees the swept lr, so a range test cannot suggest one"
        )


def run(args: argparse.Namespace) -> int:
    check_arguments(args)
    if not args.landscape:
        task_options(args)
    out = outputs.output_dir(args.out)
    import torch

    from descend.train.figures import plot_lr_find

    if args.landscape and (args.workers is not None or args.address is not None):
        raise CommandError(
            "--workers/--address run the seeds of a task's range test; --landscape sweeps "
            "run in this process"
        )
    _check_sweepable(args.optimizer)
    saved = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        if args.landscape:
            results, extra = _landscape(args)
            name = f"lr_find_{args.landscape}"
        else:
            results, extra = _task(args), {}
            name = f"lr_find_{args.task}"
    finally:
        torch.set_num_threads(saved)
    title = f"Range test: {args.optimizer} on {args.landscape or args.task}"
    png = plot_lr_find(
        results,
        out / f"{name}.png",
        title=title,
        stable_limit=extra.get("stable_limit"),
        monotone_limit=extra.get("monotone_limit"),
    )
    import pandas as pd

    frames = [r.frame().assign(seed=r.config.get("seed")) for r in results]
    csv = out / f"{name}.csv"
    pd.concat(frames).to_csv(csv, index=False)
    summary = {
        "results": [
            {
                "seed": r.config.get("seed"),
                "suggestions": r.suggestions,
                "stop_reason": r.stop_reason,
                "config": r.config,
            }
            for r in results
        ],
        **extra,
    }
    js = out / f"{name}.json"
    js.write_text(json.dumps(summary, indent=1, default=float))
    if not args.quiet:
        print(f"wrote {png}, {csv}, {js}")
    return 0
