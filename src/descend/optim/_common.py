"""What every named optimizer shares: the common keywords, their checks, and the links that
wrap the core of a chain (clipping, maximize, weight decay, learning rate)."""

from __future__ import annotations

from ..transforms import (
    WEIGHT_DECAY_MODES,
    Transform,
    add_weight_decay,
    chain,
    clip_by_global_norm,
    clip_by_value,
    flip_sign,
    scale_by_lr,
)
from . import validation as check


def check_common(group: dict) -> None:
    check.non_negative("lr", group["lr"])
    # An optimizer without weight decay (Rprop) has no weight_decay_mode; a group may still
    # carry weight_decay (its own check() says what it accepts).
    if "weight_decay_mode" in group:
        check.non_negative("weight_decay", group["weight_decay"])
        check.choice("weight_decay_mode", group["weight_decay_mode"], WEIGHT_DECAY_MODES)
    check.flag("maximize", group["maximize"])
    check.optional_positive("max_grad_norm", group["max_grad_norm"])
    check.optional_positive("clip_value", group["clip_value"])


def pre_links(group: dict) -> list[Transform]:
    """The links before anything else reads the gradient: global-norm clipping, value
    clipping, maximize's sign — each only where the group asks for it."""
    links: list[Transform] = []
    if group["max_grad_norm"] is not None:
        links.append(clip_by_global_norm())
    if group["clip_value"] is not None:
        links.append(clip_by_value())
    if group["maximize"]:
        links.append(flip_sign())
    return links


def wrap(group: dict, core: list[Transform], lr_inside: bool = False):
    """clip → maximize → L2 → core → lr → decoupled decay, as torch orders them."""
    links = pre_links(group)
    mode = group.get("weight_decay_mode")
    if mode == "l2":
        links.append(add_weight_decay(mode="l2"))
    links.extend(core)
    if not lr_inside:
        links.append(scale_by_lr())
    if mode is not None and mode != "l2":
        links.append(add_weight_decay(mode=mode))
    return chain(*links)


def structure(group: dict, keys: tuple[str, ...]) -> tuple:
    """The settings that change a chain's shape (numbers are read from the group per step)."""
    return tuple(group[k] if k in group else None for k in keys) + (
        group["max_grad_norm"] is not None,
        group["clip_value"] is not None,
        group["maximize"],
        group.get("weight_decay_mode"),
    )
