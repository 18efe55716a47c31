"""The per-request time limit, checked cooperatively inside long computations.

Python threads cannot be killed, so a computation stops itself: :class:`Deadline.check` raises
:class:`~descend.web.errors.TimeLimitExceeded` once the limit has passed. The lab engine calls
its ``schedule`` argument once per step; :func:`checked_schedule` wraps the request's schedule
(or a constant factor 1) so that each step also checks the deadline. That is the one adapter
the web layer puts around :func:`descend.lab.run`; a factor of exactly 1.0 leaves every lr
unchanged (``lr × 1.0 == lr`` in floating point), so the trajectories are the engine's own.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .errors import TimeLimitExceeded


class Deadline:
    """A point in time ``seconds`` from now; ``check()`` raises once it has passed."""

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self.end = time.monotonic() + self.seconds

    def expired(self) -> bool:
        return time.monotonic() > self.end

    def check(self) -> None:
        if self.expired():
            raise TimeLimitExceeded(
                f"the request ran past its time limit of {self.seconds:g} s; "
                "ask for fewer steps, optimizers or grid points"
            )


def checked_schedule(
    schedule: Callable[[int], float] | None, deadline: Deadline
) -> Callable[[int], float]:
    """A schedule for :func:`descend.lab.run` that checks ``deadline`` at every step."""

    def factor(t: int) -> float:
        deadline.check()
        return 1.0 if schedule is None else schedule(t)

    return factor
