"""descend's optimizers: ``torch.optim.Optimizer`` classes that are short chains of
:mod:`descend.transforms`, with every framework convention as an explicit switch.

==================  ==============================================================
``SGD``             momentum forms ``modern`` / ``ema`` / ``lr_inside``, Nesterov
``Adagrad``         lr_decay, initial accumulator, ε inside/outside
``RMSprop``         centered, momentum (either form), ε placement, bias correction
``Adam``            bias correction per moment, ε ``outside``/``inside``/``hat``, AMSGrad
``AdamW``           Adam with decoupled weight decay
``AMSGrad``         Adam(amsgrad=True)
``NAdam``           momentum schedule ``torch`` / ``keras`` / ``none``
``Newton``          damped or saddle-free Newton step
==================  ==============================================================

Every class takes ``convention="torch"|"keras"|"optax"``, ``weight_decay_mode``,
``nonfinite``, ``maximize``, ``max_grad_norm`` and ``clip_value``. Wrappers usable with any
optimizer: ``Accumulate`` (gradient accumulation) and ``WeightEMA`` (Polyak averaging).
"""

from .accumulate import Accumulate
from .adam import Adam, AdamW, AMSGrad, NAdam
from .adaptive import Adagrad, RMSprop
from .base import NONFINITE, ChainOptimizer, FromChain, from_chain
from .conventions import CONVENTIONS
from .groups import describe_groups, param_groups
from .newton import Newton
from .sgd import SGD
from .spec import available, from_spec, parse_spec
from .trace import tracing
from .weight_ema import WeightEMA

__all__ = [
    "AMSGrad",
    "Accumulate",
    "Adagrad",
    "Adam",
    "AdamW",
    "CONVENTIONS",
    "ChainOptimizer",
    "FromChain",
    "NAdam",
    "NONFINITE",
    "Newton",
    "RMSprop",
    "SGD",
    "WeightEMA",
    "available",
    "describe_groups",
    "from_chain",
    "from_spec",
    "param_groups",
    "parse_spec",
    "tracing",
]
