"""Fair comparisons: several optimizers, batch sizes or schedules on one task, over seeds.

Fairness, made visible:

- every configuration gets the same stated budget, in epochs or in updates;
- for a seed, every run starts from the same initial weights and sees the same data order
  (the loader's permutation depends on the seed and the epoch only, not on the batch size);
- an optional grid (learning rates per optimizer, or any hyperparameter such as the weight
  decay) is run in full for every seed, its size is reported, and the setting with the best
  mean final validation accuracy (or loss, ``select=``) is *selected* for each optimizer ×
  batch size × schedule;
- results are means with 95% t-intervals over seeds; diverged runs are counted, not averaged.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from descend.train.data import Dataset, load
from descend.train.models import MODELS, build
from descend.train.trainer import fit, seed_everything

# Validation accuracy that "time to target" measures, per task (about 90% of what an MLP
# reaches on it; cat-dog's Bayes limit at the default SNR is 0.852).
TARGETS = {
    "cat-dog": 0.75,
    "digits": 0.9,
    "digits-binary": 0.95,
    "breast-cancer": 0.95,
    "wine": 0.95,
}

METRICS = (
    "final_val_loss",
    "best_val_loss",
    "final_val_acc",
    "best_val_acc",
    "test_acc",
    "updates",
    "wall_time",
    "time_to_target",
    "updates_to_target",
)


# The notes' comparison (seed 003, "Cat vs Dog with different optimizers").
DEFAULT_OPTIMIZERS = (
    "sgd:lr=0.1",
    "momentum:lr=0.01",
    "rmsprop:lr=0.001,alpha=0.999",
    "adam:lr=0.001",
    "adamw:lr=0.001,weight_decay=0.01",
)

SELECT = ("final_val_acc", "best_val_acc", "final_val_loss", "best_val_loss")


@dataclass(frozen=True)
class RunConfig:
    """One configuration: an optimizer spec, hyperparameter overrides, batch size, schedule."""

    optimizer: str
    hparams: tuple[tuple[str, float], ...] = ()
    batch_size: int | str = 32
    schedule: str | None = None

    @property
    def label(self) -> str:
        parts = [self.optimizer]
        parts += [f"{k}={v:g}" for k, v in self.hparams]
        parts.append(f"B={self.batch_size}")
        if self.schedule:
            parts.append(self.schedule)
        return " ".join(parts)

    @property
    def family(self) -> str:
        """Optimizer × batch size × schedule: the group a grid selects within."""
        return f"{self.optimizer} B={self.batch_size}" + (
            f" {self.schedule}" if self.schedule else ""
        )


def t_interval(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, half-width of the 95% Student-t interval, and n, over the finite values."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = len(x)
    if n == 0:
        return math.nan, math.nan, 0
    if n == 1:
        return float(x[0]), math.nan, 1
    from scipy import stats

    half = float(stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return float(x.mean()), half, n


def _check_batch(batch: int | str, n_train: int, task: str) -> int | str:
    if batch == "full" or batch is None:
        return "full"
    if isinstance(batch, str) and batch.isdigit():
        batch = int(batch)
    if isinstance(batch, bool) or not isinstance(batch, int):
        raise ValueError(f"batch size must be an integer or 'full', got {batch!r}")
    if not 1 <= batch <= n_train:
        raise ValueError(
            f"batch size {batch} does not fit the {n_train} training samples of task "
            f"{task!r}; choose 1..{n_train} or 'full'"
        )
    return batch


def _grid_for(spec: str, lr_grid: Any, grid: Mapping[str, Sequence[float]] | None):
    """The hyperparameter combinations to run for ``spec``."""
    axes: dict[str, list[float]] = {}
    if lr_grid is not None:
        if isinstance(lr_grid, Mapping):
            name = spec.partition(":")[0]
            values = lr_grid.get(spec, lr_grid.get(name))
            if values is not None:
                axes["lr"] = [float(v) for v in values]
        else:
            axes["lr"] = [float(v) for v in lr_grid]
    for key, values in (grid or {}).items():
        axes[key] = [float(v) for v in values]
    for key, values in axes.items():
        if not values:
            raise ValueError(f"grid for {key!r} is empty")
    keys = list(axes)
    return [tuple(zip(keys, combo)) for combo in itertools.product(*axes.values())] or [()]


@dataclass
class Comparison:
    """Results of :func:`compare`: one row per run, evaluation curves, and the settings."""

    runs: Any  # pandas DataFrame
    curves: Any  # pandas DataFrame
    config: dict[str, Any] = field(default_factory=dict)

    def summary(self, selected_only: bool = False):
        """Mean and 95% half-interval over seeds of each metric, one row per configuration.

        Columns ``<metric>`` and ``<metric>_ci``; ``runs``, ``diverged``, ``reached`` counts;
        ``selected`` marks the grid point chosen for its family by the ``select`` metric
        (highest mean final val accuracy by default; runs that diverged are passed over).
        """
        import pandas as pd

        rows = []
        for label, group in self.runs.groupby("label", sort=False):
            first = group.iloc[0]
            row: dict[str, Any] = {
                "label": label,
                "family": first["family"],
                "optimizer": first["optimizer"],
                "batch_size": first["batch_size"],
                "schedule": first["schedule"],
                "lr": first["lr"],
                **{k: first[k] for k in self.config.get("grid_keys", [])},
                "runs": len(group),
                "diverged": int(group["diverged"].sum()),
                "reached": int(group["reached"].sum()),
            }
            for metric in METRICS:
                mean, half, _ = t_interval(group[metric].tolist())
                row[metric], row[f"{metric}_ci"] = mean, half
            rows.append(row)
        table = pd.DataFrame(rows)
        table["selected"] = False
        metric = self.config.get("select", "final_val_acc")
        for _, fam in table.groupby("family", sort=False):
            ok = fam[(fam["diverged"] == 0) & fam[metric].notna()]
            pick = ok if len(ok) else fam
            if pick[metric].notna().any():
                best = pick[metric].idxmin() if "loss" in metric else pick[metric].idxmax()
                table.loc[best, "selected"] = True
        return table[table["selected"]] if selected_only else table

    def budget_text(self) -> str:
        c = self.config
        budget = f"{c['epochs']} epochs" if c["epochs"] else f"{c['updates']} updates"
        return (
            f"task {c['task']} ({c['n_train']} train / {c['n_val']} val / {c['n_test']} test), "
            f"model {c['model']}; budget {budget} per run; {c['n_seeds']} seeds; "
            f"grid of {c['grid_size']} setting(s) per optimizer; {c['n_runs']} runs in all; "
            f"target val accuracy {c['target_accuracy']}"
        )

    def save(self, outdir: str | Path, prefix: str = "compare") -> list[Path]:
        """Write ``<prefix>_runs.csv``, ``_summary.csv``, ``_curves.csv``, ``.json`` and PNGs."""
        from descend.train.compare_plots import plot_comparison

        out = Path(outdir)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / f"{prefix}_runs.csv", out / f"{prefix}_summary.csv"]
        self.runs.to_csv(paths[0], index=False)
        summary = self.summary()
        summary.to_csv(paths[1], index=False)
        paths.append(out / f"{prefix}_curves.csv")
        self.curves.to_csv(paths[-1], index=False)
        paths.append(out / f"{prefix}.json")
        payload = {
            "config": self.config,
            "budget": self.budget_text(),
            "summary": summary.to_dict(orient="records"),
            "runs": self.runs.to_dict(orient="records"),
        }
        paths[-1].write_text(json.dumps(_jsonable(payload), indent=1))
        paths += plot_comparison(self, out, prefix)
        return paths


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _samples_seen(history) -> list[int]:
    total, out = 0, []
    for row in history.steps:
        total += row["batch_size"]
        out.append(total)
    return out


def compare(
    task: str = "cat-dog",
    optimizers: Sequence[str] = DEFAULT_OPTIMIZERS,
    *,
    model: str | Callable[[], nn.Module] = "mlp",
    batch_sizes: Sequence[int | str] = (32,),
    schedules: Sequence[str | None] = (None,),
    seeds: int | Sequence[int] = 3,
    epochs: int | None = None,
    updates: int | None = None,
    lr_grid: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
    grid: Mapping[str, Sequence[float]] | None = None,
    scale_lr: str | None = None,
    base_batch: int = 32,
    target_accuracy: float | None = None,
    task_options: Mapping[str, Any] | None = None,
    model_options: Mapping[str, Any] | None = None,
    clip_norm: float | None = None,
    eval_points: int = 20,
    trace_every: int = 25,
    select: str = "final_val_acc",
    threads: int | None = None,
    progress: bool = False,
    dataset: Dataset | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    workers: int | None = None,
    address: str | None = None,
    store: str | Path | None = None,
) -> Comparison:
    """Train every configuration on ``task`` for every seed with the same budget.

    Args:
        task: a name from :func:`descend.train.data.available` (split seed 0).
        optimizers: descend optimizer specs (``"adam:lr=0.001,weight_decay=0.01"``).
        model: ``logistic``, ``mlp`` or ``cnn`` (``model_options`` go to it), or your own
            zero-argument callable returning a fresh ``nn.Module`` (called after seeding, so
            every configuration of a seed starts from the same weights).
        batch_sizes: integers 1…n_train or ``"full"``.
        schedules: descend schedule specs (``None`` = constant lr).
        seeds: a count (seeds 0…n−1) or the seeds themselves.
        epochs / updates: the budget (exactly one of them).
        lr_grid: learning rates to try, for every optimizer or per optimizer (a mapping from
            spec or name to its list).
        grid: other hyperparameters to try (e.g. ``{"weight_decay": [1e-4, 1e-2]}``).
        scale_lr: ``"linear"`` (lr·B/base_batch, the notes' rule) or ``"sqrt"``, applied to
            the optimizer's lr for each batch size (``"full"`` counts as n_train).
        target_accuracy: val accuracy for "time/updates to target" (default per task,
            :data:`TARGETS`).
        eval_points: about how many evaluations per run (at least one per epoch).
        trace_every: gradient statistics every this many steps (they are not timed).
        select: the metric that picks a grid point per family: ``final_val_acc`` (highest),
            ``best_val_acc``, ``final_val_loss`` or ``best_val_loss`` (lowest).
        threads: torch threads during the runs (restored afterwards).
        progress: a rich progress bar over the runs (on stderr).
        dataset: use this Dataset instead of loading ``task`` — e.g. your own tensors through
            :meth:`Dataset.from_tensors <descend.train.data.Dataset.from_tensors>`.
        loss_fn: the batch-mean loss (default ``nn.CrossEntropyLoss()``).
        workers: run the trials (configuration × seed) on a local Dask cluster of this many
            processes (see :mod:`descend.executor`); ``None`` runs them here, serially.
            The numbers are the same either way (timings aside).
        address: run them on the Dask scheduler at this address instead.
        store: a JSON-lines file where each finished trial is appended as it completes; a
            rerun with the same settings takes those back and runs only the rest. A trial that
            raises becomes a row with its ``error`` (metrics NaN); the others are kept.
    """
    import pandas as pd

    from descend import optim
    from descend import schedules as sched_mod

    ds = dataset if dataset is not None else load(task, **dict(task_options or {}))
    task = ds.name
    if isinstance(model, str) and model not in MODELS:
        raise ValueError(f"unknown model {model!r}; valid choices: {', '.join(MODELS)}")
    if not isinstance(model, str) and not callable(model):
        raise ValueError(f"model must be a name ({', '.join(MODELS)}) or a callable, got {model!r}")
    if (epochs is None) == (updates is None):
        raise ValueError("give exactly one budget: epochs or updates")
    for name, value in (("epochs", epochs), ("updates", updates)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if not optimizers:
        raise ValueError("optimizers must name at least one optimizer spec")
    for spec in optimizers:
        optim.parse_spec(spec)  # unknown name/key → ValueError listing the valid ones
    for spec in schedules:
        if spec is not None:
            sched_mod.from_spec(spec, total_steps=10**6)
    n_train = len(ds.y_train)
    batches = [_check_batch(b, n_train, task) for b in batch_sizes]
    if not batches:
        raise ValueError("batch_sizes must hold at least one batch size")
    if select not in SELECT:
        raise ValueError(f"select must be one of {', '.join(SELECT)}; got {select!r}")
    if scale_lr not in (None, "linear", "sqrt"):
        raise ValueError(f"scale_lr must be None, 'linear' or 'sqrt', got {scale_lr!r}")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ValueError("seeds must be >= 1")
    target = TARGETS.get(task, 0.9) if target_accuracy is None else float(target_accuracy)
    grids = {spec: _grid_for(spec, lr_grid, grid) for spec in optimizers}
    grid_sizes = {len(g) for g in grids.values()}
    configs = [
        RunConfig(spec, hp, batch, schedule)
        for spec in optimizers
        for hp in grids[spec]
        for batch in batches
        for schedule in schedules
    ]
    from descend.executor import check_workers, run_trials, trial_key

    check_workers(workers, address)
    loss_fn = nn.CrossEntropyLoss() if loss_fn is None else loss_fn
    common = {
        "ds": ds,
        "model": model,
        "model_options": dict(model_options or {}),
        "loss_fn": loss_fn,
        "epochs": epochs,
        "updates": updates,
        "scale_lr": scale_lr,
        "base_batch": base_batch,
        "target": target,
        "clip_norm": clip_norm,
        "eval_points": eval_points,
        "trace_every": trace_every,
    }
    settings = {k: v for k, v in common.items() if k not in ("ds", "model", "loss_fn")}
    settings.update(
        task=task,
        n=[len(ds.y_train), len(ds.y_val), len(ds.y_test)],
        model=model if isinstance(model, str) else getattr(model, "__qualname__", repr(model)),
        loss=repr(loss_fn),
        threads=threads,
    )
    trials = [
        (trial_key(settings, cfg.__dict__, seed), (cfg, seed))
        for seed in seed_list
        for cfg in configs
    ]
    saved_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    bar = _RunsProgress(progress, len(trials))
    try:
        with bar:
            outcomes = run_trials(
                _compare_trial,
                common,
                trials,
                workers=workers,
                address=address,
                threads=threads,
                store=store,
                encode=_plain,
                on_done=lambda _: bar.done(),
            )
    finally:
        torch.set_num_threads(saved_threads)
    run_rows, curve_rows = [], []
    for outcome, (_, (cfg, seed)) in zip(outcomes, trials):
        if outcome.ok:
            row, curves = outcome.result
            run_rows.append({**row, "error": None})
            curve_rows += curves
        else:
            run_rows.append(_failed_row(cfg, seed, outcome.error))
    config = {
        "task": task,
        "task_info": ds.info,
        "n_train": n_train,
        "n_val": len(ds.y_val),
        "n_test": len(ds.y_test),
        "model": model if isinstance(model, str) else getattr(model, "__name__", repr(model)),
        "model_options": dict(model_options or {}),
        "optimizers": list(optimizers),
        "batch_sizes": batches,
        "schedules": list(schedules),
        "seeds": seed_list,
        "n_seeds": len(seed_list),
        "epochs": epochs,
        "updates": updates,
        "grid_size": max(grid_sizes) if len(grid_sizes) == 1 else sorted(grid_sizes),
        "grid_keys": sorted({k for g in grids.values() for hp in g for k, _ in hp if k != "lr"}),
        "scale_lr": scale_lr,
        "base_batch": base_batch,
        "target_accuracy": target,
        "select": select,
        "n_runs": len(run_rows),
        "n_failed": sum(1 for o in outcomes if not o.ok),
        "n_resumed": sum(1 for o in outcomes if o.resumed),
        "threads": threads if threads is not None else saved_threads,
        "executor": (
            f"dask scheduler {address}"
            if address
            else f"dask local cluster, {workers} processes"
            if workers
            else "serial"
        ),
    }
    return Comparison(pd.DataFrame(run_rows), pd.DataFrame(curve_rows), config)


def _plain(value: Any) -> Any:
    """A trial's result as plain JSON types (numpy scalars → Python; NaN kept)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _compare_trial(common: dict[str, Any], trial: tuple[RunConfig, int]):
    """One configuration × seed (runs wherever the executor puts it)."""
    cfg, seed = trial
    ds = common["ds"]
    return _one_run(
        ds,
        cfg,
        seed,
        common["model"],
        common["model_options"],
        common["loss_fn"],
        ds.loader("val", min(2048, len(ds.y_val))),
        ds.loader("test", min(2048, len(ds.y_test))),
        common["epochs"],
        common["updates"],
        common["scale_lr"],
        common["base_batch"],
        common["target"],
        common["clip_norm"],
        common["eval_points"],
        common["trace_every"],
    )


def _failed_row(cfg: RunConfig, seed: int, error: str | None) -> dict[str, Any]:
    nan = math.nan
    row: dict[str, Any] = {
        "label": cfg.label,
        "family": cfg.family,
        "optimizer": cfg.optimizer,
        "batch_size": cfg.batch_size,
        "schedule": cfg.schedule,
        "lr": dict(cfg.hparams).get("lr", nan),
        **{k: v for k, v in cfg.hparams if k != "lr"},
        "seed": seed,
        "diverged": False,
        "diverged_message": None,
        "reached": False,
        "error": error,
    }
    for key in ("updates", "epochs_done", "wall_time", "test_loss", *METRICS):
        row.setdefault(key, nan)
    return row


def _one_run(
    ds,
    cfg,
    seed,
    model_name,
    model_options,
    loss_fn,
    val_loader,
    test_loader,
    epochs,
    updates,
    scale_lr,
    base_batch,
    target,
    clip_norm,
    eval_points,
    trace_every,
):
    from descend import optim, schedules
    from descend.train.metrics import at_average, evaluate

    n_train = len(ds.y_train)
    seed_everything(seed)
    net = model_name() if callable(model_name) else build(model_name, ds, **model_options)
    hp = dict(cfg.hparams)
    opt = optim.from_spec(cfg.optimizer, net.parameters(), **hp)
    batch = n_train if cfg.batch_size == "full" else cfg.batch_size
    if scale_lr is not None:
        for group in opt.param_groups:
            group["lr"] = schedules.scale_lr(group["lr"], batch, base_batch, scale_lr)
    lr = float(opt.param_groups[0]["lr"])
    loader = ds.loader("train", cfg.batch_size, seed=seed)
    total = updates if updates is not None else epochs * len(loader)
    eval_every = max(1, total // max(1, eval_points))
    history = fit(
        net,
        loss_fn,
        loader,
        opt,
        epochs=epochs,
        max_updates=updates,
        val_loader=val_loader,
        schedule=cfg.schedule,
        clip_norm=clip_norm,
        seed=seed,
        eval_every=eval_every,
        trace_every=trace_every,
        progress=False,
    )
    diverged = history.diverged is not None
    test_loss, test_acc = math.nan, math.nan
    if not diverged:
        with at_average(opt):  # Schedule-Free: the averaged point x is the model
            test_loss, test_acc = evaluate(net, loss_fn, test_loader)
    hit = history.reached("val_acc", target)
    row = {
        "label": cfg.label,
        "family": cfg.family,
        "optimizer": cfg.optimizer,
        "batch_size": cfg.batch_size,
        "schedule": cfg.schedule,
        "lr": lr,
        **{k: v for k, v in cfg.hparams if k != "lr"},
        "seed": seed,
        "diverged": diverged,
        "diverged_message": history.diverged,
        "updates": history.updates,
        "epochs_done": len(history.epochs),
        "wall_time": history.train_time,
        "final_val_loss": math.nan if diverged else history.last("val_loss"),
        "best_val_loss": history.best("val_loss", "min"),
        "final_val_acc": math.nan if diverged else history.last("val_acc"),
        "best_val_acc": history.best("val_acc", "max"),
        "test_loss": test_loss,
        "test_acc": test_acc,
        "reached": hit is not None,
        "time_to_target": math.nan if hit is None else hit["time"],
        "updates_to_target": math.nan if hit is None else hit["update"],
    }
    seen = _samples_seen(history)
    curves = [
        {
            "label": cfg.label,
            "family": cfg.family,
            "seed": seed,
            "update": e["update"],
            "epoch": seen[e["step"] - 1] / n_train if e["step"] else 0.0,
            "time": e["time"],
            "val_loss": e["val_loss"],
            "val_acc": e["val_acc"],
        }
        for e in history.evals
    ]
    return row, curves


class _RunsProgress:
    """One rich bar over all runs of a comparison (nothing when disabled)."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total = enabled, total
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> _RunsProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("runs", total=self.total)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def start(self, description: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=description)

    def done(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1)
