"""Basin maps for the page: :func:`descend.lab.basins` on a grid of starts, as JSON.

Each cell of a map is the start (xs[j], ys[i]) and holds the index into the landscape's minima
of the minimum its run ended near, or one of the lab's codes: −1 not reached (ended farther
than ``radius`` from every minimum), −2 diverged, −3 failed (invalid or stopped).
"""

from __future__ import annotations

import numpy as np

from descend import lab
from descend.lab.grids import DIVERGED, FAILED, NOT_REACHED

from .deadline import Deadline, checked_schedule
from .errors import RequestError
from .functions import describe, resolve
from .runs import validate_spec
from .schemas import BasinsRequest

CODES = {NOT_REACHED: "not reached", DIVERGED: "diverged", FAILED: "failed"}


def payload(req: BasinsRequest, deadline: Deadline) -> dict:
    """The JSON answer of ``POST /api/basins``."""
    fn = req.function
    landscape = resolve(fn.name, fn.params, fn.domain)
    if landscape.dim != 2:
        raise RequestError(("function", "name"), "basin maps need a function of x and y")
    if not landscape.minima:
        raise RequestError(
            ("function", "name"),
            f"{landscape.name} lists no minima, so there are no basins to colour; pick a "
            "registered function",
        )
    for i, spec in enumerate(req.optimizers):
        validate_spec(landscape, spec, i)
    result = lab.basins(
        landscape,
        list(req.optimizers),
        grid=req.grid,
        steps=req.steps,
        tol=req.tol,
        schedule=checked_schedule(None, deadline),
    )
    return {
        "landscape": describe(landscape),
        "xs": result.xs.tolist(),
        "ys": result.ys.tolist(),
        "radius": result.radius,
        "codes": {str(k): v for k, v in CODES.items()},
        "maps": [
            {
                "spec": spec,
                "label": label,
                "labels": labels.tolist(),
                "shares": _shares(labels),
            }
            for spec, label, labels in zip(req.optimizers, result.specs, result.labels, strict=True)
        ],
    }


def _shares(labels: np.ndarray) -> dict[str, float]:
    """Fraction of starts with each label."""
    values, counts = np.unique(labels, return_counts=True)
    return {str(int(v)): float(c) / labels.size for v, c in zip(values, counts)}
