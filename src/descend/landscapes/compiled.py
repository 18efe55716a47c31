"""Compiled values and gradients of the landscapes that have them (``Landscape.kernel``).

The torch functions of a landscape stay its definition — autograd, Hessians, any device or
dtype. For float32/float64 points on the CPU outside autograd, :func:`evaluate` computes f
and/or ∇f in one pass of ``descend/native/landscapes.h`` instead: the same operations in the
same order (agreement to rounding, tested), without the torch form's strided column views
and temporaries (Rosenbrock at 100,000 points: ~30 µs instead of ~330 µs on one core).
``DESCEND_FAST=0`` or a missing compiler leaves the torch form in use.

The closed-form landscapes have one (Rosenbrock, bowl, ravine, Booth, Himmelblau, Beale,
six-hump camel, Goldstein–Price, the saddles, and the 1-D quadratic, double well and
quartic); those that need cos, sin or exp (Rastrigin, Ackley, plateau, two dips) do not: gcc
does not vectorise those functions with the kernels' flags.
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from descend import native
from descend.native.abi import DTYPES, LANDSCAPES, LabArgs


def lab_args(kernel: tuple[str, tuple[float, ...]], points: Tensor) -> LabArgs:
    """The landscape part of a kernel call: id, dimension, constants and the points."""
    name, consts = kernel
    args = LabArgs(rows=points.shape[0], dim=points.shape[1], dtype=DTYPES[points.dtype])
    args.function = LANDSCAPES[name]
    for i, c in enumerate(consts):
        args.consts[i] = float(c)
    args.theta = points.data_ptr()
    return args


def usable(kernel, points: Tensor) -> bool:
    """Whether the compiled form can evaluate ``points`` (checked (N, d) already)."""
    return (
        kernel is not None
        and points.dtype in DTYPES
        and points.is_cpu
        and not (points.requires_grad and torch.is_grad_enabled())
        and native.ready()
    )


def evaluate(
    kernel, points: Tensor, want_f: bool = True, want_g: bool = True
) -> tuple[Tensor | None, Tensor | None] | None:
    """(f (N,), ∇f (N, d)) — each None when not wanted — or None when the compiled form
    cannot serve (see :func:`usable`)."""
    if not usable(kernel, points):
        return None
    p = points.detach().contiguous()
    f = torch.empty(p.shape[0], dtype=p.dtype) if want_f else None
    g = torch.empty_like(p) if want_g else None
    args = lab_args(kernel, p)
    args.f = None if f is None else f.data_ptr()
    args.grad = None if g is None else g.data_ptr()
    if native.load().descend_landscape(ctypes.byref(args)) != 0:
        return None  # a dimension the kernel does not have: the torch form decides
    return f, g
