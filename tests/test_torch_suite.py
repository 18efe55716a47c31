"""PyTorch's own generic optimizer tests, run on descend.

A port of the device-generic CPU tests of torch 2.13's ``test/test_optim.py`` (class
``TestOptimRenewed``) to pytest, written for descend: the behaviour each torch test checks is
checked here on descend's SGD, Adagrad, RMSprop, Adam, AdamW, NAdam, RAdam, Adamax, Adadelta,
Rprop and ASGD, and on the chain-only Adafactor and Muon (:data:`CHAIN_ONLY`, no fast-path
kernel yet). The inputs are
torch's own: every :class:`OptimizerInfo` is torch's entry from
``torch.testing._internal.common_optimizers.optim_db`` (shipped in the torch wheel) with
``optim_cls`` replaced by descend's class, so ``optim_inputs_func``, ``scheduler_inputs``,
``optim_error_inputs_func`` and ``not_og_supported_flags`` are torch's.

**Both paths.** torch's global "cliquey" flags (``foreach``, ``fused``) map onto descend's one
switch: every test runs with ``fused=True`` (the C++ kernels) and ``fused=False`` (the chain
of transforms) and asserts which one ran with :func:`descend.optim.fast.last_path`;
``test_foreach_matches_forloop`` / ``test_fused_matches_forloop`` become
:func:`test_fused_matches_chain`. The tests are the torch tests' logic (steps, sizes,
tolerances: torch's ``assertEqual`` defaults, which ``torch.testing.assert_close`` shares),
not a reduced version.

Adapted (torch's check kept, the setting changed), with the reason:

* The :data:`CHAIN_ONLY` optimizers have no fast-path kernels yet: every test runs on the chain
  (``fused=False``) only, and the fused-only tests (``test_fused_matches_chain`` for both
  dtypes, ``test_fused_error_on_params_on_meta``, ``test_fused_refuses_half_precision``)
  assert instead that ``fused=True`` is refused at construction with the clear "not
  supported: chain core … has no fast kernel" error (torch runs no fused test for them
  either: their ``supported_impls`` are foreach and differentiable). Closing-note counts,
  per optimizer: 46 tests ran, 46 passed, 4 adapted to the refusal (those above) plus one
  error input (``Tensor lr must be 1-element``, as for the others), 40 dropped (the
  ``fused=True`` runs of the tests that take both paths), against 86 run for each of the
  optimizers with kernels.

* ``differentiable=True`` inputs of ``_get_optim_inputs_including_global_cliquey_kwargs``:
  descend has no differentiable mode and refuses the flag with ``ValueError``
  (:func:`test_differentiable_and_capturable_are_refused`); the other global inputs run.
* The global flags are optimizer keywords in descend (one switch per optimizer), so where
  torch puts ``foreach``/``fused`` into a param-group dict (``test_param_groups_*``) the
  switch goes to the constructor.
* ``test_errors``: exception types are torch's; messages must name the same parameter
  (descend's wording differs: "beta1 (betas[0])=1.0 is invalid: it must be in [0, 1)" for
  "Invalid beta parameter at index 0: 1.0"); messages raised by torch's base class
  (duplicate parameters, param names, params type) must match torch's regex. Some inputs
  (four for Adam and AdamW, one for the others) assert a *refusal* that descend does not
  make, because it supports what torch refuses:
  "lr as Tensor doesn't work with foreach" and "betas[0] as a Tensor is not supported ...
  foreach=True" (tensor hyperparameters work on both of descend's paths), "betas must be
  either both floats or both Tensors" (each β is read on its own) — for these the test
  asserts instead that the optimizer steps exactly like the one with plain floats; "Tensor
  lr must be 1-element" (descend's lab steps N trajectories with an (N, 1) lr column) —
  the test asserts that an (N, 1) lr steps row i as an optimizer with lr[i] would (ASGD
  with ``fused=True``: its kernel keeps one η per tensor, so ``fused=True`` refuses the column,
  asserted, and the rows step on the chain with ``fused=None``, which says why).
* ``test_forloop_goes_right_direction`` with ``contiguous=False`` on the fast path: the C++
  kernels take contiguous tensors only, so ``fused=True`` refuses non-contiguous parameters
  at construction (asserted) and the test runs with ``fused=None``, asserting that the group
  fell back to the chain and why.
* ``test_fused_error_on_params_on_meta``: descend checks ``fused=True`` when the optimizer is
  built, so parameters on "meta" are refused there (``ValueError`` naming the device) instead
  of at the first step; after ``to_empty(device="cpu")`` a new ``fused=True`` optimizer steps
  on the fast path. Run for all nine optimizers with kernels (torch: its fused CPU ones,
  Adagrad/Adam/AdamW).
* ``test_complex`` / ``test_complex_2d`` also run on the fast path (torch skips fused there:
  its kernels lack complex; descend steps complex parameters as ``view_as_real`` on both).
* ``test_fused_matches_forloop``'s float16/bfloat16 dtypes: descend's kernels are float32 and
  float64 (a ``fused=True`` optimizer refuses the others, asserted in
  :func:`test_fused_refuses_half_precision`); float32 and float64 are compared, for all nine
  optimizers (torch: float64 for foreach, its three fused-on-CPU optimizers for fused).
* ``test_adamw_serialization`` checks ``weight_decay_mode`` (descend's key) besides torch's
  ``decoupled_weight_decay``, with both descend's and torch's state dicts.

* The chain-only optimizer Adafactor has no ``fused=True`` path: every test
  taking ``fused`` runs on the chain only; the fast-path tests (``test_fused_matches_chain``,
  ``test_fused_refuses_half_precision``, ``test_fused_error_on_params_on_meta``) become
  :func:`test_chain_matches_torch` (torch's foreach-vs-forloop comparison with descend's chain
  against torch.optim's own class, 7 steps, parameters and state, float64 and float32) and
  :func:`test_fused_true_is_refused_without_kernels` (``fused=True`` refused at construction
  for every dtype and for meta parameters, with the reason).
* ``test_step_is_noop_for_zero_grads`` for ASGD (torch skips it: its λ term shrinks θ without
  a gradient): asserts instead that the step is exactly θ(1 − λη₀).
* ``test_errors``' "Tensor lr must be 1-element" for Adafactor: its update mixes a tensor's
  elements, so a per-row lr column has no meaning and descend refuses it as torch does (the
  row-wise lr check above is for the element-wise optimizers).
* ``test_param_groups_lr`` gives Rprop ``step_sizes=(0, 50)``, as torch's test does (else its
  minimal step size moves the "irrelevant" parameter).
* Muon, as torch's own ``test_optim.py`` treats it (torch.optim.Muon takes 2-D parameters
  only): where a test builds a weight and a bias, Muon gets the weight alone and the loss drops
  the bias (``test_forloop_goes_right_direction``, ``test_tensor_lr``,
  ``test_param_groups_lr``, ``test_state_dict_deterministic``,
  ``test_save_load_equality_with_weights_only``); ``test_can_load_older_state_dict`` and
  ``test_can_load_from_to_named_state_dict`` use torch's ``Linear(10, 4, bias=False)`` for it;
  ``test_step_is_noop_for_zero_grads`` lowers its lr to 1e-5 as for AdamW (torch's) and
  asserts the step is exactly Muon's default decay θ(1 − γλ) (torch's test lets that change
  through within its tolerance, which the decay of its 7 inputs can exceed). torch's
  Muon entry declares ``supports_complex=False`` (so no ``test_complex*``) and
  ``supported_impls=()`` (no foreach/fused comparison); its one declared skip,
  ``CompiledOptimizerParityTests.test_correctness``, is not a test of this suite. Adapted:
  ``test_chain_matches_torch`` compares with torch.optim.Muon on the model's weights alone
  (no biases, no 0-d parameter), descend's extra ``step`` count left out of the state
  comparison; ``test_errors``' "Muon only supports 2D parameters" is a refusal descend does
  not make (its Muon steps such a parameter with its AdamW part): the test asserts instead
  that a 3-D parameter steps exactly as torch.optim.AdamW; "Adjust learning rate function
  arbitrary is not supported" must name ``adjust_lr_fn='arbitrary'`` (descend's wording);
  complex parameters are refused at the step with torch's RuntimeError and message.

Dropped, with the reason:

* CUDA-only or multi-GPU (``onlyCUDA``, ``TEST_MULTIGPU``): ``test_forloop_goes_right_direction
  _multigpu``, ``test_mixed_device_dtype``, ``test_set_default_dtype_works_with_foreach``,
  ``test_foreach_large_tensor``, ``test_peak_memory_foreach``,
  ``test_fused_does_not_step_if_foundinf``, ``test_state_dict_with_cuda_params``,
  ``test_fused_cpu_matches_cuda``, ``test_defaults_changed_to_foreach``;
  ``test_cpu_load_state_dict`` skips itself on the CPU.
* ``test_fused_large_tensor`` (64 GB tensors).
* ``test_complex`` and ``test_complex_2d`` for Adafactor (torch's ``supports_complex=False``:
  both refuse complex parameters, asserted by ``test_errors``).
* ``test_rosenbrock_sparse``: sparse gradients (descend refuses them with a clear error).
* ``test_second_order_optims_return_consistent_types`` and ``test_step_iteration``: LBFGS.
* The error inputs that need CUDA (``fused`` with ``foreach`` or ``differentiable``).
"""

# The closures in the loops (torch's own structure) run within their iteration:
# ruff: noqa: B023

from __future__ import annotations

import copy
import functools
import re
import tempfile

import pytest
import torch
from torch.nn import Parameter
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)
from torch.testing._internal.common_optimizers import (
    OptimizerErrorEnum,
    TensorTracker,
    optim_db,
)

import descend.optim as D
from conftest import require_kernels
from descend.optim.fast import last_path

NAMES = ("SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "NAdam")
NAMES += ("RAdam", "Adamax")  # their kernels: issue #14
NAMES += ("Adadelta", "Rprop", "ASGD")  # kernels of issue 14
# torch.optim's optimizers that descend runs on the chain only (no fast-path kernel yet):
# ``fused=True`` is refused at construction (test_fused_true_is_refused_without_kernels,
# _refuses_fused), the fused-only tests are replaced by test_chain_matches_torch, every other
# test runs on the chain (see the module docstring). test_chain_only_is_what_has_no_kernel
# keeps this list honest.
CHAIN_ONLY = ("Adafactor", "Muon")  # the others have kernels (issue #14)
NAMES += CHAIN_ONLY
FAST = {name: name not in CHAIN_ONLY for name in NAMES}
# the tests about the fast path itself, run for the optimizers that have one
FAST_ONLY = frozenset(
    (
        "test_fused_refuses_half_precision",
        "test_fused_matches_chain",
        "test_fused_error_on_params_on_meta",
    )
)


def _descend_info(name: str):
    """torch's OptimizerInfo for ``name``, with descend's class as ``optim_cls``."""
    torch_info = next(i for i in optim_db if i.optim_cls.__name__ == name)
    info = copy.copy(torch_info)
    info.optim_cls = getattr(D, name)
    return info


INFOS = {name: _descend_info(name) for name in NAMES}


def _matrices_only(info) -> bool:
    """torch's own suite gives Muon (torch.optim.Muon takes 2-D parameters only) its weight
    matrix alone where the others get a weight and a bias, and drops the bias from the loss
    (test_optim.py: ``params = [weight, bias] if optim_cls.__name__ != "Muon" else [weight]``,
    ``wo = w.mv(i) if optim_cls.__name__ == "Muon" else w.mv(i) + b``); the ported tests do
    the same through these helpers. (descend's Muon would step the bias with AdamW; that
    pairing is checked against torch.optim.AdamW in tests/test_matrix_methods.py.)"""
    return info.name == "Muon"


def _weight_bias(info, weight, bias) -> list:
    return [weight] if _matrices_only(info) else [weight, bias]


def _affine(info, weight, x, bias):
    return weight.mv(x) if _matrices_only(info) else weight.mv(x) + bias


PATHS = {"fused": True, "chain": False}


def _need_fast() -> None:
    require_kernels()  # skips locally, fails under CI=true (tests/conftest.py)


@pytest.fixture(autouse=True)
def one_thread():
    """1 thread, as in test_fast_path: these tensors are tiny, and 2-thread OpenMP regions
    stall for ~10 ms when another process is busy (20× slower on a loaded 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _has_kernels(cls) -> bool:
    """Whether the optimizer's default chain has a fast path (its core declares a kernel)."""
    from descend.optim.fast.plan import Unsupported, shape_of

    opt = cls([torch.zeros(2, requires_grad=True)])
    try:
        shape_of(opt.chain(opt.param_groups[0]).transforms)
    except Unsupported:
        return False
    return True


def test_chain_only_is_what_has_no_kernel() -> None:
    assert {n for n in NAMES if not _has_kernels(INFOS[n].optim_cls)} == set(CHAIN_ONLY)


@pytest.fixture
def info(request):
    return INFOS[request.param]


@pytest.fixture
def fused(request) -> bool:
    if PATHS[request.param]:
        _need_fast()
    return PATHS[request.param]


def pytest_generate_tests(metafunc):
    """``info`` × ``fused`` for every optimizer and path it has: the chain-only optimizers
    (:data:`CHAIN_ONLY`) have no ``fused=True`` path and no fast-path-only tests."""
    names = metafunc.fixturenames
    test = metafunc.function.__name__
    which = [n for n in NAMES if not (n in CHAIN_ONLY and test in FAST_ONLY)]
    if test in ("test_complex", "test_complex_2d"):  # torch's supports_complex (Adafactor)
        which = [n for n in which if INFOS[n].supports_complex]
    if "info" in names and "fused" in names:
        pairs = [(n, p) for n in which for p in PATHS if not (n in CHAIN_ONLY and PATHS[p])]
        metafunc.parametrize(
            ("info", "fused"), pairs, ids=[f"{n}-{p}" for n, p in pairs], indirect=True
        )
    elif "info" in names:
        metafunc.parametrize("info", which, indirect=True)
    elif "fused" in names:
        metafunc.parametrize("fused", list(PATHS), indirect=True)


def _refuses_fused(info) -> bool:
    """For an optimizer without kernels (:data:`CHAIN_ONLY`), assert the clear refusal of
    ``fused=True`` at construction and return True: a fused-only test is adapted to that."""
    if FAST[info.name]:
        return False
    with pytest.raises(ValueError, match=r"fused=True\) is not supported: chain core"):
        info.optim_cls([torch.zeros(2, requires_grad=True)], fused=True)
    return True


class _Case:
    """What torch's TensorTracker needs of a TestCase: ``assertEqual`` with torch's
    default tolerances (the ones ``torch.testing.assert_close`` uses)."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def assertEqual(self, actual, expected, **kwargs):  # noqa: N802 - torch's name
        torch.testing.assert_close(actual, expected, **{**self.kwargs, **kwargs})

    def assertGreater(self, a, b, msg=None):  # noqa: N802 - torch's name
        assert a > b, msg

    def assertTrue(self, x, msg=None):  # noqa: N802 - torch's name
        assert x, msg


def assert_equal(a, b) -> None:
    """torch's ``TestCase.assertEqual`` on nested state dicts: tensors with assert_close
    (dtype included), containers element-wise, anything else with ==."""
    if isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (a.keys(), b.keys())
        for k in a:
            assert_equal(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_equal(x, y)
    else:
        assert a == b, (a, b)


def inputs(info, fused, dtype=None) -> list:
    """torch's optimizer inputs for the CPU, each with descend's path switch."""
    out = info.optim_inputs_func(device="cpu", dtype=dtype)
    for optim_input in out:
        optim_input.kwargs["fused"] = fused
    return out


def assert_path(opt, fused, allow_none: bool = False) -> None:
    paths = last_path(opt)
    if allow_none and not paths:
        return
    assert paths, "no group was stepped"
    expected = "fast" if fused else "default: fused=False"
    assert set(paths.values()) == {expected}, paths


def _step_schedulers(schedulers, loss) -> None:
    for scheduler in schedulers:
        if isinstance(scheduler, ReduceLROnPlateau):
            scheduler.step(loss)
        else:
            scheduler.step()


# -- inputs and errors -----------------------------------------------------------------------
def test_optim_infos_do_not_specify_global_cliquey_kwargs(info):
    for optim_input in info.optim_inputs_func(device="cpu"):
        assert not any(f in optim_input.kwargs for f in ("foreach", "fused", "differentiable"))


SUPPORTED_BY_DESCEND = {  # torch refuses these inputs; descend supports them (see docstring)
    "lr as Tensor doesn't work with foreach & not capturable",
    "betas must be either both floats or both Tensors",
    r"betas\[0\] as a Tensor is not supported for capturable=False and foreach=True",
}


# torch's wording for a bad value that does not start "Invalid <name>" -> what descend's
# message names instead (the parameter and the value)
NAMED_AS = {
    "Adjust learning rate function arbitrary is not supported": "adjust_lr_fn='arbitrary'",
}


def _steps_with_adamw(params) -> None:
    """torch.optim.Muon refuses a parameter that is not 2-D ("Muon only supports 2D
    parameters"); descend's Muon steps it with its AdamW part, as optax's and Keras' Muon do:
    exactly as torch.optim.AdamW at Muon's lr and torch's AdamW defaults (λ_a = 1e-2)."""
    (p,) = params
    start = p.detach().clone()
    q = p.detach().clone()
    q.grad = p.grad.clone()
    ours, ref = D.Muon([p], fused=False), torch.optim.AdamW([q], lr=1e-3)
    for _ in range(3):
        ours.step()
        ref.step()
    assert_path(ours, False)
    assert p.dim() == 3 and not torch.equal(p, start)
    torch.testing.assert_close(p, q)
    assert set(ours.state[p]) == {"step", "exp_avg", "exp_avg_sq"}


def _same_as_floats(info, kwargs, fused) -> None:
    """The optimizer built with ``kwargs`` (tensor lr or betas) steps exactly like the one
    built with their values as Python floats."""
    floats = {
        k: (tuple(float(b) for b in v) if k == "betas" else float(v)) if k in ("lr", "betas") else v
        for k, v in kwargs.items()
        if k != "foreach"
    }
    torch.manual_seed(0)
    start = torch.randn(4, 3)
    p, q = start.clone().requires_grad_(), start.clone().requires_grad_()
    opt = info.optim_cls([p], **{**kwargs, "fused": fused})
    ref = info.optim_cls([q], **{**floats, "fused": fused})
    for t in range(5):
        p.grad = torch.full_like(p, 0.1 * (t + 1))
        q.grad = p.grad.clone()
        opt.step()
        ref.step()
    assert_path(opt, fused)
    assert torch.equal(p, q)


def _lr_column(info, fused) -> None:
    """descend's per-run lr column: row i of an (N, d) parameter steps with lr[i], as a
    separate optimizer with that lr on that row alone."""
    torch.manual_seed(0)
    start, lrs = torch.randn(2, 3), (0.1, 0.2)
    p = start.clone().requires_grad_()
    column = torch.tensor([[lrs[0]], [lrs[1]]])
    refused = fused and info.optim_cls is D.ASGD  # its kernel keeps one η per tensor
    if refused:  # fused=True says so; fused=None steps the rows on the chain
        with pytest.raises(ValueError, match=r"lr is a tensor \(shape \(2, 1\)\)"):
            info.optim_cls([p], lr=column, fused=True)
    opt = info.optim_cls([p], lr=column, fused=None if refused else fused)
    rows = [start[i : i + 1].clone().requires_grad_() for i in range(2)]
    refs = [info.optim_cls([r], lr=lr, fused=False) for r, lr in zip(rows, lrs)]
    for t in range(3):
        p.grad = torch.full_like(p, 0.1 * (t + 1))
        p.grad[1] *= -2
        for i, (r, ref) in enumerate(zip(rows, refs)):
            r.grad = p.grad[i : i + 1].clone()
            ref.step()
        opt.step()
    if refused:
        assert last_path(opt) == {0: "default: lr is a tensor (shape (2, 1)), not a number"}
    else:
        assert_path(opt, fused)
    torch.testing.assert_close(p, torch.cat(rows))


def test_errors(info, fused):
    for error_input in info.optim_error_inputs_func(device="cpu", dtype=torch.float32):
        optim_input = error_input.optimizer_error_input
        params, kwargs = optim_input.params, {**optim_input.kwargs, "fused": fused}
        if optim_input.desc in SUPPORTED_BY_DESCEND:
            _same_as_floats(info, optim_input.kwargs, fused)
            continue
        if optim_input.desc == "Tensor lr must be 1-element" and not info.optim_cls.couples:
            _lr_column(info, fused)
            continue
        if optim_input.desc == "only support 2D parameters":  # Muon: see _steps_with_adamw
            _steps_with_adamw(params)
            continue
        # an optimizer whose update mixes a tensor's elements (Adafactor) refuses it, as torch
        regex = error_input.error_regex
        named = re.match(r"Invalid (\w+)", regex)
        # descend's own checks: torch's exception type, a message naming the parameter;
        # checks made by torch's base class: torch's message
        if named:
            match = re.escape(named.group(1))
        else:
            match = re.escape(NAMED_AS[regex]) if regex in NAMED_AS else regex
        if error_input.error_on == OptimizerErrorEnum.CONSTRUCTION_ERROR:
            if issubclass(error_input.error_type, Warning):
                with pytest.warns(error_input.error_type, match=match):
                    info.optim_cls(params, **kwargs)
            else:
                with pytest.raises(error_input.error_type, match=match):
                    info.optim_cls(params, **kwargs)
        else:
            optim = info.optim_cls(params, **kwargs)
            if issubclass(error_input.error_type, Warning):
                with pytest.warns(error_input.error_type, match=match):
                    optim.step()
            else:
                with pytest.raises(error_input.error_type, match=match):
                    optim.step()


def test_differentiable_and_capturable_are_refused(info):
    for flag in ("differentiable", "capturable"):
        if flag == "capturable" and info.name in ("SGD", "Adagrad"):
            continue  # torch's SGD and Adagrad have no capturable keyword either
        with pytest.raises(ValueError, match=flag):
            info.optim_cls([torch.zeros(2, requires_grad=True)], **{flag: True})


def test_fused_refuses_half_precision(info):
    if _refuses_fused(info):
        return
    _need_fast()
    for dtype in (torch.float16, torch.bfloat16):
        p = torch.zeros(3, dtype=dtype, requires_grad=True)
        with pytest.raises(ValueError, match="fused=True"):
            info.optim_cls([p], fused=True)


# -- the direction of the steps --------------------------------------------------------------
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("with_lrsched", [True, False])
def test_forloop_goes_right_direction(info, fused, contiguous, with_lrsched):
    dtype = torch.float32
    schedulers_constructors = info.scheduler_inputs if with_lrsched else [None]
    use = fused
    if fused and not contiguous:
        with pytest.raises(ValueError, match="non-contiguous"):
            info.optim_cls([Parameter(torch.randn(10, 5, 2)[..., 0])], fused=True)
        use = None  # see the module docstring: the group falls back, and says why
    for schedulers_constructor in schedulers_constructors:
        for optim_input in inputs(info, use):
            if contiguous:
                weight = Parameter(torch.randn((10, 5), dtype=dtype))
                bias = Parameter(torch.randn((10), dtype=dtype))
            else:
                weight = Parameter(torch.randn((10, 5, 2), dtype=dtype)[..., 0])
                bias = Parameter(torch.randn((10, 2), dtype=dtype)[..., 0])
            input = torch.randn(5, dtype=dtype)
            optimizer = info.optim_cls(_weight_bias(info, weight, bias), **optim_input.kwargs)
            schedulers = [s(optimizer) for s in (schedulers_constructor or [])]

            def closure(optimizer=optimizer, weight=weight, bias=bias, input=input):
                optimizer.zero_grad()
                loss = _affine(info, weight, input, bias).pow(2).sum()
                loss.backward()
                return loss

            initial_value = closure().item()
            for _ in range(20):
                loss = closure()
                optimizer.step()
                _step_schedulers(schedulers, loss)
            if optim_input.kwargs.get("maximize", False):
                assert closure().item() > initial_value
            else:
                assert closure().item() < initial_value
            if use is None:
                assert last_path(optimizer)[0].startswith("default: ")
                assert "contiguous" in last_path(optimizer)[0]
            else:
                assert_path(optimizer, fused)


def test_param_group_with_lrscheduler_goes_right_direction(info, fused):
    dtype = torch.float32
    for schedulers_c in info.scheduler_inputs:
        weight = Parameter(torch.randn((10, 5), dtype=dtype))
        weight2 = Parameter(torch.randn((10, 5), dtype=dtype))
        inpt = torch.randn(5, dtype=dtype)
        optimizer = info.optim_cls(
            [{"params": [weight]}, {"params": [weight2], "lr": 0.01}], fused=fused
        )
        schedulers = [scheduler_c(optimizer) for scheduler_c in schedulers_c]

        def closure(optimizer=optimizer, weight=weight, weight2=weight2, inpt=inpt):
            optimizer.zero_grad()
            loss = (weight.mv(inpt) + weight2.mv(inpt)).pow(2).sum()
            loss.backward()
            return loss

        initial_value = closure().item()
        for _ in range(20):
            loss = optimizer.step(closure)
            _step_schedulers(schedulers, loss)
        assert closure().item() < initial_value
        assert_path(optimizer, fused)


@pytest.mark.parametrize("num_dim", [0, 1, 2])
def test_tensor_lr(info, fused, num_dim):
    dtype = torch.float32
    for optim_input in inputs(info, fused):
        weight = Parameter(torch.randn((10, 5), dtype=dtype))
        weight_c = weight.detach().clone().requires_grad_(True)
        bias = Parameter(torch.randn((10), dtype=dtype))
        bias_c = bias.detach().clone().requires_grad_(True)
        inpt = torch.randn(5, dtype=dtype)
        kwargs = optim_input.kwargs
        kwargs.pop("lr", None)
        kwargs["lr"] = 1e-3
        optimizer_r = info.optim_cls(_weight_bias(info, weight, bias), **kwargs)
        kwargs["lr"] = torch.tensor(kwargs["lr"]).reshape([1] * num_dim)
        optimizer = info.optim_cls(_weight_bias(info, weight_c, bias_c), **kwargs)

        def closure(optim, w, b, i):
            optim.zero_grad()
            loss = _affine(info, w, i, b).pow(2).sum()
            loss.backward()
            return loss

        for _ in range(5):
            closure(optimizer_r, weight, bias, inpt)
            optimizer_r.step()
            closure(optimizer, weight_c, bias_c, inpt)
            optimizer.step()
            torch.testing.assert_close(weight, weight_c)
            torch.testing.assert_close(bias, bias_c)  # Muon's bias (no gradient) stays put
        assert_path(optimizer, fused)


# -- complex parameters ----------------------------------------------------------------------
def test_complex(info, fused):
    dtype = torch.complex64
    for optim_input in inputs(info, fused):
        # Last param is intentionally real to test that we can mix real and complex
        complex_params = [
            torch.randn(10, 5, dtype=dtype, requires_grad=True),
            torch.randn(10, dtype=dtype, requires_grad=True),
            torch.randn(10, 5, dtype=torch.float32, requires_grad=True),
        ]
        real_params = [
            (
                torch.view_as_real(param).detach().clone().requires_grad_()
                if param.is_complex()
                else param.detach().clone().requires_grad_()
            )
            for param in complex_params
        ]
        complex_optimizer = info.optim_cls(complex_params, **optim_input.kwargs)
        real_optimizer = info.optim_cls(real_params, **optim_input.kwargs)
        real_steps, complex_steps, grads_losses = [], [], []

        def real_closure(real_params=real_params):
            for param in real_params:
                grad = torch.randn_like(param)
                param.grad = grad
                real_steps.append(param.detach().clone())
                grads_losses.append(grad.clone())
            loss = torch.randn(1)
            grads_losses.append(loss.clone())
            return loss

        def complex_closure(complex_params=complex_params):
            for param in complex_params:
                if torch.is_complex(param):
                    grad = torch.view_as_complex(grads_losses.pop(0))
                    complex_steps.append(torch.view_as_real_copy(param.detach()))
                else:
                    grad = grads_losses.pop(0)
                    complex_steps.append(param.detach().clone())
                param.grad = grad
            return grads_losses.pop(0)

        for _ in range(3):
            real_closure()
            complex_closure()
            real_optimizer.step()
            complex_optimizer.step()

        complex_params_asreal = [
            torch.view_as_real(param) if param.is_complex() else param for param in complex_params
        ]
        torch.testing.assert_close(real_params, complex_params_asreal)
        torch.testing.assert_close(complex_steps, real_steps)
        assert_path(complex_optimizer, fused)


def rosenbrock(tensor):
    assert tensor.size() == torch.Size([2])
    x, y = tensor
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def test_complex_2d(info, fused):
    dtype = torch.complex64
    case = _Case()
    for optim_input in inputs(info, fused):
        a1 = torch.randn(2, dtype=dtype, requires_grad=True)
        a1_real = a1.real.detach().clone()
        a1_imag = a1.imag.detach().clone()
        a1_real.requires_grad_()
        a1_imag.requires_grad_()
        optim1 = info.optim_cls([a1], **optim_input.kwargs)
        optim2 = info.optim_cls([a1_real, a1_imag], **optim_input.kwargs)
        a1_reals, a1_imags = TensorTracker(), TensorTracker()
        a1_grad_reals, a1_grad_imags, losses = TensorTracker(), TensorTracker(), TensorTracker()

        def closure1(optim1=optim1, a1=a1):
            optim1.zero_grad()
            loss = rosenbrock(a1).abs()
            loss.backward()
            a1_reals.add(a1.real)
            a1_imags.add(a1.imag)
            a1_grad_reals.add(a1.grad.real)
            a1_grad_imags.add(a1.grad.imag)
            losses.add(loss)
            return loss

        def closure2(optim2=optim2, a1_real=a1_real, a1_imag=a1_imag):
            optim2.zero_grad()
            a1_reals.pop_check_set(a1_real, case)
            a1_imags.pop_check_set(a1_imag, case)
            a2 = torch.complex(a1_real, a1_imag)
            loss = rosenbrock(a2).abs()
            losses.pop_check_set(loss, case)
            loss.backward()
            a1_grad_reals.pop_check_set(a1_real.grad, case)
            a1_grad_imags.pop_check_set(a1_imag.grad, case)
            return loss

        for _ in range(3):
            closure1()
            closure2()
            optim1.step()
            optim2.step()
            torch.testing.assert_close(a1.real, a1_real)
            torch.testing.assert_close(a1.imag, a1_imag)
        for tracker in (a1_reals, a1_imags, a1_grad_reals, a1_grad_imags, losses):
            assert tracker.all_popped()
        assert_path(optim1, fused)


def test_adamw_serialization(fused):
    model = torch.nn.Linear(5, 5)
    optim = D.AdamW(model.parameters(), fused=fused)
    loaded_dict = optim.state_dict()

    # Adam respects the decoupled decay of an AdamW state dict
    new_optim = D.Adam(model.parameters(), fused=fused)
    new_optim.load_state_dict(loaded_dict)
    assert new_optim.param_groups[0]["weight_decay_mode"] == "decoupled"

    # AdamW stays decoupled with an Adam state dict (descend's and torch's)
    adam_state_dict = D.Adam(model.parameters(), fused=fused).state_dict()
    # torch's key (descend's own weight_decay_mode is left out at its default)
    assert adam_state_dict["param_groups"][0]["decoupled_weight_decay"] is False
    torch_adam = torch.optim.Adam(model.parameters()).state_dict()
    assert not torch_adam["param_groups"][0]["decoupled_weight_decay"]
    for sd in (adam_state_dict, torch_adam):
        new_optim = D.AdamW(model.parameters(), fused=fused)
        new_optim.load_state_dict(copy.deepcopy(sd))
        assert new_optim.param_groups[0]["weight_decay_mode"] == "decoupled"
        assert new_optim.param_groups[0].get("decoupled_weight_decay", True)

    # a torch AdamW state dict into descend's Adam: decoupled, as torch's Adam does
    torch_adamw = torch.optim.AdamW(model.parameters()).state_dict()
    new_optim = D.Adam(model.parameters(), fused=fused)
    new_optim.load_state_dict(torch_adamw)
    assert new_optim.param_groups[0]["weight_decay_mode"] == "decoupled"

    # old AdamW state dicts (without the key) are decoupled in a new AdamW
    old_adamw_dict = copy.deepcopy(loaded_dict)
    for key in ("weight_decay_mode", "decoupled_weight_decay"):
        old_adamw_dict["param_groups"][0].pop(key, None)
    new_optim = D.AdamW(model.parameters(), fused=fused)
    new_optim.load_state_dict(old_adamw_dict)
    assert new_optim.param_groups[0]["weight_decay_mode"] == "decoupled"


# -- the two paths against each other -----------------------------------------------------------
def _compare_between(inputs_, models, optimizers, assert_eq_kwargs=None, own_keys=()):
    """torch's _compare_between; ``own_keys``: state kept by the second optimizer only (its
    values are not compared)."""
    k_iterations = 7
    tracker = TensorTracker(assert_eq_kwargs or {})
    case = _Case()
    for i in range(k_iterations):
        state, updated_params = [], []
        for input_, model, optimizer in zip(inputs_, models, optimizers):
            optimizer.zero_grad()
            if i == 3:
                # Freeze a layer to test if the step of this layer in 'fused' is the same
                # as the step on the chain.
                model[2].requires_grad_(False)
            if i == 5:
                model[2].requires_grad_(True)
            # step is a no-op when grads are set to None
            if i != 2:
                output = model(input_)
                loss = output.sum()
                loss.backward()
            optimizer.step()
            state.append(optimizer.state)
            updated_params.append(model.parameters())
        og_state, new_state = state
        for og_p, new_p in zip(updated_params[0], updated_params[1]):
            tracker.add(og_p)
            tracker.pop_check_set(new_p, case)
            og_p_state, new_p_state = og_state[og_p], new_state[new_p]
            assert set(og_p_state) == set(new_p_state) - set(own_keys)
            for k in og_p_state:
                tracker.add(og_p_state[k])
                tracker.pop_check_set(new_p_state[k], case)
        assert tracker.all_popped()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_fused_matches_chain(info, dtype):
    """torch's test_foreach_matches_forloop / test_fused_matches_forloop: the chain
    (``fused=False``) is the reference, the fast kernels (``fused=True``) must match it in
    parameters and state at every one of 7 steps (a frozen layer, a no-grad step and a
    0-d parameter included)."""
    if _refuses_fused(info):
        return
    _need_fast()
    for optim_input in info.optim_inputs_func(device="cpu", dtype=dtype):
        models, optimizers, inputs_ = [], [], []
        for flag_value in (False, True):
            kwargs = copy.deepcopy(optim_input.kwargs)
            kwargs["fused"] = flag_value
            input_ = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], dtype=dtype).reshape(3, 2)
            torch.manual_seed(1)
            model = torch.nn.Sequential(
                torch.nn.Linear(2, 3),
                torch.nn.Sigmoid(),
                torch.nn.Linear(3, 1),
                torch.nn.Sigmoid(),
            )
            model.to(dtype=dtype)
            # a 0-d tensor as the last param (pytorch/pytorch#100701)
            empty_param = torch.empty((), dtype=dtype, requires_grad=True)
            empty_param.grad = torch.rand_like(empty_param)
            params = list(model.parameters()) + [empty_param]
            optimizer = info.optim_cls(params, **kwargs)
            models.append(model)
            optimizers.append(optimizer)
            inputs_.append(input_)
        _compare_between(inputs_, models, optimizers)
        assert_path(optimizers[0], False)
        assert_path(optimizers[1], True)


@pytest.mark.parametrize("name", CHAIN_ONLY)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_chain_matches_torch(name, dtype):
    """For the chain-only optimizers, torch's test_foreach_matches_forloop with descend's
    chain in place of torch's foreach path: descend (``fused=False``) must match torch.optim's
    own class (its default, single-tensor path) in parameters and state at every one of 7
    steps, with torch's inputs (a frozen layer, a no-grad step and a 0-d parameter included)."""
    info = INFOS[name]
    twin = getattr(torch.optim, name)
    # torch.optim.Muon takes matrices only and has no foreach switch: the model's weights
    # alone (as torch's suite does for Muon), and descend's step count is its own state
    matrices = _matrices_only(info)
    first = {} if matrices else {"foreach": False}
    own_keys = ("step",) if matrices else ()
    for optim_input in info.optim_inputs_func(device="cpu", dtype=dtype):
        models, optimizers, inputs_ = [], [], []
        for cls, extra in ((twin, first), (info.optim_cls, {"fused": False})):
            input_ = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], dtype=dtype).reshape(3, 2)
            torch.manual_seed(1)
            model = torch.nn.Sequential(
                torch.nn.Linear(2, 3, bias=not matrices),
                torch.nn.Sigmoid(),
                torch.nn.Linear(3, 1, bias=not matrices),
                torch.nn.Sigmoid(),
            )
            model.to(dtype=dtype)
            params = list(model.parameters())
            if not matrices:
                empty_param = torch.empty((), dtype=dtype, requires_grad=True)
                empty_param.grad = torch.rand_like(empty_param)
                params.append(empty_param)
            optimizers.append(cls(params, **copy.deepcopy(optim_input.kwargs), **extra))
            models.append(model)
            inputs_.append(input_)
        _compare_between(inputs_, models, optimizers, own_keys=own_keys)
        assert_path(optimizers[1], False)


@pytest.mark.parametrize("name", CHAIN_ONLY)
def test_fused_true_is_refused_without_kernels(name):
    """Adapted from the fused-only tests (half precision, meta parameters): an optimizer
    without a fast-path kernel refuses ``fused=True`` at construction, for every dtype and
    device, naming the reason; ``fused=None`` steps on the chain and says so."""
    cls = INFOS[name].optim_cls
    for dtype in (torch.float32, torch.float64, torch.float16):
        p = torch.zeros(3, dtype=dtype, requires_grad=True)
        with pytest.raises(ValueError, match=r"fused=True\) is not supported"):
            cls([p], fused=True)
    with torch.device("meta"):
        meta = torch.nn.Linear(2, 3)
    with pytest.raises(ValueError, match=r"fused=True\) is not supported"):
        cls(meta.parameters(), fused=True)
    p = torch.zeros(3, requires_grad=True)
    opt = cls([p])
    p.grad = torch.ones(3)
    opt.step()
    (path,) = last_path(opt).values()
    assert path.startswith("default: chain core ") and path.endswith(" has no fast kernel")


def test_fused_error_on_params_on_meta(info):
    if _refuses_fused(info):
        return
    _need_fast()
    with torch.device("meta"):
        model = torch.nn.Sequential(
            torch.nn.Linear(2, 3),
            torch.nn.Sigmoid(),
            torch.nn.Linear(3, 1),
            torch.nn.Sigmoid(),
        ).to(torch.float32)
    with pytest.raises(ValueError, match="meta"):
        info.optim_cls(model.parameters(), fused=True)
    model.to_empty(device="cpu")
    optimizer = info.optim_cls(model.parameters(), fused=True)
    for p in model.parameters():
        p.grad = torch.rand_like(p)
    optimizer.step()
    assert_path(optimizer, True)


# -- param groups ----------------------------------------------------------------------------
def test_param_groups_weight_decay(info, fused):
    dtype = torch.float32
    for optim_input in inputs(info, fused):
        weight_kwargs = {k: v for k, v in optim_input.kwargs.items() if k != "fused"}
        weight2_kwargs = copy.deepcopy(weight_kwargs)
        weight2_kwargs["weight_decay"] = 0.0
        weight = Parameter(torch.randn((10, 5), dtype=dtype))
        weight2 = Parameter(torch.randn((10, 5), dtype=dtype))
        input = torch.randn(5, dtype=dtype)
        optimizer = info.optim_cls(
            [dict(params=[weight], **weight_kwargs), dict(params=[weight2], **weight2_kwargs)],
            fused=fused,
        )
        loss = (weight.mv(input) + weight2.mv(input)).pow(2).sum()
        initial_value = loss.item()
        for _ in range(20):
            optimizer.zero_grad()
            loss = (weight.mv(input) + weight2.mv(input)).pow(2).sum()
            loss.backward()
            optimizer.step()
        if optim_input.kwargs.get("maximize", False):
            assert loss.item() > initial_value
        else:
            assert loss.item() < initial_value
        assert_path(optimizer, fused)


def test_param_groups_lr(info, fused):
    dtype = torch.float32
    for optim_input in inputs(info, fused):
        kwargs = {k: v for k, v in optim_input.kwargs.items() if k != "fused"}
        # the param group kwargs, which should have > 0 lr
        if "lr" not in kwargs or kwargs["lr"] == 0:
            kwargs["lr"] = 1e-3
        weight = Parameter(torch.randn((10, 5), dtype=dtype))
        bias = Parameter(torch.randn((10), dtype=dtype))
        irrelevant = Parameter(torch.randn((2, 2), dtype=dtype))
        irrelevant_clone = irrelevant.clone()
        input = torch.randn(5, dtype=dtype)
        outer = {"lr": 1e-28}
        if info.name == "Rprop":  # torch's: allow the minimal step size to be 0
            outer["step_sizes"] = (0, 50)
        optimizer = info.optim_cls(
            [dict(params=_weight_bias(info, weight, bias), **kwargs), dict(params=[irrelevant])],
            **outer,
            fused=fused,
        )
        loss = _affine(info, weight, input, bias).pow(2).sum()
        initial_value = loss.item()
        for _ in range(20):
            optimizer.zero_grad()
            loss = _affine(info, weight, input, bias).pow(2).sum()
            loss.backward()
            irrelevant.grad = torch.rand_like(irrelevant)
            optimizer.step()
        if optim_input.kwargs.get("maximize", False):
            assert loss.item() > initial_value
        else:
            assert loss.item() < initial_value
        # irrelevant parameters were not updated since lr was almost 0
        torch.testing.assert_close(irrelevant, irrelevant_clone)
        assert_path(optimizer, fused)


# -- steps without gradients, zero gradients, the gradients themselves --------------------------
def test_step_is_noop_when_params_have_no_grad(info, fused):
    params = [torch.randn(2, 3, requires_grad=False) for _ in range(2)]
    before = [p.clone() for p in params]

    def closure():
        return torch.tensor([1], dtype=torch.float32)

    for optim_input in inputs(info, fused):
        optimizer = info.optim_cls(params, **optim_input.kwargs)
        optimizer.step(closure)
        assert last_path(optimizer) == {}  # no group had anything to step
    for p, b in zip(params, before):
        assert torch.equal(p, b)


def test_step_is_noop_for_zero_grads(info, fused):
    dtype = torch.float32
    param = torch.randn((5, 1), dtype=dtype, requires_grad=True)
    old_param = param.detach().clone()

    def closure():
        return torch.tensor([1], dtype=dtype)

    for optim_input in inputs(info, fused):
        kwargs = optim_input.kwargs
        # params decay even with zero grads when weight_decay != 0
        if kwargs.get("weight_decay", 0) != 0:
            continue
        # AdamW/Muon params are updated regardless of grads due to lr, so make lr smaller
        if info.name in ("AdamW", "Muon"):
            kwargs["lr"] = (
                torch.tensor(1e-5) if isinstance(kwargs.get("lr", 1e-5), torch.Tensor) else 1e-5
            )
        optimizer = info.optim_cls([param], **kwargs)
        param.grad = torch.zeros_like(param)
        before = param.detach().clone()
        optimizer.step(closure)
        if info.name == "ASGD":
            # torch skips ASGD here: its λ term shrinks θ without a gradient. Adapted: the
            # step is exactly θ(1 − λη₀), η₀ = lr as torch keeps it (a float32 scalar).
            lambd = kwargs.get("lambd", 1e-4)
            eta = torch.tensor(float(kwargs.get("lr", 1e-2)), dtype=torch.float32).item()
            torch.testing.assert_close(param, before * (1 - lambd * eta), rtol=0, atol=0)
            param.data.copy_(old_param)
        elif info.name == "Muon":
            # torch's rule above misses Muon's default decay (λ = 0.1, as torch's): each step
            # is θ(1 − γλ), which torch's test lets through as a 1e-6 change within
            # assert_close's tolerance (it accumulates over the inputs: flaky for a large θ).
            # Adapted: exactly θ(1 − γλ), O = NS(0) = 0 adding nothing.
            decay = float(kwargs["lr"]) * kwargs.get("weight_decay", 0.1)
            torch.testing.assert_close(param, before * (1 - decay), rtol=0, atol=0)
            param.data.copy_(old_param)
        else:
            torch.testing.assert_close(old_param, param)
        assert_path(optimizer, fused)


def test_grads_are_never_inplaced_into(info, fused):
    param = torch.randn((5, 1), dtype=torch.float32, requires_grad=True)

    def closure():
        return torch.tensor([1], dtype=torch.float32)

    for optim_input in inputs(info, fused):
        optimizer = info.optim_cls([param], **optim_input.kwargs)
        param.grad = torch.rand_like(param)
        old_version = param.grad._version
        before = param.grad.clone()
        for _ in range(5):
            optimizer.step(closure)
            assert param.grad._version == old_version
        assert torch.equal(param.grad, before)
        assert_path(optimizer, fused)


def test_optimizer_can_be_printed(info, fused):
    params = [Parameter(torch.randn(2, 3, requires_grad=True)) for _ in range(2)]
    for optim_input in inputs(info, fused):
        optimizer = info.optim_cls(params, **optim_input.kwargs)
        text = repr(optimizer)
        assert text.startswith(info.name) and "Parameter Group 0" in text


def test_non_empty_state(info, fused):
    model = torch.nn.Linear(5, 5, bias=False)
    inpt = torch.rand(2, 5)
    for optim_input in inputs(info, fused):
        optim = info.optim_cls(model.parameters(), **optim_input.kwargs)
        optim.zero_grad()
        model(inpt).sum().backward()
        optim.step()
        assert optim.state, "no state"
        for state in optim.state.values():
            assert len(state) > 0
        assert_path(optim, fused)


# -- state dicts -----------------------------------------------------------------------------
def _named(params, is_named):
    return [(f"name{i}", p) for i, p in enumerate(params)] if is_named else params


def _without_param_names(state_dict):
    new_state_dict = copy.deepcopy(state_dict)
    for pg in new_state_dict["param_groups"]:
        pg.pop("param_names", None)
    return new_state_dict


@pytest.mark.parametrize("is_named_optim0", [True, False])
@pytest.mark.parametrize("is_named_optim1", [True, False])
def test_state_dict_deterministic(info, fused, is_named_optim0, is_named_optim1):
    dtype = torch.float32
    weight = Parameter(torch.randn(2, 3, requires_grad=True, dtype=dtype))
    bias = Parameter(torch.randn(2, requires_grad=True, dtype=dtype))
    input = torch.randn(3, requires_grad=True, dtype=dtype)

    def fwd_bwd(optim, w, b, i):
        optim.zero_grad()
        loss = _affine(info, w, i, b).pow(2).sum()
        loss.backward()
        return loss

    for optim_input in inputs(info, fused):
        params = _weight_bias(info, weight, bias)
        optimizer = info.optim_cls(_named(params, is_named_optim0), **optim_input.kwargs)
        closure = functools.partial(fwd_bwd, optimizer, weight, bias, input)
        for _ in range(10):  # prime the optimizer
            closure()
            optimizer.step()
        # clone the weights and construct a new optimizer for them
        with torch.no_grad():
            weight_c = Parameter(weight.clone())
            bias_c = Parameter(bias.clone())
        optimizer_c = info.optim_cls(
            _named(_weight_bias(info, weight_c, bias_c), is_named_optim1), **optim_input.kwargs
        )
        closure_c = functools.partial(fwd_bwd, optimizer_c, weight_c, bias_c, input)
        # load the state dict from the original optimizer into the new one
        optimizer_c.load_state_dict(copy.deepcopy(optimizer.state_dict()))
        # run both optimizers in parallel
        for _ in range(10):
            closure()
            closure_c()
            optimizer.step()
            optimizer_c.step()
            torch.testing.assert_close(weight, weight_c)
            torch.testing.assert_close(bias, bias_c)
        assert_path(optimizer_c, fused)
        # the state dict is deterministic with equal (not identical) parameters
        assert_equal(
            _without_param_names(optimizer.state_dict()),
            _without_param_names(optimizer_c.state_dict()),
        )
        # repeated parameters have identical representation (pytorch/pytorch#36831)
        optimizer_c.param_groups.extend(optimizer_c.param_groups)
        assert_equal(
            _without_param_names(optimizer.state_dict())["param_groups"][-1],
            _without_param_names(optimizer_c.state_dict())["param_groups"][-1],
        )


def _conv_bn(info):
    if _matrices_only(info):  # torch's: "Muon only accepts 2D parameter."
        return torch.nn.Linear(10, 4, bias=False), torch.rand(10)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(4, 2, 1, stride=2),
        torch.nn.BatchNorm2d(2, eps=1e-05, momentum=0.1),
    )
    return model, torch.rand(1, 4, 16, 16)


def _fwd_bwd(optim, mod, i):
    optim.zero_grad()
    loss = mod(i).sum()
    loss.backward()
    return loss


def test_can_load_older_state_dict(info, fused):
    for optim_input in inputs(info, fused):
        torch.manual_seed(1)
        model, input = _conv_bn(info)
        optimizer = info.optim_cls(model.parameters(), **optim_input.kwargs)
        for _ in range(3):
            _fwd_bwd(optimizer, model, input)
            optimizer.step()
        # old_state_dict has all new flags del'd
        old_state_dict = copy.deepcopy(optimizer.state_dict())
        for group in old_state_dict["param_groups"]:
            for flag in info.not_og_supported_flags:
                group.pop(flag, None)
        optimizer.load_state_dict(old_state_dict)
        # we can still step
        _fwd_bwd(optimizer, model, input)
        optimizer.step()
        assert_path(optimizer, fused)


@pytest.mark.parametrize("is_named_optim0", [True, False])
@pytest.mark.parametrize("is_named_optim1", [True, False])
def test_can_load_from_to_named_state_dict(info, fused, is_named_optim0, is_named_optim1):
    for optim_input in inputs(info, fused):
        torch.manual_seed(1)
        model, input = _conv_bn(info)
        params = model.named_parameters() if is_named_optim0 else model.parameters()
        optimizer = info.optim_cls(params, **optim_input.kwargs)
        for _ in range(3):
            _fwd_bwd(optimizer, model, input)
            optimizer.step()
        old_state_dict = copy.deepcopy(optimizer.state_dict())
        params2 = model.named_parameters() if is_named_optim1 else model.parameters()
        optimizer2 = info.optim_cls(params2, **optim_input.kwargs)
        optimizer2.load_state_dict(old_state_dict)
        # we can still step
        _fwd_bwd(optimizer2, model, input)
        optimizer2.step()
        assert_path(optimizer2, fused)
        ref_names = [p[0] for p in model.named_parameters()]
        # param_names are preserved when given to at least one of the optimizers
        if is_named_optim0 or is_named_optim1:
            assert optimizer2.state_dict()["param_groups"][0]["param_names"] == ref_names


@pytest.mark.parametrize("is_named_optim", [True, False])
def test_save_load_equality_with_weights_only(info, fused, is_named_optim):
    weight = Parameter(torch.randn(2, 3, requires_grad=True))
    bias = Parameter(torch.randn(2, requires_grad=True))
    input = torch.randn(3, requires_grad=True)

    def fwd_bwd(optim, w, b, i):
        optim.zero_grad()
        loss = _affine(info, w, i, b).pow(2).sum()
        loss.backward()
        return loss

    for optim_input in inputs(info, fused):
        params = _weight_bias(info, weight, bias)
        optimizer = info.optim_cls(_named(params, is_named_optim), **optim_input.kwargs)
        closure = functools.partial(fwd_bwd, optimizer, weight, bias, input)
        for _ in range(3):
            optimizer.step(closure)
        assert_path(optimizer, fused)
        sd = optimizer.state_dict()
        with tempfile.TemporaryFile() as f:
            torch.save(sd, f)
            f.seek(0)
            assert_equal(torch.load(f), sd)
            f.seek(0)
            assert_equal(torch.load(f, weights_only=True), sd)


def test_load_nontensor_step(info, fused):
    params = [Parameter(torch.randn(2, 3)) for _ in range(2)]
    for p in params:
        p.grad = torch.rand_like(p)
    for optim_input in inputs(info, fused):
        optimizer = info.optim_cls(params, **optim_input.kwargs)
        for _ in range(3):
            optimizer.step()
        state_dict = copy.deepcopy(optimizer.state_dict())
        for p_state in state_dict["state"].values():
            if "step" in p_state and torch.is_tensor(p_state["step"]):
                p_state["step"] = p_state["step"].item()
        optimizer.load_state_dict(state_dict)
        optimizer.step()
        assert_path(optimizer, fused)
        # SGD's state dict, as torch's, has no step count where nothing reads it
        saved = all("step" in st for st in state_dict["state"].values())
        assert saved or info.optim_cls is D.SGD
        assert all(float(st["step"]) == (4 if saved else 1) for st in optimizer.state.values())


def test_deepcopy_copies_all_public_attrs(info, fused):
    params = [Parameter(torch.randn(2, 3)) for _ in range(2)]
    for p in params:
        p.grad = torch.rand_like(p)

    def public(obj):
        return {k for k in obj.__dict__ if not k.startswith("_")}

    for optim_input in inputs(info, fused):
        optimizer = info.optim_cls(params, **optim_input.kwargs)
        for _ in range(3):
            optimizer.step()
        assert public(optimizer) == public(copy.deepcopy(optimizer))
        assert_path(optimizer, fused)


# -- state-dict hooks ------------------------------------------------------------------------
def _state_dict_pre_hook(optimizer) -> None:
    optimizer.state["test"] = 1


def _state_dict_post_hook(optimizer, state_dict):
    if "test" in state_dict["state"]:
        state_dict["state"].pop("test")
        state_dict["ran_state_dict_pre_hook"] = True
    else:
        state_dict["ran_state_dict_pre_hook"] = False
    return state_dict


def _one_param_optimizers(info, fused):
    for optim_input in inputs(info, fused):
        param = torch.rand(2, 3, requires_grad=True)
        yield info.optim_cls([param], **optim_input.kwargs)


def test_state_dict_pre_hook(info, fused):
    for optim in _one_param_optimizers(info, fused):
        optim.register_state_dict_pre_hook(_state_dict_pre_hook)
        assert optim.state_dict()["state"]["test"] == 1


def test_state_dict_post_hook(info, fused):
    for optim in _one_param_optimizers(info, fused):
        optim.register_state_dict_post_hook(_state_dict_post_hook)
        assert optim.state_dict()["ran_state_dict_pre_hook"] is False


def test_state_dict_pre_post_hook(info, fused):
    for optim in _one_param_optimizers(info, fused):
        optim.register_state_dict_pre_hook(_state_dict_pre_hook)
        optim.register_state_dict_post_hook(_state_dict_post_hook)
        state_dict = optim.state_dict()
        assert "test" not in state_dict["state"]
        assert state_dict["ran_state_dict_pre_hook"] is True


def _load_state_dict_pre_hook1(optimizer, state_dict) -> None:
    state_dict["param_groups"][0]["lr"] = 0.002


def _load_state_dict_pre_hook2(optimizer, state_dict):
    # returning a state dict replaces it: a modified deep copy must be the one used
    my_state_dict = copy.deepcopy(state_dict)
    my_state_dict["param_groups"][0]["lr"] = 0.003
    return my_state_dict


def _load_state_dict_post_hook(optimizer) -> None:
    optimizer.state["ran_load_state_dict_pre_hook2"] = optimizer.param_groups[0]["lr"] == 0.003
    optimizer.state["ran_load_state_dict_post_hook"] = True


def test_load_state_dict_pre_hook_and_prepend(info, fused):
    for optim in _one_param_optimizers(info, fused):
        state_dict = optim.state_dict()
        optim.register_load_state_dict_pre_hook(_load_state_dict_pre_hook1)
        optim.load_state_dict(state_dict)
        assert optim.param_groups[0]["lr"] == 0.002
        optim.register_load_state_dict_pre_hook(_load_state_dict_pre_hook2, prepend=True)
        optim.load_state_dict(state_dict)
        # if prepend were False it would be 0.003; prepended, the other hook overrides
        assert optim.param_groups[0]["lr"] == 0.002


def test_load_state_dict_post_hook(info, fused):
    for optim in _one_param_optimizers(info, fused):
        optim.register_load_state_dict_post_hook(_load_state_dict_post_hook)
        optim.load_state_dict(optim.state_dict())
        assert not optim.state["ran_load_state_dict_pre_hook2"]  # a tensor lr gives tensor(False)
        assert optim.state["ran_load_state_dict_post_hook"] is True


def test_load_state_dict_pre_post_hook(info, fused):
    for optim in _one_param_optimizers(info, fused):
        optim.register_load_state_dict_pre_hook(_load_state_dict_pre_hook2)
        optim.register_load_state_dict_post_hook(_load_state_dict_post_hook)
        optim.load_state_dict(optim.state_dict())
        assert optim.state["ran_load_state_dict_pre_hook2"]
        assert optim.state["ran_load_state_dict_post_hook"] is True


# -- step hooks ------------------------------------------------------------------------------
def test_step_post_hook(info, fused):
    data = 0

    def post_hook(opt, args, kwargs):
        nonlocal data
        data += 2

    params = [torch.tensor([[1, 1]], dtype=torch.float32)]
    for optim_input in inputs(info, fused):
        optim = info.optim_cls(params, **optim_input.kwargs)
        data = 2
        hook_handle = optim.register_step_post_hook(post_hook)
        optim.step()
        optim.step()
        assert data == 6
        hook_handle.remove()
        optim.step()
        assert data == 6


def test_step_pre_hook(info, fused):
    data = 0

    def pre_hook(opt, args, kwargs):
        nonlocal data
        data += 2

    params = [torch.tensor([[1, 1]], dtype=torch.float32)]
    for optim_input in inputs(info, fused):
        optim = info.optim_cls(params, **optim_input.kwargs)
        data = 5
        hook_handle = optim.register_step_pre_hook(pre_hook)
        optim.step()
        optim.step()
        assert data == 9
        hook_handle.remove()
        optim.step()
        assert data == 9


def test_step_all_hooks(info, fused):
    data = []

    def global_pre_hook(opt, args, kwargs):
        data.append(0)

    def global_post_hook(opt, args, kwargs):
        data.append(5)

    def local_pre_hook(opt, args, kwargs):
        data.append(1)

    def local_post_hook(opt, args, kwargs):
        data.append(2)

    params = [torch.tensor([[1, 1]], dtype=torch.float32)]
    for optim_input in inputs(info, fused):
        optim = info.optim_cls(params, **optim_input.kwargs)
        optim2 = torch.optim.SGD(params)
        data.clear()
        global_pre_handle = register_optimizer_step_pre_hook(global_pre_hook)
        global_post_handle = register_optimizer_step_post_hook(global_post_hook)
        handles = [
            optim.register_step_pre_hook(local_pre_hook),
            optim.register_step_post_hook(local_post_hook),
            optim2.register_step_pre_hook(local_pre_hook),
            optim2.register_step_post_hook(local_post_hook),
        ]
        try:
            optim.step()
            assert data == [0, 1, 2, 5]
            optim2.step()
            assert data == [0, 1, 2, 5, 0, 1, 2, 5]
            optim.step()
            assert data == [0, 1, 2, 5, 0, 1, 2, 5, 0, 1, 2, 5]
        finally:
            global_pre_handle.remove()
            global_post_handle.remove()
            for handle in handles:
                handle.remove()
        optim.step()
        optim2.step()
        assert data == [0, 1, 2, 5, 0, 1, 2, 5, 0, 1, 2, 5]
