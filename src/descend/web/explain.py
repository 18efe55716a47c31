"""``POST /api/explain``: what one optimizer computes at one step of a run, for the page's
explain panel — the same table as ``descend explain`` (both call :func:`descend.explain.explain`,
which reads the optimizer's own trace hook), here for the function, start and optimizer spec of
the run on the page.
"""

from __future__ import annotations

import math
import shlex

from pydantic import Field

from descend import explain as explaining
from descend.landscapes import names as registered_names

from . import functions
from . import limits as L
from .deadline import Deadline
from .errors import RequestError
from .schemas import FunctionRef, Point, Spec, Strict


class ExplainRequest(Strict):
    """One optimizer from one start, exact gradients, constant lr: the quantities of ``step``."""

    function: FunctionRef
    optimizer: Spec
    start: Point
    step: int = Field(ge=1, le=L.MAX_STEPS, description="the step to explain (1 = the first)")


def _number(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def command(body: ExplainRequest) -> str | None:
    """The ``descend explain`` line printing the same numbers (None for parametrised
    functions, which the command line cannot name)."""
    name = body.function.name
    if body.function.params or body.function.domain or name not in registered_names():
        return None
    start = ";".join(repr(float(v)) for v in body.start)
    return (
        f"descend explain {shlex.quote(body.optimizer)} --function {name} "
        f"--start {shlex.quote(start)} --steps {body.step}"
    )


def payload(body: ExplainRequest, deadline: Deadline) -> dict:
    landscape = functions.resolve(body.function.name, body.function.params, body.function.domain)
    if len(body.start) != landscape.dim:
        raise RequestError(
            ("start",), f"the start needs {landscape.dim} coordinate(s), got {len(body.start)}"
        )
    deadline.check()
    try:
        frame = explaining.explain(
            body.optimizer, function=landscape, steps=body.step, start=list(body.start)
        )
    except (ValueError, TypeError) as exc:
        raise RequestError(("optimizer",), str(exc)) from None
    deadline.check()
    last = frame[frame["step"] == frame["step"].max()]
    symbols = {c.name: c.symbol for c in explaining.COLUMNS.values()}
    meanings = {c.name: c.meaning for c in explaining.COLUMNS.values()}
    quantities = [c for c in frame.columns if c not in ("step", "element")]
    rows = [
        {
            "name": column,
            "symbol": symbols.get(column, ""),
            "meaning": meanings.get(column, "f(θ) before the step" if column == "loss" else ""),
            "values": [_number(v) for v in last[column]],
        }
        for column in quantities
    ]
    settings = {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in frame.attrs.get("hyperparameters", {}).items()
    }
    return {
        "optimizer": frame.attrs.get("optimizer"),
        "spec": body.optimizer,
        "step": int(last["step"].iloc[0]),
        "start": [float(v) for v in body.start],
        "hyperparameters": settings,
        "quantities": rows,
        "command": command(body),
    }
