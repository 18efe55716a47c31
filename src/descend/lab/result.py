"""What a lab run returns: trajectories, losses and one metrics row per run (pandas)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from descend.landscapes import Landscape, nearest_minimum

from .configs import Config

STATUSES = ("ok", "diverged", "stopped", "invalid")


@dataclass
class RunInfo:
    """One cell of the grid: which configuration, which start (index) and which seed."""

    index: int
    config: Config
    start: int
    seed: int


@dataclass
class LabResult:
    """The runs of :func:`descend.lab.run`, in grid order (spec, then start, then seed).

    Attributes:
        landscape: the function the runs descended.
        trajectories: (runs, R, d) positions at ``recorded_steps``; NaN from the step a run
            diverged (and everywhere but the start for an invalid configuration).
        losses: (runs, R) f at those positions, NaN likewise.
        recorded_steps: (R,) the step of each record (0 is the start; the last is ``steps``).
        metrics: one row per run (see :func:`assemble` for the columns).
        steps: steps taken.
        f_star, tol: the target of ``steps_to_tol`` (f − f* < tol), f* None if unknown.
    """

    landscape: Landscape
    trajectories: np.ndarray
    losses: np.ndarray
    recorded_steps: np.ndarray
    metrics: pd.DataFrame
    steps: int
    f_star: float | None
    tol: float

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


def assemble(landscape, runs: list[RunInfo], points, out, steps: int, f_star, tol) -> LabResult:
    """Build the metrics table. Columns: run, spec, optimizer, lr, lr_source, the
    hyperparameters any spec set (beta1/beta2 for betas), start, seed, final_loss, basin
    (index into ``landscape.minima`` of the nearest minimum to the end point), distance,
    steps_to_tol, path_length, overshoots, diverged, diverged_step, status (ok, diverged,
    stopped, invalid), message, end. A diverged run has final_loss = inf and no basin."""
    n = len(runs)
    diverged = out.diverged_step >= 0
    stopped = out.stopped_step >= 0
    final_loss = out.final_loss.clone()
    final_loss[diverged] = math.inf
    basin = torch.full((n,), -1, dtype=torch.int64)
    distance = torch.full((n,), math.nan, dtype=torch.float64)
    ok = out.done & ~diverged
    if landscape.minima and bool(ok.any()):
        index, dist = nearest_minimum(landscape, out.final[ok])
        basin[ok], distance[ok] = index, dist.double()

    # trajectories and losses end at divergence
    traj, losses = out.trajectories.numpy(), out.losses.numpy()
    record = np.asarray(out.record_steps)
    for i in torch.nonzero(diverged).flatten().tolist():
        after = record >= int(out.diverged_step[i])
        traj[i, after] = np.nan
        losses[i, after] = np.nan
    for r in runs:
        if r.config.error is not None:
            traj[r.index, 0] = points[r.start].numpy()

    keys = ["lr"] + sorted(
        {k for r in runs for k in _given_keys(r.config)} - {"lr"}, key=_column_order
    )
    rows = []
    for r in runs:
        c = r.config
        hyper = c.hyperparameters()
        if c.error is not None:
            status, message = "invalid", c.error
        elif bool(diverged[r.index]):
            status = "diverged"
            message = f"diverged at step {int(out.diverged_step[r.index])}"
        elif bool(stopped[r.index]):
            status, message = "stopped", out.messages.get(r.index, "stopped")
        else:
            status, message = "ok", ""
        row = {
            "run": r.index,
            "spec": c.label,
            "optimizer": c.name,
            **{k: hyper.get(k, c.given.get(k, math.nan)) for k in keys},
            "lr_source": "landscape" if c.lr_from_landscape else "spec",
            "start": tuple(float(v) for v in points[r.start]),
            "seed": r.seed,
        }
        rows.append((row, status, message))
    table = pd.DataFrame([row for row, _, _ in rows])
    valid = out.done.numpy()
    table["final_loss"] = np.where(valid, final_loss.double().numpy(), np.nan)
    table["basin"] = _optional_int(basin.numpy())
    table["distance"] = distance.numpy()
    table["steps_to_tol"] = _optional_int(out.steps_to_tol.numpy())
    table["path_length"] = out.path_length.double().numpy()
    table["overshoots"] = _optional_int(out.overshoots.numpy())
    table["diverged"] = diverged.numpy()
    table["diverged_step"] = _optional_int(out.diverged_step.numpy())
    table["status"] = [s for _, s, _ in rows]
    table["message"] = [m for _, _, m in rows]
    table["end"] = [
        tuple(float(v) for v in out.final[i]) if valid[i] else tuple() for i in range(n)
    ]
    return LabResult(
        landscape=landscape,
        trajectories=traj,
        losses=losses,
        recorded_steps=record,
        metrics=table,
        steps=steps,
        f_star=f_star,
        tol=tol,
    )


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
