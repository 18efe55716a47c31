"""AdEMAMix and ADOPT beyond the optax parity rows of ``optimizer_cases.py``: ADOPT against
the authors' torch code (its weight decay, L2 and decoupled), ADOPT's first two steps and
AdEMAMix's warm-ups by hand, and runs that never mix."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch

import descend.optim as D
from conftest import require
from descend.optim import tracing
from descend.transforms.ademamix import alpha_warmup_value, beta3_warmup_value
from optimizer_cases import THETA0, run_descend, runs_together_and_alone, torch_reference


def _torch_adopt(kwargs: dict) -> dict:
    kw = {k: v for k, v in kwargs.items() if k not in ("decoupled_weight_decay", "use_clipping")}
    if kwargs.get("use_clipping") is False:
        kw["clip_lambda"] = None
    return dict(kw, decouple=bool(kwargs.get("decoupled_weight_decay", False)))


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:`torch._utils.is_compiling`")
@pytest.mark.parametrize(
    "variant",
    [
        dict(lr=0.01, weight_decay=0.1),
        dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, maximize=True),
        dict(lr=0.02, weight_decay=0.05, decoupled_weight_decay=True, use_clipping=False),
    ],
)
def test_adopt_matches_the_authors_torch_code(variant) -> None:
    """``torch-adopt`` (iShohei220/adopt, the paper's code): L2 decay and, with ``decouple``,
    a decoupled decay that skips the first step as the rest of the update does."""
    require(importlib.util.find_spec("adopt") is not None, "pip install torch-adopt")
    import adopt

    ours, _ = run_descend(D.ADOPT, variant, 100, fused=False)
    ref = torch_reference(adopt.ADOPT, _torch_adopt)(dict(variant), [t.copy() for t in THETA0], 100)
    assert max(float(np.abs(a - t).max()) for a, t in zip(ref, THETA0)) > 1e-3
    assert max(float(np.abs(a - b).max()) for a, b in zip(ours, ref)) <= 1e-10


@pytest.mark.parametrize("decay", [dict(), dict(weight_decay=0.5, decoupled_weight_decay=True)])
def test_adopt_first_step_measures_v_and_moves_nothing_then_steps_clipped(decay) -> None:
    theta = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
    opt = D.ADOPT([theta], lr=0.1, betas=(0.9, 0.99), **decay)
    g1 = torch.tensor([0.02, 0.01, -0.03], dtype=torch.float64)
    theta.grad = g1.clone()
    opt.step()
    st = opt.state[theta]
    assert torch.equal(theta.detach(), torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    assert torch.equal(st["exp_avg_sq"], g1 * g1) and not st["exp_avg"].any()
    # step 2: n = clip(g₂/|g₁|, ±1^¼ = ±1), m = 0.1·n, θ ← θ(1 − γλ) − γm
    g2 = torch.tensor([0.01, 0.05, 0.03], dtype=torch.float64)
    theta.grad = g2.clone()
    opt.step()
    # 0.01/0.02 = 0.5; 0.05/0.01 = 5, clipped to 1; 0.03/0.03 = 1
    n = torch.tensor([0.5, 1.0, 1.0], dtype=torch.float64)
    expected = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    expected *= 1 - 0.1 * decay.get("weight_decay", 0.0)
    expected -= 0.1 * (0.1 * n)
    assert torch.allclose(theta.detach(), expected, rtol=0, atol=1e-15)
    assert torch.allclose(st["exp_avg_sq"], 0.99 * g1 * g1 + 0.01 * g2 * g2, rtol=1e-15)


def test_ademamix_warmups_by_hand() -> None:
    # α: linear from 0, read at s = t − 1 (optax's count)
    assert alpha_warmup_value(8.0, 0, 10) == 0.0
    assert alpha_warmup_value(8.0, 5, 10) == 4.0
    assert alpha_warmup_value(8.0, 10, 10) == 8.0 and alpha_warmup_value(8.0, 3, None) == 8.0
    # β₃: linear in the half-life h(β) = ln ½/ln β − 1, from β₁ to β₃
    b1, b3 = 0.9, 0.9999

    def half_life(b):
        return math.log(0.5) / math.log(b) - 1

    assert beta3_warmup_value(b3, b1, 0, 100) == pytest.approx(b1, rel=1e-15)
    mid = beta3_warmup_value(b3, b1, 50, 100)
    assert half_life(mid) == pytest.approx((half_life(b1) + half_life(b3)) / 2, rel=1e-12)
    assert beta3_warmup_value(b3, b1, 100, 100) == b3


def test_ademamix_explain_records_the_slow_moment() -> None:
    theta = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = D.AdEMAMix([theta], lr=0.01, alpha=4.0, alpha_warmup=4, beta3_warmup=4)
    grads = [torch.tensor(g, dtype=torch.float64) for g in ([0.02, 0.01, -0.03], [0.1, -0.2, 0.3])]
    m2 = torch.zeros(3, dtype=torch.float64)
    with tracing(opt) as steps:
        for s, g in enumerate(grads):
            theta.grad = g.clone()
            opt.step()
            b3 = beta3_warmup_value(0.9999, 0.9, s, 4)
            m2 = b3 * m2 + (1 - b3) * g
            assert torch.allclose(steps[-1]["m_slow"][0], m2, rtol=1e-14, atol=0)
            assert float(steps[-1]["alpha"][0][0]) == 4.0 * s / 4
            assert float(steps[-1]["beta3"][0][0]) == pytest.approx(b3, rel=1e-15)


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (D.AdEMAMix, dict(alpha_warmup=5, beta3_warmup=5, weight_decay=0.1)),
        (D.ADOPT, dict(weight_decay=0.1, decoupled_weight_decay=True)),
    ],
)
def test_runs_with_their_own_learning_rates_never_mix(cls, kwargs) -> None:
    lrs = torch.tensor([[0.01], [0.05], [0.2]], dtype=torch.float64)
    _, _, gap = runs_together_and_alone(cls, kwargs, lrs)
    assert gap <= 1e-12


@pytest.mark.parametrize(("name", "column"), [("ademamix", "m_slow"), ("adopt", "normed")])
def test_the_lab_runs_it_at_its_own_rate_and_explain_shows_its_columns(name, column) -> None:
    from descend.explain import explain
    from descend.lab import run

    for landscape in ("rosenbrock", "beale"):
        result = run(landscape, [name], steps=200)
        assert result.metrics["status"].eq("ok").all()
        assert (result.losses[:, -1] < 0.5 * result.losses[:, 0]).all()
    table = explain(name, gradients=[0.02, 0.01, -0.03])
    assert column in table.columns and table[column].notna().any()


@pytest.mark.parametrize(
    ("cls", "spec", "column"),
    [
        (D.ScheduleFreeAdamW, "schedule-free-adamw:lr=0.05,warmup_steps=5", "z"),
        (D.ScheduleFreeSGD, "schedule-free-sgd:lr=0.0005", "x"),
        (D.AdEMAMix, "ademamix:lr=0.02,alpha_warmup=10,beta3_warmup=10", "m_slow"),
        (D.ADOPT, "adopt:lr=0.02", "normed"),
    ],
    ids=lambda v: v if isinstance(v, str) else getattr(v, "__name__", None),
)
def test_the_web_lab_races_it_and_explains_it(cls, spec, column) -> None:
    from fastapi.testclient import TestClient

    from descend.web import create_app

    client = TestClient(create_app())
    body = {"function": {"name": "rosenbrock"}, "optimizers": [spec], "starts": [[-1.2, 1.0]]}
    answer = client.post("/api/run", json=dict(body, steps=30))
    assert answer.status_code == 200, answer.text
    got = np.array(answer.json()["runs"][0]["trajectory"])
    w = torch.tensor([-1.2, 1.0], dtype=torch.float64, requires_grad=True)
    name, _, options = spec.partition(":")
    kwargs = {
        k: float(v) if "." in v else int(v) for k, v in (o.split("=") for o in options.split(","))
    }
    opt = cls([w], **kwargs)
    expected = [w.detach().numpy().copy()]
    for _ in range(30):
        opt.zero_grad()
        ((1 - w[0]) ** 2 + 100 * (w[1] - w[0] ** 2) ** 2).backward()
        opt.step()
        expected.append(w.detach().numpy().copy())
    assert np.allclose(got, np.array(expected), rtol=0, atol=1e-12)
    explained = client.post(
        "/api/explain",
        json={
            "function": {"name": "rosenbrock"},
            "optimizer": spec,
            "start": [-1.2, 1.0],
            "step": 3,
        },
    ).json()
    assert column in {q["name"] for q in explained["quantities"]}
