"""Shared test machinery: prerequisites that skip locally but fail in CI.

A test whose prerequisite is missing (the compiled kernels, ffmpeg, Chromium, …) calls
:func:`require`. On a developer's machine that skips the test with the reason; under
``CI=true`` it fails the test with the same reason, so CI cannot go green while a part of the
suite did not run. In CI the session also stops at once when the kernels are unavailable,
with the cause: no compiler (``CXX`` not found) or the compiler's own error message.
"""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").strip().lower() == "true"


def require(condition: object, reason: str) -> None:
    """Skip the calling test (fail it under ``CI=true``) unless ``condition`` holds."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true and a prerequisite is missing: {reason}", pytrace=False)
    pytest.skip(reason)


def kernels_reason() -> str:
    """Why the compiled kernels are unavailable, in the build's own words."""
    from descend import native

    return f"the fast kernels are unavailable: {native.status()['error']}"


def require_kernels() -> None:
    """:func:`require` the compiled kernels (built at first use)."""
    from descend import native

    require(native.load() is not None, kernels_reason())


def pytest_sessionstart(session) -> None:
    if not IN_CI:
        return
    from descend import native

    if native.load() is None:
        raise pytest.UsageError(f"CI=true: {kernels_reason()}")


@pytest.fixture
def fast_kernels():
    """The compiled kernels (skip locally, fail under CI=true): ``require_kernels`` as a
    fixture, for modules whose every test steps the fast path."""
    require_kernels()


@pytest.fixture
def one_thread():
    """torch at 1 thread for the test, restored after (2-thread OpenMP regions stall for ~10 ms
    when another process is busy, which would make the default path's dozen regions a step
    slow)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
