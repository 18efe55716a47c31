"""The training lab: data, models, a measured trainer, the LR range test and comparisons.

- :mod:`~descend.train.data`      offline datasets with fixed seeded splits (``load``)
- :mod:`~descend.train.models`    logistic regression, MLP, small CNN (optional norm layers)
- :mod:`~descend.train.trainer`   ``fit`` for any model, loss, loader and optimizer
"""

from descend.train.data import Dataset, available, cat_dog_bayes_accuracy, load
from descend.train.history import History
from descend.train.loader import TensorLoader
from descend.train.metrics import accuracy, effective_lr_stats, evaluate, grad_stats
from descend.train.models import build, logistic, mlp, small_cnn
from descend.train.trainer import fit, seed_everything

__all__ = [
    "Dataset",
    "History",
    "TensorLoader",
    "accuracy",
    "available",
    "build",
    "cat_dog_bayes_accuracy",
    "effective_lr_stats",
    "evaluate",
    "fit",
    "grad_stats",
    "load",
    "logistic",
    "mlp",
    "seed_everything",
    "small_cnn",
]
