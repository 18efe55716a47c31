"""``cautious=True`` on the fast path (issue #14): the kernels of SGD with momentum (Nesterov
too), RMSprop with momentum, Adam / AdamW / AMSGrad, NAdam and Lion mask their update with
φ = 1[u·g > 0] rescaled by n/(Σφ + 1) per tensor, in two passes (``drivers.h``: count on
copies of the state, then step). The chain (``descend.transforms.cautious``) is the
reference: 60 steps on both paths from the same start and gradients agree bit for bit, θ and
every state tensor, in float64 and in float32 — the mask φ, its count and the scale are the
chain's own roundings; parity with pytorch_optimizer's mask on the fast path is in
``test_cautious.py``. Then: threads cutting tensors, state dicts and path switches, NaN and
underflow, and what declines (LAMB / LARS, per-run tensors, the lab's fused step).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import descend.optim as D
from descend.native import abi
from descend.optim import fast
from descend.optim.fast.plan import Unsupported, shape_of
from test_fast_path import make_params as path_params
from test_fast_path import rel
from test_fast_path import run as path_run

# every test steps the compiled kernels, at 1 thread unless it says otherwise (conftest)
pytestmark = pytest.mark.usefixtures("fast_kernels", "one_thread")


STEPS = 60
SHAPES = [(7, 3), (), (0,), (40,), (301,)]


def make_params(dtype, shapes=SHAPES, seed=0) -> list[torch.Tensor]:
    return path_params(dtype, shapes, seed)


def set_grads(params, step: int, sign: float = 1.0) -> None:
    """∇ of Σ ¼p⁴ + ½p² + 0.3·p·sin(3p + t/10) plus a step-dependent wobble that keeps the
    momentum disagreeing with the gradient somewhere (so the mask drops coordinates)."""
    with torch.no_grad():
        for p in params:
            phase = 3 * p + step / 10
            wobble = 0.5 * torch.sin(7 * p + 1.3 * step)
            p.grad = sign * (
                p**3 + p + 0.3 * torch.sin(phase) + 0.9 * p * torch.cos(phase) + wobble
            )


def run(make_opt, dtype, steps=STEPS, params=None, each=None):
    """test_fast_path's run over these shapes and this module's gradients."""
    params = make_params(dtype) if params is None else params
    return path_run(make_opt, dtype, steps, params, each, grads=set_grads)


# (id, spec, keywords): every family with a cautious kernel × the switches of its kernel
CONFIGS = [
    ("momentum", "momentum", dict(lr=0.01)),
    ("momentum-keras", "momentum", dict(convention="keras")),
    ("momentum-dampening-l2", "momentum", dict(lr=0.01, dampening=0.3, weight_decay=0.1)),
    ("momentum-ema-debias", "momentum-ema", dict(lr=0.01, debias=True)),
    ("nesterov", "nesterov", dict(lr=0.01)),
    (
        "nesterov-decoupled",
        "nesterov",
        dict(lr=0.01, weight_decay=0.1, weight_decay_mode="decoupled"),
    ),
    (
        "nesterov-maximize-clip",
        "nesterov",
        dict(lr=0.01, maximize=True, max_grad_norm=5.0, clip_value=0.5),
    ),
    ("rmsprop-momentum", "rmsprop", dict(lr=1e-3, momentum=0.9)),
    ("rmsprop-centered-nesterov", "rmsprop-centered", dict(lr=1e-3, momentum=0.9, nesterov=True)),
    ("rmsprop-momentum-keras", "rmsprop", dict(convention="keras", momentum=0.9)),
    (
        "rmsprop-momentum-ema-l2",
        "rmsprop",
        dict(lr=1e-3, momentum=0.5, momentum_form="ema", weight_decay=0.01),
    ),
    ("adam", "adam", {}),
    ("adam-keras", "adam", dict(convention="keras")),
    ("adamw", "adamw", dict(weight_decay=0.1)),
    ("amsgrad", "adam", dict(amsgrad=True)),
    ("amsgrad-corrected-l2", "adam", dict(amsgrad=True, amsgrad_of="corrected", weight_decay=0.05)),
    ("adam-hat-small-beta1", "adam", dict(eps_placement="hat", betas=(0.4, 0.9))),
    ("adam-maximize-clip", "adamw", dict(maximize=True, max_grad_norm=1.0, clip_value=2.0)),
    ("adam-independent", "adam", dict(weight_decay=1e-3, weight_decay_mode="independent")),
    ("nadam", "nadam", {}),
    ("nadam-decoupled", "nadam", dict(weight_decay=0.01, decoupled_weight_decay=True)),
    ("nadam-l2-keras", "nadam", dict(weight_decay=0.01, convention="keras")),
    ("lion", "lion", dict(lr=1e-3)),
    ("lion-decoupled", "lion", dict(lr=1e-3, weight_decay=0.5)),
    (
        "lion-l2-maximize",
        "lion",
        dict(lr=1e-3, weight_decay=0.1, weight_decay_mode="l2", maximize=True),
    ),
]


def _same(x: torch.Tensor, y: torch.Tensor) -> bool:
    """Bit for bit, NaN where NaN (torch.equal says NaN ≠ NaN)."""
    return torch.equal(x.isnan(), y.isnan()) and torch.equal(x.nan_to_num(), y.nan_to_num())


def assert_bitwise(opt, ref, a, b) -> None:
    assert all(_same(x, y) for x, y in zip(a, b, strict=True))
    for p, q in zip(opt.param_groups[0]["params"], ref.param_groups[0]["params"], strict=True):
        sa, sb = opt.state[p], ref.state[q]
        assert sorted(sa) == sorted(sb)
        for key in sa:
            assert sa[key].dtype == sb[key].dtype and _same(sa[key], sb[key]), key


# Bit for bit in float64: the kernels whose unmasked step is (SGD's, Lion's); Adam's, NAdam's
# and RMSprop's multiply by a per-tensor reciprocal where the chain divides (kernels.h), so
# their masked step stays as close as their unmasked one (≤ 5 ulp of θ measured, 320 after
# RMSprop's 60 steps amplify it; relative 2e-16). In float32 Lion is bitwise too; the others'
# cores are what gcc contracts (≤ 3e-6 relative after 60 steps, as unmasked). A mask that
# kept or dropped one coordinate differently would move it by a whole step: far above both.
BITWISE64 = {c[0] for c in CONFIGS if c[1] in ("momentum", "nesterov", "lion")}
BITWISE32 = {c[0] for c in CONFIGS if c[1] == "lion"}
TOL = {torch.float32: 1e-5, torch.float64: 1e-14}


def assert_agree(bitwise: bool, opt, ref, a, b) -> None:
    """Bit for bit, or NaN where NaN and the finite values within TOL (relative)."""
    if bitwise:
        assert_bitwise(opt, ref, a, b)
        return
    assert all(torch.equal(x.isnan(), y.isnan()) for x, y in zip(a, b, strict=True))
    finite = [x.nan_to_num() for x in a], [y.nan_to_num() for y in b]
    assert rel(*finite) <= TOL[a[0].dtype]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("name,spec,kwargs", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_cautious_kernel_equals_the_chain(name, spec, kwargs, dtype):
    a, opt = run(lambda ps: D.from_spec(spec, ps, fused=True, cautious=True, **kwargs), dtype)
    b, ref = run(lambda ps: D.from_spec(spec, ps, fused=False, cautious=True, **kwargs), dtype)
    assert fast.last_path(opt) == {0: "fast"}
    assert fast.last_path(ref) == {0: "default: fused=False"}
    assert_agree(name in (BITWISE64 if dtype == torch.float64 else BITWISE32), opt, ref, a, b)
    # the mask acted: the unmasked optimizer went elsewhere
    c, _ = run(lambda ps: D.from_spec(spec, ps, fused=True, **kwargs), dtype)
    assert rel(a, c) > 1e-4


@pytest.mark.parametrize(
    "spec", ["adamw", "nesterov", "rmsprop-centered:momentum=0.9", "nadam", "lion"]
)
def test_two_threads_cut_tensors_and_count_every_part(spec):
    """Tensors cut between the threads' ranges are counted in parts and stepped after one
    barrier; tensors wholly in a range are counted then stepped at once."""
    torch.set_num_threads(2)
    shapes = [(30_001,), (3,), (20_001,), (25_001,), (5,)]  # 75k: two ranges, #2 cut
    results = []
    for fused in (True, False):
        params = make_params(torch.float64, shapes)
        results.append(
            run(
                lambda ps, f=fused: D.from_spec(spec, ps, fused=f, cautious=True),
                torch.float64,
                3,
                params,
            )
        )
    (a, opt), (b, ref) = results
    assert fast.last_path(opt) == {0: "fast"}
    assert_agree(spec in ("nesterov", "lion"), opt, ref, a, b)


def test_the_hand_computed_step_on_the_fast_path():
    """test_cautious's hand-computed SGD step, on the kernel: buffer (3, −1, 2) against
    g = (2, 1, 1): φ = (1, 0, 1), scale 3/(2 + 1) = 1; next step all agree: scale 3/4."""
    p = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = D.SGD([p], lr=1.0, momentum=0.5, cautious=True, fused=True)
    opt.state[p]["momentum_buffer"] = torch.tensor([2.0, -4.0, 2.0], dtype=torch.float64)
    p.grad = torch.tensor([2.0, 1.0, 1.0], dtype=torch.float64)
    opt.step()
    assert fast.last_path(opt) == {0: "fast"}
    assert torch.equal(p.detach(), torch.tensor([-3.0, 0.0, -2.0], dtype=torch.float64))
    p.grad = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    opt.step()
    expected = torch.tensor([-3 - 1.875, -0.375, -2 - 1.5], dtype=torch.float64)
    assert torch.equal(p.detach(), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
def test_nan_inf_zero_and_underflowing_products_as_the_chain(dtype):
    """A NaN gradient makes u NaN: φ = 0 and u·0 = NaN reaches θ, as on the chain; ±Inf;
    zero gradients (u·g = 0: dropped); products u·g that underflow to 0 are dropped (the
    chain rounds the product before comparing)."""
    info = torch.finfo(dtype)
    least = info.smallest_normal * info.eps  # the smallest subnormal

    def each(t, params, opt):
        if t == 20:
            params[0].grad[0, 0] = float("nan")
        if t == 21:
            params[3].grad[5] = float("inf")
            params[3].grad[6] = -float("inf")
        if t < 3:
            params[4].grad[:10] = 0.0
        if t == 30:
            params[4].grad[20:40] = least  # u·g rounds to 0 where |u| < ½: dropped

    for spec, kwargs in (("adam", {}), ("nesterov", dict(lr=0.01)), ("lion", dict(lr=1e-3))):
        results = [
            run(
                lambda ps, f=f, s=spec, k=kwargs: D.from_spec(s, ps, fused=f, cautious=True, **k),
                dtype,
                40,
                each=each,
            )
            for f in (True, False)
        ]
        (a, opt), (b, ref) = results
        assert fast.last_path(opt) == {0: "fast"}
        assert_agree(spec != "adam" and (spec == "lion" or dtype == torch.float64), opt, ref, a, b)
        assert a[0].isnan().any() == (spec != "lion")  # NaN·0 reached θ (Lion: sign(NaN) = 0)


def test_state_dict_moves_between_paths_and_paths_switch_mid_run():
    for spec in ("adamw", "nesterov", "lion", "rmsprop:momentum=0.9", "nadam"):
        same = _bitwise_or_close(spec in ("nesterov", "lion"))
        full, ref = run(
            lambda ps, s=spec: D.from_spec(s, ps, fused=False, cautious=True), torch.float64, 20
        )
        for first, second in ((True, False), (False, True)):
            params = make_params(torch.float64)
            opt = D.from_spec(spec, params, fused=first, cautious=True)
            for t in range(10):
                set_grads(params, t)
                opt.step()
            saved = copy.deepcopy(opt.state_dict())
            opt2 = D.from_spec(spec, params, fused=second, cautious=True)
            opt2.load_state_dict(saved)
            for t in range(10, 20):
                set_grads(params, t)
                opt2.step()
            assert same([p.detach() for p in params], full), (spec, first)
        # one optimizer whose path flips every step (fused=None with DESCEND_FAST toggled
        # is the same switch): fused set per step
        params = make_params(torch.float64)
        opt = D.from_spec(spec, params, cautious=True)
        for t in range(20):
            opt.fused = bool(t % 2)
            set_grads(params, t)
            opt.step()
        assert same([p.detach() for p in params], full), spec


def _bitwise_or_close(bitwise: bool):
    if bitwise:
        return lambda a, b: all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    return lambda a, b: rel(a, b) <= TOL[torch.float64]


def test_momentum_based_without_a_cautious_kernel_keep_the_chain_and_say_why():
    """LAMB and LARS are momentum-based (they take cautious=) but have no kernel; the
    families in abi.CAUTIOUS are exactly the momentum-based cores with one."""
    p = torch.zeros(3, requires_grad=True)
    for cls, why in (
        (D.LAMB, "links after the core"),
        (D.LARS, "cautious core scale_by_trust_ratio has no"),
    ):
        opt = cls([p], cautious=True)
        p.grad = torch.ones(3)
        opt.step()
        (reason,) = fast.last_path(opt).values()
        assert reason.startswith("default: ") and why in reason, reason
        with pytest.raises(ValueError, match=r"fused=True\) is not supported"):
            cls([p], cautious=True, fused=True)
    with_mask = set()
    for cls in _declared():
        if not getattr(cls, "momentum_based", False):
            continue
        opt = cls([torch.zeros(2, requires_grad=True)], cautious=True, **_momentum(cls))
        try:
            shape = shape_of(opt.chain(opt.param_groups[0]).transforms)
        except Unsupported:
            continue
        assert shape.cautious
        with_mask.add(shape.family)
    assert with_mask == set(abi.CAUTIOUS)


def _declared():
    from descend.optim.registry import REGISTRY

    return {entry.cls for entry in REGISTRY.values()}


def _momentum(cls) -> dict:
    return {"momentum": 0.9} if cls in (D.SGD, D.RMSprop) else {}


def test_a_core_without_the_mask_is_refused_not_stepped_unmasked(monkeypatch):
    """A kernel family outside abi.CAUTIOUS (a future family whose driver does not read the
    flag) must keep the chain: the plan refuses it rather than run it unmasked."""
    from descend.optim.fast import plan

    monkeypatch.setattr(plan, "CAUTIOUS", ("sgd",))
    opt = D.Adam([torch.zeros(2, requires_grad=True)], cautious=True)
    with pytest.raises(Unsupported, match="the adam kernel has no cautious mask"):
        shape_of(opt.chain(opt.param_groups[0]).transforms)


def test_per_run_tensors_keep_the_chain():
    """The lab's (N, 1) per-run lr with cautious=True: the mask's scale is per tensor, so the
    rows would be coupled; the fast path declines and names why (the chain runs it)."""
    theta = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    lr = torch.tensor([[1e-3], [2e-3], [3e-3], [4e-3]], dtype=torch.float64)
    opt = D.Adam([theta], lr=lr, cautious=True)
    theta.grad = torch.randn(4, 3, dtype=torch.float64)
    opt.step()
    assert "cautious=True with per-run tensor hyperparameters (lr)" in fast.last_path(opt)[0]


def test_the_lab_steps_cautious_runs_alone_and_its_fused_step_declines():
    """In the lab each cautious run has its own optimizer (RowsStepper) — now on the fast
    path, so equal to the chain's run bit for bit; a ChainStepper over shared rows declines
    the fused call, and the library refuses it too (−1, nothing done)."""
    import ctypes

    from descend import lab, native
    from descend.lab.configs import build_configs
    from descend.lab.steppers import ChainStepper

    starts = [(-1.5, 2.0), (1.5, -0.5), (0.3, 0.4)]
    spec = "nesterov:cautious=true,lr=1e-3"
    paths = []
    real = fast.step_group

    def spy(opt, index, group, params):
        paths.append(real(opt, index, group, params))
        return paths[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fast, "step_group", spy)
        fast_run = lab.run("rosenbrock", [spec], starts=starts, steps=40)
        assert paths and all(paths)  # every run's every step took the kernel
        mp.setattr(fast, "_auto_enabled", lambda: False)  # optimizers only: the chain
        chain_run = lab.run("rosenbrock", [spec], starts=starts, steps=40)
        assert not all(paths)
    np.testing.assert_array_equal(fast_run.trajectories, chain_run.trajectories)
    assert not np.array_equal(fast_run.trajectories[:, 0], fast_run.trajectories[:, -1])

    theta = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    (config,) = build_configs(["adam:cautious=true,lr=0.01"], {})
    stepper = ChainStepper([config], torch.zeros(5, dtype=torch.long), theta)
    assert stepper.prepare_fused(torch.zeros_like(theta)) is None
    prepared = fast.prepare_group(stepper.optimizer, 0, stepper.group, [theta])
    assert prepared.args.cautious == 1
    lab_args = abi.LabArgs(rows=5, dim=2, dtype=1, family=abi.FAMILIES.index("adam"), function=1)
    lab_args.steps, lab_args.t = 1, 0
    lib = native.load()
    assert lib.descend_lab_step(ctypes.byref(prepared.args), ctypes.byref(lab_args)) == -1
