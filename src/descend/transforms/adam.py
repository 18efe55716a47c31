"""Adam's scaling (Kingma & Ba, ICLR 2015), AMSGrad (Reddi et al., ICLR 2018) and NAdam
(Dozat, ICLR 2016 workshop), with every framework's ε and bias-correction convention.

ε placement, with m̂ = m/(1 − β₁ᵗ) and v̂ = v/(1 − β₂ᵗ):

* ``outside`` (torch, optax):  u = m̂ / (√v̂ + ε)
* ``inside``  (optax's ``eps_root``):  u = m̂ / √(v̂ + ε)
* ``hat``     (Keras, the paper's ε̂ of Algorithm 1's final remark):
  u = √(1 − β₂ᵗ)/(1 − β₁ᵗ) · m / (√v + ε) — the same as ``outside`` with ε scaled by
  √(1 − β₂ᵗ), which is why Keras' default ε = 1e-7 behaves unlike torch's 1e-8.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import _ops
from .base import Context, KernelPlan, Transform, hp
from .momentum import bias_correction
from .rms import eps_fields

EPS_PLACEMENTS = ("outside", "inside", "hat")
AMSGRAD_OF = ("raw", "corrected")
NADAM_SCHEDULES = ("torch", "keras", "none")
MU_PRODUCT_DTYPES = ("torch", "param")


def mu_product_dtype(param: Tensor, rule: str = "torch") -> torch.dtype:
    """The dtype of NAdam's running product Π = ∏μ_i for ``param``.

    ``"torch"``: torch.optim.NAdam's rule, the scalar dtype of its step counters (float64 when
    the default dtype is float64, else float32, whatever the parameter's dtype). ``"param"``:
    the parameter's precision, at least that scalar dtype (float64 for a float64 parameter), as
    Keras (its ``u_product`` has the variables' dtype) and optax (everything in the update's
    dtype) compute it. A float32 Π in a float64 run is off by up to 6e-8 relatively, which
    reaches θ at ~1e-8 (optax.nadam, 50 steps).
    """
    if rule not in MU_PRODUCT_DTYPES:
        raise ValueError(f"mu_product dtype rule {rule!r} is not one of {MU_PRODUCT_DTYPES}")
    scalar = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
    if rule == "param" and param.dtype in (torch.float64, torch.complex128):
        return torch.float64
    return scalar


def _pair(x) -> tuple[bool, bool]:
    return (x, x) if isinstance(x, bool) else (bool(x[0]), bool(x[1]))


def _zeros(param: Tensor) -> Tensor:
    return torch.zeros_like(param, memory_format=torch.preserve_format)


def _moments(updates, states, b1, b2, ctx) -> tuple[list[Tensor], list[Tensor]]:
    """m ← β₁m + (1 − β₁)g, v ← β₂v + (1 − β₂)g² in place; returns (m, v)."""
    m = [st["exp_avg"] for st in states]
    v = [st["exp_avg_sq"] for st in states]
    _ops.lerp_(m, updates, 1 - b1)
    _ops.ewa_sq_(v, updates, b2)
    ctx.record("m", m)
    ctx.record("v", v)
    return m, v


class scale_by_adam(Transform):  # noqa: N801
    """Adam's moment estimates and scaling.

    .. math::
        m ← β₁m + (1 − β₁)g,\\quad v ← β₂v + (1 − β₂)g^2,\\quad
        v_{\\max} ← \\max(v_{\\max}, v)\\ \\text{(AMSGrad)}

        u = \\frac{m/c₁}{\\sqrt{v/c₂} + ε}\\ (\\text{outside}),\\quad
        \\frac{m/c₁}{\\sqrt{v/c₂ + ε}}\\ (\\text{inside}),\\quad
        \\frac{\\sqrt{c₂}}{c₁}\\frac{m}{\\sqrt{v} + ε}\\ (\\text{hat})

    with cᵢ = 1 − βᵢᵗ, or 1 where ``bias_correction`` turns that moment's correction off
    (a bool, or a pair for (m, v)). AMSGrad takes the max of the raw v (torch, Keras) or,
    with ``amsgrad_of="corrected"``, of v̂ (optax). Records m, v, v_max, m_hat, v_hat, denom.
    """

    def __init__(
        self,
        b1=hp("betas", 0),
        b2=hp("betas", 1),
        eps=hp("eps"),
        eps_placement: str = "outside",
        bias_correction: bool | tuple[bool, bool] = True,
        amsgrad: bool = False,
        amsgrad_of: str = "raw",
    ):
        if eps_placement not in EPS_PLACEMENTS:
            raise ValueError(
                f"eps_placement={eps_placement!r} is not one of {', '.join(EPS_PLACEMENTS)}"
            )
        if amsgrad_of not in AMSGRAD_OF:
            raise ValueError(f"amsgrad_of={amsgrad_of!r} is not one of {', '.join(AMSGRAD_OF)}")
        if amsgrad and eps_placement == "hat" and amsgrad_of != "raw":
            raise ValueError(
                "amsgrad_of='corrected' needs eps_placement 'outside' or 'inside': the ε̂ form "
                "divides by the raw √v, so its AMSGrad max is over the raw v"
            )
        self.b1, self.b2, self.eps, self.eps_placement = b1, b2, eps, eps_placement
        self.bias_correction = _pair(bias_correction)
        self.amsgrad, self.amsgrad_of = amsgrad, amsgrad_of
        keys = ("exp_avg", "exp_avg_sq")
        self.state_keys = keys + ("max_exp_avg_sq",) if amsgrad else keys

    def init(self, param: Tensor, state: dict) -> None:
        for key in self.state_keys:
            if key not in state:
                state[key] = _zeros(param)

    def update(self, updates, states, params, ctx: Context):
        b1, b2, eps = ctx.value(self.b1), ctx.value(self.b2), ctx.value(self.eps)
        m, v = _moments(updates, states, b1, b2, ctx)
        n = len(m)
        c1 = bias_correction(b1, ctx) if self.bias_correction[0] else [1.0] * n
        c2 = bias_correction(b2, ctx) if self.bias_correction[1] else [1.0] * n
        corrected_max = self.amsgrad and self.amsgrad_of == "corrected"
        if self.amsgrad and not corrected_max:
            vmax = [st["max_exp_avg_sq"] for st in states]
            torch._foreach_maximum_(vmax, v)
            ctx.record("v_max", vmax)
            v = vmax
        if self.eps_placement == "hat":
            denom = _ops.sqrt_plus_eps(v, eps, inside=False)
            ctx.record("denom", denom)
            out = torch._foreach_div(m, denom)
            factor = [_sqrt(b) / a for a, b in zip(c1, c2)]
            _ops.mul_list_(out, factor)
            precond = [f / d for f, d in zip(factor, denom)] if ctx.tracing else None
        else:
            v_hat = [x / c for x, c in zip(v, c2)] if self.bias_correction[1] else v
            if corrected_max:
                vmax = [st["max_exp_avg_sq"] for st in states]
                torch._foreach_maximum_(vmax, v_hat)
                ctx.record("v_max", vmax)
                v_hat = vmax
            ctx.record("v_hat", v_hat)
            denom = _ops.sqrt_plus_eps(v_hat, eps, inside=self.eps_placement == "inside")
            ctx.record("denom", denom)
            out = torch._foreach_div(m, denom)
            if self.bias_correction[0]:
                _ops.div_list_(out, c1)
            precond = [1 / (c * d) for c, d in zip(c1, denom)] if ctx.tracing else None
        if ctx.tracing:
            ctx.record("m_hat", [x / c for x, c in zip(m, c1)])
        ctx.owned = True
        ctx.precond = precond
        return out

    kernel = "adam"

    def kernel_plan(self, read, fields: dict, absorbed=None) -> KernelPlan:
        fields["beta1"] = read.number(self.b1, "betas[0]")
        fields["beta2"] = read.number(self.b2, "betas[1]")
        eps_fields(fields, read.number(self.eps, "eps"), self.eps_placement == "inside")
        fields["bias1"], fields["bias2"] = (int(b) for b in self.bias_correction)
        fields["hat"] = int(self.eps_placement == "hat")
        if self.amsgrad:
            # as update: the max of v̂ ("corrected") is taken only for ε outside/inside
            fields["ams"] = 1 if self.amsgrad_of == "raw" else (0 if fields["hat"] else 2)
        third = "max_exp_avg_sq" if self.amsgrad else None
        return KernelPlan(slots=("exp_avg", "exp_avg_sq", third))


def _sqrt(x):
    return x.sqrt() if isinstance(x, Tensor) else math.sqrt(x)


def nadam_mu(beta1, t, schedule: str, momentum_decay):
    """The momentum coefficient μ_t of NAdam's schedule.

    torch: β₁(1 − ½·0.96^{tψ}) with ψ = ``momentum_decay`` (4e-3); Keras: β₁(1 − ½·0.96ᵗ);
    none: β₁ (optax's nadam, Dozat's algorithm without the warming schedule).
    """
    if schedule == "torch":
        return beta1 * (1.0 - 0.5 * 0.96 ** (t * momentum_decay))
    if schedule == "keras":
        return beta1 * (1.0 - 0.5 * 0.96**t)
    return beta1 * 1.0


class scale_by_nadam(Transform):  # noqa: N801
    """NAdam: Adam with a Nesterov look-ahead on the first moment (Dozat 2016).

    .. math::
        m ← β₁m + (1 − β₁)g,\\quad v ← β₂v + (1 − β₂)g^2,\\quad
        Π_t = \\prod_{i ≤ t} μ_i

        u = \\Big(\\frac{μ_{t+1} m}{1 − Π_{t+1}} + \\frac{(1 − μ_t) g}{1 − Π_t}\\Big)
            \\Big/ \\big(\\sqrt{v/(1 − β₂^t)} + ε\\big)

    μ_t from :func:`nadam_mu` (``schedule`` = torch | keras | none). Π is kept per parameter
    in ``state["mu_product"]`` as torch does, in the dtype :func:`mu_product_dtype` gives for
    ``product_dtype`` ("torch": torch's float32 scalar; "param": float64 for a float64
    parameter, as Keras and optax). Records m, v, v_hat, m_hat, denom, mu.
    """

    state_keys = ("exp_avg", "exp_avg_sq", "mu_product")

    def __init__(
        self,
        b1=hp("betas", 0),
        b2=hp("betas", 1),
        eps=hp("eps"),
        momentum_decay=hp("momentum_decay"),
        schedule: str = "torch",
        product_dtype: str = "torch",
    ):
        if schedule not in NADAM_SCHEDULES:
            raise ValueError(f"schedule={schedule!r} is not one of {', '.join(NADAM_SCHEDULES)}")
        mu_product_dtype(torch.empty(0), product_dtype)  # validates the rule
        self.b1, self.b2, self.eps = b1, b2, eps
        self.momentum_decay, self.schedule = momentum_decay, schedule
        self.product_dtype = product_dtype

    def init(self, param: Tensor, state: dict) -> None:
        for key in ("exp_avg", "exp_avg_sq"):
            if key not in state:
                state[key] = _zeros(param)
        if "mu_product" not in state:
            dtype = mu_product_dtype(param, self.product_dtype)
            state["mu_product"] = torch.tensor(1.0, dtype=dtype)

    def update(self, updates, states, params, ctx: Context):
        b1, b2, eps = ctx.value(self.b1), ctx.value(self.b2), ctx.value(self.eps)
        psi = ctx.value(self.momentum_decay)
        m, v = _moments(updates, states, b1, b2, ctx)
        coef_g, coef_m = [], []
        for st, t in zip(states, ctx.t):
            mu = nadam_mu(b1, t, self.schedule, psi)
            mu_next = nadam_mu(b1, t + 1, self.schedule, psi)
            prod = st["mu_product"]
            if isinstance(mu, Tensor) and mu.numel() > 1:  # per-trajectory β₁ (lab)
                prod = st["mu_product"] = prod * mu
            else:
                prod.mul_(mu)
            coef_g.append((1 - mu) / (1 - _value(prod)))
            coef_m.append(mu_next / (1 - _value(prod) * mu_next))
        v_hat = [x / c for x, c in zip(v, bias_correction(b2, ctx))]
        ctx.record("v_hat", v_hat)
        denom = _ops.sqrt_plus_eps(v_hat, eps, inside=False)
        ctx.record("denom", denom)
        num = [g * cg for g, cg in zip(updates, coef_g)]
        _ops.add_scaled_list_(num, m, coef_m)
        ctx.record("m_hat", num)
        out = torch._foreach_div(num, denom)
        ctx.owned = True
        ctx.precond = torch._foreach_reciprocal(denom) if ctx.tracing else None
        return out

    kernel = "nadam"

    def kernel_plan(self, read, fields: dict, absorbed=None) -> KernelPlan:
        fields["beta1"] = read.number(self.b1, "betas[0]")
        fields["beta2"] = read.number(self.b2, "betas[1]")
        fields["eps_out"] = read.number(self.eps, "eps")
        fields["psi"] = read.number(self.momentum_decay, "momentum_decay")
        fields["schedule"] = NADAM_SCHEDULES.index(self.schedule)
        return KernelPlan(slots=("exp_avg", "exp_avg_sq", None), extra="mu_product")


def _value(x):
    """A 0-d tensor as a Python float (torch keeps mu_product as a tensor); tensors of
    per-trajectory values stay tensors."""
    if isinstance(x, Tensor) and x.numel() == 1 and x.dim() == 0:
        return x if torch.compiler.is_compiling() else x.item()
    return x
