"""Optimizer state: resuming from a state dict, loading torch.optim's state dicts, and the
torch machinery descend's optimizers plug into (closures, add_param_group, zero_grad, step
hooks, lr schedulers)."""

from __future__ import annotations

import copy
import io

import pytest
import torch

import descend.optim as D
from descend.optim.fast import last_path as fast_last_path

F64 = torch.float64
SHAPES = [(4,), (2, 3), ()]


def make_params(seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    targets = [torch.randn(s, generator=g, dtype=F64) for s in SHAPES]
    params = [
        (c + torch.randn(s, generator=g, dtype=F64)).requires_grad_()
        for c, s in zip(targets, SHAPES)
    ]
    return params, targets


def set_grads(params, targets, step: int) -> None:
    """∇ of Σ ¼(p − c)⁴ + ½(p − c)² + 0.3·p·sin(3p), plus a step-dependent wobble."""
    with torch.no_grad():
        for p, c in zip(params, targets):
            d = p - c
            wobble = 0.1 * torch.cos(torch.tensor(0.7 * step, dtype=F64))
            p.grad = d**3 + d + 0.3 * torch.sin(3 * p) + 0.9 * p * torch.cos(3 * p) + wobble


def groups(params: list[torch.Tensor], second: dict) -> list[dict]:
    return [{"params": params[:2]}, {"params": params[2:], **second}]


# name → (class, keywords, second group's overrides)
OPTIMIZERS = {
    "sgd": (D.SGD, dict(lr=0.01), dict(lr=0.02)),
    "momentum": (D.SGD, dict(lr=0.01, momentum=0.9, dampening=0.1), dict(momentum=0.5)),
    "nesterov": (D.SGD, dict(lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.01), {}),
    "momentum-ema": (D.SGD, dict(lr=0.05, momentum=0.9, momentum_form="ema", debias=True), {}),
    "sgd-keras": (D.SGD, dict(lr=0.01, momentum=0.9, convention="keras", weight_decay=0.1), {}),
    "adagrad": (
        D.Adagrad,
        dict(lr=0.05, lr_decay=0.01, initial_accumulator_value=0.1),
        dict(lr=0.1),
    ),
    "rmsprop": (D.RMSprop, dict(lr=0.003, centered=True, momentum=0.5), dict(alpha=0.9)),
    "rmsprop-optax": (D.RMSprop, dict(lr=0.003, momentum=0.9, convention="optax"), {}),
    "adam": (D.Adam, dict(lr=0.01, weight_decay=0.01), dict(betas=(0.8, 0.99))),
    "adam-keras": (D.Adam, dict(lr=0.01, convention="keras", amsgrad=True), {}),
    "adamw": (D.AdamW, dict(lr=0.01), dict(weight_decay=0.1)),
    "amsgrad": (D.AMSGrad, dict(lr=0.01, convention="optax"), dict(lr=0.003)),
    "nadam": (
        D.NAdam,
        dict(lr=0.01, decoupled_weight_decay=True, weight_decay=0.01),
        dict(momentum_decay=0.01),
    ),
    "nadam-keras": (D.NAdam, dict(lr=0.01, convention="keras"), {}),
    "clipped-skip": (
        D.Adam,
        dict(lr=0.01, max_grad_norm=1.0, clip_value=2.0, nonfinite="skip"),
        {},
    ),
}


def _roundtrip(obj):
    """Through torch.save / torch.load, as a checkpoint would go."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_resume_from_a_state_dict_is_bitwise_identical(name: str) -> None:
    cls, kw, second = OPTIMIZERS[name]
    params, targets = make_params()
    opt = cls(groups(params, second), **kw)
    uninterrupted, saved = [], None
    for step in range(1, 101):
        set_grads(params, targets, step)
        opt.step()
        if step == 50:
            saved = (_roundtrip(opt.state_dict()), [p.detach().clone() for p in params])
        if step > 50:
            uninterrupted.append([p.detach().clone() for p in params])

    state, values = saved
    fresh = [v.clone().requires_grad_() for v in copy.deepcopy(values)]
    resumed_opt = cls(groups(fresh, second), **kw)
    resumed_opt.load_state_dict(state)
    for step in range(51, 101):
        set_grads(fresh, targets, step)
        resumed_opt.step()
        for a, b in zip(fresh, uninterrupted[step - 51]):
            assert torch.equal(a.detach(), b), f"{name}: step {step} differs"
    assert (uninterrupted[-1][0] - values[0]).abs().max() > 1e-3  # it kept moving


# torch.optim class, descend class, shared keywords (torch convention)
MIGRATIONS = {
    "sgd-momentum": (torch.optim.SGD, D.SGD, dict(lr=0.01, momentum=0.9, dampening=0.2)),
    "sgd-nesterov": (
        torch.optim.SGD,
        D.SGD,
        dict(lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.05),
    ),
    "adagrad": (
        torch.optim.Adagrad,
        D.Adagrad,
        dict(lr=0.05, lr_decay=0.01, initial_accumulator_value=0.2),
    ),
    "rmsprop": (torch.optim.RMSprop, D.RMSprop, dict(lr=0.003, momentum=0.5, centered=True)),
    "adam": (torch.optim.Adam, D.Adam, dict(lr=0.01, amsgrad=True, weight_decay=0.01)),
    "adamw": (torch.optim.AdamW, D.AdamW, dict(lr=0.01, weight_decay=0.1)),
    "nadam": (
        torch.optim.NAdam,
        D.NAdam,
        dict(lr=0.01, weight_decay=0.01, decoupled_weight_decay=True),
    ),
}


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "chain"])
@pytest.mark.parametrize("name", list(MIGRATIONS))
def test_a_torch_state_dict_loads_and_continues_like_torch(name: str, fused: bool) -> None:
    torch_cls, ours_cls, kw = MIGRATIONS[name]
    params, targets = make_params()
    ref = torch_cls(groups(params, dict(lr=kw["lr"] / 2)), **kw)
    for step in range(1, 51):
        set_grads(params, targets, step)
        ref.step()
    state = _roundtrip(ref.state_dict())
    mine = [p.detach().clone().requires_grad_() for p in params]
    cold = [p.detach().clone().requires_grad_() for p in params]
    ours = ours_cls(groups(mine, {}), **kw, fused=fused)  # the loaded groups: the halved lr
    ours.load_state_dict(state)
    assert ours.param_groups[1]["lr"] == kw["lr"] / 2
    for step in range(51, 101):
        set_grads(params, targets, step)
        ref.step()
        set_grads(mine, targets, step)
        ours.step()
    path = "fast" if fused else "default: fused=False"
    assert fast_last_path(ours) == {0: path, 1: path}
    for a, b in zip(mine, params):
        assert (a.detach() - b.detach()).abs().max().item() <= 1e-10
    # the continuation used the migrated state: from the same point with fresh state it differs
    cold_opt = ours_cls(groups(cold, dict(lr=kw["lr"] / 2)), **kw)
    for step in range(51, 101):
        set_grads(cold, targets, step)
        cold_opt.step()
    assert max((a - b).abs().max().item() for a, b in zip(cold, params)) > 1e-6


STATE_KEYS = [
    (D.SGD, dict(momentum=0.9), {"step", "momentum_buffer"}),
    (D.Adam, dict(amsgrad=True), {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}),
    (
        D.RMSprop,
        dict(momentum=0.5, centered=True),
        {"step", "square_avg", "grad_avg", "momentum_buffer"},
    ),
    (D.Adagrad, {}, {"step", "sum"}),
    (D.NAdam, {}, {"step", "exp_avg", "exp_avg_sq", "mu_product"}),
]


@pytest.mark.parametrize("cls, kw, keys", STATE_KEYS, ids=lambda x: getattr(x, "__name__", ""))
def test_state_uses_torchs_key_names(cls: type, kw: dict, keys: set) -> None:
    p = torch.zeros(3, requires_grad=True)
    opt = cls([p], **kw)
    p.grad = torch.ones(3)
    opt.step()
    assert set(opt.state[p]) == keys


# ------------------------------ torch machinery -------------------------------------------------


def test_closure_is_called_once_and_its_loss_returned() -> None:
    p = torch.tensor([1.0, -2.0], requires_grad=True)
    opt = D.Adam([p], lr=0.1)
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert len(calls) == 1 and loss.item() == pytest.approx(5.0)
    # Adam's first step moves every coordinate by lr·sign(g)
    torch.testing.assert_close(p.detach(), torch.tensor([0.9, -1.9]))


def test_zero_grad_sets_grads_to_none_or_zero() -> None:
    p = torch.ones(2, requires_grad=True)
    opt = D.SGD([p], lr=0.1)
    p.grad = torch.ones(2)
    opt.zero_grad()
    assert p.grad is None
    p.grad = torch.ones(2)
    opt.zero_grad(set_to_none=False)
    assert torch.equal(p.grad, torch.zeros(2))
    opt.step()  # a zero gradient: plain SGD does not move
    assert torch.equal(p.detach(), torch.ones(2))


def test_params_without_grad_are_left_alone() -> None:
    p, q = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    opt = D.Adam([p, q], lr=0.1)
    p.grad = torch.ones(2)
    opt.step()
    assert torch.equal(q.detach(), torch.ones(2)) and q not in opt.state
    assert not torch.equal(p.detach(), torch.ones(2))


def test_add_param_group_uses_defaults_and_its_own_values() -> None:
    p, q = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    opt = D.SGD([p], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": [q], "lr": 0.01})
    assert opt.param_groups[1]["momentum"] == 0.9 and opt.param_groups[1]["lr"] == 0.01
    p.grad, q.grad = torch.ones(2), torch.ones(2)
    opt.step()
    torch.testing.assert_close(p.detach(), torch.full((2,), 0.9))
    torch.testing.assert_close(q.detach(), torch.full((2,), 0.99))


def test_add_param_group_rejects_a_parameter_already_present() -> None:
    p = torch.ones(2, requires_grad=True)
    opt = D.Adam([p])
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [p]})
    assert len(opt.param_groups) == 1


def test_step_pre_and_post_hooks_run_around_the_update() -> None:
    p = torch.ones(1, requires_grad=True)
    opt = D.SGD([p], lr=0.5)
    seen = []
    pre = opt.register_step_pre_hook(lambda o, a, k: seen.append(("pre", p.item())))
    post = opt.register_step_post_hook(lambda o, a, k: seen.append(("post", p.item())))
    p.grad = torch.ones(1)
    opt.step()
    assert seen == [("pre", 1.0), ("post", 0.5)]
    pre.remove()
    post.remove()
    opt.step()
    assert len(seen) == 2


# ------------------------------ lr schedulers ---------------------------------------------------


def _schedule_run(cls, kw, make_scheduler, steps=100, **extra):
    params, targets = make_params()
    opt = cls(groups(params, dict(lr=kw["lr"] / 2)), **kw, **extra)
    sched = make_scheduler(opt)
    seen = []
    for step in range(1, steps + 1):
        set_grads(params, targets, step)
        opt.step()
        sched.step()
        group = opt.param_groups[0]
        seen.append((group["lr"], group.get("momentum"), group.get("betas")))
    if extra:
        path = "fast" if extra["fused"] else "default: fused=False"
        assert fast_last_path(opt) == {0: path, 1: path}
    return [p.detach() for p in params], seen


SCHEDULES = {
    "steplr-sgd": (
        torch.optim.SGD,
        D.SGD,
        dict(lr=0.01, momentum=0.9),
        lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=20, gamma=0.5),
    ),
    "steplr-adam": (
        torch.optim.Adam,
        D.Adam,
        dict(lr=0.01),
        lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=30, gamma=0.3),
    ),
    "onecycle-sgd": (
        torch.optim.SGD,
        D.SGD,
        dict(lr=0.01, momentum=0.9, nesterov=True),
        lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.02, total_steps=100),
    ),
    "onecycle-adam": (
        torch.optim.Adam,
        D.Adam,
        dict(lr=0.01),
        lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.02, total_steps=100),
    ),
    "onecycle-nadam": (
        torch.optim.NAdam,
        D.NAdam,
        dict(lr=0.01),
        lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.02, total_steps=100),
    ),
}


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "chain"])
@pytest.mark.parametrize("name", list(SCHEDULES))
def test_torch_lr_schedulers_drive_descend_like_torch(name: str, fused: bool) -> None:
    torch_cls, ours_cls, kw, make = SCHEDULES[name]
    ours, our_seen = _schedule_run(ours_cls, kw, make, fused=fused)
    ref, ref_seen = _schedule_run(torch_cls, kw, make)
    assert our_seen == ref_seen
    lrs = {s[0] for s in our_seen}
    assert len(lrs) > 2  # the schedule did change the lr
    if name.startswith("onecycle"):
        cycled = {s[1] for s in our_seen} if "sgd" in name else {s[2][0] for s in our_seen}
        assert len(cycled) > 2  # momentum / β₁ were cycled too
    for a, b in zip(ours, ref):
        assert (a - b).abs().max().item() <= 1e-10


# ------------------------------ trace hook ------------------------------------------------------


def test_adam_trace_records_equal_hand_computations() -> None:
    params, targets = make_params()
    lrs, (b1, b2), eps = (0.01, 0.004), (0.8, 0.95), 1e-3
    opt = D.Adam(groups(params, dict(lr=lrs[1])), lr=lrs[0], betas=(b1, b2), eps=eps)
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    with D.tracing(opt) as records:
        for step in range(1, 21):
            set_grads(params, targets, step)
            grads = [p.grad.clone() for p in params]
            old = [p.detach().clone() for p in params]
            opt.step()
            for gi, idx in enumerate(([0, 1], [2])):
                rec = records[-2 + gi]
                assert rec["group"] == gi and rec["step"] == step
                for k, i in enumerate(idx):
                    g = grads[i]
                    m[i] = b1 * m[i] + (1 - b1) * g
                    v[i] = b2 * v[i] + (1 - b2) * g * g
                    m_hat, v_hat = m[i] / (1 - b1**step), v[i] / (1 - b2**step)
                    lr_eff = lrs[gi] / ((1 - b1**step) * (v_hat.sqrt() + eps))
                    update = lrs[gi] * m_hat / (v_hat.sqrt() + eps)
                    expected = dict(
                        grad=g,
                        m=m[i],
                        v=v[i],
                        m_hat=m_hat,
                        v_hat=v_hat,
                        lr_eff=lr_eff,
                        update=update,
                        param=old[i] - update,
                    )
                    for key, value in expected.items():
                        torch.testing.assert_close(
                            rec[key][k], value, rtol=1e-12, atol=1e-14, msg=f"{key} step {step}"
                        )
                    torch.testing.assert_close(rec["lr_eff"][k] * m[i], update)
    assert len(records) == 40
    set_grads(params, targets, 21)
    opt.step()  # the hook is gone after the with-block
    assert len(records) == 40 and not opt._trace_hooks


def test_trace_update_includes_decoupled_decay() -> None:
    """AdamW shrinks θ in place; the recorded update is still the whole step θ_old − θ_new."""
    params, targets = make_params()
    opt = D.AdamW(params, lr=0.05, weight_decay=0.5)
    with D.tracing(opt) as records:
        for step in range(1, 6):
            set_grads(params, targets, step)
            old = [p.detach().clone() for p in params]
            opt.step()
            for k, p in enumerate(params):
                torch.testing.assert_close(records[-1]["update"][k], old[k] - p.detach())
                torch.testing.assert_close(records[-1]["param"][k], p.detach())


def test_copies_and_pickles_keep_descend_switches_and_free_chains() -> None:
    """torch's Optimizer pickles only defaults, state and groups: descend's ``nonfinite`` and
    ``fused`` (and a ``from_chain`` optimizer's chain) must survive copy.deepcopy and pickle,
    and the copy must then step exactly as the original."""
    import pickle

    from descend.transforms import scale_by_adam, scale_by_lr

    p = torch.randn(5, requires_grad=True)
    opt = D.Adam([p], lr=0.1, fused=False, nonfinite="skip")
    p.grad = torch.ones(5)
    opt.step()
    for copy_of in (copy.deepcopy, lambda o: pickle.loads(pickle.dumps(o))):
        twin = copy_of(opt)
        assert (twin.fused, twin.nonfinite) == (False, "skip")
    chained = D.from_chain(
        [torch.randn(4, requires_grad=True)],
        scale_by_adam(),
        scale_by_lr(),
        lr=1e-2,
        betas=(0.9, 0.999),
        eps=1e-8,
    )
    twin = copy.deepcopy(chained)
    for o in (chained, twin):
        for t in range(3):
            o.param_groups[0]["params"][0].grad = torch.full((4,), float(t + 1))
            o.step()
    a, b = chained.param_groups[0]["params"][0], twin.param_groups[0]["params"][0]
    assert torch.equal(a, b) and not torch.equal(a, torch.zeros(4))
