"""List operations that take a number, a per-parameter list of numbers, or a tensor.

Numbers go to torch's ``_foreach_*`` kernels (one dispatch for the whole list, as
torch.optim's multi-tensor path); tensor hyperparameters (one value per trajectory in the lab)
fall back to a per-tensor loop with broadcasting.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _is_tensor(s) -> bool:
    return isinstance(s, Tensor)


def mul_(xs: list[Tensor], s) -> None:
    """xs ← xs · s."""
    if _is_tensor(s):
        for x in xs:
            x.mul_(s)
    else:
        torch._foreach_mul_(xs, s)


def div_(xs: list[Tensor], s) -> None:
    """xs ← xs / s."""
    if _is_tensor(s):
        for x in xs:
            x.div_(s)
    else:
        torch._foreach_div_(xs, s)


def add_scaled_(xs: list[Tensor], ys: list[Tensor], s) -> None:
    """xs ← xs + s · ys."""
    if _is_tensor(s):
        for x, y in zip(xs, ys):
            x.add_(y * s)
    elif isinstance(s, list):
        for x, y, si in zip(xs, ys, s):
            x.add_(y, alpha=si)
    else:
        torch._foreach_add_(xs, ys, alpha=s)


def lerp_(xs: list[Tensor], ys: list[Tensor], w) -> None:
    """xs ← xs + w · (ys − xs)  (an EWA step with weight w = 1 − β)."""
    if _is_tensor(w):
        for x, y in zip(xs, ys):
            x.lerp_(y, w.to(x.dtype) if w.dtype != x.dtype else w)
    else:
        torch._foreach_lerp_(xs, ys, float(w))


def ewa_sq_(vs: list[Tensor], gs: list[Tensor], beta) -> None:
    """vs ← β·vs + (1 − β)·gs²."""
    mul_(vs, beta)
    if _is_tensor(beta):
        for v, g in zip(vs, gs):
            v.addcmul_(g, g * (1 - beta))
    else:
        torch._foreach_addcmul_(vs, gs, gs, value=1 - beta)


def const(s, like: Tensor):
    """A hyperparameter ready to combine with ``like`` (tensors cast to its dtype/device)."""
    return s.to(dtype=like.dtype, device=like.device) if _is_tensor(s) else s


def div_list_(xs: list[Tensor], ss: list) -> None:
    """xs[i] ← xs[i] / ss[i] for a per-parameter list of numbers or tensors."""
    if ss and isinstance(ss[0], Tensor):
        for x, s in zip(xs, ss):
            x.div_(s)
    else:
        torch._foreach_div_(xs, ss)


def mul_list_(xs: list[Tensor], ss: list) -> None:
    """xs[i] ← xs[i] · ss[i] for a per-parameter list of numbers or tensors."""
    if ss and isinstance(ss[0], Tensor):
        for x, s in zip(xs, ss):
            x.mul_(s)
    else:
        torch._foreach_mul_(xs, ss)


def add_scaled_list_(xs: list[Tensor], ys: list[Tensor], ss: list) -> None:
    """xs[i] ← xs[i] + ss[i] · ys[i] for a per-parameter list of numbers or tensors."""
    if ss and isinstance(ss[0], Tensor):
        for x, y, s in zip(xs, ys, ss):
            x.add_(y * s)
    else:
        for x, y, s in zip(xs, ys, ss):
            x.add_(y, alpha=s)


def sqrt_plus_eps(xs: list[Tensor], eps, inside: bool) -> list[Tensor]:
    """New tensors √x + ε, or √(x + ε) when ``inside`` (the ε placements of RMSprop/Adam)."""
    if inside:
        d = [x + eps for x in xs] if _is_tensor(eps) else torch._foreach_add(xs, eps)
        torch._foreach_sqrt_(d)
        return d
    d = torch._foreach_sqrt(xs)
    if _is_tensor(eps):
        for x in d:
            x.add_(eps)
    else:
        torch._foreach_add_(d, eps)
    return d
