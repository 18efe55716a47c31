"""From optimizer specs to validated run configurations, grouped by chain structure.

Each run of the lab is one (spec, start, seed). A spec is an optimizer spec string
(``"momentum:lr=0.01,momentum=0.5"``, see :func:`descend.optim.parse_spec`). A spec without
``lr`` takes the landscape's default learning rate for that optimizer. Each distinct spec is
checked once by building its optimizer on a dummy parameter, so invalid hyperparameters are
reported per run (the sweep marks them) instead of stopping the whole grid.

Runs whose optimizers differ only in numbers that the transforms accept as tensors
(:data:`PER_RUN`) share one optimizer: those numbers become (N, 1) tensors, one row per run.
Anything else (the optimizer name, the convention, flags, an initial accumulator value)
separates groups.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from descend.optim import parse_spec
from descend.optim.spec import NOT_HYPERPARAMETERS, REGISTRY, resolve_kwargs

# Group entries the transforms read as per-run tensors (hp references, broadcast by rows).
PER_RUN = ("lr", "momentum", "dampening", "eps", "weight_decay", "alpha", "lr_decay")
PER_RUN += ("momentum_decay", "damping")
# Clipping is applied per row by the lab itself (see engine), so its sizes are per run too.
CLIPPING = ("max_grad_norm", "clip_value")
_NOT_HYPERPARAMETERS = NOT_HYPERPARAMETERS | {"max_params", "initial_lr", "base_lr"}


@dataclass
class Config:
    """One validated optimizer configuration (the part of a run that is not start or seed)."""

    text: str  # the spec as given
    name: str  # registry name
    given: dict  # keys the spec (or the landscape's default lr) set
    group: dict = field(default_factory=dict)  # the optimizer's full param group, numbers
    error: str | None = None  # why the configuration is invalid, else None
    lr_from_landscape: bool = False

    @property
    def is_newton(self) -> bool:
        return self.name == "newton"

    @property
    def couples(self) -> bool:
        """Whether the optimizer's update of a coordinate reads other coordinates (its
        declaration's ``couples``): its runs must not share one (N, d) parameter."""
        return bool(getattr(REGISTRY[self.name].cls, "couples", False))

    @property
    def label(self) -> str:
        """Canonical spec: the name and every key that was set, lr included."""
        items = ",".join(f"{k}={_show(v)}" for k, v in self.given.items())
        return f"{self.name}:{items}" if items else self.name

    def hyperparameters(self) -> dict[str, float]:
        """The numeric hyperparameters (betas split into beta1, beta2), for the metrics table."""
        out: dict[str, float] = {}
        for key, value in self.group.items():
            if key == "betas":
                out["beta1"], out["beta2"] = float(value[0]), float(value[1])
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                out[key] = float(value)
        return out

    def structure(self) -> tuple:
        """What must agree for two configurations to share one optimizer."""
        parts = [self.name]
        for key in sorted(self.group):
            value = self.group[key]
            if key in PER_RUN or key == "betas":
                continue
            if key in CLIPPING:
                value = value is None
            parts.append((key, value if _hashable(value) else repr(value)))
        return tuple(parts)


def _hashable(value) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _show(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "(" + ",".join(_show(v) for v in value) + ")"
    return str(value)


def split_specs(specs: str | Sequence[str]) -> list[str]:
    """Spec strings from one string (separated by ``;`` or spaces) or a list of them."""
    items = [specs] if isinstance(specs, str) else list(specs)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"optimizer specs must be strings like 'adam:lr=0.01', got {item!r}")
        # Spaces separate specs, except inside a tuple: "adam:betas=(0.9, 0.95)".
        out.extend(
            part.replace("\0", " ")
            for chunk in item.split(";")
            for part in re.sub(r"\([^()]*\)", lambda m: m[0].replace(" ", "\0"), chunk).split()
        )
    if not out:
        raise ValueError("no optimizer given: pass at least one spec such as 'adam:lr=0.01'")
    return out


def build_configs(specs: Sequence[str], default_lrs: dict[str, float]) -> list[Config]:
    """Parse and validate each spec (unknown names and keys raise ValueError; invalid values
    give a Config with ``error`` set). Specs without ``lr`` use ``default_lrs[name]``."""
    configs = []
    cache: dict[tuple, Config] = {}
    for text in specs:
        name, kwargs = parse_spec(text)
        from_landscape = "lr" not in kwargs and name in default_lrs
        if from_landscape:
            kwargs = {"lr": float(default_lrs[name]), **kwargs}
        key = (name, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
        if key not in cache:
            cache[key] = _validate(text, name, kwargs, from_landscape)
        configs.append(cache[key])
    return configs


def _validate(text: str, name: str, kwargs: dict, from_landscape: bool) -> Config:
    config = Config(text=text, name=name, given=dict(kwargs), lr_from_landscape=from_landscape)
    cls = REGISTRY[name][0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = cls([torch.zeros(1, requires_grad=True)], **resolve_kwargs(name, kwargs))
    except (ValueError, TypeError) as exc:
        config.error = str(exc)
        return config
    group = {k: v for k, v in opt.param_groups[0].items() if k not in _NOT_HYPERPARAMETERS}
    config.group = group
    for key in CLIPPING:
        value = group.get(key)
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)):
            config.error = f"{key}={value!r} is invalid: it must be a finite number > 0"
    return config


def per_run_value(values: list, rows: torch.Tensor, dtype: torch.dtype) -> float | torch.Tensor:
    """A hyperparameter of a group: ``values`` has one entry per distinct configuration and
    ``rows`` gives each run's configuration. One value shared by all stays a number (the
    optimizers' scalar path, bitwise the same as a single run); values that differ become an
    (N, 1) tensor, one row per run."""
    first = values[0]
    if all(v == first for v in values):
        return first
    table = torch.tensor([float(v) for v in values], dtype=dtype)
    return table[rows].reshape(-1, 1)
