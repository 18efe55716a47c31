"""Comparisons: fairness (same init and data order per seed), budgets, grids, intervals, files."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from descend import train
from descend.train.compare import compare, t_interval


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small models: one thread avoids OpenMP stalls when the machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cancer() -> train.Dataset:
    return train.load("breast-cancer")


def _small(cancer, **kw):
    options = dict(model="logistic", seeds=2, epochs=2, dataset=cancer)
    options.update(kw)
    return compare("breast-cancer", **options)


def test_same_seed_same_start_and_data_order(cancer) -> None:
    # Plain SGD written two ways (momentum 0 is the same update): with the same initial
    # weights and the same batches they must produce identical runs, seed by seed.
    cmp = _small(cancer, optimizers=["sgd:lr=0.1", "sgd:lr=0.1,momentum=0"], seeds=[3, 4])
    runs = cmp.runs
    for seed in (3, 4):
        a, b = runs[runs["seed"] == seed].iloc[0], runs[runs["seed"] == seed].iloc[1]
        assert a["final_val_loss"] == b["final_val_loss"]
        assert a["test_acc"] == b["test_acc"]
    start = cmp.curves[cmp.curves["update"] == 0]
    by_seed = start.groupby("seed")["val_loss"].nunique()
    assert (by_seed == 1).all()  # every configuration starts from the same weights per seed
    assert start.groupby("seed")["val_loss"].first().nunique() == 2  # seeds differ


def test_summary_means_and_t_intervals_by_hand(cancer) -> None:
    cmp = _small(cancer, optimizers=["adam:lr=0.01"], seeds=3)
    values = cmp.runs["final_val_loss"].to_numpy()
    row = cmp.summary().iloc[0]
    t_975_2 = 4.302652729911275  # Student t, 2 degrees of freedom, 97.5th percentile
    assert row["final_val_loss"] == pytest.approx(values.mean())
    assert row["final_val_loss_ci"] == pytest.approx(t_975_2 * values.std(ddof=1) / math.sqrt(3))
    assert t_interval([1.0, math.nan, 3.0])[2] == 2  # NaN (diverged) runs are left out


def test_epoch_and_update_budgets(cancer) -> None:
    n = len(cancer.y_train)
    by_epochs = _small(cancer, optimizers=["sgd:lr=0.1"], batch_sizes=[16, "full"], epochs=3)
    updates = dict(zip(by_epochs.runs["batch_size"], by_epochs.runs["updates"]))
    assert updates == {16: 3 * -(-n // 16), "full": 3}
    by_updates = _small(
        cancer, optimizers=["sgd:lr=0.1"], batch_sizes=[16, 64], epochs=None, updates=25
    )
    assert (by_updates.runs["updates"] == 25).all()
    assert "25 updates per run" in by_updates.budget_text()


def test_linear_scaling_rule(cancer) -> None:
    cmp = _small(
        cancer,
        optimizers=["sgd:lr=0.02"],
        batch_sizes=[8, 32, 128],
        scale_lr="linear",
        seeds=1,
        epochs=1,
    )
    lrs = dict(zip(cmp.runs["batch_size"], cmp.runs["lr"]))
    assert lrs == pytest.approx({8: 0.005, 32: 0.02, 128: 0.08})


def test_grid_is_run_in_full_and_the_best_is_selected(cancer) -> None:
    cmp = _small(
        cancer,
        optimizers=["sgd", "adam"],
        lr_grid={"sgd": [0.01, 0.3], "adam": [1e-3]},
        grid={"weight_decay": [0.0, 0.1]},
        seeds=2,
    )
    assert len(cmp.runs) == (2 * 2 + 1 * 2) * 2
    assert cmp.config["grid_size"] == [2, 4]
    summary = cmp.summary()
    for _, fam in summary.groupby("family"):
        assert fam["selected"].sum() == 1
        assert fam.loc[fam["selected"], "final_val_acc"].item() == fam["final_val_acc"].max()
    by_hand = cmp.runs.groupby("label")["final_val_acc"].mean()
    assert summary.set_index("label")["final_val_acc"].to_dict() == pytest.approx(by_hand.to_dict())


def test_time_to_target_is_the_first_evaluation_reaching_it(cancer) -> None:
    cmp = _small(cancer, optimizers=["sgd:lr=0.5"], seeds=1, epochs=3, target_accuracy=0.9)
    run = cmp.runs.iloc[0]
    curve = cmp.curves[cmp.curves["label"] == run["label"]]
    hit = curve[curve["val_acc"] >= 0.9].iloc[0]
    assert run["reached"]
    assert run["updates_to_target"] == hit["update"]
    assert run["time_to_target"] == hit["time"]


def test_diverged_runs_are_counted_not_averaged(cancer) -> None:
    with pytest.warns(RuntimeWarning, match="loss became"):
        cmp = _small(cancer, optimizers=["sgd:lr=1e30"], model="mlp", seeds=2, epochs=2)
    row = cmp.summary().iloc[0]
    assert row["diverged"] == 2
    assert math.isnan(row["final_val_loss"])


def test_files(cancer, tmp_path) -> None:
    cmp = _small(cancer, optimizers=["sgd:lr=0.1"], batch_sizes=[16, 64], lr_grid=[0.05, 0.2])
    paths = cmp.save(tmp_path, prefix="t")
    names = sorted(p.name for p in paths)
    assert names == sorted(
        [
            "t_runs.csv",
            "t_summary.csv",
            "t_curves.csv",
            "t.json",
            "t_curves.png",
            "t_accuracy_vs_batch.png",
            "t_loss_vs_lr.png",
        ]
    )
    assert all(p.stat().st_size > 0 for p in paths)
    assert len(pd.read_csv(tmp_path / "t_runs.csv")) == len(cmp.runs)
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["budget"] == cmp.budget_text() and data["config"]["n_runs"] == 8
    assert np.isclose(
        pd.read_csv(tmp_path / "t_summary.csv")["final_val_acc"],
        cmp.summary()["final_val_acc"],
    ).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"optimizers": ["adamx"]}, "unknown optimizer 'adamx'; available: sgd, momentum"),
        ({"batch_sizes": [10_000]}, r"batch size 10000 does not fit the 341 .* choose 1\.\.341"),
        ({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
        ({"epochs": 2, "updates": 5}, "exactly one budget"),
        ({"model": "resnet"}, "unknown model 'resnet'; valid choices: logistic, mlp, cnn"),
    ],
)
def test_bad_arguments(cancer, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        _small(cancer, **kwargs)


def test_unknown_task_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown task 'imagenet'; valid choices: breast-cancer"):
        compare("imagenet")


def test_schedules_are_compared_as_configurations(cancer) -> None:
    cmp = _small(
        cancer, optimizers=["sgd:lr=0.5"], schedules=[None, "cosine:final=0.0"], seeds=1, epochs=2
    )
    assert list(cmp.runs["label"]) == ["sgd:lr=0.5 B=32", "sgd:lr=0.5 B=32 cosine:final=0.0"]
    assert cmp.summary()["selected"].sum() == 2  # two families, nothing to select between
    constant, cosine = cmp.runs["final_val_loss"]
    assert constant != cosine


def test_your_own_model_and_data() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 5, generator=g)
    y = (x[:, 0] - x[:, 1] > 0).long()
    ds = train.Dataset.from_tensors("mine", (x[:200], y[:200]), (x[200:], y[200:]))
    assert ds.n_classes == 2 and "validation split" in ds.info["test"]
    built = []

    def my_model() -> torch.nn.Module:
        net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
        built.append(net[0].weight.detach().clone())
        return net

    cmp = compare(
        "mine", ["sgd:lr=0.5", "adam:lr=0.01"], model=my_model, dataset=ds, seeds=2, epochs=3
    )
    assert cmp.config["model"] == "my_model" and cmp.config["task"] == "mine"
    assert len(built) == 4 and torch.equal(built[0], built[1])  # same start within a seed
    assert not torch.equal(built[0], built[2])
    assert (cmp.runs["final_val_acc"] > 0.85).all()  # a separable task, really learnt
