"""The sampled step's buffers: every quantity the monitor reads, laid end to end in one row.

A sampled step costs a few dozen tensor operations whatever the number of parameters, because
nothing is done per parameter in Python except a dictionary lookup:

- one ``torch._foreach_copy_`` writes θ before the step into row ``before`` (in the step's
  pre-hook); the gradient hooks hold the first backward's gradient, which is copied into row
  ``preclip`` (with the later passes added: accumulation); one more ``_foreach_copy_`` after
  the step writes the gradient used, θ after the step, the momentum buffer and the optimizer
  state the effective learning rate needs into their rows;
- the per-coordinate products ‖·‖², m·g, [u·g < 0] and [g ≠ 0] of all rows are written into
  :attr:`Layout.products` by four operations, and their sums per parameter are one segmented
  reduction (:func:`segment_sums`), summed in float64; a group's or the whole model's sums are
  its parameters' sums;
- quantiles read a fixed uniform sample of coordinates (see :class:`Sample`), gathered by one
  index operation, and are selected by ``np.partition`` on the host.

The buffers live on the parameters' device (float32: 5 floats per parameter coordinate, 13 and
one per state tensor read when the torch path runs; held while the monitor is attached and
released by :meth:`Monitor.close`), so on an accelerator only the sums and the samples are
copied to the host, once per sampled step. On the CPU, :mod:`descend.monitor.fused` reads θ,
g, m, the state and the held pre-clip gradients where they are (only θ before the step is
copied, by one native call) and computes the sums and the sample in C++.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

# Rows of Layout.rows, and the rows of Layout.products computed from them.
BEFORE, PRECLIP, GRAD, UPDATE, MOMENTUM = range(5)
ROWS = ("before", "preclip", "grad", "update", "momentum")
# products: the squares of the five rows, then m·g, [u·g < 0], [g ≠ 0]
W2, GP2, G2, U2, M2, MG, OPPOSED, NONZERO = range(8)

SAMPLE = 2048  # coordinates the whole model's (and each group's) quantiles read
LAYER_SAMPLE = 512  # coordinates each layer's median reads
SEED = 0


class Sample:
    """Which coordinates the quantiles read: drawn once per layout with ``numpy``'s
    ``default_rng(SEED)``, uniformly without replacement (all of them where there are no more
    than the sample size, so the quantiles are then exact).

    A quantile q estimated from n entries drawn from a much larger population has a rank error
    of standard deviation √(q(1 − q)/n) (less when the population is not much larger): at
    n = 2,048, 1.1 percentile points for the median (0.66 for p10 and p90), so the reported
    median lies between the true p46.7 and p53.3, p10 between p8.0 and p12.0, in all but 3 in
    1,000 draws (3σ); a layer's median from 512 entries between p43.4 and p56.6. The same
    coordinates are read at every sampled step (a curve follows one fixed set of coordinates
    rather than jumping between draws).

    ``index`` holds, end to end: the whole model's sample, each group's (with several
    groups), each layer's (with ``layers``); ``slices`` says where each is.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        group_spans: Sequence[tuple[int, int]],
        layers: bool,
        device: torch.device,
        sample: int = SAMPLE,
        layer_sample: int = LAYER_SAMPLE,
    ) -> None:
        rng = np.random.default_rng(SEED)
        offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
        parts: list[np.ndarray] = []

        def draw(lo: int, hi: int, k: int) -> slice:
            n = hi - lo
            chosen = np.arange(lo, hi) if n <= k else lo + np.sort(rng.choice(n, k, replace=False))
            start = sum(len(p) for p in parts)
            parts.append(chosen.astype(np.int64))
            return slice(start, start + len(chosen))

        self.whole = draw(0, int(offsets[-1]), sample)
        self.groups: list[slice] = []
        if len(group_spans) > 1:
            for first, end in group_spans:
                self.groups.append(draw(int(offsets[first]), int(offsets[end]), sample))
        self.layers: list[slice] = []
        if layers:
            for j in range(len(lengths)):
                self.layers.append(draw(int(offsets[j]), int(offsets[j + 1]), layer_sample))
        flat = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        self.size = len(flat)
        self.flat_index = flat
        self.index = torch.from_numpy(flat).to(device)
        # each group's entries of the index (its spans of coordinates), for the per-group
        # formula of the effective learning rate
        self.member_rows: list[np.ndarray | None] = []
        self.group_of: np.ndarray | None = None  # each entry's group (the monitor's, made once)
        for first, end in group_spans:
            inside = (flat >= offsets[first]) & (flat < offsets[end])
            self.member_rows.append(None if inside.all() else np.flatnonzero(inside))
        # the layers' samples in one (layers × 2K + 2) array, padded so that the median of
        # every row sits at ranks K, K + 1 (see :func:`padded_medians`)
        self.layer_rows = None
        if self.layers:
            sizes = np.array([s.stop - s.start for s in self.layers])
            k = int(sizes.max()) // 2
            width = 2 * k + 2
            pad = np.empty((len(sizes), width), np.int64)
            low_sentinel, high_sentinel = self.size, self.size + 1
            for row, (s, n) in enumerate(zip(self.layers, sizes)):
                below = k - (n - 1) // 2 if n % 2 else k + 1 - n // 2
                pad[row, :below] = low_sentinel
                pad[row, below : below + n] = np.arange(s.start, s.stop)
                pad[row, below + n :] = high_sentinel
            self.layer_rows = (pad, k, sizes % 2 == 1, sizes)


class Layout:
    """The flat buffers of one list of parameters (see the module docstring): rebuilt when the
    parameters, their shapes, dtypes or devices change (checked at every sampled step)."""

    def __init__(self, params: Sequence[tuple[int, torch.Tensor]], layers: bool) -> None:
        self.params = list(params)
        self.tensors = [p for _, p in self.params]
        self.key = [(p.shape, p.dtype, p.device) for p in self.tensors]
        self.lengths = [p.numel() for p in self.tensors]
        n = sum(self.lengths)
        self.n = n
        self.device = self.tensors[0].device if self.tensors else torch.device("cpu")
        self.cpu = all(p.is_cpu for p in self.tensors)  # matches() then reads is_cpu
        self.rows = torch.zeros(len(ROWS), n, device=self.device)
        self._products: torch.Tensor | None = None  # the torch path's, made on first use
        self.views = [self._views(self.rows[r]) for r in range(len(ROWS))]
        self.before, self.preclip = self.rows[BEFORE], self.rows[PRECLIP]  # the flat rows
        self.position = {id(p): j for j, p in enumerate(self.tensors)}
        self.group_spans: list[tuple[int, int]] = []  # (first, end) parameter per group
        self.group_ids: list[int] = []
        for j, (gi, _) in enumerate(self.params):
            if not self.group_ids or self.group_ids[-1] != gi:
                self.group_ids.append(gi)
                self.group_spans.append((j, j + 1))
            else:
                self.group_spans[-1] = (self.group_spans[-1][0], j + 1)
        self.contiguous_groups = len(set(self.group_ids)) == len(self.group_ids)
        self.layers = layers
        self.extra: dict[str, tuple[torch.Tensor, list[torch.Tensor]]] = {}
        self._sample: Sample | None = None
        self.momentum_zero = True  # the momentum row holds zeros only
        self.tags: list[tuple[str, ...]] | None = None  # the monitor's per-layer tags

    def _views(self, row: torch.Tensor) -> list[torch.Tensor]:
        out, at = [], 0
        for p, n in zip(self.tensors, self.lengths):
            out.append(row[at : at + n].view(p.shape))
            at += n
        return out

    def matches(self, params: Sequence[tuple[int, torch.Tensor]]) -> bool:
        """Whether ``params`` are this layout's, in the same groups, shapes, dtypes and
        devices (checked on the live tensors at every sampled step)."""
        if len(params) != len(self.params):
            return False
        cpu = self.cpu
        for (gi, p), (gj, q), (shape, dtype, device) in zip(params, self.params, self.key):
            if p is not q or gi != gj or p.shape != shape or p.dtype != dtype:
                return False
            if not p.is_cpu if cpu else p.device != device:  # is_cpu: no device object made
                return False
        return True

    def holds(self, groups: Sequence[dict]) -> bool:
        """:meth:`matches` of the trainable parameters of the optimizer's ``groups``, in group
        order (``Monitor._params``), walked where they are: no list of them is made."""
        tensors, params, key, cpu = self.tensors, self.params, self.key, self.cpu
        n, i = len(tensors), 0
        for gi, group in enumerate(groups):
            for p in group["params"]:
                if not p.requires_grad:
                    continue
                if i == n or p is not tensors[i] or params[i][0] != gi:
                    return False
                shape, dtype, device = key[i]
                if p.shape != shape or p.dtype != dtype:
                    return False
                if not p.is_cpu if cpu else p.device != device:
                    return False
                i += 1
        return i == n

    def row(self, name: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """An extra row (optimizer state or a traced intermediate) and its per-parameter
        views, made on first use."""
        found = self.extra.get(name)
        if found is None:
            row = torch.zeros(self.n, device=self.device)
            found = self.extra[name] = (row, self._views(row))
        return found

    @property
    def products(self) -> torch.Tensor:
        if self._products is None:
            self._products = torch.zeros(8, self.n, device=self.device)
        return self._products

    @property
    def sample(self) -> Sample:
        if self._sample is None:
            self._sample = Sample(
                self.lengths, self.group_spans, self.layers, self.device, SAMPLE, LAYER_SAMPLE
            )
        return self._sample


class Values(np.ndarray):
    """A host array of sampled state that the effective-rate formulas, written for tensors
    (:func:`descend.train.metrics._param_eff_lr`), also read: numpy's operators, and a
    tensor's ``sqrt`` method. Each numpy operation costs ~1 µs here against ~4 µs for a torch
    one; on float32 both round each operation the same way (IEEE), so the results are the
    same."""

    def sqrt(self):
        return np.sqrt(self)


def state_rates(group: dict, values: dict, state: dict) -> tuple[Any, Any]:
    """(v̂, effective learning rate) of a group from its optimizer state ``values`` (whole
    tensors, or host arrays of the same entries of each) and scalar ``state`` (step,
    ``mu_product``): v̂ = v/(1 − β₂ᵗ) for Adam's ``exp_avg_sq``, else RMSprop's
    ``square_avg`` or AdaGrad's ``sum``; the rate as
    :func:`descend.train.metrics._param_eff_lr`. Host arrays are computed with numpy (no
    warnings for a division by 0; torch's results where numpy cannot)."""
    host = any(isinstance(v, np.ndarray) for v in values.values())
    if host:
        try:
            with np.errstate(all="ignore"):
                return _rates({k: v.view(Values) for k, v in values.items()}, group, state)
        except (TypeError, AttributeError):  # a formula numpy does not read
            values = {k: torch.from_numpy(np.asarray(v)) for k, v in values.items()}
            v, e = _rates(values, group, state)
            return (None if v is None else v.numpy()), (None if e is None else e.numpy())
    return _rates(values, group, state)


def _rates(values: dict, group: dict, state: dict) -> tuple[Any, Any]:
    from descend.train.metrics import _param_eff_lr

    merged = {**values, **state}
    if "exp_avg_sq" in merged and "betas" in group:
        t = float(merged.get("step", 1))
        v = merged["exp_avg_sq"] / (1 - float(group["betas"][1]) ** t)
    else:
        v = merged.get("square_avg", merged.get("sum"))
    return v, _param_eff_lr(group, merged)


def products(layout: Layout) -> torch.Tensor:
    """Fill :attr:`Layout.products` from the rows (θ before, g before clipping, g, u, m):
    their squares, m·g, [u·g < 0] and [g ≠ 0] per coordinate."""
    rows, out = layout.rows, layout.products
    torch.mul(rows, rows, out=out[:5])
    torch.mul(rows[MOMENTUM], rows[GRAD], out=out[MG])
    torch.mul(rows[UPDATE], rows[GRAD], out=out[OPPOSED])
    torch.lt(out[OPPOSED], 0, out=out[OPPOSED])
    torch.ne(rows[GRAD], 0, out=out[NONZERO])
    return out


def segment_sums(x: torch.Tensor, lengths: Sequence[int]) -> list[list[float]]:
    """Sums over consecutive segments of ``lengths`` columns of the rows of ``x``, accumulated
    in float64: a list per row of one sum per segment. On the CPU one ``np.add.reduceat``;
    elsewhere one ``sum`` per segment on the device, then one copy to the host."""
    if x.device.type == "cpu":
        return reduceat_sums(x, lengths)
    return loop_sums(x, lengths)


def reduceat_sums(x: torch.Tensor, lengths: Sequence[int]) -> list[list[float]]:
    if not lengths:
        return [[] for _ in range(x.shape[0])]
    a = x.numpy()
    starts = np.concatenate([[0], np.cumsum(lengths[:-1], dtype=np.int64)])
    empty = [n == 0 for n in lengths]
    if any(empty):  # reduceat reads one element at an empty segment
        out = np.zeros((a.shape[0], len(lengths)))
        keep = [j for j, e in enumerate(empty) if not e]
        if keep:
            out[:, keep] = np.add.reduceat(a, starts[keep], axis=1, dtype=np.float64)
        return out.tolist()
    return np.add.reduceat(a, starts, axis=1, dtype=np.float64).tolist()


def loop_sums(x: torch.Tensor, lengths: Sequence[int]) -> list[list[float]]:
    if not lengths:
        return [[] for _ in range(x.shape[0])]
    parts = [s.sum(1, dtype=torch.float64) for s in x.split(list(lengths), dim=1)]
    return torch.stack(parts, dim=1).cpu().tolist()


def positions(n: int, qs: Sequence[float]) -> list[tuple[int, int, float]]:
    """(lower rank, upper rank, fraction) of each quantile of ``n`` sorted entries, by linear
    interpolation between order statistics (numpy's and torch's default)."""
    out = []
    for q in qs:
        p = q * (n - 1)
        i = int(math.floor(p))
        out.append((i, min(i + 1, n - 1), p - i))
    return out


def row_quantiles(a: np.ndarray, qs: Sequence[float]) -> list[list[float]]:
    """Quantiles ``qs`` of each row of ``a`` (rows × n) over its finite entries: one
    ``np.partition`` of all rows when every entry is finite, else row by row."""
    if a.shape[1] == 0:
        return [[math.nan] * len(qs) for _ in range(a.shape[0])]
    if not np.isfinite(a).all():
        from descend.monitor.stats import quantiles

        return [quantiles(torch.from_numpy(np.ascontiguousarray(r)), qs) for r in a]
    where = positions(a.shape[1], qs)
    kth = sorted({r for i, j, _ in where for r in (i, j)})
    part = np.partition(a, kth, axis=1)[:, kth].tolist()
    at = {r: c for c, r in enumerate(kth)}
    return [[r[at[i]] + (r[at[j]] - r[at[i]]) * f for i, j, f in where] for r in part]


def padded_medians(values: np.ndarray, layer_rows) -> list[float]:
    """Each layer's median from the layers' samples in ``values`` (see :class:`Sample`): one
    ``np.partition`` of a (layers × 2K + 2) array where a layer of n entries is padded with
    −∞ and +∞ so that its middle entries sit at ranks K (n odd) or K and K + 1 (n even)."""
    pad, k, odd, sizes = layer_rows
    if not np.isfinite(values).all():
        from descend.monitor.stats import quantiles

        out = []
        for row in pad:
            real = row[row < len(values)]
            out.append(quantiles(torch.from_numpy(values[real]), (0.5,))[0])
        return out
    ext = np.concatenate([values, np.array([-np.inf, np.inf], values.dtype)])
    m = np.partition(ext[pad], [k, k + 1], axis=1)
    low, high = m[:, k].astype(np.float64), m[:, k + 1].astype(np.float64)
    return np.where(odd, low, low + (high - low) * 0.5).tolist()
