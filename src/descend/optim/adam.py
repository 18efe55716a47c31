"""Adam, AdamW, AMSGrad and NAdam."""

from __future__ import annotations

from torch import Tensor

from ..transforms import EPS_PLACEMENTS, NADAM_SCHEDULES, scale_by_adam, scale_by_nadam
from ..transforms.adam import AMSGRAD_OF, mu_product_dtype
from . import validation as check
from .declared import Declared, Spec

_ADAM = dict(lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0, amsgrad=False, bias_correction=True)
_ADAM.update(weight_decay_mode="l2")
_NADAM = dict(betas=(0.9, 0.999), weight_decay=0.0, momentum_decay=4e-3)


class Adam(Declared):
    """Adam (Kingma & Ba 2015): θ ← θ − γ·m̂/(√v̂ + ε), with the switches of
    :class:`descend.transforms.scale_by_adam`: ``bias_correction`` (bool or a pair for
    (m, v)), ``eps_placement="outside"|"inside"|"hat"``, ``amsgrad`` and ``amsgrad_of``.

    Chain: [clip] [maximize] [L2] → scale_by_adam → scale_by_lr → [decoupled decay].
    Swapping the last link for the L2 one turns AdamW into Adam + L2.
    """

    keywords = ("lr", "betas", "eps", "weight_decay", "amsgrad")
    conventions = {
        "torch": dict(_ADAM, eps=1e-8, eps_placement="outside", amsgrad_of="raw"),
        "keras": dict(
            _ADAM,
            eps=1e-7,
            eps_placement="hat",
            amsgrad_of="raw",
            weight_decay_mode="decoupled",
        ),
        "optax": dict(_ADAM, eps=1e-8, eps_placement="outside", amsgrad_of="corrected"),
    }
    specs = {"adam": Spec("Adam: momentum + RMSprop + bias correction")}
    choices = {"eps_placement": EPS_PLACEMENTS, "amsgrad_of": AMSGRAD_OF}
    structure = ("eps_placement", "amsgrad", "amsgrad_of")

    def check(self, group: dict) -> None:
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

    @staticmethod
    def _bias_correction(group: dict) -> bool | tuple[bool, bool]:
        bc = group["bias_correction"]
        return tuple(bc) if isinstance(bc, (list, tuple)) else bc

    def shape(self, group: dict) -> tuple:
        return super().shape(group) + (self._bias_correction(group),)

    def core(self, group: dict) -> list:
        return [
            scale_by_adam(
                eps_placement=group["eps_placement"],
                bias_correction=self._bias_correction(group),
                amsgrad=group["amsgrad"],
                amsgrad_of=group["amsgrad_of"],
            )
        ]


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter, ICLR 2019): Adam with decoupled weight decay,
    θ ← θ(1 − γλ) − γ·m̂/(√v̂ + ε). Default λ = 1e-2 (torch), 4e-3 (Keras), 1e-4 (optax)."""

    conventions = {
        "torch": dict(Adam.conventions["torch"], weight_decay=1e-2, weight_decay_mode="decoupled"),
        "keras": dict(Adam.conventions["keras"], weight_decay=4e-3),
        "optax": dict(Adam.conventions["optax"], weight_decay=1e-4, weight_decay_mode="decoupled"),
    }
    specs = {"adamw": Spec("Adam with decoupled weight decay")}

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

    conventions = {k: dict(row, amsgrad=True) for k, row in Adam.conventions.items()}
    specs = {"amsgrad": Spec("Adam with the running max of v")}

    def check(self, group: dict) -> None:
        if group["amsgrad"] is not True:
            raise ValueError("AMSGrad always has amsgrad=True; use Adam for amsgrad=False")
        super().check(group)


class NAdam(Declared):
    """NAdam (Dozat 2016): Adam whose first moment looks ahead with Nesterov momentum,
    μ_t from ``schedule="torch"`` (β₁(1 − ½·0.96^{tψ}), ψ = ``momentum_decay``),
    ``"keras"`` (β₁(1 − ½·0.96ᵗ)) or ``"none"`` (μ_t = β₁, optax). See
    :class:`descend.transforms.scale_by_nadam` for the update."""

    keywords = ("lr", "betas", "eps", "weight_decay", "momentum_decay", "decoupled_weight_decay")
    conventions = {
        "torch": dict(_NADAM, lr=2e-3, eps=1e-8, schedule="torch", weight_decay_mode="l2"),
        "keras": dict(_NADAM, lr=1e-3, eps=1e-7, schedule="keras", weight_decay_mode="decoupled"),
        "optax": dict(_NADAM, lr=1e-3, eps=1e-8, schedule="none", weight_decay_mode="l2"),
    }
    specs = {"nadam": Spec("Adam with Nesterov momentum")}
    choices = {"schedule": NADAM_SCHEDULES}
    structure = ("schedule",)

    def check(self, group: dict) -> None:
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

    def shape(self, group: dict) -> tuple:
        return super().shape(group) + (self._product_rule(group),)

    def core(self, group: dict) -> list:
        return [scale_by_nadam(schedule=group["schedule"], product_dtype=self._product_rule(group))]

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
