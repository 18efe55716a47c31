"""Trajectory requests: checked against the landscape, run by :func:`descend.lab.run`, and
turned into JSON or CSV.

The lab runs every (optimizer, start, seed) of a request as one batched computation and returns
trajectories, losses and a metrics table (steps to converge, final loss, basin, diverged, ...).
This module only translates: request → the lab's arguments (after the checks that need the
landscape: each spec's values, each start's dimension, the schedule), and the lab's result →
plain lists with None for NaN.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from descend import lab, schedules
from descend.lab.configs import Config, build_configs
from descend.landscapes import Landscape

from . import limits
from .deadline import Deadline, checked_schedule
from .errors import RequestError
from .functions import describe, resolve, target_value, to_json_array
from .schemas import RunRequest, RunSettings


@dataclass
class Prepared:
    """A request's settings resolved against its landscape."""

    landscape: Landscape
    specs: list[str]
    configs: list[Config]
    starts: list[tuple[float, ...]]
    schedule: schedules.Schedule | None
    f_star: float | None  # the target of "steps to converge"


def prepare(settings: RunSettings) -> Prepared:
    """Resolve the function and check what pydantic cannot: spec values, start dimensions and
    the schedule. Raises :class:`RequestError` (a 422) naming the field."""
    fn = settings.function
    landscape = resolve(fn.name, fn.params, fn.domain)
    configs = [validate_spec(landscape, spec, i) for i, spec in enumerate(settings.optimizers)]
    if settings.starts is None:
        starts = [tuple(s) for s in landscape.starts]
        if not starts:
            raise RequestError(("starts",), f"{landscape.name} has no suggested start; give one")
    else:
        starts = [tuple(float(v) for v in s) for s in settings.starts]
        for i, point in enumerate(starts):
            if len(point) != landscape.dim:
                raise RequestError(
                    ("starts", i),
                    f"a start needs {landscape.dim} coordinate(s) for {landscape.name}, got "
                    f"{len(point)}",
                )
    if len(settings.optimizers) * len(starts) * len(settings.seeds) > limits.MAX_RUNS:
        raise RequestError(
            ("starts",),
            f"{len(starts)} suggested starts × {len(settings.optimizers)} optimizers × "
            f"{len(settings.seeds)} seeds is more than {limits.MAX_RUNS} runs; give starts",
        )
    schedule = None
    if settings.schedule is not None:
        try:
            schedule = schedules.from_spec(settings.schedule, total_steps=settings.steps)
        except ValueError as exc:
            raise RequestError(
                ("schedule",), f"{exc} (GET /api/schedules lists names and keys)"
            ) from None
    specs = list(settings.optimizers)
    return Prepared(landscape, specs, configs, starts, schedule, target_value(landscape))


def validate_spec(landscape: Landscape, spec: str, index: int) -> Config:
    """The lab's validated configuration of one spec, or a RequestError saying why not."""
    try:
        (config,) = build_configs([spec], dict(landscape.default_lrs))
    except ValueError as exc:
        raise RequestError(("optimizers", index), str(exc)) from None
    if config.error is not None:
        raise RequestError(("optimizers", index), f"{spec!r}: {config.error}")
    return config


def execute(
    prepared: Prepared,
    settings: RunSettings,
    deadline: Deadline,
    record_every: int,
    noise: bool = True,
    schedule: bool = True,
) -> lab.LabResult:
    """Run the request's grid with :func:`descend.lab.run` (the deadline checked every step)."""
    return lab.run(
        prepared.landscape,
        prepared.specs,
        starts=prepared.starts,
        steps=settings.steps,
        seeds=list(settings.seeds),
        noise_batch=settings.noise_batch if noise else None,
        noise_scale=settings.noise_scale,
        schedule=checked_schedule(prepared.schedule if schedule else None, deadline),
        record_every=record_every,
        tol=settings.tol,
        f_star=prepared.f_star,
    )


def _value(value):
    """A metrics cell as JSON: None for NA/NaN/inf, Python scalars otherwise."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, tuple):
        return [_value(v) for v in value]
    return value


def check_records(prepared: Prepared, req: RunRequest) -> None:
    """Refuse answers with more than ``MAX_RECORDS`` points (runs × recorded steps)."""
    every = req.thinning()
    records = len(prepared.starts) * len(req.seeds) * len(req.optimizers)
    records *= req.steps // every + 1 + (req.steps % every > 0)
    if records > limits.MAX_RECORDS:
        raise RequestError(
            ("record_every",),
            f"runs × recorded points = {records} is more than {limits.MAX_RECORDS}; raise "
            f"record_every (now {every}) or ask for fewer runs or steps",
        )


def payload(req: RunRequest, deadline: Deadline) -> dict:
    """The JSON answer of ``POST /api/run``."""
    prepared = prepare(req)
    check_records(prepared, req)
    result = execute(prepared, req, deadline, req.thinning())
    return result_payload(prepared, req, result)


def result_payload(prepared: Prepared, settings: RunSettings, result: lab.LabResult) -> dict:
    per_spec = len(prepared.starts) * len(settings.seeds)
    runs = []
    for i, row in enumerate(result.metrics.to_dict("records")):
        k = i // per_spec
        config = prepared.configs[k]
        runs.append(
            {
                "run": i,
                "optimizer_index": k,
                "spec": prepared.specs[k],
                "label": row["spec"],
                "optimizer": row["optimizer"],
                "hyperparameters": {key: _value(v) for key, v in config.hyperparameters().items()},
                "lr": _value(row["lr"]),
                "lr_source": row["lr_source"],
                "start": _value(row["start"]),
                "seed": int(row["seed"]),
                "status": row["status"],
                "message": row["message"],
                "final_loss": _value(row["final_loss"]),
                "steps_to_tol": _value(row["steps_to_tol"]),
                "basin": _value(row["basin"]),
                "distance": _value(row["distance"]),
                "path_length": _value(row["path_length"]),
                "overshoots": _value(row["overshoots"]),
                "diverged": bool(row["diverged"]),
                "diverged_step": _value(row["diverged_step"]),
                "end": _value(row["end"]),
                "trajectory": to_json_array(result.trajectories[i]),
                "losses": to_json_array(result.losses[i]),
            }
        )
    return {
        "landscape": describe(prepared.landscape),
        "steps": result.steps,
        "recorded_steps": result.recorded_steps.tolist(),
        "f_star": result.f_star,
        "tol": result.tol,
        "noise_batch": settings.noise_batch,
        "schedule": settings.schedule,
        "runs": runs,
    }


def csv_text(req: RunRequest, deadline: Deadline) -> str:
    """Trajectories in long form: one row per (run, recorded step)."""
    prepared = prepare(req)
    check_records(prepared, req)
    result = execute(prepared, req, deadline, req.thinning())
    dim = prepared.landscape.dim
    coords = ["x", "y"][:dim]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["run", "spec", "seed"] + [f"start_{c}" for c in coords] + ["step", *coords, "loss"]
    )
    metrics = result.metrics
    for i in range(len(metrics)):
        head = [i, metrics["spec"].iat[i], int(metrics["seed"].iat[i])]
        head += [repr(float(v)) for v in metrics["start"].iat[i]]
        for r, step in enumerate(result.recorded_steps):
            point = result.trajectories[i, r]
            if not np.isfinite(point).all():
                break  # the run diverged: the rest is NaN
            loss = result.losses[i, r]
            writer.writerow(head + [int(step), *map(repr, map(float, point)), repr(float(loss))])
    return out.getvalue()
