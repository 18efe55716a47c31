"""The web lab: one page that runs descend's optimizers on the server and shows everything at once.

``descend serve`` starts it (FastAPI + uvicorn, from the optional ``web`` extra). Pick a
function (the registry, or an expression read by the landscape lab's safe parser), click a
start on its contour map, tick optimizers (each with its hyperparameters and convention), set
steps, gradient noise and a schedule, and run: trajectories animate over the contours, the loss
chart and the metrics table fill in; quadratics get a theory panel; a basins button colours a
grid of starts by the minimum each reaches. The view lives in the URL; trajectories export as
CSV/JSON and the animation as a GIF.

Modules: ``app`` (routes, limits, time limit), ``schemas`` (request bodies), ``limits``,
``functions`` (landscapes and contour grids), ``runs`` (requests → :func:`descend.lab.run`),
``quadratic`` (theory panel), ``basins``, ``gif``, ``catalogue`` (optimizers, schedules),
``static/`` (the page: plain HTML, JavaScript and canvas, no build step, no CDN).

    >>> from descend.web import create_app   # needs the "web" extra
"""

from __future__ import annotations


def create_app(*args, **kwargs):
    """The FastAPI app (see :func:`descend.web.app.create_app`); imported lazily so that
    ``import descend.web`` works without the web extra."""
    from descend.web.app import create_app as build

    return build(*args, **kwargs)


__all__ = ["create_app"]
