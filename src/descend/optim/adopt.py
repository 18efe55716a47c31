"""ADOPT (Taniguchi et al., NeurIPS 2024, https://arxiv.org/abs/2411.02853)."""

from __future__ import annotations

from ..transforms import add_weight_decay, after_first_step, chain, scale_by_adopt
from . import validation as check
from ._common import wrap
from .declared import Declared, Spec

_ROW = dict(
    lr=1e-3,
    betas=(0.9, 0.9999),
    eps=1e-6,
    clip_lambda=0.25,
    use_clipping=True,
    weight_decay=0.0,
    weight_decay_mode="l2",
    nesterov=False,
)


class ADOPT(Declared):
    """ADOPT (Taniguchi et al. 2024, https://arxiv.org/abs/2411.02853): Adam that divides g
    by the second moment of the *previous* steps and normalises inside the momentum, as
    ``optax.contrib.adopt`` and the authors' torch code (``torch-adopt``). With t the step:

        t = 1:  v ← g², no update (the first step only measures the gradient's scale)
        t ≥ 2:  n = clip(g / max(√v, ε), ±c(t − 1));  m ← β₁m + (1 − β₁)n
                v ← β₂v + (1 − β₂)g²;  θ ← θ − γm  (``nesterov``: γ(β₁m + (1 − β₁)n))

    ``clip_lambda``: the clipping schedule c(s), a number p for c(s) = s^p (default 0.25, the
    paper's clipped ADOPT, for which its guarantee holds) or a function of s (as the authors'
    torch keyword); ``use_clipping=False`` (optax's switch) turns clipping off (the paper's
    first version; ``clip_lambda=None`` means the default here, as every ``None`` keyword).
    ``weight_decay``: L2 (g + λθ, the authors' default) or, with ``decoupled_weight_decay=True``,
    θ ← θ(1 − γλ) from the second step on (the authors' ``decouple=True``, descend's common
    spelling; optax's ADOPT has no weight decay). ``nesterov`` is optax's option.

    Chain: [clip] [maximize] [L2] → scale_by_adopt → scale_by_lr → [decoupled decay from t = 2].
    """

    keywords = ("lr", "betas", "eps", "clip_lambda", "weight_decay")
    conventions = {"torch": dict(_ROW), "optax": dict(_ROW)}
    specs = {
        "adopt": Spec(
            "ADOPT: Adam with g normalised by the previous steps' v, inside the momentum",
            lab_lr=("adam", 3.0),
        )
    }
    structure = ("nesterov",)

    def check(self, group: dict) -> None:
        check.betas(group["betas"])
        check.non_negative("eps", group["eps"])
        check.flag("nesterov", group["nesterov"])
        check.flag("use_clipping", group["use_clipping"])
        clip = group["clip_lambda"]
        if not callable(clip):
            try:
                check.non_negative("clip_lambda", clip)
            except ValueError:
                raise ValueError(
                    f"clip_lambda={clip!r} is invalid: it must be a number p ≥ 0 (clipping at "
                    "s**p on step s; 0.25 is the paper's) or a function of s "
                    "(use_clipping=False for no clipping)"
                ) from None

    def effective_lr(self, group: dict, state: dict):
        """γ/max(√v, ε): the rate at which the next gradient enters the step through m (ADOPT
        normalises inside the momentum; the trace's lr_eff)."""
        if "exp_avg_sq" not in state:
            return None
        return float(group["lr"]) / state["exp_avg_sq"].sqrt().clamp(min=float(group["eps"]))

    def core(self, group: dict) -> list:
        return [scale_by_adopt(nesterov=group["nesterov"])]

    def chain(self, group: dict):
        key = self.shape(group)
        chains = self.__dict__.setdefault("_chains", {})
        if key not in chains:
            mode = group.get("weight_decay_mode")
            if mode in (None, "l2"):
                chains[key] = wrap(group, self.core(group))
            else:  # the decoupled decay skips the first step, as the update does
                inner = wrap({**group, "weight_decay_mode": None}, self.core(group))
                chains[key] = chain(inner, after_first_step(add_weight_decay(mode=mode)))
        return chains[key]
