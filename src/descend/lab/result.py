"""What a lab run returns: trajectories, losses and one metrics row per run (pandas)."""

from __future__ import annotations

import gc
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from descend.landscapes import Landscape, nearest_minimum

from .configs import Config

STATUSES = ("ok", "diverged", "stopped", "invalid")


@dataclass
class Grid:
    """The runs, spec-major: run i uses ``configs[config_of[i]]``, start ``start_of[i]`` and
    seed ``seed_of[i]``."""

    configs: list[Config]
    config_of: np.ndarray
    start_of: np.ndarray
    seed_of: np.ndarray


@dataclass
class LabResult:
    """The runs of :func:`descend.lab.run`, in grid order (spec, then start, then seed).

    Attributes:
        landscape: the function the runs descended.
        trajectories: (runs, R, d) positions at ``recorded_steps``; NaN from the step a run
            diverged (and everywhere but the start for an invalid configuration).
        losses: (runs, R) f at those positions, NaN likewise.
        recorded_steps: (R,) the step of each record (0 is the start; the last is ``steps``).
        metrics: one row per run (see :func:`assemble` for the columns), a pandas table made
            from the run's metric arrays when first read (100,000 runs: ~0.1 s) and kept.
        steps: steps taken.
        f_star, tol: the target of ``steps_to_tol`` (f − f* < tol), f* None if unknown.
    """

    landscape: Landscape
    trajectories: np.ndarray
    losses: np.ndarray
    recorded_steps: np.ndarray
    table: Callable[[], pd.DataFrame] | pd.DataFrame
    steps: int
    f_star: float | None
    tol: float

    @property
    def metrics(self) -> pd.DataFrame:
        if callable(self.table):
            self.table = self.table()
        return self.table

    @property
    def specs(self) -> list[str]:
        """The distinct canonical specs, in order of first appearance."""
        return list(dict.fromkeys(self.metrics["spec"]))

    def runs_of(self, spec: str) -> np.ndarray:
        """Run indices whose canonical spec is ``spec``."""
        return np.flatnonzero(self.metrics["spec"].to_numpy() == spec)

    def default_lrs_used(self) -> dict[str, float]:
        """Optimizer name → lr, for the runs whose lr came from the landscape's defaults."""
        rows = self.metrics[self.metrics["lr_source"] == "landscape"]
        return dict(zip(rows["optimizer"], rows["lr"]))

    def to_csv(self, path: str | Path) -> Path:
        """Write the metrics table (start and end as space-separated coordinates)."""
        table = self.metrics.copy()
        for column in ("start", "end"):
            table[column] = [" ".join(f"{v:.6g}" for v in point) for point in table[column]]
        path = Path(path)
        table.to_csv(path, index=False)
        return path


def assemble(landscape, grid: Grid, points, out, steps: int, f_star, tol) -> LabResult:
    """Build the metrics table. Columns: run, spec, optimizer, lr, the hyperparameters any
    spec set (beta1/beta2 for betas; momentum for the momentum family), lr_source, start, seed,
    final_loss, basin (index into ``landscape.minima`` of the nearest minimum to the end
    point), distance, steps_to_tol, path_length, overshoots, diverged, diverged_step, status
    (ok, diverged, stopped, invalid), message, end. A diverged run has final_loss = inf and no
    basin; an invalid one has NaN/NA metrics and its reason in ``message``."""
    configs, cfg = grid.configs, grid.config_of
    n = len(cfg)
    diverged = out.diverged_step.numpy() >= 0
    stopped = out.stopped_step.numpy() >= 0
    valid = out.done.numpy()
    basin = np.full(n, -1, dtype=np.int64)
    distance = np.full(n, math.nan)
    ok = valid & ~diverged
    if landscape.minima and ok.any():
        index, dist = nearest_minimum(landscape, out.final[torch.as_tensor(ok)])
        basin[ok], distance[ok] = index.numpy(), dist.double().numpy()

    # trajectories and losses end where a run diverged
    traj, losses = out.trajectories.numpy(), out.losses.numpy()
    record = np.asarray(out.record_steps)
    for i in np.flatnonzero(diverged):
        after = record >= int(out.diverged_step[i])
        traj[i, after] = np.nan
        losses[i, after] = np.nan
    invalid = np.array([c.error is not None for c in configs], dtype=bool)[cfg]
    traj[invalid, 0] = points.numpy()[grid.start_of[invalid]]
    return LabResult(
        landscape=landscape,
        trajectories=traj,
        losses=losses,
        recorded_steps=record,
        table=lambda: _table(grid, points, out, valid, diverged, stopped, invalid, basin, distance),
        steps=steps,
        f_star=f_star,
        tol=tol,
    )


def _table(grid: Grid, points, out, valid, diverged, stopped, invalid, basin, distance):
    """The metrics table of :func:`assemble` (one row per run)."""
    configs, cfg = grid.configs, grid.config_of
    n = len(cfg)
    table = pd.DataFrame({"run": np.arange(n)})
    table["spec"] = np.array([c.label for c in configs], dtype=object)[cfg]
    table["optimizer"] = np.array([c.name for c in configs], dtype=object)[cfg]
    keys = ["lr"] + sorted({k for c in configs for k in _given_keys(c)} - {"lr"}, key=_column_order)
    for key in keys:
        per_config = [c.hyperparameters().get(key, c.given.get(key, math.nan)) for c in configs]
        table[key] = pd.Series(per_config, dtype=_column_dtype(per_config)).to_numpy()[cfg]
    sources = np.array(["landscape" if c.lr_from_landscape else "spec" for c in configs])
    table["lr_source"] = sources[cfg]
    start_tuples = _tuples(points.double().numpy())
    table["start"] = pd.Series([start_tuples[s] for s in grid.start_of], dtype=object)
    table["seed"] = grid.seed_of
    final_loss = np.where(valid, out.final_loss.double().numpy(), np.nan)
    table["final_loss"] = np.where(diverged, math.inf, final_loss)
    table["basin"] = _optional_int(basin)
    table["distance"] = distance
    table["steps_to_tol"] = _optional_int(out.steps_to_tol.numpy())
    table["path_length"] = out.path_length.double().numpy()
    table["overshoots"] = _optional_int(out.overshoots.numpy())
    table["diverged"] = diverged
    table["diverged_step"] = _optional_int(out.diverged_step.numpy())
    status = np.full(n, "ok", dtype=object)
    status[stopped] = "stopped"
    status[diverged] = "diverged"
    status[invalid] = "invalid"
    table["status"] = status
    message = np.full(n, "", dtype=object)
    for i in np.flatnonzero(diverged):
        message[i] = f"diverged at step {int(out.diverged_step[i])}"
    for i, text in out.messages.items():
        message[i] = text
    errors = np.array([c.error or "" for c in configs], dtype=object)[cfg]
    message[invalid] = errors[invalid]
    table["message"] = message
    ends = _tuples(out.final.double().numpy())
    table["end"] = pd.Series([e if v else () for e, v in zip(ends, valid)], dtype=object)
    return table


def _tuples(points: np.ndarray) -> list[tuple[float, ...]]:
    """Rows as tuples of Python floats. The garbage collector is paused meanwhile: with torch
    loaded, its passes over 100,000 fresh tuples cost more than building them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return [tuple(p) for p in points.tolist()]
    finally:
        if enabled:
            gc.enable()


def _column_dtype(values: list) -> str | None:
    return "float64" if all(isinstance(v, float) for v in values) else "object"


_ORDER = ["momentum", "beta1", "beta2", "dampening", "alpha", "eps", "weight_decay"]


def _column_order(key: str) -> tuple[int, str]:
    return (_ORDER.index(key) if key in _ORDER else len(_ORDER), key)


def _given_keys(config: Config) -> list[str]:
    keys = []
    for k in config.given:
        keys.extend(["beta1", "beta2"] if k == "betas" else [k])
    if config.error is None and "momentum" in config.group:
        keys.append("momentum")  # the momentum family: always show β
    return keys


def _optional_int(values: np.ndarray) -> pd.arrays.IntegerArray:
    """Integers with −1 meaning "none" as a nullable Int64 column."""
    array = pd.array(values, dtype="Int64")
    array[values < 0] = pd.NA
    return array
