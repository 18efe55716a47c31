"""The lab's compiled parts against their torch references.

* ``descend/native/landscapes.h`` (``Landscape.kernel``) against the landscape's torch form,
  for every registered landscape that has one;
* the compiled tracker (``track.h``) against ``descend.lab.tracker.Tracker``;
* the fused lab run (``lab.cpp``: landscape, optimizer and tracker block by block over all
  steps) against the step-by-step loop (torch landscape evaluation order, ``optimizer.step()``
  on the fast path, the reference tracker).

Everything is bitwise equal except the path length, whose square root torch computes to
within an ulp but not always correctly rounded (measured: 1.2906619822065186 where IEEE gives
…188), so it is compared to a few ulps; and the landscape parts listed in ``INEXACT``, whose
torch form calls pow or autograd.
"""

from __future__ import annotations

import ctypes
import dataclasses

import numpy as np
import pytest
import torch

from conftest import require_kernels
from descend import lab, landscapes, native
from descend.lab import compiled, engine
from descend.lab.compiled import CompiledTracker
from descend.lab.tracker import Tracker
from descend.landscapes import compiled as compiled_landscapes
from descend.landscapes import registry
from descend.native.abi import LANDSCAPES


@pytest.fixture(autouse=True)
def kernels():
    """Every test here needs the compiled kernels (skip locally, fail under CI=true)."""
    require_kernels()


DTYPES = [torch.float32, torch.float64]
ULPS = {torch.float32: 4e-7, torch.float64: 1e-15}


def random_points(n: int, dtype, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 2, generator=g, dtype=dtype) * 4 - 2) * torch.tensor([1.0, 1.5]).to(dtype)


# -- landscapes ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("params", [{}, {"a": 2.0, "b": 50.0}])
def test_compiled_rosenbrock_equals_its_torch_form_bitwise(dtype, params) -> None:
    ls = landscapes.get("rosenbrock", **params)
    p = random_points(10_001, dtype)
    f, g = ls.value_and_grad(p)
    f_ref, g_ref = ls.value_and_grad_fn(p)
    assert torch.equal(f, f_ref) and torch.equal(g, g_ref)
    assert torch.equal(ls.f(p), f_ref) and torch.equal(ls.grad(p), g_ref)
    # and the plain formula (different rounding) to a few ulps; autograd agrees too
    assert torch.allclose(f, ls.value_fn(p), rtol=1e-5 if dtype == torch.float32 else 1e-12)
    assert torch.allclose(g, ls.autograd_grad(p), rtol=1e-4, atol=1e-4)


# Every registered landscape with a compiled twin (``kernel``), so a new one is tested here.
KERNELS = [name for name in registry.names() if landscapes.get(name).kernel is not None]
# Parts whose torch form the twin does not reproduce bit for bit: x**4 and x**5 are pow in
# torch (Sleef's or libm's, not a product), and Goldstein–Price's gradient is autograd's.
INEXACT = {"six-hump-camel": "g", "goldstein-price": "g", "quartic": "f"}
RTOL = {torch.float32: 1e-6, torch.float64: 1e-14}  # ≈ 8 ulps


def domain_points(ls, n: int, dtype, seed: int = 0) -> torch.Tensor:
    """n random points across the plotting domain, then its minima and suggested starts."""
    g = torch.Generator().manual_seed(seed)
    lo = torch.tensor([a for a, _ in ls.domain], dtype=torch.float64)
    hi = torch.tensor([b for _, b in ls.domain], dtype=torch.float64)
    p = lo + (hi - lo) * torch.rand(n, ls.dim, generator=g, dtype=torch.float64)
    special = [m.location for m in ls.minima] + list(ls.starts) + [(0.0,) * ls.dim]
    return torch.cat([p, ls.points_tensor(special)]).to(dtype)


def torch_form(ls, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: the fused torch form, else value_fn and grad_fn (or autograd)."""
    if ls.value_and_grad_fn is not None:
        return ls.value_and_grad_fn(p)
    g = ls.grad_fn(p) if ls.grad_fn is not None else ls.autograd_grad(p)
    return ls.value_fn(p), g


def test_the_kernel_ids_are_the_registry_landscapes_with_kernels() -> None:
    assert sorted(KERNELS) == sorted(LANDSCAPES)
    for name in KERNELS:
        assert landscapes.get(name).kernel[0] == name
    assert len(KERNELS) >= 13


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", KERNELS)
def test_compiled_landscape_equals_its_torch_form(name, dtype) -> None:
    """Bitwise where the twin repeats torch's operations, else to ≈ 8 ulps with an absolute
    allowance of 8 ulps of the largest value on the domain (cancellation: x − 8.4x³ + 2x⁵)."""
    ls = landscapes.get(name)
    p = domain_points(ls, 4001, dtype)
    f, g = ls.value_and_grad(p)
    assert f.dtype == g.dtype == dtype and f.shape == (p.shape[0],) and g.shape == p.shape
    assert torch.equal(ls.f(p), f) and torch.equal(ls.grad(p), g)  # the want_f / want_g loops
    f_ref, g_ref = torch_form(ls, p)
    eps = torch.finfo(dtype).eps
    for part, got, ref in (("f", f, f_ref), ("g", g, g_ref)):
        if INEXACT.get(name) == part:
            atol = 8 * eps * float(ref.abs().max())
            assert torch.allclose(got, ref, rtol=RTOL[dtype], atol=atol), part
        else:
            assert torch.equal(got, ref), part


@pytest.mark.parametrize(
    ("name", "params"),
    [("ravine", {"lam1": 0.3, "kappa": 70.0, "angle": 33.0}), ("quadratic", {"curvature": 3.7})],
)
def test_compiled_landscape_takes_the_parameters(name, params) -> None:
    ls = landscapes.get(name, **params)
    for dtype in DTYPES:
        p = domain_points(ls, 1001, dtype, seed=1)
        f, g = ls.value_and_grad(p)
        f_ref, g_ref = torch_form(ls, p)
        assert torch.equal(f, f_ref) and torch.equal(g, g_ref)


def test_compiled_landscape_is_used_only_where_it_can_serve(monkeypatch) -> None:
    ls = landscapes.get("rosenbrock")
    p = random_points(8, torch.float32)
    assert compiled_landscapes.evaluate(ls.kernel, p) is not None
    x = p.clone().requires_grad_(True)
    assert compiled_landscapes.evaluate(ls.kernel, x) is None  # autograd needs the torch form
    ls.f(x).sum().backward()  # and gets it
    assert x.grad is not None and torch.allclose(x.grad, ls.grad(p))
    assert compiled_landscapes.evaluate(ls.kernel, p.to(torch.float16)) is None
    assert compiled_landscapes.evaluate(ls.kernel, p.t().contiguous().t()) is not None
    monkeypatch.setenv("DESCEND_FAST", "0")
    assert compiled_landscapes.evaluate(ls.kernel, p) is None
    assert torch.equal(ls.grad(p), ls.grad_fn(p))


def test_kernel_refuses_a_wrong_dimension() -> None:
    args = compiled_landscapes.lab_args(("rosenbrock", (1.0, 100.0)), torch.zeros(4, 3))
    assert native.load().descend_landscape(ctypes.byref(args)) == -1


# -- tracker ------------------------------------------------------------------------------
def drive(tracker, theta: torch.Tensor, steps: int, seed: int, stops: bool) -> None:
    """A random walk with big jumps (some rows leave the bound, some turn NaN), the same for
    any tracker: positions depend only on the seed and on the tracker's freezing."""
    g = torch.Generator().manual_seed(seed)
    n, d = theta.shape
    for t in range(steps):
        f = (theta * theta).sum(1)
        step = torch.randn(n, d, generator=g, dtype=theta.dtype) * 0.4
        jump = torch.rand(n, generator=g) < 0.01
        step[jump] *= 40
        step[torch.rand(n, generator=g) < 0.002, 0] = float("nan")
        theta += step
        stop = (torch.rand(n, generator=g) < 0.01) if stops and t % 3 == 1 else None
        tracker.update(t, f, stop)
    tracker.observe_final(steps, (theta * theta).sum(1))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("stops", [False, True])
def test_compiled_tracker_equals_the_reference(dtype, d, stops) -> None:
    g = torch.Generator().manual_seed(d)
    start = torch.randn(3000, d, generator=g, dtype=dtype)
    a, b = start.clone(), start.clone()
    steps = 40
    ref = Tracker(a, steps, 7, 0.0, 0.5, 6.0, 1e-4)
    new = CompiledTracker(b, steps, 7, 0.0, 0.5, 6.0, 1e-4)
    drive(ref, a, steps, seed=1, stops=stops)
    drive(new, b, steps, seed=1, stops=stops)
    assert torch.equal(a, b)
    assert int(ref.frozen.sum()) > 10 and int((ref.diverged_step > 0).sum()) > 10
    if stops:
        assert int((ref.stopped_step >= 0).sum()) > 10
    for name in ("diverged_step", "stopped_step", "overshoots", "frozen"):
        assert torch.equal(getattr(ref, name), getattr(new, name)), name
    assert torch.equal(ref.steps_to_tol(), new.steps_to_tol())
    assert int((ref.steps_to_tol() >= 0).sum()) > 10
    assert torch.equal(ref.trajectory, new.trajectory)
    assert torch.equal(ref.losses, new.losses)
    assert torch.allclose(ref.path_length, new.path_length, rtol=40 * ULPS[dtype], atol=0)


def test_tracker_with_unknown_minimum_counts_nothing() -> None:
    theta = torch.zeros(5, 2)
    tr = CompiledTracker(theta, 3, 1, None, 1e-6, 10.0)
    for t in range(3):
        tr.update(t, torch.zeros(5))
    assert tr.steps_to_tol().tolist() == [-1] * 5


# -- the fused run ------------------------------------------------------------------------
SPECS = [
    "adam:lr=0.001",
    "adamw:lr=0.05,weight_decay=0.1",
    "amsgrad:lr=0.01",
    "nadam:lr=0.01",
    "rmsprop:lr=0.01,centered=True",
    "adagrad:lr=0.5",
    "sgd:lr=0.003",
    "momentum:lr=1e-4,momentum=0.9",
    "nesterov:lr=1e-3,momentum=0.9",
    "lion:lr=0.01,weight_decay=0.1",
    # RAdam, Adamax, ADOPT: test_radam_adamax_adopt_take_the_fused_run (counts the fused call)
]


def starts(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = np.stack([rng.uniform(-2, 2, n), rng.uniform(-1, 3, n)], axis=1)
    x[:3] = [[400.0, 1.0], [1.9, 2.9], [-2.0, 3.0]]  # the first beyond the bound (300)
    return x


def step_by_step(monkeypatch):
    """The reference loop: the Python tracker, so no fused call either."""
    monkeypatch.setattr(compiled, "available", lambda theta: False)


def fused_calls(monkeypatch) -> list[int]:
    """Spy on the lab's fused run: the list returned gets the number of steps of each
    ``CompiledTracker.fused_run`` call (which still runs)."""
    calls: list[int] = []
    real = CompiledTracker.fused_run

    def counting(self, t, steps, *args):
        calls.append(steps)
        return real(self, t, steps, *args)

    monkeypatch.setattr(CompiledTracker, "fused_run", counting)
    return calls


def assert_fused_run_is_the_loop(monkeypatch, spec: str, dtype, n: int, steps: int = 60) -> None:
    """``spec`` on Rosenbrock from ``n`` starts, ``steps`` steps: all of them in one fused
    call, equal bit for bit to the step-by-step loop (which makes no fused call), and
    moving."""
    calls = fused_calls(monkeypatch)
    x0 = starts(n)
    fused = lab.run("rosenbrock", [spec], x0, steps, dtype=dtype, record_every=7)
    assert calls == [steps]
    step_by_step(monkeypatch)
    plain = lab.run("rosenbrock", [spec], x0, steps, dtype=dtype, record_every=7)
    assert calls == [steps]  # the reference loop made no fused call
    assert_same(fused, plain, dtype)
    assert not np.array_equal(fused.trajectories[:, 0], fused.trajectories[:, -1])  # it moved


def assert_same(a, b, dtype) -> None:
    assert np.array_equal(a.trajectories, b.trajectories, equal_nan=True)
    assert np.array_equal(a.losses, b.losses, equal_nan=True)
    ma, mb = a.metrics, b.metrics
    for column in ma.columns:
        if column == "path_length":
            assert np.allclose(ma[column], mb[column], rtol=300 * ULPS[dtype], atol=0)
        else:
            assert ma[column].equals(mb[column]), column


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spec", SPECS)
def test_fused_run_equals_the_step_by_step_loop(monkeypatch, spec, dtype) -> None:
    x0 = starts(3000)
    fused = lab.run("rosenbrock", [spec], x0, 120, dtype=dtype, record_every=7)
    step_by_step(monkeypatch)
    plain = lab.run("rosenbrock", [spec], x0, 120, dtype=dtype, record_every=7)
    assert_same(fused, plain, dtype)
    assert (fused.metrics["status"] == "diverged").sum() >= 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_lion_takes_the_fused_run_and_equals_the_step_by_step_loop(monkeypatch, dtype) -> None:
    """Lion's kernel family is one of the lab's (``step_family`` in lab.cpp): all steps in one
    fused call, equal to the step-by-step loop bit for bit."""
    spec = "lion:lr=0.003,betas=(0.95,0.98),weight_decay_mode=l2,weight_decay=0.01"
    assert_fused_run_is_the_loop(monkeypatch, spec, dtype, 3000, steps=80)


# AdEMAMix, Schedule-Free (issue #14)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "spec",
    [
        "ademamix:lr=0.01,alpha_warmup=20,beta3_warmup=30,weight_decay=0.1",
        "schedule-free-adamw:lr=0.02,warmup_steps=10,weight_decay=0.1",
        "schedule-free-sgd:lr=0.0005,warmup_steps=10,weight_decay=0.01",
    ],
)
def test_ademamix_and_schedule_free_take_the_fused_run(monkeypatch, spec, dtype) -> None:
    """Their kernel families are the lab's too: all steps in one fused call, equal to the
    step-by-step loop bit for bit — Schedule-Free's γ_max and Σw advanced per block of runs
    from the same start, as the step counter is, and written back once."""
    assert_fused_run_is_the_loop(monkeypatch, spec, dtype, 3000)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "spec",
    [
        "radam:lr=0.003,betas=(0.9,0.99),weight_decay=0.01",  # un-rectified t ≤ 5, then not
        "radam:convention=optax,lr=0.003,nesterov=True",
        "adamax:convention=keras,lr=0.01,weight_decay=0.01",
        "adopt:lr=0.01,decoupled_weight_decay=True,weight_decay=0.1",  # first step: v only
        "adopt:lr=0.01,nesterov=True,clip_lambda=0.5",
    ],
)
def test_radam_adamax_adopt_take_the_fused_run(monkeypatch, spec, dtype) -> None:
    """RAdam, Adamax and ADOPT are lab families (``step_family`` in lab.cpp; issue #14): all
    steps in one fused call, each step's coefficients from the block's own step counter —
    equal to the step-by-step loop bit for bit."""
    assert_fused_run_is_the_loop(monkeypatch, spec, dtype, 2500)


# Adadelta, Rprop, ASGD (averaging from step 12: μ and η are per-parameter counters that
# every block of 2,048 rows starts from, as the step count)
FUSED_FAMILIES = [
    "adadelta:lr=0.5,weight_decay=0.01",
    "rprop:lr=0.01,etas=(0.4,1.3)",
    "asgd:lr=0.001,t0=10,lambd=0.01,weight_decay=0.01",
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spec", FUSED_FAMILIES)
def test_adadelta_rprop_asgd_take_the_fused_run(monkeypatch, spec, dtype) -> None:
    """Their kernel families are the lab's too: all steps in one fused call over two blocks
    of rows, equal to the step-by-step loop bit for bit."""
    assert_fused_run_is_the_loop(monkeypatch, spec, dtype, 3000)


def test_asgd_with_per_run_lr_declines_the_fused_run(monkeypatch) -> None:
    """Two ASGD learning rates in one group are an (N, 1) lr: one η per run, which the kernel
    (one η per tensor) does not take — the lab steps those runs on the chain, as it would
    without kernels."""
    calls = []
    real = CompiledTracker.fused_run
    monkeypatch.setattr(
        CompiledTracker, "fused_run", lambda self, *a: calls.append(a) or real(self, *a)
    )
    specs = ["asgd:lr=0.001,t0=5", "asgd:lr=0.002,t0=5"]
    x0 = starts(40)
    ours = lab.run("rosenbrock", specs, x0, 30, dtype=torch.float64)
    assert calls == []
    monkeypatch.setattr(CompiledTracker, "fused_run", real)
    step_by_step(monkeypatch)
    plain = lab.run("rosenbrock", specs, x0, 30, dtype=torch.float64)
    assert_same(ours, plain, torch.float64)


def domain_starts(ls, n: int) -> np.ndarray:
    """n starts across the domain, the first beyond the bound (100 × the domain)."""
    x = domain_points(ls, n, torch.float64, seed=2)[:n].numpy().copy()
    x[0] = 500 * max(hi for _, hi in ls.domain)
    return x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("name", "spec"),
    [
        ("himmelblau", "adam:lr=0.05"),
        ("goldstein-price", "nesterov:lr=1e-6,momentum=0.9"),
        ("double-well", "momentum:lr=0.01,momentum=0.9"),
    ],
)
def test_fused_run_on_other_kernel_landscapes_equals_the_step_by_step_loop(
    monkeypatch, name, spec, dtype
) -> None:
    ls = landscapes.get(name)
    calls = fused_calls(monkeypatch)
    x0 = domain_starts(ls, 3000)
    fused = lab.run(name, [spec], x0, 60, dtype=dtype, record_every=7)
    assert calls == [60]  # taken, all steps in one call
    step_by_step(monkeypatch)
    plain = lab.run(name, [spec], x0, 60, dtype=dtype, record_every=7)
    assert calls == [60]  # the reference loop made no fused call
    assert_same(fused, plain, dtype)
    assert (fused.metrics["status"] == "diverged").sum() >= 1


def test_fused_run_is_taken_and_matches_with_schedule_and_threads(monkeypatch) -> None:
    calls = fused_calls(monkeypatch)
    x0 = starts(5000)
    lab.run("rosenbrock", ["adam:lr=0.01"], x0, 50, dtype=torch.float32)
    assert calls == [50]  # all steps in one call
    calls.clear()
    sched = lab.run("rosenbrock", ["adam:lr=0.01"], x0, 50, dtype=torch.float32,
                    schedule=lambda t: 1.0 / (1 + t))  # fmt: skip
    assert calls == [1] * 50  # one call per step: the lr changes
    big = starts(40_000)  # enough work for two threads (20 blocks)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = lab.run("rosenbrock", ["adam:lr=0.01"], big, 20, dtype=torch.float32)
        torch.set_num_threads(2)
        two = lab.run("rosenbrock", ["adam:lr=0.01"], big, 20, dtype=torch.float32)
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(one.trajectories, two.trajectories, equal_nan=True)
    assert one.metrics.equals(two.metrics)
    step_by_step(monkeypatch)
    calls.clear()
    assert_same(sched, lab.run("rosenbrock", ["adam:lr=0.01"], x0, 50, dtype=torch.float32,
                               schedule=lambda t: 1.0 / (1 + t)), torch.float32)  # fmt: skip
    assert calls == []  # the reference loop made no fused call


def test_fused_run_leaves_the_optimizer_state_of_the_step_by_step_loop(monkeypatch) -> None:
    """The step counter is advanced per block and written back once: the optimizer ends with
    the state a step-by-step run leaves (step = steps, moments equal)."""
    from descend.lab.steppers import ChainStepper

    states = []
    real = ChainStepper.__init__

    def keep(self, *args):
        real(self, *args)
        states.append(self.optimizer)

    monkeypatch.setattr(ChainStepper, "__init__", keep)
    x0 = starts(4100)  # two blocks and a partial one
    lab.run("rosenbrock", ["nadam:lr=0.01"], x0, 30, dtype=torch.float64)
    step_by_step(monkeypatch)
    lab.run("rosenbrock", ["nadam:lr=0.01"], x0, 30, dtype=torch.float64)
    (fused_state,), (plain_state,) = [list(o.state.values()) for o in states]
    assert float(fused_state["step"]) == 30.0
    for key, value in plain_state.items():
        assert torch.equal(fused_state[key], value), key


def test_several_groups_and_noise_take_the_step_by_step_path(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(CompiledTracker, "fused_run", lambda *a: calls.append(a))
    x0 = starts(50)
    lab.run("rosenbrock", ["adam:lr=0.01", "momentum:lr=1e-4"], x0, 5)
    lab.run("rosenbrock", ["adam:lr=0.01"], x0, 5, noise_batch=8)
    lab.run("rosenbrock", ["adam:lr=0.01,max_grad_norm=1"], x0, 5)
    no_twin = dataclasses.replace(landscapes.get("himmelblau"), kernel=None)
    lab.run(no_twin, ["adam:lr=0.01"], None, 5)  # no compiled twin
    assert calls == []
    assert engine._fused_stepper is not None


def test_the_kernel_refuses_what_it_cannot_run() -> None:
    theta = torch.zeros(4, 2)
    tr = CompiledTracker(theta, 3, 1, 0.0, 1e-6, 10.0)
    tr._args.steps, tr._args.family = 2, -1  # several steps without an optimizer
    with pytest.raises(RuntimeError, match="refused"):
        tr._call(None)


@pytest.mark.parametrize(
    "specs",
    [
        ["adam:lr=0.001", "adam:lr=0.01", "adam:lr=0.1"],  # per-run lr: the per-element form
        ["adamw:lr=0.01,weight_decay=0.1", "adamw:lr=0.05,weight_decay=0.01"],
        ["momentum:lr=1e-4,momentum=0.9", "momentum:lr=3e-4,momentum=0.9"],
        ["momentum:lr=1e-4,momentum=0.5", "momentum:lr=1e-4,momentum=0.9"],  # per-run β
    ],
)
def test_fused_run_with_per_run_hyperparameters(monkeypatch, specs) -> None:
    """Configurations of one structure share a group with per-run (N, 1) hyperparameters; the
    fused run reads them per element exactly as optimizer.step() does (and a per-run β, which
    the kernels do not take, keeps the step-by-step loop)."""
    x0 = starts(2500)
    fused = lab.run("rosenbrock", specs, x0, 80, dtype=torch.float64, record_every=9)
    step_by_step(monkeypatch)
    plain = lab.run("rosenbrock", specs, x0, 80, dtype=torch.float64, record_every=9)
    assert_same(fused, plain, torch.float64)
