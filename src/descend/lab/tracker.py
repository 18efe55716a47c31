"""Per-step bookkeeping of a group of runs: recording, metrics and divergence.

Each step costs a handful of elementwise operations on the (N, d) tensor and one host
synchronisation (the divergence test); nothing mixes rows. Per run:

* ``steps_to_tol``: the first step t with f(θ_t) − f* < tol (f at the start is step 0);
* ``path_length``: Σ_t ‖θ_{t+1} − θ_t‖;
* ``overshoots``: the number of sign changes of the velocity Δ_t = θ_{t+1} − θ_t along a
  coordinate, i.e. of pairs (t, i) with Δ_{t,i}·Δ_{t−1,i} < 0, summed over coordinates;
* ``diverged``: θ became NaN/±Inf or some |θ_i| exceeded ``bound``; the run is then frozen at
  its last valid point (its velocity is 0 from then on, so its metrics stop changing) and the
  step at which it happened is kept. A frozen row keeps being fed to the optimizer with the
  others (its own state may become anything), but its parameters are restored after each step.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


class Tracker:
    """Metrics and thinned records of one group of N runs with parameters ``theta`` (N, d)."""

    def __init__(
        self,
        theta: Tensor,
        steps: int,
        record_every: int,
        f_star: float | None,
        tol: float,
        bound: float,
    ):
        n, d = theta.shape
        self.theta, self.steps, self.bound = theta, steps, bound
        self.every = record_every
        self.record_steps = recorded_steps(steps, record_every)
        self.trajectory = torch.empty(len(self.record_steps), n, d, dtype=theta.dtype)
        self.losses = torch.empty(len(self.record_steps), n, dtype=theta.dtype)
        self._slot = 0
        self.prev = theta.detach().clone()
        self.vel = torch.zeros_like(self.prev)
        self.vel_prev = torch.zeros_like(self.prev)
        self.path_length = torch.zeros(n, dtype=theta.dtype)
        self.overshoots = torch.zeros(n, dtype=torch.int64)
        self.f_star, self.tol = f_star, tol
        self.reached = torch.zeros(n, dtype=torch.bool)
        self.reached_count = torch.zeros(n, dtype=torch.int64)
        self.frozen = torch.zeros(n, dtype=torch.bool)
        self.any_frozen = False
        self.diverged_step = torch.full((n,), -1, dtype=torch.int64)
        self.stopped_step = torch.full((n,), -1, dtype=torch.int64)
        self.trajectory[0] = self.prev

    def observe_loss(self, t: int, f: Tensor) -> None:
        """Loss f(θ_t) (N,) at step t: steps-to-tol and the loss record."""
        if self.f_star is not None:
            self.reached.logical_or_((f - self.f_star) < self.tol)
            self.reached_count.add_(self.reached)
        if self._slot < len(self.record_steps) and self.record_steps[self._slot] == t:
            self.losses[self._slot] = f
            self._slot += 1  # the position of the next recorded step is written in after_step

    def after_step(self, t: int, stop: Tensor | None = None) -> None:
        """θ now holds θ_{t+1}: restore frozen rows, detect divergence, update path metrics,
        and record the position. ``stop`` marks rows an optimizer could not step."""
        theta = self.theta.data
        if self.any_frozen:
            theta.copy_(torch.where(self.frozen[:, None], self.prev, theta))
        if stop is not None:
            new = stop & ~self.frozen
            self.stopped_step[new] = t
            self._freeze(new, theta)
        # ‖θ‖_∞ is NaN if any entry is NaN, so one reduction covers NaN, ±Inf and the bound.
        if not float(torch.linalg.vector_norm(theta, ord=math.inf)) <= self.bound:
            ok = (theta.abs() <= self.bound).all(dim=1)
            new = ~ok & ~self.frozen
            self.diverged_step[new] = t + 1
            self._freeze(new, theta)
        vel, vel_prev = self.vel, self.vel_prev
        torch.sub(theta, self.prev, out=vel)
        self.path_length.add_(torch.linalg.vector_norm(vel, dim=1))
        self.overshoots.add_(((vel * vel_prev) < 0).sum(dim=1))
        self.vel, self.vel_prev = vel_prev, vel
        self.prev.copy_(theta)
        if self._slot < len(self.record_steps) and self.record_steps[self._slot] == t + 1:
            self.trajectory[self._slot] = theta

    def _freeze(self, rows: Tensor, theta: Tensor) -> None:
        if bool(rows.any()):
            theta[rows] = self.prev[rows]
            self.frozen |= rows
            self.any_frozen = True

    def steps_to_tol(self) -> Tensor:
        """First step with f − f* < tol, −1 where never (or where f* is unknown)."""
        observed = self.steps + 1
        return torch.where(
            self.reached_count > 0,
            observed - self.reached_count,
            torch.full_like(self.reached_count, -1),
        )


def recorded_steps(steps: int, every: int) -> list[int]:
    """Steps kept in the records: 0, k, 2k, … and always the last one. ``every=0`` keeps only
    the start and the end."""
    if every == 0:
        return [0, steps] if steps > 0 else [0]
    out = list(range(0, steps + 1, every))
    if out[-1] != steps:
        out.append(steps)
    return out
