"""Rprop, torch.optim.Rprop's resilient backpropagation."""

from __future__ import annotations

from ..transforms import scale_by_rprop
from . import validation as check
from .declared import Declared, Spec


class Rprop(Declared):
    """Rprop (Riedmiller & Braun 1993, https://doi.org/10.1109/ICNN.1993.298623):
    s = sign(g_t·g_{t−1}); η ← clip(η·(η₊ if s > 0, η₋ if s < 0, else 1), Γ_min, Γ_max);
    g_t ← 0 where s < 0; θ ← θ − η·sign(g_t). η starts at lr (then lr is not read again).
    This is torch's iRprop⁻ form (no weight backtracking; see
    :class:`descend.transforms.scale_by_rprop`).

    torch's keywords and defaults (lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50)); no
    weight decay (torch has none). Chain: [clip] [maximize] → scale_by_rprop. Element-wise.
    """

    keywords = ("lr", "etas", "step_sizes")
    conventions = {
        "torch": dict(lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50)),
    }
    specs = {
        "rprop": Spec(
            "Rprop: per-element step sizes that grow while the gradient keeps its sign",
            lab_lr=("adam", 1.0),
        )
    }

    #: lr is read once, as η₀ (``descend lr-find`` refuses to sweep it)
    lr_is_initial_step_size = True

    def validate(self, group: dict) -> None:
        # torch's Rprop has no weight decay, and ignores a group's weight_decay key (its own
        # test_param_groups_weight_decay passes weight_decay=0.0 in a group): 0 is accepted as
        # what it is, no decay; anything else is refused, never silently ignored
        if "weight_decay" in group:
            wd = group["weight_decay"]
            if not (isinstance(wd, (int, float)) and not isinstance(wd, bool) and wd == 0):
                raise ValueError(
                    f"weight_decay={wd!r} is invalid: Rprop has no weight decay (as "
                    "torch.optim.Rprop); only weight_decay=0 is accepted in a param group"
                )
            group = {k: v for k, v in group.items() if k != "weight_decay"}
        super().validate(group)

    def check(self, group: dict) -> None:
        etas = group["etas"]
        if not isinstance(etas, (tuple, list)) or len(etas) != 2:
            raise ValueError(f"etas must be a pair (etaminus, etaplus), got {etas!r}")
        check.number("etas[0] (etaminus)", etas[0])
        check.number("etas[1] (etaplus)", etas[1])
        if not 0.0 < etas[0] < 1.0 < etas[1]:
            raise ValueError(
                f"etas={tuple(etas)!r} is invalid: it must satisfy 0 < etaminus < 1 < etaplus "
                "(the factor that shrinks a step after a sign flip, and the one that grows it)"
            )
        sizes = group["step_sizes"]
        if not isinstance(sizes, (tuple, list)) or len(sizes) != 2:
            raise ValueError(f"step_sizes must be a pair (min, max), got {sizes!r}")
        check.non_negative("step_sizes[0] (min)", sizes[0])
        check.number("step_sizes[1] (max)", sizes[1])
        if not sizes[0] <= sizes[1]:
            raise ValueError(
                f"step_sizes={tuple(sizes)!r} is invalid: it must be a pair 0 ≤ min ≤ max"
            )

    def lr_inside(self, group: dict) -> bool:
        return True

    def core(self, group: dict) -> list:
        return [scale_by_rprop()]
