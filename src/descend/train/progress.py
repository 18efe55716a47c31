"""A rich progress bar for training (on stderr, so stdout stays clean for tables and CSV)."""

from __future__ import annotations

from typing import Any


class TrainingProgress:
    """Progress over all steps of a run; does nothing when ``enabled`` is false."""

    def __init__(
        self,
        enabled: bool,
        epochs: int | None,
        batches_per_epoch: int | None,
        max_updates: int | None,
    ) -> None:
        self.enabled = enabled
        self.epochs = epochs
        total = None
        if epochs is not None and batches_per_epoch is not None:
            total = epochs * batches_per_epoch
        if max_updates is not None and (total is None or max_updates < total):
            total = max_updates
        self.total = total
        self._bar = None
        self._task = None
        self._val = ""

    def __enter__(self) -> TrainingProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[metrics]}"),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("training", total=self.total, metrics="")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def _describe(self, epoch: int) -> str:
        of = f"/{self.epochs}" if self.epochs is not None else ""
        return f"epoch {epoch + 1}{of}"

    def step(self, epoch: int, row: dict[str, Any], evaluated: dict[str, Any] | None) -> None:
        if self._bar is None:
            return
        if evaluated is not None:
            self._val = _val_text(evaluated)
        metrics = f"loss {row['loss']:.4f}  lr {row['lr']:.3g}  {self._val}"
        self._bar.update(self._task, advance=1, description=self._describe(epoch), metrics=metrics)

    def epoch_done(self, epoch: int, row: dict[str, Any]) -> None:
        if self._bar is None:
            return
        self._val = _val_text(row)
        metrics = f"train loss {row['train_loss']:.4f}  {self._val}"
        self._bar.update(self._task, description=self._describe(epoch), metrics=metrics)

    def note(self, message: str) -> None:
        if self._bar is not None:
            self._bar.console.print(f"[bold red]{message}[/]")


def _val_text(row: dict[str, Any]) -> str:
    parts = []
    if row.get("val_loss") is not None:
        parts.append(f"val loss {row['val_loss']:.4f}")
    if row.get("val_acc") is not None:
        parts.append(f"val acc {row['val_acc']:.3f}")
    return "  ".join(parts)
