"""Schedules against torch.optim.lr_scheduler, and composition / skipping / resume by hand."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler as tsched

import descend.optim
from descend import schedules as S

STEPS = 300
LRS = (0.1, 0.03)  # two groups: the schedule must keep their ratio


def _params(n: int) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.zeros(3)) for _ in range(n)]


def _sgd(lrs=LRS) -> tuple[torch.optim.SGD, list[torch.nn.Parameter]]:
    params = _params(len(lrs))
    groups = [{"params": [p], "lr": lr} for p, lr in zip(params, lrs)]
    return torch.optim.SGD(groups), params


def _one_step(opt: torch.optim.Optimizer, params, grad: float = 1.0) -> None:
    for p in params:
        p.grad = torch.full_like(p, grad)
    opt.step()


def torch_lrs(make, steps: int = STEPS, lrs=LRS) -> np.ndarray:
    opt, params = _sgd(lrs)
    scheduler = make(opt)
    seen = []
    for _ in range(steps):
        seen.append([g["lr"] for g in opt.param_groups])
        _one_step(opt, params)
        scheduler.step()
    return np.array(seen)


def descend_lrs(schedule, steps: int = STEPS, lrs=LRS) -> np.ndarray:
    opt, params = _sgd(lrs)
    handle = S.attach(opt, schedule)
    seen = []
    for _ in range(steps):
        seen.append(handle.lrs())
        _one_step(opt, params)
    return np.array(seen)


PARITY = {
    "step": (lambda o: tsched.StepLR(o, step_size=30, gamma=0.5), S.step(30, gamma=0.5)),
    "multistep": (
        lambda o: tsched.MultiStepLR(o, milestones=[50, 120, 200], gamma=0.3),
        S.multistep([50, 120, 200], gamma=0.3),
    ),
    "exponential": (lambda o: tsched.ExponentialLR(o, gamma=0.99), S.exponential(0.99)),
    "exponential-grow": (lambda o: tsched.ExponentialLR(o, gamma=1.02), S.exponential(1.02)),
    "cosine": (lambda o: tsched.CosineAnnealingLR(o, T_max=STEPS), S.cosine(STEPS)),
    "restarts": (
        lambda o: tsched.CosineAnnealingWarmRestarts(o, T_0=20, T_mult=2),
        S.cosine_restarts(20, mult=2),
    ),
    "restarts-mult1": (
        lambda o: tsched.CosineAnnealingWarmRestarts(o, T_0=37),
        S.cosine_restarts(37),
    ),
    "linear": (
        lambda o: tsched.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=40),
        S.linear_warmup(40, start=0.1),
    ),
    "polynomial": (
        lambda o: tsched.PolynomialLR(o, total_iters=250, power=2.0),
        S.polynomial(250, power=2.0),
    ),
    "one_cycle": (
        lambda o: tsched.OneCycleLR(o, max_lr=list(LRS), total_steps=STEPS, cycle_momentum=False),
        S.one_cycle(STEPS),
    ),
    "one_cycle-3phase-linear": (
        lambda o: tsched.OneCycleLR(
            o,
            max_lr=list(LRS),
            total_steps=STEPS,
            pct_start=0.25,
            anneal_strategy="linear",
            div_factor=10.0,
            final_div_factor=100.0,
            three_phase=True,
            cycle_momentum=False,
        ),
        S.one_cycle(
            STEPS,
            pct_start=0.25,
            anneal="linear",
            div_factor=10,
            final_div_factor=100,
            three_phase=True,
        ),
    ),
}


@pytest.mark.parametrize("name", list(PARITY))
def test_parity_with_torch_schedulers(name: str) -> None:
    make, schedule = PARITY[name]
    theirs, ours = torch_lrs(make), descend_lrs(schedule)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)
    live = ours[:, 0] > 0
    np.testing.assert_allclose(ours[live, 1] / ours[live, 0], LRS[1] / LRS[0], rtol=1e-12)


def test_cosine_with_floor_matches_torch_eta_min() -> None:
    # torch's eta_min is absolute, so compare on one group: final = eta_min / base lr
    theirs = torch_lrs(lambda o: tsched.CosineAnnealingLR(o, T_max=STEPS, eta_min=0.002), lrs=[0.1])
    ours = descend_lrs(S.cosine(STEPS, final=0.02), lrs=[0.1])
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)


def _plateau_metrics(n: int, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    # improving, then noisy plateaus at a few levels: plenty of cuts and cooldowns
    level = np.repeat([5.0, 4.0, 3.9995, 3.5, 3.5, 3.2], n // 6 + 1)[:n]
    return list(level + np.linspace(1.0, 0.0, n) * 0.1 + rng.normal(0, 0.02, n) * (level < 4))


@pytest.mark.parametrize(
    "config",
    [
        dict(mode="min", factor=0.5, patience=3, threshold=1e-3, threshold_mode="rel", cooldown=2),
        dict(mode="min", factor=0.3, patience=0, threshold=0.01, threshold_mode="abs", cooldown=0),
        dict(mode="max", factor=0.7, patience=5, threshold=1e-4, threshold_mode="rel", cooldown=1),
        dict(mode="max", factor=0.5, patience=2, threshold=0.05, threshold_mode="abs", cooldown=0),
    ],
)
def test_plateau_matches_torch_reduce_lr_on_plateau(config: dict) -> None:
    metrics = _plateau_metrics(STEPS)
    if config["mode"] == "max":
        metrics = [-m for m in metrics]
    min_scale = 0.01
    opt_t, params_t = _sgd()
    theirs = tsched.ReduceLROnPlateau(opt_t, min_lr=[lr * min_scale for lr in LRS], **config)
    opt_d, params_d = _sgd()
    handle = S.attach(opt_d, S.constant(), plateau=S.ReduceOnPlateau(min_scale=min_scale, **config))
    torch_seq, ours_seq, cuts = [], [], 0
    for m in metrics:
        _one_step(opt_t, params_t)
        _one_step(opt_d, params_d)
        theirs.step(m)
        cuts += handle.report(m)
        torch_seq.append([g["lr"] for g in opt_t.param_groups])
        ours_seq.append(handle.lrs())
    np.testing.assert_allclose(ours_seq, torch_seq, rtol=1e-12, atol=0)
    assert cuts >= 3  # the comparison exercised real cuts


def test_warmup_cosine_by_hand() -> None:
    s = S.warmup_cosine(warmup=10, steps=110, final=0.1)
    assert s(0) == 0.0
    assert s(5) == pytest.approx(0.5, abs=1e-15)
    assert s(10) == pytest.approx(1.0, abs=1e-15)
    assert s(60) == pytest.approx(0.1 + 0.9 * 0.5, abs=1e-15)  # half-way: cos(π/2) = 0
    assert s(85) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.75)), abs=1e-15)
    assert s(110) == pytest.approx(0.1, abs=1e-15)
    assert s(500) == pytest.approx(0.1, abs=1e-15)  # held after the end
    # transformers' get_cosine_schedule_with_warmup (start = final = 0), written out; it is
    # defined up to the total number of steps (after that its cosine climbs again)
    hf = S.warmup_cosine(warmup=7, steps=50)
    for t in range(51):
        want = t / 7 if t < 7 else max(0.0, 0.5 * (1 + math.cos(math.pi * (t - 7) / 43)))
        assert hf(t) == pytest.approx(want, abs=1e-15)


def test_sequence_joins_with_own_clocks() -> None:
    seq = S.sequence([S.linear_warmup(4), S.constant(steps=6), S.cosine(10, final=0.5)])
    want = [0, 0.25, 0.5, 0.75] + [1.0] * 6
    want += [0.5 + 0.25 * (1 + math.cos(math.pi * k / 10)) for k in range(10)] + [0.5, 0.5]
    np.testing.assert_allclose(seq.values(22), want, rtol=0, atol=1e-15)
    explicit = S.sequence([S.exponential(0.5), S.constant()], boundaries=[3])
    assert explicit.values(5) == [1.0, 0.5, 0.25, 1.0, 1.0]


def test_warmup_cosine_with_plateau_cuts_by_hand() -> None:
    # base lr 0.2; warm-up 4 steps then cosine to 0 at step 24; a metric is reported after
    # every update; patience 1 means the second bad report in a row halves the scale.
    opt, params = _sgd([0.2])
    handle = S.attach(
        opt,
        S.warmup_cosine(warmup=4, steps=24),
        plateau=S.ReduceOnPlateau(factor=0.5, patience=1, threshold=0.0),
    )
    metrics = [10, 9, 9, 9, 8, 8, 8, 8, 7, 6, 6, 6, 6, 6, 6, 5, 4, 3, 3, 3]
    # report: 1 new best, 2 best, 3 bad(1), 4 bad(2) → cut, 5 best, 6 bad(1), 7 bad(2) → cut,
    # 8 bad(1), 9 best, 10 best, 11 bad(1), 12 cut, 13 bad(1), 14 cut, 15 bad(1), 16-18 best,
    # 19 bad(1), 20 cut.
    scale_after = [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.25, 0.125, 0.125]
    scale_after += [0.0625] * 6 + [0.03125]

    def warmup_cosine(t: int) -> float:
        return t / 4 if t < 4 else 0.5 * (1 + math.cos(math.pi * (t - 4) / 20))

    assert handle.lr() == 0.0
    for t, m in enumerate(metrics, start=1):
        _one_step(opt, params)
        handle.report(m)
        assert handle.lr() == pytest.approx(0.2 * warmup_cosine(t) * scale_after[t - 1], abs=1e-15)
    assert handle.step == len(metrics)


def test_skipped_steps_do_not_advance_the_schedule() -> None:
    params = _params(2)
    opt = descend.optim.SGD(
        [{"params": [params[0]], "lr": 0.1}, {"params": [params[1]], "lr": 0.05}],
        momentum=0.9,
        nonfinite="skip",
    )
    schedule = S.step(2, gamma=0.5)
    handle = S.attach(opt, schedule)
    bad = {2, 3, 7}  # iterations whose gradient is NaN
    real = 0
    for i in range(10):
        assert handle.lrs() == pytest.approx([0.1 * schedule(real), 0.05 * schedule(real)])
        _one_step(opt, params, grad=math.nan if i in bad else 1.0)
        real += i not in bad
    assert opt.skipped_steps == 3 and handle.step == real == 7
    assert handle.lr() == pytest.approx(0.1 * 0.5**3)


def _run(opt, params, handle, grads, metrics) -> list[list[float]]:
    seen = []
    for g, m in zip(grads, metrics):
        seen.append(handle.lrs())
        _one_step(opt, params, grad=g)
        if m is not None:
            handle.report(m)
    return seen


def _adam(params):
    groups = [{"params": [params[0]], "lr": 1e-2}, {"params": [params[1]], "lr": 3e-3}]
    return descend.optim.Adam(groups, nonfinite="skip")


def test_resume_gives_the_identical_sequence() -> None:
    n, cut_at = 300, 137
    rng = np.random.default_rng(1)
    grads = [math.nan if i % 41 == 5 else float(rng.normal()) for i in range(n)]
    metrics = [float(m) if i % 10 == 9 else None for i, m in enumerate(_plateau_metrics(n))]

    def build():
        params = _params(2)
        opt = _adam(params)
        schedule = S.from_spec("linear_warmup:warmup=30>cosine:final=0.05", total_steps=n)
        plateau = S.plateau_from_spec("plateau:patience=2,factor=0.5")
        return params, opt, S.attach(opt, schedule, plateau=plateau)

    params, opt, handle = build()
    straight = _run(opt, params, handle, grads, metrics)

    params, opt, handle = build()
    first = _run(opt, params, handle, grads[:cut_at], metrics[:cut_at])
    saved = copy.deepcopy(
        {"opt": opt.state_dict(), "sched": handle.state_dict(), "p": [p.detach() for p in params]}
    )
    params, opt, handle = build()  # fresh objects: lr and base lr back at the start
    with torch.no_grad():
        for p, q in zip(params, saved["p"]):
            p.copy_(q)
    opt.load_state_dict(saved["opt"])
    handle.load_state_dict(saved["sched"])
    rest = _run(opt, params, handle, grads[cut_at:], metrics[cut_at:])
    assert first + rest == straight  # exact, not approximate
    assert handle.plateau.scale < 1 and opt.skipped_steps > 0


def test_state_dict_refuses_another_schedule() -> None:
    opt, _ = _sgd()
    state = S.attach(opt, S.cosine(100)).state_dict()
    other, _ = _sgd()
    with pytest.raises(ValueError, match="cosine"):
        S.attach(other, S.cosine(200)).load_state_dict(state)


def test_base_lr_is_kept_in_the_group_and_detach_stops_updates() -> None:
    opt, params = _sgd()
    handle = S.attach(opt, S.exponential(0.5))
    _one_step(opt, params)
    assert [g[S.BASE_LR_KEY] for g in opt.param_groups] == list(LRS)
    assert handle.lrs() == pytest.approx([0.05, 0.015])
    handle.detach()
    _one_step(opt, params)
    assert handle.lrs() == pytest.approx([0.05, 0.015]) and handle.step == 1


def test_report_without_plateau_is_an_error() -> None:
    opt, _ = _sgd()
    with pytest.raises(ValueError, match="plateau"):
        S.attach(opt, "constant").report(1.0)


def test_from_spec_builds_the_same_schedules() -> None:
    assert S.from_spec("cosine:final=0.1,steps=1000") == S.cosine(1000, final=0.1)
    assert S.from_spec("cosine:final=0.1", total_steps=500) == S.cosine(500, final=0.1)
    assert S.from_spec("multistep:milestones=30/60/90,gamma=0.5") == S.multistep([30, 60, 90], 0.5)
    assert S.from_spec("multistep:milestones=30") == S.multistep([30])
    assert S.from_spec("one-cycle:three_phase=true", total_steps=100) == S.one_cycle(
        100, three_phase=True
    )
    seq = S.from_spec("linear_warmup:warmup=100>cosine", total_steps=1000)
    assert seq == S.sequence([S.linear_warmup(100), S.cosine(900)], boundaries=[100])
    assert seq.length == 1000
    assert S.from_spec("warmup_cosine:warmup=10", total_steps=50) == S.warmup_cosine(10, 50)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("cosin:steps=10", "unknown schedule 'cosin'; valid: constant, step, multistep"),
        ("cosine:stps=10", "unknown key 'stps' for cosine; valid: steps, final"),
        ("cosine", "cosine needs steps="),
        ("cosine:steps=0", "steps must be an integer >= 1, got 0"),
        ("cosine:steps=10,final=2", r"final must be in \[0, 1\], got 2"),
        ("step:step_size=2.5", "step_size must be an integer >= 1, got 2.5"),
        ("exponential:gamma=0", r"gamma must be in \(0, inf\)"),
        ("step:step_size=3>cosine:steps=3", "no length"),
        ("plateau:patience=3", "stateful"),
        ("one_cycle:steps=10,pct_start=0.05", "pct_start"),
        ("warmup_cosine:warmup=10,steps=10", r"warmup must be in \[0, steps\)"),
        ("multistep:milestones=60/30", "strictly increasing"),
        ("one_cycle:steps=100,anneal=cosine", "anneal must be one of 'cos', 'linear'"),
    ],
)
def test_bad_specs_name_the_problem(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        S.from_spec(spec)


def test_pure_functions_validate_arguments() -> None:
    with pytest.raises(ValueError, match="power"):
        S.polynomial(10, power=0)
    with pytest.raises(ValueError, match="mult"):
        S.cosine_restarts(10, mult=0)
    with pytest.raises(ValueError, match="start"):
        S.linear_warmup(10, start=-0.1)
    with pytest.raises(ValueError, match="factor"):
        S.ReduceOnPlateau(factor=1.0)
    with pytest.raises(ValueError, match="mode"):
        S.ReduceOnPlateau(mode="lowest")
    with pytest.raises(ValueError, match="t .*>= 0"):
        S.cosine(10)(-1)
    with pytest.raises(ValueError, match="plateau key"):
        S.plateau_from_spec("plateau:patient=3")


def test_scale_lr() -> None:
    assert S.scale_lr(0.1, batch=256, base_batch=64) == pytest.approx(0.4)
    assert S.scale_lr(1e-3, batch=256, base_batch=64, rule="sqrt") == pytest.approx(2e-3)
    assert S.scale_lr(0.1, batch=32, base_batch=128) == pytest.approx(0.025)
    with pytest.raises(ValueError, match="rule"):
        S.scale_lr(0.1, 2, 1, rule="cubic")
    with pytest.raises(ValueError, match="batch"):
        S.scale_lr(0.1, 0, 1)
    with pytest.raises(ValueError, match="lr"):
        S.scale_lr(-0.1, 2, 1)
