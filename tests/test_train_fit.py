"""The trainer: modes, clipping, statistics, determinism, resume, divergence, EMA, accumulation."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from descend import optim, schedules, train
from descend.optim.accumulate import Accumulate
from descend.optim.weight_ema import WeightEMA


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small models: one thread avoids OpenMP stalls when the machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


CE = nn.CrossEntropyLoss()


@pytest.fixture(scope="module")
def cancer() -> train.Dataset:
    return train.load("breast-cancer")


def _quiet(**kw):
    return {"progress": False, **kw}


def test_full_batch_gd_matches_the_hand_derived_softmax_gradient(cancer) -> None:
    """For logits z = Wx + b and mean cross-entropy, ∇W = (softmax(z) − Y)ᵀX / n, ∇b = mean."""
    torch.manual_seed(0)
    model = train.logistic(cancer.n_features, 2)
    w = model.weight.detach().double().clone()
    b = model.bias.detach().double().clone()
    lr, epochs = 0.5, 6
    history = train.fit(
        model,
        CE,
        cancer.loader("train", "full"),
        torch.optim.SGD(model.parameters(), lr=lr),
        epochs=epochs,
        **_quiet(),
    )
    x, y = cancer.x_train.double(), cancer.y_train
    onehot = torch.nn.functional.one_hot(y, 2).double()
    for _ in range(epochs):
        p = torch.softmax(x @ w.T + b, dim=1)
        w -= lr * (p - onehot).T @ x / len(y)
        b -= lr * (p - onehot).mean(0)
    assert torch.allclose(model.weight.double(), w, atol=1e-5)
    assert torch.allclose(model.bias.double(), b, atol=1e-5)
    assert history.updates == epochs and len(history.steps) == epochs


def test_stochastic_and_mini_batch_modes_count_updates(cancer) -> None:
    n = len(cancer.y_train)
    for batch, drop_last, per_epoch in [
        (1, False, n),
        (32, False, -(-n // 32)),
        (32, True, n // 32),
    ]:
        model = train.logistic(cancer.n_features, 2)
        h = train.fit(
            model,
            CE,
            cancer.loader("train", batch, drop_last=drop_last),
            torch.optim.SGD(model.parameters(), lr=0.01),
            epochs=2,
            **_quiet(),
        )
        assert h.updates == 2 * per_epoch
        assert [e["update"] for e in h.epochs] == [per_epoch, 2 * per_epoch]


def test_max_updates_is_the_budget(cancer) -> None:
    model = train.logistic(cancer.n_features, 2)
    h = train.fit(
        model,
        CE,
        cancer.loader("train", 16),
        torch.optim.SGD(model.parameters(), lr=0.01),
        epochs=None,
        max_updates=50,
        **_quiet(),
    )
    assert h.updates == 50 == len(h.steps)


def test_clipping_by_norm_and_value(cancer) -> None:
    x, y = cancer.x_train[:64], cancer.y_train[:64]
    loader = [(x, y)]
    for kind, limit in (("clip_norm", 0.05), ("clip_value", 0.01)):
        torch.manual_seed(1)
        model = train.logistic(cancer.n_features, 2)
        ref = copy.deepcopy(model)
        h = train.fit(
            model,
            CE,
            loader,
            torch.optim.SGD(model.parameters(), lr=1.0),
            epochs=1,
            **_quiet(**{kind: limit}),
        )
        CE(ref(x), y).backward()
        grads = [p.grad for p in ref.parameters()]
        norm = math.sqrt(sum(float((g**2).sum()) for g in grads))
        assert h.steps[0]["grad_norm"] == pytest.approx(norm, rel=1e-5)  # recorded before clipping
        for p_new, p_old, g in zip(model.parameters(), ref.parameters(), grads):
            if kind == "clip_norm":
                assert norm > limit  # the clip is active
                expected = g * limit / norm
            else:
                assert float(g.abs().max()) > limit
                expected = g.clamp(-limit, limit)
            assert torch.allclose(p_old.detach() - p_new.detach(), expected, atol=1e-6)


def test_gradient_statistics_match_numpy(cancer) -> None:
    x, y = cancer.x_train[:40], cancer.y_train[:40]
    torch.manual_seed(2)
    model = train.mlp(cancer.n_features, (8,), 2)
    ref = copy.deepcopy(model)
    h = train.fit(model, CE, [(x, y)], torch.optim.SGD(model.parameters(), lr=0.1), **_quiet())
    CE(ref(x), y).backward()
    g = np.concatenate([p.grad.numpy().ravel() for p in ref.parameters()])
    row = h.steps[0]
    assert row["grad_mean"] == pytest.approx(g.mean(), abs=1e-7)
    assert row["grad_std"] == pytest.approx(g.std(ddof=1), rel=1e-4)
    assert row["grad_min"] == pytest.approx(g.min(), rel=1e-5)
    assert row["grad_max"] == pytest.approx(g.max(), rel=1e-5)
    assert "eff_lr_median" not in row  # plain SGD has no per-parameter rate


def _dropout_run(tmp_path, epochs: int, resume=False, checkpoint=False, kind="torch"):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 10, generator=g)
    y = (x[:, 0] + 0.3 * torch.randn(96, generator=g) > 0).long()
    # A user DataLoader: its shuffle draws from the global torch RNG, which a resume restores.
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    model = train.mlp(10, (12,), 2, dropout=0.3)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    if kind == "torch":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.5)
    else:  # descend's cosine over the run; 5 micro-batches per update, 6 batches per epoch,
        # so the checkpoint after epoch 2 falls in the middle of an accumulation
        opt = Accumulate(opt, k=5)
        sched = "cosine:steps=6,final=0.1"
    ckpt = tmp_path / f"run-{kind}.pt"
    h = train.fit(
        model,
        CE,
        loader,
        opt,
        epochs=epochs,
        val_loader=[(x[:32], y[:32])],
        schedule=sched,
        ema=0.9,
        seed=11,
        checkpoint=ckpt if checkpoint else None,
        resume=ckpt if resume else None,
        **_quiet(),
    )
    return model, opt, h


def _without_time(rows):
    return [{k: v for k, v in r.items() if k != "time"} for r in rows]


def test_same_seed_same_run(tmp_path) -> None:
    m1, _, h1 = _dropout_run(tmp_path, 2)
    m2, _, h2 = _dropout_run(tmp_path, 2)
    assert _without_time(h1.steps) == _without_time(h2.steps)
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kind", ["torch", "descend"])
def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(tmp_path, kind) -> None:
    full_model, full_opt, full = _dropout_run(tmp_path, 4, kind=kind)
    _dropout_run(tmp_path, 2, checkpoint=True, kind=kind)
    if kind == "descend":
        saved = torch.load(tmp_path / "run-descend.pt", weights_only=False)
        assert saved["optimizer"]["micro_steps"] == 2  # 12 micro-batches = 2 updates + 2
    model, opt, resumed = _dropout_run(tmp_path, 4, resume=True, kind=kind)
    for key, value in full_model.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key
    for p_full, p_res in zip(full_opt.state.values(), opt.state.values()):
        for key in p_full:
            assert torch.equal(p_full[key], p_res[key]), key
    assert opt.param_groups[0]["lr"] == full_opt.param_groups[0]["lr"] < 0.01  # schedule resumed
    assert _without_time(resumed.steps) == _without_time(full.steps)
    assert _without_time(resumed.epochs) == _without_time(full.epochs)
    assert [e["ema_val_loss"] for e in resumed.epochs] == [e["ema_val_loss"] for e in full.epochs]


def test_descend_schedule_spec_follows_the_cosine_formula(cancer) -> None:
    model = train.logistic(cancer.n_features, 2)
    loader = cancer.loader("train", 64)  # 6 batches per epoch
    h = train.fit(
        model,
        CE,
        loader,
        optim.from_spec("momentum:lr=0.2", model.parameters()),
        epochs=2,
        schedule="cosine:final=0.1",
        **_quiet(),
    )
    total = 2 * len(loader)
    expected = [0.2 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t / total))) for t in range(total)]
    assert [r["lr"] for r in h.steps] == pytest.approx(expected)


def test_divergence_stops_with_step_and_lr_and_keeps_the_history(cancer) -> None:
    torch.manual_seed(0)
    model = train.mlp(cancer.n_features, (32,), 2)
    opt = torch.optim.SGD(model.parameters(), lr=1e4)
    with pytest.warns(RuntimeWarning, match=r"loss became (nan|inf) at step \d+ .* with lr 1e\+04"):
        h = train.fit(model, CE, cancer.loader("train", 8), opt, epochs=3, **_quiet())
    assert h.diverged is not None
    step = int(h.diverged.split("at step ")[1].split()[0])
    assert len(h.steps) == step - 1 >= 1  # every finite step before it is kept
    assert all(math.isfinite(r["loss"]) for r in h.steps)


def test_ema_validation_uses_the_averaged_weights(cancer) -> None:
    torch.manual_seed(0)
    model = train.logistic(cancer.n_features, 2)
    ema = WeightEMA(model, beta=0.8)
    val = cancer.loader("val", 64)
    h = train.fit(
        model,
        CE,
        cancer.loader("train", 32),
        torch.optim.SGD(model.parameters(), lr=0.3),
        epochs=2,
        val_loader=val,
        ema=ema,
        **_quiet(),
    )
    with ema.swapped():
        loss, acc = train.evaluate(model, CE, val)
    assert h.epochs[-1]["ema_val_loss"] == pytest.approx(loss)
    assert h.epochs[-1]["ema_val_acc"] == pytest.approx(acc)
    assert h.epochs[-1]["ema_val_loss"] != pytest.approx(h.epochs[-1]["val_loss"])
    assert ema.num_updates == h.updates


def test_accumulation_inside_fit_counts_real_updates_for_the_schedule(cancer) -> None:
    model = train.logistic(cancer.n_features, 2)
    inner = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(inner, lambda u: 1.0 / (1 + u))
    opt = Accumulate(inner, k=4)
    loader = cancer.loader("train", 10, drop_last=True)  # 34 batches per epoch
    h = train.fit(model, CE, loader, opt, epochs=1, schedule=sched, **_quiet())
    assert h.updates == len(loader) // 4 == opt.updates
    lrs = [r["lr"] for r in h.steps]
    assert lrs[:4] == [1.0] * 4 and lrs[4] == pytest.approx(0.5)  # changes after the 1st update
    assert sum(1 for r in h.steps if "grad_norm" in r) == h.updates  # stats of real updates


def test_batch_norm_with_a_final_batch_of_one_is_a_clear_error() -> None:
    x, y = torch.randn(9, 4), torch.randint(0, 2, (9,))
    user_model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    loader = train.TensorLoader(x, y, 4)  # batches of 4, 4, 1
    with pytest.raises(ValueError, match=r"BatchNorm layer '1' .*LayerNorm.*drop_last=True"):
        train.fit(
            user_model, CE, loader, torch.optim.SGD(user_model.parameters(), lr=0.1), **_quiet()
        )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
        ({"epochs": None}, "give epochs or max_updates"),
        ({"clip_norm": -1.0}, "clip_norm must be a positive finite number"),
        ({"ema": 1.0}, r"ema must be a beta in \[0, 1\)"),
    ],
)
def test_bad_arguments(cancer, kwargs, message) -> None:
    model = train.logistic(cancer.n_features, 2)
    with pytest.raises(ValueError, match=message):
        train.fit(
            model,
            CE,
            cancer.loader("train"),
            torch.optim.SGD(model.parameters(), lr=0.1),
            **_quiet(**kwargs),
        )


def test_plateau_factors_are_fed_the_validation_loss_each_epoch(cancer) -> None:
    torch.manual_seed(0)  # the same initial weights whatever ran before (order-independent)
    model = train.logistic(cancer.n_features, 2)
    opt = optim.from_spec("sgd:lr=0.05", model.parameters())
    handle = schedules.attach(opt, "constant", plateau="plateau:patience=0,factor=0.5")
    h = train.fit(
        model,
        CE,
        cancer.loader("train", 32),
        opt,
        epochs=3,
        schedule=handle,
        val_loader=cancer.loader("val", 64),
        **_quiet(),
    )
    assert handle.plateau.reports == 3
    assert handle.plateau.best == pytest.approx(min(e["val_loss"] for e in h.epochs))
    # torch's ReduceLROnPlateau: lr 1e-7 improves the val loss by ~1e-5 (relative) per epoch,
    # below its 1e-4 threshold, so with patience 0 every epoch after the first halves the lr.
    torch.manual_seed(0)
    model = train.logistic(cancer.n_features, 2)
    opt = torch.optim.SGD(model.parameters(), lr=1e-7)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    h = train.fit(
        model,
        CE,
        cancer.loader("train", 32),
        opt,
        epochs=3,
        schedule=plateau,
        val_loader=cancer.loader("val", 64),
        **_quiet(),
    )
    assert [e["lr"] for e in h.epochs] == pytest.approx([1e-7, 1e-7, 5e-8], rel=1e-9)
    assert opt.param_groups[0]["lr"] == pytest.approx(2.5e-8, rel=1e-9)


def test_descend_schedule_attached_to_accumulate_counts_real_updates(cancer) -> None:
    model = train.logistic(cancer.n_features, 2)
    opt = Accumulate(optim.from_spec("sgd:lr=0.1", model.parameters()), k=3)
    handle = schedules.attach(opt, "step:step_size=1,gamma=0.5")
    h = train.fit(model, CE, cancer.loader("train", 32), opt, epochs=1, schedule=handle, **_quiet())
    assert handle.step == opt.updates == h.updates == len(cancer.loader("train", 32)) // 3
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**h.updates)


def test_progress_bar_goes_to_stderr(cancer, capsys) -> None:
    model = train.logistic(cancer.n_features, 2)
    train.fit(
        model,
        CE,
        cancer.loader("train", 64),
        torch.optim.SGD(model.parameters(), lr=0.1),
        epochs=2,
        val_loader=cancer.loader("val", 64),
        progress=True,
    )
    captured = capsys.readouterr()
    assert "epoch 2/2" in captured.err and "val acc" in captured.err
    assert captured.out == ""
