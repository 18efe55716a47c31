"""``descend demo``'s report: a curated tour of the notes, computed live.

:func:`build` runs each section (a function ``(quick) -> Section``), then writes
``DIR/index.html`` (self-contained: figures embedded, no script, opens from disk),
``DIR/summary.md`` with ``DIR/figures/*.png`` beside it, and ``DIR/numbers.json`` with every
section's key figures (what the tests check).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from .document import Section, save_figures, write_html, write_markdown, write_numbers

TITLE = "descend — a guided tour of gradient descent, computed live"


def section_functions() -> list[tuple[str, Callable[[bool], Section]]]:
    """The tour, in order: (title, function)."""
    from . import basics, lab_sections, modern, train_sections

    return [
        ("The update rule", basics.update_rule),
        ("Exponentially weighted averages", basics.ewa_section),
        ("Momentum and Nesterov on a ravine", lab_sections.momentum_section),
        ("Adaptive optimizers", lab_sections.adaptive_section),
        ("Saddles, plateaus, basins", lab_sections.saddles_section),
        ("Noise and batch size", lab_sections.noise_section),
        ("Schedules", lab_sections.schedules_section),
        ("LR range test", train_sections.lr_finder_section),
        ("Optimizer comparison and batch size", train_sections.comparison_section),
        ("Adam + L2 vs AdamW", train_sections.adamw_section),
        ("The modern optimizers", modern.modern_section),
        ("Conventions side by side", basics.conventions_section),
    ]


def build(
    out: str | Path,
    quick: bool = False,
    progress: bool = True,
    on_section: Callable[[int, int, str], None] | None = None,
) -> list[Section]:
    """Run the tour and write the report into ``out``; returns the sections.

    ``progress`` draws a rich bar; ``on_section(i, n, title)`` (instead of the bar) is called
    before section ``i`` of ``n`` runs — the command uses it for one line per section in a pipe.
    """
    import torch

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    # The tour's problems are small: one thread avoids OpenMP start-up stalls on shared cores.
    torch.set_num_threads(1)
    sections: list[Section] = []
    try:
        todo = section_functions()
        if on_section is not None:
            for i, (title, fn) in enumerate(todo, 1):
                on_section(i, len(todo), title)
                sections.append(_timed(fn, quick))
        elif progress:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            with Progress(
                TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), transient=False
            ) as bar:
                task = bar.add_task("report", total=len(todo))
                for title, fn in todo:
                    bar.update(task, description=f"[bold]{title}")
                    sections.append(_timed(fn, quick))
                    bar.advance(task)
        else:
            sections = [_timed(fn, quick) for _, fn in todo]
    finally:
        torch.set_num_threads(threads)
    mode = "quick mode (--quick): smaller budgets" if quick else "full budgets"
    total = sum(s.seconds for s in sections)
    intro = (
        f"Every figure and number below was computed when this page was written ({mode}, "
        f"{total:.0f} s in all on this machine) with the same descend optimizers you import. "
        "Each section states its budget."
    )
    write_html(sections, out / "index.html", TITLE, intro)
    save_figures(sections, out / "figures")
    write_markdown(sections, out / "summary.md", TITLE)
    write_numbers(sections, out / "numbers.json")
    return sections


def _timed(fn: Callable[[bool], Section], quick: bool) -> Section:
    start = time.perf_counter()
    section = fn(quick)
    section.seconds = time.perf_counter() - start
    return section


__all__ = ["Section", "build", "section_functions"]
