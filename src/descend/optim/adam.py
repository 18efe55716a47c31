"""Adam, AdamW, AMSGrad and NAdam."""

from __future__ import annotations

from torch import Tensor

from ..transforms import EPS_PLACEMENTS, NADAM_SCHEDULES, scale_by_adam, scale_by_nadam
from ..transforms.adam import AMSGRAD_OF, mu_product_dtype
from . import validation as check
from ._common import build_defaults, check_common, structure, wrap
from .base import ChainOptimizer


class Adam(ChainOptimizer):
    """Adam (Kingma & Ba 2015): θ ← θ − γ·m̂/(√v̂ + ε), with the switches of
    :class:`descend.transforms.scale_by_adam`: ``bias_correction`` (bool or a pair for
    (m, v)), ``eps_placement="outside"|"inside"|"hat"``, ``amsgrad`` and ``amsgrad_of``.

    Chain: [clip] [maximize] [L2] → scale_by_adam → scale_by_lr → [decoupled decay].
    Swapping the last link for the L2 one turns AdamW into Adam + L2.
    """

    _kind = "adam"

    def __init__(
        self,
        params,
        lr: float | None = None,
        betas: tuple[float, float] | None = None,
        eps: float | None = None,
        weight_decay: float | None = None,
        amsgrad: bool | None = None,
        *,
        maximize: bool = False,
        bias_correction: bool | tuple[bool, bool] | None = None,
        eps_placement: str | None = None,
        amsgrad_of: str | None = None,
        weight_decay_mode: str | None = None,
        decoupled_weight_decay: bool | None = None,
        convention: str = "torch",
        nonfinite: str = "propagate",
        max_grad_norm: float | None = None,
        clip_value: float | None = None,
        foreach: bool | None = None,
        differentiable: bool = False,
        capturable: bool = False,
        fused: bool | None = None,
        process_group="auto",
    ):
        given = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            bias_correction=bias_correction,
            eps_placement=eps_placement,
            amsgrad_of=amsgrad_of,
        )
        defaults = build_defaults(
            self._kind,
            convention,
            given,
            maximize=maximize,
            weight_decay_mode=weight_decay_mode,
            decoupled_weight_decay=decoupled_weight_decay,
            max_grad_norm=max_grad_norm,
            clip_value=clip_value,
            differentiable=differentiable,
            capturable=capturable,
        )
        self._chains: dict = {}
        super().__init__(
            params, defaults, nonfinite=nonfinite, fused=fused, process_group=process_group
        )

    def validate(self, group: dict) -> None:
        check_common(group)
        check.betas(group["betas"])
        check.non_negative("eps", group["eps"])
        check.flag("amsgrad", group["amsgrad"])
        bc = group["bias_correction"]
        if isinstance(bc, (tuple, list)):
            if len(bc) != 2:
                raise ValueError(f"bias_correction must be a bool or a pair of bools, got {bc!r}")
            for b in bc:
                check.flag("bias_correction", b)
        else:
            check.flag("bias_correction", bc)
        check.choice("eps_placement", group["eps_placement"], EPS_PLACEMENTS)
        check.choice("amsgrad_of", group["amsgrad_of"], AMSGRAD_OF)
        if group["amsgrad"] and group["eps_placement"] == "hat" and group["amsgrad_of"] != "raw":
            raise ValueError(
                "amsgrad_of='corrected' needs eps_placement 'outside' or 'inside': the ε̂ form "
                "(eps_placement='hat', Keras) divides by the raw √v, so its AMSGrad max is over "
                "the raw v (amsgrad_of='raw')"
            )

    def chain(self, group: dict):
        bc = group["bias_correction"]
        bc = tuple(bc) if isinstance(bc, (list, tuple)) else bc
        key = structure(group, ("eps_placement", "amsgrad", "amsgrad_of")) + (bc,)
        if key not in self._chains:
            core = [
                scale_by_adam(
                    eps_placement=group["eps_placement"],
                    bias_correction=bc,
                    amsgrad=group["amsgrad"],
                    amsgrad_of=group["amsgrad_of"],
                )
            ]
            self._chains[key] = wrap(group, core)
        return self._chains[key]


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter, ICLR 2019): Adam with decoupled weight decay,
    θ ← θ(1 − γλ) − γ·m̂/(√v̂ + ε). Default λ = 1e-2 (torch), 4e-3 (Keras), 1e-4 (optax)."""

    _kind = "adamw"

    def load_state_dict(self, state_dict: dict) -> None:
        """As torch's AdamW: decoupled whatever it loads, an Adam's (L2) state dict included
        (copies and pickles keep their groups as they are)."""
        super().load_state_dict(state_dict)
        mode = self.defaults["weight_decay_mode"]
        for group in self.param_groups:
            if group["weight_decay_mode"] == "l2" and mode != "l2":
                group["weight_decay_mode"] = mode
            if "decoupled_weight_decay" in group:
                group["decoupled_weight_decay"] = group["weight_decay_mode"] != "l2"


class AMSGrad(Adam):
    """AMSGrad (Reddi, Kale & Kumar, ICLR 2018): Adam with v replaced by its running max,
    so the effective step never grows. ``Adam(amsgrad=True)`` under another name."""

    def __init__(
        self,
        params,
        lr: float | None = None,
        betas=None,
        eps=None,
        weight_decay=None,
        amsgrad: bool = True,
        **kwargs,
    ):
        if amsgrad is not True:
            raise ValueError("AMSGrad always has amsgrad=True; use Adam for amsgrad=False")
        super().__init__(params, lr, betas, eps, weight_decay, True, **kwargs)


class NAdam(ChainOptimizer):
    """NAdam (Dozat 2016): Adam whose first moment looks ahead with Nesterov momentum,
    μ_t from ``schedule="torch"`` (β₁(1 − ½·0.96^{tψ}), ψ = ``momentum_decay``),
    ``"keras"`` (β₁(1 − ½·0.96ᵗ)) or ``"none"`` (μ_t = β₁, optax). See
    :class:`descend.transforms.scale_by_nadam` for the update."""

    def __init__(
        self,
        params,
        lr: float | None = None,
        betas: tuple[float, float] | None = None,
        eps: float | None = None,
        weight_decay: float | None = None,
        momentum_decay: float | None = None,
        decoupled_weight_decay: bool | None = None,
        *,
        maximize: bool = False,
        schedule: str | None = None,
        weight_decay_mode: str | None = None,
        convention: str = "torch",
        nonfinite: str = "propagate",
        max_grad_norm: float | None = None,
        clip_value: float | None = None,
        foreach: bool | None = None,
        differentiable: bool = False,
        capturable: bool = False,
        fused: bool | None = None,
        process_group="auto",
    ):
        given = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            momentum_decay=momentum_decay,
            schedule=schedule,
        )
        defaults = build_defaults(
            "nadam",
            convention,
            given,
            maximize=maximize,
            weight_decay_mode=weight_decay_mode,
            decoupled_weight_decay=decoupled_weight_decay,
            max_grad_norm=max_grad_norm,
            clip_value=clip_value,
            differentiable=differentiable,
            capturable=capturable,
        )
        self._chains: dict = {}
        super().__init__(
            params, defaults, nonfinite=nonfinite, fused=fused, process_group=process_group
        )

    def validate(self, group: dict) -> None:
        check_common(group)
        check.betas(group["betas"])
        check.non_negative("eps", group["eps"])
        check.non_negative("momentum_decay", group["momentum_decay"])
        check.choice("schedule", group["schedule"], NADAM_SCHEDULES)

    @staticmethod
    def _product_rule(group: dict) -> str:
        """Π's dtype: torch's float32 scalar under torch's convention (exact parity with
        torch.optim.NAdam, whose ``mu_product`` is float32 unless the default dtype is
        float64), the parameter's precision under Keras' and optax's (float64 runs
        compute it in float64 there)."""
        return "torch" if group.get("convention", "torch") == "torch" else "param"

    def chain(self, group: dict):
        key = structure(group, ("schedule",)) + (self._product_rule(group),)
        if key not in self._chains:
            core = scale_by_nadam(schedule=group["schedule"], product_dtype=key[-1])
            self._chains[key] = wrap(group, [core])
        return self._chains[key]

    def load_state_dict(self, state_dict: dict) -> None:
        # torch casts every state tensor but "step" to its parameter's dtype on load; put Π
        # back in the dtype a fresh step creates (straight from the saved value, never through
        # a narrower type) so a resumed run is bitwise the uninterrupted one.
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            rule = self._product_rule(group)
            for p in group["params"]:
                st = self.state.get(p)
                if isinstance(st, dict) and isinstance(st.get("mu_product"), Tensor):
                    st["mu_product"] = st["mu_product"].to(mu_product_dtype(p, rule))
