"""Datasets that need no network: scikit-learn's bundled sets and a generated "cat vs dog" task.

Every task returns a :class:`Dataset` with fixed, seeded, stratified train/validation/test
splits, standardised with the *training* mean and standard deviation (features that are
constant in the training split are only centred). Tasks:

``digits``         8×8 handwritten digits, 10 classes, 1,797 images (64 pixel features).
``digits-binary``  two digit classes from ``digits`` (default 3 vs 8, which look alike).
``breast-cancer``  Wisconsin breast cancer, 2 classes, 569 samples, 30 tabular features.
``wine``           3 cultivars, 178 samples, 13 features.
``cat-dog``        the notes' shape (1,000 features, 2 classes) but with labels that really
                   depend on the features; see :func:`cat_dog`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from descend.train.loader import TensorLoader

SPLIT_FRACTIONS = (0.6, 0.2, 0.2)  # train, validation, test


@dataclass(frozen=True)
class Dataset:
    """Standardised tensors for one task, split into train / validation / test.

    ``x_*`` are float32 of shape (n, n_features); ``y_*`` are int64 class indices.
    ``image_shape`` is (channels, height, width) for image tasks, else ``None``.
    ``info`` holds task facts (for ``cat-dog``: the SNR and the Bayes accuracy).
    ``indices`` maps each split to its row numbers in the source data (before splitting).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    image_shape: tuple[int, int, int] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    indices: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @classmethod
    def from_tensors(
        cls,
        name: str,
        train: tuple[Any, Any],
        val: tuple[Any, Any],
        test: tuple[Any, Any] | None = None,
        n_classes: int | None = None,
    ) -> Dataset:
        """Your own data as a Dataset (no standardisation is applied; do it yourself).

        Each split is ``(x, y)`` (tensors or arrays, x with samples along the first axis).
        Without ``test`` the validation split doubles as the test split (``info`` says so).
        ``n_classes`` defaults to max(y_train) + 1 for integer labels, else 0.
        """

        def pair(split: tuple[Any, Any], what: str) -> tuple[torch.Tensor, torch.Tensor]:
            x, y = (torch.as_tensor(v) for v in split)
            if x.shape[0] != y.shape[0] or x.shape[0] == 0:
                raise ValueError(
                    f"{what}: x and y need the same non-zero number of samples, got "
                    f"{x.shape[0]} and {y.shape[0]}"
                )
            return (x.float() if x.is_floating_point() else x), y

        info: dict[str, Any] = {}
        xtr, ytr = pair(train, "train")
        xva, yva = pair(val, "val")
        if test is None:
            xte, yte = xva, yva
            info["test"] = "the validation split (no test split given)"
        else:
            xte, yte = pair(test, "test")
        if n_classes is None:
            n_classes = 0 if ytr.is_floating_point() else int(ytr.max()) + 1
        return cls(name, xtr, ytr, xva, yva, xte, yte, n_classes, None, info)

    def split(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of the ``"train"``, ``"val"`` or ``"test"`` split."""
        if which not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {which!r}")
        return getattr(self, f"x_{which}"), getattr(self, f"y_{which}")

    def loader(
        self,
        which: str = "train",
        batch_size: int | str | None = 32,
        *,
        shuffle: bool | None = None,
        drop_last: bool = False,
        seed: int = 0,
    ) -> TensorLoader:
        """Batches of one split; ``batch_size=None`` or ``"full"`` gives full-batch mode.

        Shuffling defaults to on for ``train`` and off otherwise; the order of epoch ``e``
        depends only on ``(seed, e)``, so runs with the same seed see the same data order.
        """
        x, y = self.split(which)
        if shuffle is None:
            shuffle = which == "train"
        return TensorLoader(x, y, batch_size, shuffle=shuffle, drop_last=drop_last, seed=seed)

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={len(self.y_train)}, val={len(self.y_val)}, "
            f"test={len(self.y_test)}, features={self.n_features}, classes={self.n_classes})"
        )


def _stratified_split(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices for train/val/test, class by class, in the proportions of SPLIT_FRACTIONS."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_train = round(SPLIT_FRACTIONS[0] * len(idx))
        n_val = round(SPLIT_FRACTIONS[1] * len(idx))
        parts[0].append(idx[:n_train])
        parts[1].append(idx[n_train : n_train + n_val])
        parts[2].append(idx[n_train + n_val :])
    return tuple(np.sort(np.concatenate(p)) for p in parts)  # type: ignore[return-value]


def _make(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    seed: int,
    n_classes: int,
    image_shape: tuple[int, int, int] | None = None,
    info: dict[str, Any] | None = None,
) -> Dataset:
    train, val, test = _stratified_split(y, seed)
    mean = x[train].mean(axis=0)
    std = x[train].std(axis=0)
    std[std == 0] = 1.0  # constant pixels (digits' corners): centre only
    z = ((x - mean) / std).astype(np.float32)
    t = y.astype(np.int64)

    def tensors(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(z[idx].copy()), torch.from_numpy(t[idx].copy())

    (xtr, ytr), (xva, yva), (xte, yte) = tensors(train), tensors(val), tensors(test)
    indices = {"train": train, "val": val, "test": test}
    return Dataset(
        name, xtr, ytr, xva, yva, xte, yte, n_classes, image_shape, dict(info or {}), indices
    )


def digits(seed: int = 0) -> Dataset:
    """scikit-learn's 8×8 digits, 10 classes (pixels standardised per position)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return _make("digits", bunch.data, bunch.target, seed, 10, (1, 8, 8))


def digits_binary(seed: int = 0, pair: tuple[int, int] = (3, 8)) -> Dataset:
    """Two digit classes as a binary image task; label 0 = ``pair[0]``, 1 = ``pair[1]``."""
    a, b = (int(v) for v in pair)
    if a == b or not (0 <= a <= 9 and 0 <= b <= 9):
        raise ValueError(f"pair must be two different digits in 0..9, got {pair!r}")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    keep = (bunch.target == a) | (bunch.target == b)
    y = (bunch.target[keep] == b).astype(np.int64)
    return _make("digits-binary", bunch.data[keep], y, seed, 2, (1, 8, 8), {"pair": [a, b]})


def breast_cancer(seed: int = 0) -> Dataset:
    """Wisconsin diagnostic breast cancer: 30 features, malignant (0) vs benign (1)."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    return _make("breast-cancer", bunch.data, bunch.target, seed, 2)


def wine(seed: int = 0) -> Dataset:
    """Wine recognition: 13 chemical features, 3 cultivars."""
    from sklearn.datasets import load_wine

    bunch = load_wine()
    return _make("wine", bunch.data, bunch.target, seed, 3)


def cat_dog_bayes_accuracy(snr: float) -> float:
    """Best possible accuracy on :func:`cat_dog`: P(sign(s·z + ε) = sign(z)) = ½ + arctan(s)/π.

    For z, ε independent N(0, 1) the angle of (z, ε) is uniform, and the two signs agree unless
    the angle falls in a wedge of total width 2·(π/2 − arctan s).
    """
    return 0.5 + math.atan(snr) / math.pi


def cat_dog(
    seed: int = 0,
    n_samples: int = 8000,
    n_features: int = 1000,
    informative: int = 100,
    snr: float = 2.0,
) -> Dataset:
    """Generated "cat vs dog" features whose labels really depend on them.

    x ~ N(0, I) in ``n_features`` dimensions. A fixed teacher direction w (unit norm, non-zero
    on the first ``informative`` features only) gives the clean score z = w·x ~ N(0, 1), and

        y = 1[snr·z + ε > 0],   ε ~ N(0, 1),

    so ``snr`` sets how much of the label is signal: accuracy can reach at most
    ½ + arctan(snr)/π (0.852 for the default 2.0), and 0.5 for ``snr = 0``. The other features
    are pure noise that a model can overfit. The default size (8,000 samples → 4,800 for
    training) makes one full-batch MLP step cost milliseconds, so timings measure compute
    rather than Python overhead.
    """
    if n_samples < 30:
        raise ValueError(
            f"n_samples must be >= 30 (train/val/test all need samples), got {n_samples}"
        )
    if n_features < 1:
        raise ValueError(f"n_features must be >= 1, got {n_features}")
    if not 1 <= informative <= n_features:
        raise ValueError(f"informative must be in 1..n_features={n_features}, got {informative}")
    if not (snr >= 0 and math.isfinite(snr)):
        raise ValueError(f"snr must be a finite number >= 0, got {snr}")
    rng = np.random.default_rng([seed, 2024])
    x = rng.standard_normal((n_samples, n_features), dtype=np.float32)
    w = np.zeros(n_features)
    w[:informative] = rng.standard_normal(informative)
    w /= np.linalg.norm(w)
    z = x.astype(np.float64) @ w
    y = (snr * z + rng.standard_normal(n_samples) > 0).astype(np.int64)
    info = {
        "snr": snr,
        "informative": informative,
        "bayes_accuracy": cat_dog_bayes_accuracy(snr),
    }
    return _make("cat-dog", x, y, seed, 2, None, info)


TASKS: dict[str, Callable[..., Dataset]] = {
    "digits": digits,
    "digits-binary": digits_binary,
    "breast-cancer": breast_cancer,
    "wine": wine,
    "cat-dog": cat_dog,
}


def available() -> list[str]:
    """Names accepted by :func:`load`."""
    return sorted(TASKS)


def load(name: str, seed: int = 0, **options: Any) -> Dataset:
    """Load task ``name`` with split seed ``seed``; ``options`` go to the task (e.g. ``snr``)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid choices: {', '.join(available())}")
    return TASKS[name](seed=seed, **options)
