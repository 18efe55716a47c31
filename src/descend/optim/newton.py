"""Newton's method with a damped (Levenberg) or saddle-free solve."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from ..transforms._sharded import is_sharded
from . import validation as check
from .distributed import _building_zero
from .registry import Spec, register

HESSIANS = ("full", "diagonal")
MODES = ("exact", "saddle_free")
SHARED = ("damping", "hessian", "mode", "max_params")  # settings of the one joint solve


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

    Several param groups are one system: H is the Hessian of all groups' parameters together
    (the blocks between groups included) and d is solved once; each group moves its slice of
    d by its own ``lr``. ``damping``, ``hessian``, ``mode`` and ``max_params`` belong to that
    one solve, so a group that sets them differently is refused (``ValueError``).
    """

    specs = {"newton": Spec("Newton's method: solve (H + λI)d = g", lab_lr=("newton", 1.0))}
    couples = True  # one joint solve over every coordinate
    choices = {"hessian": HESSIANS, "mode": MODES}

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

    def add_param_group(self, param_group: dict) -> None:
        # One Newton step solves one system over every parameter: the settings of the solve
        # must be the same in every group (only the step size lr may differ per group).
        merged = {**self.defaults, **param_group}
        check.non_negative("lr", merged["lr"])
        check.non_negative("damping", merged["damping"])
        check.choice("hessian", merged["hessian"], HESSIANS)
        check.choice("mode", merged["mode"], MODES)
        for key in SHARED:
            if self.param_groups and merged[key] != self.param_groups[0][key]:
                raise ValueError(
                    f"{key}={merged[key]!r} in a param group, {self.param_groups[0][key]!r} in "
                    f"the first: Newton solves one system (H + λI)d = g over all groups' "
                    f"parameters jointly, so {', '.join(SHARED)} are per optimizer; only lr "
                    "may differ per group"
                )
        _check_one_process(param_group["params"])
        super().add_param_group(param_group)

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:  # type: ignore[override]
        """One Newton step of all groups' parameters jointly: the Hessian includes the blocks
        between groups, and each group moves its part of d by its own lr."""
        if closure is None:
            raise ValueError("Newton.step needs a closure that returns the loss with its graph")
        with torch.enable_grad():
            loss = closure()
            if not isinstance(loss, Tensor) or not loss.requires_grad:
                raise ValueError(
                    "Newton's closure must return the loss tensor with its graph (do not call "
                    "backward or detach it)"
                )
            groups = [
                (group, [p for p in group["params"] if p.requires_grad])
                for group in self.param_groups
            ]
            self._step(loss, groups)
        return loss.detach()

    def _step(self, loss: Tensor, groups: list[tuple[dict, list[Tensor]]]) -> None:
        first = self.param_groups[0]
        params = [p for _, ps in groups for p in ps]
        n = sum(p.numel() for p in params)
        if first["hessian"] == "full" and n > first["max_params"]:
            raise ValueError(
                f"Newton with hessian='full' on {n} parameters would need {n} backward passes "
                f"and a {n}×{n} matrix; the limit is max_params={first['max_params']}. Use "
                "hessian='diagonal' or a first-order optimizer"
            )
        if not params:
            return
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
            rows.append(flat[i : i + 1] if first["hessian"] == "diagonal" else flat)
        g = g.detach()
        lam, mode, kind = first["damping"], first["mode"], first["hessian"]
        h = torch.cat(rows).detach() if kind == "diagonal" else torch.stack(rows).detach()
        d = _solved_or_raise(solve(h, g, lam, mode, kind), lam, mode, kind)
        key = "hessian_diagonal" if kind == "diagonal" else "hessian"
        self.last = {"grad": g, key: h, "direction": d}
        with torch.no_grad():
            offset = 0
            for group, ps in groups:
                for p in ps:
                    k = p.numel()
                    p.sub_(group["lr"] * d[offset : offset + k].view_as(p))
                    offset += k


register(Newton)


class Solution(NamedTuple):
    """A batch of Newton directions: ``direction`` (N, d) (zero where not ``ok``), ``ok`` (N,)
    bool, ``lowest`` (N,) each row's smallest shifted eigenvalue (or diagonal entry) s, and
    ``finite`` (N,) whether the row's H and g were finite."""

    direction: Tensor
    ok: Tensor
    lowest: Tensor
    finite: Tensor


def solve(h: Tensor, g: Tensor, damping, mode: str = "exact", kind: str = "full") -> Solution:
    """Newton directions d with (H + λI) d = g, for one system or a batch of N.

    ``kind="full"``: H (d, d) or (N, d, d) is symmetrised, ½(H + Hᵀ) = V diag(e) Vᵀ;
    ``mode="saddle_free"`` replaces e by |e|; s = e + λ and d = V (Vᵀg / s).
    ``kind="diagonal"``: ``h`` holds only diag(H), shape like ``g``; s = h (or |h|) + λ, d = g / s.
    g is (d,) or (N, d); ``damping`` λ a number or an (N, 1) tensor (one per system).

    A system is refused (``ok`` False, d = 0) when its H or g is not finite, when ``exact``
    and some s ≤ 10⁻¹²·max(1, max|s|) (not positive definite; for the diagonal: s ≤ 0), or
    when some |s| ≤ 10⁻¹²·max(1, max|s|) (singular; diagonal: s = 0). Rows never interact, so
    a refused row leaves the others' directions unchanged. Used by :class:`Newton` (which
    raises for a refused system) and by the lab (which stops only the refused runs).
    """
    check.choice("mode", mode, MODES)
    check.choice("hessian", kind, HESSIANS)
    single = g.ndim == 1
    if single:
        h, g = h.unsqueeze(0), g.unsqueeze(0)
    n, d = g.shape
    finite = torch.isfinite(h).reshape(n, -1).all(dim=1) & torch.isfinite(g).all(dim=1)
    if kind == "diagonal":
        evals = torch.where(finite[:, None], h, torch.ones_like(h))
    else:
        sym = 0.5 * (h + h.transpose(-1, -2))
        eye = torch.eye(d, dtype=h.dtype, device=h.device).expand(n, d, d)
        sym = torch.where(finite[:, None, None], sym, eye)  # eigh of NaN would fail the batch
        evals, evecs = torch.linalg.eigh(sym)
    if mode == "saddle_free":
        evals = evals.abs()
    lam = damping if isinstance(damping, Tensor) else torch.tensor(float(damping), dtype=h.dtype)
    shifted = evals + lam
    scale = shifted.abs().amax(dim=1, keepdim=True).clamp_min(1.0)
    if kind == "diagonal":
        refused = shifted <= 0 if mode == "exact" else shifted == 0
    elif mode == "exact":
        refused = shifted <= 1e-12 * scale
    else:
        refused = shifted.abs() <= 1e-12 * scale
    ok = ~refused.any(dim=1) & finite
    safe = torch.where(refused, torch.ones_like(shifted), shifted)
    if kind == "diagonal":
        direction = g / safe
    else:
        coords = torch.einsum("nij,ni->nj", evecs, g) / safe
        direction = torch.einsum("nij,nj->ni", evecs, coords)
    direction = torch.where(ok[:, None], direction, torch.zeros_like(direction))
    lowest = shifted.amin(dim=1)
    if single:
        return Solution(direction[0], ok[0], lowest[0], finite[0])
    return Solution(direction, ok, lowest, finite)


def _check_one_process(params) -> None:
    """One Newton step solves one system over the whole model, with autograd's double
    backward through it: refuse sharded (DTensor) parameters and a ZeroRedundancyOptimizer's
    share, where each rank would solve for its part only (its blocks of H, not H)."""
    params = [params] if isinstance(params, Tensor) else list(params)
    if any(is_sharded(p) for p in params) or _building_zero() is not None:
        raise ValueError(
            "Newton solves one system (H + λI)d = g over every parameter, but here each "
            "process holds a share of them (DTensor parameters or a ZeroRedundancyOptimizer): "
            "the Hessian is not assembled across processes; use Newton in one process"
        )


def _solved_or_raise(sol: Solution, lam: float, mode: str, kind: str) -> Tensor:
    """The direction of one system, or the ValueError that says why it was refused."""
    if bool(sol.ok):
        return sol.direction
    lowest = float(sol.lowest)
    if not bool(sol.finite):
        raise ValueError("the gradient or Hessian is not finite; Newton cannot take a step")
    if kind == "diagonal":
        if mode == "exact" and lowest <= 0:
            raise ValueError(
                "a diagonal Hessian entry (+ damping) is ≤ 0 (smallest "
                f"{lowest:.4g}); add damping or use mode='saddle_free'"
            )
        raise ValueError("a diagonal Hessian entry is zero; add damping > 0")
    if mode == "exact":  # every refusal in exact mode is a shifted eigenvalue ≤ 0 (or ~0)
        raise ValueError(
            f"the Hessian{' + damping·I' if lam else ''} is not positive definite "
            f"(smallest eigenvalue {lowest:.4g}): Newton's step would go "
            "towards a saddle or maximum, or is undefined. Add damping > "
            f"{max(0.0, -(lowest - lam)):.4g} or use mode='saddle_free'"
        )
    raise ValueError("the Hessian is singular; add damping > 0")
