"""Decisions taken once for all ranks: the non-finite test and the global gradient norm.

``nonfinite="skip"|"raise"`` and ``max_grad_norm`` look at every gradient of a step. When the
gradients of one logical model are spread over several processes, each process sees only its
part, and a per-process answer splits the job (one rank skips while the others step; one
raises while the others wait in their next collective). descend therefore reduces the two
quantities across the processes that hold the rest of the gradients, in one ``all_reduce``
per process group and step (a float64 vector: a non-finite flag and one squared norm per
param group), and every rank takes the same decision from the same numbers:

* **DTensor parameters** (FSDP2 ``fully_shard``, tensor parallel): over the parameter's device
  mesh, along each mesh dimension where it is ``Shard``-ed (a ``Replicate`` dimension holds the
  same values on every rank, and is not summed twice).
* **Plain parameters** with a ``process_group``: over that group. This is the case of
  ``ZeroRedundancyOptimizer``, which hands each rank's optimizer only that rank's partition.
  The rule for ``process_group="auto"`` (the default of every named optimizer): when
  ``torch.distributed`` is initialised and the optimizer is being built by a
  ``ZeroRedundancyOptimizer`` (its ``optimizer_class``), the ZeRO optimizer's own
  ``process_group``; otherwise none. ``process_group=None`` never reduces plain parameters;
  a ``ProcessGroup`` (or ``torch.distributed.group.WORLD``) always does. Plain single-process
  use and DDP (whose gradients are already identical on every rank) need no reduction and get
  none by default.

Every rank calls the same collectives in the same order whether or not it holds gradients
this step (a ZeRO rank whose partition is empty still takes part), so nothing hangs.
With ``"skip"`` every rank skips (same ``skipped_steps``, parameters and state untouched
everywhere); with ``"raise"`` every rank raises ``FloatingPointError``. Clipping then uses
the norm of the whole gradient, so a sharded run clips as one process would.
"""

from __future__ import annotations

import sys

import torch
from torch import Tensor

AUTO = "auto"


def resolve_process_group(process_group):
    """The process group of a new optimizer (``"auto"``: see the module docstring)."""
    if process_group is None or process_group != AUTO:
        return process_group
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return None
    zero = _building_zero()
    return None if zero is None else zero.process_group


def _building_zero():
    """The ``ZeroRedundancyOptimizer`` whose constructor (or local-optimizer rebuild) is on
    the call stack, else None."""
    module = sys.modules.get("torch.distributed.optim.zero_redundancy_optimizer")
    if module is None:
        return None
    zero = module.ZeroRedundancyOptimizer
    frame = sys._getframe(2)
    for _ in range(32):
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        if isinstance(owner, zero):
            return owner
        frame = frame.f_back
    return None


def _dtensor_type():
    module = sys.modules.get("torch.distributed.tensor")
    return None if module is None else module.DTensor


def _groups_of(opt, params: list[Tensor]) -> tuple:
    """The process groups a param group's gradients are spread over."""
    dtensor = _dtensor_type()
    if dtensor is not None and isinstance(params[0], dtensor):
        mesh, placements = params[0].device_mesh, params[0].placements
        return tuple(
            mesh.get_group(dim)
            for dim, placement in enumerate(placements)
            if placement.is_shard() and mesh.size(dim) > 1
        )
    group = opt.__dict__.get("process_group")
    return () if group is None else (group,)


def _local(t: Tensor) -> Tensor:
    dtensor = _dtensor_type()
    return t.to_local() if dtensor is not None and isinstance(t, dtensor) else t


def _device_for(group) -> torch.device:
    """Where the backend wants the reduced vector (NCCL: the current CUDA device)."""
    backend = torch.distributed.get_backend(group)
    if backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def decide(opt, work: list, need_finite: bool) -> tuple[bool, dict[int, Tensor]] | None:
    """``(every gradient finite, {group index: global gradient norm})`` agreed by all ranks,
    or None when no gradient of this optimizer is spread over several processes (the caller
    then decides locally, as in one process). ``work`` is ``[(index, group, params)]`` of
    the groups with gradients; norms are given for groups with ``max_grad_norm`` set."""
    own = opt.__dict__.get("process_group")
    spans: dict[int, tuple] = {}
    order: list = [] if own is None else [own]
    for index, _, params in work:
        groups = _groups_of(opt, params)
        spans[index] = groups
        for g in groups:
            if not any(g is seen for seen in order):
                order.append(g)
    if not order:
        return None
    n = len(opt.param_groups)
    local = torch.zeros(1 + n, dtype=torch.float64)
    local_grads: list[Tensor] = []
    with torch.no_grad():
        for index, group, params in work:
            grads = [_local(p.grad) for p in params]
            grads = [torch.view_as_real(g) if g.is_complex() else g for g in grads]
            local_grads.extend(grads)
            if group.get("max_grad_norm") is not None:
                nonempty = [g for g in grads if g.numel()]
                if nonempty:
                    norms = torch._foreach_norm(nonempty, 2.0)
                    local[1 + index] = torch.stack([n.double() for n in norms]).square().sum()
        if need_finite and local_grads:
            from .fast import grads_finite

            ok = grads_finite(opt, local_grads)
            if ok is None:
                ok = all(bool(torch.isfinite(g).all()) for g in local_grads)
            local[0] = 0.0 if ok else 1.0
        total = local.clone()
        for pg in order:
            mask = torch.zeros(1 + n, dtype=torch.bool)
            mask[0] = True
            for index, groups in spans.items():
                if any(g is pg for g in groups):
                    mask[1 + index] = True
            buf = torch.where(mask, total, torch.zeros_like(total))
            device = _device_for(pg)
            buf = buf.to(device)
            torch.distributed.all_reduce(buf, op=torch.distributed.ReduceOp.SUM, group=pg)
            total = torch.where(mask, buf.cpu(), total)
    norms = {
        index: total[1 + index].sqrt()
        for index, group, _ in work
        if group.get("max_grad_norm") is not None
    }
    return bool(total[0] == 0), norms


def spread_over(opt, params: list[Tensor]) -> tuple:
    """The process groups over which a param group's values are spread: a DTensor's
    sharded mesh dimensions, else the optimizer's ``process_group`` (empty: none)."""
    return _groups_of(opt, params)


def all_reduce_sum(vec: Tensor, groups: tuple) -> Tensor:
    """``vec`` (a CPU float64 vector of this rank's sums) summed over every rank of each
    process group in ``groups`` in turn (a DTensor sharded along several mesh dimensions is
    reduced along each). Every rank must call it with the same groups in the same order."""
    total = vec.clone()
    for pg in groups:
        buf = total.to(_device_for(pg))
        torch.distributed.all_reduce(buf, op=torch.distributed.ReduceOp.SUM, group=pg)
        total = buf.cpu()
    return total
