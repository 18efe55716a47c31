"""Mini-batch gradient noise that depends only on (seed, step): the DeepOBS noisy-landscape model.

Model (DeepOBS, Schneider et al. 2019, generalised to d dimensions): each sample b of a
mini-batch has loss f(p) + p·ξ_b with ξ_b ~ N(0, σ²I). Averaging B samples gives

    loss_B(p) = f(p) + p·ξ̄,   ∇loss_B(p) = ∇f(p) + ξ̄,   ξ̄ ~ N(0, σ²I/B),

so the gradient noise has mean 0 and standard deviation σ/√B per coordinate. We draw ξ̄
directly as σ/√B · z with z standard normal.

Reproducibility: z for run i at step t is a pure function of (seedᵢ, t, coordinate), computed
by the counter-based generator Philox4x32-10 (Salmon et al., SC 2011) written with int64 tensor
operations: key = the 64 bits of the seed, counter = (t low 32 bits, t high 32 bits, block of
four coordinates, stream). No generator state is shared between runs, so a run follows the same
trajectory alone or inside a batch of 100,000, in float32 or float64 (z is made in float64 and
rounded), and for every batch size B (the same z, scaled).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from descend.landscapes.base import Landscape, check_points

MASK32 = 0xFFFFFFFF
PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85
TWO_POW_M32 = 2.0**-32
# torch parallelises an elementwise op only from 32,768 elements (its grain size) upwards.
SERIAL_ELEMENTS = 32_767

Words = tuple[Tensor, Tensor, Tensor, Tensor]


def _mulhilo(a: int, b: Tensor) -> tuple[Tensor, Tensor]:
    """High and low 32-bit words of the 64-bit product a·b (a, b < 2³²) without int64 overflow.

    Split b = b_hi·2¹⁶ + b_lo: X = a·b_lo and Y = a·b_hi are < 2⁴⁸, P = Y·2¹⁶ + X, so
    hi = ⌊(Y + ⌊X/2¹⁶⌋)/2¹⁶⌋ and lo = ((Y mod 2¹⁶)·2¹⁶ + X) mod 2³².
    """
    x = a * (b & 0xFFFF)
    y = a * (b >> 16)
    hi = (y + (x >> 16)) >> 16
    lo = (((y & 0xFFFF) << 16) + x) & MASK32
    return hi, lo


def philox4x32(counter: Sequence[Tensor], key: Sequence[Tensor], rounds: int = 10) -> Words:
    """Philox4x32 block function: four 32-bit counter words and two key words -> four words.

    All words are int64 tensors holding values in [0, 2³²), broadcast against each other.
    Each round: (hi₀, lo₀) = M₀·c₀, (hi₁, lo₁) = M₁·c₂,
    c ← (hi₁ ⊕ c₁ ⊕ k₀, lo₁, hi₀ ⊕ c₃ ⊕ k₁, lo₀); the key is bumped by the Weyl constants
    (W₀, W₁) between rounds. Matches Random123's known-answer vectors for 10 rounds.
    """
    c0, c1, c2, c3 = (torch.as_tensor(c, dtype=torch.int64) for c in counter)
    k0, k1 = (torch.as_tensor(k, dtype=torch.int64) for k in key)
    for r in range(rounds):
        if r > 0:
            k0 = (k0 + PHILOX_W0) & MASK32
            k1 = (k1 + PHILOX_W1) & MASK32
        hi0, lo0 = _mulhilo(PHILOX_M0, c0)
        hi1, lo1 = _mulhilo(PHILOX_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def _as_int64(name: str, value: int | Sequence[int] | Tensor) -> Tensor:
    tensor = torch.as_tensor(value)
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise ValueError(f"{name} must hold integers, got dtype {tensor.dtype}")
    return tensor.to(torch.int64)


def standard_normal(
    seeds: int | Sequence[int] | Tensor,
    step: int | Tensor,
    dim: int,
    stream: int = 0,
) -> Tensor:
    """Standard normal draws z of shape (N, dim), float64, a pure function of (seedᵢ, step).

    ``seeds``: N integer seeds (any int64; all 64 bits are used). ``step``: a non-negative
    integer shared by all runs, or one per run (shape (N,)). ``stream`` (0 … 2³²−1) separates
    independent uses of the same (seed, step). Each Philox block gives four uniform words,
    turned into four normals by the Box–Muller transform
    z = √(−2 ln u₁)·(cos 2πu₂, sin 2πu₂) with u₁ = (w + ½)/2³² ∈ (0, 1), u₂ = w′/2³².
    """
    seeds = _as_int64("seeds", seeds).reshape(-1)
    steps = _as_int64("step", step)
    if steps.ndim > 1 or (steps.ndim == 1 and steps.shape[0] != seeds.shape[0]):
        raise ValueError(
            f"step must be an integer or have shape ({seeds.shape[0]},), got {tuple(steps.shape)}"
        )
    if bool((steps < 0).any()):
        raise ValueError(f"step must be >= 0, got {steps.min().item()}")
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if not 0 <= stream <= MASK32:
        raise ValueError(f"stream must be in [0, 2**32 - 1], got {stream}")
    steps = steps.reshape(-1, 1).expand(seeds.shape[0], 1)
    blocks = (dim + 3) // 4
    # Work in row chunks whose largest tensor (n × 4·blocks) stays below the grain size, so
    # torch runs each of the ~300 small ops on one thread: OpenMP regions that short can each
    # stall for milliseconds on a busy machine. Rows are independent: chunking changes no value.
    rows = max(1, SERIAL_ELEMENTS // (4 * blocks))
    parts = [
        _normals(seeds[i : i + rows], steps[i : i + rows], dim, stream)
        for i in range(0, seeds.shape[0], rows)
    ]
    return torch.cat(parts) if parts else torch.zeros((0, dim), dtype=torch.float64)


def _box_muller(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    radius = torch.sqrt(-2.0 * torch.log((a.double() + 0.5) * TWO_POW_M32))
    angle = (2.0 * math.pi * TWO_POW_M32) * b.double()
    return radius * torch.cos(angle), radius * torch.sin(angle)


def _normals(seeds: Tensor, steps: Tensor, dim: int, stream: int) -> Tensor:
    """standard_normal for one chunk: seeds (n,), steps (n, 1)."""
    n = seeds.shape[0]
    blocks = torch.arange((dim + 3) // 4, dtype=torch.int64).unsqueeze(0)
    key = (seeds.unsqueeze(1) & MASK32, (seeds.unsqueeze(1) >> 32) & MASK32)
    counter = (steps & MASK32, (steps >> 32) & MASK32, blocks, torch.tensor(stream))
    w0, w1, w2, w3 = (w.expand(n, blocks.shape[1]) for w in philox4x32(counter, key))
    # Word pairs in coordinate order (w0, w1), (w2, w3) of block 0, then block 1, ...; only the
    # ceil(d/2) pairs that are needed go through the transform.
    pairs = (dim + 1) // 2
    first = torch.stack((w0, w2), dim=-1).reshape(n, -1)[:, :pairs]
    second = torch.stack((w1, w3), dim=-1).reshape(n, -1)[:, :pairs]
    z = torch.stack(_box_muller(first, second), dim=-1)  # (n, pairs, 2)
    return z.reshape(n, -1)[:, :dim]


class Noisy:
    """A landscape seen through mini-batches of size B: ∇f + ξ̄ with ξ̄ ~ N(0, σ²I/B).

    ``batch_size`` B ≥ 1; ``scale`` σ ≥ 0 is the per-sample noise (DeepOBS uses 1); ``stream``
    picks an independent noise stream. Methods take the current ``step`` and one seed per run
    (``seeds`` of shape (N,) for points of shape (N, d)).
    """

    def __init__(
        self, landscape: Landscape, batch_size: int, scale: float = 1.0, stream: int = 0
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        scale = float(scale)
        if not (math.isfinite(scale) and scale >= 0):
            raise ValueError(f"scale must be a finite number >= 0, got {scale}")
        self.landscape = landscape
        self.batch_size = batch_size
        self.scale = scale
        self.stream = stream

    @property
    def noise_std(self) -> float:
        """σ/√B: the standard deviation of each gradient coordinate's noise."""
        return self.scale / math.sqrt(self.batch_size)

    def noise(
        self, points: Tensor, step: int | Tensor, seeds: int | Sequence[int] | Tensor
    ) -> Tensor:
        """ξ̄ for each run, shape (N, d), in the dtype and device of ``points``."""
        check_points(points, self.landscape.dim)
        seeds = _as_int64("seeds", seeds).reshape(-1)
        if seeds.shape[0] != points.shape[0]:
            raise ValueError(
                f"seeds must have one entry per point ({points.shape[0]}), got {seeds.shape[0]}"
            )
        z = standard_normal(seeds, step, self.landscape.dim, self.stream)
        return (self.noise_std * z).to(dtype=points.dtype, device=points.device)

    def f(self, points: Tensor, step: int | Tensor, seeds: int | Sequence[int] | Tensor) -> Tensor:
        """Mini-batch loss f(p) + p·ξ̄, shape (N,)."""
        return self.landscape.f(points) + (points * self.noise(points, step, seeds)).sum(dim=1)

    def grad(
        self, points: Tensor, step: int | Tensor, seeds: int | Sequence[int] | Tensor
    ) -> Tensor:
        """Mini-batch gradient ∇f(p) + ξ̄, shape (N, d)."""
        return self.landscape.grad(points) + self.noise(points, step, seeds)

    def value_and_grad(
        self, points: Tensor, step: int | Tensor, seeds: int | Sequence[int] | Tensor
    ) -> tuple[Tensor, Tensor]:
        """Both of the above from one noise draw."""
        xi = self.noise(points, step, seeds)
        value, grad = self.landscape.value_and_grad(points)
        return value + (points * xi).sum(dim=1), grad + xi


def noisy_grad(
    landscape: Landscape,
    points: Tensor,
    step: int | Tensor,
    seeds: int | Sequence[int] | Tensor,
    batch_size: int,
    scale: float = 1.0,
) -> Tensor:
    """∇f(points) + ξ̄ with ξ̄ ~ N(0, scale²/batch_size), reproducible per (seed, step)."""
    return Noisy(landscape, batch_size, scale).grad(points, step, seeds)
