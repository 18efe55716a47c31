"""One chain for some parameters, another for the rest (optax's ``partition``)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .base import Context, Transform


class partition(Transform):  # noqa: N801 - transforms are named like functions
    """Run ``chosen`` on the parameters for which ``select(param)`` is true and ``rest`` on the
    others, each on its own sub-list, and put the updates back in the parameters' order.

    This is how Muon steps matrices with Newton–Schulz and vectors with AdamW inside one
    group, as optax's ``contrib.muon`` (``combine.partition``) and Keras' ``Muon`` do.
    Intermediates each side records are merged into the trace with NaN where a parameter's
    side has no such quantity; decoupled decay amounts (``ctx.extras["decay"]``) likewise,
    with zeros. A side may leave its updates as directions with pending factors
    (``ctx.scales``, see :mod:`descend.transforms.base`) when the caller allows it; they are
    merged likewise, with None (no factor) for the other side's parameters.
    """

    defers_scale = True  # passes the permission to both sides and merges their factors

    def __init__(self, select: Callable[[Tensor], bool], chosen: Transform, rest: Transform):
        self.select, self.chosen, self.rest = select, chosen, rest
        self.state_keys = tuple(dict.fromkeys(chosen.state_keys + rest.state_keys))

    @property
    def transforms(self) -> list[Transform]:
        """Both sides' links (``chosen``'s, then ``rest``'s), for code that walks a chain."""
        return [*_links(self.chosen), *_links(self.rest)]

    def init(self, param: Tensor, state: dict) -> None:
        (self.chosen if self.select(param) else self.rest).init(param, state)

    def update(self, updates, states, params, ctx: Context):
        picked = [bool(self.select(p)) for p in params]
        out = list(updates)
        decay: list[Tensor] | None = None
        scales: list | None = None
        traces = []
        for side, want in ((self.chosen, True), (self.rest, False)):
            idx = [i for i, s in enumerate(picked) if s is want]
            if not idx:
                continue
            sub = Context(
                ctx.group,
                [ctx.steps[i] for i in idx],
                trace={} if ctx.tracing else None,
                owned=ctx.owned,
                extras={k: v for k, v in ctx.extras.items() if k != "decay"},
                apply_scaled=ctx.apply_scaled,
            )
            result = side.update(
                [updates[i] for i in idx], [states[i] for i in idx], [params[i] for i in idx], sub
            )
            if not sub.owned:  # the side passed the incoming tensors through untouched
                result = [u.clone() for u in result]
            for i, u in zip(idx, result):
                out[i] = u
            if sub.scales is not None:
                scales = scales or [None] * len(params)
                for i, s in zip(idx, sub.scales):
                    scales[i] = s
            if "decay" in sub.extras:
                decay = decay or [torch.zeros_like(p) for p in params]
                for i, d in zip(idx, sub.extras["decay"]):
                    decay[i] = d
            if sub.trace is not None:
                traces.append((idx, sub.trace))
        ctx.owned = True
        ctx.precond = None
        ctx.scales = scales
        if decay is not None:
            ctx.extras["decay"] = decay
        if ctx.trace is not None:
            for idx, trace in traces:
                for name, tensors in trace.items():
                    merged = ctx.trace.get(name) or [
                        torch.full_like(p, math.nan).detach() for p in params
                    ]
                    for i, t in zip(idx, tensors):
                        merged[i] = t
                    ctx.trace[name] = merged
        return out

    def __repr__(self) -> str:
        return f"partition({self.chosen!r}, {self.rest!r})"


def _links(tr: Transform) -> list[Transform]:
    return list(tr.transforms) if hasattr(tr, "transforms") else [tr]
