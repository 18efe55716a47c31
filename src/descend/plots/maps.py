"""Maps over grids: basins of attraction, hyperparameter maps with the theory's stability edge,
and the lr-sensitivity curve. Inputs are :class:`descend.lab.BasinsResult` and
:class:`descend.lab.SweepResult`; outputs PNG and SVG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ._common import FORMATS, mark_minima, plt, save, title_of

_SPECIAL = {
    -1: ("did not reach a minimum", "#bdbdbd"),
    -2: ("diverged", "#222222"),
    -3: ("invalid or stopped", "#ffffff"),
}


def share_text(share: float) -> str:
    """A share as a percentage that never rounds to 0% or 100% unless it is exactly that."""
    if share in (0.0, 1.0):
        return f"{share:.0%}"
    for digits in range(0, 6):
        text = f"{share:.{digits}%}"
        if text not in (f"{0:.{digits}%}", f"{1:.{digits}%}"):
            return text
    return f"{share:.6%}"


def basin_map(basins, path: str | Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Each start of the grid coloured by the minimum its run reached; one panel per spec."""
    ls = basins.landscape
    k = len(basins.specs)
    cols = min(k, 3)
    rows = (k + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.8 * rows), squeeze=False)
    n_min = len(ls.minima)
    palette = plt.get_cmap("tab10" if n_min <= 10 else "tab20")
    colours = [_SPECIAL[-3][1], _SPECIAL[-2][1], _SPECIAL[-1][1]] + [
        palette(i % palette.N) for i in range(n_min)
    ]
    cmap = ListedColormap(colours)
    (x0, x1), (y0, y1) = ls.domain
    for ax, spec, labels in zip(axes.flat, basins.specs, basins.labels):
        ax.imshow(
            labels + 3,
            origin="lower",
            extent=(x0, x1, y0, y1),
            cmap=cmap,
            vmin=-0.5,
            vmax=len(colours) - 0.5,
            interpolation="nearest",
            aspect="auto",
        )
        pts = np.array([m.location for m in ls.minima])
        ax.scatter(pts[:, 0], pts[:, 1], marker="*", s=200, c="gold", edgecolors="black", zorder=5)
        shares = {v: float((labels == v).mean()) for v in np.unique(labels)}
        reached = sum(s for v, s in shares.items() if v >= 0)
        diverged = shares.get(-2, 0.0)
        ax.set_title(
            f"{spec}\n{share_text(reached)} of starts reach a minimum"
            + (f", {share_text(diverged)} diverge" if diverged else ""),
            fontsize=10,
        )
        ax.set_xlabel("start x")
        ax.set_ylabel("start y")
    for ax in list(axes.flat)[k:]:
        ax.axis("off")
    handles = [
        Patch(
            facecolor=colours[3 + i],
            edgecolor="black",
            label=f"minimum {i}: ({m.location[0]:.3g}, {m.location[1]:.3g})",
        )
        for i, m in enumerate(ls.minima)
    ] + [Patch(facecolor=c, edgecolor="black", label=text) for text, c in _SPECIAL.values()]
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=min(4, len(handles)),
        fontsize=8,
        bbox_to_anchor=(0.5, -0.02),
    )
    fig.suptitle(
        f"Basins of attraction — {title_of(ls)}\n{basins.result.steps} steps; reached = ends "
        f"within {basins.radius:.3g} of a minimum",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return save(fig, path, formats)


def _is_log(values: Sequence[float]) -> bool:
    v = np.asarray(values, dtype=float)
    if len(v) < 3 or (v <= 0).any():
        return False
    ratios = v[1:] / v[:-1]
    return bool(np.allclose(ratios, ratios[0], rtol=1e-6) and abs(ratios[0] - 1) > 1e-9)


def _edges(values: Sequence[float], log: bool) -> np.ndarray:
    """Cell boundaries around each value (midpoints, in log space for log axes)."""
    v = np.log(np.asarray(values, float)) if log else np.asarray(values, float)
    if len(v) == 1:
        e = np.array([v[0] - 0.5, v[0] + 0.5]) if not log else np.array([v[0] - 0.1, v[0] + 0.1])
    else:
        mid = (v[1:] + v[:-1]) / 2
        e = np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])
    return np.exp(e) if log else e


def hyperparameter_map(sweep, path: str | Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """A two-key sweep as a map: colour = steps to reach f − f* < tol, grey = did not reach
    it, × = diverged, ∅ = invalid for the optimizer; the theory's stability edge on top."""
    keys = list(sweep.values)
    if len(keys) != 2:
        raise ValueError(f"a hyperparameter map needs two swept keys, got {keys}")
    (kx, xv), (ky, yv) = (keys[0], sweep.values[keys[0]]), (keys[1], sweep.values[keys[1]])
    logx, logy = _is_log(xv), _is_log(yv)
    data = sweep.steps_to_tol.T  # rows: second key (y), columns: first key (x)
    fig, ax = plt.subplots(figsize=(8.5, 6.2))
    ax.set_facecolor("#d9d9d9")  # cells that never reached the tolerance
    ex, ey = _edges(xv, logx), _edges(yv, logy)
    masked = np.ma.masked_invalid(data)
    mesh = ax.pcolormesh(ex, ey, masked, cmap="viridis_r", shading="flat")
    bar = plt.colorbar(mesh, ax=ax)
    bar.set_label(f"steps until f − f* < {sweep.result.tol:g}")
    gx, gy = np.meshgrid(xv, yv)
    div, inv = sweep.diverged.T, sweep.invalid.T
    ax.scatter(gx[div], gy[div], marker="x", color="crimson", s=22, lw=1.2)
    ax.scatter(gx[inv], gy[inv], marker="$∅$", color="black", s=40)
    handles = [
        Patch(facecolor="#d9d9d9", edgecolor="black", label="did not reach tol"),
        Line2D([], [], marker="x", color="crimson", ls="", label="diverged"),
        Line2D([], [], marker="$∅$", color="black", ls="", label="invalid setting"),
    ]
    if sweep.edge is not None and kx == "lr":
        good = np.isfinite(sweep.edge)
        ax.plot(sweep.edge[good], np.asarray(yv)[good], color="white", lw=2.4)
        (line,) = ax.plot(sweep.edge[good], np.asarray(yv)[good], color="crimson", lw=1.4, ls="--")
        line.set_label(f"theory: stability edge (λ_max = {sweep.lam_max:.4g} at the minimum)")
        handles.append(line)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlim(ex[0], ex[-1])
    ax.set_ylim(ey[0], ey[-1])
    ax.set_xlabel(kx)
    ax.set_ylabel(ky)
    ax.set_title(
        f"{sweep.optimizer} on {title_of(sweep.landscape)}\n"
        f"{sweep.result.steps} steps from {tuple(sweep.result.metrics['start'].iloc[0])}"
    )
    ax.legend(handles=handles, loc="lower left", fontsize=8, framealpha=0.9)
    return save(fig, path, formats)


def lr_sensitivity(
    sweep, path: str | Path, formats: Sequence[str] = FORMATS, max_curves: int = 6
) -> list[Path]:
    """Final loss (f − f* where f* is known) against lr; one curve per value of a second
    swept key (at most ``max_curves``, evenly picked); diverged runs as × at the top."""
    keys = list(sweep.values)
    if keys[0] != "lr":
        raise ValueError(f"the lr-sensitivity curve needs lr as the first swept key, got {keys}")
    lrs = np.asarray(sweep.values["lr"], float)
    loss = np.asarray(sweep.final_loss, float).reshape(len(lrs), -1)
    div = np.asarray(sweep.diverged).reshape(len(lrs), -1)
    f_star = sweep.result.f_star
    y = loss - f_star if f_star is not None else loss
    finite = y[np.isfinite(y)]
    log = finite.size > 0 and (finite >= 0).all()
    if log:  # below 1e-30 is "exactly there" for a picture: draw it at 1e-30
        y = np.maximum(y, 1e-30)
    top = max(finite.max(), 1e-30) if finite.size else 1.0
    columns = range(y.shape[1])
    if len(keys) == 2 and y.shape[1] > max_curves:
        columns = np.unique(np.linspace(0, y.shape[1] - 1, max_curves).round().astype(int))
    fig, ax = plt.subplots(figsize=(8, 5))
    cmap = plt.get_cmap("plasma")
    for n, j in enumerate(columns):
        colour = cmap(n / max(1, len(columns) - 1) * 0.85)
        label = f"{keys[1]} = {sweep.values[keys[1]][j]:.4g}" if len(keys) == 2 else sweep.optimizer
        ax.plot(lrs, np.where(div[:, j], np.nan, y[:, j]), "-o", ms=3, color=colour, label=label)
        ax.scatter(lrs[div[:, j]], np.full(div[:, j].sum(), top), marker="x", color=colour, s=30)
    if sweep.edge is not None and len(keys) == 1 and np.isfinite(sweep.edge[0]):
        ax.axvline(sweep.edge[0], color="crimson", ls="--", label="theory: stability edge")
    ax.scatter([], [], marker="x", color="black", label="diverged (drawn at the top)")
    ax.set_xscale("log" if _is_log(lrs) or (lrs > 0).all() else "linear")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("lr")
    ax.set_ylabel(
        "final f − f* (floor 1e-30)" if log else "final f − f*" if f_star is not None else "final f"
    )
    ax.set_title(
        f"lr sensitivity of {sweep.optimizer} on {title_of(sweep.landscape)}\n"
        f"after {sweep.result.steps} steps"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path, formats)


__all__ = ["basin_map", "hyperparameter_map", "lr_sensitivity", "mark_minima"]
