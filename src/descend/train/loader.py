"""A batch iterator over in-memory tensors: full-batch, stochastic (B = 1) and mini-batch modes.

``torch.utils.data.DataLoader`` collates sample by sample, which dominates the cost of small
models; slicing two tensors is much cheaper. The shuffle order of epoch ``e`` is a function of
``(seed, e)`` only, so every run with the same seed sees the same data order whatever its batch
size or optimizer, and a resumed run sees the order an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


class TensorLoader:
    """Iterate ``(x[idx], y[idx])`` batches.

    Args:
        x, y: tensors with the same first dimension n.
        batch_size: 1 … n, or ``None`` / ``"full"`` for one batch of all n samples.
        shuffle: a fresh permutation each epoch (``randperm`` seeded by ``(seed, epoch)``).
        drop_last: skip the final batch when it is smaller than ``batch_size``.
        seed: seed of the shuffle order.

    Each ``iter()`` uses the current epoch and then advances it; :meth:`set_epoch` sets it
    explicitly (the trainer does, like ``DistributedSampler.set_epoch``).
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int | str | None = 32,
        *,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
    ) -> None:
        n = int(x.shape[0])
        if int(y.shape[0]) != n:
            raise ValueError(f"x has {n} samples but y has {int(y.shape[0])}")
        if n == 0:
            raise ValueError("cannot batch an empty split")
        if batch_size is None or batch_size == "full":
            batch_size = n
        if isinstance(batch_size, bool) or not isinstance(batch_size, int):
            raise ValueError(
                f"batch_size must be an integer in 1..{n} or 'full', got {batch_size!r}"
            )
        if not 1 <= batch_size <= n:
            raise ValueError(
                f"batch_size must be in 1..{n} (the number of samples) or 'full', got {batch_size}"
            )
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self.epoch = 0

    @property
    def n_samples(self) -> int:
        return int(self.x.shape[0])

    def __len__(self) -> int:
        n, b = self.n_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def set_epoch(self, epoch: int) -> None:
        """Use the shuffle order of ``epoch`` on the next iteration."""
        self.epoch = int(epoch)

    def order(self, epoch: int) -> torch.Tensor:
        """The sample order of ``epoch`` (identity when not shuffling)."""
        if not self.shuffle:
            return torch.arange(self.n_samples)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n_samples, generator=gen)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.epoch
        self.epoch += 1
        if self.batch_size == self.n_samples:  # full batch: order cannot change the mean loss
            yield self.x, self.y
            return
        idx = self.order(epoch)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            take = idx[start : start + self.batch_size]
            yield self.x[take], self.y[take]

    def __repr__(self) -> str:
        return (
            f"TensorLoader(n={self.n_samples}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}, seed={self.seed})"
        )
