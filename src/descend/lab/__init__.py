"""The landscape lab: many optimizer runs on a test function as one batched computation.

    >>> from descend import lab
    >>> result = lab.run("rosenbrock", ["adam:lr=0.02", "momentum"], steps=500)
    >>> result.metrics[["spec", "final_loss", "steps_to_tol", "diverged"]]
    >>> result.trajectories.shape          # (runs, steps + 1, 2)
    >>> lab.basins("himmelblau", ["sgd", "adam"], grid=100)
    >>> lab.sweep("ravine", "momentum", {"lr": lab.parse_range("1e-3:1:log30"),
    ...                                  "momentum": lab.parse_range("0:0.99:30")})
    >>> lab.theory.heavy_ball_optimal(1, 100)

Modules: ``engine`` (:func:`run`), ``configs`` (specs → validated, grouped configurations),
``steppers`` (the optimizer step of a group), ``tracker`` (metrics per step), ``result``,
``grids`` (:func:`basins`, :func:`sweep`), ``ranges`` (list and range syntax), ``theory``,
``quadratic`` (exact noise floors and expected losses of SGD on noisy quadratics, tuned
Nesterov) and ``race`` (every optimizer on the ravine, fairly tuned, axis-aligned or rotated).
"""

from . import theory
from .engine import resolve_landscape, run
from .grids import BasinsResult, SweepResult, basins, sweep
from .ranges import parse_list, parse_point, parse_points, parse_range
from .result import LabResult

__all__ = [
    "BasinsResult",
    "LabResult",
    "SweepResult",
    "basins",
    "parse_list",
    "parse_point",
    "parse_points",
    "parse_range",
    "resolve_landscape",
    "run",
    "sweep",
    "theory",
]
