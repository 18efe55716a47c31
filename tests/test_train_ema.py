"""EMA of weights: the recurrence, the swap for evaluation, buffers, and real updates only."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from descend.optim.accumulate import Accumulate
from descend.optim.weight_ema import WeightEMA


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small models: one thread avoids OpenMP stalls when the machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_shadow_follows_the_recurrence_written_out_by_hand() -> None:
    w = torch.tensor([1.0, -2.0])
    ema = WeightEMA([w], beta=0.9)
    values = [[3.0, 0.0], [5.0, 4.0], [-1.0, 2.0]]
    expected = [1.0, -2.0]
    for v in values:
        w.copy_(torch.tensor(v))
        ema.update()
        expected = [0.9 * e + 0.1 * x for e, x in zip(expected, v)]
    assert ema.shadow[0].tolist() == pytest.approx(expected, abs=1e-6)
    assert ema.num_updates == 3
    assert w.tolist() == [-1.0, 2.0]  # the live weights are untouched


def test_swapped_puts_the_average_in_and_restores_even_after_an_error() -> None:
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    ema = WeightEMA(net, beta=0.5)
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update()
    live = net.weight.detach().clone()
    average = ema.shadow[0].clone()
    assert torch.allclose(average, live - 0.5)  # ½·θ₀ + ½·(θ₀ + 1)
    with pytest.raises(RuntimeError):
        with ema.swapped():
            assert torch.equal(net.weight, average)
            raise RuntimeError("evaluation failed")
    assert torch.equal(net.weight, live)


def test_floating_buffers_are_averaged_integer_buffers_left_alone() -> None:
    net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    ema = WeightEMA(net, beta=0.0)  # β = 0: the shadow is the latest value
    net.train()
    net(torch.randn(8, 4) + 3.0)
    ema.update()
    bn = net[1]
    tracked = bn.num_batches_tracked.clone()
    with ema.swapped():
        assert torch.equal(bn.running_mean, ema.shadow[-2])
        assert torch.equal(bn.num_batches_tracked, tracked)
    without = WeightEMA(net, beta=0.5, include_buffers=False)
    assert len(without.shadow) == len(list(net.parameters()))


def test_attached_to_accumulate_it_counts_real_updates_only() -> None:
    net = nn.Linear(3, 1)
    opt = Accumulate(torch.optim.SGD(net.parameters(), lr=0.1), k=3)
    ema = WeightEMA(net, beta=0.9)
    ema.attach(opt)
    for _ in range(7):
        opt.zero_grad()
        net(torch.ones(2, 3)).sum().backward()
        opt.step()
    assert ema.num_updates == 2 == opt.updates


def test_state_dict_round_trip() -> None:
    net = nn.Linear(3, 2)
    ema = WeightEMA(net, beta=0.8)
    with torch.no_grad():
        net.bias.fill_(4.0)
    ema.update()
    other = WeightEMA(nn.Linear(3, 2), beta=0.1)
    other.load_state_dict(ema.state_dict())
    assert other.beta == 0.8 and other.num_updates == 1
    assert all(torch.equal(a, b) for a, b in zip(other.shadow, ema.shadow))


@pytest.mark.parametrize("beta", [1.0, -0.1, 1.5])
def test_bad_beta_names_the_range(beta: float) -> None:
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\)"):
        WeightEMA(nn.Linear(2, 2), beta=beta)
