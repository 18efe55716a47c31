"""Optimizer specs (``name:key=value,…``), ``available()``, and weight-decay param groups."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import descend.optim as D
from descend.optim.registry import NOTES
from descend.optim.spec import REGISTRY, resolve_kwargs

NAMES = set(NOTES)


def _p() -> list[torch.Tensor]:
    return [torch.zeros(3, requires_grad=True)]


# ------------------------------ parse / from_spec -----------------------------------------------


def test_parse_spec_reads_name_and_typed_values() -> None:
    assert D.parse_spec("adam:lr=0.01,beta2=0.99") == ("adam", {"lr": 0.01, "beta2": 0.99})
    name, kw = D.parse_spec(
        " SGD : lr=1, momentum=0.9 , nesterov=true, weight_decay=0,"
        "momentum_form=lr_inside,max_grad_norm=none"
    )
    assert name == "sgd"
    assert kw == {
        "lr": 1,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 0,
        "momentum_form": "lr_inside",
        "max_grad_norm": None,
    }
    assert isinstance(kw["lr"], int) and kw["nesterov"] is True
    assert D.parse_spec("adam") == ("adam", {})
    assert D.parse_spec("adam:amsgrad=off,") == ("adam", {"amsgrad": False})


def test_from_spec_with_convention_gives_the_right_group() -> None:
    opt = D.from_spec("adam:lr=0.01,beta2=0.99,convention=keras", _p())
    assert type(opt) is D.Adam
    group = opt.param_groups[0]
    assert group["lr"] == 0.01
    assert tuple(group["betas"]) == (0.9, 0.99)  # β₁ from the convention's default
    assert group["eps"] == 1e-7 and group["eps_placement"] == "hat"
    assert group["convention"] == "keras" and group["weight_decay_mode"] == "decoupled"


def test_beta1_alone_keeps_the_default_beta2() -> None:
    group = D.from_spec("nadam:beta1=0.8", _p()).param_groups[0]
    assert tuple(group["betas"]) == (0.8, 0.999)
    assert resolve_kwargs("adam", {"beta1": 0.5, "betas": (0.7, 0.95)})["betas"] == (0.5, 0.95)


@pytest.mark.parametrize(
    "spec, cls, expected",
    [
        ("momentum", D.SGD, dict(momentum=0.9, nesterov=False, momentum_form="modern")),
        ("momentum-ema", D.SGD, dict(momentum=0.9, momentum_form="ema")),
        ("nesterov", D.SGD, dict(momentum=0.9, nesterov=True)),
        ("rmsprop-centered", D.RMSprop, dict(centered=True)),
        ("amsgrad", D.AMSGrad, dict(amsgrad=True)),
        ("adamw", D.AdamW, dict(weight_decay=1e-2, weight_decay_mode="decoupled")),
        ("sgd", D.SGD, dict(momentum=0.0, lr=1e-3)),
    ],
)
def test_presets(spec: str, cls: type, expected: dict) -> None:
    opt = D.from_spec(spec, _p())
    assert type(opt) is cls
    for key, value in expected.items():
        assert opt.param_groups[0][key] == value, key


def test_spec_values_and_overrides() -> None:
    opt = D.from_spec("momentum:lr=0.1,momentum=0.5", _p(), lr=0.2)
    assert opt.param_groups[0]["lr"] == 0.2 and opt.param_groups[0]["momentum"] == 0.5


@pytest.mark.parametrize("name", sorted(NAMES))
def test_every_name_builds_its_class(name: str) -> None:
    opt = D.from_spec(name, _p())
    assert type(opt) is REGISTRY[name][0]


def test_unknown_name_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown optimizer 'adamm'; available: ") as info:
        D.from_spec("adamm:lr=0.1", _p())
    for name in NAMES:
        assert name in str(info.value)


def test_unknown_key_lists_the_valid_keys() -> None:
    with pytest.raises(ValueError, match="unknown key 'learning_rate' for optimizer 'adam'") as e:
        D.parse_spec("adam:learning_rate=0.1")
    message = str(e.value)
    for key in ("lr", "betas", "beta1", "beta2", "eps", "weight_decay", "convention"):
        assert key in message
    with pytest.raises(ValueError, match="unknown key 'beta1' for optimizer 'sgd'"):
        D.parse_spec("sgd:beta1=0.9")  # betas only where the optimizer has them


@pytest.mark.parametrize("spec", ["adam:lr", "adam:lr=0.1,=3", "adam:0.1"])
def test_malformed_items_are_explained(spec: str) -> None:
    with pytest.raises(ValueError, match=r"malformed item .* use key=value"):
        D.parse_spec(spec)


@pytest.mark.parametrize("spec", ["", "   ", None, 3])
def test_empty_or_non_string_spec(spec) -> None:
    with pytest.raises(ValueError, match="non-empty string"):
        D.parse_spec(spec)


def test_values_are_checked_by_the_optimizer() -> None:
    with pytest.raises(ValueError, match=r"lr=-1 is invalid"):
        D.from_spec("adam:lr=-1", _p())
    with pytest.raises(ValueError, match="convention='tf'"):
        D.from_spec("sgd:convention=tf", _p())


def test_available_lists_every_name_with_defaults() -> None:
    info = D.available()
    assert NAMES <= set(info) and set(info) == set(REGISTRY)
    for name, entry in info.items():
        assert set(entry) >= {"class", "description", "defaults", "keys"}
        assert entry["class"] == REGISTRY[name][0].__name__
        assert entry["description"]
        assert "lr" in entry["defaults"] and "lr" in entry["keys"]
    assert info["adam"]["defaults"]["eps"] == 1e-8
    assert info["adam"]["defaults"]["betas"] == (0.9, 0.999)
    assert info["momentum"]["defaults"]["momentum"] == 0.9
    assert info["nadam"]["defaults"]["lr"] == 2e-3
    assert info["newton"]["defaults"]["hessian"] == "full"


# ------------------------------ param groups ----------------------------------------------------


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(4, 8),
        nn.LayerNorm(8),
        nn.ReLU(),
        nn.Linear(8, 8),
        nn.BatchNorm1d(8),
        nn.Linear(8, 2),
    )


def _names(net: nn.Module, params) -> set[str]:
    ids = {id(p) for p in params}
    return {n for n, p in net.named_parameters() if id(p) in ids}


def test_param_groups_exclude_biases_and_norm_weights() -> None:
    net = model()
    decay, rest = D.param_groups(net, weight_decay=0.1)
    assert decay["weight_decay"] == 0.1 and rest["weight_decay"] == 0.0
    assert _names(net, decay["params"]) == {"0.weight", "3.weight", "5.weight"}
    assert _names(net, rest["params"]) == {
        "0.bias",
        "3.bias",
        "5.bias",
        "1.weight",
        "1.bias",
        "4.weight",
        "4.bias",
    }


def test_the_groups_work_in_an_optimizer() -> None:
    """With zero gradients AdamW's moment step is 0, so only the decay moves θ:
    decayed tensors shrink by exactly (1 − γλ), the others do not move."""
    net = model()
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    opt = D.AdamW(D.param_groups(net, weight_decay=0.5), lr=0.1)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for name, p in net.named_parameters():
        if name in {"0.weight", "3.weight", "5.weight"}:
            torch.testing.assert_close(p.detach(), before[name] * (1 - 0.1 * 0.5))
        else:
            assert torch.equal(p.detach(), before[name]), name


def test_no_decay_globs_options_frozen_and_tied_parameters() -> None:
    net = model()
    net[0].weight.requires_grad_(False)
    decay, rest = D.param_groups(net, 0.1, no_decay=["5.*"], lr=0.01)
    assert _names(net, decay["params"]) == {"3.weight"}
    assert "5.weight" in _names(net, rest["params"])
    assert "0.weight" not in _names(net, decay["params"]) | _names(net, rest["params"])
    assert decay["lr"] == rest["lr"] == 0.01

    tied = nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 5, bias=False))
    tied[1].weight = tied[0].weight
    decay, rest = D.param_groups(tied, 0.1)
    assert len(decay["params"]) == 1 and not rest["params"]


def test_param_groups_validates_weight_decay() -> None:
    with pytest.raises(ValueError, match=r"weight_decay=-0\.1 is invalid"):
        D.param_groups(model(), -0.1)


def test_describe_groups_says_which_and_why() -> None:
    lines = D.describe_groups(model()).splitlines()
    assert lines[0].split() == ["parameter", "shape", "group", "why"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert len(rows) == 10
    assert rows["0.weight"].split()[1:] == ["8×4", "decay", "2-D", "weight"]
    assert "no decay" in rows["0.bias"] and "1-D (bias)" in rows["0.bias"]
    assert "no decay" in rows["1.weight"] and "in a LayerNorm" in rows["1.weight"]
    assert "no decay" in rows["4.weight"] and "in a BatchNorm1d" in rows["4.weight"]
    assert "matches '5.*'" in D.describe_groups(model(), no_decay=["5.*"])
