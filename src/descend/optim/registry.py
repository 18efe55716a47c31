"""Every spec name (``"adam"``, ``"momentum"``, ``"lion"`` …) and what it builds.

Optimizer classes register themselves (``Declared`` subclasses when defined, ``Newton``
explicitly) from their ``specs`` declaration; ``from_spec``, ``available()``, ``descend
optimizers``, the lab, the web catalogue and ``explain`` all read :data:`REGISTRY`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

#: The learning rates a landscape measures; every spec's ``lab_lr`` is one of them × a factor.
LAB_BASES = ("sgd", "momentum", "adam", "adagrad", "newton")


@dataclass(frozen=True)
class Spec:
    """One spec name of an optimizer class.

    Args:
        description: one line for people (``descend optimizers``, the web catalogue).
        preset: keywords the name implies (``"nesterov"`` → ``momentum=0.9, nesterov=True``).
        lab_lr: ``(base, factor)``: on a landscape, the default learning rate is the
            landscape's measured rate for ``base`` (one of :data:`LAB_BASES`) × ``factor``.
    """

    description: str
    preset: dict = field(default_factory=dict)
    lab_lr: tuple[str, float] = ("adam", 1.0)

    def __post_init__(self) -> None:
        base, factor = self.lab_lr
        if base not in LAB_BASES or not factor > 0:
            raise ValueError(
                f"lab_lr={self.lab_lr!r}: the base must be one of {', '.join(LAB_BASES)} and "
                "the factor > 0"
            )


class Entry(NamedTuple):
    cls: type
    preset: dict
    description: str
    lab_lr: tuple[str, float]


REGISTRY: dict[str, Entry] = {}

#: The spec names of the notes' optimizers (the report's own sections cover them; every
#: other registered name is one of the optimizers people use beyond the notes).
NOTES = (
    "sgd",
    "momentum",
    "momentum-ema",
    "nesterov",
    "adagrad",
    "rmsprop",
    "rmsprop-centered",
    "adam",
    "adamw",
    "amsgrad",
    "nadam",
    "newton",
)


def register(cls: type) -> type:
    """Add ``cls``'s own ``specs`` (``{name: Spec}``) to :data:`REGISTRY`; a name already
    taken by another class is an error (reloading the same class replaces its entry)."""
    for name, spec in vars(cls).get("specs", {}).items():
        if name != name.lower() or not name or " " in name or ":" in name:
            raise ValueError(f"spec name {name!r} must be lower case without spaces or ':'")
        old = REGISTRY.get(name)
        if old is not None and old.cls.__qualname__ != cls.__qualname__:
            raise ValueError(f"spec name {name!r} is taken by {old.cls.__name__}")
        REGISTRY[name] = Entry(cls, dict(spec.preset), spec.description, spec.lab_lr)
    return cls


def classes() -> list[type]:
    """The registered classes, in registration order, each once."""
    return list(dict.fromkeys(entry.cls for entry in REGISTRY.values()))
