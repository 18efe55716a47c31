"""The parts optimizers are built from: small gradient transformations and ``chain``.

See :mod:`descend.transforms.base` for the contract (state in place, updates as lists,
``θ ← θ − u``, hyperparameters via :class:`hp`). Each optimizer in :mod:`descend.optim` is a
short chain of these; :func:`descend.optim.from_chain` turns any chain into an optimizer.
"""

from .adadelta import scale_by_adadelta
from .adafactor import scale_by_adafactor
from .adam import EPS_PLACEMENTS, NADAM_SCHEDULES, nadam_mu, scale_by_adam, scale_by_nadam
from .adamax import EPS_PLACEMENTS_ADAMAX, scale_by_adamax
from .ademamix import scale_by_ademamix
from .adopt import after_first_step, scale_by_adopt
from .asgd import averaged_sgd
from .base import Chain, Context, Transform, chain, hp
from .cautious import cautious
from .clip import clip_by_global_norm, clip_by_value, flip_sign
from .decay import WEIGHT_DECAY_MODES, add_weight_decay
from .lion import scale_by_lion
from .lr import scale_by_lr
from .momentum import FORMS as MOMENTUM_FORMS
from .momentum import momentum
from .muon import newton_schulz, scale_by_muon, shape_factor
from .prodigy import ProdigyRound, scale_by_prodigy
from .radam import scale_by_radam
from .rms import EPS_PLACEMENTS_RMS, scale_by_adagrad, scale_by_rms
from .rprop import scale_by_rprop
from .schedule_free import schedule_free
from .soap import decay_after_update, scale_by_soap
from .trust import scale_by_trust_ratio

__all__ = [
    "Chain",
    "Context",
    "EPS_PLACEMENTS",
    "EPS_PLACEMENTS_ADAMAX",
    "EPS_PLACEMENTS_RMS",
    "MOMENTUM_FORMS",
    "NADAM_SCHEDULES",
    "ProdigyRound",
    "Transform",
    "WEIGHT_DECAY_MODES",
    "add_weight_decay",
    "after_first_step",
    "cautious",
    "averaged_sgd",
    "chain",
    "clip_by_global_norm",
    "clip_by_value",
    "decay_after_update",
    "flip_sign",
    "hp",
    "momentum",
    "nadam_mu",
    "newton_schulz",
    "scale_by_adafactor",
    "scale_by_adagrad",
    "scale_by_adam",
    "scale_by_ademamix",
    "scale_by_adopt",
    "scale_by_adadelta",
    "scale_by_adamax",
    "scale_by_lion",
    "scale_by_lr",
    "scale_by_muon",
    "scale_by_nadam",
    "scale_by_prodigy",
    "scale_by_radam",
    "scale_by_rms",
    "schedule_free",
    "scale_by_trust_ratio",
    "scale_by_soap",
    "shape_factor",
    "scale_by_rprop",
]
