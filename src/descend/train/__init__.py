"""The training lab: data, models, a measured trainer, the LR range test and comparisons.

- :mod:`~descend.train.data`         offline datasets with fixed seeded splits (``load``)
- :mod:`~descend.train.loader`       ``TensorLoader``: full-batch, B = 1 and mini-batch modes
- :mod:`~descend.train.models`       logistic regression, MLP, small CNN (optional norm layers)
- :mod:`~descend.train.trainer`      ``fit`` for any model, loss, loader and optimizer
- :mod:`~descend.train.lr_find`      the range test; :mod:`~descend.train.lr_find_lab` its
  spread over seeds and its check on a quadratic
- :mod:`~descend.train.compare`      fair comparisons over seeds; :mod:`~descend.train.studies`
  the notes' batch-size and AdamW studies

Gradient accumulation and the EMA of weights are optimizer-side:
:class:`descend.optim.accumulate.Accumulate`, :class:`descend.optim.weight_ema.WeightEMA`.
"""

from descend.train.compare import Comparison, compare
from descend.train.data import Dataset, available, cat_dog_bayes_accuracy, load
from descend.train.history import History
from descend.train.loader import TensorLoader
from descend.train.lr_find import LRFindResult, lr_find
from descend.train.lr_find_lab import LandscapeLRFind, LRSpread, lr_find_landscape, lr_find_seeds
from descend.train.metrics import accuracy, effective_lr_stats, evaluate, grad_stats
from descend.train.models import build, logistic, mlp, small_cnn
from descend.train.studies import adamw_study, batch_size_study, run_study
from descend.train.trainer import fit, seed_everything

__all__ = [
    "Comparison",
    "Dataset",
    "History",
    "LRFindResult",
    "LRSpread",
    "LandscapeLRFind",
    "TensorLoader",
    "accuracy",
    "adamw_study",
    "available",
    "batch_size_study",
    "build",
    "cat_dog_bayes_accuracy",
    "compare",
    "effective_lr_stats",
    "evaluate",
    "fit",
    "grad_stats",
    "load",
    "logistic",
    "lr_find",
    "lr_find_landscape",
    "lr_find_seeds",
    "mlp",
    "run_study",
    "seed_everything",
    "small_cnn",
]
