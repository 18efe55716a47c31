"""Muon: momentum orthogonalised by a Newton–Schulz iteration (Jordan et al. 2024,
https://kellerjordan.github.io/posts/muon/), and the shape-dependent scale of its update.

For a matrix parameter W (m × n) with gradient G:

    B ← μB + (1 − μ)G                      (torch, Keller Jordan's code: ``momentum_form="ema"``)
    B ← μB + G                             (Keras: ``momentum_form="modern"``)
    M = (1 − μ)G + μB  (Nesterov, ema)  |  G + μB  (Nesterov, modern)  |  B
    optax also divides B and G by their bias corrections (``debias=True``):
    M = μ·B/(1 − μᵗ⁺¹) + (1 − μ)·G/(1 − μᵗ), or B/(1 − μᵗ) without Nesterov
    O = NS⁽ᵃ'ᵇ'ᶜ⁾ₖ(M)                       (k quintic Newton–Schulz steps, below)
    u = γ·s(m, n)·O                        (θ ← θ − u; decoupled decay θ ← θ(1 − γλ) first)

The Newton–Schulz iteration replaces M = USVᵀ by ≈ US'Vᵀ with S' ≈ I (the singular values land
in roughly [0.7, 1.2] with the default coefficients; the iteration trades exactness for speed):
X₀ = M/max(‖M‖_F, ε) (torch: ``eps_mode="clamp"``) or M/(‖M‖_F + ε) (optax: ``"add"``;
Keras: ``"add_float32"``: Keras 3's ``ops.norm`` casts a float64 matrix to float32 and takes
the norm there, a ~1e-8 relative change of X₀ that the iteration carries into O), working
on Mᵀ when m > n so that A is the smaller Gram matrix, then

    A = XXᵀ,  X ← aX + (bA + cA²)X          k times.

Where the iteration runs: torch.optim.Muon and Keller Jordan's code cast M to bfloat16
(``ns_dtype="bfloat16"``); optax and Keras iterate in the parameter's dtype (``"param"``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._sharded import on_whole
from .base import Context, Transform, hp

MOMENTUM_FORMS_MUON = ("ema", "modern")
EPS_MODES = ("clamp", "add", "add_float32")
NS_DTYPES = ("bfloat16", "float32", "float64", "param")
ADJUST_LR_FNS = (None, "original", "match_rms_adamw", "none")
LAYOUTS = ("out_in", "in_out")


def newton_schulz(
    m: Tensor,
    coefficients=(3.4445, -4.7750, 2.0315),
    steps: int = 5,
    eps: float = 1e-7,
    eps_mode: str = "clamp",
    dtype: str = "bfloat16",
    owned: bool = False,
) -> Tensor:
    """The quintic Newton–Schulz orthogonalisation of a matrix M as torch.optim.Muon computes
    it: X₀ = M/max(‖M‖_F, ε) (``eps_mode="clamp"``) or M/(‖M‖_F + ε) (``"add"``; with
    ``"add_float32"`` the divisor is rounded to float32, as Keras 3 computes it), on Mᵀ when
    M has more rows than columns, then ``steps`` times A = XXᵀ, X ← aX + (bA + cA²)X, written
    as torch's two ``addmm`` calls. Returns a new tensor in ``dtype`` ("bfloat16", "float32",
    "float64", or "param": M's own dtype); with ``owned`` an M already in that dtype is
    normalised in place instead of copied."""
    a, b, c = (float(x) for x in coefficients)
    x = m if owned and m.dtype == ns_dtype_of(m, dtype) else m.to(ns_dtype_of(m, dtype), copy=True)
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    if eps_mode == "clamp":
        x.div_(x.norm().clamp(min=eps))
    elif eps_mode == "add":
        x.div_(x.norm() + eps)
    else:  # Keras 3's ops.norm casts a float64 matrix to float32 and takes its norm there
        x.div_(x.to(torch.float32).norm() + eps)
    for _ in range(steps):
        gram = x @ x.T
        update = torch.addmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.addmm(x, update, x, beta=a)
    return x.T if tall else x


def ns_dtype_of(m: Tensor, dtype: str) -> torch.dtype:
    """The dtype the iteration runs in for ``ns_dtype=dtype`` and a matrix like ``m``."""
    return m.dtype if dtype == "param" else getattr(torch, dtype)


def shape_factor(shape, adjust_lr_fn: str | None, rms_rate: float, layout: str) -> float:
    """s, the factor that gives the orthogonalised update (singular values ≈ 1) a consistent
    size across rectangular matrices, from ``adjust_lr_fn`` (torch.optim.Muon's names):

    * ``None`` / ``"original"`` (Keller Jordan; optax without ``consistent_rms``):
      s = √max(1, fan_out/fan_in);
    * ``"match_rms_adamw"`` (Liu et al. 2025, https://arxiv.org/abs/2502.16982; Keras'
      ``rms_rate``, optax's ``consistent_rms``): s = ``rms_rate``·√max(fan_in, fan_out), the
      RMS of AdamW's updates (0.2), so AdamW's lr and weight decay carry over;
    * ``"none"`` (Keras with ``rms_rate=None``): s = 1.

    ``layout`` says which dimension is fan-out: ``"out_in"`` (torch: ``nn.Linear.weight`` is
    (out, in), so s = √max(1, shape[0]/shape[1])) or ``"in_out"`` (optax's and Keras' kernels
    are (in, out): s = √max(1, shape[1]/shape[0])). Above two dimensions the trailing
    dimensions together are the second one (a convolution's in·kh·kw)."""
    rows, cols = shape[0], math.prod(shape[1:])
    if adjust_lr_fn == "none":
        return 1.0
    if adjust_lr_fn == "match_rms_adamw":
        return rms_rate * math.sqrt(max(rows, cols))
    fan_out, fan_in = (rows, cols) if layout == "out_in" else (cols, rows)
    return math.sqrt(max(1, fan_out / fan_in))


def as_matrix(t: Tensor) -> Tensor:
    """A parameter (or its gradient) as the matrix Muon orthogonalises: itself when 2-D, its
    first dimension against the rest flattened (a convolution's (out, in·kh·kw)) above."""
    return t if t.dim() == 2 else t.reshape(t.shape[0], -1)


class scale_by_muon(Transform):  # noqa: N801 - transforms are named like functions
    """Muon's update u = γ·s·O: momentum, Newton–Schulz orthogonalisation, the shape factor
    and the learning rate (see the module docstring for the equations). Matrices only (a
    parameter with more than two dimensions is orthogonalised as (shape[0], rest)); the
    optimizer routes vectors and scalars to AdamW.

    Args:
        momentum: μ ∈ [0, 1).
        ns_coefficients: (a, b, c) of the quintic iteration.
        ns_steps: k, the number of iterations.
        eps: ε of the normalisation X₀ = M/max(‖M‖, ε) or M/(‖M‖ + ε).
        nesterov: orthogonalise the look-ahead M = (1 − μ)G + μB instead of B.
        momentum_form: ``"ema"`` (B = μB + (1 − μ)G, torch) or ``"modern"`` (B = μB + G, Keras).
        debias: divide by the bias corrections as optax does (``"ema"`` only).
        eps_mode: ``"clamp"`` (torch), ``"add"`` (optax) or ``"add_float32"`` (Keras).
        ns_dtype: where the iteration runs: ``"bfloat16"`` (torch), ``"param"`` (optax, Keras),
            ``"float32"``, ``"float64"``.
        adjust_lr_fn, rms_rate, layout: the shape factor s (:func:`shape_factor`).
        lr: γ (the group's ``lr``), applied here with s as one factor (the chain has no
            ``scale_by_lr`` after it).

    Where the chain allows it (``ctx.apply_scaled``: the caller applies the updates and only
    decoupled decay or ``scale_by_lr`` follow, see :mod:`descend.transforms.base`) the update
    is returned as O itself, in the iteration's dtype, with γ·s pending in ``ctx.scales``: the
    optimizer then steps θ ← θ − γs·O as one ``θ.add_(O, alpha=−γs)``, torch.optim.Muon's own
    operation (no float32 copy of O, no separate multiply). Elsewhere u = γs·O in θ's dtype.

    State: ``momentum_buffer`` (torch's name), zeros at first. Records ``velocity`` (B),
    ``ortho`` (O), ``ortho_norm`` (‖O‖_F, over the matrix's elements) and ``lr_eff`` (γ·s,
    torch's "adjusted lr").
    """

    state_keys = ("momentum_buffer",)
    defers_scale = True
    columns = {
        "ortho": ("O", "NS(M), the orthogonalised momentum (singular values ≈ 1) (Muon)"),
        "ortho_norm": ("‖O‖", "Frobenius norm of the orthogonalised momentum (Muon)"),
    }

    def __init__(
        self,
        momentum=hp("momentum"),
        ns_coefficients=hp("ns_coefficients"),
        ns_steps=hp("ns_steps"),
        eps=hp("eps"),
        nesterov: bool = True,
        momentum_form: str = "ema",
        debias: bool = False,
        eps_mode: str = "clamp",
        ns_dtype: str = "bfloat16",
        adjust_lr_fn: str | None = None,
        rms_rate=hp("rms_rate"),
        layout: str = "out_in",
        lr=hp("lr"),
    ):
        for name, value, allowed in (
            ("momentum_form", momentum_form, MOMENTUM_FORMS_MUON),
            ("eps_mode", eps_mode, EPS_MODES),
            ("ns_dtype", ns_dtype, NS_DTYPES),
            ("adjust_lr_fn", adjust_lr_fn, ADJUST_LR_FNS),
            ("layout", layout, LAYOUTS),
        ):
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is not one of {', '.join(map(str, allowed))}")
        if debias and momentum_form != "ema":
            raise ValueError(
                "debias=True needs momentum_form='ema': the bias correction 1/(1 − μᵗ) undoes "
                "the zero start of B = μB + (1 − μ)G"
            )
        self.momentum, self.ns_coefficients = momentum, ns_coefficients
        self.ns_steps, self.eps = ns_steps, eps
        self.nesterov, self.momentum_form, self.debias = nesterov, momentum_form, debias
        self.eps_mode, self.ns_dtype = eps_mode, ns_dtype
        self.adjust_lr_fn, self.rms_rate, self.layout, self.lr = adjust_lr_fn, rms_rate, layout, lr

    def init(self, param: Tensor, state: dict) -> None:
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def update(self, updates, states, params, ctx: Context):
        mu = ctx.value(self.momentum)
        coefficients = ctx.value(self.ns_coefficients)
        steps, eps, lr = int(ctx.value(self.ns_steps)), ctx.value(self.eps), ctx.value(self.lr)
        rms_rate = ctx.value(self.rms_rate) if self.adjust_lr_fn == "match_rms_adamw" else 0.0
        bufs = [st["momentum_buffer"] for st in states]
        out, ortho, scales, pending = [], [], [], []
        for g, buf, p, t in zip(updates, bufs, params, ctx.t):
            look, owned = self._momentum(g, buf, mu, t)
            # a DTensor (FSDP2) is gathered, orthogonalised whole and its shard kept (_sharded)
            o = on_whole(
                look,
                lambda m, owned=owned: newton_schulz(
                    as_matrix(m), coefficients, steps, eps, self.eps_mode, self.ns_dtype, owned
                ).reshape(m.shape),
            )
            scale = lr * shape_factor(p.shape, self.adjust_lr_fn, rms_rate, self.layout)
            if ctx.apply_scaled and not isinstance(scale, Tensor):
                out.append(o)  # θ ← θ − γs·O left to the caller: θ.add_(O, alpha=−γs), torch's
                pending.append(scale)
            else:
                out.append(o.to(p.dtype).mul_(scale))
                pending.append(None)
            if ctx.tracing:
                ortho.append(o.to(p.dtype))
                scales.append(torch.full_like(p, scale))
        ctx.record("velocity", bufs)
        if ctx.tracing:
            ctx.record("ortho", ortho)
            ctx.record("ortho_norm", [torch.full_like(o, float(o.norm())) for o in ortho])
            ctx.record("lr_eff", scales)
        ctx.owned = True
        if any(s is not None for s in pending):
            ctx.scales = pending
        return out

    def _momentum(self, g: Tensor, buf: Tensor, mu, t: float) -> tuple[Tensor, bool]:
        """Update B in place; return the matrix to orthogonalise and whether it is a new
        tensor the iteration may overwrite."""
        if self.momentum_form == "modern":
            buf.add_(g + buf * (mu - 1))  # Keras: m += g + m(μ − 1)
            return (g + mu * buf, True) if self.nesterov else (buf, False)
        if self.nesterov and not self.debias:
            dtype = ns_dtype_of(g, self.ns_dtype)
            if dtype != g.dtype and _blockwise(g, buf, mu):
                return ema_lookahead_(g, buf, mu, dtype), True
        buf.lerp_(g, 1 - mu)  # torch: B ← B + (1 − μ)(G − B)
        if not self.debias:
            if not self.nesterov:
                return buf, False
            return torch.lerp(g, buf, mu), True  # torch: G.lerp(B, μ); newton_schulz casts
        if self.nesterov:  # optax: μ·B/(1 − μᵗ⁺¹) + (1 − μ)·G/(1 − μᵗ)
            return mu * (buf / (1 - mu ** (t + 1))) + (1 - mu) * (g / (1 - mu**t)), True
        return buf / (1 - mu**t), True


#: elements per block and thread of :func:`ema_lookahead_`: its three blocks (G, B and the
#: float32 look-ahead, 1.5 MiB) stay in a core's cache between the passes (measured over
#: ResNet-18's matrices, 1 thread: 16-17 ms for 2^17 or 2^18, 22 ms for 2^16, 50 ms
#: unblocked); with more threads each gets this much of a block (fewer parallel regions)
BLOCK = 1 << 17


def _blockwise(g: Tensor, buf: Tensor, mu) -> bool:
    """Whether :func:`ema_lookahead_` may step ``g`` and ``buf`` block by block: plain
    contiguous CPU tensors of one dtype (a DTensor, a strided view or a GPU tensor, where
    blocks only add kernel launches, takes the whole-tensor ops), a number μ, eager mode."""
    return (
        type(g) is Tensor
        and g.device.type == "cpu"
        and type(buf) is Tensor
        and g.dtype == buf.dtype
        and g.is_contiguous()
        and buf.is_contiguous()
        and isinstance(mu, (int, float))
        and not torch.compiler.is_compiling()
    )


def ema_lookahead_(g: Tensor, buf: Tensor, mu: float, dtype: torch.dtype) -> Tensor:
    """torch.optim.Muon's momentum and Nesterov look-ahead, B ← B + (1 − μ)(G − B) in place
    and M = G + μ(B − G) returned in ``dtype`` (the iteration's bfloat16), with torch's own
    operations (``buf.lerp_``, ``grad.lerp``, the cast), so bit for bit torch's, but run
    block by block (:data:`BLOCK` elements per thread) through one scratch block: each block
    of B and of the float32 M is read back from the cache, not from memory (one pass over G
    and B where torch makes three, and no float32 M of the whole matrix)."""
    out = torch.empty(g.shape, dtype=dtype, device=g.device)
    flat_g, flat_b, flat_out = g.view(-1), buf.view(-1), out.view(-1)
    n = flat_g.numel()
    block = BLOCK * max(1, torch.get_num_threads())
    scratch = torch.empty(min(n, block), dtype=g.dtype, device=g.device)
    for start in range(0, n, block):
        stop = min(n, start + block)
        gb, bb = flat_g[start:stop], flat_b[start:stop]
        bb.lerp_(gb, 1 - mu)
        flat_out[start:stop].copy_(torch.lerp(gb, bb, mu, out=scratch[: stop - start]))
    return out
