"""How the trainer drives a learning-rate schedule, whatever its kind.

Accepted by :func:`descend.train.fit` as ``schedule=``:

- a descend schedule spec string (``"cosine:final=0.1"``) or ``Schedule``, attached with
  ``descend.schedules.attach``; a missing ``steps`` is the run's total number of updates;
- a handle already returned by ``descend.schedules.attach`` (with a plateau factor, it is fed
  the validation loss once per epoch);
- a ``torch.optim.lr_scheduler.LRScheduler``: stepped once after every real update;
- ``torch.optim.lr_scheduler.ReduceLROnPlateau``: stepped once per epoch with the validation
  loss (the training loss when there is no validation set).

Per-update schedules are stepped from a post-step hook on the real optimizer, so with
``Accumulate`` they count updates, not micro-batches.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau


class ScheduleDriver:
    """Uniform interface: ``after_update()``, ``end_of_epoch(metric)``, state for checkpoints."""

    def __init__(self, schedule: Any, optimizer: torch.optim.Optimizer, total_updates: int | None):
        self.kind = "none"
        self.handle: Any = None
        if schedule is None:
            return
        if isinstance(schedule, ReduceLROnPlateau):
            self.kind, self.handle = "plateau", schedule
        elif isinstance(schedule, LRScheduler):
            self.kind, self.handle = "torch", schedule
        elif hasattr(schedule, "report") and hasattr(schedule, "state_dict"):
            self.kind, self.handle = "descend", schedule  # an attached descend handle
        else:
            from descend import schedules

            self.kind = "descend"
            self.handle = schedules.attach(optimizer, schedule, total_steps=total_updates)

    def after_update(self) -> None:
        if self.kind == "torch":
            self.handle.step()

    def end_of_epoch(self, metric: float | None) -> None:
        if metric is None:
            return
        if self.kind == "plateau":
            self.handle.step(metric)
        elif self.kind == "descend" and getattr(self.handle, "plateau", None) is not None:
            self.handle.report(metric)

    def state_dict(self) -> dict[str, Any] | None:
        return None if self.handle is None else self.handle.state_dict()

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.handle is not None and state is not None:
            self.handle.load_state_dict(state)
