"""``cautious=True`` (Liang et al. 2024, https://arxiv.org/abs/2411.16085) on every
momentum-based optimizer, against pytorch_optimizer's cautious mask.

The reference of each optimizer is torch.optim's own step with its update u masked by
``pytorch_optimizer``'s ``BaseOptimizer.apply_cautious`` (u ← u·φ·n/(Σφ + 1), φ = 1[u·g > 0]
per tensor, g the gradient the core sees: after ``maximize`` and L2 decay), the decoupled
decay left outside the mask — what its cautious optimizers (``Lion``, ``ADOPT``, …) do. The
moments do not depend on the mask, so torch's state evolves as in the cautious optimizer.
100 float64 steps on the case table's problem, ≤ 1e-10, on both paths: the fast kernels mask
the update themselves (``descend.optim.fast``; ``tests/test_fast_cautious.py`` compares them
with the chain bit for bit).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

import descend.optim as D
from conftest import require, require_kernels
from descend.optim.fast import last_path
from optimizer_cases import THETA0, grad, run_descend, torch_reference


def _require_reference() -> None:
    require(
        importlib.util.find_spec("pytorch_optimizer") is not None, "pip install pytorch-optimizer"
    )


class CautiousTorch:
    """torch.optim's ``base`` whose every step is masked by pytorch_optimizer's cautious rule."""

    def __init__(self, params, base: type, decoupled: bool = False, **kwargs):
        self.params = list(params)
        self.inner = base(self.params, **kwargs)
        group = self.inner.param_groups[0]
        self.lr, self.wd = group["lr"], group.get("weight_decay", 0.0)
        self.maximize, self.decoupled = group.get("maximize", False), decoupled

    @torch.no_grad()
    def step(self) -> None:
        from pytorch_optimizer.base.optimizer import BaseOptimizer

        old = [p.detach().clone() for p in self.params]
        seen = []  # the gradient the core sees, as torch forms it
        for p, o in zip(self.params, old, strict=True):
            g = -p.grad if self.maximize else p.grad
            seen.append(g if self.decoupled or self.wd == 0 else g.add(o, alpha=self.wd))
        self.inner.step()
        for p, o, g in zip(self.params, old, seen, strict=True):
            kept = o.mul(1 - self.lr * self.wd) if self.decoupled else o  # torch's decay
            update = kept - p  # torch's step, without the decay
            BaseOptimizer.apply_cautious(update, g)
            p.copy_(kept - update)


def _reference(base: type, decoupled=lambda k: False):
    def translate(kwargs: dict) -> dict:
        out = {k: v for k, v in kwargs.items() if k not in ("cautious", "convention")}
        return {"base": base, "decoupled": decoupled(kwargs), **out}

    return torch_reference(CautiousTorch, translate)


_DECOUPLED = lambda k: bool(k.get("decoupled_weight_decay"))  # noqa: E731

CASES = [
    (D.SGD, dict(lr=0.02, momentum=0.9), _reference(torch.optim.SGD)),
    (
        D.SGD,
        dict(lr=0.02, momentum=0.9, nesterov=True, weight_decay=0.05),
        _reference(torch.optim.SGD),
    ),
    (
        D.RMSprop,
        dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.01),
        _reference(torch.optim.RMSprop),
    ),
    (D.Adam, dict(lr=0.02), _reference(torch.optim.Adam)),
    (
        D.Adam,
        dict(lr=0.02, amsgrad=True, weight_decay=0.05, betas=(0.8, 0.95), maximize=True),
        _reference(torch.optim.Adam),
    ),
    (D.AdamW, dict(lr=0.02, weight_decay=0.1), _reference(torch.optim.AdamW, lambda k: True)),
    (
        D.NAdam,
        dict(lr=0.02, weight_decay=0.05, decoupled_weight_decay=True),
        _reference(torch.optim.NAdam, _DECOUPLED),
    ),
]


@pytest.mark.parametrize("path", ["fast", "chain"])
@pytest.mark.parametrize(
    ("cls", "variant", "reference"),
    CASES,
    ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(CASES)],
)
def test_cautious_equals_the_masked_reference(cls, variant, reference, path) -> None:
    _require_reference()
    if path == "fast":
        require_kernels()
    kwargs = dict(variant, cautious=True)
    ours, opt = run_descend(cls, kwargs, 100, fused=path == "fast")
    ref = reference(dict(kwargs), [t.copy() for t in THETA0], 100)
    plain, _ = run_descend(cls, variant, 100, fused=False)  # cautious=False
    err = max(float(np.abs(a - b).max()) for a, b in zip(ours, ref, strict=True))
    assert err <= 1e-10, f"max |Δθ| = {err:.3g}"
    # the mask changed the trajectory (else the test could not fail)
    apart = max(float(np.abs(a - b).max()) for a, b in zip(plain, ref, strict=True))
    assert apart > 1e-3
    assert set(last_path(opt).values()) == {"fast" if path == "fast" else "default: fused=False"}


def _pytorch_optimizer_lion(kwargs: dict) -> dict:
    """descend's Lion keywords → pytorch_optimizer.Lion's (weight_decouple / fixed_decay)."""
    mode = kwargs.get("weight_decay_mode", "decoupled")
    out = {k: v for k, v in kwargs.items() if k not in ("weight_decay_mode", "convention")}
    return dict(out, weight_decouple=mode != "l2", fixed_decay=mode == "independent")


LION = [
    dict(lr=1e-3),
    dict(lr=3e-3, betas=(0.95, 0.98), weight_decay=0.5),
    dict(lr=2e-3, weight_decay=0.05, weight_decay_mode="l2", maximize=True),
    dict(lr=2e-3, weight_decay=0.02, weight_decay_mode="independent"),
]


@pytest.mark.parametrize("path", ["fast", "chain"])
@pytest.mark.parametrize("variant", LION, ids=range(len(LION)))
def test_cautious_lion_is_pytorch_optimizers(variant, path) -> None:
    """pytorch_optimizer.Lion(cautious=True) itself: the package's own cautious variant."""
    _require_reference()
    if path == "fast":
        require_kernels()
    kwargs = dict(variant, cautious=True)
    ours, opt = run_descend(D.Lion, kwargs, 100, fused=path == "fast")
    assert set(last_path(opt).values()) == {"fast" if path == "fast" else "default: fused=False"}
    ref = torch_reference("pytorch_optimizer.Lion", _pytorch_optimizer_lion)(
        dict(kwargs), [t.copy() for t in THETA0], 100
    )
    plain, _ = run_descend(D.Lion, variant, 100, fused=False)
    assert max(float(np.abs(a - b).max()) for a, b in zip(ours, ref, strict=True)) <= 1e-10
    assert max(float(np.abs(a - b).max()) for a, b in zip(plain, ref, strict=True)) > 1e-3


def test_the_mask_keeps_agreeing_coordinates_and_rescales_them() -> None:
    """One hand-computed step: SGD with momentum 0.5, buffer preset against the gradient in
    one coordinate. u = (0.5·b + g) = (3, −1, 2)·… ; φ = (1, 0, 1); scale n/(Σφ + 1) = 3/3."""
    p = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = D.SGD([p], lr=1.0, momentum=0.5, cautious=True)
    opt.state[p]["momentum_buffer"] = torch.tensor([2.0, -4.0, 2.0], dtype=torch.float64)
    p.grad = torch.tensor([2.0, 1.0, 1.0], dtype=torch.float64)
    opt.step()
    # buffer = 0.5·(2, −4, 2) + (2, 1, 1) = (3, −1, 2); u·g = (6, −1, 2) → φ = (1, 0, 1)
    # scale = 3/(2 + 1) = 1; θ = −u·φ·1
    assert torch.equal(p.detach(), torch.tensor([-3.0, 0.0, -2.0], dtype=torch.float64))
    p.grad = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    opt.step()
    # buffer = 0.5·(3, −1, 2) + 1 = (2.5, 0.5, 2); all agree: scale 3/(3 + 1) = 0.75
    expected = torch.tensor([-3 - 1.875, -0.375, -2 - 1.5], dtype=torch.float64)
    assert torch.allclose(p.detach(), expected, rtol=0, atol=1e-15)


def test_cautious_needs_a_momentum_and_the_chain() -> None:
    p = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match="cautious=True needs a momentum"):
        D.SGD([p], lr=0.1, cautious=True)
    with pytest.raises(ValueError, match="cautious=True needs a momentum"):
        D.RMSprop([p], lr=0.1, cautious=True)
    with pytest.raises(ValueError, match="cautious must be True or False"):
        D.Adam([p], cautious="yes")
    # LARS has no kernel: cautious=True keeps the chain there (the others: test_fast_cautious)
    with pytest.raises(ValueError, match=r"fused=True\) is not supported: cautious core"):
        D.LARS([p], cautious=True, fused=True)
    opt = D.Adam([p], lr=0.1)
    before = opt.state_dict()
    with pytest.raises(ValueError, match="cautious=True needs a momentum"):
        D.SGD([p], lr=0.1).add_param_group(
            {"params": [torch.zeros(2, requires_grad=True)], "cautious": True}
        )
    assert opt.state_dict() == before
    # per group: the cautious group's chain has the mask, the other one's not
    q = torch.zeros(3, requires_grad=True)
    opt = D.Adam([{"params": [p]}, {"params": [q], "cautious": True}], lr=0.1)
    assert "cautious" not in repr(opt.chain(opt.param_groups[0]))
    assert "cautious" in repr(opt.chain(opt.param_groups[1]))


def test_cautious_is_a_keyword_of_the_momentum_based_only() -> None:
    import inspect

    for cls in (D.SGD, D.RMSprop, D.Adam, D.AdamW, D.AMSGrad, D.NAdam, D.Lion, D.LAMB, D.LARS):
        assert inspect.signature(cls).parameters["cautious"].default is False
    assert "cautious" not in inspect.signature(D.Adagrad).parameters
    opt = D.from_spec("adam:cautious=true", [torch.zeros(2, requires_grad=True)])
    assert opt.param_groups[0]["cautious"] is True


def test_state_dict_resume_is_bitwise_with_the_mask() -> None:
    kwargs = dict(lr=0.02, cautious=True)
    full, _ = run_descend(D.Adam, kwargs, 12, fused=None)
    params = [torch.tensor(t, dtype=torch.float64, requires_grad=True) for t in THETA0]
    opt = D.Adam(params, **kwargs)
    for t in range(12):
        if t == 6:
            saved = opt.state_dict()
            opt = D.Adam(params, **kwargs)
            opt.load_state_dict(saved)
        for p, g in zip(params, grad(torch, [p.detach() for p in params], t), strict=True):
            p.grad = g
        opt.step()
    for a, b in zip(full, params, strict=True):
        assert np.array_equal(a, b.detach().numpy())
