"""Figures for the training lab (matplotlib, Agg backend): range tests and comparisons."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from descend.train.lr_find import RULES, LRFindResult  # noqa: E402

RULE_STYLE = {
    "steepest": ("tab:red", "--"),
    "valley": ("tab:green", "-."),
    "minimum/10": ("tab:purple", ":"),
}


def plot_lr_find(
    results: LRFindResult | Sequence[LRFindResult],
    path: str | Path,
    *,
    title: str = "Learning-rate range test",
    labels: Sequence[str] | None = None,
    stable_limit: float | None = None,
    monotone_limit: float | None = None,
) -> Path:
    """Loss against lr (raw faint, smoothed solid) with each rule's suggestion as a vertical
    line; several results (seeds) are overlaid. ``stable_limit`` shades lr ≥ limit (diverges)
    and ``monotone_limit`` marks 1/λ_max for gradient descent on a quadratic."""
    results = [results] if isinstance(results, LRFindResult) else list(results)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    many = len(results) > 1
    for k, res in enumerate(results):
        label = (
            labels[k] if labels is not None else (f"seed {res.config.get('seed')}" if many else "")
        )
        color = plt.cm.viridis(k / max(1, len(results) - 1)) if many else "tab:blue"
        if not many:
            ax.plot(res.lrs, res.losses, color=color, alpha=0.3, lw=1, label="loss")
        ax.plot(res.lrs, res.smoothed, color=color, lw=1.8, label=label or "smoothed loss")
        for rule in RULES:
            lr = res.suggestions.get(rule)
            if lr is None:
                continue
            c, ls = RULE_STYLE[rule]
            text = f"{rule} {lr:.3g}" if not many else (rule if k == 0 else None)
            ax.axvline(lr, color=c, ls=ls, lw=1.2, alpha=0.9 if not many else 0.6, label=text)
    if stable_limit is not None:
        ax.axvspan(stable_limit, ax.get_xlim()[1], color="tab:red", alpha=0.08)
        ax.axvline(stable_limit, color="black", lw=1, label=f"stable limit {stable_limit:.3g}")
    if monotone_limit is not None:
        ax.axvline(
            monotone_limit, color="grey", lw=1, ls="--", label=f"1/λmax {monotone_limit:.3g}"
        )
    if results and results[0].config.get("mode", "exp") == "exp":
        ax.set_xscale("log")
    curves = [r.smoothed for r in results] + ([results[0].losses] if not many else [])
    finite = np.concatenate([c for c in curves if len(c)] or [np.array([1.0])])
    low, high = float(np.nanmin(finite)), float(np.nanpercentile(finite, 95))
    if high > low:
        ax.set_ylim(low - 0.05 * (high - low), high + 0.25 * (high - low))
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
