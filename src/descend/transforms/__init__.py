"""The parts optimizers are built from: small gradient transformations and ``chain``.

See :mod:`descend.transforms.base` for the contract (state in place, updates as lists,
``θ ← θ − u``, hyperparameters via :class:`hp`). Each optimizer in :mod:`descend.optim` is a
short chain of these; :func:`descend.optim.from_chain` turns any chain into an optimizer.
"""

from .adadelta import scale_by_adadelta
from .adam import EPS_PLACEMENTS, NADAM_SCHEDULES, nadam_mu, scale_by_adam, scale_by_nadam
from .adamax import EPS_PLACEMENTS_ADAMAX, scale_by_adamax
from .base import Chain, Context, Transform, chain, hp
from .clip import clip_by_global_norm, clip_by_value, flip_sign
from .decay import WEIGHT_DECAY_MODES, add_weight_decay
from .lion import scale_by_lion
from .lr import scale_by_lr
from .momentum import FORMS as MOMENTUM_FORMS
from .momentum import momentum
from .radam import scale_by_radam
from .rms import EPS_PLACEMENTS_RMS, scale_by_adagrad, scale_by_rms

__all__ = [
    "Chain",
    "Context",
    "EPS_PLACEMENTS",
    "EPS_PLACEMENTS_ADAMAX",
    "EPS_PLACEMENTS_RMS",
    "MOMENTUM_FORMS",
    "NADAM_SCHEDULES",
    "Transform",
    "WEIGHT_DECAY_MODES",
    "add_weight_decay",
    "chain",
    "clip_by_global_norm",
    "clip_by_value",
    "flip_sign",
    "hp",
    "momentum",
    "nadam_mu",
    "scale_by_adadelta",
    "scale_by_adagrad",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_lion",
    "scale_by_lr",
    "scale_by_nadam",
    "scale_by_radam",
    "scale_by_rms",
]
