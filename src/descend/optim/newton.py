"""Newton's method with a damped (Levenberg) or saddle-free solve."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from . import validation as check

HESSIANS = ("full", "diagonal")
MODES = ("exact", "saddle_free")


class Newton(torch.optim.Optimizer):
    """θ ← θ − γ·d with (H + λI) d = g, H and g by autograd at the current θ.

    The closure returns the loss *with its graph* and does not call ``backward``: the
    optimizer differentiates it twice. ``hessian="full"`` solves with the full matrix
    (refused above ``max_params`` parameters, since it costs one backward pass per parameter
    and O(n²) memory), ``"diagonal"`` divides by the Hessian's diagonal. An indefinite or
    singular system raises ``ValueError`` unless ``mode="saddle_free"`` (Dauphin et al.,
    NeurIPS 2014), which uses |eigenvalues| so negative curvature pushes away from saddles.
    On a positive-definite quadratic with ``lr=1`` and no damping, one step lands on the
    minimum. The last step's gradient, Hessian and direction are kept in ``self.last``.
    """

    def __init__(
        self,
        params,
        lr: float = 1.0,
        damping: float = 0.0,
        hessian: str = "full",
        mode: str = "exact",
        max_params: int = 4096,
    ):
        check.non_negative("lr", lr)
        check.non_negative("damping", damping)
        check.choice("hessian", hessian, HESSIANS)
        check.choice("mode", mode, MODES)
        if not isinstance(max_params, int) or max_params < 1:
            raise ValueError(f"max_params={max_params!r} is invalid: it must be an int ≥ 1")
        defaults = dict(lr=lr, damping=damping, hessian=hessian, mode=mode, max_params=max_params)
        super().__init__(params, defaults)
        self.last: dict[str, Tensor] = {}

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:  # type: ignore[override]
        if closure is None:
            raise ValueError("Newton.step needs a closure that returns the loss with its graph")
        with torch.enable_grad():
            loss = closure()
            if not isinstance(loss, Tensor) or not loss.requires_grad:
                raise ValueError(
                    "Newton's closure must return the loss tensor with its graph (do not call "
                    "backward or detach it)"
                )
            for group in self.param_groups:
                self._step_group(loss, group)
        return loss.detach()

    def _step_group(self, loss: Tensor, group: dict) -> None:
        params = [p for p in group["params"] if p.requires_grad]
        n = sum(p.numel() for p in params)
        if group["hessian"] == "full" and n > group["max_params"]:
            raise ValueError(
                f"Newton with hessian='full' on {n} parameters would need {n} backward passes "
                f"and a {n}×{n} matrix; the limit is max_params={group['max_params']}. Use "
                "hessian='diagonal' or a first-order optimizer"
            )
        grads = torch.autograd.grad(loss, params, create_graph=True, retain_graph=True)
        g = torch.cat([x.reshape(-1) for x in grads])
        rows = []
        for i in range(n):
            row = torch.autograd.grad(g[i], params, retain_graph=True, allow_unused=True)
            flat = torch.cat(
                [
                    (r if r is not None else torch.zeros_like(p)).reshape(-1)
                    for r, p in zip(row, params)
                ]
            )
            rows.append(flat[i : i + 1] if group["hessian"] == "diagonal" else flat)
        g = g.detach()
        lam, mode = group["damping"], group["mode"]
        if group["hessian"] == "diagonal":
            h = torch.cat(rows).detach()
            d = self._solve_diagonal(h, g, lam, mode)
            self.last = {"grad": g, "hessian_diagonal": h, "direction": d}
        else:
            H = torch.stack(rows).detach()
            d = self._solve_full(H, g, lam, mode)
            self.last = {"grad": g, "hessian": H, "direction": d}
        with torch.no_grad():
            offset = 0
            for p in params:
                k = p.numel()
                p.sub_(group["lr"] * d[offset : offset + k].view_as(p))
                offset += k

    @staticmethod
    def _solve_full(H: Tensor, g: Tensor, lam: float, mode: str) -> Tensor:
        H = 0.5 * (H + H.T)
        evals, evecs = torch.linalg.eigh(H)
        if mode == "saddle_free":
            evals = evals.abs()
        shifted = evals + lam
        scale = shifted.abs().max().clamp_min(1.0)
        if mode == "exact" and (shifted <= 1e-12 * scale).any():
            raise ValueError(
                f"the Hessian{' + damping·I' if lam else ''} is not positive definite "
                f"(smallest eigenvalue {float(shifted.min()):.4g}): Newton's step would go "
                "towards a saddle or maximum, or is undefined. Add damping > "
                f"{max(0.0, -float(evals.min())):.4g} or use mode='saddle_free'"
            )
        if (shifted.abs() <= 1e-12 * scale).any():
            raise ValueError("the Hessian is singular; add damping > 0")
        return evecs @ ((evecs.T @ g) / shifted)

    @staticmethod
    def _solve_diagonal(h: Tensor, g: Tensor, lam: float, mode: str) -> Tensor:
        if mode == "saddle_free":
            h = h.abs()
        shifted = h + lam
        if mode == "exact" and (shifted <= 0).any():
            raise ValueError(
                "a diagonal Hessian entry (+ damping) is ≤ 0 (smallest "
                f"{float(shifted.min()):.4g}); add damping or use mode='saddle_free'"
            )
        if (shifted == 0).any():
            raise ValueError("a diagonal Hessian entry is zero; add damping > 0")
        return g / shifted
