"""Gradient accumulation: k micro-batches of B equal one batch of k·B (no BatchNorm)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from descend import optim
from descend.optim.accumulate import Accumulate


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small models: one thread avoids OpenMP stalls when the machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 3))


def _data(n: int = 96, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 12, generator=g), torch.randint(0, 3, (n,), generator=g)


OPTIMIZERS = {
    "sgd-momentum": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=0.01),
    "descend-adam": lambda p: optim.Adam(p, lr=0.01),
    "descend-nesterov": lambda p: optim.from_spec("nesterov:lr=0.1", p),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("k", [2, 4])
def test_k_micro_batches_equal_one_big_batch(name: str, k: int) -> None:
    x, y = _data()
    big_batch = 24
    micro = big_batch // k
    loss_fn = nn.CrossEntropyLoss()

    big = _net()
    small = copy.deepcopy(big)
    opt_big = OPTIMIZERS[name](big.parameters())
    opt_small = Accumulate(OPTIMIZERS[name](small.parameters()), k=k)

    for start in range(0, len(y), big_batch):
        opt_big.zero_grad()
        loss_fn(big(x[start : start + big_batch]), y[start : start + big_batch]).backward()
        opt_big.step()
        for s in range(start, start + big_batch, micro):
            opt_small.zero_grad()
            loss_fn(small(x[s : s + micro]), y[s : s + micro]).backward()
            opt_small.step()

    assert opt_small.updates == len(y) // big_batch
    assert opt_small.micro_steps == 0
    for a, b in zip(big.parameters(), small.parameters()):
        assert torch.allclose(a, b, atol=1e-6, rtol=0), (a - b).abs().max()
    # The parameters really moved (the comparison is not between two untouched copies).
    assert not torch.allclose(next(big.parameters()), next(_net().parameters()))


def test_average_false_sums_the_gradients() -> None:
    x, y = _data(8)
    net = _net()
    ref = copy.deepcopy(net)
    opt = Accumulate(torch.optim.SGD(net.parameters(), lr=0.05), k=2, average=False)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.05)
    loss_sum = nn.CrossEntropyLoss(reduction="sum")
    for half in (slice(0, 4), slice(4, 8)):
        opt.zero_grad()
        loss_sum(net(x[half]), y[half]).backward()
        opt.step()
    ref_opt.zero_grad()
    loss_sum(ref(x), y).backward()  # the gradient of a sum is the sum of the gradients
    ref_opt.step()
    for a, b in zip(net.parameters(), ref.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_no_update_until_kth_step_and_hooks_see_real_updates_only() -> None:
    x, y = _data(12)
    net = _net()
    before = [p.detach().clone() for p in net.parameters()]
    opt = Accumulate(torch.optim.SGD(net.parameters(), lr=0.1), k=3)
    calls: list[str] = []
    opt.register_step_pre_hook(lambda *_: calls.append("pre"))
    opt.register_step_post_hook(lambda *_: calls.append("post"))
    for i in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[i * 4 : i * 4 + 4]), y[i * 4 : i * 4 + 4]).backward()
        assert opt.accumulating
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert calls == []
    opt.zero_grad()
    nn.functional.cross_entropy(net(x[8:]), y[8:]).backward()
    opt.step()
    assert calls == ["pre", "post"]
    assert not all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_torch_scheduler_on_the_wrapper_sets_the_shared_lr() -> None:
    net = _net()
    opt = Accumulate(torch.optim.SGD(net.parameters(), lr=1.0), k=2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    opt.step()
    opt.step()  # the second call is the real (gradient-free) update
    sched.step()
    assert opt.optimizer.param_groups[0]["lr"] == pytest.approx(0.5)


def test_flush_applies_a_partial_average() -> None:
    x, y = _data(8)
    net = _net()
    ref = copy.deepcopy(net)
    opt = Accumulate(torch.optim.SGD(net.parameters(), lr=0.1), k=4)
    for half in (slice(0, 4), slice(4, 8)):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[half]), y[half]).backward()
        opt.step()
    assert opt.updates == 0
    assert opt.flush() is True
    assert opt.flush() is False
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    nn.functional.cross_entropy(ref(x), y).backward()
    ref_opt.step()
    for a, b in zip(net.parameters(), ref.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_state_dict_round_trip_in_the_middle_of_an_accumulation() -> None:
    x, y = _data(24)

    def run(split: bool) -> list[torch.Tensor]:
        net = _net()
        opt = Accumulate(torch.optim.Adam(net.parameters(), lr=0.01), k=3)
        for i in range(6):
            if split and i == 4:  # one micro-batch into the second accumulation
                saved_net, saved_opt = copy.deepcopy(net.state_dict()), opt.state_dict()
                net = _net(seed=5)
                net.load_state_dict(saved_net)
                opt = Accumulate(torch.optim.Adam(net.parameters(), lr=0.01), k=3)
                opt.load_state_dict(copy.deepcopy(saved_opt))
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[i * 4 : i * 4 + 4]), y[i * 4 : i * 4 + 4]).backward()
            opt.step()
        return [p.detach().clone() for p in net.parameters()]

    for a, b in zip(run(False), run(True)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("k", [0, -1, 2.0, True])
def test_bad_k_is_rejected_with_the_range(k) -> None:
    net = _net()
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        Accumulate(torch.optim.SGD(net.parameters(), lr=0.1), k=k)
