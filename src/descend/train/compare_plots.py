"""Figures of a comparison: curves with seed bands, accuracy vs batch size, loss vs a grid axis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from descend.train.figures import _save  # noqa: E402


def plot_comparison(cmp: Any, outdir: Path, prefix: str) -> list[Path]:
    """Write the figures that apply to ``cmp`` and return their paths."""
    summary = cmp.summary()
    paths = [_curves(cmp, summary, outdir / f"{prefix}_curves.png")]
    if len(cmp.config["batch_sizes"]) > 1:
        paths.append(_versus_batch(cmp, summary, outdir / f"{prefix}_accuracy_vs_batch.png"))
    for key in ["lr", *cmp.config.get("grid_keys", [])]:
        if summary.groupby("family")[key].nunique().max() > 1:
            paths.append(_versus_grid(summary, key, outdir / f"{prefix}_loss_vs_{key}.png"))
    return paths


def legend_label(row: Any) -> str:
    """A configuration's legend with the learning rate it actually ran with (the summary's
    ``lr``, after any batch-size scaling), not the one written in its spec."""
    import re

    label = re.sub(r"(?<![\w])lr=[^,\s]+,?", "", str(row["label"])).replace(": ", " ")
    label = label.rstrip(":").replace(": ", " ").replace(":", " ")
    return f"{label} (lr {float(row['lr']):.4g})"


def _curves(cmp: Any, summary: Any, path: Path) -> Path:
    """Validation loss and accuracy against epochs (or updates), mean line, min–max band."""
    by_epochs = cmp.config["epochs"] is not None
    x_key = "epoch" if by_epochs else "update"
    chosen = summary[summary["selected"]]
    legends = dict(zip(chosen["label"], (legend_label(row) for _, row in chosen.iterrows())))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = plt.cm.tab10(np.linspace(0, 1, 10))
    for k, label in enumerate(chosen["label"].tolist()):
        data = cmp.curves[cmp.curves["label"] == label]
        if data.empty:
            continue
        grouped = data.groupby("update")
        x = grouped[x_key].mean()
        for ax, metric in zip(axes, ("val_loss", "val_acc")):
            mean, low, high = grouped[metric].mean(), grouped[metric].min(), grouped[metric].max()
            color = colors[k % 10]
            ax.plot(x, mean, color=color, lw=1.6, label=legends[label])
            ax.fill_between(x, low, high, color=color, alpha=0.15, lw=0)
    axes[0].set_yscale("log")
    for ax, name in zip(axes, ("validation loss (log scale)", "validation accuracy")):
        ax.set_xlabel("epochs" if by_epochs else "updates")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    target = cmp.config["target_accuracy"]
    axes[1].axhline(target, color="grey", ls=":", lw=1, label=f"target {target:g}")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    fig.suptitle(f"{cmp.config['task']}: mean over {cmp.config['n_seeds']} seeds, band = min–max")
    return _save(fig, path)


def _batch_value(b: Any, n_train: int) -> int:
    return n_train if b == "full" else int(b)


def _versus_batch(cmp: Any, summary: Any, path: Path) -> Path:
    """Final validation accuracy (95% interval) and training time against the batch size."""
    n_train = cmp.config["n_train"]
    table = summary[summary["selected"]].copy()
    table["B"] = [_batch_value(b, n_train) for b in table["batch_size"]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for (opt, sched), rows in table.groupby(["optimizer", table["schedule"].fillna("")]):
        rows = rows.sort_values("B")
        label = opt + (f" {sched}" if sched else "")
        axes[0].errorbar(
            rows["B"],
            rows["final_val_acc"],
            yerr=rows["final_val_acc_ci"],
            marker="o",
            capsize=3,
            label=label,
        )
        axes[1].errorbar(
            rows["B"],
            rows["wall_time"],
            yerr=rows["wall_time_ci"],
            marker="o",
            capsize=3,
            label=label,
        )
    for ax, name in zip(axes, ("final validation accuracy", "training time (s)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size (full = all training samples)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    budget = cmp.config["epochs"] and f"{cmp.config['epochs']} epochs"
    fig.suptitle(f"Batch size, same budget ({budget or str(cmp.config['updates']) + ' updates'})")
    return _save(fig, path)


def _versus_grid(summary: Any, key: str, path: Path) -> Path:
    """Final validation loss and accuracy (95% intervals) against a grid axis, per family."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for family, rows in summary.groupby("family", sort=False):
        rows = rows.sort_values(key)
        for ax, metric in zip(axes, ("final_val_loss", "final_val_acc")):
            ax.errorbar(
                rows[key],
                rows[metric],
                yerr=rows[f"{metric}_ci"],
                marker="o",
                capsize=3,
                label=family,
            )
            best = rows[rows["selected"]]
            ax.scatter(best[key], best[metric], s=140, facecolors="none", edgecolors="k")
    for ax, name in zip(axes, ("final validation loss", "final validation accuracy")):
        ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(f"Final validation loss and accuracy vs {key} (circled: selected)")
    return _save(fig, path)
