"""The lab's compiled bookkeeping and fused step (``descend/native/track.h``, ``lab.cpp``).

:class:`CompiledTracker` keeps the same records and metrics as :class:`.tracker.Tracker` (the
reference, used when no compiler is available or ``DESCEND_FAST=0``) in one C++ pass per step
instead of about a dozen torch operations; the two agree exactly (tests/test_lab_native.py).

:meth:`CompiledTracker.fused_run` goes further for the usual lab job — one group of runs, a
landscape with a compiled twin, a named optimizer on the fast path: one call evaluates f and
∇f, steps the optimizer (its own driver and per-element code, prepared by
:func:`descend.optim.fast.prepare_group` exactly as ``optimizer.step()`` prepares it) and
tracks, block of rows by block of rows while they are in cache.
"""

from __future__ import annotations

import ctypes

import numpy as np
import torch
from torch import Tensor

from descend import native
from descend.landscapes import compiled as compiled_landscapes
from descend.native.abi import DTYPES, FAMILIES, LabArgs

from .tracker import recorded_steps


def available(theta: Tensor) -> bool:
    """Whether the compiled tracker can serve a run over ``theta`` (N, d)."""
    return theta.dtype in DTYPES and theta.is_cpu and theta.is_contiguous() and native.ready()


class CompiledTracker:
    """Metrics and thinned records of one group of N runs (see :class:`.tracker.Tracker`
    for the quantities), updated by ``descend_lab_step``."""

    def __init__(
        self,
        theta: Tensor,
        steps: int,
        record_every: int,
        f_star: float | None,
        tol: float,
        bound: float,
        still: float = 0.0,
    ):
        n, d = theta.shape
        dtype = theta.dtype
        self.theta, self.steps, self.bound = theta, steps, bound
        self.record_steps = recorded_steps(steps, record_every)
        self._recorded = np.asarray(self.record_steps, dtype=np.int64)
        self.trajectory = torch.empty(len(self.record_steps), n, d, dtype=dtype)
        self.losses = torch.empty(len(self.record_steps), n, dtype=dtype)
        # θ_t and Δ_{t−1} coordinate-major (d, N): the compiled loop reads columns
        self.prev = theta.detach().t().clone(memory_format=torch.contiguous_format)
        self.vel_prev = torch.zeros_like(self.prev)
        self.path_length = torch.zeros(n, dtype=dtype)
        self._overshoots = torch.zeros(n, dtype=torch.int32)
        self.f_star, self.tol = f_star, tol
        self.reached_count = torch.zeros(n, dtype=torch.int32)  # > 0: reached
        self._frozen = torch.zeros(n, dtype=torch.int32)
        self.diverged_step = torch.full((n,), -1, dtype=torch.int64)
        self.stopped_step = torch.full((n,), -1, dtype=torch.int64)
        self.trajectory[0] = theta.detach()
        self._lib = native.load()
        a = self._args = LabArgs(rows=n, dim=d, dtype=DTYPES[dtype], family=-1)
        a.f_known = int(f_star is not None)
        a.f_star = 0.0 if f_star is None else float(f_star)
        a.tol, a.bound, a.flip_below = float(tol), float(bound), -(still * still)
        a.theta = theta.data_ptr()
        for name in ("prev", "vel_prev", "path_length", "reached_count"):
            setattr(a, name, getattr(self, name).data_ptr())
        a.overshoots, a.frozen = self._overshoots.data_ptr(), self._frozen.data_ptr()
        a.diverged_step = self.diverged_step.data_ptr()
        a.stopped_step = self.stopped_step.data_ptr()
        a.losses, a.trajectory = self.losses.data_ptr(), self.trajectory.data_ptr()
        self._fused: tuple | None = None  # see _fused_buffers

    @property
    def frozen(self) -> Tensor:
        return self._frozen.bool()

    @property
    def overshoots(self) -> Tensor:
        return self._overshoots.to(torch.int64)

    def steps_to_tol(self) -> Tensor:
        """First step with f − f* < tol, −1 where never (or where f* is unknown)."""
        count = self.reached_count.to(torch.int64)
        return torch.where(count > 0, self.steps + 1 - count, torch.full_like(count, -1))

    def _slot_of(self, steps: np.ndarray) -> np.ndarray:
        """The record index of each step, −1 where the step is not recorded."""
        rec = self._recorded
        i = np.minimum(np.searchsorted(rec, steps), len(rec) - 1)
        return np.where(rec[i] == steps, i, -1).astype(np.int64)

    def _records(self, t: int, steps: int) -> list:
        """Point the call at the records of steps t … t + steps − 1: f(θ_t) and θ_{t+1}
        where they are kept. Returns the slot arrays (to keep alive during the call)."""
        ts = np.arange(t, t + steps, dtype=np.int64)
        loss, theta = self._slot_of(ts), self._slot_of(ts + 1)
        a = self._args
        a.t, a.steps = t, steps
        a.loss_slot, a.theta_slot = loss.ctypes.data, theta.ctypes.data
        return [loss, theta]

    def update(self, t: int, f: Tensor, stop: Tensor | None = None) -> None:
        """One step's bookkeeping: f(θ_t) (N,) observed, θ now holding θ_{t+1}; ``stop``
        marks rows an optimizer could not step."""
        a = self._args
        f = f.to(self.theta.dtype).contiguous()
        stop_u8 = None if stop is None else stop.to(torch.uint8).contiguous()
        a.family, a.function = -1, 0
        a.f, a.grad = f.data_ptr(), None
        a.stop = None if stop_u8 is None else stop_u8.data_ptr()
        keep = self._records(t, 1)
        self._call(None)
        del keep

    def observe_final(self, t: int, f: Tensor) -> None:
        """f(θ_t) at the last step: steps-to-tol and the loss record (nothing moves)."""
        if self.f_star is not None:  # as track.h's observe: f − 0 is f, one form for f* = 0
            self.reached_count += (self.reached_count > 0) | ((f - self.f_star) < self.tol)
        slot = int(self._slot_of(np.array([t]))[0])
        if slot >= 0:
            self.losses[slot] = f

    def fused_run(self, t: int, steps: int, landscape, prepared) -> None:
        """Steps t … t + steps − 1 in one call: at each, evaluate the landscape at θ_t, step
        the optimizer ``prepared`` for it (see :func:`descend.optim.fast.prepare_group`: its
        only parameter is θ, its gradient the buffer :meth:`fused_grad` returned) and track —
        block of runs by block of runs (``descend/native/lab.cpp``)."""
        _, function, f, g = self._fused_buffers(landscape)
        a = self._args
        a.family, a.function = FAMILIES.index(prepared.family), function
        a.f, a.grad, a.stop = f.data_ptr(), g.data_ptr(), None
        keep = self._records(t, steps)
        self._call(prepared.args)
        del keep
        prepared.done()

    def fused_grad(self, landscape) -> Tensor:
        """The (N, d) buffer the fused step writes ∇f into (the optimizer's gradient)."""
        return self._fused_buffers(landscape)[3]

    def _fused_buffers(self, landscape) -> tuple:
        """(kernel, landscape id, f buffer, g buffer), made at the first fused step."""
        if self._fused is None or self._fused[0] is not landscape.kernel:
            base = compiled_landscapes.lab_args(landscape.kernel, self.theta)
            self._args.consts[:] = base.consts[:]
            f = torch.empty(self.theta.shape[0], dtype=self.theta.dtype)
            self._fused = (landscape.kernel, base.function, f, torch.empty_like(self.theta))
        return self._fused

    def _call(self, opt_args) -> None:
        ref = None if opt_args is None else ctypes.byref(opt_args)
        if self._lib.descend_lab_step(ref, ctypes.byref(self._args)) < 0:
            raise RuntimeError("descend_lab_step refused its arguments (landscape or family)")
