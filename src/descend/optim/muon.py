"""Muon: momentum orthogonalised by Newton–Schulz, with AdamW for what is not a matrix."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..transforms import (
    add_weight_decay,
    chain,
    scale_by_adam,
    scale_by_lr,
    scale_by_muon,
    scale_by_nadam,
)
from ..transforms.base import Transform, hp
from ..transforms.muon import ADJUST_LR_FNS, EPS_MODES, LAYOUTS, MOMENTUM_FORMS_MUON, NS_DTYPES
from ..transforms.partition import partition
from . import validation as check
from ._common import pre_links
from .declared import Declared, Spec

_NS = (3.4445, -4.7750, 2.0315)  # Keller Jordan's quintic coefficients (all three frameworks)


def is_matrix(p: Tensor) -> bool:
    """Whether Muon orthogonalises ``p``: a 2-D tensor (the others step with AdamW)."""
    return p.dim() == 2


class Muon(Declared):
    """Muon (Jordan et al. 2024, https://kellerjordan.github.io/posts/muon/): orthogonalised
    momentum for the matrices of a network, AdamW for everything else.

    For each matrix W (m × n) with gradient G, torch.optim.Muon's equations (the default):

        B ← μB + (1 − μ)G                                 (momentum_form="ema")
        M = (1 − μ)G + μB if nesterov else B
        O = NS(M): X = M/max(‖M‖_F, ε) (bfloat16, on Mᵀ if m > n), then ns_steps times
            A = XXᵀ, X ← aX + (bA + cA²)X                  ((a, b, c) = ns_coefficients)
        θ ← θ(1 − γλ) − γ·s·O,   s = √max(1, m/n)           (adjust_lr_fn None / "original")
                                  s = rms_rate·√max(m, n)   ("match_rms_adamw", Liu et al. 2025,
                                                              https://arxiv.org/abs/2502.16982)

    Every other parameter (vectors, scalars, and matrices in a group with ``use_muon=False``)
    steps with AdamW: u = m̂/(√v̂ + ε_a), θ ← θ(1 − γλ_a) − γ·r·u with ``adam_betas``,
    ``adam_eps`` = ε_a, ``adam_weight_decay`` = λ_a and ``adam_lr_ratio`` = r.
    torch.optim.Muon refuses anything but matrices and its documentation pairs it with a
    ``torch.optim.AdamW`` at AdamW's defaults; descend does both in one optimizer (build the
    groups with :func:`muon_groups`).

    Conventions (``convention=``), each the framework's own Muon on the same arrays:

    * ``"torch"``: torch.optim.Muon (lr 1e-3, λ 0.1, μ 0.95, ε 1e-7, Newton–Schulz in
      bfloat16, ε clamped), AdamW at torch's defaults (λ_a 1e-2).
    * ``"optax"``: ``optax.contrib.muon``: B = μB + (1 − μ)G divided by its bias corrections
      (``debias``; Nesterov: μB/(1 − μᵗ⁺¹) + (1 − μ)G/(1 − μᵗ)), X = M/(‖M‖_F + ε), ε 1e-8,
      the iteration in the parameter's dtype, s = √max(1, n/m) (``layout="in_out"``: optax's
      kernels are (in, out)), λ 0; the non-matrices step with optax's ``adamw(nesterov=True)``
      (``adam_nesterov``: NAdam's look-ahead without a schedule; None, optax's default,
      follows ``nesterov`` as optax's does), ε_a = 1e-8, λ_a 0. optax's
      ``consistent_rms=x`` is ``adjust_lr_fn="match_rms_adamw", rms_rate=x``.
    * ``"keras"``: ``keras.optimizers.Muon``: B = μB + G (``momentum_form="modern"``),
      Nesterov G + μB, X = M/(‖M‖_F + ε) with Keras' float32 norm (``eps_mode="add_float32"``),
      s = 0.2·√max(m, n), λ = λ_a = 4e-3, the AdamW of the non-matrices in Keras' ε̂ form
      (``adam_eps_placement="hat"``, ε_a 1e-7). Keras' ``rms_rate=None`` is
      ``adjust_lr_fn="none"``.

    Under FSDP2 (DTensor shards) the momentum B stays sharded; M is gathered (one all-gather
    per matrix and step), orthogonalised whole on every rank, and each rank keeps its rows of
    O (:mod:`descend.transforms._sharded`): 2 ranks equal one process.

    The AdamW part is an AdamW with lr γ·r, its decay θ(1 − γrλ_a) included (torch's separate
    AdamW, optax's ``adam_learning_rate``); Keras decays those parameters with γ instead —
    the same unless ``adam_lr_ratio`` ≠ 1.

    Discrepancies between the references, for the record: torch's docstring writes
    B ← μB + G but its code (like Keller Jordan's) computes the EMA B ← μB + (1 − μ)G;
    optax's non-matrix AdamW inherits Muon's ``nesterov`` and ``eps``; Keras rounds the norm
    of X₀ to float32 even in float64, so its Muon agrees with descend (and with itself under
    another XLA summation order) to ~1e-8 over 100 steps, not to rounding; and torch, for a
    bfloat16 parameter with ``nesterov=False``, normalises its momentum buffer in place
    (``grad.bfloat16()`` is the buffer itself), which descend does not reproduce.
    """

    keywords = (
        "lr",
        "weight_decay",
        "momentum",
        "nesterov",
        "ns_coefficients",
        "eps",
        "ns_steps",
        "adjust_lr_fn",
    )
    conventions = {
        "torch": dict(
            lr=1e-3,
            weight_decay=0.1,
            momentum=0.95,
            nesterov=True,
            ns_coefficients=_NS,
            eps=1e-7,
            ns_steps=5,
            adjust_lr_fn=None,
            weight_decay_mode="decoupled",
            rms_rate=0.2,
            layout="out_in",
            momentum_form="ema",
            debias=False,
            eps_mode="clamp",
            ns_dtype="bfloat16",
            use_muon=True,
            adam_betas=(0.9, 0.999),
            adam_eps=1e-8,
            adam_weight_decay=1e-2,
            adam_lr_ratio=1.0,
            adam_nesterov=False,
            adam_eps_placement="outside",
        ),
        "optax": dict(
            lr=1e-3,
            weight_decay=0.0,
            momentum=0.95,
            nesterov=True,
            ns_coefficients=_NS,
            eps=1e-8,
            ns_steps=5,
            adjust_lr_fn="original",
            weight_decay_mode="decoupled",
            rms_rate=0.2,
            layout="in_out",
            momentum_form="ema",
            debias=True,
            eps_mode="add",
            ns_dtype="param",
            use_muon=True,
            adam_betas=(0.9, 0.999),
            adam_eps=1e-8,
            adam_weight_decay=0.0,
            adam_lr_ratio=1.0,
            adam_nesterov=None,
            adam_eps_placement="outside",
        ),
        "keras": dict(
            lr=1e-3,
            weight_decay=4e-3,
            momentum=0.95,
            nesterov=True,
            ns_coefficients=_NS,
            eps=1e-7,
            ns_steps=5,
            adjust_lr_fn="match_rms_adamw",
            weight_decay_mode="decoupled",
            rms_rate=0.2,
            layout="in_out",
            momentum_form="modern",
            debias=False,
            eps_mode="add_float32",
            ns_dtype="param",
            use_muon=True,
            adam_betas=(0.9, 0.999),
            adam_eps=1e-7,
            adam_weight_decay=4e-3,
            adam_lr_ratio=1.0,
            adam_nesterov=False,
            adam_eps_placement="hat",
        ),
    }
    specs = {
        "muon": Spec(
            "Muon: momentum orthogonalised by Newton–Schulz (matrices), AdamW for the rest",
            lab_lr=("adam", 1.0),
        )
    }
    choices = {
        "adjust_lr_fn": tuple(c for c in ADJUST_LR_FNS if c is not None),
        "layout": LAYOUTS,
        "momentum_form": MOMENTUM_FORMS_MUON,
        "eps_mode": EPS_MODES,
        "ns_dtype": NS_DTYPES,
        "adam_eps_placement": ("outside", "hat"),
    }
    structure = (
        "nesterov",
        "adjust_lr_fn",
        "layout",
        "momentum_form",
        "debias",
        "eps_mode",
        "ns_dtype",
        "use_muon",
        "adam_nesterov",
        "adam_eps_placement",
    )
    couples = True
    #: ``descend explain`` gives it a (1, n) matrix for a scalar or vector point (as the lab)
    point_as_matrix = True

    def check(self, group: dict) -> None:
        check.one_element_lr(
            group["lr"],
            "Muon orthogonalises whole matrices, so a per-row lr has no meaning (the landscape "
            "lab gives each run its own optimizer)",
        )
        check.decay_rate("momentum", group["momentum"])
        check.non_negative("eps", group["eps"])
        check.non_negative("rms_rate", group["rms_rate"])
        check.flag("nesterov", group["nesterov"])
        check.flag("debias", group["debias"])
        check.flag("use_muon", group["use_muon"])
        if group["adam_nesterov"] is not None:
            check.flag("adam_nesterov", group["adam_nesterov"])
        steps = group["ns_steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps < 100:
            raise ValueError(
                f"ns_steps={steps!r} is invalid: it must be an integer in [0, 100) (torch "
                "refuses 100 or more)"
            )
        coefficients = group["ns_coefficients"]
        if not isinstance(coefficients, (tuple, list)) or len(coefficients) != 3:
            raise ValueError(
                f"ns_coefficients={coefficients!r} is invalid: it must be three numbers (a, b, c)"
            )
        for c in coefficients:
            check.number("ns_coefficients", c)
        if group["adjust_lr_fn"] not in ADJUST_LR_FNS:
            raise ValueError(
                f"adjust_lr_fn={group['adjust_lr_fn']!r} is invalid: it must be None, "
                "'original', 'match_rms_adamw' or 'none'"
            )
        for key in ("layout", "momentum_form", "eps_mode", "ns_dtype", "adam_eps_placement"):
            check.choice(key, group[key], self.choices[key])
        if group["debias"] and group["momentum_form"] != "ema":
            raise ValueError(
                "debias=True needs momentum_form='ema' (optax's bias-corrected EMA); the "
                "'modern' form B = μB + G has no zero-start bias to correct"
            )
        betas = group["adam_betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"adam_betas must be a pair (beta1, beta2), got {betas!r}")
        check.decay_rate("adam_betas[0]", betas[0])
        check.decay_rate("adam_betas[1]", betas[1])
        check.non_negative("adam_eps", group["adam_eps"])
        check.non_negative("adam_weight_decay", group["adam_weight_decay"])
        check.non_negative("adam_lr_ratio", group["adam_lr_ratio"])
        if self._adam_nesterov(group) and group["adam_eps_placement"] == "hat":
            raise ValueError(
                "adam_nesterov=True (optax's look-ahead AdamW) takes adam_eps_placement='outside'"
            )

    def muon_links(self, group: dict) -> list[Transform]:
        """The matrices' part: [L2] → Newton–Schulz with the shape scale and γ → [decay]."""
        mode = group["weight_decay_mode"]
        links: list[Transform] = [add_weight_decay(mode="l2")] if mode == "l2" else []
        links += [
            scale_by_muon(
                nesterov=group["nesterov"],
                momentum_form=group["momentum_form"],
                debias=group["debias"],
                eps_mode=group["eps_mode"],
                ns_dtype=group["ns_dtype"],
                adjust_lr_fn=group["adjust_lr_fn"],
                layout=group["layout"],
            ),
        ]
        if mode != "l2":
            links.append(add_weight_decay(mode=mode))
        return links

    def adam_links(self, group: dict) -> list[Transform]:
        """The AdamW part, an AdamW whose lr is γ·r: decoupled decay θ(1 − γrλ_a)."""
        b1, b2, eps = hp("adam_betas", 0), hp("adam_betas", 1), hp("adam_eps")
        if self._adam_nesterov(group):
            core = scale_by_nadam(
                b1, b2, eps, momentum_decay=0.0, schedule="none", product_dtype="param"
            )
        else:
            core = scale_by_adam(b1, b2, eps, eps_placement=group["adam_eps_placement"])
        return [
            core,
            scale_by_lr(_adam_lr()),
            add_weight_decay(hp("adam_weight_decay"), mode="decoupled", lr=_adam_lr()),
        ]

    @staticmethod
    def _adam_nesterov(group: dict) -> bool:
        """``adam_nesterov``, where None (optax) means Muon's own ``nesterov``."""
        nesterov = group["adam_nesterov"]
        return group["nesterov"] if nesterov is None else nesterov

    def _step_group(self, index: int, group: dict, params: list) -> None:
        if any(p.is_complex() for p in params):
            # as real views a complex matrix would be 3-D (stepped by AdamW) and a complex
            # vector 2-D (orthogonalised): neither is Muon's update of a complex parameter
            raise RuntimeError(
                "Muon does not support complex parameters (Newton–Schulz orthogonalises real "
                "matrices; torch.optim.Muon refuses them too): step them with another "
                "optimizer, or as torch.view_as_real views"
            )
        super()._step_group(index, group, params)

    def chain(self, group: dict):
        key = self.shape(group)
        chains = self.__dict__.setdefault("_chains", {})
        if key not in chains:
            links = pre_links(group)
            # a group with use_muon=False is all AdamW: the same partition, choosing nothing
            select = is_matrix if group["use_muon"] else _nothing
            muon, adam = chain(*self.muon_links(group)), chain(*self.adam_links(group))
            links.append(partition(select, muon, adam))
            chains[key] = chain(*links)
        return chains[key]


def _nothing(p: Tensor) -> bool:
    return False


@dataclass(frozen=True)
class _adam_lr(hp):  # noqa: N801 - used like hp(...)
    """γ·r, the AdamW part's learning rate: ``lr × adam_lr_ratio`` of the group."""

    key: str = "lr"

    def resolve(self, group: dict):
        return group["lr"] * group["adam_lr_ratio"]


def muon_groups(
    model: torch.nn.Module,
    *,
    exclude: Iterable[str] = (),
    exclude_embeddings: bool = True,
    **adam: object,
) -> list[dict]:
    """Muon's parameter groups for ``model``: the matrices Muon should orthogonalise, and an
    AdamW group (``use_muon=False``) with everything else.

    A parameter goes to AdamW when it is not 2-D (biases, norms' weights, convolution
    kernels — as torch's, optax's and Keras' Muon do), when it belongs to an
    ``nn.Embedding`` and ``exclude_embeddings`` (Keras' default, Keller Jordan's advice), or
    when its name matches one of the regular expressions ``exclude`` (Keras'
    ``exclude_layers``; pass the output layer's name, e.g. ``exclude=["fc", "lm_head"]``).
    ``adam`` keywords (``lr``, ``adam_betas``, ``adam_weight_decay`` …) go into the AdamW group::

        opt = Muon(muon_groups(model, exclude=["head"]), lr=0.02)
    """
    patterns = [re.compile(p) for p in exclude]
    embedded = set()
    if exclude_embeddings:
        for module in model.modules():
            if isinstance(module, (torch.nn.Embedding, torch.nn.EmbeddingBag)):
                embedded.update(id(p) for p in module.parameters(recurse=False))
    matrices, others = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        to_adam = not is_matrix(p) or id(p) in embedded or any(pat.search(name) for pat in patterns)
        (others if to_adam else matrices).append(p)
    groups = []
    if matrices:
        groups.append({"params": matrices})
    if others:
        groups.append({"params": others, "use_muon": False, **adam})
    return groups
