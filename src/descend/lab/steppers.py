"""One optimizer step for a whole group of runs stacked in an (N, d) tensor.

:class:`ChainStepper` wraps one descend optimizer (the very class ``from_spec`` builds) whose
parameter is the (N, d) tensor of N runs; hyperparameters that differ between runs are
(N, 1) tensors in its param group, so every row follows its own configuration through the
same chain of transforms. Each step sets ``p.grad`` from the landscape's batched gradient and
calls ``optimizer.step()``. Clipping, the one link that would mix rows (a global norm over
the whole tensor), is applied by the lab per row before the step, with
``clip_by_global_norm(axis=-1)`` — the chain's first link, so the order is the chain's own.

:class:`NewtonStepper` runs Newton's method with the landscape's batched Hessian (one d×d
solve per row) instead of :class:`descend.optim.Newton`, which differentiates a closure twice
by autograd and would treat N runs as one N·d-dimensional problem. Both solve with the same
function, :func:`descend.optim.newton.solve` (symmetrised H, damping λ, ``mode="saddle_free"``
uses |eigenvalues|, ``exact`` refuses a Hessian + λI that is not positive definite); a row
that is refused is stopped (the others go on), where ``Newton`` raises for the whole
parameter.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from descend.landscapes import Landscape
from descend.optim import fast
from descend.optim.newton import solve
from descend.optim.registry import REGISTRY
from descend.optim.spec import resolve_kwargs
from descend.transforms import Context, clip_by_global_norm

from .configs import CLIPPING, PER_RUN, Config, per_run_value


def _rows(configs: list[Config], rows: Tensor, key: str, dtype: torch.dtype):
    return per_run_value([c.group[key] for c in configs], rows, dtype)


class ChainStepper:
    """A descend ``ChainOptimizer`` over one (N, d) parameter, one row per run; ``configs``
    are the group's distinct configurations and ``rows`` gives each row's."""

    def __init__(self, configs: list[Config], rows: Tensor, theta: Tensor):
        first = configs[0]
        cls = REGISTRY[first.name].cls
        kwargs = resolve_kwargs(first.name, first.given)
        for key in CLIPPING:
            kwargs.pop(key, None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # checked (and reported) per configuration already
            self.optimizer = cls([theta], **kwargs)
        group = self.optimizer.param_groups[0]
        dtype = theta.dtype
        for key in PER_RUN:
            if key in group:
                group[key] = _rows(configs, rows, key, dtype)
        if "betas" in group:
            group["betas"] = tuple(
                per_run_value([c.group["betas"][i] for c in configs], rows, dtype) for i in (0, 1)
            )
        self.max_norm = self._clip_rows(configs, rows, "max_grad_norm", dtype)
        self.clip_value = self._clip_rows(configs, rows, "clip_value", dtype)
        group["max_grad_norm"] = group["clip_value"] = None
        self.base_lr = group["lr"]
        self.group = group
        self.theta = theta
        self._clipper = clip_by_global_norm(self.max_norm, axis=-1)

    @staticmethod
    def _clip_rows(configs: list[Config], rows: Tensor, key: str, dtype):
        if configs[0].group.get(key) is None:  # same for the whole group (structure)
            return None
        return _rows(configs, rows, key, dtype)

    def set_lr_factor(self, factor: float) -> None:
        self.group["lr"] = self.base_lr * factor

    def prepare_fused(self, grad: Tensor):
        """The optimizer's next step prepared for the lab's fused call (gradient ``grad``, a
        buffer the call fills), or None when it must run as ``step`` (per-row clipping, a
        non-finite policy, anything the fast path refuses). Prepared again at every call:
        its checks of the live tensors (sizes, storage, layout) hold for one call only."""
        if self.max_norm is not None or self.clip_value is not None:
            return None
        if getattr(self.optimizer, "nonfinite", "propagate") != "propagate":
            return None
        self.theta.grad = grad
        try:
            prepared = fast.prepare_group(self.optimizer, 0, self.group, [self.theta])
        except fast.Unsupported:
            return None
        if prepared.args.n != 1 or prepared.args.row_len not in (0, self.theta.shape[1]):
            return None
        if prepared.args.cautious:  # a per-tensor mask: the fused step declines it (lab.cpp)
            return None
        return prepared

    def step(self, grad: Tensor, t: int) -> Tensor | None:
        """θ ← optimizer step with gradient ``grad`` (rows clipped first). Never stops a row."""
        if self.max_norm is not None:
            ctx = Context(group={}, steps=[])
            grad = self._clipper.update([grad], [{}], [self.theta], ctx)[0]
        if self.clip_value is not None:
            grad = torch.clamp(grad, -self.clip_value, self.clip_value)
        self.theta.grad = grad
        self.optimizer.step()
        self.theta.grad = None
        return None


class RowsStepper:
    """Every run with its own optimizer over its own (1, d) row of θ: for optimizers whose
    update of a coordinate reads other coordinates (``couples=True`` in their declaration —
    a norm, factored moments, a matrix, a global estimate), so that runs never mix. Each row's
    point is a 1×d matrix to a matrix method. One optimizer step per run: slower than
    :class:`ChainStepper`, never shared."""

    def __init__(self, configs: list[Config], rows: Tensor, theta: Tensor, start: int, stop: int):
        one = torch.zeros(1, dtype=rows.dtype)
        self.rows = [
            ChainStepper([configs[int(k)]], one, theta[i : i + 1].requires_grad_(True))
            for i, k in zip(range(start, stop), rows.tolist(), strict=True)
        ]

    def set_lr_factor(self, factor: float) -> None:
        for row in self.rows:
            row.set_lr_factor(factor)

    def step(self, grad: Tensor, t: int) -> Tensor | None:
        for i, row in enumerate(self.rows):
            row.step(grad[i : i + 1], t)
        return None


class NewtonStepper:
    """θ ← θ − γ·d, (H + λI) d = g per row, H from the landscape (see the module docstring)."""

    def __init__(self, configs: list[Config], rows: Tensor, theta: Tensor, landscape: Landscape):
        dtype = theta.dtype
        self.lr = self.base_lr = _rows(configs, rows, "lr", dtype)
        self.damping = _rows(configs, rows, "damping", dtype)
        self.hessian_kind = configs[0].group["hessian"]
        self.mode = configs[0].group["mode"]
        self.theta = theta
        self.hessian: Callable[[Tensor], Tensor] = landscape.hessian
        self.messages: dict[int, str] = {}

    def set_lr_factor(self, factor: float) -> None:
        self.lr = self.base_lr * factor

    def step(self, grad: Tensor, t: int) -> Tensor | None:
        """One Newton step for every row; returns the rows stopped because their system is
        not positive definite (``exact``) or singular, or None."""
        with torch.no_grad():
            h = self.hessian(self.theta)
            if self.hessian_kind == "diagonal":
                h = torch.diagonal(h, dim1=-2, dim2=-1)
            direction, ok, lowest, _ = solve(h, grad, self.damping, self.mode, self.hessian_kind)
            bad = ~ok
            self.theta.sub_(self.lr * direction)
        if not bool(bad.any()):
            return None
        for row in torch.nonzero(bad).flatten().tolist():
            if row in self.messages:
                continue  # already stopped (frozen rows are still fed to the solve)
            self.messages[row] = (
                f"Newton stopped at step {t}: the Hessian + damping·I is not positive definite "
                f"(smallest eigenvalue {float(lowest[row]):.4g}); use damping or "
                "mode=saddle_free"
            )
        return bad
