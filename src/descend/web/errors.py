"""Request errors in the shape FastAPI uses for its own validation errors.

Pydantic rejects malformed bodies with ``422 {"detail": [{"loc", "msg", "type"}, ...]}``.
Checks that need the landscape (a spec's values, a start's dimension, a schedule) raise
:class:`RequestError`, rendered the same way, so a client reads every rejection alike.
"""

from __future__ import annotations


class RequestError(ValueError):
    """An input the API refuses: ``loc`` is the path of the field, ``message`` what is allowed."""

    def __init__(self, loc: tuple, message: str) -> None:
        super().__init__(message)
        self.loc = tuple(loc)
        self.message = message

    def detail(self) -> list[dict]:
        return [{"loc": ["body", *self.loc], "msg": self.message, "type": "value_error"}]


class TimeLimitExceeded(Exception):
    """A request ran past its time limit (answered with 503 and the limit)."""
