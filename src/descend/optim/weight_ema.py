"""Exponential moving average of the weights (Polyak–Ruppert averaging with exponential weights).

After each update the shadow copy moves towards the current weights:

    θ̄ ← β·θ̄ + (1 − β)·θ,

so θ̄ averages about the last 1/(1 − β) iterates. Late in training, when SGD or Adam bounce
around a minimum, θ̄ sits nearer its centre than any single iterate (Polyak & Juditsky 1992;
the exponential form is the one used by Keras' ``use_ema`` and timm's ``ModelEmaV2``). The
shadow starts at the initial weights, so no bias correction is needed.

Evaluate with the averaged weights inside a context manager that puts the live weights back::

    ema = WeightEMA(model, beta=0.99)
    ema.attach(optimizer)                # update after every real optimizer step
    ...
    with ema.swapped():
        validate(model)                  # uses θ̄
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch


class WeightEMA:
    """Keep θ̄ = EMA_β(θ) of a model's parameters (or of a list of tensors).

    Args:
        model_or_params: an ``nn.Module`` (its parameters, and its floating-point buffers such
            as BatchNorm running statistics when ``include_buffers``) or an iterable of tensors.
        beta: decay β in [0, 1); the average covers roughly the last 1/(1 − β) updates.
        include_buffers: with a module, average its floating-point buffers too (integer buffers
            such as ``num_batches_tracked`` are left alone). Default ``True``.

    Attributes:
        num_updates: how many times :meth:`update` has run.
    """

    def __init__(
        self,
        model_or_params: torch.nn.Module | Iterable[torch.Tensor],
        beta: float = 0.999,
        *,
        include_buffers: bool = True,
    ) -> None:
        beta = float(beta)
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        self.beta = beta
        if isinstance(model_or_params, torch.nn.Module):
            tensors = list(model_or_params.parameters())
            if include_buffers:
                tensors += [b for b in model_or_params.buffers() if b.is_floating_point()]
        else:
            tensors = list(model_or_params)
            if any(not isinstance(t, torch.Tensor) for t in tensors):
                raise ValueError("model_or_params must be an nn.Module or an iterable of tensors")
        if not tensors:
            raise ValueError("model_or_params has no tensors to average")
        self._live: list[torch.Tensor] = tensors
        self.shadow: list[torch.Tensor] = [t.detach().clone() for t in tensors]
        self.num_updates = 0

    @torch.no_grad()
    def update(self) -> None:
        """θ̄ ← β·θ̄ + (1 − β)·θ, i.e. θ̄ += (1 − β)(θ − θ̄)."""
        torch._foreach_lerp_(self.shadow, [t.detach() for t in self._live], 1.0 - self.beta)
        self.num_updates += 1

    def attach(self, optimizer: torch.optim.Optimizer):
        """Call :meth:`update` after every step of ``optimizer``; returns a removable handle.

        With :class:`~descend.optim.accumulate.Accumulate` the hook sits on the wrapped
        optimizer, so only real updates count.
        """
        return optimizer.register_step_post_hook(lambda *_: self.update())

    @torch.no_grad()
    def copy_to(self) -> None:
        """Overwrite the live weights with the averaged ones (permanently)."""
        torch._foreach_copy_(self._live, self.shadow)

    @contextmanager
    def swapped(self) -> Iterator[None]:
        """Inside the block the live tensors hold θ̄; on exit (even on error) θ comes back."""
        with torch.no_grad():
            saved = [t.detach().clone() for t in self._live]
            torch._foreach_copy_(self._live, self.shadow)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self._live, saved)

    def state_dict(self) -> dict[str, Any]:
        return {
            "beta": self.beta,
            "num_updates": self.num_updates,
            "shadow": [s.clone() for s in self.shadow],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        shadow = state_dict["shadow"]
        if len(shadow) != len(self.shadow):
            raise ValueError(
                f"state_dict holds {len(shadow)} tensors but this WeightEMA tracks "
                f"{len(self.shadow)}"
            )
        self.beta = float(state_dict["beta"])
        self.num_updates = int(state_dict["num_updates"])
        with torch.no_grad():
            torch._foreach_copy_(self.shadow, [s.to(t) for s, t in zip(shadow, self.shadow)])

    def __repr__(self) -> str:
        return (
            f"WeightEMA(beta={self.beta}, tensors={len(self.shadow)}, updates={self.num_updates})"
        )
