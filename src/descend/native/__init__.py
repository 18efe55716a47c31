"""descend's compiled kernels: C++ with a plain C ABI, built at first use and called by ctypes.

* ``kernels.h``: the per-element update of every optimizer family (``DESCEND_HD`` functions a
  CUDA driver could call too);
* ``drivers.h``: one step of a param group per family — per-tensor coefficients, then the
  vectorised per-element loop handed to a runner;
* ``cpu.cpp``: the optimizer entry points (:mod:`descend.optim.fast`), one OpenMP region per
  group;
* ``landscapes.h``: values and gradients of the classic landscapes, row by row;
* ``track.h``: the lab's per-step bookkeeping of one run (:mod:`descend.lab.tracker`);
* ``lab.cpp``: the lab entry points — landscape evaluation, bookkeeping, and the fused lab
  step (evaluate, step, record each block of runs while it is in cache).

:mod:`.build` compiles them into one shared library, cached per machine; :mod:`.abi` mirrors
the argument structs.
"""

import os

from .build import load, status

__all__ = ["enabled", "load", "ready", "status"]


def enabled() -> bool:
    """False when ``DESCEND_FAST`` is 0/false/no/off: the process keeps every default (torch)
    path — optimizers, landscapes and lab alike."""
    return os.environ.get("DESCEND_FAST", "1").strip().lower() not in ("0", "false", "no", "off")


def ready() -> bool:
    """Enabled and built: the compiled landscapes and lab bookkeeping may be used."""
    return enabled() and load() is not None
