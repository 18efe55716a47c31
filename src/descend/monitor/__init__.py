"""See through the optimizer in your own training: ``monitor(opt, model, every=10, log=...)``.

One line attaches a :class:`Monitor` to any optimizer (descend's or torch.optim's); every k-th
step it writes the learning rate, effective per-coordinate learning rates, update-to-weight
ratios, gradient norms before and after clipping, momentum/gradient agreement, second-moment
quantiles, skipped steps and the gradient noise scale, per param group and per named layer, to
TensorBoard, MLflow, a JSON-lines log, CSV or a DataFrame. Adapters: a Lightning ``Callback``
(:mod:`descend.monitor.lightning`) and a Hugging Face ``TrainerCallback``
(:mod:`descend.monitor.hf`). ``descend diagnose RUN`` turns a log into findings
(:mod:`descend.monitor.diagnose`).
"""

from descend.monitor.core import LAYER_METRICS, METRICS, Monitor, monitor
from descend.monitor.sinks import CSV, JSONLines, MLflow, TensorBoard, as_sinks

__all__ = [
    "CSV",
    "JSONLines",
    "LAYER_METRICS",
    "METRICS",
    "MLflow",
    "Monitor",
    "TensorBoard",
    "as_sinks",
    "monitor",
]
