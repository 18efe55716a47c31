"""Fast steps: every named optimizer's update as one single-pass kernel per param group.

The default path runs a chain of transforms as a dozen ``torch._foreach_*`` calls, each a
full pass over memory (for-loop speed on CPU). The fast path reads θ, g and the state once
and writes them once, in C++ compiled at first use (:mod:`descend.native`), with one OpenMP
region over all the group's tensors — as fast as torch's fused Adam, for every descend variant
(centered RMSprop, EMA momentum, Adam without bias correction, Keras' ε̂, NAdam's schedules,
AMSGrad of v̂, …). The non-finite check of ``nonfinite="skip"|"raise"`` is one read pass too.

**The switch** is torch's keyword, on every named optimizer (SGD, Adagrad, RMSprop, Adam,
AdamW, AMSGrad, NAdam, Lion, RAdam, Adamax, ADOPT, and any other whose chain core declares a
kernel):

* ``fused=None`` (default): fast path whenever the group qualifies, else the default path;
* ``fused=True``: fast path or an error saying why not (checked at construction and at
  each step);
* ``fused=False``: always the default path.

The environment variable ``DESCEND_FAST=0`` turns the automatic choice off process-wide
(``fused=True`` still applies). A group takes the default path when a trace hook is registered
(explanations need the intermediates); when a hyperparameter other than the learning rate and
the weight decay is a tensor of several values (those two may be the lab's (N, 1) per-run
columns; a one-element tensor is a number, as in torch); for per-row clipping; for parameters
that are not float32/float64 (complex ones step as their ``view_as_real``), not on the CPU or
not contiguous; and when no C++ compiler is available (a warning says so once).
``from_chain`` optimizers always keep the default path. :func:`last_path` tells which path
each group took, and why.

Under ``torch.compile`` a group's kernel call is one custom op, ``torch.ops.descend.<family>``
(:mod:`.ops`), prepared by :func:`init_compiled` outside the graph; the checks run inside the
op at every call.

Both paths hold the same state under the same keys (torch's names, same dtypes), so a state
dict saved from either loads into the other, and a run may switch paths at any step.

The per-element arithmetic lives in ``descend/native/kernels.h`` as plain functions marked
``DESCEND_HD`` (``__host__ __device__`` under nvcc); only the drivers (``drivers.h``: per-tensor
coefficients; ``cpu.cpp``: thread ranges) are CPU-specific, so a CUDA driver would reuse the
same functions.

**A new element-wise family** (Lion, ``kernel = "lion"``, is the worked example; the other
families are written the same way). The chain stays the reference: the kernel must compute the
default path's floating-point operations in its order, and the tests compare the two.

1. ``native/kernels.h``: the per-element function (``lion_element``) and its coefficient
   struct (``LionC``). It starts with ``grad_in`` (clip factor, maximize's sign, L2) and ends
   with ``apply_exact`` (lr, decoupled/independent decay, both products rounded in both dtypes),
   shared by every family, and in between spells out the core transform's torch ops one by one:
   a product is ``mul_exact`` (rounded, never contracted into the next addition), an op torch's
   CPU kernel rounds once — ``add_(x, alpha=a)``, ``lerp`` (``lerp_exact``), ``addcmul``
   (``ewa_sq_exact``) — is one ``std::fma``. Lion writes them in both dtypes, so it equals the
   chain bit for bit (its sign would flip on a rounding difference).
2. ``native/drivers.h``: the driver (``lion``): advances every step counter, computes the
   per-tensor, per-step coefficients in double (bias corrections, schedules), and hands the
   ``#pragma omp simd`` loop over a range of one tensor (``lion_range``: one call of
   ``element_range``, which walks the lab's row modes — per-element or per-row lr and decay —
   and flattens the element into the loop) to the runner.
3. ``native/cpu.cpp``: ``DESCEND_ENTRY(lion)``, the C entry point ``descend_lion``.
4. ``native/abi.py``: the name in ``FAMILIES`` (the loader binds ``descend_<name>``; its index
   is the lab's family id). ``Args`` carries the numbers (β₁, β₂, ε, …); a family that needs a
   number no other has adds a field to ``Args`` here and in ``drivers.h``.
5. ``native/lab.cpp``: a ``case`` in ``step_family`` and the bound in ``descend_lab_step``, so
   the landscape lab's fused run steps the family too (without them the lab's call refuses).
6. ``optim/fast/ops.py``: the family's state columns in ``SLOTS`` — the schema of its custom
   op (``descend::lion(… Tensor(b!)[] exp_avg, Tensor(c!)[] step …)``).
7. The core transform (``transforms/lion.py``): ``kernel = "lion"`` and ``kernel_plan``, which
   fills the ``Args`` fields from the group exactly as ``update`` reads them and names the
   state keys of the slots (s0 = ``exp_avg``). Per-parameter 0-d state beyond the step count
   is a checked column too: ``KernelPlan.extra`` (NAdam's μ-product; ASGD's η, created at
   first use with ``extra_fill``) and ``KernelPlan.scalars`` (ASGD's μ, ``Args.asgd_mu``);
   a slot created at first use from the group is ``lazy`` with ``lazy_fill`` (Rprop's η₀ = γ).

**The cautious mask** (``cautious=True``, :class:`descend.transforms.cautious`): the plan
unwraps ``cautious(core [absorbed])`` for the families in ``descend.native.abi.CAUTIOUS`` (SGD,
RMSprop, Adam, NAdam, Lion) and sets ``Args.cautious``; their drivers then step in two passes
(``drivers.h``, ``cautious_step``): the core on copies of the state counts φ = 1[u·x > 0] per
tensor, then the element runs with u·φ·n/(Σφ + 1). Any other family keeps the chain under it
(the plan says so), as do per-run tensor hyperparameters (the mask couples rows) and DTensor
parameters sharded over several ranks (the count is the whole tensor's). A new family that
masks adds its name to ``CAUTIOUS``, a ``cautious_step`` overload and its core function.

Nothing else: :func:`~.plan.shape_of` recognises any chain whose core declares a kernel, the
per-call checks (``check.cpp``) run on every column the plan names, and the tests that iterate
families (``tests/test_cases.py``, ``test_fast_fuzz.py``) pick the new one up; add its
configurations to ``test_fast_path.py``'s tables, ``test_compile.py``'s and the benchmark's.

Two more hooks, for Schedule-Free (``kernel = "schedule_free"``): a core may run the link
before it in the same kernel (``absorbs_before``: Schedule-Free AdamW's ``scale_by_rms``, whose
g/(√v̂ + ε) is the base direction), and keep per-parameter Python numbers in the state
(``KernelPlan.host``: γ_max and Σw, ``{Args field: state key}``): they reach the driver as
arrays of doubles it updates in place, and :class:`~.step.Prepared` writes them back to the
state after the call (the lab's fused run advances them per block of runs, as the step
counters). A compiled step cannot carry them, so such a group runs the chain under
``torch.compile``.
"""

from __future__ import annotations

import warnings

import torch

from descend import native
from descend.native import build as _lib

from .plan import Shape, Unsupported, shape_of
from .step import Prepared, _init_missing, check_parameters, prepare, run
from .step import all_finite as _all_finite

__all__ = [
    "Unsupported",
    "available",
    "grads_finite",
    "init_compiled",
    "last_path",
    "prepare_group",
    "require",
    "status",
    "step_group",
]

_warned = False


def available() -> bool:
    """True when the kernels are built (or were built before) and loaded."""
    return _lib.load() is not None


def status() -> dict:
    """Build status: ``available``, ``path`` of the library, ``build_s`` (seconds spent
    compiling in this process, None when a cached build was loaded) and ``error``."""
    return _lib.status()


_auto_enabled = native.enabled


def _shape(opt, links) -> Shape:
    """The chain's shape, cached per chain object on the optimizer."""
    cache = opt.__dict__.setdefault("_fast_shapes", {})
    hit = cache.get(id(links))
    if hit is None or hit[0] is not links:
        try:
            hit = (links, shape_of(links.transforms), None)
        except Unsupported as exc:
            hit = (links, None, str(exc))
        cache[id(links)] = hit
    if hit[1] is None:
        raise Unsupported(hit[2])
    return hit[1]


def _check_optimizer(opt) -> None:
    # Declared optimizers may take the fast path (their chain's core says whether it has a
    # kernel: plan.shape_of); free chains (from_chain) and other classes keep the default one.
    if not getattr(type(opt), "fast_path", False):
        raise Unsupported(f"{type(opt).__name__} keeps the default (foreach) path")


def _lib_or_raise():
    lib = _lib.load()
    if lib is None:
        raise Unsupported(f"the fast kernels are unavailable: {_lib.status()['error']}")
    return lib


def step_group(opt, index: int, group: dict, params: list) -> bool:
    """Step one group on the fast path; False when the caller must run the chain instead
    (``fused=True`` raises ``RuntimeError`` instead of returning False)."""
    last = opt.__dict__.setdefault("_fast_last", {})
    if opt.fused is None and not _auto_enabled():
        last[index] = "DESCEND_FAST=0"
        return False
    try:
        _check_optimizer(opt)
        lib = _lib_or_raise()
        links = opt.chain(group)
        plan = _shape(opt, links).resolve(group)
        run(lib, opt, index, links, plan, params)
    except Unsupported as exc:
        last[index] = str(exc)
        if opt.fused:
            raise RuntimeError(f"{type(opt).__name__}(fused=True): {exc}") from None
        _warn_unavailable()
        return False
    last[index] = None
    return True


def prepare_group(opt, index: int, group: dict, params: list) -> Prepared:
    """A group's step made ready but not run, for a caller that runs the family's driver
    itself (the lab's fused step, ``descend_lab_step``); raises :class:`Unsupported` when the
    group cannot take the fast path (``fused=False`` and ``DESCEND_FAST=0`` included)."""
    if opt.fused is False or (opt.fused is None and not _auto_enabled()):
        raise Unsupported("the fast path is switched off (fused=False or DESCEND_FAST=0)")
    if opt._trace_hooks:
        raise Unsupported("a trace hook is registered (explanations need the chain)")
    _check_optimizer(opt)
    _lib_or_raise()
    links = opt.chain(group)
    plan = _shape(opt, links).resolve(group)
    if plan.per_tensor is not None:  # the lab's call runs many steps; these change each step
        raise Unsupported("a hyperparameter Python computes at each step (a function)")
    prepared = prepare(opt, index, links, plan, params)
    opt.__dict__.setdefault("_fast_last", {})[index] = None
    return prepared


def grads_finite(opt, grads: list) -> bool | None:
    """The non-finite check of ``nonfinite="skip"|"raise"`` in one parallel pass; None when the
    caller must use torch's (fused=False, ``DESCEND_FAST=0``, unsupported tensors, no kernels)."""
    if opt.fused is False or (opt.fused is None and not _auto_enabled()):
        return None
    lib = _lib.load()
    if lib is None:
        return None
    try:
        return _all_finite(lib, grads)
    except Unsupported:
        return None


def _warn_unavailable() -> None:
    global _warned
    if not _warned and _lib.load() is None:
        _warned = True
        warnings.warn(
            "descend's fast optimizer kernels are unavailable "
            f"({_lib.status()['error']}); using the default path",
            RuntimeWarning,
            stacklevel=4,
        )


def require(opt) -> None:
    """Raise ``ValueError`` if ``opt`` (built with ``fused=True``) cannot take the fast path for
    a reason known at construction: class, chain, hyperparameters, parameters, compiler."""
    try:
        _check_optimizer(opt)
        for group in opt.param_groups:
            _shape(opt, opt.chain(group)).resolve(group)
            # complex parameters are stepped as their real views (ChainOptimizer._step_group)
            check_parameters(
                [torch.view_as_real(p) if p.is_complex() else p for p in group["params"]]
            )
        _lib_or_raise()
    except Unsupported as exc:
        raise ValueError(f"{type(opt).__name__}(fused=True) is not supported: {exc}") from None


def last_path(opt) -> dict[int, str]:
    """For each group stepped so far: ``"fast"`` or ``"default: <reason>"``."""
    return {
        index: "fast" if reason is None else f"default: {reason}"
        for index, reason in sorted(opt.__dict__.get("_fast_last", {}).items())
    }


def init_compiled(opt, index: int, group: dict, params: list) -> tuple | None:
    """A group's step made ready for ``torch.ops.descend.<family>`` in a traced step (run
    eagerly by dynamo through ``ChainOptimizer._init_group``): checks the tensors as they
    are now, creates absent state and registers the plan (:mod:`.ops`). Returns ``(family,
    token, tensor hyperparameter keys, state columns in the op's order, fresh, lazy)``, or
    None when the group runs on the chain (``last_path`` says why; ``fused=True`` raises
    instead). ``fresh`` lists the parameters whose modern-momentum buffer does not exist yet
    (torch's v₁ = g): the traced step creates them, at ``lazy = (column, state key)``, and
    the kernel sets them to their first input; the next step finds them in the state, and
    dynamo traces again without (as torch's compiled SGD)."""
    from .ops import EXTRA, SLOTS, register
    from .step import _grad, _local_group, _split_rows, assemble

    last = opt.__dict__.setdefault("_fast_last", {})
    if opt.fused is None and not _auto_enabled():
        last[index] = "DESCEND_FAST=0"
        return None
    created: list[int] = []
    try:
        _check_optimizer(opt)
        _lib_or_raise()
        links = opt.chain(group)
        shape = _shape(opt, links)
        plan = shape.resolve(group)
        numbers, rows, _ = _split_rows(plan, params)
        if rows:
            raise Unsupported("per-run hyperparameter tensors under torch.compile")
        if plan.host:  # the op's columns are tensors: Python numbers cannot follow the graph
            keys = ", ".join(plan.host.values())
            raise Unsupported(f"state numbers ({keys}) under torch.compile (Schedule-Free)")
        grads = list(map(_grad, params))
        if _local_group(params, grads)[2] is not None:
            raise Unsupported("DTensor parameters under torch.compile")
        states = [opt.state[p] for p in params]

        def init():
            created.extend(_init_missing(links, plan, params, states))
            return list(created)

        assemble(plan, numbers, params, grads, states, init=init)  # every check, no call
    except Unsupported as exc:
        last[index] = str(exc)
        if opt.fused:
            raise RuntimeError(f"{type(opt).__name__}(fused=True): {exc}") from None
        return None
    finally:
        for i in created:  # made by the traced step, so that the next one traces anew
            states[i].pop(plan.lazy, None)
    token, keys = register(shape, group)
    family = plan.family
    column_keys = [plan.slots[i] for i, name in enumerate(SLOTS[family]) if name is not None]
    column_keys += ["step", plan.extra] if family in EXTRA else ["step"]
    column_keys += [key for _, key in plan.scalars]
    lazy = (column_keys.index(plan.lazy), plan.lazy) if created else None
    columns = [
        [] if key is None or (lazy is not None and key == lazy[1]) else [st[key] for st in states]
        for key in column_keys
    ]
    last[index] = None
    return family, token, keys, columns, tuple(created), lazy
