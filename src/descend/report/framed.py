"""Path plots whose frame is fitted to the paths (the lab's :func:`descend.plots.contour`
frames to the landscape's plotting domain, which paths may leave): the same drawing, with
the axes set to the box around every finite iterate (starts included), padded by 5%."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..plots._common import contour_background, mark_minima, plt, save, spec_colours, title_of


def _inside(result, limit: float | None) -> np.ndarray:
    """Which points (run, step) are finite and, with ``limit``, inside the domain scaled by
    ``limit`` about its centre."""
    traj = result.trajectories
    ok = np.isfinite(traj).all(axis=-1)
    if limit is not None:
        dom = np.array(result.landscape.domain, float)
        mid, half = dom.mean(axis=1), (dom[:, 1] - dom[:, 0]) / 2 * limit
        with np.errstate(invalid="ignore"):
            ok &= (np.abs(traj - mid) <= half).all(axis=-1)
    return ok


def path_frame(
    result, pad: float = 0.05, limit: float | None = None
) -> tuple[tuple[float, float], tuple[float, float]]:
    """The box around every finite point of every trajectory, padded by ``pad`` of its size
    (at least ``pad`` of the domain's size on a side where the paths barely move). With
    ``limit``, only the points inside the domain scaled by ``limit`` count (paths that escape
    to infinity, as from a saddle, would otherwise shrink everything else to a dot)."""
    traj = result.trajectories
    pts = traj[_inside(result, limit)]
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    span = np.array([d[1] - d[0] for d in result.landscape.domain], float)
    width = np.maximum(hi - lo, pad * span)
    mid = (lo + hi) / 2
    half = width * (0.5 + pad)
    return (
        (float(mid[0] - half[0]), float(mid[0] + half[0])),
        (float(mid[1] - half[1]), float(mid[1] + half[1])),
    )


def framed_contour(
    result, path: str | Path, formats: Sequence[str] = ("png",), limit: float | None = None
) -> list[Path]:
    """Contours of the landscape over :func:`path_frame` with every run's path (one colour
    per spec; ○ start, □ end, × a diverged run's last valid point; stars: known minima);
    the title says how many paths continue beyond the frame (only possible with ``limit``)."""
    ls = result.landscape
    frame = path_frame(result, limit=limit)
    finite = np.isfinite(result.trajectories).all(axis=-1)
    beyond = int(((finite & ~_inside(result, limit)).any(axis=1)).sum())
    reach = np.nanmax(np.abs(np.where(finite[..., None], result.trajectories, np.nan)))
    view = dataclasses.replace(ls, domain=frame)
    fig, ax = plt.subplots(figsize=(8, 6.4))
    contour_background(ax, view)
    colours = spec_colours(result.specs)
    diverged = result.metrics["diverged"].to_numpy()
    dashes = ("-", "--", ":", "-.")
    for j, spec in enumerate(result.specs):
        for k, i in enumerate(result.runs_of(spec)):
            traj = result.trajectories[i]
            ax.plot(
                traj[:, 0],
                traj[:, 1],
                dashes[j % len(dashes)],
                color=colours[spec],
                lw=1.6,
                alpha=0.95,
                label=spec if k == 0 else None,
            )
            valid = np.flatnonzero(np.isfinite(traj).all(axis=1))
            if len(valid):
                s, e = traj[valid[0]], traj[valid[-1]]
                ax.scatter(*s, marker="o", s=40, color=colours[spec], edgecolors="white", zorder=5)
                ax.scatter(
                    *e,
                    marker="X" if diverged[i] else "s",
                    s=50,
                    color=colours[spec],
                    edgecolors="black",
                    zorder=5,
                )
    mark_minima(ax, ls)
    ax.set_xlim(*frame[0])
    ax.set_ylim(*frame[1])
    ax.set(xlabel="x", ylabel="y")
    ax.set_title(
        f"{title_of(ls)}\n{result.steps} steps; frame fitted to the paths"
        + (
            f" (within {limit:g}× the domain; {beyond} continue beyond, to |coordinate| "
            f"{reach:.2g})"
            if beyond
            else ""
        )
        + "; ○ start, □ end, × diverged",
        fontsize=10,
    )
    ax.legend(loc="best", fontsize=8, framealpha=0.85)
    return save(fig, path, formats)
