"""Weight-decay grouping: no decay on biases and normalisation weights."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from torch import nn

NORM_TYPES: tuple[type, ...] = (
    nn.modules.batchnorm._BatchNorm,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LocalResponseNorm,
)
if hasattr(nn, "RMSNorm"):
    NORM_TYPES = NORM_TYPES + (nn.RMSNorm,)


def _reasons(model: nn.Module, no_decay: Iterable[str], max_ndim: int) -> dict[str, str]:
    """Parameter name → why it gets no decay (absent: it decays)."""
    patterns = list(no_decay)
    reasons: dict[str, str] = {}
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if isinstance(module, NORM_TYPES):
                reasons[full] = f"in a {type(module).__name__}"
            elif p.ndim <= max_ndim:
                reasons[full] = f"{p.ndim}-D ({'bias' if 'bias' in p_name else 'vector'})"
            else:
                hit = next((pat for pat in patterns if fnmatch.fnmatch(full, pat)), None)
                if hit:
                    reasons[full] = f"matches {hit!r}"
    return reasons


def param_groups(
    model: nn.Module,
    weight_decay: float,
    no_decay: Iterable[str] = (),
    max_ndim: int = 1,
    no_decay_options: dict | None = None,
    **group_options,
) -> list[dict]:
    """Two param groups: ``weight_decay`` for weight matrices and kernels, 0 for biases,
    normalisation weights (by module type) and ≤ ``max_ndim``-D tensors, and for names matching
    any glob in ``no_decay`` (e.g. ``"*.pos_embed"``). Extra options go to both groups;
    ``no_decay_options`` only to the second, e.g. ``{"trust_ratio": False}`` for LARS and LAMB,
    which then neither decay nor adapt biases and norms (optax's ``weight_decay_mask`` and
    ``trust_ratio_mask``)::

        LARS(param_groups(model, 1e-4, no_decay_options={"trust_ratio": False}), lr=1.0)
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay={weight_decay!r} is invalid: it must be ≥ 0")
    reasons = _reasons(model, no_decay, max_ndim)
    decay, rest = [], []
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (rest if name in reasons else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay, **group_options},
        {"params": rest, "weight_decay": 0.0, **group_options, **(no_decay_options or {})},
    ]


def describe_groups(model: nn.Module, no_decay: Iterable[str] = (), max_ndim: int = 1) -> str:
    """A table of which parameter goes to which group of :func:`param_groups`, and why."""
    reasons = _reasons(model, no_decay, max_ndim)
    rows = [("parameter", "shape", "group", "why")]
    for name, p in model.named_parameters():
        why = reasons.get(name)
        rows.append(
            (
                name,
                "×".join(map(str, p.shape)) or "scalar",
                "no decay" if why else "decay",
                why or f"{p.ndim}-D weight",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
