"""The fast kernels of AdEMAMix and Schedule-Free (AdamW and SGD) against their chains.

Both kernels spell out their chain's floating-point operations one by one (kernels.h), and
their drivers compute the per-step coefficients — AdEMAMix's α(s), β₃(s) warm-ups and bias
corrections; Schedule-Free's warm-up γₜ, γ_max, Σw and averaging weight cₜ — with the chain's
Python arithmetic in double. So 100 steps agree bit for bit with the chain, θ and every state
tensor, in float32 and float64, on every branch: each warm-up inside and past its end, lerp's
two forms, Schedule-Free's three decay placements, its warm-up lag (optax) and Σw = 0 (γ = 0).
One operation is not the chain's: the square root. The kernels take the correctly rounded
√ (std::sqrt, the CPU's instruction); torch's CPU ``sqrt`` of a large float tensor is not
correctly rounded on every element (1 ulp off on ~0.2% of them here, where MKL's vector
routine computes it). So the bit-for-bit comparison gives the chain a correctly rounded √
(:func:`exact_sqrt`, numpy's); against the chain as it is, the families with a root
(AdEMAMix, Schedule-Free AdamW) stay within ``test_fast_path``'s 1e-6 / 1e-12.
Schedule-Free's bookkeeping stays Python numbers in the state (the kernel updates copies that
are written back), so ``train()`` / ``eval()`` and state dicts work across the paths.
"""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch

import descend.optim as D
from descend.optim import fast
from test_fast_path import TOL, make_params, rel, run, set_grads

# every test steps the compiled kernels, at 1 thread unless it says otherwise (conftest)
pytestmark = pytest.mark.usefixtures("fast_kernels", "one_thread")


DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])

# (id, spec, keywords): every switch and branch of the two kernels
BITWISE = [
    ("ademamix", "ademamix", dict(lr=1e-3)),
    ("ademamix-optax", "ademamix", dict(convention="optax", lr=1e-3)),
    # both warm-ups inside their first 30 of 100 steps, then past them
    ("ademamix-warmups", "ademamix", dict(lr=2e-3, alpha_warmup=30, beta3_warmup=30)),
    ("ademamix-beta3-warmup-only", "ademamix", dict(lr=2e-3, beta3_warmup=200)),
    # lerp's large form (|1 − β| ≥ ½) for m₁ and, through β₃'s warm-up from β₁, for m₂
    ("ademamix-large-lerp", "ademamix", dict(lr=1e-3, betas=(0.3, 0.99), beta3=0.4)),
    ("ademamix-large-lerp-warmup", "ademamix", dict(betas=(0.2, 0.9), beta3=0.9, beta3_warmup=50)),
    # β_start = β₁ = 0: β₃(0) = ½^∞ = 0 (the h + 1 = 0 branch), then the half-life warm-up
    ("ademamix-beta1-zero", "ademamix", dict(lr=1e-3, betas=(0.0, 0.99), beta3_warmup=10)),
    ("ademamix-decoupled", "ademamix", dict(lr=1e-3, weight_decay=0.1)),
    ("ademamix-l2", "ademamix", dict(lr=1e-3, weight_decay=0.05, weight_decay_mode="l2")),
    (
        "ademamix-maximize-clip",
        "ademamix",
        dict(lr=1e-3, maximize=True, max_grad_norm=1.0, clip_value=2.0, eps=1e-6),
    ),
    ("sf-adamw", "schedule-free-adamw", dict(lr=0.01)),
    ("sf-adamw-decay-y", "schedule-free-adamw", dict(lr=0.01, weight_decay=0.1)),
    ("sf-adamw-decay-z", "schedule-free-adamw", dict(lr=0.01, weight_decay=0.1, decay_at_z=True)),
    (
        "sf-adamw-l2-warmup",
        "schedule-free-adamw",
        dict(lr=0.01, weight_decay=0.05, weight_decay_mode="l2", warmup_steps=30),
    ),
    (
        "sf-adamw-optax-lag",
        "schedule-free-adamw",
        dict(convention="optax", lr=0.02, warmup_steps=20, weight_decay=0.1),
    ),
    (
        "sf-adamw-r-power",
        "schedule-free-adamw",
        dict(lr=0.02, betas=(0.8, 0.99), r=1.0, weight_lr_power=1.0, eps=1e-6),
    ),
    (
        "sf-adamw-maximize-clip",
        "schedule-free-adamw",
        dict(lr=0.01, maximize=True, max_grad_norm=1.0, clip_value=2.0),
    ),
    ("sf-sgd", "schedule-free-sgd", dict(lr=0.01)),
    ("sf-sgd-l2-warmup", "schedule-free-sgd", dict(lr=0.01, weight_decay=0.1, warmup_steps=30)),
    (
        "sf-sgd-optax-lag",
        "schedule-free-sgd",
        dict(convention="optax", lr=0.01, momentum=0.8, warmup_steps=10, r=0.5),
    ),
    ("sf-sgd-maximize-clip", "schedule-free-sgd", dict(lr=0.01, maximize=True, clip_value=1.0)),
    ("sf-sgd-zero-lr", "schedule-free-sgd", dict(lr=0.0)),  # Σw = 0: cₜ = 0, nothing moves
]


def _state_equal(opt, ref) -> None:
    for p, q in zip(opt.param_groups[0]["params"], ref.param_groups[0]["params"], strict=True):
        sa, sb = opt.state[p], ref.state[q]
        assert sorted(sa) == sorted(sb)
        for key, value in sb.items():
            if isinstance(value, torch.Tensor):
                assert sa[key].dtype == value.dtype and torch.equal(sa[key], value), key
            else:  # Schedule-Free's γ_max and Σw: Python numbers, as the chain keeps them
                assert type(sa[key]) is float and sa[key] == value, key


def exact_sqrt(xs: list[torch.Tensor]) -> list[torch.Tensor]:
    """``torch._foreach_sqrt`` correctly rounded (numpy's √, the IEEE operation)."""
    return [torch.from_numpy(np.asarray(np.sqrt(x.detach().numpy()))) for x in xs]


@pytest.fixture
def chain_with_exact_sqrt(monkeypatch):
    """The chain's √ (``_ops.sqrt_plus_eps``) correctly rounded, as the kernels' is."""
    monkeypatch.setattr(torch, "_foreach_sqrt", exact_sqrt)


@DTYPES
@pytest.mark.parametrize("spec,kwargs", [c[1:] for c in BITWISE], ids=[c[0] for c in BITWISE])
def test_kernel_equals_the_chain_bitwise(spec, kwargs, dtype, chain_with_exact_sqrt):
    a, opt = run(lambda ps: D.from_spec(spec, ps, fused=True, **kwargs), dtype)
    b, ref = run(lambda ps: D.from_spec(spec, ps, fused=False, **kwargs), dtype)
    assert fast.last_path(opt) == {0: "fast"}
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    _state_equal(opt, ref)
    if kwargs.get("lr") == 0.0:  # Σw = 0, cₜ = 0: z and x stay at θ₀ (y = βθ₀ + (1 − β)θ₀)
        for p, start in zip(opt.param_groups[0]["params"], make_params(dtype), strict=True):
            st = opt.state[p]
            assert st["weight_sum"] == 0.0 and st["lr_max"] == 0.0
            assert torch.equal(st["z"], start) and torch.equal(st["x"], start)
    else:
        assert any(not torch.equal(x, y) for x, y in zip(a, make_params(dtype), strict=True))


@pytest.mark.parametrize(
    "spec", ["ademamix:beta3_warmup=3", "schedule-free-adamw:weight_decay=0.1", "schedule-free-sgd"]
)
def test_parameters_with_different_step_counts(spec, chain_with_exact_sqrt):
    """A parameter without a gradient skips a step: its t, warm-ups, bias corrections and
    Schedule-Free bookkeeping (γ_max, Σw, cₜ) are its own, on both paths alike."""

    def each(t, params, opt):
        if t % 3 == 1:
            params[0].grad = None
        if t % 5 == 2:
            params[3].grad = None

    a, opt = run(lambda ps: D.from_spec(spec, ps, fused=True, warmup_steps=8)
                 if spec.startswith("schedule") else D.from_spec(spec, ps, fused=True),
                 torch.float64, steps=30, each=each)  # fmt: skip
    b, ref = run(lambda ps: D.from_spec(spec, ps, fused=False, warmup_steps=8)
                 if spec.startswith("schedule") else D.from_spec(spec, ps, fused=False),
                 torch.float64, steps=30, each=each)  # fmt: skip
    assert fast.last_path(opt) == {0: "fast"}
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    _state_equal(opt, ref)
    steps = [float(opt.state[p]["step"]) for p in opt.param_groups[0]["params"]]
    assert steps[0] == 20 and steps[3] == 24 and steps[1] == 30


@pytest.mark.parametrize("spec", ["ademamix", "schedule-free-adamw", "schedule-free-sgd:lr=0.01"])
def test_two_threads_split_the_work(spec, chain_with_exact_sqrt):
    torch.set_num_threads(2)
    shapes = [(40_000,), (3,), (33_001,), (70_001,)]
    results = []
    for fused in (True, False):
        params = make_params(torch.float32, shapes)
        results.append(
            run(lambda ps, f=fused: D.from_spec(spec, ps, fused=f), steps=5, params=params)
        )
    (a, opt), (b, _) = results
    assert fast.last_path(opt) == {0: "fast"}
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


KINDS = {
    "adamw": ("schedule-free-adamw", dict(lr=0.02, weight_decay=0.1, warmup_steps=5)),
    "sgd": ("schedule-free-sgd", dict(lr=0.05, weight_decay=0.1, warmup_steps=5)),
}


@pytest.mark.parametrize("kind", KINDS)
def test_eval_and_train_swap_after_fast_steps(kind, chain_with_exact_sqrt):
    """eval() swaps θ to x and train() back to y after steps on the fast path, as on the
    chain; a step in eval mode raises as it always did and changes nothing."""
    spec, kwargs = KINDS[kind]
    a, opt = run(lambda ps: D.from_spec(spec, ps, fused=True, **kwargs), steps=20)
    b, ref = run(lambda ps: D.from_spec(spec, ps, fused=False, **kwargs), steps=20)
    assert fast.last_path(opt) == {0: "fast"}
    params, ref_params = opt.param_groups[0]["params"], ref.param_groups[0]["params"]
    opt.eval()
    ref.eval()
    for p, q in zip(params, ref_params, strict=True):
        assert torch.equal(p, q) and torch.equal(p, opt.state[p]["x"])
    before = [p.detach().clone() for p in params]
    saved = copy.deepcopy(opt.state_dict())
    set_grads(params, 20)
    with pytest.raises(RuntimeError, match=r"eval mode.*optimizer\.train\(\)"):
        opt.step()
    assert all(torch.equal(p, q) for p, q in zip(params, before, strict=True))
    assert str(opt.state_dict()) == str(saved)
    opt.train()
    ref.train()
    assert all(torch.equal(p, y) for p, y in zip(params, a, strict=True))
    for t in range(20, 30):
        set_grads(params, t)
        set_grads(ref_params, t)
        opt.step()
        ref.step()
    assert fast.last_path(opt) == {0: "fast"}
    assert all(torch.equal(p, q) for p, q in zip(params, ref_params, strict=True))


def _roundtrip(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("direction", ["fast->chain", "chain->fast"])
def test_state_dict_saved_in_either_mode_moves_between_paths(
    kind, mode, direction, chain_with_exact_sqrt
):
    """Save model and optimizer after 15 steps on one path (in train or eval mode), load both
    into a new optimizer on the other path, train() and go on: bit for bit the uninterrupted
    chain."""
    spec, kwargs = KINDS[kind]
    first, second = (True, False) if direction == "fast->chain" else (False, True)
    params = make_params(torch.float64)
    opt = D.from_spec(spec, params, fused=first, **kwargs)
    for t in range(15):
        set_grads(params, t)
        opt.step()
    if mode == "eval":
        opt.eval()
    model = _roundtrip([p.detach() for p in params])
    saved = _roundtrip(opt.state_dict())
    resumed = [p.clone().requires_grad_() for p in model]
    opt2 = D.from_spec(spec, resumed, fused=second, **kwargs)
    opt2.load_state_dict(saved)
    opt2.train()
    for t in range(15, 30):
        set_grads(resumed, t)
        opt2.step()
    expected, ref = run(
        lambda ps: D.from_spec(spec, ps, fused=False, **kwargs), torch.float64, steps=30
    )
    assert fast.last_path(opt2) == {0: "fast" if second else "default: fused=False"}
    assert all(torch.equal(p.detach(), e) for p, e in zip(resumed, expected, strict=True))
    st = opt2.state[resumed[0]]
    assert type(st["lr_max"]) is float and type(st["weight_sum"]) is float


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
def test_per_run_weight_decay_rows_and_per_run_lr_declines(dtype, chain_with_exact_sqrt):
    """The lab's (N, 1) columns: AdEMAMix takes a per-run lr and decay (bit for bit) and
    Schedule-Free SGD a per-run L2 decay on the kernel (to the fast path's tolerance: the chain
    adds a per-run λθ as two roundings, the shared ``grad_in`` as one); a per-run
    Schedule-Free lr (its γ_max, Σw become one per run) keeps the chain, saying why."""
    n = 200
    lr = torch.logspace(-4, -2, n, dtype=dtype).reshape(-1, 1)
    wd = torch.linspace(0, 0.05, n, dtype=dtype).reshape(-1, 1)

    def build(spec, fused, set_lr):
        def make(ps):
            opt = D.from_spec(spec, ps, fused=fused)
            if set_lr:
                opt.param_groups[0]["lr"] = lr
            opt.param_groups[0]["weight_decay"] = wd
            return opt

        return make

    for spec, set_lr in (("ademamix", True), ("schedule-free-sgd:lr=0.01", False)):
        (a, opt), (b, _) = [
            run(build(spec, f, set_lr), dtype, steps=30, params=make_params(dtype, [(n, 3)]))
            for f in (None, False)
        ]
        assert fast.last_path(opt) == {0: "fast"}, spec
        if set_lr:
            assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True)), spec
        else:
            assert rel(a, b) <= TOL[dtype], spec
    p = make_params(dtype, [(n, 3)])
    opt = D.ScheduleFreeSGD(p)
    opt.param_groups[0]["lr"] = lr
    set_grads(p, 0)
    opt.step()
    assert fast.last_path(opt)[0].startswith("default: lr is a tensor")


def test_fused_true_refuses_a_per_run_schedule_free_lr_naming_it():
    p = torch.zeros(4, 2, requires_grad=True)
    opt = D.ScheduleFreeAdamW([p], fused=True)
    opt.param_groups[0]["lr"] = torch.full((4, 1), 0.01)
    p.grad = torch.ones(4, 2)
    with pytest.raises(RuntimeError, match=r"fused=True.*lr is a tensor"):
        opt.step()
    assert torch.equal(p, torch.zeros(4, 2)) and not opt.state[p]


def test_schedule_free_state_numbers_that_are_tensors_keep_the_chain():
    """γ_max and Σw as tensors (a state from per-run learning rates) are not numbers the
    kernel can take: the group runs on the chain, which handles them."""
    p = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    opt = D.ScheduleFreeSGD([p], lr=0.1)
    set_grads([p], 0)
    opt.step()
    assert fast.last_path(opt) == {0: "fast"}
    opt.state[p]["lr_max"] = torch.full((3, 1), 0.1, dtype=torch.float64)
    set_grads([p], 1)
    opt.step()
    assert "'lr_max' is Tensor, not a number" in fast.last_path(opt)[0]


@pytest.mark.parametrize(
    "spec,slot",
    [
        ("ademamix:alpha_warmup=40,beta3_warmup=40", "exp_avg_slow"),
        ("schedule-free-adamw:weight_decay=0.1,warmup_steps=40", "z"),
        ("schedule-free-sgd:lr=0.01,warmup_steps=40", "x"),
    ],
)
def test_switching_paths_mid_run(spec, slot, chain_with_exact_sqrt):
    """Alternate the paths step by step (the warm-ups, bias corrections and Schedule-Free's
    γ_max, Σw handed from one to the other each time), reload the state and replace a state
    tensor halfway: bit for bit the chain throughout."""

    seen = set()

    def each(t, params, opt):
        seen.update(fast.last_path(opt).values())  # the previous step's path
        opt.fused = None if t % 3 else False
        if t == 50:
            opt.load_state_dict(opt.state_dict())
        if t == 60:
            opt.state[params[0]][slot] = opt.state[params[0]][slot].clone()

    a, opt = run(lambda ps: D.from_spec(spec, ps, fused=None), torch.float64, each=each)
    b, ref = run(lambda ps: D.from_spec(spec, ps, fused=False), torch.float64)
    assert seen == {"fast", "default: fused=False"}
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    _state_equal(opt, ref)
