"""The arithmetic of the monitor: per-parameter sums in one pass, their combinations per group
and overall, quantiles from a strided sample, and the gradient noise scale.

Every quantity is built from sums over coordinates, so a group's or the whole model's value is
the sum of its parameters' sums, never an average of ratios:

    ‖u‖², ‖θ‖², ‖g‖², m·g, ‖m‖², #(u·g < 0), #(g ≠ 0), #non-finite(g)

with u = θ_before − θ_after the update of the step (θ ← θ − u), g the gradient the optimizer
used (after any clipping) and m its momentum buffer after the step. From them:

    update_ratio  = ‖u‖ / ‖θ‖                (‖θ‖ before the step)
    momentum_cos  = m·g / (‖m‖ ‖g‖)
    opposed_frac  = #(u·g < 0) / #(g ≠ 0)    coordinates moved uphill by the step
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch

# Row order of the per-parameter sums (see :func:`param_sums`).
SUMS = ("u2", "w2", "g2", "mg", "m2", "opposed", "nonzero", "nonfinite")

QUANTILES = (0.1, 0.5, 0.9)
QUANTILE_SAMPLE = 16384
LAYER_SAMPLE = 1024
SORT_BELOW = 8192  # quantiles sort up to this many entries, else select


def flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """One float32 vector of all entries (a copy)."""
    if not tensors:
        return torch.zeros(0)
    return torch.cat([t.detach().reshape(-1).float() for t in tensors])


def param_sums(
    before: torch.Tensor,
    after: torch.Tensor,
    grad: torch.Tensor,
    momentum: torch.Tensor | None,
    lengths: Sequence[int],
    spans: Sequence[tuple[int, int]] = (),
) -> tuple[list[list[float]], list[list[float]]]:
    """The sums of :data:`SUMS`: per parameter (``lengths``) the three squared norms ‖u‖²,
    ‖θ‖², ‖g‖² (the rest 0), and in full for each span of consecutive parameters
    ``(first, end)`` in ``spans`` (the whole model, a param group), whose squared norms are
    its parameters' and whose m·g, ‖m‖² and counts come from its coordinates at once.

    ``before``, ``after``, ``grad`` and ``momentum`` are the parameters' flat float32 vectors
    (see :func:`flat`) laid end to end in the order of ``lengths``. Squared norms and dot
    products are BLAS dots (float32 with several partial sums: a relative error of a few
    1e-7 for the sizes met here) on views from one ``split`` per vector; a span costs a
    handful of operations, however many parameters it holds.
    """
    u = before - after
    finite = bool(torch.isfinite(grad).all())
    g = grad if finite else torch.where(torch.isfinite(grad), grad, torch.zeros(()))
    us, bs, gs = u.split(lengths), before.split(lengths), g.split(lengths)
    dots = []
    for uj, bj, gj in zip(us, bs, gs):
        dots += [torch.dot(uj, uj), torch.dot(bj, bj), torch.dot(gj, gj)]
    offsets = [0, *itertools.accumulate(lengths)]
    whole = len(before)
    extra = []
    for first, end in spans:
        lo, hi = offsets[first], offsets[end]
        cut = (lambda t: t) if (lo, hi) == (0, whole) else (lambda t, lo=lo, hi=hi: t[lo:hi])
        us_, gs_ = cut(u), cut(g)
        if momentum is not None:
            ms_ = cut(momentum)
            extra += [torch.dot(ms_, gs_), torch.dot(ms_, ms_)]
        else:
            extra += [torch.zeros(()), torch.zeros(())]
        extra += [(us_ * gs_ < 0).count_nonzero(), gs_.count_nonzero()]
        bad = torch.zeros(()) if finite else (~torch.isfinite(cut(grad))).count_nonzero()
        extra.append(bad)
    d = torch.stack(dots).double().reshape(len(lengths), 3).tolist()
    rows = [dj + [0.0] * 5 for dj in d]
    if not spans:
        return rows, []
    e = torch.stack([x.double() for x in extra]).reshape(len(spans), 5).tolist()
    totals = []
    for (first, end), ej in zip(spans, e):
        norms = [sum(col) for col in zip(*d[first:end])] if end > first else [0.0] * 3
        totals.append(norms + ej)
    return rows, totals


def combine(rows: Sequence[Sequence[float]]) -> dict[str, float]:
    """Add parameters' sums and turn them into the monitor's ratios."""
    total = [sum(col) for col in zip(*rows)] if rows else [0.0] * len(SUMS)
    s = dict(zip(SUMS, total))
    out = {
        "grad_norm": math.sqrt(s["g2"]),
        "update_norm": math.sqrt(s["u2"]),
        "weight_norm": math.sqrt(s["w2"]),
        "update_ratio": _ratio(math.sqrt(s["u2"]), math.sqrt(s["w2"])),
        "opposed_frac": _ratio(s["opposed"], s["nonzero"]),
        "nonfinite": float(s["nonfinite"] > 0),
    }
    if s["m2"] > 0:
        out["momentum_cos"] = _ratio(s["mg"], math.sqrt(s["m2"] * s["g2"]))
    return out


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


_GEN = torch.Generator().manual_seed(0)


def sample(x: torch.Tensor, n: int = QUANTILE_SAMPLE) -> torch.Tensor:
    """All entries up to ``n`` (quantiles are then exact), else ``n`` drawn uniformly with
    replacement from a fixed-seed generator (a quantile's rank error is about 0.5/√n: 0.2
    percentile points at 16,384). Not strided: weights are laid out in rows, and every k-th
    entry of a matrix is a biased sample of it."""
    x = x.reshape(-1)
    if x.numel() <= n:
        return x
    return x[torch.randint(0, x.numel(), (n,), generator=_GEN)]


def quantiles(x: torch.Tensor, qs: Sequence[float] = QUANTILES) -> list[float]:
    """Quantiles of the finite entries of a (sampled) vector; NaN when there are none."""
    import numpy as np

    a = x.detach().numpy()
    if a.size <= SORT_BELOW:
        # Small vectors (every per-layer sample, and the whole of a small model): one sort,
        # which at these sizes costs less than a selection of several ranks (measured in the
        # training loop: 6 µs against 17 µs for 10 entries, 110 against 156 µs for 7,510).
        # Non-finite entries sort to the ends (NaN last), so the finite ones are one slice.
        a = np.sort(a)
        if a.size and not (np.isfinite(a[0]) and np.isfinite(a[-1])):
            a = a[np.searchsorted(a, -np.inf, "right") : np.searchsorted(a, np.inf, "left")]
        return _interpolate(a, qs)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return [math.nan] * len(qs)
    # Linear interpolation between order statistics (numpy's and torch's default), with one
    # introselect (np.partition, O(n)) for all of them: torch.quantile sorts, and np.quantile
    # spends more time in Python than in selecting at these sizes.
    pos = [q * (a.size - 1) for q in qs]
    lo = [int(math.floor(p)) for p in pos]
    hi = [min(i + 1, a.size - 1) for i in lo]
    return _interpolate(np.partition(a, sorted(set(lo + hi))), qs)


def _interpolate(a, qs: Sequence[float]) -> list[float]:
    """Quantiles ``qs`` by linear interpolation between the order statistics of ``a``, whose
    entries at the needed ranks are in sorted position."""
    if a.size == 0:
        return [math.nan] * len(qs)
    out = []
    for q in qs:
        p = q * (a.size - 1)
        i = int(math.floor(p))
        j = min(i + 1, a.size - 1)
        out.append(float(a[i]) + (float(a[j]) - float(a[i])) * (p - i))
    return out


def noise_scale_parts(
    sq_norms: Sequence[float], sum_sq_norm: float, k: int
) -> tuple[float, float] | None:
    """Unbiased estimates of |G|² and tr(Σ)/B_small from ``k`` ≥ 2 micro-batch gradients.

    McCandlish et al. 2018 ("An Empirical Model of Large-Batch Training", appendix A.1), with
    B_big = k·B_small, |G_small|² the mean of the micro-batch squared norms ‖gᵢ‖² and
    |G_big|² = ‖Σgᵢ/k‖²:

        |G|² ≈ (k|G_big|² − |G_small|²) / (k − 1)
        S/B_small ≈ k(|G_small|² − |G_big|²) / (k − 1)

    so that B_simple = tr(Σ)/|G|² = B_small · (S/B_small) / |G|². Both are returned in the
    units of the gradients seen (a constant factor such as a loss divided by k cancels in
    B_simple). ``None`` when k < 2.
    """
    if k < 2:
        return None
    small = sum(sq_norms) / k
    big = sum_sq_norm / (k * k)
    g2 = (k * big - small) / (k - 1)
    trace = k * (small - big) / (k - 1)
    return g2, trace
