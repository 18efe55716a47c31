"""Shared pieces of the landscape pictures: backend, colours, grids of f, saving."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.ticker import LogFormatterSciNotation  # noqa: E402

from descend.landscapes import Landscape  # noqa: E402

FORMATS = ("png", "svg")
DPI = 120


def spec_colours(specs: Sequence[str]) -> dict[str, tuple]:
    """One colour per spec (tab10, then tab20 beyond ten)."""
    cmap = plt.get_cmap("tab10" if len(specs) <= 10 else "tab20")
    return {spec: cmap(i % cmap.N) for i, spec in enumerate(specs)}


def save(fig, path: str | Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write ``fig`` as PATH.png / PATH.svg (a suffix on ``path`` is replaced); close it."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix.lower() in (".png", ".svg") else path
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        if fmt not in FORMATS:
            raise ValueError(f"format {fmt!r} is not supported; choose from {', '.join(FORMATS)}")
        target = stem.with_name(stem.name + "." + fmt)
        fig.savefig(target, dpi=DPI, bbox_inches="tight")
        written.append(target)
    plt.close(fig)
    return written


def f_grid(landscape: Landscape, n: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """X, Y (n×n meshgrid over the domain) and Z = f(X, Y) for a 2-D landscape."""
    (x0, x1), (y0, y1) = landscape.domain
    xs, ys = np.linspace(x0, x1, n), np.linspace(y0, y1, n)
    gx, gy = np.meshgrid(xs, ys)
    pts = torch.tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=torch.float64)
    with torch.no_grad():
        z = landscape.f(pts).numpy().reshape(n, n)
    return gx, gy, z


def use_log(landscape: Landscape, z: np.ndarray) -> bool:
    """Log levels when the landscape asks for them or f spans more than three decades."""
    if landscape.contour == "log":
        return True
    finite = z[np.isfinite(z)]
    spread = finite.max() - finite.min()
    low = np.quantile(finite - finite.min(), 0.05)
    return bool(spread > 0 and low > 0 and spread / low > 1e3)


def shifted(landscape: Landscape, z: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(z − z₀ + δ, z₀, δ): positive values for log scales, z₀ the lowest known (or seen)
    value and δ a tiny offset that keeps log finite at the minimum."""
    finite = z[np.isfinite(z)]
    z0 = min(finite.min(), landscape.f_min) if landscape.f_min is not None else finite.min()
    delta = max(1e-12, 1e-9 * float(finite.max() - z0))
    return z - z0 + delta, float(z0), delta


def contour_background(
    ax, landscape: Landscape, n: int = 200, levels: int = 30, colorbar: bool = True
) -> None:
    """Filled contours of f over the domain (log levels where needed), with a colour bar
    unless ``colorbar`` is False (animations redraw every text each frame)."""
    gx, gy, z = f_grid(landscape, n)
    if use_log(landscape, z):
        zs, z0, _ = shifted(landscape, z)
        lo = max(np.quantile(zs[np.isfinite(zs)], 0.002), zs[np.isfinite(zs)].min())
        lv = np.geomspace(lo, np.nanmax(zs), levels)
        cs = ax.contourf(gx, gy, np.clip(zs, lo, None), levels=lv, norm=LogNorm(), cmap="viridis")
        ax.contour(gx, gy, zs, levels=lv[::3], colors="white", linewidths=0.3, alpha=0.5)
        shift = "f_min" if z0 == 0 else f"{z0:.4g}" if z0 > 0 else f"({z0:.4g})"
        label = f"f − {shift} (log scale)"
    else:
        cs = ax.contourf(gx, gy, z, levels=levels, cmap="viridis")
        ax.contour(gx, gy, z, levels=cs.levels[::3], colors="white", linewidths=0.3, alpha=0.5)
        label = "f"
    if not colorbar:
        return
    bar = plt.colorbar(cs, ax=ax, shrink=0.85)
    if use_log(landscape, z):
        lo, hi = cs.levels[0], cs.levels[-1]
        ticks = 10.0 ** np.arange(np.ceil(np.log10(lo)), np.floor(np.log10(hi)) + 1)
        bar.set_ticks(ticks if len(ticks) >= 2 else [lo, hi])
        bar.ax.yaxis.set_major_formatter(LogFormatterSciNotation())
        bar.ax.minorticks_off()
    bar.set_label(label)


def mark_minima(ax, landscape: Landscape, z=None) -> None:
    """Stars at the known minima (on a 3-D axis when ``z`` gives their heights)."""
    if not landscape.minima:
        return
    pts = np.array([m.location for m in landscape.minima])
    kwargs = dict(marker="*", s=180, c="gold", edgecolors="black", linewidths=0.8, zorder=6)
    if z is None:
        ax.scatter(pts[:, 0], pts[:, 1], label="known minima", **kwargs)
    else:
        ax.scatter(pts[:, 0], pts[:, 1], z, label="known minima", **kwargs)


def title_of(landscape: Landscape) -> str:
    formula = f": {landscape.formula}" if landscape.formula else ""
    return f"{landscape.name}{formula}"
