"""Pictures of lab runs: contour with trajectories, 1-D curve with iterates, 3-D surface with
paths, and loss against step. Each takes a :class:`descend.lab.LabResult` and a path stem and
writes PNG and SVG (see :func:`save`); each returns the files written."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ._common import (
    FORMATS,
    contour_background,
    f_grid,
    mark_minima,
    plt,
    save,
    shifted,
    spec_colours,
    title_of,
    use_log,
)


def _runs_by_spec(result) -> list[tuple[str, np.ndarray]]:
    return [(spec, result.runs_of(spec)) for spec in result.specs]


def _path_ends(ax, traj: np.ndarray, colour, diverged: bool, z=None) -> None:
    """Start (circle) and end (square, or × where the run diverged) of one trajectory."""
    valid = np.flatnonzero(np.isfinite(traj).all(axis=1))
    if len(valid) == 0:
        return
    s, e = traj[valid[0]], traj[valid[-1]]
    end_marker = "X" if diverged else "s"
    if z is None:
        ax.scatter(*s, marker="o", s=40, color=colour, edgecolors="white", zorder=5)
        ax.scatter(*e, marker=end_marker, s=50, color=colour, edgecolors="black", zorder=5)
    else:
        ax.scatter(*s, z[valid[0]], marker="o", s=30, color=colour, edgecolors="white")
        ax.scatter(*e, z[valid[-1]], marker=end_marker, s=40, color=colour, edgecolors="black")


def contour(result, path: str | Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Filled contours of a 2-D landscape with every run's path, one colour per optimizer
    spec; circles mark starts, squares ends (× a diverged run's last valid point), stars the
    known minima."""
    ls = result.landscape
    if ls.dim != 2:
        raise ValueError(f"contour plots need a 2-D function; {ls.name} has {ls.dim}")
    fig, ax = plt.subplots(figsize=(8, 6.4))
    contour_background(ax, ls)
    colours = spec_colours(result.specs)
    diverged = result.metrics["diverged"].to_numpy()
    for spec, runs in _runs_by_spec(result):
        for k, i in enumerate(runs):
            traj = result.trajectories[i]
            ax.plot(
                traj[:, 0],
                traj[:, 1],
                "-",
                color=colours[spec],
                lw=1.6,
                alpha=0.95,
                label=spec if k == 0 else None,
            )
            _path_ends(ax, traj, colours[spec], bool(diverged[i]))
    mark_minima(ax, ls)
    (x0, x1), (y0, y1) = ls.domain
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(f"{title_of(ls)}\n{result.steps} steps; ○ start, □ end, × diverged")
    ax.legend(loc="upper left", fontsize=8, framealpha=0.85)
    return save(fig, path, formats)


def curve_1d(result, path: str | Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """f(x) over the domain of a 1-D landscape with each run's iterates on it."""
    ls = result.landscape
    if ls.dim != 1:
        raise ValueError(f"1-D curves need a 1-D function; {ls.name} has {ls.dim}")
    ((x0, x1),) = ls.domain
    xs = np.linspace(x0, x1, 400)
    with torch.no_grad():
        fx = ls.f(torch.tensor(xs, dtype=torch.float64).reshape(-1, 1)).numpy()
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.plot(xs, fx, color="black", lw=1.5, label="f(x)")
    colours = spec_colours(result.specs)
    for spec, runs in _runs_by_spec(result):
        for k, i in enumerate(runs):
            x, f = result.trajectories[i, :, 0], result.losses[i]
            ax.plot(
                x,
                f,
                "-o",
                color=colours[spec],
                ms=3.5,
                lw=0.8,
                alpha=0.8,
                label=spec if k == 0 else None,
            )
            ax.scatter(x[:1], f[:1], s=60, color=colours[spec], edgecolors="black", zorder=5)
    if ls.minima:
        ax.scatter(
            [m.location[0] for m in ls.minima],
            [m.value for m in ls.minima],
            marker="*",
            s=180,
            c="gold",
            edgecolors="black",
            zorder=6,
            label="known minima",
        )
    ax.set_xlim(x0, x1)
    finite = fx[np.isfinite(fx)]
    ax.set_ylim(finite.min() - 0.05 * np.ptp(finite), finite.max() + 0.05 * np.ptp(finite))
    ax.set_xlabel("x")
    ax.set_ylabel("f(x)")
    ax.set_title(f"{title_of(ls)}\niterates of {result.steps} steps (large dot: start)")
    ax.legend(fontsize=8)
    return save(fig, path, formats)


def surface(result, path: str | Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """The 2-D landscape as a 3-D surface (log10 of f − f_min where contours are log) with
    the runs' paths drawn on it."""
    ls = result.landscape
    if ls.dim != 2:
        raise ValueError(f"surface plots need a 2-D function; {ls.name} has {ls.dim}")
    gx, gy, z = f_grid(ls, 80)
    log = use_log(ls, z)
    if log:
        zs, z0, delta = shifted(ls, z)

        zplot, zlabel = np.log10(zs), "log10(f − f_min)"

        def height(v):  # paths below the drawn surface's lowest point are shown on it
            return np.maximum(np.log10(np.maximum(v - z0, 0) + delta), zplot.min())

    else:

        def height(v):
            return v

        zplot, zlabel = z, "f"
    fig = plt.figure(figsize=(8.5, 6.5))
    ax = fig.add_subplot(projection="3d")
    ax.plot_surface(gx, gy, zplot, cmap="viridis", alpha=0.55, linewidth=0, antialiased=True)
    colours = spec_colours(result.specs)
    diverged = result.metrics["diverged"].to_numpy()
    (x0, x1), (y0, y1) = ls.domain
    for spec, runs in _runs_by_spec(result):
        for k, i in enumerate(runs):
            traj = result.trajectories[i]
            inside = (
                (traj[:, 0] >= x0) & (traj[:, 0] <= x1) & (traj[:, 1] >= y0) & (traj[:, 1] <= y1)
            )
            traj = np.where(inside[:, None], traj, np.nan)
            h = height(result.losses[i])
            ax.plot(
                traj[:, 0], traj[:, 1], h, color=colours[spec], lw=2, label=spec if k == 0 else None
            )
            _path_ends(ax, traj, colours[spec], bool(diverged[i]), z=h)
    if ls.minima:
        mark_minima(ax, ls, z=height(np.array([m.value for m in ls.minima])))
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_zlabel(zlabel)
    ax.set_title(f"{title_of(ls)}\npaths on the surface")
    ax.legend(fontsize=8, loc="upper left")
    return save(fig, path, formats)


def loss_curves(result, path: str | Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """f − f* against the step on a log scale, one line per run (colour per spec); where f*
    is unknown, f itself (log scale if positive, else linear)."""
    fig, ax = plt.subplots(figsize=(8, 5))
    colours = spec_colours(result.specs)
    steps = result.recorded_steps
    f_star = result.f_star
    values = result.losses - f_star if f_star is not None else result.losses
    finite = values[np.isfinite(values)]
    log = finite.size > 0 and (finite > 0).all()
    floor = 0.0
    if f_star is not None:
        # below 1e-16 of f − f* only rounding is left to see: the axis stops there
        floor = max(float(finite[finite > 0].min()) if (finite > 0).any() else 1e-16, 1e-16)
        log = True
        values = np.maximum(values, floor)
    # a line style per spec as well as a colour: curves that coincide stay visible
    dashes = ("-", "--", ":", "-.")
    for j, (spec, runs) in enumerate(_runs_by_spec(result)):
        for k, i in enumerate(runs):
            ax.plot(
                steps,
                values[i],
                dashes[j % len(dashes)],
                color=colours[spec],
                lw=1.3,
                alpha=0.9,
                label=spec if k == 0 else None,
            )
    if log:
        ax.set_yscale("log")
    if f_star is not None:
        ax.axhline(result.tol, color="grey", ls=":", lw=1, label=f"tol = {result.tol:g}")
    ax.set_xlabel("step")
    ax.set_ylabel("f − f*" if f_star is not None else "f")
    ax.set_title(f"{title_of(result.landscape)}\nloss against step")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path, formats)
