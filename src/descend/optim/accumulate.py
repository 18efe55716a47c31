"""Gradient accumulation as an optimizer wrapper: one real update every ``k`` calls to ``step()``.

A batch of size ``k·B`` that does not fit in memory can be split into ``k`` micro-batches of
size ``B``. With a loss that is a mean over its batch, the gradient of the big batch is the mean
of the micro-batch gradients,

    g = (1/k) Σᵢ gᵢ,

so accumulating ``k`` micro-batch gradients and averaging them gives exactly the update of the
big batch (for models without batch-dependent layers such as BatchNorm). ``average=False`` sums
instead (use it when the loss is a sum over samples).

``Accumulate`` keeps its own running sum, so the ordinary loop works unchanged::

    opt = Accumulate(torch.optim.SGD(model.parameters(), lr=0.1), k=4)
    for x, y in loader:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()          # updates the weights on every 4th call only

Step hooks (``register_step_pre_hook`` / ``register_step_post_hook``) and the param groups are
those of the wrapped optimizer, so a schedule attached to the wrapper, gradient clipping done in
a pre-hook, or an EMA of weights updated in a post-hook all see *real updates* only. Micro-batches
left over at the end of an epoch stay in the sum and count towards the next update (as in optax's
``MultiSteps``); call :meth:`flush` to apply a partial accumulation now.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class Accumulate(torch.optim.Optimizer):
    """Wrap ``optimizer`` so that it updates once every ``k`` calls to :meth:`step`.

    Args:
        optimizer: any ``torch.optim.Optimizer`` (descend's or torch's).
        k: number of micro-batches per update, an integer ≥ 1 (``k = 1`` is the plain optimizer).
        average: divide the summed gradient by the number of micro-batches (default ``True``,
            right for mean-reduced losses); ``False`` keeps the sum.

    Attributes:
        micro_steps: micro-batches accumulated since the last real update (0 … k−1).
        updates: real updates made so far.
    """

    # Deliberately does not call Optimizer.__init__: param groups, state and hooks belong to the
    # wrapped optimizer; this class only owns the running sum of gradients.
    def __init__(self, optimizer: torch.optim.Optimizer, k: int, average: bool = True) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an integer >= 1 (micro-batches per update), got {k!r}")
        self.optimizer = optimizer
        self.k = k
        self.average = bool(average)
        self.micro_steps = 0
        self.updates = 0
        self._sums: dict[torch.Tensor, torch.Tensor] = {}

    # --- the wrapped optimizer's views ------------------------------------------------------
    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return self.optimizer.param_groups

    @property
    def state(self):  # type: ignore[override]
        return self.optimizer.state

    @property
    def defaults(self) -> dict[str, Any]:  # type: ignore[override]
        return self.optimizer.defaults

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self.optimizer.add_param_group(param_group)

    def register_step_pre_hook(self, hook: Callable):  # type: ignore[override]
        """Register ``hook`` on the wrapped optimizer: it runs before each *real* update."""
        return self.optimizer.register_step_pre_hook(hook)

    def register_step_post_hook(self, hook: Callable):  # type: ignore[override]
        """Register ``hook`` on the wrapped optimizer: it runs after each *real* update."""
        return self.optimizer.register_step_post_hook(hook)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear ``.grad`` of every parameter (the running sum is kept until the update)."""
        self.optimizer.zero_grad(set_to_none=set_to_none)

    # --- accumulation -----------------------------------------------------------------------
    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    @property
    def accumulating(self) -> bool:
        """True when the next :meth:`step` will only add to the sum (no update)."""
        return self.micro_steps + 1 < self.k

    @torch.no_grad()
    def _add_current_grads(self) -> None:
        for p in self._params():
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise ValueError("Accumulate does not support sparse gradients")
            total = self._sums.get(p)
            if total is None:
                self._sums[p] = p.grad.detach().clone()
            else:
                total.add_(p.grad)

    @torch.no_grad()
    def _apply(self) -> None:
        """Put the (averaged) sum into ``.grad`` and let the wrapped optimizer update."""
        count = self.micro_steps
        for p, total in self._sums.items():
            if self.average and count > 1:
                total.div_(count)
            if p.grad is None:
                p.grad = total.clone()
            else:
                p.grad.copy_(total)
            total.zero_()
        self.optimizer.step()
        self.updates += 1
        self.micro_steps = 0

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:  # type: ignore[override]
        """Add the current gradients to the sum; on every ``k``-th call, update the weights.

        ``closure`` (optional) is evaluated first with gradients enabled, as in torch.optim.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._add_current_grads()
        self.micro_steps += 1
        if self.micro_steps == self.k:
            self._apply()
        return loss

    def flush(self) -> bool:
        """Update now with the ``micro_steps < k`` gradients accumulated so far.

        The average (``average=True``) is over the micro-batches actually accumulated. Returns
        ``True`` if an update was made, ``False`` if nothing was pending.
        """
        if self.micro_steps == 0:
            return False
        self._apply()
        return True

    # --- checkpointing ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """The wrapped optimizer's state, the counters and the pending sum (by param index)."""
        index = {p: i for i, p in enumerate(self._params())}
        return {
            "optimizer": self.optimizer.state_dict(),
            "k": self.k,
            "average": self.average,
            "micro_steps": self.micro_steps,
            "updates": self.updates,
            "sums": {index[p]: t.clone() for p, t in self._sums.items()},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        if state_dict["k"] != self.k:
            raise ValueError(
                f"state_dict has k={state_dict['k']} but this Accumulate has k={self.k}"
            )
        self.optimizer.load_state_dict(state_dict["optimizer"])
        self.average = bool(state_dict["average"])
        self.micro_steps = int(state_dict["micro_steps"])
        self.updates = int(state_dict["updates"])
        params = self._params()
        self._sums = {
            params[i]: t.detach().clone().to(params[i]) for i, t in state_dict["sums"].items()
        }

    def __repr__(self) -> str:
        return f"Accumulate(k={self.k}, average={self.average}, optimizer={self.optimizer!r})"

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
