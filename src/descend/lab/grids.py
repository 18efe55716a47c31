"""Two grids built on :func:`descend.lab.run`: basins of attraction and hyperparameter sweeps.

* :func:`basins`: every point of a G×G grid over the domain is a start; each is coloured by
  the minimum its run ends near (within ``radius``), one map per optimizer.
* :func:`sweep`: one optimizer over a grid of hyperparameter values (e.g. lr × momentum) from
  one start; invalid grid points (momentum = 1, …) are marked, not fatal. Where theory applies
  (SGD and the momentum family), the stability edge from the Hessian at the global minimum
  is returned beside the measured map (for a quadratic it is exact; elsewhere it is the local
  edge near the minimum).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from descend.landscapes import Landscape
from descend.optim import parse_spec

from . import theory
from .configs import split_specs
from .engine import resolve_landscape, run
from .result import LabResult

NOT_REACHED, DIVERGED, FAILED = -1, -2, -3


@dataclass
class BasinsResult:
    """``labels[k, i, j]``: for spec k and the start (xs[j], ys[i]), the index into
    ``landscape.minima`` of the minimum reached, or NOT_REACHED (−1: ended farther than
    ``radius`` from every minimum), DIVERGED (−2), FAILED (−3: invalid or stopped)."""

    landscape: Landscape
    specs: list[str]
    xs: np.ndarray
    ys: np.ndarray
    labels: np.ndarray
    radius: float
    result: LabResult

    def shares(self) -> dict[str, dict[int, float]]:
        """Per spec, the fraction of starts with each label."""
        out = {}
        for spec, lab in zip(self.specs, self.labels):
            values, counts = np.unique(lab, return_counts=True)
            out[spec] = {int(v): float(c) / lab.size for v, c in zip(values, counts)}
        return out


def basins(
    function: str | Landscape,
    specs: str | Sequence[str],
    grid: int = 100,
    steps: int = 500,
    radius: float | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    **options,
) -> BasinsResult:
    """Run every spec from each point of a ``grid``×``grid`` lattice over the domain
    (both ends included) and label each start by the minimum it reaches. ``radius`` defaults
    to 2% of the mean width of the domain. ``options`` go to :func:`run` (noise_batch, …)."""
    landscape = resolve_landscape(function)
    if landscape.dim != 2:
        raise ValueError(f"basin maps need a 2-D function; {landscape.name} has {landscape.dim}")
    if not landscape.minima:
        raise ValueError(f"{landscape.name} lists no minima, so there are no basins to colour")
    if isinstance(grid, bool) or not isinstance(grid, int) or not 2 <= grid <= 2000:
        raise ValueError(f"grid={grid!r} is invalid: it must be an integer in [2, 2000]")
    (x0, x1), (y0, y1) = landscape.domain
    if radius is None:
        radius = 0.02 * ((x1 - x0) + (y1 - y0)) / 2
    xs, ys = np.linspace(x0, x1, grid), np.linspace(y0, y1, grid)
    gx, gy = np.meshgrid(xs, ys)  # row i is y = ys[i]
    starts = np.stack([gx.ravel(), gy.ravel()], axis=1)
    spec_list = split_specs(specs)
    result = run(landscape, spec_list, starts, steps, seed, record_every=0, dtype=dtype, **options)
    m = result.metrics
    labels = np.where(
        m["distance"].to_numpy() <= radius, m["basin"].fillna(NOT_REACHED).to_numpy(), NOT_REACHED
    )
    labels = np.where(m["status"].isin(["invalid", "stopped"]), FAILED, labels)
    labels = np.where(m["diverged"].to_numpy(), DIVERGED, labels)
    return BasinsResult(
        landscape=landscape,
        specs=[m["spec"].iloc[k * grid * grid] for k in range(len(spec_list))],
        xs=xs,
        ys=ys,
        labels=labels.reshape(len(spec_list), grid, grid).astype(np.int64),
        radius=float(radius),
        result=result,
    )


@dataclass
class SweepResult:
    """A hyperparameter grid. ``values`` maps each swept key to its values (the first key
    indexes rows, the second columns); the arrays below have that shape.

    ``steps_to_tol`` (NaN where never), ``final_loss`` (inf where diverged, NaN where invalid),
    ``diverged`` and ``invalid`` (bool), ``edge``: for a (lr, momentum) or (lr,) sweep of
    sgd/momentum/momentum-ema/nesterov, the largest stable lr from theory for each momentum
    value (or one value; NaN for a momentum outside [0, 1)), using ``lam_max``, the top
    eigenvalue of the Hessian at the global minimum; None where theory does not apply.
    """

    landscape: Landscape
    optimizer: str
    values: dict[str, list[float]]
    steps_to_tol: np.ndarray
    final_loss: np.ndarray
    diverged: np.ndarray
    invalid: np.ndarray
    messages: np.ndarray
    edge: np.ndarray | None
    lam_max: float | None
    result: LabResult


def _format(value: float) -> str:
    return repr(float(value))


def _sweep_chunk(common: tuple, specs: list[str]) -> LabResult:
    landscape, start, steps, seed, dtype, options = common
    return run(landscape, specs, [start], steps, seed, record_every=0, dtype=dtype, **options)


def _distributed_run(landscape, specs, start, steps, seed, dtype, options, workers, address):
    """:func:`run` over chunks of ``specs`` on a Dask cluster, merged back in order."""
    import pandas as pd

    from descend.executor import run_trials

    n_chunks = min(len(specs), 4 * (workers or 4))
    size = -(-len(specs) // n_chunks)
    chunks = [specs[i : i + size] for i in range(0, len(specs), size)]
    outcomes = run_trials(
        _sweep_chunk,
        (landscape, start, steps, seed, dtype, options),
        [(f"chunk{i}", chunk) for i, chunk in enumerate(chunks)],
        workers=workers,
        address=address,
    )
    failed = [o.error for o in outcomes if not o.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(chunks)} sweep chunks failed: {failed[0]}")
    parts = [o.result for o in outcomes]
    tables, offset = [], 0
    for part in parts:
        table = part.metrics.copy()
        table["run"] = table["run"] + offset
        offset += len(table)
        tables.append(table)
    first = parts[0]
    return LabResult(
        landscape=first.landscape,
        trajectories=np.concatenate([p.trajectories for p in parts]),
        losses=np.concatenate([p.losses for p in parts]),
        recorded_steps=first.recorded_steps,
        table=pd.concat(tables, ignore_index=True),
        steps=first.steps,
        f_star=first.f_star,
        tol=first.tol,
    )


def sweep(
    function: str | Landscape,
    optimizer: str,
    values: dict[str, Sequence[float]],
    start: Sequence[float] | None = None,
    steps: int = 300,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    workers: int | None = None,
    address: str | None = None,
    **options,
) -> SweepResult:
    """Run ``optimizer`` (a name or a spec with fixed keys, ``"adam:beta2=0.99"``) for every
    combination of ``values`` (one or two keys, e.g. ``{"lr": [...], "momentum": [...]}``)
    from ``start`` (default: the landscape's first suggested start).

    ``workers`` (a local Dask cluster of that many processes) or ``address`` (a running Dask
    scheduler) split the grid into chunks run in parallel (see :mod:`descend.executor`); each
    run is computed elementwise and its noise is a function of (seed, step), so the merged
    result is the one-process result."""
    from descend.executor import check_workers

    check_workers(workers, address)
    landscape = resolve_landscape(function)
    if not 1 <= len(values) <= 2:
        raise ValueError(f"sweep takes one or two hyperparameters, got {list(values)}")
    name, fixed = parse_spec(optimizer)
    for key in values:
        if key in fixed:
            raise ValueError(f"{key} is both fixed in {optimizer!r} and swept; give it once")
        if not values[key]:
            raise ValueError(f"no values given for {key}")
    keys = list(values)
    grids = [list(map(float, values[k])) for k in keys]
    shape = tuple(len(g) for g in grids)
    base = optimizer.strip()
    sep = "," if ":" in base else ":"
    specs = []
    for index in np.ndindex(*shape):
        items = ",".join(f"{k}={_format(grids[a][i])}" for a, (k, i) in enumerate(zip(keys, index)))
        specs.append(f"{base}{sep}{items}")
    if start is None:
        if not landscape.starts:
            raise ValueError(f"{landscape.name} has no suggested start; pass start")
        start = landscape.starts[0]
    if workers is None and address is None:
        result = run(
            landscape, specs, [tuple(start)], steps, seed, record_every=0, dtype=dtype, **options
        )
    else:
        result = _distributed_run(
            landscape, specs, tuple(start), steps, seed, dtype, options, workers, address
        )
    m = result.metrics
    lam_max = _lam_max(landscape)
    edge = None
    if lam_max is not None and keys[0] == "lr" and (len(keys) == 1 or keys[1] == "momentum"):
        betas = grids[1] if len(keys) == 2 else [float(_momentum_of(name, fixed))]
        edges = [theory.max_lr(name, lam_max, b) if 0 <= b < 1 else np.nan for b in betas]
        if all(e is not None for e in edges):
            edge = np.asarray(edges, dtype=float)  # NaN where β itself is invalid
    return SweepResult(
        landscape=landscape,
        optimizer=base,
        values=dict(zip(keys, grids)),
        steps_to_tol=m["steps_to_tol"].astype(float).fillna(np.nan).to_numpy().reshape(shape),
        final_loss=m["final_loss"].to_numpy().reshape(shape),
        diverged=m["diverged"].to_numpy().reshape(shape),
        invalid=(m["status"] == "invalid").to_numpy().reshape(shape),
        messages=m["message"].to_numpy().reshape(shape),
        edge=edge,
        lam_max=lam_max,
        result=result,
    )


def _momentum_of(name: str, fixed: dict) -> float:
    if "momentum" in fixed:
        return float(fixed["momentum"])
    from descend.optim.spec import REGISTRY

    return float(REGISTRY[name][1].get("momentum", 0.0))


def _lam_max(landscape: Landscape) -> float | None:
    """Top eigenvalue of the Hessian at the global minimum, or None (no minimum known, or the
    Hessian is not positive definite there)."""
    if not landscape.global_minima:
        return None
    point = landscape.points_tensor([landscape.global_minima[0].location])
    evals = torch.linalg.eigvalsh(landscape.hessian(point))[0]
    if not bool((evals > 0).all()):
        return None
    return float(evals.max())
