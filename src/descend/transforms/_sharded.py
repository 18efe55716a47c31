"""Whole-tensor steps on sharded parameters: gather → step → keep the local shard.

Element-wise transforms run on DTensor parameters (FSDP2's ``fully_shard``, tensor parallel)
through DTensor's own dispatch: each rank updates its shard. A matrix step reads the whole
matrix — Muon's Newton–Schulz iteration, SOAP's rotation into Shampoo's eigenbasis,
Adafactor's row and column means — and its result in one row depends on every other row. For
those, descend gathers the matrix on every rank (``DTensor.full_tensor()``: one all-gather
over the mesh dimensions where it is sharded), runs the one-process step on it, and keeps the
rows (the shard) that this rank holds (:func:`local_like`, no communication); what is
element-wise (momentum, Adam's moments) stays sharded.

Every rank computes the whole step rather than one rank computing and broadcasting it: one
collective instead of two, and no rank waits for another. The ranks agree because their
input is bitwise the same (the gathered matrix) and the kernels are deterministic for the
same input, shapes and build. Where nothing of the result is kept beyond the rank's own rows
(Muon's O), that agreement does not even matter; SOAP's factors and eigenbases are kept whole
on every rank as state, and the 2-rank test checks that they are bitwise the same on both.

Per-tensor norms (LAMB's and LARS's trust ratio) need no gather: :func:`norms` sums every
rank's squared shard norms, for a whole list of tensors in one all-reduce.

Several tensors of the same layout are gathered in one collective (:func:`gather`: stacked
along a new first dimension; each comes back contiguous, laid out as in one process, so the
step computes exactly what one process computes from the same values).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch
from torch import Tensor


def dtensor_type() -> type | None:
    """DTensor's class when ``torch.distributed.tensor`` is imported (no DTensor exists
    before), else None: the check costs no import."""
    module = sys.modules.get("torch.distributed.tensor")
    return None if module is None else module.DTensor


def is_sharded(t) -> bool:
    """Whether ``t`` is a DTensor (a tensor whose values are spread over ranks)."""
    dtensor = dtensor_type()
    return dtensor is not None and isinstance(t, dtensor)


def _check(t: Tensor) -> None:
    if any(pl.is_partial() for pl in t.placements):
        raise ValueError(
            "a DTensor with a Partial placement (a pending sum) cannot be stepped as a whole "
            "matrix: reduce it first (FSDP2 gradients are Shard or Replicate)"
        )


def gather(*ts: Tensor) -> list[Tensor]:
    """The full values of DTensors ``ts`` (plain tensors on every rank), in one all-gather
    when they share shape, dtype, mesh and placements (else one each)."""
    for t in ts:
        _check(t)
    first = ts[0]
    if len(ts) > 1 and all(
        t.shape == first.shape
        and t.dtype == first.dtype
        and t.device_mesh == first.device_mesh
        and t.placements == first.placements
        for t in ts
    ):
        return list(torch.stack(ts).full_tensor().unbind(0))  # contiguous, as in one process
    return [t.full_tensor() for t in ts]


def local_like(full: Tensor, like: Tensor) -> Tensor:
    """The shard of ``full`` (the same values on every rank) that this rank holds in the
    layout of DTensor ``like``, as a DTensor with its mesh and placements (no communication)."""
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(full, like.device_mesh, like.placements, src_data_rank=None)


def like_local(local: Tensor, like: Tensor) -> Tensor:
    """This rank's shard ``local`` (of ``like``'s local shape) as a DTensor laid out as
    ``like`` (no communication)."""
    from torch.distributed.tensor import DTensor

    return DTensor.from_local(
        local, like.device_mesh, like.placements, shape=like.shape, stride=like.stride()
    )


def on_whole(x: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
    """``fn(x)`` for a plain tensor; for a DTensor, ``fn`` of the gathered matrix on every
    rank, returned as this rank's shard in ``x``'s layout. ``fn`` must return a tensor of
    ``x``'s shape, and may overwrite its argument only where it could overwrite ``x``."""
    if not is_sharded(x):
        return fn(x)
    (full,) = gather(x)
    return local_like(fn(full), x)


def norms(ts: list[Tensor]) -> list[Tensor]:
    """‖t‖₂ of each tensor over the whole tensor, as ``torch._foreach_norm`` gives it in one
    process. DTensors (all of them, or the list is left to DTensor's dispatch, one collective
    per tensor) are reduced together: each rank's squared local norms, summed in float64 with
    one ``all_reduce`` per sharded mesh dimension (and per layout) for the whole list."""
    if not ts or not all(is_sharded(t) for t in ts):
        return list(torch._foreach_norm(ts, 2.0))
    for t in ts:
        _check(t)
    out: list = [None] * len(ts)
    layouts: dict = {}
    for i, t in enumerate(ts):
        layouts.setdefault((t.device_mesh, t.placements), []).append(i)
    for (mesh, placements), idx in layouts.items():
        local = [ts[i].to_local() for i in idx]
        squares = torch.stack([n.double() for n in torch._foreach_norm(local, 2.0)]).square()
        for dim, placement in enumerate(placements):
            if placement.is_shard() and mesh.size(dim) > 1:
                torch.distributed.all_reduce(squares, group=mesh.get_group(dim))
        for i, n in zip(idx, squares.sqrt()):
            out[i] = n.to(ts[i].dtype)
    return out
