"""The contract every transform follows, and `chain`.

A transform is a small object with an ``init`` / ``update`` pair, in the spirit of optax's
``GradientTransformation``, adapted to torch's mutable world:

* **State is per parameter and updated in place.** ``init(param, state)`` adds this transform's
  entries to the parameter's state dict (``optimizer.state[p]``) if they are absent;
  ``update`` mutates them. Keys follow torch.optim's names (``exp_avg``, ``square_avg``,
  ``momentum_buffer``, …) so ``state_dict()`` is compatible with torch's and a torch state dict
  loads straight in. Unlike optax nothing is returned but the new updates.
* **Updates flow through the chain as a list of tensors**, one per parameter, starting with the
  gradients. The chain's output ``u`` is applied by the optimizer as ``θ ← θ − u`` (so the
  learning rate is itself a link, :func:`scale_by_lr`, and its position in the chain decides
  whether it sits inside or outside momentum). A transform may modify the list in place only
  after :meth:`Context.writable` has made it the chain's own copy; the gradients in ``p.grad``
  are never modified.
* **A link may leave its factor to the caller** (a chain-level fusion the chain declares):
  where the caller applies updates itself (``ctx.apply_scaled``, set by the optimizer) and
  every later link of the chain lets a pending factor through (:attr:`Transform.keeps_scales`:
  decoupled decay, which touches θ and not u; :func:`scale_by_lr`, which folds γ into the
  factor), a link that declares :attr:`Transform.defers_scale` may return a direction D and
  set ``ctx.scales`` to per-parameter numbers s (None: 1) meaning u = s·D. The optimizer
  then steps θ ← θ − s·D as one ``θ.add_(D, alpha=−s)``, D in its own dtype (Muon's
  bfloat16 O, as torch.optim.Muon adds it), instead of materialising s·D. Any other caller
  sees the plain u.
* **The step count lives in ``state["step"]``** (a float32 scalar tensor per parameter, as in
  torch); the optimizer increments it before the chain runs, so ``ctx.t`` is 1 on the first step.
* **Hyperparameters** are plain numbers, 0-d or broadcastable tensors (the lab runs thousands of
  trajectories in one tensor with one learning rate per row), or :class:`hp` references that
  are read from the parameter group at every step — that is how per-group hyperparameters and
  torch's lr schedulers reach a transform.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

Scalar = float | int | Tensor


@dataclass(frozen=True)
class hp:  # noqa: N801 - reads like a keyword in chains: scale_by_adam(b1=hp("betas", 0))
    """A hyperparameter read from the parameter group at each step: ``group[key]`` or
    ``group[key][index]`` (e.g. ``hp("betas", 1)`` is β₂)."""

    key: str
    index: int | None = None

    def resolve(self, group: dict) -> Any:
        if self.key not in group:
            raise KeyError(f"hyperparameter {self.key!r} is not in the parameter group")
        value = group[self.key]
        return value if self.index is None else value[self.index]


@dataclass
class Context:
    """What a transform sees besides the updates: the group, the step counts, the trace."""

    group: dict
    steps: list[Tensor]
    trace: dict[str, list[Tensor]] | None = None
    owned: bool = False
    # Per-element factor that turns the first moment into the update, before the learning
    # rate; adaptive transforms set it so scale_by_lr can report the effective lr.
    precond: list[Tensor] | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    # Whether the link being called may leave u = s·D with ``scales`` (see the module
    # docstring); set per link by Chain.update from the caller's value.
    apply_scaled: bool = False
    scales: list | None = None
    # computed once per step (not functools.cached_property: its lock stops torch.compile)
    _t: list | None = field(default=None, repr=False)
    _uniform_t: tuple | None = field(default=None, repr=False)

    def value(self, x: Any) -> Any:
        """Resolve an :class:`hp` reference against the group; other values pass through.

        A one-element tensor (``torch.tensor(1e-3)``, or ``.reshape(1, 1)``: torch accepts
        any shape) is a number, as in torch.optim, which reads it with ``.item()``; only a
        tensor of several values (the lab's per-run column) stays a tensor and broadcasts.
        Under ``torch.compile`` a one-element tensor stays a 0-d float64 tensor (reading it
        would end the graph, and a scheduler's new value would not reach a compiled step)."""
        value = x.resolve(self.group) if isinstance(x, hp) else x
        if isinstance(value, Tensor) and value.numel() == 1:
            if torch.compiler.is_compiling():  # float64, as the number .item() gives
                return value.reshape(()).to(torch.float64)
            return value.item()
        return value

    @property
    def t(self) -> list:
        """Step count of each parameter (1 on the first step) as Python floats; under
        ``torch.compile`` float64 0-d tensors (so the coefficients computed from them round
        as the eager step's Python floats do, and the graph reads the counters as it runs)."""
        if self._t is None:
            if torch.compiler.is_compiling():  # float64, as Python's numbers
                self._t = [s.to(torch.float64) for s in self.steps]
            else:
                self._t = [float(s) for s in self.steps]
        return self._t

    @property
    def uniform_t(self) -> float | None:
        """The common step count when every parameter has the same one (the usual case);
        None under ``torch.compile`` (comparing step tensors would read them)."""
        if self._uniform_t is None:
            ts = self.t
            same = bool(ts) and not torch.compiler.is_compiling() and all(x == ts[0] for x in ts)
            self._uniform_t = (ts[0] if same else None,)
        return self._uniform_t[0]

    def per_param(self, fn) -> list:
        """``[fn(t) for each parameter]``, computed once when all step counts agree."""
        if self.uniform_t is not None:
            return [fn(self.uniform_t)] * len(self.steps)
        return [fn(t) for t in self.t]

    def writable(self, updates: list[Tensor]) -> list[Tensor]:
        """Return ``updates`` safe to modify in place (a copy the first time, since the
        incoming list holds the parameters' own ``.grad`` tensors)."""
        if self.owned:
            return updates
        self.owned = True
        return [u.clone() for u in updates]

    def materialise(self, updates: list[Tensor], params: list[Tensor]) -> list[Tensor]:
        """The updates as plain u (each s·D in its parameter's dtype) when a link left a
        factor pending; clears ``scales``. For a link that reads u and lets no factor by."""
        if self.scales is None:
            return updates
        out = scaled(updates, self.scales, params)
        self.scales, self.owned = None, True
        return out

    @property
    def tracing(self) -> bool:
        return self.trace is not None

    def record(self, name: str, tensors: Sequence[Tensor] | Sequence[float]) -> None:
        """Store a copy of an intermediate quantity for the trace hook (no-op when off)."""
        if self.trace is None:
            return
        self.trace[name] = [
            t.detach().clone() if isinstance(t, Tensor) else torch.tensor(t) for t in tensors
        ]


def scaled(directions: list[Tensor], scales: list, params: list[Tensor]) -> list[Tensor]:
    """u = s·D for pending factors ``scales`` (None: D itself), each in its parameter's dtype."""
    return [
        d if s is None else d.to(p.dtype).mul_(s)
        for d, s, p in zip(directions, scales, params, strict=True)
    ]


def apply_updates(params: list[Tensor], updates: list[Tensor], scales: list | None) -> None:
    """θ ← θ − u: one ``_foreach_sub_`` for the plain updates, and θ.add_(D, alpha=−s) for
    each update a link left as a direction D with a pending factor s (``Context.scales``)."""
    if scales is None:
        torch._foreach_sub_(params, updates)
        return
    plain = [i for i, s in enumerate(scales) if s is None]
    if plain:
        torch._foreach_sub_([params[i] for i in plain], [updates[i] for i in plain])
    for p, d, s in zip(params, updates, scales, strict=True):
        if s is not None:
            p.add_(d, alpha=-s)


@dataclass
class KernelPlan:
    """How the fast path (:mod:`descend.optim.fast`) runs a core transform as one kernel: the
    state keys of the kernel's three slots, the key created on first use (filled with
    ``lazy_fill``, zeros when None) and an extra per-parameter scalar (NAdam's μ-product)."""

    slots: tuple[str | None, str | None, str | None] = (None, None, None)
    lazy: str | None = None
    lazy_fill: float | Tensor | None = None  # a Tensor: the lab's (N, 1) per-run values
    extra: str | None = None
    # Per-parameter Python numbers of the state the kernel reads and updates in place, as
    # {Args field: state key} (Schedule-Free's γ_max and Σw): passed as arrays of doubles,
    # written back to the state after the call.
    host: dict | None = None
    # per_tensor(ts) -> (Args field, one number per tensor) for a value Python must compute
    # each step from each tensor's step t (ADOPT's clip_lambda function), or None
    per_tensor: Callable[[list[float]], tuple[str, list[float]]] | None = None
    # Adadelta, Rprop, ASGD: the extra scalar created on first use with this value, as a 0-d
    # tensor of torch's scalar dtype (ASGD's η₀ = γ), when ``init`` does not create it; and
    # further per-parameter 0-d state as (``Args`` pointer field, state key) pairs (ASGD's μ:
    # ``("asgd_mu", "mu")``; its dtype flag is the field's name + ``_f64``).
    extra_fill: float | None = None
    scalars: tuple[tuple[str, str], ...] = ()


class Transform:
    """Base class: subclasses set ``state_keys`` and implement ``init`` and ``update``.

    A transform that has a fast-path kernel declares it: ``kernel`` names the kernel family
    (``descend.native.abi.FAMILIES``), ``absorbs`` the transform types it may fuse when they
    directly follow it (RMSprop's momentum), and :meth:`kernel_plan` fills the kernel's
    fields from the group's numbers, exactly as :meth:`update` reads them.
    """

    state_keys: tuple[str, ...] = ()
    #: record name -> (symbol, meaning): how ``descend explain`` heads this transform's own
    #: intermediates (the common ones — m, v, denom, update … — are known already)
    columns: dict[str, tuple[str, str]] = {}
    kernel: str | None = None
    absorbs: tuple[type, ...] = ()
    #: may leave its update as a direction with a pending factor (``ctx.scales``) when the
    #: chain allows it (``ctx.apply_scaled``); see the module docstring
    defers_scale: bool = False
    #: lets a pending factor of an earlier link through (it ignores u, or folds a number into
    #: the factors); a chain defers only where every later link does
    keeps_scales: bool = False

    def kernel_plan(self, read, fields: dict, absorbed: Transform | None) -> KernelPlan:
        """Fill ``fields`` (``descend.native.abi.Args`` names) for one step and return the
        state layout. ``read.number(ref, name)`` / ``read.scaling(ref, name)`` give a
        hyperparameter as ``update`` would see it (a number; ``scaling`` also allows the lab's
        per-row tensors) or raise the fast path's ``Unsupported``."""
        raise NotImplementedError(f"{type(self).__name__} has no fast-path kernel")

    def init(self, param: Tensor, state: dict) -> None:  # noqa: B027 - stateless by default
        """Add this transform's entries to one parameter's state dict, if absent."""

    def update(
        self, updates: list[Tensor], states: list[dict], params: list[Tensor], ctx: Context
    ) -> list[Tensor]:
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


class Chain(Transform):
    """Transforms applied in order; the output of one is the input of the next.

    ``chain(clip_by_global_norm(1.0), scale_by_adam(), add_decayed_weights(1e-2), scale_by_lr())``
    """

    def __init__(self, *transforms: Transform):
        flat: list[Transform] = []
        for tr in transforms:
            if not isinstance(tr, Transform):
                raise TypeError(f"chain() takes transforms, got {type(tr).__name__}: {tr!r}")
            flat.extend(tr.transforms if isinstance(tr, Chain) else [tr])
        seen: dict[str, Transform] = {}
        for tr in flat:
            for key in tr.state_keys:
                if key in seen and seen[key] is not tr:
                    raise ValueError(
                        f"two transforms in the chain use the state key {key!r} "
                        f"({seen[key]!r} and {tr!r}); give one of them another key= name"
                    )
                seen[key] = tr
        self.transforms = flat
        self.state_keys = tuple(seen)

    defers_scale = True  # a chain passes the caller's permission on to its links

    def _deferring(self) -> list[bool]:
        """Per link, whether it may leave a factor pending: it declares so and every link
        after it keeps one (computed once; absent from chains pickled before it existed)."""
        flags = self.__dict__.get("_defer")
        if flags is None or len(flags) != len(self.transforms):
            links = self.transforms
            flags = [
                tr.defers_scale and all(t.keeps_scales for t in links[i + 1 :])
                for i, tr in enumerate(links)
            ]
            self._defer = flags
        return flags

    @property
    def keeps_scales(self) -> bool:  # type: ignore[override]
        return all(t.keeps_scales for t in self.transforms)

    def init(self, param: Tensor, state: dict) -> None:
        for tr in self.transforms:
            tr.init(param, state)

    def update(self, updates, states, params, ctx):
        allowed = ctx.apply_scaled
        try:
            for tr, defer in zip(self.transforms, self._deferring()):
                ctx.apply_scaled = allowed and defer
                updates = tr.update(updates, states, params, ctx)
        finally:
            ctx.apply_scaled = allowed
        return updates

    def __repr__(self) -> str:
        return "chain(" + ", ".join(map(repr, self.transforms)) + ")"


def chain(*transforms: Transform) -> Chain:
    """Compose transforms left to right (optax's ``chain``)."""
    return Chain(*transforms)
