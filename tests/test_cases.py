"""Every row of the shared case table (``tests/optimizer_cases.py``): parity with the row's
reference on every path, a bitwise resume, refusal of bad input, the spec name."""

from __future__ import annotations

import copy
import importlib.util

import numpy as np
import pytest
import torch

from conftest import require, require_kernels
from descend.optim import REGISTRY, from_spec
from descend.optim.fast import last_path
from optimizer_cases import CASES, THETA0, grad, run_descend

PATHS = {"fast": True, "chain": False}


def _parity_params():
    for case in CASES:
        paths = ("fast", "chain") if case.fast else ("chain",)
        for k, variant in enumerate(case.variants):
            for path in paths:
                yield pytest.param(case, variant, path, id=f"{case.id}-{k}-{path}")


def _require_reference(case) -> None:
    if case.package is not None:
        module = case.package.replace("-", "_")
        require(importlib.util.find_spec(module) is not None, f"pip install {case.package}")


@pytest.mark.parametrize(("case", "variant", "path"), list(_parity_params()))
def test_parity_with_the_reference(case, variant, path) -> None:
    _require_reference(case)
    if path == "fast":
        require_kernels()
    ours, opt = run_descend(case.cls, variant, case.steps, fused=PATHS[path])
    ref = case.reference(dict(variant), [t.copy() for t in THETA0], case.steps)
    moved = max(float(np.abs(a - t).max()) for a, t in zip(ref, THETA0, strict=True))
    assert moved > 1e-3, "the reference did not move: the case cannot tell anything apart"
    err = max(float(np.abs(a - b).max()) for a, b in zip(ours, ref, strict=True))
    assert err <= case.tol64, f"{case.name} {variant} ({path}): max |Δθ| = {err:.3g}"
    expected = "fast" if path == "fast" else "default: fused=False"
    assert set(last_path(opt).values()) == {expected}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_fused_true_is_the_fast_path_or_a_clear_refusal(case) -> None:
    p = torch.zeros(2, requires_grad=True)
    if not case.fast:
        # "chain core X has no fast kernel", or "links after the core (X) …" when the core's
        # first link has one (LAMB: Adam's scaling, then the trust ratio)
        refused = r"fused=True\) is not supported: (chain core|links after the core)"
        with pytest.raises(ValueError, match=refused):
            case.cls([p], fused=True)
        return
    require_kernels()
    opt = case.cls([p], fused=True)
    p.grad = torch.ones(2)
    opt.step()
    assert last_path(opt) == {0: "fast"}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_state_dict_resume_is_bitwise(case) -> None:
    variant = case.variants[-1]
    full, _ = run_descend(case.cls, variant, 12, fused=None)
    params = [torch.tensor(t, dtype=torch.float64, requires_grad=True) for t in THETA0]
    opt = case.cls(params, **variant)
    for t in range(12):
        if t == 6:  # save, rebuild from scratch, load, go on
            saved = copy.deepcopy(opt.state_dict())
            params = [p.detach().clone().requires_grad_(True) for p in params]
            opt = case.cls(params, **variant)
            opt.load_state_dict(saved)
        for p, g in zip(params, grad(torch, [p.detach() for p in params], t), strict=True):
            p.grad = g
        opt.step()
    for a, b in zip(full, params, strict=True):
        assert np.array_equal(a, b.detach().numpy())


def _bad_params():
    for case in CASES:
        for key, value in case.bad:
            yield pytest.param(case, key, value, id=f"{case.id}-{key}")


@pytest.mark.parametrize(("case", "key", "value"), list(_bad_params()))
def test_bad_input_is_refused_naming_it(case, key, value) -> None:
    p = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match=key):
        case.cls([p], **{key: value})
    opt = case.cls([p])
    before = copy.deepcopy(opt.state_dict())
    with pytest.raises(ValueError, match=key):
        opt.add_param_group({"params": [torch.zeros(2, requires_grad=True)], key: value})
    assert len(opt.param_groups) == 1 and opt.state_dict() == before


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_the_spec_name_builds_it(case) -> None:
    assert REGISTRY[case.name].cls is case.cls
    opt = from_spec(f"{case.name}:lr=0.5", [torch.zeros(2, requires_grad=True)])
    assert type(opt) is case.cls and opt.param_groups[0]["lr"] == 0.5


def test_every_declared_optimizer_has_a_row() -> None:
    have = {c.cls for c in CASES}
    missing = sorted(
        n for n, e in REGISTRY.items() if e.cls not in have and e.cls.__name__ != "Newton"
    )
    assert not missing, f"spec names without a row in tests/optimizer_cases.py: {missing}"
