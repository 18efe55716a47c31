"""Animated trajectories: a GIF always (Pillow), an MP4 too when ffmpeg is installed.

The frames walk through the recorded steps, at most ``max_frames`` of them (evenly picked,
the last step always included), so a 10,000-step run still makes a small file.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import animation

from ._common import contour_background, mark_minima, plt, spec_colours, title_of


def frame_indices(n_records: int, max_frames: int) -> np.ndarray:
    """Indices into the records for each frame: all of them, or ``max_frames`` evenly spaced
    (first and last included)."""
    if max_frames < 2:
        raise ValueError(f"max_frames={max_frames!r} is invalid: it must be ≥ 2")
    if n_records <= max_frames:
        return np.arange(n_records)
    return np.unique(np.linspace(0, n_records - 1, max_frames).round().astype(int))


def ffmpeg_available() -> bool:
    return shutil.which("ffmpeg") is not None and animation.writers.is_available("ffmpeg")


def animate(
    result,
    path: str | Path,
    max_frames: int = 80,
    fps: int = 12,
    formats: Sequence[str] = ("gif", "mp4"),
) -> list[Path]:
    """Animate a 2-D run's paths over the contour plot; writes PATH.gif and, if ffmpeg is
    present and "mp4" is asked for, PATH.mp4. Returns the files written."""
    ls = result.landscape
    if ls.dim != 2:
        raise ValueError(f"animations need a 2-D function; {ls.name} has {ls.dim}")
    path = Path(path)
    stem = path.with_suffix("") if path.suffix.lower() in (".gif", ".mp4") else path
    stem.parent.mkdir(parents=True, exist_ok=True)
    frames = frame_indices(len(result.recorded_steps), max_frames)
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    contour_background(ax, ls, n=100, colorbar=False)
    mark_minima(ax, ls)
    colours = spec_colours(result.specs)
    lines, heads = [], []
    for spec in result.specs:
        for k, i in enumerate(result.runs_of(spec)):
            (line,) = ax.plot(
                [], [], "-", color=colours[spec], lw=1.6, label=spec if k == 0 else None
            )
            (head,) = ax.plot([], [], "o", color=colours[spec], ms=6, mec="white")
            lines.append((line, i))
            heads.append(head)
    (x0, x1), (y0, y1) = ls.domain
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(loc="upper left", fontsize=7)
    title = ax.set_title(title_of(ls))

    def draw(frame: int):
        upto = frames[frame]
        for (line, i), head in zip(lines, heads):
            traj = result.trajectories[i, : upto + 1]
            line.set_data(traj[:, 0], traj[:, 1])
            valid = np.flatnonzero(np.isfinite(traj).all(axis=1))
            head.set_data(traj[valid[-1:], 0], traj[valid[-1:], 1])
        title.set_text(f"{title_of(ls)}\nstep {int(result.recorded_steps[upto])}")
        return [line for line, _ in lines] + heads + [title]

    anim = animation.FuncAnimation(fig, draw, frames=len(frames), blit=False)
    written = []
    if "gif" in formats:
        target = stem.with_name(stem.name + ".gif")
        anim.save(target, writer=animation.PillowWriter(fps=fps), dpi=80)
        written.append(target)
    if "mp4" in formats and ffmpeg_available():
        target = stem.with_name(stem.name + ".mp4")
        anim.save(target, writer=animation.FFMpegWriter(fps=fps), dpi=100)
        written.append(target)
    plt.close(fig)
    return written
