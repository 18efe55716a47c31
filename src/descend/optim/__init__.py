"""descend's optimizers: ``torch.optim.Optimizer`` classes that are short chains of
:mod:`descend.transforms`, with every framework convention as an explicit switch.

Each optimizer is one declaration in its own module (see :mod:`descend.optim.declared`):
importing this package imports every module in it, and every declared class is exported
here and registered under its spec names (:data:`descend.optim.registry.REGISTRY`; ``descend
optimizers`` lists them). The notes' optimizers:

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

Every declared class takes ``convention="torch"|"keras"|"optax"`` (the frameworks that have
it), ``weight_decay_mode``, ``nonfinite``, ``maximize``, ``max_grad_norm`` and
``clip_value``. Wrappers usable with any optimizer: ``Accumulate`` (gradient accumulation) and
``WeightEMA`` (Polyak averaging).
"""

import importlib as _importlib
import pkgutil as _pkgutil

# isort: off
# The notes' optimizers first, in the notes' order: the order of every listing of spec names.
from .sgd import SGD
from .adaptive import Adagrad, RMSprop
from .adam import Adam, AdamW, AMSGrad, NAdam
from .newton import Newton

# isort: on
from .accumulate import Accumulate
from .base import NONFINITE, ChainOptimizer, FromChain, from_chain
from .conventions import CONVENTIONS
from .declared import Declared, Spec
from .groups import describe_groups, param_groups
from .registry import REGISTRY, classes
from .spec import available, from_spec, parse_spec
from .trace import tracing
from .weight_ema import WeightEMA

for _module in _pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_") and not _module.ispkg:
        _importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "AMSGrad",
    "Accumulate",
    "Adagrad",
    "Adam",
    "AdamW",
    "NAdam",
    "Newton",
    "RMSprop",
    "SGD",
    "CONVENTIONS",
    "ChainOptimizer",
    "Declared",
    "FromChain",
    "NONFINITE",
    "REGISTRY",
    "Spec",
    "WeightEMA",
    "available",
    "describe_groups",
    "from_chain",
    "from_spec",
    "param_groups",
    "parse_spec",
    "tracing",
]
for _cls in classes():  # every declared optimizer, the ones added by a new module included
    if _cls.__name__ not in __all__:
        globals()[_cls.__name__] = _cls
        __all__.append(_cls.__name__)
