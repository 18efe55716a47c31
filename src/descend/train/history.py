"""The record of one training run: per step, per evaluation and per epoch."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class History:
    """Everything :func:`descend.train.fit` measured.

    ``steps``   one row per call of the optimizer (a micro-batch when accumulating): epoch,
                step, update (real updates so far), lr, loss, accuracy, time (training seconds
                so far, excluding evaluation and tracing), grad_norm/mean/std/min/max of the
                gradient actually used in the update, eff_lr_* for adaptive optimizers.
    ``evals``   one row per evaluation (before training as epoch 0, the end of every epoch,
                and every ``eval_every`` updates):
                epoch, step, update, time, val_loss, val_acc (and ema_val_loss/ema_val_acc).
    ``epochs``  one row per finished epoch: train_loss/train_acc (means over its batches),
                val_loss/val_acc, updates, time.
    ``diverged`` the message if the loss became NaN/Inf (the run stopped there), else ``None``.
    """

    steps: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    diverged: str | None = None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def updates(self) -> int:
        return int(self.steps[-1]["update"]) if self.steps else 0

    @property
    def train_time(self) -> float:
        return float(self.steps[-1]["time"]) if self.steps else 0.0

    def frame(self, which: str = "steps"):
        """The ``steps``, ``evals`` or ``epochs`` table as a pandas DataFrame."""
        import pandas as pd

        if which not in ("steps", "evals", "epochs"):
            raise ValueError(f"which must be 'steps', 'evals' or 'epochs', got {which!r}")
        return pd.DataFrame(getattr(self, which))

    def last(self, key: str, which: str = "evals") -> float:
        """The last recorded value of ``key`` (NaN if never recorded)."""
        for row in reversed(getattr(self, which)):
            value = row.get(key)
            if value is not None:
                return float(value)
        return math.nan

    def best(self, key: str, mode: str = "min", which: str = "evals") -> float:
        """The best recorded value of ``key`` (``mode`` ``"min"`` or ``"max"``; NaN if none)."""
        values = [float(r[key]) for r in getattr(self, which) if r.get(key) is not None]
        values = [v for v in values if not math.isnan(v)]
        if not values:
            return math.nan
        return min(values) if mode == "min" else max(values)

    def reached(self, key: str, target: float) -> dict[str, Any] | None:
        """The first evaluation row whose ``key`` is ≥ ``target`` (``None`` if never)."""
        for row in self.evals:
            value = row.get(key)
            if value is not None and value >= target:
                return row
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "diverged": self.diverged,
            "steps": self.steps,
            "evals": self.evals,
            "epochs": self.epochs,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        return cls(
            steps=list(data["steps"]),
            evals=list(data["evals"]),
            epochs=list(data["epochs"]),
            diverged=data.get("diverged"),
            config=dict(data.get("config", {})),
        )

    def save(self, path: str | Path) -> None:
        """Write the history as JSON (NaN written as ``null``)."""
        Path(path).write_text(json.dumps(_clean(self.to_dict()), indent=1))


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value
