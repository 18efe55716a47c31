"""``Monitor``: what the optimizer does inside your own training loop, every k steps.

It hangs on the optimizer's step pre- and post-hooks, so it needs no change to the loop. On a
sampled step only (steps 1, k + 1, 2k + 1, … counted in optimizer updates) it

- snapshots the parameters before the step and reads them after: u = θ_before − θ_after;
- reads the gradient the optimizer used (after any clipping) and, through tensor hooks armed
  for that step's backward passes only, each backward's own gradient gᵢ: their sum is the
  gradient before clipping, and with k ≥ 2 micro-batches (accumulation) they give the gradient
  noise scale B_simple (McCandlish et al. 2018);
- reads the optimizer's internals — the momentum buffer, the bias-corrected second moment v̂
  and the per-coordinate effective learning rate (γ times the preconditioner,
  γ/(√v̂ + ε) for Adam) — from its state (``exp_avg``, ``exp_avg_sq``, ``square_avg``,
  ``sum``, ``momentum_buffer``; descend's switches included, see
  :func:`descend.train.metrics._param_eff_lr`), so descend's fast kernels keep running and a
  monitored run is bit for bit the unmonitored one; where descend's chain runs anyway
  (``fused=False``) or only the chain knows its state (a free ``from_chain`` chain), from the
  chain's own named intermediates through a trace hook registered for that one step.

Unsampled steps cost two optimizer hook calls and a comparison (no hook of the monitor's
is on the parameters then). The sampled step reads everything in a
few calls whatever the number of parameters: θ before the step copied end to end into a flat
buffer (:mod:`descend.monitor.flat`) by one native call, each backward's gradient held by a
hook (no copy), then one native call that checks every tensor, makes one C++ pass per
parameter for the sums and gathers the state at a fixed sample of coordinates
(:mod:`descend.monitor.fused`; torch's operations where the kernels cannot read the tensors);
the rest is computed for ``defer`` sampled steps at once. Names of what is written (see
:data:`METRICS`): ``opt/<metric>`` over the whole model, ``opt/group<i>/<metric>`` per param
group (``lr`` and ``v_bias_correction`` always, the rest when there are several groups),
``layer/<parameter name>/<metric>`` per named parameter, and ``loss`` (every step, through
:meth:`Monitor.log_loss`).
"""

from __future__ import annotations

import math
import operator
import time
import warnings
import weakref
from array import array
from collections import OrderedDict
from itertools import compress, repeat
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from descend.monitor import flat, stats
from descend.monitor import fused as fused_kernels
from descend.monitor.sinks import Sink, as_sinks, loss_dicts
from descend.optim.accumulate import Accumulate

# What each tag means (the names are the same in every sink and adapter).
METRICS = {
    "lr": "learning rate of the group at this step",
    "grad_norm": "‖g‖ of the gradient the optimizer used (after clipping)",
    "grad_norm_preclip": "‖g‖ of the gradient backward produced (before clipping)",
    "clipped": "1 when clipping shrank the gradient at this step, else 0",
    "update_norm": "‖u‖, u = θ_before − θ_after",
    "weight_norm": "‖θ‖ before the step",
    "update_ratio": "‖u‖/‖θ‖ (healthy training sits near 1e-3)",
    "momentum_cos": "cosine between the momentum buffer (after the step) and the gradient",
    "opposed_frac": "fraction of coordinates the step moved uphill (u·g < 0)",
    "eff_lr_p10": "10th percentile of the per-coordinate effective lr (adaptive methods)",
    "eff_lr_p50": "median per-coordinate effective lr γ·(preconditioner)",
    "eff_lr_p90": "90th percentile of the per-coordinate effective lr",
    "v_hat_p10": "10th percentile of the (bias-corrected) second moment",
    "v_hat_p50": "median (bias-corrected) second moment",
    "v_hat_p90": "90th percentile of the (bias-corrected) second moment",
    "v_bias_correction": "1/(1 − β₂ᵗ), the factor Adam's bias correction puts on v",
    "skipped_steps": "steps skipped so far for non-finite gradients (nonfinite='skip')",
    "nonfinite": "1 when the gradient held NaN or Inf at this step",
    "micro_batches": "backward passes that made this step's gradient",
    "gns_g2": "estimate of |G|² (true gradient's squared norm) from the micro-batches",
    "gns_trace": "estimate of tr(Σ)/B_small from the micro-batches",
    "noise_scale": "B_simple = tr(Σ)/|G|² from running means of gns_trace and gns_g2",
    "loss": "the training loss given to log_loss",
}

LAYER_METRICS = ("update_ratio", "grad_norm", "eff_lr_p50")
# optimizer state the effective learning rate and v̂ are computed from
RATE_KEYS = ("exp_avg_sq", "max_exp_avg_sq", "square_avg", "grad_avg", "sum")
LOSS_BUFFER = 256  # losses held by Monitor.log_loss before they are written or read
HELD_BYTES = 64 << 20  # the sampled coordinates' values held for the deferred rows, at most
# the first six values per scope of fused.combine, in stats.combine's order
_COMBINED = ("grad_norm", "update_norm", "weight_norm", "update_ratio", "opposed_frac", "nonfinite")
_NO_RATES = [-1, 0, 1.0, -1, -1, 0, 1.0, 0, 0.0, 1.0, 0.0]  # a group with neither v̂ nor rate
_NO_SOURCES = np.zeros(0, np.float32)  # an empty float32 argument (never written)
_NO_SOURCES.flags.writeable = False


def _names(model: nn.Module | None, optimizer: torch.optim.Optimizer) -> dict[int, str]:
    names: dict[int, str] = {}
    if model is not None:
        for name, p in model.named_parameters(remove_duplicate=True):
            names.setdefault(id(p), name)
    for gi, group in enumerate(optimizer.param_groups):
        for pi, p in enumerate(group["params"]):
            names.setdefault(id(p), f"group{gi}.param{pi}")
    return names


def _arrangement(states: list[dict], members: list[torch.Tensor]) -> tuple | None:
    """(keys, momentum key or None, rate keys) of one group's optimizer states, or None where
    they hold nothing or not the same keys: the state tensors of each parameter's size, the
    momentum buffer among them (``exp_avg``, ``momentum_buffer``) and those the effective
    learning rate is computed from (:data:`RATE_KEYS`)."""
    keys = set(states[0])
    if not keys or any(set(st) != keys for st in states):
        return None
    vector = [
        k
        for k in sorted(keys)
        if torch.is_tensor(states[0][k])
        and states[0][k].dim() > 0
        and all(st[k].numel() == p.numel() for st, p in zip(states, members))
    ]
    mkey = next((k for k in ("exp_avg", "momentum_buffer") if k in vector), None)
    return frozenset(keys), mkey, [k for k in vector if k in RATE_KEYS]


class _GradHook:
    """One parameter's gradient hook for the sampled steps' backward passes, made once.

    :meth:`arm` puts the function in the tensor's hook dictionary (``_backward_hooks``, what
    ``Tensor.register_hook`` fills) under a key drawn once from torch's handle counter;
    :meth:`remove` takes it out. Where the dictionary did not exist before, arming creates
    it and removing it (fn alone left in it) sets it back to None, which takes torch's
    per-tensor pre-hook out of every backward pass in between: an empty dictionary still
    costs a call into Python per parameter and backward (~1 µs). That dictionary, holding fn
    only, is kept and put back at the next arming (no dictionary made per sampled step). A
    non-leaf tensor goes through ``register_hook`` (its ``grad_fn`` holds the dictionary
    too)."""

    __slots__ = ("tensor", "fn", "key", "hooks", "created", "own")

    def __init__(self, p: torch.Tensor, fn: Any) -> None:
        self.tensor = weakref.ref(p)
        self.fn = fn
        self.key = RemovableHandle(OrderedDict()).id  # unique among torch's hook keys
        self.hooks: Any = None  # the dictionary holding fn while armed
        self.created = False
        # the dictionary arming puts on a tensor that has none, {key: fn}, reused while no one
        # else has put a hook into it (see remove)
        self.own: Any = None

    def arm(self) -> None:
        p = self.tensor()
        if p is None or self.hooks is not None:
            return
        hooks = p._backward_hooks
        if hooks is None and p.grad_fn is None:
            hooks = self.own
            if hooks is None:
                hooks = self.own = OrderedDict(((self.key, self.fn),))
            p._backward_hooks = hooks
            self.created = True
        elif hooks is None:
            handle = p.register_hook(self.fn)
            hooks, self.key, self.created = p._backward_hooks, handle.id, False
        else:
            hooks[self.key] = self.fn
            self.created = False
        self.hooks = hooks

    def remove(self) -> None:
        hooks, self.hooks = self.hooks, None
        if hooks is None:
            return
        p = self.tensor()
        if self.created and p is not None and p._backward_hooks is hooks:
            if hooks is self.own and len(hooks) == 1 and self.key in hooks:  # fn alone: reused
                p._backward_hooks = None
                return
            hooks.pop(self.key, None)
            if not hooks:
                p._backward_hooks = None
        else:
            hooks.pop(self.key, None)
        if hooks is self.own:  # another hook was put into it, or it left the tensor
            self.own = None


def _put_back(hooks: OrderedDict, key: int, fn: Any) -> None:
    """Put ``fn`` back into an optimizer's step-hook dictionary under the key it was
    registered with, in its place: the hooks registered after it (larger handle ids) still
    run after it (:meth:`Monitor.attach`'s post-hook)."""
    hooks[key] = fn
    later = [k for k in hooks if k > key]
    for k in later:
        hooks.move_to_end(k)


_UNREAD = object()  # a group whose bias correction _fast_read did not compute
_GRAD = operator.attrgetter("grad")
_STEP = operator.itemgetter("step")
_VERSION = operator.attrgetter("_version")
_NBYTES = operator.attrgetter("nbytes")


def _bias_correction(group: dict, t: float | None) -> float | None:
    """1/(1 − β₂ᵗ) of ``group`` at step ``t`` (its first parameter's with a step in its
    state), or None: no β₂, bias correction off, no step yet, t ≤ 0 or β₂ ≥ 1."""
    betas = group.get("betas")
    if not betas or len(betas) < 2:
        return None
    bc = group.get("bias_correction", True)
    if isinstance(bc, tuple | list):
        bc = bc[1]
    if not bc or t is None:
        return None
    b2 = float(betas[1])
    return 1.0 / (1.0 - b2**t) if t > 0 and b2 < 1 else None


class _Pending:
    """A sampled step read but not yet written (see :meth:`Monitor._measure`): the groups'
    learning rates and bias corrections, the skipped-step count, the layout read, what
    :meth:`Monitor._read` returned, and the backward passes' record (``_micro``)."""

    __slots__ = ("lrs", "bcs", "skipped", "layout", "read", "micro")

    def __init__(self, lrs, bcs, skipped, layout, read, micro) -> None:
        self.lrs, self.bcs, self.skipped = lrs, bcs, skipped
        self.layout, self.read, self.micro = layout, read, micro


def _read_losses(kept: list[tuple[torch.Tensor, int]]) -> list[float]:
    """The values of the loss tensors :meth:`Monitor.log_loss` held, ``(tensor, version when
    given)``, in one read — descend's C++ where all are float32 (or all float64) CPU tensors,
    else torch's where they stack (all 0-d, or all (1,), on one device): NaN, with a
    warning, for one changed in place since (its version counter moved)."""
    tensors, versions = zip(*kept)  # (C-level passes, no Python frame per loss)
    values = fused_kernels.scalars(tensors)  # float32 (or float64) CPU tensors: one C++ read
    if values is None:
        with torch.no_grad():
            try:
                values = torch.stack(tensors).reshape(-1).double().tolist()
            except (RuntimeError, TypeError):
                try:
                    values = torch.stack([t.reshape(()) for t in tensors]).double().tolist()
                except (RuntimeError, TypeError):  # mixed devices or dtypes: one by one
                    values = [float(t) for t in tensors]
    now = list(map(_VERSION, tensors))
    moved = [] if now == list(versions) else [i for i, v in enumerate(now) if v != versions[i]]
    if moved:
        warnings.warn(
            f"{len(moved)} loss tensor(s) given to Monitor.log_loss were changed in place "
            "before they were read; their losses are written as NaN (pass loss.item() or a "
            "copy for a tensor you reuse)",
            RuntimeWarning,
            stacklevel=3,
        )
        for i in moved:
            values[i] = math.nan
    return values


class Monitor:
    """Watch ``optimizer`` (any ``torch.optim.Optimizer``, descend's or torch's, or one wrapped
    in :class:`~descend.optim.accumulate.Accumulate`) every ``every`` steps.

    Args:
        optimizer: the optimizer whose steps are watched.
        model: the module, for the layer names (``layer/0.weight/...``); without it parameters
            are named ``group<i>.param<j>``.
        every: sample one optimizer step in ``every`` (steps 1, every + 1, …).
        log: where to write: a sink (:mod:`descend.monitor.sinks`), a list of them, or a
            string — ``*.jsonl`` (the monitor log), ``*.csv``, ``mlflow`` / ``mlflow:URI``, or
            any other path as a TensorBoard run directory. ``None`` keeps the rows in memory
            only (:meth:`frame`).
        layers: also write the per-layer metrics (:data:`LAYER_METRICS`).
        batch_size: samples per micro-batch; the noise scale is then in samples, else in
            micro-batches.
        source: ``"auto"`` (descend's trace hook where the chain runs anyway — ``fused=False``
            or a free ``from_chain`` chain — else the optimizer state, which keeps descend's
            fast kernels running), ``"trace"`` or ``"state"``.
        histogram_every: sinks that draw histograms (TensorBoard) get the per-layer updates,
            gradients and effective lrs on every this-many-th sampled step (0, the default:
            never; each histogram costs ~1 ms, three per layer).
        noise_beta: the EMA factor, over sampled steps, of the two noise-scale estimates.
        fused: read the sampled step with descend's C++ kernels (``native/monitor.cpp``: one
            pass per parameter over θ, g and m, one gather of the sampled state) — ``None``
            (default) where they take the tensors (float32, CPU), else torch's operations;
            ``True`` requires them (``RuntimeError`` at a sampled step they cannot read);
            ``False`` always torch's. :attr:`last_path` says which read the last sampled step.
            A step the kernels read also gets its v̂ and effective lr at the sampled
            coordinates (``descend_monitor_rates``) and its rows' combinations of the sums
            (``descend_monitor_combine``) from C++, bit for bit the numpy formulas and
            :func:`~descend.monitor.stats.combine` that the torch path runs (tested); where
            the kernels read every held step, their rows — noise scale, combinations,
            rates, quantiles, layer tags — come from one call for all of them
            (``descend_monitor_rows``, :meth:`_native_rows`), bit for bit those rows made
            step by step in Python (tested).
        defer: what a sampled step must read is read at once; the rest (rates, quantiles,
            combining the sums, writing) waits until ``defer`` sampled steps are held, or
            until :attr:`rows`, :meth:`frame`, :meth:`flush_losses`, :meth:`log` or
            :meth:`close`, then runs for all of them together with warm caches: on a small
            model most of a lone sampled step's cost is the cache misses of code run once in
            ``every`` steps. The sinks then see the rows up to ``defer × every`` steps late
            (1: each sampled step written at once), and no later than the first sampled step
            ``max_delay`` seconds after the oldest one held (or once the held steps' sampled
            values reach :data:`HELD_BYTES`): a fast loop writes 32 rows at a time, a slow one
            every few seconds. (TensorBoard's own ``SummaryWriter`` flushes its file every
            120 s.)
        max_delay: seconds, see ``defer``.
        keep_rows: keep everything written in memory for :attr:`rows`, :meth:`frame` and
            :meth:`to_csv` (default). ``False`` keeps nothing once the sinks have it — a long
            run's memory then does not grow with its steps (~100 bytes a logged loss and
            ~2–3 kB a sampled step kept otherwise) — and those three raise.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        model: nn.Module | None = None,
        *,
        every: int = 10,
        log: Any = None,
        layers: bool = True,
        batch_size: int | None = None,
        source: str = "auto",
        histogram_every: int = 0,
        noise_beta: float = 0.9,
        fused: bool | None = None,
        defer: int = 32,
        max_delay: float = 10.0,
        keep_rows: bool = True,
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        for name, value, low in (
            ("every", every, 1),
            ("histogram_every", histogram_every, 0),
            ("defer", defer, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if (
            isinstance(max_delay, bool)
            or not isinstance(max_delay, int | float)
            or not max_delay > 0
        ):
            raise ValueError(f"max_delay must be a number of seconds > 0, got {max_delay!r}")
        if not isinstance(keep_rows, bool):
            raise ValueError(f"keep_rows must be True or False, got {keep_rows!r}")
        if source not in ("auto", "trace", "state"):
            raise ValueError(f"source must be 'auto', 'trace' or 'state', got {source!r}")
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ValueError(f"batch_size must be an integer >= 1 or None, got {batch_size!r}")
        if not 0 <= noise_beta < 1:
            raise ValueError(f"noise_beta must be in [0, 1), got {noise_beta!r}")
        if fused not in (None, True, False):
            raise ValueError(f"fused must be None, True or False, got {fused!r}")
        if fused is True and not fused_kernels.available():
            raise ValueError(
                "Monitor(fused=True) needs descend's C++ kernels, which are unavailable: "
                f"{fused_kernels.unavailable_reason()} (use fused=None or False)"
            )
        from descend.optim.base import ChainOptimizer

        self.base = optimizer.optimizer if isinstance(optimizer, Accumulate) else optimizer
        self._average = isinstance(optimizer, Accumulate) and optimizer.average
        from descend.optim.base import FromChain

        traceable = isinstance(self.base, ChainOptimizer)
        if source == "trace" and not traceable:
            raise ValueError(
                f"source='trace' needs a descend optimizer; {type(self.base).__name__} has no "
                "trace hook (use 'state' or 'auto')"
            )
        # auto: trace where the chain runs anyway (fused=False) or where only the chain knows
        # its state (a free from_chain chain); elsewhere read the state, so the fast kernels
        # keep running and a monitored run is bit for bit the unmonitored one.
        chain_anyway = traceable and (self.base.fused is False or isinstance(self.base, FromChain))
        self.use_trace = source == "trace" or (source == "auto" and chain_anyway)
        self.every = every
        self.layers = layers
        self.batch_size = batch_size
        self.histogram_every = histogram_every
        self.noise_beta = noise_beta
        self.fused = fused
        self.defer = defer
        self.max_delay = float(max_delay)
        self.keep_rows = keep_rows
        self._deferred = 0  # sampled steps read and not yet written
        self._held_since = 0.0  # time.monotonic() when the oldest of them was read
        self._held_bytes = 0  # their sampled values' bytes
        self.last_path: str | None = None  # "fused" or "torch…": what read the last sample
        self.sinks: list[Sink] = as_sinks(log)
        self.names = _names(model, self.base)
        self.steps = 0  # optimizer updates seen
        self.samples = 0  # sampled steps written
        self._rows: list[dict[str, float]] = []  # everything written, with "step"
        self._unmade: list[tuple[int, dict[str, float]]] = []  # written, not yet in _rows
        self._losses: list[tuple[int, Any]] = []  # log_loss values not yet written
        self._unread = 0  # loss tensors given to log_loss since the last write or read
        self._read_to = 0  # entries of _losses before this one read (_losses_full)
        self._noise = [0.0, 0.0]  # EMAs of gns_trace and gns_g2 (bias cancels in the ratio)
        self._armed: list[Any] = []  # handles of the hooks armed for the next step
        self._grad_hooks: dict[int, _GradHook] = {}  # id(p): its hook, kept between steps
        self._layout_hooks: tuple | None = None  # (layout, the hooks of its tensors)
        self._micro: dict[int, list[Any]] = {}
        # id(p): the gradient the armed step's first backward produced, held as it is (see
        # :meth:`_grad_hook`), until the step is read
        self._grads: dict[int, torch.Tensor] = {}
        self._bcs: list = []  # per group, the bias correction _fast_read computed, or _UNREAD
        self._records: dict[int, dict[str, list[torch.Tensor]]] = {}
        self._pending: list[float] | None = None
        self._layout: flat.Layout | None = None  # the sampled step's buffers
        self._subset: tuple | None = None  # (layout, kept, layout of the kept parameters)
        self._reader: tuple | None = None  # (layout, group specs, fused.Reader, source names)
        self._snapshot: tuple | None = None  # (layout, fused.Snapshot, …): θ before the step
        self._row_maker: tuple | None = None  # (layout, groups, fused.Rows, tags): the rows
        self._next = 1  # the next sampled step
        self._closed = False
        # the pre-hook (θ before a sampled step) is in the optimizer's hook dictionary only
        # while a step is armed (_arm puts it in, _disarm takes it out): every other step
        # calls the post-hook alone (a hook call costs ~1 µs a step)
        pre = self.base.register_step_pre_hook(self._before)
        self._pre_id = pre.id
        post = self.base.register_step_post_hook(self._after)
        self._post_id = post.id
        self._handles = [pre, post]
        self._detached = False
        self._armed_at = -1  # self.steps when the hooks were last armed
        self._arm()  # step 1 is sampled

    # --- sampling --------------------------------------------------------------------------------
    def sampled(self, step: int) -> bool:
        """Whether optimizer step ``step`` (1-based) is one the monitor measures."""
        return (step - 1) % self.every == 0

    def _params(self) -> list[tuple[int, torch.Tensor]]:
        return [
            (gi, p)
            for gi, group in enumerate(self.base.param_groups)
            for p in group["params"]
            if p.requires_grad
        ]

    def _arm(self) -> None:
        """Hooks for the next step's backward passes (and its chain trace) only (see
        :class:`_GradHook`: each parameter's hook function is made once and put in and out
        of the tensor's hook dictionary)."""
        self._micro, self._grads = {}, {}
        layout = self._current_layout()
        hooks = self._layout_hooks
        if hooks is None or hooks[0] is not layout:  # the layout's hooks, listed once
            kept = self._grad_hooks
            if len(kept) > len(layout.tensors):  # parameters gone since: forget their hooks
                for key in set(kept) - set(layout.position):
                    kept.pop(key).remove()
            listed = []
            for p in layout.tensors:
                hook = kept.get(id(p))
                if hook is None or hook.tensor() is not p:
                    hook = kept[id(p)] = _GradHook(p, self._grad_hook(p))
                listed.append(hook)
            hooks = self._layout_hooks = (layout, listed)  # the layout holds the tensors
        for hook in hooks[1]:
            hook.arm()
        self._armed += hooks[1]
        # put in last (at the end of the hook dictionary as it is now): it sees lr and θ as the
        # pre-hooks registered before this arming left them
        self.base._optimizer_step_pre_hooks[self._pre_id] = self._before
        self._armed_at = self.steps
        if self.use_trace:
            self._records = {}
            self._armed.append(self.base.register_trace_hook(self._trace))

    def _disarm(self) -> None:
        for handle in self._armed:
            handle.remove()
        self._armed = []
        self.base._optimizer_step_pre_hooks.pop(self._pre_id, None)

    def detach(self) -> None:
        """Take the monitor out of the optimizer until :meth:`attach`: its hooks leave the
        optimizer and the parameters, so the steps taken meanwhile run exactly as without a
        monitor, and are not seen — not counted in :attr:`steps`, never sampled (the sampled
        step after :meth:`attach` is the one the count reaches; a step armed when detached is
        armed again), their losses not logged (:meth:`log_loss` does nothing meanwhile, so the
        loop need not change). What was measured stays held until the next write. For a phase
        you do not want watched, or to time the same loop on the same model with and without
        the monitor (``benchmarks/bench_monitor.py``). :meth:`attach` puts the post-hook back
        in its place among the optimizer's. Does nothing if detached already;
        ``RuntimeError`` once closed."""
        if self._closed:
            raise RuntimeError("Monitor.detach: the monitor is closed")
        if self._detached:
            return
        self._disarm()
        self._grads, self._micro = {}, {}
        self.base._optimizer_step_post_hooks.pop(self._post_id, None)
        self._detached = True

    def attach(self) -> None:
        """Put the monitor back after :meth:`detach` (its step post-hook, and the hooks of
        the next step where that one is sampled). Does nothing if attached;
        ``RuntimeError`` once closed."""
        if self._closed:
            raise RuntimeError("Monitor.attach: the monitor is closed")
        if not self._detached:
            return
        _put_back(self.base._optimizer_step_post_hooks, self._post_id, self._after)
        self._detached = False
        if self.steps + 1 == self._next:
            self._arm()

    @property
    def attached(self) -> bool:
        """False between :meth:`detach` and :meth:`attach`, and once closed."""
        return not (self._detached or self._closed)

    def _current_layout(self) -> flat.Layout:
        """:meth:`_layout_for` the trainable parameters, the current layout checked against
        the live groups in place first (:meth:`flat.Layout.holds`)."""
        old = self._layout
        if old is not None and old.holds(self.base.param_groups):
            return old
        return self._layout_for(self._params())

    def _layout_for(self, params: list[tuple[int, torch.Tensor]]) -> flat.Layout:
        """The buffers of ``params``: the current layout if it still matches the live tensors,
        else a new one (the gradients the hooks already copied are carried over)."""
        old = self._layout
        if old is not None and old.matches(params):
            return old
        new = flat.Layout(params, self.layers)
        if old is not None and self._micro:
            with torch.no_grad():
                for key in self._micro:
                    i, j = old.position.get(key), new.position.get(key)
                    # (a parameter whose size changed has no gradient to carry over)
                    if i is not None and j is not None and old.lengths[i] == new.lengths[j]:
                        new.views[flat.PRECLIP][j].view(-1).copy_(
                            old.views[flat.PRECLIP][i].view(-1)
                        )
        self._layout = new
        return new

    def _grad_hook(self, p: torch.Tensor):
        key = id(p)

        def hook(grad: torch.Tensor) -> None:
            # The first backward pass's gradient is held as it is (no copy): holding it makes
            # AccumulateGrad copy it into p.grad instead of taking it over (or add it into an
            # existing p.grad), so clipping p.grad in place later cannot change it; a
            # non-contiguous one is copied into the pre-clip row. From the second pass on
            # (accumulation) the row holds the sum, and each pass's ‖gᵢ‖² is kept for the
            # noise scale.
            entry = self._micro.get(key)
            if entry is None and grad.is_contiguous():
                self._grads[key] = grad
                self._micro[key] = [1, None]
                return
            layout = self._layout
            j = layout.position.get(key) if layout is not None else None
            if j is None:
                return
            view = layout.views[flat.PRECLIP][j]
            grad = grad.detach()
            if grad.layout != torch.strided:  # a sparse gradient (Embedding(sparse=True))
                grad = grad.to_dense()
            if entry is None:
                view.copy_(grad)
                self._micro[key] = [1, None]
                return
            if entry[1] is None:
                first = self._grads.pop(key, None)
                if first is not None:
                    view.copy_(first)
                entry[1] = [view.pow(2).sum(dtype=torch.float64)]
            entry[1].append(grad.pow(2).sum(dtype=torch.float64))
            view.add_(grad)
            entry[0] += 1

        return hook

    def _settle(self, layout: flat.Layout) -> None:
        """Copy the held first-pass gradients into ``layout``'s pre-clip row (where a read
        other than the prebuilt reader's needs the row) and let them go."""
        held, self._grads = self._grads, {}
        if not held:
            return
        views, position = layout.views[flat.PRECLIP], layout.position
        pairs = [(views[position[key]], g) for key, g in held.items() if key in position]
        with torch.no_grad():
            for view, g in pairs:
                view.copy_(g)

    def _trace(self, opt: Any, index: int, record: dict[str, list[torch.Tensor]]) -> None:
        self._records[index] = record

    # --- the step ---------------------------------------------------------------------------------
    def _before(self, *_: Any) -> None:
        if self.steps + 1 != self._next:
            return
        # Every trainable parameter: with a closure (Lightning) backward runs inside step(),
        # after this hook, so which ones get a gradient is known only afterwards. The layout
        # was checked against the groups when the hooks were armed, after the step before
        # this one; the native copy checks each tensor as it is now, and where it refuses
        # (or the kernels do not copy) the groups are checked again here.
        armed = self._layout if self._armed_at == self.steps else None
        layout = armed if armed is not None else self._current_layout()
        copied = self._copy_before(layout)
        if not copied and armed is not None:  # refused: have the groups changed since?
            layout = self._current_layout()
            copied = layout is not armed and self._copy_before(layout)
        if not copied:
            with torch.no_grad():
                torch._foreach_copy_(layout.views[flat.BEFORE], layout.tensors)
        self._pending = [float(g["lr"]) for g in self.base.param_groups]

    def _copy_before(self, layout: flat.Layout) -> bool:
        """θ into ``layout``'s row of θ before the step by the kernels' copy; False where
        they do not copy this layout or refuse a tensor as it is now (nothing copied)."""
        snap = self._snapshot
        if snap is None or snap[0] is not layout:
            snap = self._snapshot = self._make_snapshot(layout)
        return snap[1] is not None and snap[1](snap[2], snap[3])

    def _make_snapshot(self, layout: flat.Layout) -> tuple:
        """(layout, :class:`~descend.monitor.fused.Snapshot` or None, the library, the
        tensors it is handed: the parameters, then the flat row of θ before the step) — the
        kernels' copy of θ in :meth:`_before` where they may read this layout (``fused``
        not False, CPU), else torch's ``_foreach_copy_``."""
        lib = None
        if self.fused is not False and layout.device.type == "cpu":
            lib = fused_kernels.step_library()
        if lib is None:
            return (layout, None, None, None)
        snapshot = fused_kernels.Snapshot(layout.lengths)
        return (layout, snapshot, lib, [*layout.tensors, layout.before])

    def _after(self, *_: Any) -> None:
        self.steps += 1
        if self.steps == self._next:
            self._next += self.every
            self._disarm()
            if self._pending is not None:
                self._measure(self.steps, self._pending)
            self._pending = None
        if self.steps + 1 == self._next and not self._closed:
            self._arm()

    def _kept(self, layout: flat.Layout) -> flat.Layout:
        """The layout of the parameters that have a gradient after the step: ``layout``
        itself, or (some have none) a layout of the others holding their θ before the step
        and gradients before clipping (kept while the same ones have none)."""
        keep = tuple(p.grad is not None for p in layout.tensors)
        if all(keep):
            return layout
        self._settle(layout)
        cached = self._subset
        if cached is None or cached[0] is not layout or cached[1] != keep:
            params = [pair for pair, k in zip(layout.params, keep) if k]
            cached = self._subset = (layout, keep, flat.Layout(params, self.layers))
        sub = cached[2]
        for row in (flat.BEFORE, flat.PRECLIP):
            src = [v for v, k in zip(layout.views[row], keep) if k]
            if src:
                torch._foreach_copy_(sub.views[row], src)
        return sub

    def _sources(self, layout: flat.Layout) -> tuple[list, list, dict[str, list]]:
        """What the step left to read, per parameter of ``layout``: per group span a plan for
        :meth:`_rates` (None: nothing to read), the momentum buffers (None where none), and
        per state key or traced name (``v_hat``, ``eff``) its tensors (None where none)."""
        n = len(layout.tensors)
        plans: list[tuple | None] = []
        momentum: list[torch.Tensor | None] = [None] * n
        sources: dict[str, list] = {}

        def put(name: str, first: int, tensors: list) -> None:
            column = sources.setdefault(name, [None] * n)
            column[first : first + len(tensors)] = tensors

        for (first, end), gi in zip(layout.group_spans, layout.group_ids):
            group = self.base.param_groups[gi]
            members = layout.tensors[first:end]
            if self.use_trace:
                record = self._records.get(gi)
                if record is None:  # the step was skipped (non-finite gradient): no trace
                    plans.append(None)
                    continue
                stepped = [p for p in group["params"] if p.grad is not None]
                where = {id(p): i for i, p in enumerate(stepped)}
                if any(id(p) not in where for p in members):
                    plans.append(None)
                    continue
                at = [where[id(p)] for p in members]
                m = record.get("m", record.get("velocity"))
                v = record.get("v_hat", record.get("v", record.get("sum")))
                eff = record.get("lr_eff") if "denom" in record else None
                if m is not None:
                    momentum[first:end] = [m[i] for i in at]
                for name, tensors in (("v_hat", v), ("eff", eff)):
                    if tensors is not None:
                        put(name, first, [tensors[i] for i in at])
                plans.append(("trace", v is not None, eff is not None))
                continue
            states = [self.base.state.get(p) or {} for p in members]
            steps = {float(st["step"]) for st in states if "step" in st}
            arranged = _arrangement(states, members)
            if arranged is None or len(steps) > 1:
                plans.append(None)
                continue
            keys, mkey, rate_keys = arranged
            if mkey is not None:
                momentum[first:end] = [st[mkey] for st in states]
            for k in rate_keys:
                put(k, first, [st[k] for st in states])
            state = {"step": steps.pop()} if steps else {}
            if "mu_product" in keys:
                state["mu_product"] = states[0]["mu_product"]
            # the group's hyperparameters as they are now (a scheduler may change them
            # before the rates are computed)
            plans.append(("state", {**group}, rate_keys, state))
        return plans, momentum, sources

    def _fast_read(self, layout: flat.Layout) -> tuple | None:
        """:meth:`_read` through the :class:`~descend.monitor.fused.Reader` built for this
        layout and this arrangement of the optimizer state (the keys each group's states
        hold): the same tensors :meth:`_sources` would hand over (the held first-pass
        gradients as the pre-clip ones), found without its per-key checks, in one native
        call. None (then :meth:`_read` reads the general way and builds a new reader) where
        there is no reader for this layout, a group's states hold other keys or differing
        steps, or a tensor fails the kernels' check."""
        cached = self._reader
        if cached is None or cached[0] is not layout or cached[1] is None:
            return None
        _, specs, reader, names, lib, preclip = cached
        state, groups = self.base.state, self.base.param_groups
        tensors = layout.tensors
        moms: list[torch.Tensor] = []
        columns: list[list[torch.Tensor]] = [[] for _ in names]
        plans: list[tuple | None] = []
        bcs = self._bcs = [_UNREAD] * len(groups)  # see _measure
        counts: list[torch.Tensor] = []  # the step tensors the kernels read
        counted: list[tuple] = []  # (scalars, group, first, start, end) of each group's
        for first, end, gi, keys, mkey, rate_keys, at, native_step in specs:
            states = list(map(state.get, tensors[first:end]))
            if keys is None:  # no state: nothing to read in this group
                if any(states):
                    return None
                plans.append(None)
                continue
            for st in states:
                if st is None or st.keys() != keys:
                    return None
            scalars = {}
            if native_step:  # read by the kernels, compared below
                counted.append((scalars, gi, first, len(counts), len(counts) + len(states)))
                counts += map(_STEP, states)
            elif "step" in keys:
                step = float(states[0]["step"])
                for st in states:
                    if float(st["step"]) != step:  # (NaN: never equal, as two set members)
                        return None
                scalars["step"] = step
                if groups[gi]["params"][0] is tensors[first]:  # :meth:`_v_bias_correction`'s t
                    bcs[gi] = _bias_correction(groups[gi], step)
            if "mu_product" in keys:
                scalars["mu_product"] = states[0]["mu_product"]
            if mkey is not None:
                moms += map(operator.itemgetter(mkey), states)
            for k, column in zip(rate_keys, at):
                columns[column] += map(operator.itemgetter(k), states)
            plans.append(("state", {**groups[gi]}, rate_keys, scalars))
        # the held first-pass gradient of each parameter, else its pre-clip view
        ordered = [*tensors, *map(_GRAD, tensors), *moms, layout.before]
        ordered += map(self._grads.get, *preclip)
        for column in columns:
            ordered += column
        ordered += counts
        got = reader(lib, ordered)
        if got is None:
            return None
        if counted:
            values = reader.step_values.tolist()
            for scalars, gi, first, start, stop in counted:
                step = values[start]
                if values[start:stop].count(step) != stop - start:  # NaN: itself only
                    return None
                scalars["step"] = step
                if groups[gi]["params"][0] is tensors[first]:
                    bcs[gi] = _bias_correction(groups[gi], step)
        sums, gathered = got
        return sums, plans, dict(zip(names, gathered)), "fused"

    def _make_reader(self, layout: flat.Layout, plans: list, momentum: list, sources: dict):
        """The reader of :meth:`_fast_read` for what :meth:`_sources` found on ``layout``
        (kept as ``(layout, None, …)`` where the state has no fixed arrangement)."""
        specs = []
        names = list(sources)
        steps = 0
        for (first, end), gi, plan in zip(layout.group_spans, layout.group_ids, plans):
            states = [self.base.state.get(p) for p in layout.tensors[first:end]]
            if plan is None:
                if any(states):  # differing keys or steps: read the general way
                    self._reader = (layout, None, None, None)
                    return
                specs.append((first, end, gi, None, None, (), (), False))
                continue
            keys, mkey, rate_keys = _arrangement(states, layout.tensors[first:end])
            at = tuple(names.index(k) for k in rate_keys)
            # step counts the kernels can read: one-element float32 CPU tensors
            native_step = "step" in keys and all(
                type(st["step"]) is torch.Tensor
                and st["step"].dtype == torch.float32
                and st["step"].numel() == 1
                and st["step"].is_cpu
                for st in states
            )
            steps += (end - first) if native_step else 0
            specs.append((first, end, gi, keys, mkey, tuple(rate_keys), at, native_step))
        lib = fused_kernels.step_library()
        if lib is None:
            self._reader = (layout, None, None, None)
            return
        reader = fused_kernels.Reader(
            layout.lengths,
            [m is not None for m in momentum],
            [[t is not None for t in sources[k]] for k in names],
            layout.sample.flat_index,
            split=True,
            steps=steps,
        )
        preclip = ([id(p) for p in layout.tensors], layout.views[flat.PRECLIP])  # keys, views
        self._reader = (layout, specs, reader, names, lib, preclip)

    def _torch_sums(self, layout: flat.Layout, momentum: list, sources: dict) -> list[list]:
        """The torch path: copy g, θ after, m and the sources into the layout's rows (one
        ``_foreach_copy_``), then the sums of :func:`flat.products` per parameter (9 rows as
        :data:`descend.monitor.fused.SUMS`)."""
        tensors = layout.tensors
        dst = layout.views[flat.GRAD] + layout.views[flat.UPDATE]
        grads = [p.grad for p in tensors]
        src = [g if g.layout == torch.strided else g.to_dense() for g in grads] + tensors
        for view, m in zip(layout.views[flat.MOMENTUM], momentum):
            if m is not None:
                dst.append(view)
                src.append(m)
        for name, column in sources.items():
            for view, t in zip(layout.row(name)[1], column):
                if t is not None:
                    dst.append(view)
                    src.append(t)
        self._clear_momentum(layout, [m is not None for m in momentum])
        torch._foreach_copy_(dst, src)
        rows = layout.rows
        torch.sub(rows[flat.BEFORE], rows[flat.UPDATE], out=rows[flat.UPDATE])
        sums = flat.segment_sums(flat.products(layout), layout.lengths)
        bad = [0.0] * len(tensors)
        if not all(math.isfinite(x) for x in sums[flat.G2]):
            # non-finite gradient entries: counted, and left out of every other sum
            finite = torch.isfinite(rows[flat.GRAD])
            bad = flat.segment_sums((~finite).float()[None], layout.lengths)[0]
            rows[flat.GRAD].masked_fill_(~finite, 0.0)
            sums = flat.segment_sums(flat.products(layout), layout.lengths)
        return [*sums, bad]

    @staticmethod
    def _clear_momentum(layout: flat.Layout, filled: list[bool]) -> None:
        """Zero the momentum row where no buffer is copied this time (it may hold an older
        step's)."""
        if all(filled):
            layout.momentum_zero = False
            return
        if not layout.momentum_zero:
            for view, f in zip(layout.views[flat.MOMENTUM], filled):
                if not f:
                    view.zero_()
        layout.momentum_zero = not any(filled)

    def _rates(
        self, layout: flat.Layout, plans: list, sampled: dict, path: str = "torch"
    ) -> tuple[Any, list]:
        """v̂ and the effective learning rate at the sampled coordinates, as the two rows of
        one float32 array (NaN where a group has none; None when no group has either), from
        ``sampled`` (each source at the sample's coordinates, host arrays); and which
        parameters have an effective learning rate. Read by the kernels (``path`` "fused"),
        in one native call (:func:`descend.monitor.fused.rates`, the same bits); else, or
        where a group's formula is not one the native programs express, with numpy."""
        if path == "fused":
            got = self._native_rates(layout, plans, sampled)
            if got is not None:
                return got
        sample = layout.sample
        drawn = None
        has_eff = [False] * len(layout.tensors)
        for g, plan in enumerate(plans):
            if plan is None:
                continue
            first, end = layout.group_spans[g]
            members = sample.member_rows[g]
            if plan[0] == "trace":
                _, have_v, have_e = plan
                pair = [sampled["v_hat"] if have_v else None, sampled["eff"] if have_e else None]
                if members is not None:
                    pair = [None if x is None else x[members] for x in pair]
            else:
                _, group, keys, state = plan
                values = {k: sampled[k] if members is None else sampled[k][members] for k in keys}
                pair = list(flat.state_rates(group, values, state))
            if all(x is None for x in pair):
                continue
            if drawn is None:
                drawn = np.full((2, sample.size), np.nan, np.float32)
            for row, x in enumerate(pair):
                if x is not None:
                    if members is None:
                        drawn[row] = x
                    else:
                        drawn[row, members] = x
            if pair[1] is not None:
                has_eff[first:end] = [True] * (end - first)
        return drawn, has_eff

    @staticmethod
    def _native_rates(layout: flat.Layout, plans: list, sampled: dict) -> tuple | None:
        """:meth:`_rates` through ``descend_monitor_rates``: each group's formula compiled
        to a program (:func:`descend.monitor.fused.rate_program`), all coordinates in one
        call; None where a plan is a trace or a formula has no program."""
        names = list(sampled)
        rows = {k: i for i, k in enumerate(names)}
        programs, has_eff, any_rate = [], [False] * len(layout.tensors), False
        for g, plan in enumerate(plans):
            if plan is None:
                programs.append(_NO_RATES)
                continue
            if plan[0] != "state":
                return None
            _, group, keys, state = plan
            program = fused_kernels.rate_program(group, keys, state, rows)
            if program is None:
                return None
            programs.append(program)
            if program[3] >= 0:
                first, end = layout.group_spans[g]
                has_eff[first:end] = [True] * (end - first)
            any_rate = any_rate or program[0] >= 0 or program[3] >= 0
        if not any_rate:
            return None, has_eff
        sample = layout.sample
        group_of = sample.group_of
        if group_of is None:
            group_of = sample.group_of = np.full(sample.size, -1, np.int64)
            for g, members in enumerate(sample.member_rows):
                group_of[slice(None) if members is None else members] = g
        gathered = np.stack([sampled[k] for k in names]) if names else None
        if gathered is None:
            return None
        drawn = fused_kernels.rates(programs, gathered, group_of)
        return None if drawn is None else (drawn, has_eff)

    def _read(self, layout: flat.Layout, fast: bool = True) -> tuple[Any, list, dict, str]:
        """Sums per parameter (an n × 9 array, or nine lists), the group plans, each source at
        the sampled coordinates (host arrays), and the path that read them: descend's kernels
        where they take these tensors (``fused`` None or True), else torch's operations
        (``fast``: try the prebuilt reader first)."""
        kernels = self.fused is not False and layout.device.type == "cpu"
        if fast and kernels and not self.use_trace:
            got = self._fast_read(layout)
            if got is not None:
                return got
        self._settle(layout)
        plans, momentum, sources = self._sources(layout)
        tensors = layout.tensors
        sample = layout.sample
        sums = None
        path = "torch"
        if self.fused is not False:
            if not kernels:
                path = "torch: the kernels read CPU tensors"
            else:
                names = list(sources)
                got = fused_kernels.read(
                    layout.lengths,
                    tensors,
                    [p.grad for p in tensors],
                    momentum,
                    layout.before,
                    layout.preclip,
                    [sources[k] for k in names],
                    sample.flat_index,
                )
                sums, gathered = got if got is not None else (None, None)
                if sums is None or gathered is None:
                    sums = None
                    path = "torch: a tensor the kernels do not take (float32, contiguous, CPU)"
                    if not fused_kernels.available():
                        path = f"torch: kernels unavailable ({fused_kernels.unavailable_reason()})"
                else:
                    sampled = {k: row for k, row in zip(names, gathered)}
                    path = "fused"
                    if not self.use_trace:
                        self._make_reader(layout, plans, momentum, sources)
            if sums is None and self.fused is True:
                raise RuntimeError(f"Monitor(fused=True) could not use the kernels: {path}")
        if sums is None:
            sums = self._torch_sums(layout, momentum, sources)
            index = sample.index
            picked = [layout.row(k)[0].index_select(0, index) for k in sources]
            rows = torch.stack(picked).cpu().numpy() if picked else []
            sampled = {k: row for k, row in zip(sources, rows)}
        return sums, plans, sampled, path

    def _measure(self, step: int, lrs: list[float]) -> None:
        """Read what the step did while it is there to read (sums, the sampled state, the
        groups' hyperparameters as they are); the rest — gradient norms, rates, quantiles,
        the rows — is :meth:`_finish_all`'s, for up to ``defer`` sampled steps at once."""
        layout = self._layout
        # a prebuilt reader exists only for a CPU layout read by the kernels, without trace;
        # every parameter has a gradient where it succeeds (the layout is the kept one)
        read = self._fast_read(layout) if self.fused is not False else None
        bcs, self._bcs = (self._bcs if read is not None else []), []
        if read is None:
            with torch.no_grad():
                full, layout = layout, self._kept(layout)
                if layout.tensors:  # the prebuilt reader of a subset is tried
                    read = self._read(layout, fast=layout is not full)
        if read is not None:
            self.last_path = read[3]
        if len(bcs) != len(lrs):
            bcs = [self._v_bias_correction(gi) for gi in range(len(lrs))]
        else:  # the prebuilt reader's, where it read the group's first parameter's step
            bcs = [self._v_bias_correction(gi) if b is _UNREAD else b for gi, b in enumerate(bcs)]
        self._grads = {}  # read: the held gradients go
        skipped = getattr(self.base, "skipped_steps", None)
        if read is not None and self.histogram_every and self.samples % self.histogram_every == 0:
            with torch.no_grad():
                self._histograms(step, layout)
        self.samples += 1
        skipped = skipped if isinstance(skipped, int) else None
        self._losses.append((step, _Pending(lrs, bcs, skipped, layout, read, self._micro)))
        now = time.monotonic()
        self._deferred += 1
        if self._deferred == 1:  # the first held since the last write
            self._held_since, self._held_bytes = now, 0
        if read is not None:
            self._held_bytes += sum(map(_NBYTES, read[2].values()))
        if (
            self._deferred >= self.defer
            or now - self._held_since >= self.max_delay
            or self._held_bytes >= HELD_BYTES
        ):
            with torch.no_grad():
                self.flush_losses()

    def _finish_all(self, pendings: list[_Pending]) -> list[dict[str, float]]:
        """The rows of held sampled steps from what :meth:`_measure` read, in order (the
        noise-scale averages advance step by step): all of them in one native call where
        the kernels read them all (:meth:`_native_rows`), else the rates of each, the
        quantiles of all those the kernels read selected together (:meth:`_select_all`), then
        each row."""
        rows = self._native_rows(pendings)
        if rows is not None:
            return rows
        items = []
        for pending in pendings:
            out: dict[str, float] = {}
            for gi, (lr, bc) in enumerate(zip(pending.lrs, pending.bcs)):
                out[f"opt/group{gi}/lr"] = lr
                if bc is not None:
                    out[f"opt/group{gi}/v_bias_correction"] = bc
            read = pending.read
            if read is not None:
                sums = read[0]
                raw = sums
                if isinstance(sums, np.ndarray):
                    sums = sums.T.tolist()
                self._clip_and_noise(out, pending.layout, sums[flat.GP2], pending.micro)
                read = (sums, *read[1:4], raw)
            if pending.skipped is not None:
                out["opt/skipped_steps"] = float(pending.skipped)
            drawn = has_eff = None
            if read is not None:
                drawn, has_eff = self._rates(pending.layout, read[1], read[2], read[3])
            items.append((out, pending.layout, read, drawn, has_eff))
        selected = self._select_all(items)
        return [self._finish(*item, selected.get(i)) for i, item in enumerate(items)]

    def _native_rows(self, pendings: list[_Pending]) -> list[dict[str, float]] | None:
        """The rows of :meth:`_finish_all` in one native call (``descend_monitor_rows``, see
        :class:`~descend.monitor.fused.Rows`), where the kernels read every held step on one
        layout, each group's state plan compiles to a rate program
        (:func:`~descend.monitor.fused.rate_program`) and the steps gathered the same
        sources; else None (then the rows are made in Python, the reference these equal bit
        for bit, tested). Per step only the groups' programs, its backward-pass record and
        the values the C++ side does not compute (lr, v̂ bias correction, skipped steps) are
        gathered here; each row's dict is then built from its present values and the tags
        of its presence pattern (made once per pattern)."""
        lib = fused_kernels.rows_library()
        if lib is None or not pendings:
            return None
        layout = pendings[0].layout
        groups = len(pendings[0].lrs)
        names: tuple[str, ...] | None = None
        keys: dict[str, int] = {}
        sums, gathered, programs, lead, micro, info = [], [], [], [], [], []
        modes, given, given_eff = [], [], []
        ids = [id(p) for p in layout.tensors]
        n = len(ids)
        one = [1, None]  # a parameter's record of one backward pass
        ones, no_pass = [1] * n, (1, 0.0, 0.0, 1.0)
        average, program_of, trace = self._average, fused_kernels.rate_program, self.use_trace
        for pending in pendings:
            read = pending.read
            if (
                read is None
                or read[3] != "fused"
                or pending.layout is not layout
                or len(pending.lrs) != groups
            ):
                return None
            got, plans, sampled = read[0], read[1], read[2]
            if trace:
                # the chain's recorded v̂ and rate, placed by the Python rows' own code
                drawn, has_eff = self._rates(layout, plans, sampled)
                programs += _NO_RATES * len(plans)
                given_eff += [int(h) for h in has_eff]
                if drawn is None:
                    modes.append(2)
                    given.append(None)
                else:
                    modes.append(1)
                    given.append(drawn.reshape(-1))
            else:  # mode 0 (filled in below), the sources gathered in the names' order
                if names is None:
                    names = tuple(sampled)
                    keys = {k: i for i, k in enumerate(names)}
                elif tuple(sampled) != names:
                    return None
                gathered += map(sampled.__getitem__, names)
                for plan in plans:
                    if plan is None:
                        programs += _NO_RATES
                        continue
                    if plan[0] != "state":
                        return None
                    program = program_of(plan[1], plan[2], plan[3], keys)
                    if program is None:
                        return None
                    programs += program
            sums.append(got if isinstance(got, np.ndarray) else np.array(got).T.copy())
            for lr, bc in zip(pending.lrs, pending.bcs):
                lead += (lr, 1.0, 0.0, 0.0) if bc is None else (lr, 1.0, bc, 1.0)
            skipped = pending.skipped
            lead += (0.0, 0.0) if skipped is None else (float(skipped), 1.0)
            entries = list(map(pending.micro.get, ids))
            if n and entries.count(one) == n:  # one backward pass each
                micro += ones
                info += no_pass
                continue
            if None in entries:
                micro += [0 if e is None else 1 if e[1] is None else 2 for e in entries]
                entries = [e for e in entries if e is not None]
            else:
                micro += [1 if e[1] is None else 2 for e in entries]
            k = max((e[0] for e in entries), default=0)
            if k > 1:
                passes = [t for e in entries if e[1] for t in e[1]]
                total = float(torch.stack(passes).sum()) if passes else 0.0
                info += (k, total, float(bool(passes)), 1.0 / k if average else 1.0)
            else:
                info += (k, 0.0, 0.0, 1.0)
        if not trace:
            modes = [0] * len(pendings)
            given_eff = [0] * (n * len(pendings))
        # the sources: none read with trace (names stays None)
        sources = np.concatenate(gathered) if names else _NO_SOURCES
        if 1 in modes:  # the given rows of every step (read for those of mode 1 only)
            blank = np.zeros(2 * layout.sample.size, np.float32)
            given = np.concatenate([blank if g is None else g for g in given], dtype=np.float32)
        else:
            given = _NO_SOURCES
        cached = self._row_maker
        if cached is None or cached[0] is not layout or cached[1] != groups:
            cached = self._row_maker = (layout, groups, *self._row_plan(layout, groups), {})
        _, _, maker, tags, patterns = cached
        got = maker(
            lib,
            np.concatenate(sums),
            sources,
            array("d", programs),
            array("q", modes),
            given,
            array("q", given_eff),
            array("q", micro),
            array("d", info),
            array("d", lead),
            self._noise,
            self.noise_beta,
            self.batch_size or 1,
        )
        if got is None:
            return None
        present, values = got
        rows, at, width = [], 0, maker.columns
        for start in range(0, len(present), width):
            pattern = present[start : start + width]
            chosen = patterns.get(pattern)
            if chosen is None:
                chosen = patterns[pattern] = tuple(compress(tags, pattern))
            end = at + len(chosen)
            rows.append(dict(zip(chosen, values[at:end])))
            at = end
        return rows

    def _row_plan(self, layout: flat.Layout, groups: int) -> tuple[fused_kernels.Rows, list]:
        """The fixed arguments of :meth:`_native_rows` for ``layout`` and ``groups`` param
        groups, and the tags of its columns (in the order of the Python rows)."""
        sample = layout.sample
        scopes = self._scopes(layout)
        parts = self._parts(layout, scopes)
        group_of = sample.group_of
        if group_of is None:
            group_of = sample.group_of = np.full(sample.size, -1, np.int64)
            for g, members in enumerate(sample.member_rows):
                group_of[slice(None) if members is None else members] = g
        param_group = [0] * len(layout.tensors)
        for g, (first, end) in enumerate(layout.group_spans):
            param_group[first:end] = [g] * (end - first)
        layered = self.layers and sample.layer_rows is not None
        maker = fused_kernels.Rows(
            len(layout.tensors),
            sample.size,
            param_group,
            [span for _, span, _ in scopes],
            [(s.start, s.stop - s.start) for s in parts],
            [(s.start, s.stop - s.start) for s in sample.layers] if layered else None,
            group_of,
            len(layout.group_spans),
            2 * groups,
        )
        tags = [f"opt/group{gi}/{m}" for gi in range(groups) for m in ("lr", "v_bias_correction")]
        tags += ["opt/" + m for m in ("grad_norm_preclip", "micro_batches", "gns_g2")]
        tags += ["opt/" + m for m in ("gns_trace", "noise_scale", "skipped_steps")]
        for prefix, _, _ in scopes:
            tags += [prefix + m for m in (*_COMBINED, "momentum_cos")]
        tags.append("opt/clipped")
        for prefix, _, _ in scopes:
            tags += [f"{prefix}{m}_{q}" for m in ("v_hat", "eff_lr") for q in ("p10", "p50", "p90")]
        if layered:
            tags += [tag for triple in self._layer_tags(layout) for tag in triple]
        return maker, tags

    def _layer_tags(self, layout: flat.Layout) -> list[tuple[str, str, str]]:
        """Each layer's three tags (:data:`LAYER_METRICS`), made once per layout."""
        if layout.tags is None:
            layout.tags = [
                tuple(f"layer/{self.names.get(id(p), f'param{j}')}/{m}" for m in LAYER_METRICS)
                for j, p in enumerate(layout.tensors)
            ]
        return layout.tags

    def _scopes(self, layout: flat.Layout) -> list[tuple[str, tuple[int, int], int | None]]:
        scopes = [("opt/", (0, len(layout.tensors)), None)]
        if len(self.base.param_groups) > 1:
            for g, (gi, span) in enumerate(zip(layout.group_ids, layout.group_spans)):
                scopes.append((f"opt/group{gi}/", span, g))
        return scopes

    @staticmethod
    def _parts(layout: flat.Layout, scopes: list) -> list[slice]:
        sample = layout.sample
        return [
            sample.whole if g is None or not sample.groups else sample.groups[g] for *_, g in scopes
        ]

    def _select_all(self, items: list) -> dict[int, tuple]:
        """Per item read by the kernels and with rates, its scopes' (v̂, eff) quantiles and
        its layers' eff medians (None without layers), selected in C++ by two calls for all
        the items together over one copy of their samples (the rows are disjoint)."""
        jobs = []
        for i, (_, layout, read, drawn, has_eff) in enumerate(items):
            if drawn is not None and read[3] == "fused":
                sample = layout.sample
                layered = self.layers and any(has_eff) and sample.layer_rows is not None
                jobs.append((i, drawn, self._parts(layout, self._scopes(layout)), layered, sample))
        if not jobs:
            return {}
        scratch = np.concatenate([np.asarray(d, np.float32).reshape(-1) for _, d, *_ in jobs])
        scoped_rows, layer_rows, base = [], [], 0
        for _, _, parts, layered, sample in jobs:
            size = sample.size
            scoped_rows += [
                (base + r * size + s.start, s.stop - s.start) for s in parts for r in (0, 1)
            ]
            if layered:
                layer_rows += [(base + size + s.start, s.stop - s.start) for s in sample.layers]
            base += 2 * size
        scoped = fused_kernels.quantiles(scratch, scoped_rows, stats.QUANTILES, copy=False)
        medians = (
            fused_kernels.quantiles(scratch, layer_rows, (0.5,), copy=False) if layer_rows else []
        )
        if scoped is None or medians is None:
            return {}
        out = {}
        for i, _, parts, layered, sample in jobs:
            pairs = [(scoped[2 * k], scoped[2 * k + 1]) for k in range(len(parts))]
            del scoped[: 2 * len(parts)]
            layer = None
            if layered:
                layer = [m[0] for m in medians[: len(sample.layers)]]
                del medians[: len(sample.layers)]
            out[i] = (pairs, layer)
        return out

    def _finish(self, out, layout, read, drawn, has_eff, selected) -> dict[str, float]:
        """The row of a sampled step (see :meth:`_finish_all`); ``selected``: its quantiles
        from :meth:`_select_all`, or None (then selected here)."""
        if read is None:
            return out
        sums, plans, sampled, path = read[:4]
        tensors = layout.tensors
        scopes = self._scopes(layout)
        combined = None
        if path == "fused" and isinstance(read[-1], np.ndarray):  # the kernels' n × 9 sums
            combined = fused_kernels.combine(read[-1], [s for _, s, _ in scopes], self.layers)
        if combined is not None:
            names = _COMBINED
            for s, (prefix, *_) in enumerate(scopes):
                values = combined[8 * s : 8 * s + 8]
                for name, value in zip(names, values[:6]):
                    out[prefix + name] = value
                if values[7]:
                    out[prefix + "momentum_cos"] = values[6]
        else:
            order = (flat.U2, flat.W2, flat.G2, flat.MG, flat.M2, flat.OPPOSED, flat.NONZERO, 8)
            for prefix, (first, end), _ in scopes:
                total = [sum(sums[r][first:end]) for r in order]
                for key, value in stats.combine([total]).items():
                    out[prefix + key] = value
        if "opt/grad_norm_preclip" in out:
            clipped = out["opt/grad_norm"] < out["opt/grad_norm_preclip"] * (1 - 1e-4)
            out["opt/clipped"] = float(clipped)
        medians = None
        if drawn is not None:
            if selected is None:
                parts = self._parts(layout, scopes)
                selected = self._quantiles(layout, drawn, parts, has_eff, path)
            scoped, medians = selected
            for (prefix, (first, end), _), (vq, eq) in zip(scopes, scoped):
                present = (True, any(has_eff[first:end]))
                for name, here, values in zip(("v_hat", "eff_lr"), present, (vq, eq)):
                    if here and not all(math.isnan(x) for x in values):
                        for q, value in zip(("p10", "p50", "p90"), values):
                            out[f"{prefix}{name}_{q}"] = value
        if self.layers:
            ratio, sqrt = stats._ratio, math.sqrt
            tags = layout.tags
            if tags is None:  # each layer's three tags, made once per layout
                tags = layout.tags = [
                    tuple(f"layer/{self.names.get(id(p), f'param{j}')}/{m}" for m in LAYER_METRICS)
                    for j, p in enumerate(tensors)
                ]
            u2s, w2s, g2s = sums[flat.U2], sums[flat.W2], sums[flat.G2]
            at = 8 * len(scopes)
            for j, (ratio_tag, grad_tag, eff_tag) in enumerate(tags):
                if combined is not None:
                    out[ratio_tag], out[grad_tag] = combined[at + 2 * j], combined[at + 2 * j + 1]
                else:
                    out[ratio_tag] = ratio(sqrt(u2s[j]), sqrt(w2s[j]))
                    out[grad_tag] = sqrt(g2s[j])
                if medians is not None and has_eff[j]:
                    out[eff_tag] = medians[j]
        return out

    def _quantiles(self, layout: flat.Layout, drawn, parts: list, has_eff: list, path: str):
        """Per scope the (v̂, eff) quantiles of its sample ``parts``, and each layer's eff
        median (None without layers or rates), with numpy (the kernels' selection of the
        same values is :meth:`_select_all`'s)."""
        sample = layout.sample
        layered = self.layers and any(has_eff) and sample.layer_rows is not None
        pairs = [tuple(flat.row_quantiles(drawn[:, part], stats.QUANTILES)) for part in parts]
        medians = flat.padded_medians(drawn[1], sample.layer_rows) if layered else None
        return pairs, medians

    def _histograms(self, step: int, layout: flat.Layout) -> None:
        """Each layer's update, gradient and effective lr, whole (not sampled)."""
        hist_sinks = [s for s in self.sinks if hasattr(s, "write_histograms")]
        if not hist_sinks:
            return
        plans, _, sources = self._sources(layout)
        effs: list[Any] = [None] * len(layout.tensors)
        for g, plan in enumerate(plans):
            if plan is None:
                continue
            first, end = layout.group_spans[g]
            for j in range(first, end):
                if plan[0] == "trace":
                    effs[j] = sources["eff"][j] if plan[2] else None
                else:
                    _, group, keys, state = plan
                    effs[j] = flat.state_rates(group, {k: sources[k][j] for k in keys}, state)[1]
        hists: dict[str, torch.Tensor] = {}
        for j, p in enumerate(layout.tensors):
            name = self.names.get(id(p), f"param{j}")
            hists[f"layer/{name}/update"] = (layout.views[flat.BEFORE][j] - p.float()).reshape(-1)
            hists[f"layer/{name}/grad"] = p.grad.reshape(-1)
            if effs[j] is not None:
                hists[f"layer/{name}/eff_lr"] = effs[j].reshape(-1)
        for sink in hist_sinks:
            sink.write_histograms(step, hists)

    def _v_bias_correction(self, gi: int) -> float | None:
        group = self.base.param_groups[gi]
        if _bias_correction(group, 1.0) is None:  # none at any step: no β₂, off, or β₂ ≥ 1
            return None
        for p in group["params"]:
            state = self.base.state.get(p)
            if state and "step" in state:
                return _bias_correction(group, float(state["step"]))
        return None

    def _clip_and_noise(
        self, out: dict[str, float], layout: flat.Layout, gp2: list, micro: dict
    ) -> None:
        counted = [(j, micro[id(p)]) for j, p in enumerate(layout.tensors) if id(p) in micro]
        if not counted:
            return
        k = max(entry[0] for _, entry in counted)
        total_sq = sum(gp2[j] for j, _ in counted)  # ‖Σᵢ gᵢ‖² of each parameter, summed
        if k == 1:  # one backward: ‖g‖² of each parameter is its one micro-batch's
            micro_sq = total_sq
        else:
            passes = [t for _, entry in counted if entry[1] for t in entry[1]]
            single = sum(gp2[j] for j, entry in counted if entry[1] is None)
            micro_sq = float(torch.stack(passes).sum()) + single if passes else single
        scale = 1.0 / k if self._average and k > 1 else 1.0
        pre = math.sqrt(total_sq) * scale
        out["opt/grad_norm_preclip"] = pre  # "clipped" is :meth:`_finish`'s
        out["opt/micro_batches"] = float(k)
        parts = stats.noise_scale_parts([micro_sq], total_sq, k)
        if parts is not None:
            g2, trace = parts
            out["opt/gns_g2"], out["opt/gns_trace"] = g2, trace
            b = self.noise_beta
            self._noise = [b * self._noise[0] + (1 - b) * trace, b * self._noise[1] + (1 - b) * g2]
            if self._noise[1] > 0:
                unit = self.batch_size or 1
                out["opt/noise_scale"] = unit * self._noise[0] / self._noise[1]

    # --- writing ----------------------------------------------------------------------------------
    @property
    def rows(self) -> list[dict[str, float]]:
        """Everything written so far, one dict per write with its ``"step"`` (a
        ``RuntimeError`` with ``keep_rows=False``, after writing what is held)."""
        self.flush_losses()
        if not self.keep_rows:
            raise RuntimeError(
                "Monitor(keep_rows=False) keeps no rows in memory: read what it wrote from "
                "its sinks (e.g. log='run.csv' or a TensorBoard run), or pass keep_rows=True"
            )
        if self._unmade:  # made when asked for, not on the training thread at each write
            unmade, self._unmade = self._unmade, []
            self._rows.extend(
                [
                    {"step": step, "loss": scalars}
                    if type(scalars) is float
                    else {"step": step, **scalars}
                    for step, scalars in unmade
                ]
            )
        return self._rows

    def _emit(self, step: int, scalars: dict[str, float]) -> None:
        # the held losses first: the sinks get every write in the order it was made
        self._write_many([*self._held(), (step, scalars)])

    def _write_many(self, rows: list[tuple[int, dict[str, float] | float]]) -> None:
        """Write ``(step, scalars)`` rows to memory (kept as they are, made into the dicts of
        :attr:`rows` when asked for) and to every sink (with one call where the sink takes
        several rows at once: ``write_many``). A float as scalars is a loss row (see
        :meth:`_held`): the sinks that take such rows (``loss_rows``: TensorBoard's, which
        encodes them straight from the floats) get them so, the others the same rows with
        ``{"loss": value}``, made once for all of them. Nothing is kept with
        ``keep_rows=False``."""
        if self.keep_rows:
            self._unmade += rows
        dicts = None
        for sink in self.sinks:
            many = getattr(sink, "write_many", None)
            if many is not None and getattr(sink, "loss_rows", False):
                many(rows)
                continue
            if dicts is None:
                dicts = loss_dicts(rows)
            if many is not None:
                many(dicts)
            else:
                for step, scalars in dicts:
                    sink.write(step, scalars)

    def log_loss(self, loss: Any, step: int | None = None) -> None:
        """Record the training loss of the step just taken (call after ``optimizer.step()``);
        ``step`` defaults to the number of optimizer steps so far.

        A tensor is kept as it is and read with the others in one native call when the next
        write of the deferred rows, :meth:`log`, :attr:`rows`, :meth:`frame` or :meth:`close`
        comes, or every :data:`LOSS_BUFFER` tensors held (:meth:`_losses_full`: written, or
        read into floats while sampled steps wait for their write): one host read per batch
        instead of one
        ``item()`` per step (no device sync per step on a GPU; on the CPU the ``item()`` of a
        small model's loss costs ~2–3 µs a step, the hold ~1 µs; holding a detached alias
        instead, to free the graph at once, measured ~1 µs a step more). A tensor changed in
        place after it was given (its version counter moved) cannot be read as it was: its
        loss is written as NaN with a warning — pass ``loss.item()`` or a copy for a tensor
        you reuse. The tensor's autograd graph lives until the read: after ``backward()``
        that is only its nodes (backward frees what they saved); with ``retain_graph=True``
        pass ``loss.detach()``. Nothing is logged while the monitor is detached
        (:meth:`detach`)."""
        if self._detached:
            return
        at = self.steps if step is None else int(step)
        if isinstance(loss, torch.Tensor):
            shape = loss.shape
            if len(shape) and math.prod(shape) != 1:
                raise ValueError(f"loss must hold one value, got a tensor of shape {tuple(shape)}")
            value: Any = (loss, loss._version)
            self._unread += 1
        else:
            value = float(loss)
        self._losses.append((at, value))
        if self._unread >= LOSS_BUFFER:
            self._losses_full()

    def _losses_full(self) -> None:
        """:data:`LOSS_BUFFER` loss tensors held unread: without sampled steps held (or held
        past ``max_delay``) everything is written; else the held loss tensors are read into
        floats now (their autograd graphs go) and the write waits for the deferred rows."""
        if not self._deferred or time.monotonic() - self._held_since >= self.max_delay:
            self.flush_losses()  # (_held starts the counts again)
            return
        held = self._losses
        at = [i for i in range(self._read_to, len(held)) if type(held[i][1]) is tuple]
        self._unread, self._read_to = 0, len(held)
        if at:
            values = _read_losses([held[i][1] for i in at])
            for i, x in zip(at, values):
                held[i] = (held[i][0], x)

    def flush_losses(self) -> None:
        """Write the losses :meth:`log_loss` holds and the sampled steps not yet written
        (see ``defer``)."""
        if self._losses:
            self._write_many(self._held())

    def _held(self) -> list[tuple[int, dict[str, float] | float]]:
        """The held losses and sampled steps as rows, in the order they came (loss tensors
        read in one native call), and forget them. A loss row's scalars are its value, a
        float standing for ``{"loss": value}`` (made into that dict by :meth:`_write_many`
        for the sinks that take dicts, by :attr:`rows` when asked for): no dict per step.
        Every held value is a loss tensor (as ``(tensor, version)``), a loss read into a float
        (:meth:`log_loss` of a number, or :meth:`_losses_full`) or a sampled step (a
        :class:`_Pending`): each pass is a C-level one."""
        if not self._losses:
            return []
        held, self._losses = self._losses, []
        self._deferred = self._unread = self._read_to = 0
        ats, values = zip(*held)
        kinds = list(map(type, values))  # tuple (a loss tensor), float, or _Pending
        at = list(compress(range(len(kinds)), map(operator.is_, kinds, repeat(_Pending))))
        pendings = list(map(values.__getitem__, at))
        items = list(compress(values, map(operator.is_not, kinds, repeat(_Pending))))
        tensors = kinds.count(tuple)
        if tensors == len(items):  # loss tensors only
            items = _read_losses(items) if items else []
        elif tensors:  # and losses read into floats already (_losses_full)
            unread = [i for i, v in enumerate(items) if type(v) is tuple]
            for i, x in zip(unread, _read_losses([items[i] for i in unread])):
                items[i] = x
        if pendings:
            for i, row in zip(at, self._finish_all(pendings)):  # ascending positions
                items.insert(i, row)
        return list(zip(ats, items))

    def log(self, scalars: dict[str, float], step: int | None = None) -> None:
        """Write any other scalars (e.g. ``val_loss``) to the same sinks."""
        self._emit(
            self.steps if step is None else int(step), {k: float(v) for k, v in scalars.items()}
        )

    def frame(self):
        """Everything written so far as a pandas DataFrame, one row per step (NaN = not
        measured at that step)."""
        import pandas as pd

        if not self.rows:
            return pd.DataFrame({"step": []})
        frame = pd.DataFrame(self.rows).groupby("step", sort=True).first().reset_index()
        return frame

    def to_csv(self, path: str | Path) -> Path:
        """Write :meth:`frame` to ``path`` (a CSV that ``descend diagnose`` reads)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.frame().to_csv(path, index=False)
        return path

    def close(self) -> None:
        """Remove every hook and flush and close the sinks (idempotent)."""
        if self._closed:
            return
        self.flush_losses()
        self._closed = True
        self._disarm()
        self._grad_hooks, self._grads, self._layout_hooks = {}, {}, None
        self._layout = self._subset = self._reader = self._snapshot = None  # the buffers
        self._row_maker = None
        for handle in self._handles:
            handle.remove()
        for sink in self.sinks:
            sink.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def monitor(
    optimizer: torch.optim.Optimizer,
    model: nn.Module | None = None,
    *,
    every: int = 10,
    log: Any = None,
    **options: Any,
) -> Monitor:
    """Attach a :class:`Monitor` to ``optimizer`` in one line::

    mon = monitor(opt, model, every=10, log="runs/exp1")    # TensorBoard
    for x, y in loader:
        ...; opt.step(); mon.log_loss(loss)
    mon.close()
    """
    return Monitor(optimizer, model, every=every, log=log, **options)
