"""``ChainOptimizer``: a real ``torch.optim.Optimizer`` whose maths is a chain of transforms.

The class owns param groups, state, validation, the non-finite policy and the trace hooks;
the update rule is whatever ``chain(group)`` returns (see :mod:`descend.transforms`). Each
step, per group: increment ``state["step"]``, run the chain on the gradients, θ ← θ − u.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable

import torch
from torch import Tensor
from torch.optim.optimizer import _get_scalar_dtype
from torch.utils.hooks import RemovableHandle

from ..transforms import Chain, Context, chain, hp
from ..transforms.base import apply_updates, scaled
from . import validation as check
from .distributed import AUTO, decide, resolve_process_group

NONFINITE = ("propagate", "skip", "raise")

TraceHook = Callable[["ChainOptimizer", int, dict[str, list[Tensor]]], None]


class ChainOptimizer(torch.optim.Optimizer):
    """Base class of every descend optimizer.

    Args:
        params: parameters or param-group dicts, as for any torch optimizer.
        defaults: default hyperparameters of every group.
        nonfinite: ``"propagate"`` (torch's behaviour: NaN/Inf flow into the parameters),
            ``"skip"`` (a step whose gradients contain NaN/Inf leaves parameters and state
            untouched and increments ``state["skipped_steps"]``) or ``"raise"``
            (``FloatingPointError`` before anything changes).
        fused: ``None`` (fast single-pass kernels whenever a group qualifies), ``True`` (fast
            kernels or an error) or ``False`` (always the chain); see
            :mod:`descend.optim.fast`.
        process_group: where the decisions of ``nonfinite`` and ``max_grad_norm`` are
            reduced for plain (non-DTensor) parameters: ``"auto"`` (the
            ``ZeroRedundancyOptimizer``'s group when built by one, else none), ``None`` or a
            ``torch.distributed`` process group; DTensor parameters always reduce over
            their mesh. See :mod:`descend.optim.distributed`.
    """

    #: whether :mod:`descend.optim.fast` may step it (declared optimizers: see ``Declared``)
    fast_path: bool = False

    def __init__(
        self,
        params,
        defaults: dict,
        *,
        nonfinite: str = "propagate",
        fused: bool | None = None,
        process_group=AUTO,
    ):
        check.choice("nonfinite", nonfinite, NONFINITE)
        if fused not in (None, True, False):
            raise ValueError(f"fused must be None, True or False, got {fused!r}")
        if not (process_group is None or _is_group(process_group) or process_group == AUTO):
            raise ValueError(
                f"process_group must be 'auto', None or a ProcessGroup, got {process_group!r}"
            )
        self.nonfinite = nonfinite
        self.fused = fused
        self.process_group = resolve_process_group(process_group)
        self._trace_hooks: OrderedDict[int, TraceHook] = OrderedDict()
        self.validate(dict(defaults))
        super().__init__(params, defaults)
        if fused:
            from .fast import require

            require(self)

    # -- what subclasses provide -------------------------------------------------------
    def chain(self, group: dict) -> Chain:
        """The transforms of one step for this group's settings."""
        raise NotImplementedError

    def validate(self, group: dict) -> None:
        """Raise ValueError for an invalid hyperparameter of a (merged) group."""

    # -- param groups ------------------------------------------------------------------
    def add_param_group(self, param_group: dict) -> None:
        group = dict(param_group)
        if "decoupled_weight_decay" in group:  # torch's spelling
            decoupled = group.pop("decoupled_weight_decay")
            if decoupled is not None:
                group.setdefault("weight_decay_mode", "decoupled" if decoupled else "l2")
        convention = self.defaults.get("convention")
        if convention is not None and group.get("convention", convention) != convention:
            # The convention picks the defaults of every group when the optimizer is built;
            # a group saying otherwise would silently run with the optimizer's values.
            raise ValueError(
                f"convention={group['convention']!r} in a param group: the convention is "
                f"per optimizer (this one is {convention!r}); build another optimizer or set "
                "the framework's hyperparameters (eps, eps_placement, …) in the group"
            )
        # Check the merged group first, so a rejected group leaves the optimizer unchanged.
        merged = {**self.defaults, **{k: v for k, v in group.items() if k != "params"}}
        self.validate(merged)
        super().add_param_group(group)

    def __getstate__(self) -> dict:
        # torch keeps defaults, state and groups; descend's switches (and a free chain) belong
        # to the optimizer too, so copies and pickles keep them. Caches are rebuilt on use.
        state = super().__getstate__()
        state.update(nonfinite=self.nonfinite, fused=self.fused)
        if "_links" in self.__dict__:
            state["_links"] = self._links
        return state

    def __setstate__(self, state: dict) -> None:
        # Called by unpickling and deepcopy (with __getstate__'s dict) and by torch's
        # load_state_dict (with state and param_groups only). torch's version adds
        # defaults["differentiable"], a key descend never has: a loaded or copied optimizer's
        # state_dict() must keep the keys of the original's.
        defaults = state.get("defaults", self.__dict__.get("defaults", {}))
        had_differentiable = "differentiable" in defaults
        super().__setstate__(state)
        if not had_differentiable:
            self.defaults.pop("differentiable", None)
        for group in self.param_groups:  # groups loaded from torch lack descend's keys
            decoupled = group.get("decoupled_weight_decay")
            if decoupled is not None and "weight_decay_mode" not in group:
                mode = self.defaults.get("weight_decay_mode", "l2")
                if bool(decoupled) != (mode != "l2"):
                    mode = "decoupled" if decoupled else "l2"
                group["weight_decay_mode"] = mode
            for key, value in self.defaults.items():
                group.setdefault(key, value)
        for st in self.state.values():
            # torch < 1.12 saved the step count as a Python number; descend's paths (like
            # torch's own optimizers, which convert it here too) keep a scalar tensor.
            if isinstance(st, dict) and "step" in st and not isinstance(st["step"], Tensor):
                st["step"] = torch.tensor(float(st["step"]), dtype=_get_scalar_dtype())
        self.__dict__.setdefault("nonfinite", "propagate")
        self.__dict__.setdefault("fused", None)
        self.__dict__.setdefault("process_group", None)
        self.__dict__.setdefault("_trace_hooks", OrderedDict())
        self.__dict__.setdefault("_chains", {})  # per-structure chain cache, rebuilt on use

    # -- state-dict interchange with torch.optim ------------------------------------------
    def state_dict(self) -> dict:
        """torch's state dict, with param groups that torch.optim's twin class and
        ``torch.distributed.checkpoint`` (DCP) can load, and that load back from them.

        Each group carries every key of the torch class of the same name (``foreach``,
        ``fused``, ``capturable``, ``differentiable`` at torch's defaults;
        ``decoupled_weight_decay`` from ``weight_decay_mode``) and descend's own keys
        (``bias_correction``, ``eps_placement``, ``convention``, …) only where the group's
        value differs from this optimizer's defaults: a loading descend optimizer fills the
        absent ones from *its* defaults; per-parameter state has torch's keys (see
        :meth:`_keeps_step`). So torch ⇄ descend and descend ⇄ descend (another
        convention's defaults included) load without ``allow_partial_load``, and what
        carries over is: the state tensors (same names as torch's), every hyperparameter
        torch has, and descend's per-group overrides. DCP loads the keys the *loading*
        optimizer's ``state_dict()`` has: build it with the same per-group overrides."""
        sd = super().state_dict()
        twin = _torch_twin_keys(type(self))
        groups = []
        for group in sd["param_groups"]:
            out = {}
            for key, value in group.items():
                if key in twin or key == "params" or key not in self.defaults:
                    out[key] = value
                elif not _same(value, self.defaults[key]):
                    out[key] = value  # a per-group override
            for key in _TORCH_ONLY & twin.keys():
                out.setdefault(key, twin[key])
            if "decoupled_weight_decay" in twin and "weight_decay_mode" in group:
                out["decoupled_weight_decay"] = group["weight_decay_mode"] != "l2"
            groups.append(out)
            if not self._keeps_step(group):  # torch's twin keeps no step count here
                for i in group["params"]:
                    st = sd["state"].get(i)
                    if isinstance(st, dict) and "step" in st:
                        sd["state"][i] = {k: v for k, v in st.items() if k != "step"}
        sd["param_groups"] = groups
        return sd

    def _keeps_step(self, group: dict) -> bool:
        """Whether ``state_dict()`` carries the groups' per-parameter step counts (torch's
        SGD keeps none; descend's SGD drops it from its state dict where no link reads it,
        and a loaded state without it counts again from 0)."""
        return True

    @property
    def skipped_steps(self) -> int:
        """Steps skipped by ``nonfinite="skip"``."""
        return int(self.state.get("skipped_steps", 0))

    # -- tracing -----------------------------------------------------------------------
    def register_trace_hook(self, hook: TraceHook) -> RemovableHandle:
        """Call ``hook(optimizer, group_index, record)`` after each group's step, where
        ``record`` maps the chain's named intermediates (``grad``, ``m``, ``v``, ``v_hat``,
        ``m_hat``, ``velocity``, ``denom``, ``lr_eff``, ``update``, ``param`` …) to one tensor
        per parameter that had a gradient. Recording costs copies: only on while hooked."""
        handle = RemovableHandle(self._trace_hooks)
        self._trace_hooks[handle.id] = hook
        return handle

    # -- the step ----------------------------------------------------------------------
    def _check_finite(self, grads: list[Tensor]) -> bool:
        if not grads:
            return True
        from .fast import grads_finite  # one pass without temporaries, when it can

        ok = grads_finite(self, grads)
        if ok is not None:
            return ok
        # one flag per tensor, gathered on the first one's device (a group may span devices)
        device = grads[0].device
        return bool(torch.stack([torch.isfinite(g).all().to(device) for g in grads]).all())

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        if torch.compiler.is_compiling():
            return self._compiled_step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        work = []
        for index, group in enumerate(self.param_groups):
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                if p.grad.is_sparse:
                    raise RuntimeError(
                        f"{type(self).__name__} does not support sparse gradients; "
                        "use torch.optim.SparseAdam or a dense embedding"
                    )
            if params:
                work.append((index, group, params))
        need_finite = self.nonfinite != "propagate"
        decided = None
        if need_finite or any(g.get("max_grad_norm") is not None for g in self.param_groups):
            # one answer for all ranks when the gradients are spread over processes
            decided = decide(self, work, need_finite)
        if need_finite:
            if decided is not None:
                finite = decided[0]
            else:
                finite = self._check_finite([p.grad for _, _, params in work for p in params])
            if not finite:
                if self.nonfinite == "raise":
                    raise FloatingPointError(
                        f"{type(self).__name__}: non-finite gradient (NaN or Inf); parameters "
                        "and optimizer state were left unchanged"
                    )
                self.state["skipped_steps"] = self.skipped_steps + 1
                return loss
        self.__dict__["_global_norms"] = {} if decided is None else decided[1]
        try:
            for index, group, params in work:
                self._step_group(index, group, params)
        finally:
            self.__dict__["_global_norms"] = {}
        return loss

    def _step_group(self, index: int, group: dict, params: list[Tensor]) -> None:
        if any(p.is_complex() for p in params):
            with _as_real(self, params) as real:
                self._step_real(index, group, real)
        else:
            self._step_real(index, group, params)

    def _step_real(self, index: int, group: dict, params: list[Tensor]) -> None:
        """One group's step on real parameters: the fast kernels when they can, else the
        chain; ``descend.optim.fast.last_path`` records which ran and why."""
        if self.fused is not False and not self._trace_hooks:  # traces need the chain
            from .fast import step_group

            if step_group(self, index, group, params):
                return
        else:
            reason = "fused=False" if self.fused is False else "a trace hook is registered"
            self.__dict__.setdefault("_fast_last", {})[index] = reason
        self._chain_step(index, group, params)

    def _chain_step(self, index: int, group: dict, params: list[Tensor]) -> None:
        """One group's step on the chain (the default path)."""
        links = self.chain(group)
        states = []
        for p in params:
            st = self.state[p]
            if "step" not in st:
                st["step"] = torch.tensor(0.0, dtype=_get_scalar_dtype())
            links.init(p, st)
            states.append(st)
        steps = [st["step"] for st in states]
        torch._foreach_add_(steps, 1)
        # apply_scaled: this step applies the updates itself, so a link may leave its factor
        # pending (θ.add_(D, alpha=−s), see descend.transforms.base)
        ctx = Context(group, steps, trace={} if self._trace_hooks else None, apply_scaled=True)
        if not torch.compiler.is_compiling():
            norm = self.__dict__.get("_global_norms", {}).get(index)
            if norm is not None:  # the norm of the whole gradient, agreed across ranks
                ctx.extras["global_grad_norm"] = norm
        grads = [p.grad for p in params]
        ctx.record("grad", grads)
        updates = links.update(grads, states, params, ctx)
        if ctx.trace is not None:
            full = updates if ctx.scales is None else scaled(updates, ctx.scales, params)
            decay = ctx.extras.get("decay")  # decoupled decay, already applied to θ in place
            ctx.record("update", full if decay is None else torch._foreach_add(full, decay))
        apply_updates(params, updates, ctx.scales)
        if ctx.trace is not None:
            ctx.record("param", params)
            for hook in list(self._trace_hooks.values()):
                hook(self, index, ctx.trace)

    # -- under torch.compile -----------------------------------------------------------
    def _compiled_step(self, closure):
        """``step()`` as ``torch.compile`` traces it: per group, :meth:`_init_group` (which
        dynamo runs eagerly, as for torch's optimizers: state creation, checks and the
        choice of path stay out of the graph) fills the lists of tensors; then either one
        ``torch.ops.descend.<family>`` call (:mod:`descend.optim.fast.ops`) or the chain's
        ``_foreach`` ops, traced. Non-finite checks, decisions across ranks (a process
        group, DTensor parameters) and complex parameters run the eager step (one graph
        break): they branch on the gradients' values or step views."""
        if self.nonfinite != "propagate" or self.process_group is not None:
            return _eager_step(self, closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        ready = []
        for index, group in enumerate(self.param_groups):
            params, grads, c0, c1, c2, c3 = [], [], [], [], [], []
            how = self._init_group(index, group, params, grads, c0, c1, c2, c3)
            ready.append((index, group, how, params, grads, [c0, c1, c2, c3]))
        if any(how[0] == "eager" for _, _, how, *_ in ready):
            _eager_step(self, None)
            return loss
        for index, group, how, params, grads, columns in ready:
            if how[0] == "fast":
                from .fast.ops import call

                _, family, token, keys, ncols, fresh, lazy = how
                columns = columns[:ncols]
                if fresh:  # torch's momentum buffer, v₁ = g: the kernel fills it
                    col, key = lazy
                    for i in fresh:
                        p = params[i]
                        self.state[p][key] = torch.zeros_like(
                            p, memory_format=torch.preserve_format
                        )
                    columns[col] = [self.state[p][key] for p in params]
                hyper = [group[k] for k in keys]
                call(family, token, params, grads, columns, hyper, fresh)
            elif how[0] == "chain":
                self._chain_step(index, group, params)
        return loss

    def _init_group(self, index, group, params, grads, c0, c1, c2, c3) -> tuple:
        """Ready one group for a traced step (run eagerly by dynamo, as torch's optimizers'
        ``_init_group``): fill ``params`` and ``grads`` with the parameters that have a
        gradient, create absent state, and pick the path: ``("fast", family, plan token,
        tensor hyperparameter keys, number of state columns, fresh, lazy)`` with the
        kernel's state columns in ``c0…c3`` (see ``descend.optim.fast.init_compiled``),
        ``("chain",)``, ``("none",)`` (no gradient) or ``("eager",)``: complex parameters
        (stepped as real views) and DTensors (decisions across the mesh) make the traced
        step call the eager one."""
        from .fast.step import _dtensor_type

        dtensor = _dtensor_type()
        for p in group["params"]:  # stepped through views, or decided across ranks
            if p.is_complex() or (dtensor is not None and isinstance(p, dtensor)):
                return ("eager",)
        own = [p for p in group["params"] if p.grad is not None]
        for p in own:
            if p.grad.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
        if not own:
            return ("none",)
        params.extend(own)
        grads.extend(p.grad for p in own)
        if self.fused is not False and not self._trace_hooks:
            from .fast import init_compiled

            ready = init_compiled(self, index, group, own)
            if ready is not None:
                family, token, keys, columns, fresh, lazy = ready
                for out, column in zip((c0, c1, c2, c3), columns):
                    out.extend(column)
                return ("fast", family, token, keys, len(columns), fresh, lazy)
        else:
            reason = "fused=False" if self.fused is False else "a trace hook is registered"
            self.__dict__.setdefault("_fast_last", {})[index] = reason
        links = self.chain(group)
        for p in own:
            st = self.state[p]
            if "step" not in st:
                st["step"] = torch.tensor(0.0, dtype=_get_scalar_dtype())
            links.init(p, st)
        return ("chain",)


@torch._disable_dynamo
def _eager_step(opt: ChainOptimizer, closure):
    """The eager step, called from a traced one where a decision needs the gradients'
    values (``nonfinite``, reductions across ranks)."""
    return _STEP(opt, closure)


_STEP = ChainOptimizer.step  # before torch.optim patches the subclasses' step with its hooks

_TORCH_ONLY = frozenset(
    ("foreach", "fused", "capturable", "differentiable", "decoupled_weight_decay")
)
_TWINS: dict[type, dict] = {}


def _torch_twin_keys(cls: type) -> dict:
    """The group keys of the torch.optim class that ``cls`` (or its nearest descend base)
    is named after, with torch's default values; {} when there is none (``from_chain``).
    Only the values of the keys descend has no use for (``_TORCH_ONLY``) are written."""
    if cls not in _TWINS:
        keys: dict = {}
        for klass in cls.__mro__:
            twin = getattr(torch.optim, klass.__name__, None)
            if klass.__module__.startswith("descend.") and isinstance(twin, type):
                # a 1×1 matrix: every torch optimizer takes one (torch.optim.Muon only matrices)
                group = twin([torch.zeros(1, 1, requires_grad=True)]).param_groups[0]
                keys = {k: v for k, v in group.items() if k != "params"}
                break
        _TWINS[cls] = keys
    return _TWINS[cls]


def _same(a, b) -> bool:
    """A group value equal to a default (tuples and lists alike; tensors by value)."""
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return (
            isinstance(a, Tensor)
            and isinstance(b, Tensor)
            and a.shape == b.shape
            and bool((a == b).all())
        )
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _is_group(group) -> bool:
    dist = torch.distributed
    return dist.is_available() and isinstance(group, dist.ProcessGroup)


class _as_real:  # noqa: N801 - a context manager used like a function
    """Complex parameters as torch's optimizers treat them: a complex θ ∈ ℂⁿ is the real
    θ ∈ ℝ²ⁿ of ``torch.view_as_real`` (so |g|² = re² + im², not g·g), and so are its gradient
    and every state tensor. Both paths then run unchanged on the real views; the state stays
    complex (as torch's), and state created during the step is stored back as complex."""

    def __init__(self, opt: ChainOptimizer, params: list[Tensor]):
        self.opt, self.params = opt, params
        self.views: list[tuple[Tensor, dict, dict]] = []

    def __enter__(self) -> list[Tensor]:
        real = []
        for p in self.params:
            if not p.is_complex():
                real.append(p)
                continue
            r = torch.view_as_real(p)
            r.grad = torch.view_as_real(p.grad)
            st = self.opt.state[p]
            made = {k: torch.view_as_real(v) for k, v in st.items() if _complex_like(v, p)}
            proxy = {**st, **made}
            self.opt.state[r] = proxy
            self.views.append((r, st, made))
            real.append(r)
        return real

    def __exit__(self, *exc) -> None:
        for r, st, made in self.views:
            proxy = self.opt.state.pop(r)
            r.grad = None
            for key, value in proxy.items():
                if made.get(key) is value:
                    continue  # a complex state tensor, updated in place through its view
                if isinstance(value, Tensor) and value.dtype == r.dtype and value.shape == r.shape:
                    value = torch.view_as_complex(value.contiguous())
                st[key] = value
            for key in set(st) - set(proxy):
                del st[key]


def _complex_like(value, p: Tensor) -> bool:
    return isinstance(value, Tensor) and value.is_complex() and value.shape == p.shape


class FromChain(ChainOptimizer):
    """An optimizer from any chain of transforms (see :func:`from_chain`)."""

    def __init__(self, params, transforms: Iterable, nonfinite: str = "propagate", **defaults):
        self._links = chain(*transforms)
        if "lr" in defaults:
            check.non_negative("lr", defaults["lr"])
        super().__init__(params, defaults, nonfinite=nonfinite)

    def validate(self, group: dict) -> None:
        if "lr" in group:
            check.non_negative("lr", group["lr"])

    def chain(self, group: dict) -> Chain:
        return self._links


def from_chain(params, *transforms, nonfinite: str = "propagate", **defaults) -> FromChain:
    """Turn any chain of transforms into a ``torch.optim.Optimizer``.

    ``defaults`` become the param groups' hyperparameters, read by :class:`hp` references
    (``lr`` for :func:`scale_by_lr` by default), so schedulers and per-group values work::

        opt = from_chain(model.parameters(), scale_by_adam(b1=0.9, b2=0.99, eps=1e-8),
                         scale_by_lr(), lr=1e-3)
    """
    return FromChain(params, transforms, nonfinite=nonfinite, **defaults)


__all__ = ["ChainOptimizer", "FromChain", "NONFINITE", "from_chain", "hp"]
