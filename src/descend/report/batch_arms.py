"""Scaling-rule arms beside the batch-size study: "linear + warm-up" and "√B".

The study trains every batch size for the same number of epochs, which leaves the full batch
a handful of updates: a warm-up over W updates means nothing there. These arms therefore use
an updates budget, ``max(min_updates, epochs · ⌈n_train/B⌉)`` updates for batch size B (the
study's epochs, or ``min_updates`` where that is more), on the study's task, model and seeds:

- linear:            lr = base·B/32, constant (the study's rule, on the updates budget: the
                     control that isolates what warm-up adds);
- linear + warm-up:  the same peak lr, reached linearly over the first W updates from 0
                     (``linear_warmup:warmup=W``, Goyal et al.'s recipe);
- √B:                lr = base·√(B/32), constant.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

ARMS = {
    "linear": (None, "linear"),
    "linear + warm-up": ("linear_warmup:warmup={w}", "linear"),
    "√B": (None, "sqrt"),
}


def arm_lr(rule: str, base_lr: float, batch: int, base_batch: int = 32) -> float:
    """The peak lr a scaling rule gives batch size ``batch``."""
    ratio = batch / base_batch
    return base_lr * (ratio if rule == "linear" else math.sqrt(ratio))


def run_arms(
    *,
    batch_sizes=(32, 128, "full"),
    epochs: int = 3,
    min_updates: int = 24,
    warmup: int = 10,
    seeds: int = 2,
    n_samples: int = 2000,
    base_lr: float = 0.1,
    target: float = 0.65,
) -> dict:
    """Every arm at every batch size on the updates budget; one row per (arm, B)."""
    from ..train.compare import compare

    rows = []
    n_train = None
    for arm, (schedule, rule) in ARMS.items():
        for b in batch_sizes:
            spec = schedule.format(w=warmup) if schedule else None
            if n_train is None:
                from .. import train

                n_train = len(train.load("cat-dog", n_samples=n_samples).y_train)
            batch = n_train if b == "full" else int(b)
            updates = max(min_updates, epochs * math.ceil(n_train / batch))
            cmp = compare(
                "cat-dog",
                [f"sgd:lr={base_lr:g}"],
                batch_sizes=[b],
                schedules=[spec],
                scale_lr=rule,
                base_batch=32,
                seeds=seeds,
                updates=updates,
                task_options={"n_samples": n_samples},
                target_accuracy=target,
                eval_points=40,
                threads=1,
            )
            runs = cmp.runs
            hits = runs["updates_to_target"].to_numpy(float)
            reached = np.isfinite(hits)
            mean_hit = float(hits[reached].mean()) if reached.any() else math.nan
            rows.append(
                {
                    "arm": arm,
                    "batch size": b,
                    "B": batch,
                    "lr (peak)": float(runs["lr"].iloc[0]),
                    "schedule": spec or "constant",
                    "updates budget": updates,
                    "eval every": max(1, updates // 40),
                    "reached target (runs)": f"{int(reached.sum())}/{len(hits)}",
                    "reached": int(reached.sum()),
                    "runs": len(hits),
                    "diverged": int(runs["diverged"].sum()),
                    "updates to target": mean_hit,
                    "samples to target": mean_hit * batch,
                    "final val acc": float(runs["final_val_acc"].mean()),
                }
            )
    return {
        "rows": rows,
        "n_train": n_train,
        "warmup": warmup,
        "seeds": seeds,
        "epochs": epochs,
        "min_updates": min_updates,
        "base_lr": base_lr,
        "target": target,
    }


def arms_sentence(result: dict, study_full: dict | None = None) -> str:
    """What the arms show at the full batch, and against the linear control, from the rows;
    ``study_full`` (``reached``, ``runs``) is the study's own full-batch row, if any."""
    rows = [r for r in result["rows"] if r["batch size"] == "full"]
    by = {r["arm"]: r for r in rows}
    head = (
        "The scaling-rule arms run on an updates budget instead of the study's epochs (the "
        f"full batch gets {by['linear']['updates budget']} updates, not "
        f"{result['epochs']}, so that a {result['warmup']}-update warm-up means something): "
        f"max({result['min_updates']}, {result['epochs']} epochs) updates per batch size, "
        f"{result['seeds']} seed{'s' if result['seeds'] != 1 else ''}. "
    )

    def said(r: dict) -> str:
        if r["reached"] == 0:
            return f"{r['arm']} (lr {r['lr (peak)']:.3g}) never reaches the target" + (
                f" ({r['diverged']} of {r['runs']} runs diverged)" if r["diverged"] else ""
            )
        return (
            f"{r['arm']} (lr {r['lr (peak)']:.3g}) reaches it in {r['reached']}/{r['runs']} "
            f"runs, after {r['updates to target']:.3g} updates on average"
        )

    body = "At the full batch, " + "; ".join(said(by[a]) for a in ARMS if a in by) + "."
    lin, warm = by.get("linear"), by.get("linear + warm-up")
    if lin and warm:
        if warm["reached"] > lin["reached"]:
            body += " Warm-up is what rescues the linearly scaled lr there."
        elif warm["reached"] == lin["reached"] == lin["runs"]:
            body += (
                " With enough updates the linearly scaled lr reaches the target without "
                "warm-up too"
                + (
                    f", so the study's full batch ({study_full['reached']}/{study_full['runs']} "
                    f"runs reached it) is held back by its {result['epochs']}-update budget"
                    if study_full and study_full["reached"] < study_full["runs"]
                    else ""
                )
                + "; warm-up "
                + (
                    "costs updates here."
                    if warm["updates to target"] > lin["updates to target"]
                    else "does not cost updates here."
                )
            )
    return head + body


def arms_table(result: dict) -> pd.DataFrame:
    keep = [
        "arm",
        "batch size",
        "lr (peak)",
        "schedule",
        "updates budget",
        "eval every",
        "reached target (runs)",
        "updates to target",
        "samples to target",
        "final val acc",
    ]
    return pd.DataFrame([{k: r[k] for k in keep} for r in result["rows"]])


def arms_figure(result: dict, study_rows: list[dict]):
    """Updates to target against B for every arm, the study's epoch-budget runs and the
    ideal 1/B line from the smallest batch of the study."""
    from ..plots._common import plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    ok = [r for r in study_rows if np.isfinite(r["updates to target"])]
    if ok:
        bs = np.array([r["B"] for r in ok], float)
        ax.plot(
            bs, [r["updates to target"] for r in ok], "ko-", label="study: linear, epoch budget"
        )
        allb = np.array(sorted({r["B"] for r in study_rows} | {r["B"] for r in result["rows"]}))
        ax.plot(allb, ok[0]["updates to target"] * bs[0] / allb, "k--", lw=1, label="ideal: ∝ 1/B")
    for arm, marker, style in zip(ARMS, ("s", "^", "D"), ("--", "-.", ":")):
        rows = [r for r in result["rows"] if r["arm"] == arm]
        b = np.array([r["B"] for r in rows], float)
        u = np.array([r["updates to target"] for r in rows], float)
        line = ax.plot(b, u, marker=marker, ls=style, label=f"{arm}, updates budget")[0]
        for r in rows:
            if r["reached"] == 0:
                ax.plot(r["B"], r["updates budget"], marker="x", color=line.get_color(), ms=9)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="batch size B",
        ylabel="updates to target (mean of runs that reach it)",
        title=f"Scaling rules from lr {result['base_lr']:g} at B = 32 (×: never reached)",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
