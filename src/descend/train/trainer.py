"""``fit``: a plain, measured training loop for any model, loss, loader and optimizer.

One iteration is the textbook loop — forward, loss, ``zero_grad``, ``backward``, ``step`` —
and the measurements hang on the optimizer's step hooks, so they see what the update really
used: with ``Accumulate`` the pre-hook fires once per *real* update, on the averaged gradient.

- Pre-step hook: gradient statistics (norm, mean, std, min, max of the gradient before
  clipping), then clipping by norm (``clip_grad_norm_``) and/or by value (``clip_grad_value_``).
- Post-step hook: count the update, update the EMA of weights, step a per-update schedule,
  read the adaptive optimizer's effective per-parameter learning rates.

``time`` counts training only (forward, backward, clipping, step, EMA); evaluation and the
tracing above are timed separately and left out, so adaptive optimizers are not charged for
the cost of measuring them.
"""

from __future__ import annotations

import math
import random
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from descend.optim.accumulate import Accumulate
from descend.optim.weight_ema import WeightEMA
from descend.train.history import History
from descend.train.metrics import (
    Accuracy,
    accuracy,
    at_average,
    effective_lr_stats,
    evaluate,
    grad_stats,
)
from descend.train.models import batch_norm_layers, batch_of_one_error
from descend.train.progress import TrainingProgress
from descend.train.scheduling import ScheduleDriver

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _positive_int(name: str, value: Any, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and Python's ``random`` (all three drive dropout, shuffles, inits)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


class _Run:
    """The state of one ``fit`` call; see :func:`fit` for the arguments."""

    def __init__(self, model, loss_fn, loader, optimizer, val_loader, opts: dict[str, Any]):
        self.model, self.loss_fn, self.loader, self.optimizer = model, loss_fn, loader, optimizer
        self.val_loader = val_loader
        self.opts = opts
        self.base = optimizer.optimizer if isinstance(optimizer, Accumulate) else optimizer
        self.params = [p for g in self.base.param_groups for p in g["params"]]
        self.bn_layers = batch_norm_layers(model)
        self.history = History(config=opts["config"])
        self.step = 0
        self.updates = 0
        self.train_time = 0.0
        self.untimed = 0.0  # seconds spent tracing inside the timed region
        self.start_epoch = 0
        self._trace_now = False
        self._row: dict[str, Any] = {}
        ema = opts["ema"]
        self.ema = WeightEMA(model, ema) if isinstance(ema, float | int) else ema
        self.schedule = ScheduleDriver(opts["schedule"], optimizer, opts["total_updates"])
        self._handles = [
            self.base.register_step_pre_hook(self._before_update),
            self.base.register_step_post_hook(self._after_update),
        ]

    # --- hooks on the real optimizer ---------------------------------------------------------
    def _before_update(self, *_: Any) -> None:
        t0 = time.perf_counter()
        self._row["lr"] = float(self.base.param_groups[0]["lr"])
        if self._trace_now:
            self._row.update(grad_stats(self.params))
        t1 = time.perf_counter()
        self.untimed += t1 - t0
        clip_norm, clip_value = self.opts["clip_norm"], self.opts["clip_value"]
        if clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, clip_norm)
        if clip_value is not None:
            torch.nn.utils.clip_grad_value_(self.params, clip_value)

    def _after_update(self, *_: Any) -> None:
        self.updates += 1
        if self.ema is not None:
            self.ema.update()
        self.schedule.after_update()
        if self._trace_now:
            t0 = time.perf_counter()
            stats = effective_lr_stats(self.base)
            if stats is not None:
                self._row.update(stats)
            self.untimed += time.perf_counter() - t0

    # --- evaluation ----------------------------------------------------------------------------
    def _evaluate(self, epoch: int) -> dict[str, Any] | None:
        if self.val_loader is None:
            return None
        acc_fn = self.opts["accuracy_fn"]
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": self.step,
            "update": self.updates,
            "time": self.train_time,
            "lr": float(self.base.param_groups[0]["lr"]),
        }
        with at_average(self.base):  # Schedule-Free: evaluate at x, not at y
            row["val_loss"], row["val_acc"] = evaluate(
                self.model, self.loss_fn, self.val_loader, acc_fn
            )
        if self.ema is not None:
            with self.ema.swapped():
                row["ema_val_loss"], row["ema_val_acc"] = evaluate(
                    self.model, self.loss_fn, self.val_loader, acc_fn
                )
        self.history.evals.append(row)
        return row

    # --- one step ------------------------------------------------------------------------------
    def _train_step(self, epoch: int, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any] | None:
        if self.bn_layers and self.model.training and x.shape[0] == 1:
            raise batch_of_one_error(self.bn_layers[0])
        self.step += 1
        self._trace_now = (self.step - 1) % self.opts["trace_every"] == 0
        self._row = {"epoch": epoch + 1, "step": self.step}
        self.untimed = 0.0
        t0 = time.perf_counter()
        out = self.model(x)
        loss = self.loss_fn(out, y)
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            self.step -= 1
            lr = float(self.base.param_groups[0]["lr"])
            self.history.diverged = (
                f"loss became {loss_value} at step {self.step + 1} (epoch {epoch + 1}, after "
                f"{self.updates} updates) with lr {lr:.4g}; training stopped and the "
                f"{len(self.history.steps)} steps recorded so far are kept"
            )
            return None
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.train_time += time.perf_counter() - t0 - self.untimed
        row = self._row
        row.setdefault("lr", float(self.base.param_groups[0]["lr"]))
        row["update"] = self.updates
        row["loss"] = loss_value
        acc_fn = self.opts["accuracy_fn"]
        with torch.no_grad():
            row["accuracy"] = acc_fn(out.detach(), y) if acc_fn is not None else None
        row["batch_size"] = int(y.shape[0])
        row["time"] = self.train_time
        self.history.steps.append(row)
        return row

    # --- checkpoints ---------------------------------------------------------------------------
    def save(self, path: Path, next_epoch: int) -> None:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "rng": _rng_state(),
            "history": self.history.to_dict(),
            "epoch": next_epoch,
            "step": self.step,
            "updates": self.updates,
            "train_time": self.train_time,
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        tmp.replace(path)

    def load(self, path: Path) -> None:
        state = torch.load(path, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        _set_rng_state(state["rng"])
        config = self.history.config
        self.history = History.from_dict(state["history"])
        self.history.config = config
        self.start_epoch = int(state["epoch"])
        self.step = int(state["step"])
        self.updates = int(state["updates"])
        self.train_time = float(state["train_time"])

    # --- the loop ------------------------------------------------------------------------------
    def run(self, epochs: int | None) -> History:
        opts = self.opts
        max_updates = opts["max_updates"]
        progress = TrainingProgress(opts["progress"], epochs, _length(self.loader), max_updates)
        epoch = self.start_epoch
        if self.step == 0 and not self.history.evals:
            self._evaluate(-1)  # the starting point, recorded as epoch 0, update 0
        try:
            with progress:
                while (epochs is None or epoch < epochs) and not self._budget_spent():
                    if hasattr(self.loader, "set_epoch"):
                        self.loader.set_epoch(epoch)
                    self.model.train()
                    loss_sum, acc_sum, n_seen, acc_known = 0.0, 0.0, 0, True
                    for x, y in self.loader:
                        row = self._train_step(epoch, x, y)
                        if row is None:
                            break
                        b = row["batch_size"]
                        loss_sum += row["loss"] * b
                        n_seen += b
                        if row["accuracy"] is None:
                            acc_known = False
                        else:
                            acc_sum += row["accuracy"] * b
                        evaluated = None
                        every = opts["eval_every"]
                        if (
                            every
                            and row["update"]
                            and row["update"] % every == 0
                            and (
                                not self.history.evals
                                or self.history.evals[-1]["update"] != row["update"]
                            )
                        ):
                            evaluated = self._evaluate(epoch)
                        progress.step(epoch, row, evaluated)
                        if self._budget_spent():
                            break
                    if self.history.diverged:
                        warnings.warn(self.history.diverged, RuntimeWarning, stacklevel=3)
                        progress.note(self.history.diverged)
                        break
                    if n_seen == 0:
                        raise ValueError("train_loader yielded no batches in an epoch")
                    self._end_epoch(
                        epoch, loss_sum / n_seen, acc_sum / n_seen if acc_known else None
                    )
                    progress.epoch_done(epoch, self.history.epochs[-1])
                    epoch += 1
                    path, every = opts["checkpoint"], opts["checkpoint_every"]
                    if path is not None and epoch % every == 0:
                        self.save(Path(path), epoch)
        finally:
            for handle in self._handles:
                handle.remove()
        return self.history

    def _budget_spent(self) -> bool:
        max_updates = self.opts["max_updates"]
        return max_updates is not None and self.updates >= max_updates

    def _end_epoch(self, epoch: int, train_loss: float, train_acc: float | None) -> None:
        last = self.history.evals[-1] if self.history.evals else None
        if last is not None and last["update"] == self.updates and last["epoch"] == epoch + 1:
            evaluated = last  # evaluated at this very update already
        else:
            evaluated = self._evaluate(epoch)
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": self.step,
            "update": self.updates,
            "time": self.train_time,
            "lr": float(self.base.param_groups[0]["lr"]),
            "train_loss": train_loss,
            "train_acc": train_acc,
        }
        if evaluated is not None:
            row.update({k: v for k, v in evaluated.items() if k.startswith(("val_", "ema_"))})
        skipped = getattr(self.base, "skipped_steps", None)
        if isinstance(skipped, int):
            row["skipped_steps"] = skipped
        self.history.epochs.append(row)
        self.schedule.end_of_epoch(row.get("val_loss", train_loss))


def _length(loader: Iterable) -> int | None:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None


def fit(
    model: nn.Module,
    loss_fn: LossFn,
    train_loader: Iterable,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int | None = 1,
    max_updates: int | None = None,
    val_loader: Iterable | None = None,
    schedule: Any = None,
    clip_norm: float | None = None,
    clip_value: float | None = None,
    ema: float | WeightEMA | None = None,
    seed: int | None = None,
    eval_every: int | None = None,
    trace_every: int = 1,
    accuracy_fn: Accuracy | None = accuracy,
    progress: bool = True,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 1,
    resume: str | Path | None = None,
) -> History:
    """Train ``model`` and return its :class:`~descend.train.history.History`.

    Args:
        model, loss_fn: any ``nn.Module`` and a loss ``loss_fn(outputs, targets)`` that averages
            over the batch (e.g. ``nn.CrossEntropyLoss()``).
        train_loader: any iterable of ``(x, y)`` batches that can be iterated once per epoch
            (a ``DataLoader`` or a :class:`~descend.train.loader.TensorLoader`; its batch size
            picks full-batch, stochastic B = 1 or mini-batch descent). ``set_epoch(e)`` is
            called before epoch ``e`` when the loader has it.
        optimizer: any descend or ``torch.optim`` optimizer, or one wrapped in
            :class:`~descend.optim.accumulate.Accumulate`.
        epochs: number of passes over ``train_loader``; ``None`` to be limited by
            ``max_updates`` only. A resumed run continues up to this total.
        max_updates: stop after this many real optimizer updates.
        val_loader: evaluated at the end of every epoch (and every ``eval_every`` updates).
        schedule: a learning-rate schedule (see :mod:`descend.train.scheduling`).
        clip_norm: rescale the gradient when its global L2 norm exceeds this (g ← g·c/‖g‖).
        clip_value: clamp every gradient entry to [−clip_value, clip_value].
        ema: β for an EMA of the weights (or a :class:`WeightEMA`); validation is then also
            reported with the averaged weights (``ema_val_loss``, ``ema_val_acc``).
        seed: seed torch, numpy and ``random`` first, so a run is repeatable.
        eval_every: also evaluate every this many updates.
        trace_every: record gradient statistics and effective learning rates every this many
            steps (1 = every step).
        accuracy_fn: ``accuracy_fn(outputs, targets)`` → fraction or ``None``.
        progress: show a rich progress bar on stderr.
        checkpoint: path to save model, optimizer, schedule, EMA, RNG states and history to at
            the end of every ``checkpoint_every`` epochs.
        resume: a checkpoint to continue from; the continued run equals an uninterrupted one.

    If the loss becomes NaN or ±Inf the run stops before updating with it; ``history.diverged``
    names the step and the learning rate (also issued as a ``RuntimeWarning``) and everything
    recorded until then is kept.
    """
    if epochs is None and max_updates is None:
        raise ValueError("give epochs or max_updates (the training budget); both are None")
    _positive_int("epochs", epochs)
    _positive_int("max_updates", max_updates)
    _positive_int("eval_every", eval_every)
    _positive_int("trace_every", trace_every, allow_none=False)
    _positive_int("checkpoint_every", checkpoint_every, allow_none=False)
    for name, value in (("clip_norm", clip_norm), ("clip_value", clip_value)):
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    if isinstance(ema, float | int) and not isinstance(ema, bool) and not 0 <= ema < 1:
        raise ValueError(f"ema must be a beta in [0, 1) or a WeightEMA, got {ema!r}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ValueError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    if seed is not None:
        seed_everything(seed)
    n_batches = _length(train_loader)
    total_updates = max_updates
    if epochs is not None and n_batches is not None:
        k = optimizer.k if isinstance(optimizer, Accumulate) else 1
        by_epochs = (epochs * n_batches) // k
        total_updates = by_epochs if max_updates is None else min(by_epochs, max_updates)
    config = {
        "epochs": epochs,
        "max_updates": max_updates,
        "total_updates": total_updates,
        "batches_per_epoch": n_batches,
        "clip_norm": clip_norm,
        "clip_value": clip_value,
        "ema": ema.beta if isinstance(ema, WeightEMA) else ema,
        "seed": seed,
        "optimizer": type(optimizer).__name__,
    }
    opts = {
        "max_updates": max_updates,
        "total_updates": total_updates,
        "schedule": schedule,
        "clip_norm": clip_norm,
        "clip_value": clip_value,
        "ema": ema,
        "eval_every": eval_every,
        "trace_every": trace_every,
        "accuracy_fn": accuracy_fn,
        "progress": progress,
        "checkpoint": checkpoint,
        "checkpoint_every": checkpoint_every,
        "config": config,
    }
    run = _Run(model, loss_fn, train_loader, optimizer, val_loader, opts)
    if resume is not None:
        run.load(Path(resume))
    return run.run(epochs)
