"""Collect the chain's intermediates step by step (what ``explain`` and the lab read)."""

from __future__ import annotations

from contextlib import contextmanager

from .base import ChainOptimizer


@contextmanager
def tracing(optimizer: ChainOptimizer):
    """``with tracing(opt) as steps: ...`` — after each ``opt.step()``, ``steps`` gains one
    dict per param group: ``{"group": i, "step": t, name: [tensor per parameter], …}``."""
    records: list[dict] = []

    def hook(opt, index, record):
        t = opt.state[opt.param_groups[index]["params"][0]].get("step")
        records.append({"group": index, "step": int(t) if t is not None else None, **record})

    handle = optimizer.register_trace_hook(hook)
    try:
        yield records
    finally:
        handle.remove()
