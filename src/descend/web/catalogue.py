"""What the page offers: every optimizer spec with its hyperparameters, their kinds, choices and
defaults under each convention, and every learning-rate schedule with its keys.

Read from :mod:`descend.optim` (the registry behind ``from_spec``) and :mod:`descend.schedules`,
so a new optimizer or schedule appears on the page without touching it.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import torch

from descend import schedules
from descend.optim.base import NONFINITE
from descend.optim.conventions import CONVENTIONS
from descend.optim.spec import NOT_HYPERPARAMETERS, REGISTRY, parse_spec, resolve_kwargs
from descend.transforms import WEIGHT_DECAY_MODES

# Group entries that are not hyperparameters a person sets on the page.
_HIDDEN = NOT_HYPERPARAMETERS | {"max_params", "decoupled_weight_decay", "initial_lr", "base_lr"}
# Optional numbers: None (off) by default.
_OPTIONAL = {"max_grad_norm", "clip_value"}
# Shown first, in this order; the rest follow in the optimizer's own order.
_FIRST = ["lr", "momentum", "beta1", "beta2", "alpha", "eps", "weight_decay"]


def _choices(name: str, key: str) -> list[str] | None:
    """The accepted values of a string-valued key: the optimizer's own declaration
    (``choices``), its conventions, or the common switches'."""
    cls = REGISTRY[name].cls
    own = getattr(cls, "choices", {})
    if key in own:
        return list(own[key])
    if key == "convention":
        return _conventions(cls)
    values = {"weight_decay_mode": WEIGHT_DECAY_MODES, "nonfinite": NONFINITE}.get(key)
    return list(values) if values is not None else None


def _conventions(cls: type) -> list[str]:
    rows = getattr(cls, "conventions", {})
    return [c for c in CONVENTIONS if c in rows]


def _group(name: str, convention: str | None) -> dict:
    cls = REGISTRY[name][0]
    kwargs = {} if convention is None else {"convention": convention}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = cls([torch.zeros(1, requires_grad=True)], **resolve_kwargs(name, kwargs))
    group = {k: v for k, v in opt.param_groups[0].items() if k not in _HIDDEN}
    if "betas" in group:
        group["beta1"], group["beta2"] = (float(b) for b in group.pop("betas"))
    if hasattr(opt, "nonfinite"):
        group["nonfinite"] = opt.nonfinite
    return group


def _accepted(name: str, key: str) -> bool:
    """Whether a spec may set ``key`` for ``name`` (what ``parse_spec`` accepts)."""
    try:
        parse_spec(f"{name}:{key}=0")
    except ValueError as exc:
        return not str(exc).startswith("unknown key")
    return True


def _kind(key: str, value, choices: list[str] | None) -> str:
    if choices is not None:
        return "choice"
    if isinstance(value, bool):
        return "bool"
    return "number"


@lru_cache(maxsize=1)
def optimizers() -> dict[str, dict]:
    """name → description, class, hyperparameters [{key, kind, choices, optional}], and the
    defaults under each convention (``{"torch": {...}, ...}``; only "torch" for optimizers
    without conventions)."""
    out = {}
    for name, (cls, _preset, description, _lab) in REGISTRY.items():
        base = _group(name, None)
        conventions = _conventions(cls) if "convention" in base else []
        defaults = {c: _group(name, c) for c in conventions} or {"torch": base}
        keys = sorted(
            (k for k in base if k != "convention" and _accepted(name, k)),
            key=lambda k: _FIRST.index(k) if k in _FIRST else len(_FIRST),
        )
        if "convention" in base and not _accepted(name, "convention"):
            conventions, defaults = [], {"torch": base}
        out[name] = {
            "description": description,
            "class": cls.__name__,
            "conventions": conventions,
            "hyperparameters": [
                {
                    "key": key,
                    "kind": _kind(key, base[key], _choices(name, key)),
                    "choices": _choices(name, key),
                    "optional": key in _OPTIONAL,
                }
                for key in keys
            ],
            "defaults": {c: {k: _plain(v) for k, v in d.items()} for c, d in defaults.items()},
        }
    return out


def _plain(value):
    if isinstance(value, tuple):
        return list(value)
    return value


@lru_cache(maxsize=1)
def schedule_table() -> dict[str, dict]:
    """Schedule name → its keys and defaults ("required" marks a required key)."""
    table = {}
    for name, keys in schedules.available().items():
        table[name] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in keys.items()}
    return table
