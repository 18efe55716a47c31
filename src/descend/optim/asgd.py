"""ASGD, torch.optim.ASGD's averaged stochastic gradient descent."""

from __future__ import annotations

from torch import Tensor
from torch.optim.optimizer import _get_scalar_dtype

from ..transforms import averaged_sgd
from . import validation as check
from .declared import Declared, Spec


class ASGD(Declared):
    """ASGD (Polyak & Juditsky 1992, https://doi.org/10.1137/0330046):
    θ ← θ(1 − λη) − η(g + wθ), θ̄ ← θ̄ + μ(θ − θ̄), η_t = γ/(1 + λγt)^α, μ_t = 1/max(1, t − t₀).

    torch's keywords and defaults (lr=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0,
    L2); the average θ̄ is ``state["ax"]`` (torch's key), η and μ are ``state["eta"]``,
    ``state["mu"]``. Chain: [clip] [maximize] [L2] → averaged_sgd (which applies γ through η).
    Element-wise.
    """

    keywords = ("lr", "lambd", "alpha", "t0", "weight_decay")
    conventions = {
        "torch": dict(
            lr=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0.0, weight_decay_mode="l2"
        ),
    }
    specs = {
        "asgd": Spec(
            "ASGD: SGD with a decaying step and a running average of the iterates",
            lab_lr=("sgd", 1.0),
        )
    }

    def check(self, group: dict) -> None:
        if group["weight_decay_mode"] != "l2":
            raise ValueError(
                f"weight_decay_mode={group['weight_decay_mode']!r} is not supported by ASGD: "
                "its weight decay is torch's L2 term g + wθ ('l2'); the averaged iterate is "
                "taken after the step, so no decay may follow it"
            )
        check.non_negative("lambd", group["lambd"])
        check.non_negative("alpha", group["alpha"])
        check.non_negative("t0", group["t0"])

    def lr_inside(self, group: dict) -> bool:
        return True

    def core(self, group: dict) -> list:
        return [averaged_sgd()]

    def load_state_dict(self, state_dict: dict) -> None:
        """torch's, then η and μ back in the scalar dtype a fresh step keeps them in: torch
        casts every state tensor but ``step`` to its parameter's dtype on load (so
        torch.optim.ASGD's own resumed run computes η in float64 where the uninterrupted run
        rounds it to float32); descend's resumed run is bitwise the uninterrupted one."""
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            for p in group["params"]:
                st = self.state.get(p)
                for key in ("eta", "mu"):
                    if isinstance(st, dict) and isinstance(st.get(key), Tensor):
                        st[key] = st[key].to(_get_scalar_dtype())
