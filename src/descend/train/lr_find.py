"""The learning-rate range test (Smith 2015, arXiv:1506.01186), as in fastai and torch-lr-finder.

Train for N steps while the learning rate sweeps from ``start_lr`` to ``end_lr``:

    exponential:  lr_i = start · (end/start)^(i/(N−1))
    linear:       lr_i = start + (end − start) · i/(N−1)

record the loss of every batch, smooth it with a bias-corrected EWA
(s_i = EWA_β(loss)_i / (1 − β^(i+1)), β = 0.98 as in fastai), and stop once the smoothed
loss exceeds ``diverge_factor`` (4, fastai; torch-lr-finder uses 5) times the best so far.
On the smoothed curve, after trimming the first N/10 and the last 5 points, three rules
suggest a learning rate:

``steepest``    where the loss falls fastest (argmin of its slope; torch-lr-finder)
``valley``      fastai's default: inside the longest stretch over which the loss keeps
                falling, a third plus a sixth of the way along (index start + ⌊L/3⌋ + ⌊L/6⌋)
``minimum/10``  a tenth of the lr of the lowest loss (fastai's ``minimum``)

The model and optimizer are restored exactly afterwards (weights, buffers, optimizer state,
param groups, RNG state), so the sweep leaves no trace.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from descend.optim.accumulate import Accumulate
from descend.train.models import batch_norm_layers, batch_of_one_error

RULES = ("steepest", "valley", "minimum/10")
MODES = ("exp", "linear")


@dataclass
class LRFindResult:
    """One sweep: ``lrs``, raw ``losses`` and ``smoothed`` losses (one per step done),
    the ``suggestions`` of each rule (``None`` when too few points were left), why it
    stopped, and the settings used."""

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggestions: dict[str, float | None]
    stop_reason: str
    config: dict[str, Any] = field(default_factory=dict)

    def frame(self):
        """lr, loss and smoothed loss per step as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame({"lr": self.lrs, "loss": self.losses, "smoothed": self.smoothed})

    def summary(self) -> str:
        parts = [
            f"{rule} {value:.3g}" if value is not None else f"{rule} n/a"
            for rule, value in self.suggestions.items()
        ]
        return f"{len(self.lrs)} steps ({self.stop_reason}); suggested lr: " + ", ".join(parts)


def sweep_lrs(start_lr: float, end_lr: float, num_steps: int, mode: str = "exp") -> np.ndarray:
    """The N learning rates of the sweep (see the module docstring)."""
    if not (math.isfinite(start_lr) and start_lr > 0):
        raise ValueError(f"start_lr must be a positive finite number, got {start_lr}")
    if not (math.isfinite(end_lr) and end_lr > start_lr):
        raise ValueError(f"end_lr must be finite and > start_lr={start_lr}, got {end_lr}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 2:
        raise ValueError(f"num_steps must be an integer >= 2, got {num_steps!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be 'exp' or 'linear', got {mode!r}")
    frac = np.arange(num_steps) / (num_steps - 1)
    if mode == "exp":
        return start_lr * (end_lr / start_lr) ** frac
    return start_lr + (end_lr - start_lr) * frac


def steepest(lrs: np.ndarray, smoothed: np.ndarray) -> float:
    """lr where the smoothed loss falls fastest per step (argmin of np.gradient)."""
    return float(lrs[int(np.argmin(np.gradient(smoothed)))])


def valley(lrs: np.ndarray, smoothed: np.ndarray) -> float:
    """fastai's valley rule: the longest decreasing subsequence [a, b] of the loss, then the
    point a + ⌊(b − a)/3⌋ + ⌊(b − a)/6⌋ (fastai ``valley``; O(n²) dynamic programme)."""
    n = len(smoothed)
    run = [1] * n
    best_start = best_end = 0
    for i in range(1, n):
        for j in range(i):
            if smoothed[i] < smoothed[j] and run[i] < run[j] + 1:
                run[i] = run[j] + 1
            if run[best_end] < run[i]:
                best_end = i
                best_start = best_end - run[best_end]
    sections = (best_end - best_start) / 3
    return float(lrs[best_start + int(sections) + int(sections / 2)])


def minimum_over_10(lrs: np.ndarray, smoothed: np.ndarray) -> float:
    """A tenth of the lr at which the smoothed loss is lowest."""
    return float(lrs[int(np.argmin(smoothed))]) / 10


def suggest(
    lrs: np.ndarray, smoothed: np.ndarray, skip_start: int, skip_end: int
) -> dict[str, float | None]:
    """All three rules on ``smoothed[skip_start : len − skip_end]`` (``None`` if < 3 points)."""
    stop = len(lrs) - skip_end
    window_lrs, window = lrs[skip_start:stop], smoothed[skip_start:stop]
    if len(window) < 3:
        return dict.fromkeys(RULES)
    return {
        "steepest": steepest(window_lrs, window),
        "valley": valley(window_lrs, window),
        "minimum/10": minimum_over_10(window_lrs, window),
    }


def _batches(loader: Iterable) -> Iterator:
    """Cycle through ``loader`` (a new epoch each time it runs out)."""
    epoch = getattr(loader, "epoch", 0)
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("loader yielded no batches")
        epoch += 1
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)


class _Restore:
    """Snapshot of model, optimizer, RNGs and loader position; ``restore()`` puts them back."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loader: Any) -> None:
        self.model, self.optimizer, self.loader = model, optimizer, loader
        self.model_state = copy.deepcopy(model.state_dict())
        self.optimizer_state = copy.deepcopy(optimizer.state_dict())
        self.training = model.training
        self.rng = (torch.get_rng_state(), np.random.get_state(), random.getstate())
        self.loader_epoch = getattr(loader, "epoch", None)
        base = optimizer.optimizer if isinstance(optimizer, Accumulate) else optimizer
        # Step hooks (schedules, EMA, …) must not see the sweep: park them meanwhile.
        self.hook_dicts = [base._optimizer_step_pre_hooks, base._optimizer_step_post_hooks]
        self.hooks = [dict(d) for d in self.hook_dicts]
        for d in self.hook_dicts:
            d.clear()

    def restore(self) -> None:
        self.model.load_state_dict(self.model_state)
        self.optimizer.load_state_dict(self.optimizer_state)
        self.model.train(self.training)
        torch.set_rng_state(self.rng[0])
        np.random.set_state(self.rng[1])
        random.setstate(self.rng[2])
        if self.loader_epoch is not None and hasattr(self.loader, "set_epoch"):
            self.loader.set_epoch(self.loader_epoch)
        for d, saved in zip(self.hook_dicts, self.hooks):
            d.clear()
            d.update(saved)


def lr_find(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    mode: str = "exp",
    beta: float = 0.98,
    diverge_factor: float = 4.0,
    skip_start: int | None = None,
    skip_end: int = 5,
    seed: int | None = None,
) -> LRFindResult:
    """Run the range test on ``model`` with ``optimizer`` and suggest learning rates.

    Args:
        model, loss_fn, loader, optimizer: any model, batch-mean loss, iterable of ``(x, y)``
            (cycled if shorter than ``num_steps``) and torch/descend optimizer (every param
            group gets the same swept lr).
        start_lr, end_lr, num_steps, mode: the sweep (``"exp"`` or ``"linear"``).
        beta: EWA memory for smoothing the loss (bias-corrected).
        diverge_factor: stop when the smoothed loss exceeds this multiple of the best (> 1).
        skip_start: points left out at the start before suggesting (default ``num_steps//10``).
        skip_end: points left out at the end (default 5).
        seed: seed torch, numpy and ``random`` for the sweep (the RNG state is restored after).

    The optimizer's step hooks are disabled during the sweep and everything is restored after,
    also when the sweep raises.
    """
    from descend.ewa import ewa

    base = optimizer.optimizer if isinstance(optimizer, Accumulate) else optimizer
    if getattr(base, "lr_is_initial_step_size", False):
        raise ValueError(
            f"{type(base).__name__} reads lr once, as the initial step size of every element, "
            "then adapts each step size itself (etas, step_sizes): only its first step sees "
            "the swept lr, so a range test cannot suggest one"
        )
    lrs = sweep_lrs(start_lr, end_lr, num_steps, mode)
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    if not diverge_factor > 1:
        raise ValueError(f"diverge_factor must be > 1, got {diverge_factor}")
    skip_start = num_steps // 10 if skip_start is None else skip_start
    for name, value in (("skip_start", skip_start), ("skip_end", skip_end)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    bn_layers = batch_norm_layers(model)
    snapshot = _Restore(model, optimizer, loader)
    losses: list[float] = []
    stop_reason = "completed"
    try:
        if seed is not None:
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
        model.train()
        average, best = 0.0, math.inf
        batches = _batches(loader)
        for i, lr in enumerate(lrs):
            x, y = next(batches)
            if bn_layers and x.shape[0] == 1:
                raise batch_of_one_error(bn_layers[0])
            for group in optimizer.param_groups:
                group["lr"] = float(lr)
            loss = loss_fn(model(x), y)
            value = float(loss.detach())
            if not math.isfinite(value):
                stop_reason = f"loss became {value} at step {i + 1} (lr {lr:.3g})"
                break
            losses.append(value)
            average = beta * average + (1 - beta) * value
            smooth = average / (1 - beta ** (i + 1))
            best = min(best, smooth)
            if smooth > diverge_factor * best:
                stop_reason = (
                    f"smoothed loss {smooth:.4g} > {diverge_factor:g}× best {best:.4g} at "
                    f"step {i + 1} (lr {lr:.3g})"
                )
                break
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        snapshot.restore()
    done = np.asarray(losses, dtype=float)
    smoothed = np.asarray(ewa(done, beta, bias_correction=True), dtype=float) if len(done) else done
    recorded = lrs[: len(done)]
    config = {
        "start_lr": start_lr,
        "end_lr": end_lr,
        "num_steps": num_steps,
        "mode": mode,
        "beta": beta,
        "diverge_factor": diverge_factor,
        "skip_start": skip_start,
        "skip_end": skip_end,
        "seed": seed,
    }
    suggestions = suggest(recorded, smoothed, skip_start, skip_end)
    return LRFindResult(recorded, done, smoothed, suggestions, stop_reason, config)
