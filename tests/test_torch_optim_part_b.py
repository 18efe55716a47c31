"""Rprop, ASGD and Adafactor beyond the case table's parity rows: where they meet the lab,
``lr-find``, param groups and torch's own quirks (parity itself: tests/optimizer_cases.py;
torch's generic suite: tests/test_torch_suite.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import descend.optim as D
from descend import lab
from descend.cli import main as cli_main
from descend.landscapes import get as landscape
from descend.train.lr_find import lr_find

SPECS = ["rprop", "asgd", "adafactor"]


def test_the_lab_runs_each_in_a_batch_as_alone():
    """Each makes progress on Rosenbrock at its landscape rate, and a run in a batch of specs
    and starts is bitwise the run alone: ASGD's per-run lr and α become (N, 1) columns (its η
    one per row), Adafactor (couples=True) gets one optimizer per run."""
    specs = [*SPECS, "asgd:lr=5e-4,alpha=0.6", "rprop:lr=0.2", "adafactor:lr=0.01"]
    ls = landscape("rosenbrock")
    batch = lab.run(ls, specs, steps=120)
    f0 = ls.f(ls.points_tensor(ls.starts)).numpy()
    starts = len(ls.starts)
    for i, spec in enumerate(specs):
        final = batch.losses[i * starts : (i + 1) * starts, -1]
        assert np.all(np.isfinite(final)) and np.all(final < f0), (spec, final, f0)
        for j, start in enumerate(ls.starts):
            alone = lab.run(ls, [spec], starts=[start], steps=120)
            np.testing.assert_array_equal(
                alone.trajectories[0], batch.trajectories[i * starts + j], err_msg=spec
            )


def test_lr_find_refuses_rprop_and_sweeps_the_others():
    """Rprop reads lr once (its initial step size), so a range test would suggest noise: the
    library and the CLI refuse it by name; ASGD and Adafactor read lr at every step."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    data = [(torch.randn(8, 3), torch.randn(8, 1)) for _ in range(4)]
    loss = torch.nn.functional.mse_loss
    with pytest.raises(ValueError, match="Rprop reads lr once"):
        lr_find(model, loss, data, D.Rprop(model.parameters()), num_steps=10)
    for cls in (D.ASGD, D.Adafactor):
        result = lr_find(model, loss, data, cls(model.parameters()), num_steps=10)
        assert len(result.losses) == 10


def test_lr_find_cli_names_the_reason(capsys):
    code = cli_main(["lr-find", "--landscape", "rosenbrock", "--optimizer", "rprop:lr=0.1"])
    assert code != 0
    assert "Rprop reads lr once" in capsys.readouterr().err


def test_rprop_group_weight_decay_zero_is_no_decay_anything_else_is_refused():
    """torch's Rprop has no weight decay and ignores the key (its test_param_groups_weight_decay
    passes weight_decay=0.0 in a group): 0 is accepted, a decay Rprop would not apply is not."""
    p, q = torch.ones(3, requires_grad=True), torch.ones(3, requires_grad=True)
    opt = D.Rprop([{"params": [p], "weight_decay": 0.0}, {"params": [q]}])
    p.grad = q.grad = torch.tensor([1.0, -2.0, 3.0])
    opt.step()
    assert torch.equal(p, q)
    before = opt.state_dict()
    with pytest.raises(ValueError, match="weight_decay=0.1 is invalid: Rprop has no weight decay"):
        opt.add_param_group({"params": [torch.zeros(2, requires_grad=True)], "weight_decay": 0.1})
    assert len(opt.param_groups) == 2 and opt.state_dict()["param_groups"] == before["param_groups"]
    with pytest.raises(TypeError, match="weight_decay"):
        D.Rprop([p], weight_decay=0.1)  # no such keyword, as torch's


def test_asgd_is_l2_only():
    with pytest.raises(ValueError, match="weight_decay_mode='decoupled' is not supported by ASGD"):
        D.ASGD([torch.zeros(2, requires_grad=True)], weight_decay=0.1, decoupled_weight_decay=True)


def test_asgd_resumed_keeps_eta_and_mu_as_torch_creates_them():
    """torch's load_state_dict casts every state tensor but ``step`` to the parameter's dtype;
    descend puts η and μ back in torch's scalar dtype (float32), so a resumed float64 run keeps
    rounding η as the uninterrupted run (and as a fresh torch.optim.ASGD) does."""
    p = torch.ones(3, dtype=torch.float64, requires_grad=True)
    opt = D.ASGD([p], lr=0.1, t0=1)
    for _ in range(3):
        p.grad = torch.full_like(p, 0.5)
        opt.step()
    again = D.ASGD([p], lr=0.1, t0=1)
    again.load_state_dict(opt.state_dict())
    state = again.state[p]
    assert state["eta"].dtype == state["mu"].dtype == torch.float32
    assert state["ax"].dtype == torch.float64
    ref = torch.optim.ASGD([torch.ones(1, dtype=torch.float64, requires_grad=True)])
    ref.param_groups[0]["params"][0].grad = torch.ones(1, dtype=torch.float64)
    ref.step()
    assert ref.state[ref.param_groups[0]["params"][0]]["eta"].dtype == torch.float32


def test_adafactor_eps1_none_takes_the_first_parameters_dtype_as_torch():
    """torch sets ε₁ = finfo(dtype).eps from the group's first parameter and keeps it for the
    rest: a float64 parameter after a float32 one gets float32's ε₁. Parity on such a group."""
    torch.manual_seed(0)
    start = [torch.randn(4, 3), torch.randn(5, dtype=torch.float64)]
    runs = []
    for make in (
        lambda ps: D.Adafactor(ps, lr=0.05),
        lambda ps: torch.optim.Adafactor(ps, lr=0.05),
        lambda ps: D.Adafactor(ps, lr=0.05, eps=(torch.finfo(torch.float64).eps, 1e-3)),
    ):
        params = [t.clone().requires_grad_(True) for t in start]
        opt = make(params)
        for t in range(20):  # g² ≈ 1e-18 < float32's ε₁² ≈ 1.4e-14: the clamp decides
            for p in params:
                p.grad = torch.sin(p.detach() * (t + 1)) * 1e-9
            opt.step()
        runs.append([p.detach() for p in params])
    ours, torchs, own_eps = runs
    for a, b in zip(ours, torchs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert not torch.allclose(ours[1], own_eps[1], rtol=0, atol=1e-9)  # the quirk mattered


def test_adafactor_eps_spec_round_trips_as_descend_optimizers_shows_it():
    """``descend optimizers`` shows eps=(None,0.001): that form (and without parentheses)
    parses back, None meaning the dtype's machine epsilon."""
    p = [torch.zeros(2, requires_grad=True)]
    assert D.from_spec("adafactor:eps=(None,0.001)", p).defaults["eps"] == (None, 0.001)
    assert D.from_spec("adafactor:lr=0.1,eps=None,0.002", p).defaults["eps"] == (None, 0.002)
    with pytest.raises(ValueError, match="eps"):
        D.from_spec("adafactor:eps=(None,-1)", p)


def test_asgd_average_eta_and_mu_equal_torchs():
    """The case table compares parameters; here the state torch keeps too — the average θ̄
    (``ax``, averaging from t > t₀ = 5), η and μ — against torch.optim.ASGD, float64, 100 steps."""
    torch.manual_seed(0)
    start = [torch.randn(4, 3, dtype=torch.float64), torch.randn(5, dtype=torch.float64)]
    kwargs = dict(lr=0.05, lambd=0.01, alpha=0.6, t0=5, weight_decay=0.02)
    ours = [t.clone().requires_grad_(True) for t in start]
    theirs = [t.clone().requires_grad_(True) for t in start]
    opt, ref = D.ASGD(ours, **kwargs), torch.optim.ASGD(theirs, **kwargs)
    for _ in range(100):
        for a, b in zip(ours, theirs, strict=True):
            a.grad = a.detach() ** 3 - a.detach() + 0.1
            b.grad = b.detach() ** 3 - b.detach() + 0.1
        opt.step()
        ref.step()
    for a, b in zip(ours, theirs, strict=True):
        mine, torchs = opt.state[a], ref.state[b]
        assert float(torchs["mu"]) < 0.02  # averaging was on for most of the run
        torch.testing.assert_close(mine["ax"], torchs["ax"], rtol=0, atol=1e-13)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-13)
        for key in ("eta", "mu", "step"):
            assert mine[key].dtype == torchs[key].dtype and torch.equal(mine[key], torchs[key])
