"""Progress of the long steps of a command, on stderr.

On a terminal each stage is a rich spinner with its description and the elapsed time (gone
when the stage ends); in a pipe or a log each stage is one line ``descend: <stage>…`` so a
silent pause never looks like a hang. ``--format markdown|csv`` keep stdout for the table
either way.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType


class Stage:
    """``with Stage("running 12 runs × 300 steps"): …`` — a spinner (terminal) or a line."""

    def __init__(self, description: str, fmt: str = "rich", *, enabled: bool = True) -> None:
        self.description = description
        self.enabled = enabled and os.environ.get("DESCEND_NO_PROGRESS", "") in ("", "0")
        self._progress = None
        self._task = None

    def __enter__(self) -> Stage:
        if not self.enabled:
            return self
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=None)
        else:
            print(f"descend: {self.description}…", file=sys.stderr, flush=True)
        return self

    def update(self, description: str) -> None:
        """Say what the stage does now."""
        if not self.enabled or description == self.description:
            return
        self.description = description
        if self._progress is not None:
            self._progress.update(self._task, description=description)
        else:
            print(f"descend: {description}…", file=sys.stderr, flush=True)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def section_line(index: int, total: int, title: str) -> None:
    """``descend demo``'s progress: a rich bar on a terminal is drawn by the report itself;
    in a pipe or a log (``make demo``, CI) one line per section, as it starts."""
    if os.environ.get("DESCEND_NO_PROGRESS", "") not in ("", "0"):
        return
    print(f"descend: section {index}/{total}: {title}…", file=sys.stderr, flush=True)


def kernels(fmt: str = "rich") -> None:
    """Build the native kernels now, under a progress line, if this machine has not built them
    yet (the first lab run otherwise pauses ~20 s without a word)."""
    from descend import native
    from descend.native import build

    if not native.enabled() or build._state["loaded"] or os.environ.get("DESCEND_FAST_NO_BUILD"):
        return
    cxx = build._compiler()
    if cxx is None or build.library_path(cxx).exists():
        return
    with Stage("compiling the native kernels (first run on this machine only, ~20 s)", fmt):
        native.load()
