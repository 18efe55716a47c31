"""SOAP: Adam in the eigenbasis of Shampoo's preconditioner (Vyas et al. 2024,
https://arxiv.org/abs/2409.11321), as ``pytorch_optimizer.SOAP`` computes it.

For a matrix parameter with gradient G (m × n), each dimension keeps a Shampoo factor and its
eigenbasis (a tensor of more dimensions keeps one per dimension, contracting the others):

    L ← β_s·L + (1 − β_s)·GGᵀ,   R ← β_s·R + (1 − β_s)·GᵀG           (β_s = ``shampoo_beta``)
    Q_L, Q_R: eigenvectors of L, R (``torch.linalg.eigh`` at the first step, then every
              ``precondition_frequency`` steps one power iteration Q ← qr(L·Q) in float32,
              the columns ordered by the estimated eigenvalues diag(QᵀLQ), descending)
    G' = Q_Lᵀ G Q_R                                                  (rotate into the eigenbasis)
    m ← β₁m + (1 − β₁)G           (in the parameter's own basis)
    v ← β₂v + (1 − β₂)G'²         (in the eigenbasis)
    N = Q_L [(Q_Lᵀ m Q_R) / (√v + ε)] Q_Rᵀ                            (Adam's ratio, rotated back)
    u = N · √(1 − β₂ˢ)/(1 − β₁ˢ)     with s = t − 1 (no bias correction if ``correct_bias=False``)

The first step only builds L, R and their eigenbases from the first gradient (u = 0, m and v
stay 0), so the Adam steps count s = t − 1 from the second step on. A dimension larger than
``max_precondition_dim`` (and a vector, unless ``precondition_1d``) keeps the identity basis;
for a vector that is Adam (with m and v from step 2 on).

Where pytorch_optimizer's SOAP keeps ``precondition_frequency`` and ``shampoo_beta`` in each
parameter's state at its first step, descend reads them from the group at every step (the
same numbers unless a group is changed during training).
"""

from __future__ import annotations

import math
from itertools import chain

import torch
from torch import Tensor

from ._sharded import gather, is_sharded, like_local, local_like
from .base import Context, Transform, hp

DATA_FORMATS = ("channels_first", "channels_last")


def merge_small_dims(shape, max_dim: int) -> list[int]:
    """Merge neighbouring dimensions while their product stays ≤ ``max_dim`` (pytorch_optimizer's
    rule: [1, 2, 512, 1, 2048, 1, 3, 4] with 1024 → [1024, 2048, 12]). Where that rule
    merges everything into one dimension it returns [1], which cannot hold the tensor; this
    returns [numel] there (the original SOAP's rule)."""
    merged: list[int] = []
    product = 1
    for dim in shape:
        product *= dim
        if product > max_dim:
            merged.append(product // dim)
            product = dim
    merged.append(product)
    return merged if len(merged) > 1 else [math.prod(shape)]


class scale_by_soap(Transform):  # noqa: N801 - transforms are named like functions
    """SOAP's scaling: Adam's moments in the rotating eigenbasis of Shampoo's factors; see the
    module docstring for the equations.

    Args:
        b1, b2: β₁, β₂ of Adam's moments (default ``betas``).
        eps: ε of √v + ε.
        shampoo_beta: β_s of the factors (default: the group's ``shampoo_beta``, where None
            means β₂).
        precondition_frequency: steps between two updates of the eigenbases.
        max_precondition_dim: dimensions larger than this keep the identity basis.
        precondition_1d: precondition vectors too (one d × d factor).
        merge_dims: merge small dimensions first (see :func:`merge_small_dims`).
        correct_bias: multiply by √(1 − β₂ˢ)/(1 − β₁ˢ).
        normalize_gradient: divide N by its RMS + ε.
        data_format: ``"channels_first"`` or ``"channels_last"`` (4-D tensors, merge_dims).

    State (pytorch_optimizer's keys): ``exp_avg``, ``exp_avg_sq``, ``GG`` (one factor per
    dimension, ``[]`` where none) and ``Q`` (their bases; None until the first step). Records
    ``m``, ``v``, ``denom`` (√v + ε, in the eigenbasis), ``rotated_grad`` (G') and
    ``precond_update`` (N).
    """

    state_keys = ("exp_avg", "exp_avg_sq", "GG", "Q")
    columns = {
        "rotated_grad": ("G′", "the gradient in the eigenbasis, Q_Lᵀ G Q_R (SOAP)"),
        "precond_update": ("N", "Adam's ratio rotated back, Q_L[(Q_Lᵀ m Q_R)/(√v + ε)]Q_Rᵀ (SOAP)"),
    }

    def __init__(
        self,
        b1=hp("betas", 0),
        b2=hp("betas", 1),
        eps=hp("eps"),
        shampoo_beta=hp("shampoo_beta"),
        precondition_frequency=hp("precondition_frequency"),
        max_precondition_dim: int = 10000,
        precondition_1d: bool = False,
        merge_dims: bool = False,
        correct_bias: bool = True,
        normalize_gradient: bool = False,
        data_format: str = "channels_first",
    ):
        if data_format not in DATA_FORMATS:
            raise ValueError(f"data_format={data_format!r} is not one of {', '.join(DATA_FORMATS)}")
        self.b1, self.b2, self.eps = b1, b2, eps
        self.shampoo_beta, self.precondition_frequency = shampoo_beta, precondition_frequency
        self.max_precondition_dim, self.precondition_1d = int(max_precondition_dim), precondition_1d
        self.merge_dims, self.correct_bias = merge_dims, correct_bias
        self.normalize_gradient, self.data_format = normalize_gradient, data_format

    # -- shapes --------------------------------------------------------------------------
    def _permuted(self, x: Tensor) -> Tensor:
        return x.permute(0, 3, 1, 2) if self.data_format == "channels_last" and x.dim() == 4 else x

    def _merged(self, x: Tensor) -> Tensor:
        x = self._permuted(x)
        return x.reshape(merge_small_dims(x.shape, self.max_precondition_dim))

    def init(self, param: Tensor, state: dict) -> None:
        if "exp_avg" in state:
            return
        state["exp_avg"] = torch.zeros_like(param)
        state["exp_avg_sq"] = torch.zeros_like(param)
        factors: list = []
        if param.dim() == 1:
            d = param.numel()
            keep = self.precondition_1d and d <= self.max_precondition_dim
            factors.append(_factor(param, d) if keep else [])
        else:
            shape = self._merged(param).shape if self.merge_dims else param.shape
            for d in shape:
                factors.append(_factor(param, d) if d <= self.max_precondition_dim else [])
        state["GG"] = factors
        state["Q"] = None

    def _project(self, x: Tensor, bases: list, back: bool = False) -> Tensor:
        """Qᵀ·x along every dimension (``back``: Q·x), as pytorch_optimizer's ``project``."""
        shape = x.shape
        permuted = self._permuted(x).shape
        if self.merge_dims:
            x = self._merged(x)
        for q in bases:
            if len(q) > 0:
                x = torch.tensordot(x, q, dims=[[0], [1 if back else 0]])
            else:
                x = x.permute([*range(1, x.dim()), 0])
        if self.merge_dims:
            if self.data_format == "channels_last" and len(shape) == 4:
                return x.reshape(permuted).permute(0, 2, 3, 1)
            return x.reshape(shape)
        return x

    # -- the preconditioner --------------------------------------------------------------
    def _update_factors(self, g: Tensor, state: dict, s: int, beta_s, freq: int) -> None:
        factors = state["GG"]
        if g.dim() == 1:
            if len(factors[0]) > 0:
                outer = g.unsqueeze(1) @ g.unsqueeze(0)
                factors[0].lerp_(outer.to(factors[0].dtype), weight=1.0 - beta_s)
        else:
            x = self._merged(g) if self.merge_dims else g
            for i, factor in enumerate(factors):
                if len(factor) > 0:
                    others = [*chain(range(i), range(i + 1, x.dim()))]
                    outer = torch.tensordot(x, x, dims=[others] * 2)
                    factor.lerp_(outer.to(factor.dtype), weight=1.0 - beta_s)
        if state["Q"] is None:
            state["Q"] = [_eigenbasis(f) for f in factors]
        if s > 0 and s % freq == 0:
            state["Q"] = self._power_iteration(state)

    def _power_iteration(self, state: dict) -> list:
        """One power iteration per factor, Q ← qr(F·Q) with the columns sorted by the
        estimated eigenvalues diag(QᵀFQ), descending; v is permuted to match."""
        v = state["exp_avg_sq"]
        shape, permuted = v.shape, self._permuted(v).shape
        if self.merge_dims:
            v = self._merged(v)
        bases = []
        for i, (factor, q) in enumerate(zip(state["GG"], state["Q"])):
            if len(factor) == 0:
                bases.append([])
                continue
            product = factor @ q
            order = torch.argsort((q * product).sum(dim=0), descending=True)
            v = v.index_select(i, order)
            # in float32 as pytorch_optimizer does (QR lacks bfloat16; its orthogonality matters)
            basis, _ = torch.linalg.qr(product.index_select(1, order).to(torch.float32))
            bases.append(basis.to(product.dtype))
        if self.merge_dims:
            if self.data_format == "channels_last" and len(shape) == 4:
                v = v.reshape(permuted).permute(0, 2, 3, 1)
            else:
                v = v.reshape(shape)
        state["exp_avg_sq"] = v
        return bases

    # -- the step ------------------------------------------------------------------------
    def update(self, updates, states, params, ctx: Context):
        b1, b2, eps = ctx.value(self.b1), ctx.value(self.b2), ctx.value(self.eps)
        beta_s = ctx.value(self.shampoo_beta)
        beta_s = b2 if beta_s is None else beta_s
        freq = int(ctx.value(self.precondition_frequency))
        hyper = (b1, b2, eps, beta_s, freq, ctx.tracing)
        out, m_rec, v_rec, d_rec, r_rec = [], [], [], [], []
        for g, st, t in zip(updates, states, ctx.t):
            if is_sharded(g):
                n, records = self._step_sharded(g, st, int(t), hyper)
            else:
                n, records = self._step(g, st, int(t), hyper)
            out.append(n)
            if ctx.tracing:
                for rec, x in zip((m_rec, v_rec, d_rec, r_rec), records):
                    rec.append(x)
        ctx.record("m", m_rec)
        ctx.record("v", v_rec)
        ctx.record("denom", d_rec)
        ctx.record("rotated_grad", r_rec)
        ctx.record("precond_update", out)
        ctx.owned = True
        return out

    def _step(self, g: Tensor, st: dict, t: int, hyper: tuple) -> tuple[Tensor, tuple]:
        """One parameter's step on whole tensors: the update N and, when tracing, the
        records (m, v, √v + ε, G')."""
        b1, b2, eps, beta_s, freq, tracing = hyper
        if st["Q"] is None:  # the first step: the factors and their eigenbases only
            self._update_factors(g, st, 0, beta_s, freq)
            n = torch.zeros_like(g)
            if not tracing:
                return n, ()
            nan = torch.full_like(g, math.nan)
            return n, (st["exp_avg"].clone(), st["exp_avg_sq"].clone(), nan, nan.clone())
        s = t - 1
        rotated = self._project(g, st["Q"])
        m, v = st["exp_avg"], st["exp_avg_sq"]
        m.lerp_(g, weight=1.0 - b1)
        v.lerp_(rotated.square(), weight=1.0 - b2)
        denom = v.sqrt().add_(eps)
        n = self._project(self._project(m, st["Q"]) / denom, st["Q"], back=True)
        if self.normalize_gradient:
            n.div_(torch.mean(n.square()).sqrt_().add_(eps))
        if self.correct_bias:
            n.mul_(math.sqrt(1.0 - math.pow(b2, s)) / (1.0 - math.pow(b1, s)))
        records = (m.clone(), v.clone(), denom, rotated) if tracing else ()
        self._update_factors(g, st, s, beta_s, freq)
        return n, records

    def _step_sharded(self, g: Tensor, st: dict, t: int, hyper: tuple) -> tuple[Tensor, tuple]:
        """The step of a DTensor parameter (FSDP2): G, m and v gathered in one collective,
        :meth:`_step` on the whole tensors on every rank, and this rank's shards of the new
        m, v and N kept (:mod:`descend.transforms._sharded`). m and v stay sharded like the
        parameter; the factors and bases (``GG``, ``Q``) are whole on every rank, each rank
        computing the same from the same gathered G."""
        m, v = st["exp_avg"], st["exp_avg_sq"]
        if self.normalize_gradient or any(len(f) > 0 for f in st["GG"]):
            full_g, full_m, full_v = gather(g, m, v)
            whole = {**st, "exp_avg": full_m, "exp_avg_sq": full_v}
            n, records = self._step(full_g, whole, t, hyper)
            # the power iteration may have replaced v (permuted); GG is updated in place
            m.to_local().copy_(local_like(whole["exp_avg"], m).to_local())
            v.to_local().copy_(local_like(whole["exp_avg_sq"], v).to_local())
            st["Q"] = whole["Q"]
            return local_like(n, g), tuple(local_like(r, g) for r in records)
        # identity bases only (a vector without precondition_1d, dimensions above
        # max_precondition_dim): Adam, element-wise, on this rank's shard
        v_local = v.to_local()
        local = {**st, "exp_avg": m.to_local(), "exp_avg_sq": v_local}
        n, records = self._step(g.to_local(), local, t, hyper)
        if local["exp_avg_sq"] is not v_local:  # reshaped back by a power iteration
            v_local.copy_(local["exp_avg_sq"])
        st["Q"] = local["Q"]
        return like_local(n, g), tuple(like_local(r, g) for r in records)


class decay_after_update(Transform):  # noqa: N801
    """Decoupled weight decay applied after the step, as pytorch_optimizer's SOAP does:
    θ ← (θ − u)(1 − γλ), i.e. u ← u(1 − γλ) and θ ← θ(1 − γλ) before the optimizer's θ ← θ − u.
    (torch's AdamW decays first: θ(1 − γλ) − u.) With ``skip_first`` a parameter's first step,
    which SOAP spends building its preconditioner, is not decayed either."""

    def __init__(self, weight_decay=hp("weight_decay"), lr=hp("lr"), skip_first: bool = True):
        self.weight_decay, self.lr, self.skip_first = weight_decay, lr, skip_first

    def update(self, updates, states, params, ctx: Context):
        wd = ctx.value(self.weight_decay)
        if wd == 0:
            return updates
        keep = 1 - ctx.value(self.lr) * wd
        idx = [i for i, t in enumerate(ctx.t) if not (self.skip_first and t == 1)]
        if not idx:
            return updates
        updates = ctx.writable(updates)
        if ctx.tracing:
            decay = [torch.zeros_like(p) for p in params]
            for i in idx:
                decay[i] = params[i] * (1 - keep)
            ctx.extras["decay"] = decay
        torch._foreach_mul_([updates[i] for i in idx], keep)
        torch._foreach_mul_([params[i] for i in idx], keep)
        return updates


def _factor(param: Tensor, d: int) -> Tensor:
    """A d × d zero factor in the parameter's dtype and device: a plain tensor, whole on
    every rank, for a DTensor parameter too (see ``_step_sharded``)."""
    if is_sharded(param):
        return torch.zeros(d, d, dtype=param.dtype, device=param.device)
    return param.new_zeros(d, d)


def _eigenbasis(factor) -> Tensor | list:
    """The eigenvectors of a factor, largest eigenvalue first (``[]`` stays ``[]``), with
    pytorch_optimizer's 1e-30·I shift and its float64 retry when eigh fails."""
    if len(factor) == 0:
        return []
    eye = torch.eye(factor.shape[0], device=factor.device, dtype=factor.dtype)
    try:
        _, q = torch.linalg.eigh(factor + 1e-30 * eye)
    except RuntimeError:  # eigh did not converge in the factor's precision
        f64 = factor.to(torch.float64)
        _, q = torch.linalg.eigh(f64 + 1e-30 * torch.eye(f64.shape[0], dtype=torch.float64))
        q = q.to(factor.dtype)
    return torch.flip(q, dims=[1])
