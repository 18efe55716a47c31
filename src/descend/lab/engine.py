"""``descend.lab.run``: a grid of (optimizer spec, start, seed) as one batched computation.

For each group of configurations that share a chain structure (see :mod:`.configs`), all its
runs are stacked into one (N, d) parameter tensor driven by one descend optimizer; the
landscape's batched gradient is set as ``p.grad`` and ``optimizer.step()`` moves every run at
once. Rows never interact: hyperparameters are per-row tensors, clipping is per row, noise is
a function of (seed, step) only, and a run that diverges is frozen without touching the others.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from descend import landscapes
from descend.landscapes import Landscape, Noisy
from descend.landscapes import compiled as compiled_landscapes

from . import compiled
from .compiled import CompiledTracker
from .configs import Config, build_configs, split_specs
from .result import Grid, LabResult, assemble
from .steppers import ChainStepper, NewtonStepper, RowsStepper
from .tracker import Tracker, recorded_steps

MAX_RECORD_BYTES = 4e9  # trajectories + losses kept in memory


def resolve_landscape(function: str | Landscape, **params) -> Landscape:
    """A Landscape from a name (``descend.landscapes.get``) or the object itself."""
    if isinstance(function, Landscape):
        if params:
            raise ValueError("landscape parameters can only be given with a landscape name")
        return function
    return landscapes.get(function, **params)


def start_points(landscape: Landscape, starts, dtype: torch.dtype) -> Tensor:
    """Starts as an (S, d) tensor; None means the landscape's suggested starts."""
    if starts is None:
        starts = landscape.starts
    x = torch.as_tensor(np.asarray(starts, dtype=np.float64), dtype=dtype)
    if x.ndim == 1 and landscape.dim == 1:
        x = x.reshape(-1, 1)
    if x.ndim == 1 and x.shape[0] == landscape.dim:
        x = x.reshape(1, -1)
    if x.ndim != 2 or x.shape[1] != landscape.dim or x.shape[0] == 0:
        raise ValueError(
            f"starts must be points with {landscape.dim} coordinates each (shape (S, "
            f"{landscape.dim})), got shape {tuple(x.shape)}"
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueError("starts must be finite numbers")
    return x


def _int_list(name: str, value: int | Sequence[int]) -> list[int]:
    items = [value] if isinstance(value, (int, np.integer)) else list(value)
    if not items or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in items):
        raise ValueError(
            f"{name} must be an integer or a non-empty list of integers, got {value!r}"
        )
    return [int(v) for v in items]


def default_bound(landscape: Landscape) -> float:
    """100 × the largest |coordinate| of the plotting domain."""
    return 100.0 * max(max(abs(lo), abs(hi)) for lo, hi in landscape.domain)


def run(
    function: str | Landscape,
    specs: str | Sequence[str],
    starts=None,
    steps: int = 200,
    seeds: int | Sequence[int] = 0,
    *,
    noise_batch: int | None = None,
    noise_scale: float = 1.0,
    schedule: Callable[[int], float] | None = None,
    record_every: int = 1,
    tol: float = 1e-6,
    f_star: float | None = None,
    bound: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> LabResult:
    """Run every (spec, start, seed) for ``steps`` steps; runs are ordered spec-major, then
    start, then seed.

    Args:
        function: a landscape name (``"rosenbrock"``, ``"ravine"``, ``"expr:x**2+y**2"``) or a
            :class:`~descend.landscapes.Landscape`.
        specs: optimizer specs (``"adam:lr=0.01"``); a spec without ``lr`` uses the
            landscape's default learning rate for that optimizer.
        starts: (S, d) start points; default: the landscape's suggested starts.
        seeds: one seed or a list; with ``noise_batch`` each run's gradient noise is a pure
            function of (seed, step) (so a run is the same alone or in any batch).
        noise_batch: B for the DeepOBS noisy gradient ∇f + ξ̄, ξ̄ ~ N(0, σ²/B), σ = noise_scale.
        schedule: any callable of the step t (0, 1, …) returning a factor of each run's lr.
        record_every: keep every k-th position and loss (and the last); 0 keeps the ends only.
        tol: ``steps_to_tol`` is the first step with f − f* < tol.
        f_star: the target value f*; default the landscape's lowest known minimum.
        bound: a run with some |θ_i| > bound has diverged; default 100 × the domain's extent.
        dtype: float64 (default) or float32.
    """
    landscape = resolve_landscape(function)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps={steps!r} is invalid: it must be an integer ≥ 0")
    if isinstance(record_every, bool) or not isinstance(record_every, int) or record_every < 0:
        raise ValueError(f"record_every={record_every!r} is invalid: it must be an integer ≥ 0")
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol={tol!r} is invalid: it must be a number > 0")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype={dtype!r} is invalid: use torch.float32 or torch.float64")
    bound = default_bound(landscape) if bound is None else float(bound)
    if not bound > 0:
        raise ValueError(f"bound={bound!r} is invalid: it must be > 0")
    if schedule is not None and not callable(schedule):
        raise ValueError(f"schedule must be a callable of the step, got {schedule!r}")
    noisy = None
    if noise_batch is not None:
        noisy = Noisy(landscape, noise_batch, noise_scale)
    f_star = landscape.f_min if f_star is None else float(f_star)
    spec_list = split_specs(specs)
    configs = build_configs(spec_list, dict(landscape.default_lrs))
    points = start_points(landscape, starts, dtype)
    seed_list = _int_list("seeds", seeds)

    # The grid, spec-major: run i has config_of[i], start_of[i], seed_of[i].
    n_starts, n_seeds = points.shape[0], len(seed_list)
    per_config = n_starts * n_seeds
    config_of = np.repeat(np.arange(len(configs)), per_config)
    start_of = np.tile(np.repeat(np.arange(n_starts), n_seeds), len(configs))
    seed_of = np.tile(np.asarray(seed_list, dtype=np.int64), len(configs) * n_starts)
    groups: dict[tuple, list[int]] = {}
    for k, config in enumerate(configs):
        if config.error is None:
            groups.setdefault(config.structure(), []).append(k)

    out = _Outputs(len(config_of), steps, record_every, landscape.dim, dtype)
    n, r, d = out.shape
    need = n * r * (d + 1) * torch.finfo(dtype).bits // 8
    if need > MAX_RECORD_BYTES:
        raise ValueError(
            f"recording {n:,} runs at {r:,} steps needs {need / 1e9:.1f} GB (limit "
            f"{MAX_RECORD_BYTES / 1e9:.0f} GB): raise record_every (now {record_every}; 0 keeps "
            "only the start and the end)"
        )
    # Runs of one group sit in consecutive rows of one tensor θ (M, d), so each group's
    # optimizer owns a slice of it while f, ∇f, noise and the bookkeeping see all rows at once.
    layout = [(members, np.flatnonzero(np.isin(config_of, members))) for members in groups.values()]
    order = np.concatenate([rows for _, rows in layout]) if layout else np.zeros(0, np.int64)
    if len(order):
        theta = points[torch.as_tensor(start_of[order])].clone()
        seeds = torch.as_tensor(seed_of[order])
        slices, offset = [], 0
        for members, rows in layout:
            part = _Group(
                configs=[configs[k] for k in members],
                config_pos=torch.as_tensor(np.searchsorted(members, config_of[rows])),
                start=offset,
                stop=offset + len(rows),
            )
            offset += len(rows)
            slices.append(part)
        _run(
            landscape,
            theta,
            seeds,
            order,
            slices,
            steps,
            record_every,
            out,
            noisy,
            schedule,
            f_star,
            tol,
            bound,
        )
    out.finish()
    grid = Grid(configs, config_of, start_of, seed_of)
    return assemble(landscape, grid, points, out, steps, f_star, tol)


@dataclass
class _Group:
    """The runs that share one optimizer: their distinct configurations, each row's position
    in that list, and their rows ``start:stop`` of the shared parameter tensor."""

    configs: list[Config]
    config_pos: Tensor
    start: int
    stop: int


class _Outputs:
    """Per-run arrays filled group by group."""

    def __init__(self, n: int, steps: int, record_every: int, d: int, dtype: torch.dtype):
        self.record_steps = recorded_steps(steps, record_every)
        self.shape = (n, len(self.record_steps), d)
        self.dtype = dtype
        self.trajectories: Tensor | None = None  # made by the first group (see store_records)
        self.losses: Tensor | None = None
        self.final = torch.full((n, d), math.nan, dtype=dtype)
        self.final_loss = torch.full((n,), math.nan, dtype=dtype)
        self.path_length = torch.full((n,), math.nan, dtype=dtype)
        self.overshoots = torch.full((n,), -1, dtype=torch.int64)
        self.steps_to_tol = torch.full((n,), -1, dtype=torch.int64)
        self.diverged_step = torch.full((n,), -1, dtype=torch.int64)
        self.stopped_step = torch.full((n,), -1, dtype=torch.int64)
        self.messages: dict[int, str] = {}
        self.done = torch.zeros(n, dtype=torch.bool)

    def store_records(self, rows: np.ndarray, trajectory: Tensor, losses: Tensor) -> None:
        """Keep the records (R, len(rows), d) and (R, len(rows)) of runs ``rows``. When they are
        every run in grid order (one group, no invalid spec: the usual case) the buffers are
        handed over as (runs, R, …) views, without a copy."""
        n, r, d = self.shape
        if len(rows) == n and bool((rows == np.arange(n)).all()):
            self.trajectories, self.losses = trajectory.transpose(0, 1), losses.transpose(0, 1)
            return
        self.trajectories = torch.full((n, r, d), math.nan, dtype=self.dtype)
        self.losses = torch.full((n, r), math.nan, dtype=self.dtype)
        index = torch.as_tensor(rows)
        self.trajectories[index] = trajectory.transpose(0, 1)
        self.losses[index] = losses.transpose(0, 1)

    def finish(self) -> None:
        """Records when no run was stepped (every configuration invalid)."""
        if self.trajectories is None:
            n, r, d = self.shape
            self.trajectories = torch.full((n, r, d), math.nan, dtype=self.dtype)
            self.losses = torch.full((n, r), math.nan, dtype=self.dtype)


def _fused_stepper(landscape, theta, tracker, steppers, noisy) -> ChainStepper | None:
    """The stepper whose steps can run fused with the landscape and the tracker in one
    compiled call (:meth:`CompiledTracker.fused_run`): one group of runs covering θ, no
    noise, a landscape with a compiled twin, the compiled tracker. Whether its optimizer
    qualifies is asked at each step (:meth:`ChainStepper.prepare_fused`)."""
    if not isinstance(tracker, CompiledTracker) or noisy is not None or len(steppers) != 1:
        return None
    stepper = steppers[0]
    if not isinstance(stepper, ChainStepper) or stepper.theta.data_ptr() != theta.data_ptr():
        return None
    if stepper.theta.shape != theta.shape:
        return None
    if not compiled_landscapes.usable(landscape.kernel, theta.detach()):
        return None
    return stepper


def _run(
    landscape: Landscape,
    theta: Tensor,
    seeds: Tensor,
    order: np.ndarray,
    groups: list[_Group],
    steps: int,
    record_every: int,
    out: _Outputs,
    noisy: Noisy | None,
    schedule,
    f_star,
    tol: float,
    bound: float,
) -> None:
    """Step every group ``steps`` times; row j of ``theta`` is run ``order[j]``."""
    steppers = []
    for g in groups:
        if g.configs[0].couples and not g.configs[0].is_newton:
            steppers.append(RowsStepper(g.configs, g.config_pos, theta, g.start, g.stop))
            continue
        param = theta[g.start : g.stop].requires_grad_(True)  # a leaf view: updates land in θ
        if g.configs[0].is_newton:
            steppers.append(NewtonStepper(g.configs, g.config_pos, param, landscape))
        else:
            steppers.append(ChainStepper(g.configs, g.config_pos, param))
    spans = [(g.start, g.stop) for g in groups]
    still = 8 * torch.finfo(theta.dtype).eps * default_bound(landscape) / 100
    make = CompiledTracker if compiled.available(theta) else Tracker
    tracker = make(theta, steps, record_every, f_star, tol, bound, still)
    fused = _fused_stepper(landscape, theta, tracker, steppers, noisy)
    stop_all = torch.zeros(theta.shape[0], dtype=torch.bool)
    with torch.no_grad():
        t = 0
        while t < steps:
            factor = None if schedule is None else float(schedule(t))
            if fused is not None:
                if factor is not None:
                    fused.set_lr_factor(factor)
                prepared = fused.prepare_fused(tracker.fused_grad(landscape))
                if prepared is not None:
                    # without a schedule nothing changes between steps: all of them in one call
                    count = 1 if schedule is not None else steps - t
                    tracker.fused_run(t, count, landscape, prepared)
                    t += count
                    continue
            f, grad = landscape.value_and_grad(theta)
            if noisy is not None:
                grad = grad + noisy.noise(theta, t, seeds)
            stopped = False
            for stepper, (a, b) in zip(steppers, spans):
                if factor is not None:
                    stepper.set_lr_factor(factor)
                stop = stepper.step(grad[a:b], t)
                if stop is not None:
                    stop_all[a:b] = stop
                    stopped = True
            tracker.update(t, f, stop_all if stopped else None)
            if stopped:
                stop_all.zero_()
            t += 1
        f_final = landscape.f(theta)
        tracker.observe_final(steps, f_final)
    out.store_records(order, tracker.trajectory, tracker.losses)
    index = torch.as_tensor(order)
    out.final[index] = theta
    out.final_loss[index] = f_final
    out.path_length[index] = tracker.path_length
    out.overshoots[index] = tracker.overshoots
    out.steps_to_tol[index] = tracker.steps_to_tol()
    out.diverged_step[index] = tracker.diverged_step
    out.stopped_step[index] = tracker.stopped_step
    out.done[index] = True
    for stepper, (a, _) in zip(steppers, spans):
        for row, message in getattr(stepper, "messages", {}).items():
            out.messages[int(order[a + row])] = message
