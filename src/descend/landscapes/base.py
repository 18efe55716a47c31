"""The `Landscape` record: a function on batches of points with its derivatives and metadata.

Every landscape maps a batch of points, a floating tensor of shape (N, d), to values of shape
(N,). Rows never interact, so the gradient of ``f(points).sum()`` with respect to ``points`` is
the batch of per-point gradients, and the Hessian of each point comes from d more backward
passes (one per coordinate, never one per point).

Where a closed form is short (quadratics, Rosenbrock, ...) a landscape carries an analytic
gradient and Hessian; otherwise these fall back to autograd. ``autograd_grad`` and
``autograd_hessian`` always use autograd on the value, so tests can compare the two.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import torch
from torch import Tensor

from descend.landscapes import compiled

PointFn = Callable[[Tensor], Tensor]

CONTOUR_SCALES = ("linear", "log")


class Minimum(NamedTuple):
    """A known local or global minimum: ``location`` (one float per coordinate) and ``value``."""

    location: tuple[float, ...]
    value: float


def check_points(points: Tensor, dim: int, name: str = "points") -> None:
    """Raise ValueError unless ``points`` is a floating tensor of shape (N, dim)."""
    if not isinstance(points, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (N, {dim}), got {type(points)}")
    if not points.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor (float32/float64), got {points.dtype}")
    if points.ndim != 2 or points.shape[1] != dim:
        raise ValueError(f"{name} must have shape (N, {dim}), got {tuple(points.shape)}")


def _leaf(points: Tensor) -> Tensor:
    return points.detach().requires_grad_(True)


def _backward(out: Tensor, x: Tensor, create_graph: bool) -> Tensor:
    """d(out.sum())/dx, with zeros where ``out`` does not depend on ``x`` (constant pieces)."""
    if not out.requires_grad:
        return torch.zeros_like(x)
    (g,) = torch.autograd.grad(
        out.sum(), x, create_graph=create_graph, retain_graph=True, allow_unused=True
    )
    return torch.zeros_like(x) if g is None else g


def autograd_gradient(value: PointFn, points: Tensor) -> Tensor:
    """Per-point gradients of ``value`` by one backward pass through the summed values."""
    with torch.enable_grad():
        x = _leaf(points)
        return _backward(value(x), x, create_graph=False).detach()


def autograd_jacobian(vector_field: PointFn, points: Tensor) -> Tensor:
    """Per-point Jacobians (N, d, d) of a map (N, d) -> (N, d), one backward pass per row i."""
    with torch.enable_grad():
        x = _leaf(points)
        out = vector_field(x)
        rows = [_backward(out[:, i], x, create_graph=False) for i in range(x.shape[1])]
    return torch.stack(rows, dim=1).detach()


def autograd_hessian_of(value: PointFn, points: Tensor) -> Tensor:
    """Per-point Hessians (N, d, d) of ``value``: the Jacobian of its autograd gradient."""
    with torch.enable_grad():
        x = _leaf(points)
        g = _backward(value(x), x, create_graph=True)
        rows = [_backward(g[:, i], x, create_graph=False) for i in range(x.shape[1])]
    return torch.stack(rows, dim=1).detach()


class LabRates(Mapping):
    """Default learning rates on a landscape for every optimizer spec name.

    A landscape measures a few base rates (``sgd``, ``momentum`` — heavy ball, β = 0.9, lr
    outside the buffer, so a step is up to 10× the plain SGD step —, ``adam``, ``adagrad``,
    ``newton``); each spec name's declaration says which base it takes and by what factor
    (``Spec.lab_lr`` in :mod:`descend.optim.registry`: EMA momentum takes the SGD rate since
    its buffer is an average, Nesterov the momentum rate, the RMS-normalised methods the Adam
    rate …). Read from the registry at each lookup, so an optimizer declared after the
    landscape was built has its rate too.
    """

    def __init__(self, **bases: float):
        self.bases = dict(bases)

    def _registry(self):
        from descend.optim.registry import REGISTRY  # the lab reads the optimizers' declarations

        return REGISTRY

    def __getitem__(self, name: str) -> float:
        entry = self._registry().get(name)
        if entry is None:
            raise KeyError(name)
        base, factor = entry.lab_lr
        return self.bases[base] * factor

    def __iter__(self):
        return iter(self._registry())

    def __len__(self) -> int:
        return len(self._registry())

    def __repr__(self) -> str:
        return f"LabRates({', '.join(f'{k}={v:g}' for k, v in self.bases.items())})"

    def __eq__(self, other) -> bool:
        if isinstance(other, LabRates):
            return self.bases == other.bases
        return Mapping.__eq__(self, other)

    __hash__ = None


def optimizer_lrs(
    sgd: float, momentum: float, adam: float, adagrad: float | None = None, newton: float = 1.0
) -> LabRates:
    """Default learning rates for every optimizer spec name (:class:`LabRates`), from the
    landscape's measured ``sgd``, ``momentum`` and ``adam`` rates; Adagrad's steps shrink like
    1/√t, so it gets ten times the Adam rate unless given."""
    return LabRates(
        sgd=sgd,
        momentum=momentum,
        adam=adam,
        adagrad=10 * adam if adagrad is None else adagrad,
        newton=newton,
    )


@dataclass(frozen=True)
class Landscape:
    """A test function on batches of points, with its derivatives and plotting metadata.

    Attributes:
        name: registry name (or ``"expr:<text>"`` for a user expression).
        dim: number of coordinates d.
        value_fn: (N, d) -> (N,) values; must be written with torch ops so autograd works.
        grad_fn: analytic (N, d) -> (N, d) gradient, or None to use autograd.
        hessian_fn: analytic (N, d) -> (N, d, d) Hessian, or None to use autograd.
        value_and_grad_fn: (N, d) -> ((N,), (N, d)) computing both in one pass where they
            share subexpressions (the lab calls it every step); None: value_fn then grad_fn.
        domain: plotting box, one (lo, hi) per coordinate.
        minima: known minima (global and, where listed, local), lowest value first.
        starts: suggested start points inside the domain.
        contour: ``"linear"`` or ``"log"``; log means plot log(f − f_min + δ).
        description: one paragraph for people.
        formula: the formula in plain text.
        default_lrs: optimizer name -> a learning rate that makes progress from ``starts``.
        params: the parameters this instance was built with, in a form that rebuilds it:
            ``get(name, **params)``.
        kernel: (name, constants) of a compiled twin of ``value_fn``/``grad_fn`` in
            ``descend/native/landscapes.h``, used for CPU float points outside autograd
            (:mod:`descend.landscapes.compiled`); None: the torch functions only.
    """

    name: str
    dim: int
    value_fn: PointFn
    domain: tuple[tuple[float, float], ...]
    grad_fn: PointFn | None = None
    hessian_fn: PointFn | None = None
    value_and_grad_fn: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None
    minima: tuple[Minimum, ...] = ()
    starts: tuple[tuple[float, ...], ...] = ()
    contour: str = "linear"
    description: str = ""
    formula: str = ""
    default_lrs: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, float] = field(default_factory=dict)
    kernel: tuple[str, tuple[float, ...]] | None = None

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ValueError(f"dim must be >= 1, got {self.dim}")
        if len(self.domain) != self.dim:
            raise ValueError(f"domain needs {self.dim} (lo, hi) pairs, got {len(self.domain)}")
        for i, (lo, hi) in enumerate(self.domain):
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(f"domain[{i}] must be finite with lo < hi, got ({lo}, {hi})")
        if self.contour not in CONTOUR_SCALES:
            raise ValueError(f"contour must be one of {CONTOUR_SCALES}, got {self.contour!r}")
        for point in [m.location for m in self.minima] + list(self.starts):
            if len(point) != self.dim:
                raise ValueError(f"point {point} has {len(point)} coordinates, expected {self.dim}")

    # -- evaluation ---------------------------------------------------------------------------
    def f(self, points: Tensor) -> Tensor:
        """Values, shape (N,), same dtype as ``points``."""
        check_points(points, self.dim)
        out = compiled.evaluate(self.kernel, points, want_g=False)
        if out is not None:
            return out[0]
        return self.value_fn(points)

    def grad(self, points: Tensor) -> Tensor:
        """Gradients, shape (N, d): analytic where available, else autograd."""
        check_points(points, self.dim)
        out = compiled.evaluate(self.kernel, points, want_f=False)
        if out is not None:
            return out[1]
        if self.grad_fn is not None:
            return self.grad_fn(points)
        return autograd_gradient(self.value_fn, points)

    def value_and_grad(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Values (N,) and gradients (N, d) in one pass: the landscape's fused form, else
        value_fn and grad_fn, else one autograd forward and backward."""
        check_points(points, self.dim)
        out = compiled.evaluate(self.kernel, points)
        if out is not None:
            return out
        if self.value_and_grad_fn is not None:
            return self.value_and_grad_fn(points)
        if self.grad_fn is not None:
            return self.value_fn(points), self.grad_fn(points)
        with torch.enable_grad():
            x = _leaf(points)
            out = self.value_fn(x)
            g = _backward(out, x, create_graph=False)
        return out.detach(), g.detach()

    def hessian(self, points: Tensor) -> Tensor:
        """Hessians, shape (N, d, d): analytic, else the Jacobian of the gradient."""
        check_points(points, self.dim)
        if self.hessian_fn is not None:
            return self.hessian_fn(points)
        if self.grad_fn is not None:
            return autograd_jacobian(self.grad_fn, points)
        return autograd_hessian_of(self.value_fn, points)

    def autograd_grad(self, points: Tensor) -> Tensor:
        """Gradients by autograd on ``value_fn``, ignoring any analytic form (for checks)."""
        check_points(points, self.dim)
        return autograd_gradient(self.value_fn, points)

    def autograd_hessian(self, points: Tensor) -> Tensor:
        """Hessians by double autograd on ``value_fn``, ignoring any analytic form."""
        check_points(points, self.dim)
        return autograd_hessian_of(self.value_fn, points)

    # -- metadata -----------------------------------------------------------------------------
    @property
    def f_min(self) -> float | None:
        """Lowest known value, or None when none is known (unbounded or user function)."""
        return min((m.value for m in self.minima), default=None)

    @property
    def global_minima(self) -> tuple[Minimum, ...]:
        """The minima whose value equals ``f_min`` (up to 1e-9 relative)."""
        if self.f_min is None:
            return ()
        tol = 1e-9 * (1.0 + abs(self.f_min))
        return tuple(m for m in self.minima if m.value <= self.f_min + tol)

    def points_tensor(
        self, points: Sequence[Sequence[float]], dtype: torch.dtype = torch.float64
    ) -> Tensor:
        """A list of points (e.g. ``starts``) as an (N, d) tensor."""
        return torch.tensor([list(p) for p in points], dtype=dtype).reshape(-1, self.dim)


def refine_minima(
    landscape: Landscape, guesses: Sequence[Sequence[float]], steps: int = 60
) -> tuple[Minimum, ...]:
    """Polish approximate minima by Newton's method in float64 and keep the true ones.

    x ← x − H(x)⁻¹ ∇f(x), all guesses at once. A guess is kept when it ends with
    ‖∇f‖ < 1e-9 and a positive semi-definite Hessian (so a guess that slid to a saddle is
    dropped); duplicates within 1e-6 are merged. Sorted by value, lowest first.
    """
    x = landscape.points_tensor(guesses)
    for _ in range(steps):
        g = landscape.grad(x)
        h = landscape.hessian(x)
        step = torch.linalg.lstsq(h, g.unsqueeze(-1)).solution.squeeze(-1)
        x = torch.where(g.norm(dim=1, keepdim=True) > 0, x - step, x)
    g_norm = landscape.grad(x).norm(dim=1)
    lowest_eig = torch.linalg.eigvalsh(landscape.hessian(x))[:, 0]
    values = landscape.f(x)
    found: list[Minimum] = []
    for i in range(x.shape[0]):
        if not (g_norm[i] < 1e-9 and lowest_eig[i] >= -1e-9):
            continue
        location = tuple(float(v) for v in x[i])
        if any(math.dist(location, m.location) < 1e-6 for m in found):
            continue
        found.append(Minimum(location, float(values[i])))
    return tuple(sorted(found, key=lambda m: m.value))


def with_refined_minima(landscape: Landscape, guesses: Sequence[Sequence[float]]) -> Landscape:
    """A copy of ``landscape`` whose ``minima`` are the Newton-polished ``guesses``."""
    return replace(landscape, minima=refine_minima(landscape, guesses))


def nearest_minimum(landscape: Landscape, points: Tensor) -> tuple[Tensor, Tensor]:
    """Index into ``landscape.minima`` of the closest minimum to each point, and the distance.

    Euclidean distance; ties go to the lower index (the lower value, since minima are sorted).
    Vectorised: one (N, M) distance matrix, so chunk very large batches yourself if M is big.
    Returns ``(index, distance)`` of shapes (N,) (int64) and (N,) (dtype of ``points``).
    """
    check_points(points, landscape.dim)
    if not landscape.minima:
        raise ValueError(f"landscape {landscape.name!r} lists no minima to compare against")
    centres = landscape.points_tensor([m.location for m in landscape.minima], dtype=points.dtype)
    # Exact differences, not the |a|² − 2a·b + |b|² shortcut that loses digits near a minimum.
    distances = torch.cdist(
        points, centres.to(points.device), compute_mode="donot_use_mm_for_euclid_dist"
    )
    distance, index = distances.min(dim=1)
    return index, distance
