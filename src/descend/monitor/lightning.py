"""The monitor as a Lightning ``Callback``::

    from descend.monitor.lightning import MonitorCallback
    trainer = lightning.Trainer(callbacks=[MonitorCallback(every=10, log="runs/exp1")])

It attaches a :class:`~descend.monitor.Monitor` to the first optimizer when training starts
(the LightningModule gives the layer names), logs the training loss of every optimizer step and
closes the sinks when training ends; the tags are the same as in a plain loop. With
``log=None`` it writes to the trainer's own loggers (``trainer.loggers``) instead.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from descend.monitor.core import Monitor


class _LoggerSink:
    """Forward the monitor's scalars to Lightning's loggers (TensorBoard, MLflow, CSV …)."""

    def __init__(self, trainer: pl.Trainer) -> None:
        self.trainer = trainer

    def write(self, step: int, scalars: dict[str, float]) -> None:
        for logger in self.trainer.loggers:
            logger.log_metrics(dict(scalars), step=step)

    def close(self) -> None:
        for logger in self.trainer.loggers:
            logger.save()


class MonitorCallback(pl.Callback):
    """A Lightning callback around :class:`~descend.monitor.Monitor`; ``options`` (``every``,
    ``log``, ``layers``, ``batch_size``, ``source`` …) are the monitor's. ``self.monitor`` is
    the live monitor (``callback.monitor.frame()`` after ``fit``)."""

    def __init__(self, every: int = 10, log: Any = None, **options: Any) -> None:
        super().__init__()
        self.every, self._log, self.options = every, log, options
        self.monitor: Monitor | None = None
        self._last_step = -1

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.optimizers:
            raise ValueError("MonitorCallback: the LightningModule configured no optimizer")
        optimizer = trainer.optimizers[0]
        log = self._log if self._log is not None else _LoggerSink(trainer)
        self.monitor = Monitor(optimizer, pl_module, every=self.every, log=log, **self.options)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self.monitor is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        step = self.monitor.steps
        if loss is not None and step != self._last_step:  # once per optimizer step
            self.monitor.log_loss(loss, step=step)
            self._last_step = step

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.monitor is not None:
            self.monitor.close()
