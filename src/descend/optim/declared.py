"""``Declared``: an optimizer is one class declaration — its keywords, its frameworks' defaults,
its spec names and the core of its chain; this base class does the rest.

A declaration::

    class Lion(Declared):
        \"\"\"Lion (Chen et al. 2023): u = sign(β₁m + (1 − β₁)g), m ← β₂m + (1 − β₂)g.\"\"\"

        keywords = ("lr", "betas", "weight_decay")      # positional order after params
        conventions = {"torch": dict(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0,
                                     weight_decay_mode="decoupled"), "optax": {...}}
        specs = {"lion": Spec("Lion: the sign of an interpolated momentum", lab_lr=("adam", 0.3))}

        def check(self, group):                          # its own hyperparameters' checks
            check.betas(group["betas"])

        def core(self, group):                           # the transforms of its update
            return [scale_by_lion()]

From it, :class:`Declared` makes

* ``__init__`` with a real signature: ``(params, <keywords>=None, *, <the rows' other keys>=None,
  <the common keywords>)`` (``inspect.signature``, ``help()``, torch-style positional calls and
  "unexpected keyword" errors work as for a hand-written class); ``None`` means "the
  convention's default". The common keywords are ``maximize``, ``weight_decay_mode`` /
  ``decoupled_weight_decay`` (when the rows have ``weight_decay``), ``convention``,
  ``nonfinite``, ``max_grad_norm``, ``clip_value`` and torch's machinery switches
  (``foreach``, ``differentiable``, ``capturable``, ``fused``) plus ``process_group``;
* ``validate`` = the common checks + :meth:`check`;
* ``chain(group)`` = [clip] [maximize] [L2 decay] → :meth:`core` → [lr] [decoupled decay],
  cached per :meth:`shape` (the group's structural settings: ``structure`` keys and the
  common switches; numbers are read from the group at every step through ``hp``);
* registration of every ``specs`` name (:mod:`descend.optim.registry`), so ``from_spec``, the
  CLI, the lab, the web catalogue and ``explain`` know it once its module is imported.

``couples = True`` says that one coordinate's update reads others (norms, factored moments,
matrices, a global estimate): the lab then steps each run with its own optimizer.

``momentum_based = True`` adds the keyword-only switch ``cautious=False`` (Liang et al. 2024,
https://arxiv.org/abs/2411.16085): with ``cautious=True`` the core is wrapped in
:class:`descend.transforms.cautious`, which keeps the update only where it agrees in sign with
the gradient, u ← u ⊙ 1[u ⊙ g > 0] · n/(Σ1[·] + 1) per tensor, before the learning rate and
decoupled decay (:meth:`cautious_core` says what is masked; :meth:`has_momentum` refuses the
switch where a group has no momentum, e.g. SGD with momentum = 0).

A declaration is an ordinary subclass: override any method (``chain``, ``load_state_dict``,
``_keeps_step`` …) or add public ones.
"""

from __future__ import annotations

import inspect
from typing import ClassVar

from ..transforms import Transform, cautious, chain
from . import validation as check
from ._common import check_common, structure, wrap
from .base import ChainOptimizer
from .conventions import resolve
from .registry import Spec, register

__all__ = ["COMMON", "Declared", "Spec"]

#: Keyword-only arguments every declared optimizer takes, with their defaults.
COMMON: dict[str, object] = {
    "maximize": False,
    "weight_decay_mode": None,
    "decoupled_weight_decay": None,
    "convention": "torch",
    "nonfinite": "propagate",
    "max_grad_norm": None,
    "clip_value": None,
    "foreach": None,
    "differentiable": False,
    "capturable": False,
    "fused": None,
    "process_group": "auto",
}
_DECAY_ONLY = ("weight_decay_mode", "decoupled_weight_decay")
#: the keyword-only switch of momentum-based declarations (``momentum_based = True``)
CAUTIOUS = {"cautious": False}


class Declared(ChainOptimizer):
    """Base of the named optimizers (see the module docstring for the declaration)."""

    #: positional keywords after ``params``, in the reference implementation's order
    keywords: ClassVar[tuple[str, ...]] = ()
    #: framework -> default hyperparameters; ``"torch"`` is required (the default convention)
    conventions: ClassVar[dict[str, dict]] = {}
    #: spec name -> :class:`Spec`
    specs: ClassVar[dict[str, Spec]] = {}
    #: the accepted values of the string-valued keys (the web page's choices)
    choices: ClassVar[dict[str, tuple[str, ...]]] = {}
    #: group keys whose value changes the chain's shape (numbers are read per step)
    structure: ClassVar[tuple[str, ...]] = ()
    #: the update of a coordinate reads other coordinates (the lab gives each run its own)
    couples: ClassVar[bool] = False
    #: the fast path may take it (its chain's core has a kernel: ``descend.optim.fast``)
    fast_path: ClassVar[bool] = True
    #: its update carries past gradients: takes ``cautious=`` (see the module docstring)
    momentum_based: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        own = vars(cls)
        if "__init__" not in own and ("conventions" in own or "keywords" in own):
            cls.__init__ = _make_init(cls)
        register(cls)

    # -- what a declaration provides -------------------------------------------------------
    def check(self, group: dict) -> None:
        """Checks of the optimizer's own hyperparameters (the common ones are done)."""

    def core(self, group: dict) -> list[Transform]:
        """The transforms between [clip][maximize][L2] and [lr][decoupled decay]."""
        raise NotImplementedError(f"{type(self).__name__} declares no core")

    def lr_inside(self, group: dict) -> bool:
        """True when the core applies the learning rate itself (no ``scale_by_lr`` link)."""
        return False

    def shape(self, group: dict) -> tuple:
        """What makes two groups' chains differ: the ``structure`` keys and the common
        switches."""
        return structure(group, self.structure) + (bool(group.get("cautious")),)

    def has_momentum(self, group: dict) -> bool:
        """Whether this group's update carries a momentum (``cautious=True`` needs one)."""
        return True

    def cautious_core(self, group: dict, core: list[Transform]) -> list[Transform]:
        """The core with the cautious mask: by default the whole core's output is masked
        against the gradient it received."""
        return [cautious(chain(*core))]

    # -- what the base does -----------------------------------------------------------------
    def validate(self, group: dict) -> None:
        check_common(group)
        if "cautious" in group:
            check.flag("cautious", group["cautious"])
            if group["cautious"] and not self.has_momentum(group):
                raise ValueError(
                    f"cautious=True needs a momentum: {type(self).__name__}'s update here is "
                    "the gradient itself (momentum = 0), which the mask 1[u·g > 0] would only "
                    "rescale; set momentum > 0 or cautious=False"
                )
        self.check(group)

    def chain(self, group: dict):
        key = self.shape(group)
        chains = self.__dict__.setdefault("_chains", {})
        if key not in chains:
            core = self.core(group)
            if group.get("cautious"):
                core = self.cautious_core(group, core)
            chains[key] = self.wrap(group, core)
        return chains[key]

    def wrap(self, group: dict, core: list[Transform]):
        """The chain around the core: clip → maximize → L2 → core → lr → decay
        (:func:`._common.wrap`)."""
        return wrap(group, core, lr_inside=self.lr_inside(group))


def _make_init(cls: type[Declared]):
    rows = cls.conventions
    if "torch" not in rows:
        raise TypeError(f"{cls.__name__}.conventions needs a 'torch' row (the default)")
    keys = list(dict.fromkeys(k for row in rows.values() for k in row))
    decays = "weight_decay" in keys
    common = {k: v for k, v in COMMON.items() if decays or k not in _DECAY_ONLY}
    if cls.momentum_based:
        common = {**CAUTIOUS, **common}
    missing = [k for k in cls.keywords if k not in keys and k not in common]
    if missing:
        raise TypeError(f"{cls.__name__}.keywords {missing} have no default in conventions")
    extras = [k for k in keys if k not in cls.keywords and k not in common]
    P = inspect.Parameter
    params = [P("self", P.POSITIONAL_OR_KEYWORD), P("params", P.POSITIONAL_OR_KEYWORD)]
    params += [P(k, P.POSITIONAL_OR_KEYWORD, default=common.pop(k, None)) for k in cls.keywords]
    params += [P(k, P.KEYWORD_ONLY, default=None) for k in extras]
    params += [P(k, P.KEYWORD_ONLY, default=v) for k, v in common.items()]
    signature = inspect.Signature(params)

    def __init__(self, params, *args, **kwargs):
        try:
            bound = signature.bind(self, params, *args, **kwargs)
        except TypeError as exc:  # as Python words it for a hand-written __init__
            raise TypeError(f"{cls.__name__}.__init__() {exc}") from None
        bound.apply_defaults()
        values = dict(bound.arguments)
        _construct(self, cls, values, keys)

    __init__.__signature__ = signature
    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    __init__.__doc__ = f"Build {cls.__name__}; see the class docstring. Defaults by convention."
    return __init__


def _construct(self: Declared, cls: type[Declared], values: dict, keys: list[str]) -> None:
    if values["differentiable"] or values["capturable"]:
        raise ValueError("differentiable=True and capturable=True are not supported by descend")
    convention = values["convention"]
    given = {k: values[k] for k in keys if k in values and k not in COMMON}
    mode = values.get("weight_decay_mode")
    decoupled = values.get("decoupled_weight_decay")
    if decoupled is not None:
        implied = "decoupled" if decoupled else "l2"
        if mode is not None and mode != implied:
            raise ValueError(
                f"decoupled_weight_decay={decoupled} contradicts weight_decay_mode={mode!r}; "
                "give only one of them"
            )
        mode = implied
    if "weight_decay_mode" in keys:
        given["weight_decay_mode"] = mode
    defaults = resolve(cls.conventions, convention, given, owner=cls.__name__)
    defaults.update(
        maximize=values["maximize"],
        max_grad_norm=values["max_grad_norm"],
        clip_value=values["clip_value"],
    )
    if cls.momentum_based:
        defaults["cautious"] = values["cautious"]
    self._chains = {}
    ChainOptimizer.__init__(
        self,
        values["params"],
        defaults,
        nonfinite=values["nonfinite"],
        fused=values["fused"],
        process_group=values["process_group"],
    )
