"""Every validation rule of descend.optim (a ValueError naming the parameter, the value and the
accepted range), and the non-finite gradient policies."""

from __future__ import annotations

import copy
import io
import math
import warnings

import pytest
import torch

import descend.optim as D

ALL = [D.SGD, D.Adagrad, D.RMSprop, D.Adam, D.AdamW, D.AMSGrad, D.NAdam]
ALL_IDS = [c.__name__ for c in ALL]


def _p() -> list[torch.Tensor]:
    return [torch.zeros(3, requires_grad=True)]


# ------------------------------ numbers ---------------------------------------------------------


@pytest.mark.parametrize("cls", ALL, ids=ALL_IDS)
@pytest.mark.parametrize("name", ["lr", "weight_decay"])
def test_negative_lr_and_weight_decay_are_rejected(cls: type, name: str) -> None:
    with pytest.raises(ValueError, match=rf"{name}=-0\.5 is invalid: it must be finite and ≥ 0"):
        cls(_p(), **{name: -0.5})


@pytest.mark.parametrize("cls", [D.Adagrad, D.RMSprop, D.Adam, D.AdamW, D.AMSGrad, D.NAdam])
def test_negative_eps_is_rejected(cls: type) -> None:
    with pytest.raises(ValueError, match=r"eps=-1e-08 is invalid: it must be finite and ≥ 0"):
        cls(_p(), eps=-1e-8)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_nan_and_infinite_lr_are_rejected(value: float) -> None:
    with pytest.raises(ValueError, match="lr"):
        D.Adam(_p(), lr=value)


@pytest.mark.parametrize(
    "cls, kw, name",
    [
        (D.Adagrad, dict(lr_decay=-0.1), "lr_decay"),
        (D.Adagrad, dict(initial_accumulator_value=-1.0), "initial_accumulator_value"),
        (D.NAdam, dict(momentum_decay=-0.1), "momentum_decay"),
        (D.RMSprop, dict(initial_accumulator_value=-1.0), "initial_accumulator_value"),
    ],
)
def test_other_non_negative_numbers(cls: type, kw: dict, name: str) -> None:
    with pytest.raises(ValueError, match=rf"{name}=-[0-9.]+ is invalid: it must be finite and ≥ 0"):
        cls(_p(), **kw)


@pytest.mark.parametrize(
    "cls, kw, name",
    [
        (D.SGD, dict(momentum=1.5), "momentum"),
        (D.SGD, dict(momentum=-0.1), "momentum"),
        (D.RMSprop, dict(momentum=-0.5), "momentum"),
        (D.RMSprop, dict(alpha=1.01), "alpha"),
        (D.Adam, dict(betas=(1.2, 0.999)), r"beta1 \(betas\[0\]\)"),
        (D.Adam, dict(betas=(0.9, -0.1)), r"beta2 \(betas\[1\]\)"),
        (D.NAdam, dict(betas=(0.9, 2.0)), r"beta2 \(betas\[1\]\)"),
    ],
)
def test_decay_rates_outside_0_1_are_rejected(cls: type, kw: dict, name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name}=.* is invalid: it must be in \[0, 1\)$"):
        cls(_p(), **kw)


@pytest.mark.parametrize(
    "cls, kw",
    [
        (D.SGD, dict(momentum=1.0)),
        (D.RMSprop, dict(alpha=1.0)),
        (D.RMSprop, dict(momentum=1.0)),
        (D.Adam, dict(betas=(0.9, 1.0))),
        (D.AdamW, dict(betas=(1.0, 1.0))),
    ],
)
def test_a_decay_rate_of_one_is_rejected_with_the_reason(cls: type, kw: dict) -> None:
    with pytest.raises(ValueError, match=r"must be in \[0, 1\)\. .*never forgets"):
        cls(_p(), **kw)


def test_dampening_must_be_in_0_1() -> None:
    with pytest.raises(ValueError, match=r"dampening=1\.5 is invalid: it must be in \[0, 1\]"):
        D.SGD(_p(), momentum=0.9, dampening=1.5)
    D.SGD(_p(), momentum=0.9, dampening=1.0)  # closed interval: 1 is allowed (torch too)


@pytest.mark.parametrize("name", ["max_grad_norm", "clip_value"])
@pytest.mark.parametrize("value", [0.0, -1.0])
def test_clipping_thresholds_must_be_positive(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"{name}={value!r} is invalid: it must be > 0"):
        D.Adam(_p(), **{name: value})


def test_non_numbers_and_non_flags_are_rejected() -> None:
    with pytest.raises(ValueError, match="lr must be a number, got '0.1'"):
        D.SGD(_p(), lr="0.1")
    with pytest.raises(ValueError, match="amsgrad must be True or False, got 'yes'"):
        D.Adam(_p(), amsgrad="yes")
    with pytest.raises(ValueError, match="betas must be a pair"):
        D.Adam(_p(), betas=(0.9,))


# ------------------------------ combinations ----------------------------------------------------


@pytest.mark.parametrize("kw", [dict(momentum=0.0), dict(momentum=0.9, dampening=0.1)])
def test_nesterov_needs_momentum_and_no_dampening(kw: dict) -> None:
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0 and dampening = 0"):
        D.SGD(_p(), nesterov=True, **kw)


def test_rmsprop_nesterov_needs_momentum() -> None:
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        D.RMSprop(_p(), nesterov=True)


def test_contradictory_weight_decay_switches() -> None:
    with pytest.raises(ValueError, match="decoupled_weight_decay=True contradicts"):
        D.Adam(_p(), decoupled_weight_decay=True, weight_decay_mode="l2")


def test_amsgrad_class_refuses_amsgrad_false() -> None:
    with pytest.raises(ValueError, match="AMSGrad always has amsgrad=True"):
        D.AMSGrad(_p(), amsgrad=False)


def test_unsupported_torch_flags_are_refused() -> None:
    with pytest.raises(ValueError, match="differentiable=True"):
        D.Adam(_p(), differentiable=True)


# ------------------------------ names -----------------------------------------------------------


@pytest.mark.parametrize(
    "cls, name, value, listed",
    [
        (D.Adam, "convention", "pytorch", "torch, keras, optax"),
        (D.SGD, "convention", "jax", "torch, keras, optax"),
        (D.SGD, "momentum_form", "classic", "modern, ema, lr_inside"),
        (D.RMSprop, "momentum_form", "x", "modern, ema, lr_inside"),
        (D.Adam, "eps_placement", "middle", "outside, inside, hat"),
        (D.RMSprop, "eps_placement", "hat", "outside, inside"),
        (D.Adagrad, "eps_placement", "under", "outside, inside"),
        (D.Adam, "weight_decay_mode", "adamw", "l2, decoupled, independent"),
        (D.Adam, "amsgrad_of", "max", "raw, corrected"),
        (D.NAdam, "schedule", "cosine", "torch, keras, none"),
        (D.SGD, "nonfinite", "ignore", "propagate, skip, raise"),
    ],
)
def test_unknown_names_list_the_valid_ones(cls: type, name: str, value: str, listed: str) -> None:
    with pytest.raises(ValueError) as info:
        cls(_p(), **{name: value})
    message = str(info.value)
    assert f"{name}={value!r}" in message and listed in message


@pytest.mark.parametrize("cls", [D.Adam, D.AdamW, D.NAdam])
def test_swapped_betas_warn(cls: type) -> None:
    with pytest.warns(UserWarning, match="swapped"):
        cls(_p(), betas=(0.999, 0.9))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cls(_p(), betas=(0.9, 0.999))  # the usual order: no warning


# ------------------------------ groups ----------------------------------------------------------


@pytest.mark.parametrize(
    "group",
    [
        {"lr": -1.0},
        {"betas": (0.9, 1.0)},
        {"eps_placement": "nowhere"},
        {"weight_decay": -0.1},
    ],
)
def test_a_rejected_param_group_leaves_the_optimizer_unchanged(group: dict) -> None:
    p, q = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    opt = D.Adam([p], lr=0.1)
    before = copy.deepcopy(opt.state_dict())
    with pytest.raises(ValueError):
        opt.add_param_group({"params": [q], **group})
    assert opt.state_dict() == before
    assert len(opt.param_groups) == 1
    opt.add_param_group({"params": [q]})  # q is not half-registered: it can still be added
    assert len(opt.param_groups) == 2


def test_an_invalid_group_at_construction_is_rejected() -> None:
    with pytest.raises(ValueError, match="momentum=2"):
        D.SGD([{"params": _p()}, {"params": _p(), "momentum": 2}], lr=0.1)


# ------------------------------ non-finite gradients --------------------------------------------


def _two_groups(nonfinite: str, cls=D.Adam, **kw):
    p = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    q = torch.tensor([-1.0, 0.5], requires_grad=True)
    opt = cls([{"params": [p]}, {"params": [q], "lr": 0.01}], lr=0.1, nonfinite=nonfinite, **kw)
    for _ in range(3):  # some state first
        p.grad, q.grad = torch.tensor([0.1, -0.2, 0.3]), torch.tensor([0.5, -0.5])
        opt.step()
    return opt, p, q


def _snapshot(opt) -> tuple[list[torch.Tensor], dict]:
    params = [p.detach().clone() for g in opt.param_groups for p in g["params"]]
    return params, copy.deepcopy(opt.state_dict()["state"])


def _same(a: tuple, b: tuple) -> bool:
    (pa, sa), (pb, sb) = a, b
    if not all(torch.equal(x, y) for x, y in zip(pa, pb)) or sa.keys() != sb.keys():
        return False
    for k in sa:
        if isinstance(sa[k], dict):
            if sa[k].keys() != sb[k].keys():
                return False
            for key in sa[k]:
                x, y = sa[k][key], sb[k][key]
                if isinstance(x, torch.Tensor) and not torch.equal(x, y):
                    return False
        elif sa[k] != sb[k]:
            return False
    return True


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize(
    "cls, kw",
    [
        (D.Adam, {}),
        (D.SGD, dict(momentum=0.9)),
        (D.RMSprop, dict(centered=True)),
        (D.NAdam, {}),
        (D.Adagrad, {}),
    ],
    ids=["adam", "momentum", "rmsprop", "nadam", "adagrad"],
)
def test_skip_leaves_params_and_state_untouched(cls: type, kw: dict, bad: float) -> None:
    opt, p, q = _two_groups("skip", cls, **kw)
    before = _snapshot(opt)
    p.grad = torch.tensor([0.1, -0.2, 0.3])  # the finite group is skipped too
    q.grad = torch.tensor([bad, 1.0])
    opt.step()
    assert opt.skipped_steps == 1 and opt.state["skipped_steps"] == 1
    after = _snapshot(opt)
    after[1].pop("skipped_steps")
    assert _same(before, after)
    opt.step()
    assert opt.skipped_steps == 2
    # a finite step afterwards proceeds as usual
    q.grad = torch.tensor([0.5, -0.5])
    opt.step()
    assert not torch.equal(p.detach(), before[0][0])


def test_skipped_steps_survive_a_state_dict_round_trip() -> None:
    opt, p, q = _two_groups("skip")
    q.grad = torch.tensor([math.nan, 1.0])
    opt.step()
    opt.step()
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    fresh = D.Adam([{"params": [p]}, {"params": [q], "lr": 0.01}], lr=0.1, nonfinite="skip")
    assert fresh.skipped_steps == 0
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert fresh.skipped_steps == 2


def test_raise_raises_and_changes_nothing() -> None:
    opt, p, q = _two_groups("raise")
    before = _snapshot(opt)
    q.grad = torch.tensor([math.inf, 1.0])
    with pytest.raises(FloatingPointError, match="non-finite gradient"):
        opt.step()
    assert _same(before, _snapshot(opt))
    assert "skipped_steps" not in opt.state


def test_propagate_gives_nan_params_like_torch() -> None:
    ours = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    theirs = ours.detach().clone().requires_grad_()
    a = D.Adam([ours], lr=0.1)  # nonfinite="propagate" is the default
    b = torch.optim.Adam([theirs], lr=0.1)
    for opt, p in ((a, ours), (b, theirs)):
        p.grad = torch.tensor([0.1, math.nan, 0.3])
        opt.step()
    assert torch.isnan(ours[1]) and torch.isnan(theirs[1])
    torch.testing.assert_close(ours.detach(), theirs.detach(), equal_nan=True)
    assert a.skipped_steps == 0


def test_a_group_cannot_change_the_convention() -> None:
    """The convention resolves every default at construction: a group that says "keras" would
    otherwise silently run with torch's ε and placement."""
    p, q = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="convention='keras' in a param group"):
        D.Adam([{"params": [p]}, {"params": [q], "convention": "keras"}])
    opt = D.Adam([p], convention="keras")
    opt.add_param_group({"params": [q], "convention": "keras"})  # the same one is fine
    assert opt.param_groups[1]["eps"] == 1e-7


@pytest.mark.parametrize("form", ["ema", "lr_inside"])
def test_dampening_only_with_the_modern_form(form: str) -> None:
    with pytest.raises(ValueError, match=rf"dampening=0\.5 with momentum_form='{form}'"):
        D.SGD(_p(), momentum=0.9, dampening=0.5, momentum_form=form)
    with pytest.raises(ValueError, match="dampening"):
        D.SGD(_p(), momentum=0.9, dampening=0.5, convention="keras")
    D.SGD(_p(), momentum=0.9, momentum_form=form)  # dampening 0 is fine


def test_hat_eps_with_corrected_amsgrad_max_is_rejected():
    """The ε̂ form divides by the raw √v; a max over v̂ has nowhere to go, so the combination
    is refused (it used to be accepted and silently ignored the max)."""
    import torch

    from descend.optim import Adam
    from descend.transforms import scale_by_adam

    w = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(ValueError, match="amsgrad_of='corrected'"):
        Adam(w, amsgrad=True, eps_placement="hat", amsgrad_of="corrected")
    with pytest.raises(ValueError, match="amsgrad_of='corrected'"):
        scale_by_adam(eps_placement="hat", amsgrad=True, amsgrad_of="corrected")
    # the conventions themselves stay valid: Keras' hat form with its raw max, optax's outside
    Adam(w, amsgrad=True, convention="keras")
    Adam(w, amsgrad=True, convention="optax")
