"""The monitor as a Hugging Face ``TrainerCallback``::

    from descend.monitor.hf import MonitorCallback
    trainer = transformers.Trainer(model, args, train_dataset=ds,
                                   callbacks=[MonitorCallback(every=10, log="runs/exp1")])

It attaches a :class:`~descend.monitor.Monitor` to the Trainer's optimizer (unwrapping
Accelerate's ``AcceleratedOptimizer``) when training begins, takes the batch size per device
for the noise scale, logs the Trainer's ``loss`` (at its ``logging_steps``) and closes the
sinks when training ends. The Trainer clips at ``max_grad_norm`` before the optimizer step and
accumulates ``gradient_accumulation_steps`` backward passes, so ``grad_norm_preclip``,
``clipped`` and the noise scale are measured as in a plain loop; the tags are the same.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from descend.monitor.core import Monitor


def _unwrap(optimizer: Any) -> Any:
    # accelerate.optimizer.AcceleratedOptimizer keeps the real optimizer in .optimizer.
    while type(optimizer).__module__.startswith("accelerate") and hasattr(optimizer, "optimizer"):
        optimizer = optimizer.optimizer
    return optimizer


class MonitorCallback(TrainerCallback):
    """A Trainer callback around :class:`~descend.monitor.Monitor`; ``options`` are the
    monitor's (``every``, ``log``, ``layers``, ``batch_size`` …). ``self.monitor`` is the live
    monitor."""

    def __init__(self, every: int = 10, log: Any = None, **options: Any) -> None:
        self.every, self._log, self.options = every, log, options
        self.monitor: Monitor | None = None

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if optimizer is None:
            raise ValueError("MonitorCallback: the Trainer has no optimizer at train begin")
        options = dict(self.options)
        options.setdefault("batch_size", int(args.per_device_train_batch_size))
        self.monitor = Monitor(
            _unwrap(optimizer), model, every=self.every, log=self._log, **options
        )

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.monitor is not None and logs and "loss" in logs:
            self.monitor.log_loss(float(logs["loss"]), step=state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if self.monitor is not None:
            self.monitor.close()
