"""SOAP: Adam in the eigenbasis of Shampoo's preconditioner."""

from __future__ import annotations

from ..transforms import (
    add_weight_decay,
    chain,
    decay_after_update,
    scale_by_lr,
    scale_by_soap,
)
from ..transforms.soap import DATA_FORMATS
from . import validation as check
from ._common import pre_links
from .declared import Declared, Spec


class SOAP(Declared):
    """SOAP (Vyas et al. 2024, https://arxiv.org/abs/2409.11321): Adam run in the eigenbasis
    of Shampoo's preconditioner, as ``pytorch_optimizer.SOAP`` (its keywords, defaults and
    order). For a matrix gradient G:

        L ← β_s·L + (1 − β_s)·GGᵀ,  R ← β_s·R + (1 − β_s)·GᵀG       (β_s = shampoo_beta or β₂)
        Q_L, Q_R = eigenvectors of L, R (eigh at the first step; then every
                   precondition_frequency steps one power iteration + QR, in float32)
        m ← β₁m + (1 − β₁)G,  v ← β₂v + (1 − β₂)(Q_Lᵀ G Q_R)²
        N = Q_L [(Q_Lᵀ m Q_R)/(√v + ε)] Q_Rᵀ   (÷ (RMS(N) + ε) with normalize_gradient)
        θ ← (θ − γ·√(1 − β₂ˢ)/(1 − β₁ˢ)·N)(1 − γλ),  s = t − 1

    The first step only builds L, R and their bases (θ does not move); a dimension above
    ``max_precondition_dim`` keeps the identity, as does a vector unless ``precondition_1d``
    (then it is Adam); ``merge_dims`` merges small dimensions first; ``correct_bias=False``
    drops √(1 − β₂ˢ)/(1 − β₁ˢ). Weight decay is decoupled and applied after the step, as the
    reference does (``weight_decay_mode="l2"`` adds λθ to G instead; ``"independent"``
    decays by θ(1 − λ)). See :class:`descend.transforms.scale_by_soap`.

    Under FSDP2 (DTensor shards) each matrix's G, m and v are gathered in one all-gather, the
    step runs whole on every rank (the same result from the same values) and each rank keeps
    its shard: m and v stay sharded like the parameter, the factors and bases (``GG``, ``Q``)
    are whole plain tensors on every rank (DCP saves them once); a vector with identity bases
    steps on its shard (:mod:`descend.transforms._sharded`).

    Where the reference crashes — ``merge_dims=True`` on a tensor whose dimensions all merge
    into one (its ``merge_small_dims`` returns [1]) — descend merges it into one dimension,
    as the paper authors' SOAP does.
    """

    keywords = (
        "lr",
        "betas",
        "shampoo_beta",
        "weight_decay",
        "precondition_frequency",
        "max_precondition_dim",
        "merge_dims",
        "precondition_1d",
        "correct_bias",
        "normalize_gradient",
        "data_format",
        "eps",
    )
    conventions = {
        "torch": dict(
            lr=3e-3,
            betas=(0.95, 0.95),
            shampoo_beta=None,
            weight_decay=1e-2,
            precondition_frequency=10,
            max_precondition_dim=10000,
            merge_dims=False,
            precondition_1d=False,
            correct_bias=True,
            normalize_gradient=False,
            data_format="channels_first",
            eps=1e-8,
            weight_decay_mode="decoupled",
        )
    }
    specs = {
        "soap": Spec(
            "SOAP: Adam in the eigenbasis of Shampoo's preconditioner", lab_lr=("adam", 1.0)
        )
    }
    choices = {"data_format": DATA_FORMATS}
    structure = (
        "max_precondition_dim",
        "merge_dims",
        "precondition_1d",
        "correct_bias",
        "normalize_gradient",
        "data_format",
    )
    couples = True
    #: ``descend explain`` gives it a (1, n) matrix for a scalar or vector point (as the lab)
    point_as_matrix = True

    def check(self, group: dict) -> None:
        check.betas(group["betas"])
        if group["shampoo_beta"] is not None:
            check.decay_rate("shampoo_beta", group["shampoo_beta"])
        check.non_negative("eps", group["eps"])
        for key in ("precondition_frequency", "max_precondition_dim"):
            value = group[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key}={value!r} is invalid: it must be an integer ≥ 1")
        for key in ("merge_dims", "precondition_1d", "correct_bias", "normalize_gradient"):
            check.flag(key, group[key])
        check.choice("data_format", group["data_format"], DATA_FORMATS)

    def chain(self, group: dict):
        key = self.shape(group)
        chains = self.__dict__.setdefault("_chains", {})
        if key not in chains:
            links = pre_links(group)
            mode = group["weight_decay_mode"]
            if mode == "l2":
                links.append(add_weight_decay(mode="l2"))
            links += [
                scale_by_soap(
                    max_precondition_dim=group["max_precondition_dim"],
                    precondition_1d=group["precondition_1d"],
                    merge_dims=group["merge_dims"],
                    correct_bias=group["correct_bias"],
                    normalize_gradient=group["normalize_gradient"],
                    data_format=group["data_format"],
                ),
                scale_by_lr(),
            ]
            if mode == "decoupled":
                links.append(decay_after_update())
            elif mode == "independent":
                links.append(decay_after_update(lr=1.0))
            chains[key] = chain(*links)
        return chains[key]
