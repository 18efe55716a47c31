"""Muon and SOAP beyond the case table: the groups helper against torch's own pairing, the
Newton–Schulz iteration against torch's, the trace of a group that mixes matrices and vectors,
the landscape lab's one-matrix-per-run rule, explain's columns and the training metrics.
(Parity of every convention with its reference is in tests/optimizer_cases.py.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.optim._muon import _zeropower_via_newtonschulz

from descend import lab
from descend.explain import explain
from descend.optim import SOAP, Muon, muon_groups, tracing
from descend.optim.fast import last_path
from descend.train.metrics import effective_lr_stats
from descend.transforms import newton_schulz

NS = (3.4445, -4.7750, 2.0315)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(11, 6)
        self.conv = torch.nn.Conv1d(6, 6, 3, padding=1)
        self.hidden = torch.nn.Linear(6, 8)
        self.norm = torch.nn.LayerNorm(8)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, tokens):
        x = self.embed(tokens).transpose(1, 2)
        x = self.conv(x).mean(-1)
        return self.head(self.norm(torch.tanh(self.hidden(x))))


def test_muon_groups_split_the_model_as_the_frameworks_do() -> None:
    net = Net()
    groups = muon_groups(net, exclude=[r"^head\."], lr=3e-4)
    assert [p for p in groups[0]["params"]] == [net.hidden.weight]
    names = {id(p): n for n, p in net.named_parameters()}
    assert sorted(names[id(p)] for p in groups[1]["params"]) == sorted(
        n for n, _ in net.named_parameters() if n != "hidden.weight"
    )
    assert groups[1]["use_muon"] is False and groups[1]["lr"] == 3e-4
    # embeddings stay with Muon when asked, like any other matrix
    kept = muon_groups(net, exclude_embeddings=False, exclude=[r"^head\."])[0]["params"]
    assert {id(p) for p in kept} == {id(net.embed.weight), id(net.hidden.weight)}


def test_muon_on_a_model_is_torch_muon_plus_torch_adamw() -> None:
    """The documented pairing: torch.optim.Muon on the matrices, torch.optim.AdamW (at its
    own lr) on the rest; descend does both in one optimizer from muon_groups, float64."""
    torch.manual_seed(0)
    net = Net().double()
    twin = Net().double()
    twin.load_state_dict(net.state_dict())
    start = [p.detach().clone() for p in net.parameters()]
    ours = Muon(muon_groups(net, lr=2e-3, adam_weight_decay=0.05), lr=0.02, weight_decay=0.1)
    groups = muon_groups(twin)
    theirs = [
        torch.optim.Muon(groups[0]["params"], lr=0.02, weight_decay=0.1),
        torch.optim.AdamW(groups[1]["params"], lr=2e-3, weight_decay=0.05),
    ]
    tokens = torch.randint(0, 11, (5, 7))
    target = torch.randn(5, 3, dtype=torch.float64)
    for _ in range(15):
        for model, opts in ((net, [ours]), (twin, theirs)):
            for opt in opts:
                opt.zero_grad()
            torch.nn.functional.mse_loss(model(tokens), target).backward()
            for opt in opts:
                opt.step()
    moved = max(float((p.detach() - q).abs().max()) for p, q in zip(net.parameters(), start))
    assert moved > 1e-2
    for (name, a), b in zip(net.named_parameters(), twin.parameters(), strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-12), name
    assert set(last_path(ours).values()) == {"default: chain core partition has no fast kernel"}


@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (5, 3), (3, 7), (16, 16)])
def test_newton_schulz_is_torchs_bit_for_bit(shape) -> None:
    torch.manual_seed(1)
    m = torch.randn(shape, dtype=torch.float64)
    ours = newton_schulz(m, NS, 5, 1e-7)
    assert ours.dtype == torch.bfloat16
    assert torch.equal(ours, _zeropower_via_newtonschulz(m, NS, 5, 1e-7))
    # in float64 the singular values land near 1 (the quintic's band, ~[0.68, 1.13])
    s = torch.linalg.svdvals(newton_schulz(m, NS, 5, 1e-7, "add", "param"))
    assert s.min() > 0.6 and s.max() < 1.2


def test_a_mixed_group_traces_both_sides_with_nan_elsewhere() -> None:
    w = torch.nn.Parameter(torch.randn(4, 3, dtype=torch.float64))
    b = torch.nn.Parameter(torch.randn(3, dtype=torch.float64))
    opt = Muon([w, b], lr=0.05, weight_decay=0.1, adam_weight_decay=0.2)
    before = [w.detach().clone(), b.detach().clone()]
    w.grad, b.grad = torch.randn(4, 3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    with tracing(opt) as steps:
        opt.step()
    record = steps[0]
    assert torch.isnan(record["ortho"][1]).all() and torch.isnan(record["m"][0]).all()
    o = record["ortho"][0]
    buf = torch.zeros_like(w.grad).lerp_(w.grad, 1 - 0.95)  # torch's B after one step
    assert torch.equal(o, _zeropower_via_newtonschulz(w.grad.lerp(buf, 0.95), NS, 5, 1e-7).double())
    assert math.isclose(float(record["ortho_norm"][0][0, 0]), float(o.norm()))
    # the recorded update is the whole change of θ, decoupled decays included
    for i, p in enumerate((w, b)):
        assert torch.allclose(before[i] - record["update"][i], p.detach(), atol=1e-15)


def test_the_lab_gives_each_run_its_own_matrix() -> None:
    """Two starts in one lab call end where each ends alone, and where torch.optim.Muon takes
    a 1×2 matrix along the landscape's gradient."""
    starts = [[-1.2, 1.0], [0.5, 2.0]]
    both = lab.run("rosenbrock", "muon:lr=0.02", starts=starts, steps=40)
    for i, start in enumerate(starts):
        alone = lab.run("rosenbrock", "muon:lr=0.02", starts=[start], steps=40)
        assert torch.equal(
            torch.as_tensor(both.trajectories[i, -1]), torch.as_tensor(alone.trajectories[0, -1])
        )
        landscape = lab.resolve_landscape("rosenbrock")
        theta = torch.tensor([start], dtype=torch.float64, requires_grad=True)
        ref = torch.optim.Muon([theta], lr=0.02)
        for _ in range(40):
            theta.grad = landscape.value_and_grad(theta.detach())[1]
            ref.step()
        np.testing.assert_allclose(
            np.asarray(both.trajectories[i, -1]), theta.detach()[0].numpy(), atol=1e-12
        )


def test_explain_shows_the_orthogonalised_update_of_a_1x1_matrix() -> None:
    table = explain("muon:weight_decay=0", gradients=[0.02, 0.01, -0.03], lr=0.1)
    # a 1×1 matrix: M/|M| = ±1 and the quintic takes 1 to a(1)+b+c… five times: O = ±0.6875
    one = float(_zeropower_via_newtonschulz(torch.ones(1, 1), NS, 5, 1e-7))
    np.testing.assert_allclose(table["ortho"], [one, one, -one])
    np.testing.assert_allclose(table["ortho_norm"], [one] * 3)
    np.testing.assert_allclose(table["update"], 0.1 * table["ortho"])
    assert table.attrs["symbols"] == {"ortho": "O", "ortho_norm": "‖O‖"}
    soap = explain("soap", gradients=[[0.02, 0.01], [0.01, -0.03]])
    assert {"rotated_grad", "precond_update"} <= set(soap.columns)


@pytest.mark.parametrize("cls", [Muon, SOAP])
def test_training_metrics_skip_the_matrix_methods_rates(cls) -> None:
    w = torch.nn.Parameter(torch.randn(3, 2))
    b = torch.nn.Parameter(torch.randn(2))
    opt = cls([w, b])
    for _ in range(2):
        w.grad, b.grad = torch.randn(3, 2), torch.randn(2)
        opt.step()
    assert effective_lr_stats(opt) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_muon_steps_bit_for_bit_as_torch_muon(dtype, one_thread) -> None:
    """θ ← θ(1 − γλ) − γs·O exactly as torch.optim.Muon computes it: the chain leaves γs
    pending and the optimizer adds the bfloat16 O with alpha = −γs (torch's op), and the
    look-ahead runs torch's lerp_/lerp/cast block by block (a matrix over two blocks, a tall
    one, a wide one). Materialising u = γs·O in θ's dtype and subtracting it differs from
    torch by rounding (~1e-8 in float32), so torch.equal fails without the fusion."""
    from descend.transforms import muon as muon_module

    torch.manual_seed(3)
    shapes = [(3, muon_module.BLOCK // 3 + 5), (40, 9), (7, 30)]
    start = [torch.randn(s, dtype=dtype) for s in shapes]
    ours = [torch.nn.Parameter(x.clone()) for x in start]
    theirs = [torch.nn.Parameter(x.clone()) for x in start]
    opt = Muon(ours, lr=0.02, weight_decay=0.1)
    ref = torch.optim.Muon(theirs, lr=0.02, weight_decay=0.1)
    for _ in range(3):
        for p, q in zip(ours, theirs):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        opt.step()
        ref.step()
        for p, q in zip(ours, theirs):
            assert torch.equal(p, q)
            assert torch.equal(opt.state[p]["momentum_buffer"], ref.state[q]["momentum_buffer"])
    assert max(float((p.detach() - x).abs().max()) for p, x in zip(ours, start)) > 1e-3


def test_a_pending_factor_folds_lr_and_never_reaches_a_link_that_reads_u(one_thread) -> None:
    """``scale_by_lr`` after Muon folds γ into the pending factor (the same steps as Muon's own
    γ); a link that reads u (``clip_by_value``) gets u = γs·O materialised: clipping O itself
    (|O| up to ~1) at 1e-3 and scaling afterwards would give a step ~γs/1e-3 times smaller."""
    from torch.optim._muon import _zeropower_via_newtonschulz as ns

    from descend.optim import from_chain
    from descend.transforms import add_weight_decay, clip_by_value, scale_by_lr, scale_by_muon

    torch.manual_seed(4)
    x0, grads = torch.randn(6, 4), [torch.randn(6, 4) for _ in range(3)]
    a, b = torch.nn.Parameter(x0.clone()), torch.nn.Parameter(x0.clone())
    hps = dict(momentum=0.95, ns_coefficients=NS, ns_steps=5, eps=1e-7, weight_decay=0.1)
    folded = from_chain(
        [a],
        scale_by_muon(lr=1.0),
        scale_by_lr(),
        add_weight_decay(mode="decoupled"),
        lr=0.02,
        **hps,
    )
    muon = Muon([b], lr=0.02, weight_decay=0.1)
    for g in grads:
        a.grad, b.grad = g.clone(), g.clone()
        folded.step()
        muon.step()
    assert torch.equal(a, b)

    c = torch.nn.Parameter(x0.clone())
    clipped = from_chain([c], scale_by_muon(), clip_by_value(1e-3), lr=0.02, **hps)
    c.grad = grads[0].clone()
    clipped.step()
    look = grads[0].lerp(torch.zeros(6, 4).lerp_(grads[0], 1 - 0.95), 0.95)  # torch's M, step 1
    u = (ns(look, NS, 5, 1e-7).float() * (0.02 * math.sqrt(6 / 4))).clamp(-1e-3, 1e-3)
    assert torch.allclose(c.detach(), x0 - u, rtol=0, atol=1e-7)
    assert float(u.abs().max()) == pytest.approx(1e-3)
