"""Offline datasets, splits, standardisation and the batch iterator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from descend import train
from descend.train.data import cat_dog_bayes_accuracy
from descend.train.loader import TensorLoader


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small models: one thread avoids OpenMP stalls when the machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SKLEARN = {"digits": load_digits, "breast-cancer": load_breast_cancer, "wine": load_wine}


@pytest.mark.parametrize("name", sorted(SKLEARN))
def test_sklearn_tasks_split_and_standardise_like_standard_scaler(name: str) -> None:
    bunch = SKLEARN[name]()
    ds = train.load(name)
    idx = ds.indices
    together = np.concatenate([idx["train"], idx["val"], idx["test"]])
    assert sorted(together.tolist()) == list(range(len(bunch.target)))  # disjoint, complete
    assert len(idx["train"]) == pytest.approx(
        0.6 * len(bunch.target), abs=len(np.unique(bunch.target))
    )
    scaler = StandardScaler().fit(bunch.data[idx["train"]])
    for split in ("train", "val", "test"):
        x, y = ds.split(split)
        assert np.allclose(x.numpy(), scaler.transform(bunch.data[idx[split]]), atol=1e-4)
        assert np.array_equal(y.numpy(), bunch.target[idx[split]])
    assert ds.n_classes == len(np.unique(bunch.target))
    # Stratified: each class's share of the training split matches its share overall.
    overall = np.bincount(bunch.target) / len(bunch.target)
    in_train = np.bincount(ds.y_train.numpy()) / len(ds.y_train)
    assert np.abs(overall - in_train).max() < 0.02


def test_splits_are_fixed_by_the_seed() -> None:
    a, b, c = train.load("wine", seed=3), train.load("wine", seed=3), train.load("wine", seed=4)
    assert np.array_equal(a.indices["train"], b.indices["train"])
    assert torch.equal(a.x_val, b.x_val)
    assert not np.array_equal(a.indices["train"], c.indices["train"])


def test_digits_binary_keeps_the_two_classes() -> None:
    bunch = load_digits()
    ds = train.load("digits-binary", pair=(3, 8))
    n = int(((bunch.target == 3) | (bunch.target == 8)).sum())
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == n
    assert ds.n_classes == 2 and set(ds.y_train.tolist()) == {0, 1}
    assert ds.image_shape == (1, 8, 8)
    with pytest.raises(ValueError, match="pair must be two different digits"):
        train.load("digits-binary", pair=(3, 3))


def test_cat_dog_bayes_accuracy_formula_matches_simulation() -> None:
    rng = np.random.default_rng(0)
    z, eps = rng.standard_normal((2, 400_000))
    for snr in (0.0, 0.5, 2.0):
        agree = np.mean((snr * z + eps > 0) == (z > 0))
        assert agree == pytest.approx(cat_dog_bayes_accuracy(snr), abs=3e-3)
    assert cat_dog_bayes_accuracy(2.0) == pytest.approx(0.5 + math.atan(2.0) / math.pi)


def test_cat_dog_labels_depend_on_the_features_as_the_snr_says() -> None:
    def val_accuracy(snr: float) -> float:
        ds = train.load("cat-dog", n_samples=3000, n_features=40, informative=10, snr=snr)
        clf = LogisticRegression(max_iter=500).fit(ds.x_train.numpy(), ds.y_train.numpy())
        return clf.score(ds.x_val.numpy(), ds.y_val.numpy())

    clean, none = val_accuracy(5.0), val_accuracy(0.0)
    assert clean > cat_dog_bayes_accuracy(5.0) - 0.05  # near the best possible, 0.937
    assert abs(none - 0.5) < 0.06  # no signal: chance
    ds = train.load("cat-dog")
    assert ds.n_features == 1000 and ds.n_classes == 2
    assert len(ds.y_train) == 4800


def test_unknown_task_lists_the_choices() -> None:
    with pytest.raises(
        ValueError, match="unknown task 'mnist'; valid choices: breast-cancer, cat-dog"
    ):
        train.load("mnist")


def test_tensor_loader_modes_and_shared_order() -> None:
    x = torch.arange(10.0).unsqueeze(1)
    y = torch.arange(10)
    full = TensorLoader(x, y, "full")
    assert len(full) == 1 and [len(b) for b, _ in full] == [10]
    sgd = TensorLoader(x, y, 1, seed=7)
    assert len(sgd) == 10
    mini = TensorLoader(x, y, 4, seed=7)
    assert [len(b) for _, b in mini] == [4, 4, 2]
    assert len(TensorLoader(x, y, 4, drop_last=True)) == 2
    # Same seed, same epoch: the same order whatever the batch size.
    sgd.set_epoch(3)
    mini.set_epoch(3)
    order_1 = torch.cat([b for _, b in sgd])
    order_4 = torch.cat([b for _, b in mini])
    assert torch.equal(order_1, order_4)
    assert sorted(order_1.tolist()) == list(range(10))
    # A new epoch reshuffles; iterating advances the epoch.
    assert not torch.equal(torch.cat([b for _, b in mini]), order_4)
    assert torch.equal(torch.cat([b for _, b in TensorLoader(x, y, 3, shuffle=False)]), y)


@pytest.mark.parametrize("batch_size", [0, 11, 2.5])
def test_tensor_loader_rejects_bad_batch_sizes(batch_size) -> None:
    with pytest.raises(ValueError, match=r"batch_size must be .*1\.\.10"):
        TensorLoader(torch.zeros(10, 1), torch.zeros(10), batch_size)
