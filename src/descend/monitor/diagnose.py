"""Diagnosis of a monitored run: plain-language findings, each backed by the numbers.

:func:`read_run` loads a monitor log (``*.jsonl`` or ``*.csv``) or a TensorBoard run directory
into one table (a row per step, a column per tag). :func:`diagnose` runs every check of
:data:`CHECKS` on it; each returns the findings it has, with the evidence:

``update_ratio``   a layer whose median ‖Δθ‖/‖θ‖ sits more than 100× away from ~1e-3 (below
                   1e-5 it barely learns, above 1e-1 each step rewrites it);
``eff_lr_collapse``  the median effective lr (relative to the scheduled lr) of the last
                   quarter of the run more than 10× below the first quarter's: v̂ grew;
``skipped``        more than 1% of steps skipped for non-finite gradients;
``clipped``        clipping active on more than half the measured steps;
``momentum``       the momentum buffer pointing against the gradient (cos < 0) on more than
                   25% of measured steps: momentum fights the gradient, the run oscillates;
``warmup``         a learning-rate warm-up that ends while Adam's second-moment bias correction
                   1/(1 − β₂ᵗ) is still above 1.1 (it needs t > ln 11 / (−ln β₂) steps,
                   ≈ 2,400 for β₂ = 0.999);
``stability``      the loss oscillating step to step, or climbing, with a growing swing (a
                   learning rate past the stability edge 2/λ_max), or becoming non-finite.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

RATIO_LOW, RATIO_HIGH = 1e-5, 1e-1
COLLAPSE = 10.0
SKIPPED_FRACTION = 0.01
CLIPPED_FRACTION = 0.5
OPPOSED_MOMENTUM = 0.25
BIAS_LIMIT = 1.1


@dataclass
class Finding:
    """One problem found: what, where, how bad, and the numbers that show it."""

    kind: str
    title: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)  # the curves that show it


def read_run(path: str | Path) -> pd.DataFrame:
    """A monitor log (``.jsonl``/``.csv``) or a TensorBoard run (a directory of event files,
    or one event file) as a DataFrame: column ``step`` and one column per tag."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no run at {path}")
    if path.is_file() and path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        frame = pd.DataFrame(rows)
    elif path.is_file() and path.suffix == ".csv":
        frame = pd.read_csv(path)
    elif path.is_dir() or path.name.startswith("events.out.tfevents"):
        frame = _read_tensorboard(path)
    else:
        raise ValueError(
            f"{path}: expected a monitor log (*.jsonl or *.csv) or a TensorBoard run directory"
        )
    if "step" not in frame.columns:
        raise ValueError(f"{path}: no 'step' column; is this a descend monitor log?")
    frame = frame.apply(pd.to_numeric, errors="coerce")
    return frame.groupby("step", sort=True).first().reset_index()


def _read_tensorboard(path: Path) -> pd.DataFrame:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = path if path.is_dir() else path.parent
    if not any(folder.glob("events.out.tfevents*")):
        nested = sorted({p.parent for p in folder.rglob("events.out.tfevents*")})
        if len(nested) != 1:
            raise ValueError(
                f"{folder}: no TensorBoard event files"
                if not nested
                else f"{folder}: several runs inside ({', '.join(str(n) for n in nested[:4])}); "
                "give one of them"
            )
        folder = nested[0]
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    rows: dict[int, dict[str, float]] = {}
    for tag in acc.Tags()["scalars"]:
        for event in acc.Scalars(tag):
            rows.setdefault(event.step, {"step": event.step})[tag] = event.value
    if not rows:
        raise ValueError(f"{folder}: the TensorBoard run holds no scalars")
    return pd.DataFrame(list(rows.values()))


def _series(frame: pd.DataFrame, tag: str) -> pd.Series:
    if tag not in frame.columns:
        return pd.Series(dtype=float)
    return frame.set_index("step")[tag].dropna()


def _layers(frame: pd.DataFrame, metric: str) -> dict[str, pd.Series]:
    out = {}
    for column in frame.columns:
        if column.startswith("layer/") and column.endswith("/" + metric):
            out[column[len("layer/") : -len(metric) - 1]] = _series(frame, column)
    return out


def _groups(frame: pd.DataFrame) -> list[int]:
    found = set()
    for column in frame.columns:
        parts = column.split("/")
        if len(parts) == 3 and parts[0] == "opt" and parts[1].startswith("group"):
            found.add(int(parts[1][5:]))
    return sorted(found)


# --- the checks --------------------------------------------------------------------------------
def check_update_ratio(frame: pd.DataFrame) -> list[Finding]:
    out = []
    for name, series in _layers(frame, "update_ratio").items():
        series = series[series > 0] if (series > 0).any() else series
        if len(series) < 3:
            continue
        median = float(series.median())
        if RATIO_LOW <= median <= RATIO_HIGH:
            continue
        slow = median < RATIO_LOW
        out.append(
            Finding(
                "update_ratio",
                f"layer {name}: update/weight ratio {median:.2g}",
                f"Each step changes layer <code>{name}</code> by a median {median:.2g} of its "
                f"norm (over {len(series)} measured steps), "
                f"{'below' if slow else 'above'} the ~1e-3 of healthy training by "
                f"{(1e-3 / median if slow else median / 1e-3):.0f}×: "
                + (
                    "it barely learns (its learning rate is too small, or its gradient vanishes)."
                    if slow
                    else "each step rewrites it (its learning rate is too large for its scale)."
                ),
                {"layer": name, "median_update_ratio": median, "measured_steps": len(series)},
                [f"layer/{name}/update_ratio"],
            )
        )
    return out


def check_eff_lr_collapse(frame: pd.DataFrame) -> list[Finding]:
    eff = _series(frame, "opt/eff_lr_p50")
    lr = _series(frame, "opt/group0/lr")
    if len(eff) < 8 or lr.empty:
        return []
    rel = (eff / lr.reindex(eff.index)).dropna()
    rel = rel[np.isfinite(rel) & (rel > 0)]
    if len(rel) < 8:
        return []
    q = len(rel) // 4
    first, last = float(rel.iloc[:q].median()), float(rel.iloc[-q:].median())
    if not first > COLLAPSE * last:
        return []
    v = _series(frame, "opt/v_hat_p50")
    growth = float(v.iloc[-q:].median() / v.iloc[:q].median()) if len(v) >= 2 * q else math.nan
    return [
        Finding(
            "eff_lr_collapse",
            f"effective learning rate collapsed {first / last:.0f}×",
            f"The median per-coordinate effective learning rate, relative to the scheduled "
            f"lr, fell from {first:.3g} (first quarter of the run) to {last:.3g} (last "
            f"quarter): {first / last:.0f}× smaller"
            + (f", because the second moment v̂ grew {growth:.3g}×" if math.isfinite(growth) else "")
            + ". The optimizer takes ever smaller steps whatever the schedule says: look for "
            "gradients that grow (a loss scale, an unnormalised input) or use a larger ε.",
            {"first_quarter": first, "last_quarter": last, "v_hat_growth": growth},
            ["opt/eff_lr_p50", "opt/v_hat_p50"],
        )
    ]


def check_skipped_and_clipped(frame: pd.DataFrame) -> list[Finding]:
    out = []
    skipped = _series(frame, "opt/skipped_steps")
    if len(skipped):
        last_step = int(skipped.index[-1])
        fraction = float(skipped.iloc[-1]) / max(last_step, 1)
        if fraction > SKIPPED_FRACTION:
            out.append(
                Finding(
                    "skipped",
                    f"{int(skipped.iloc[-1])} of {last_step} steps skipped",
                    f"{int(skipped.iloc[-1])} of the {last_step} optimizer steps "
                    f"({fraction:.1%}) had NaN or Inf gradients and were skipped. The data, the "
                    "loss or the learning rate produce non-finite values: find the first one "
                    "rather than relying on skipping.",
                    {"skipped": int(skipped.iloc[-1]), "steps": last_step, "fraction": fraction},
                    ["opt/skipped_steps"],
                )
            )
    clipped = _series(frame, "opt/clipped")
    if len(clipped) >= 3:
        fraction = float(clipped.mean())
        if fraction > CLIPPED_FRACTION:
            pre = _series(frame, "opt/grad_norm_preclip")
            post = _series(frame, "opt/grad_norm")
            shrink = float((post / pre.reindex(post.index)).median()) if len(pre) else math.nan
            out.append(
                Finding(
                    "clipped",
                    f"gradient clipped on {fraction:.0%} of measured steps",
                    f"Clipping shrank the gradient on {fraction:.0%} of the {len(clipped)} "
                    f"measured steps (median factor {shrink:.2g}). Clipping that is always on "
                    "is a smaller learning rate in disguise and hides the gradient's scale: "
                    "raise the threshold or lower the learning rate.",
                    {"fraction": fraction, "measured_steps": len(clipped), "median_factor": shrink},
                    ["opt/grad_norm_preclip", "opt/grad_norm"],
                )
            )
    return out


def check_momentum(frame: pd.DataFrame) -> list[Finding]:
    cos = _series(frame, "opt/momentum_cos")
    if len(cos) < 5:
        return []
    fraction = float((cos < 0).mean())
    if fraction <= OPPOSED_MOMENTUM:
        return []
    opposed = _series(frame, "opt/opposed_frac")
    return [
        Finding(
            "momentum",
            f"momentum against the gradient on {fraction:.0%} of steps",
            f"The momentum buffer pointed against the current gradient (cosine < 0) on "
            f"{fraction:.0%} of the {len(cos)} measured steps (median cosine "
            f"{float(cos.median()):.2f}); the step moved "
            f"{float(opposed.mean()) if len(opposed) else math.nan:.0%} of the coordinates "
            "uphill on average. Momentum is fighting the gradient — the iterate overshoots and "
            "swings back: lower the momentum or the learning rate.",
            {
                "fraction_negative": fraction,
                "median_cos": float(cos.median()),
                "mean_opposed_frac": float(opposed.mean()) if len(opposed) else math.nan,
            },
            ["opt/momentum_cos", "opt/opposed_frac"],
        )
    ]


def check_warmup(frame: pd.DataFrame) -> list[Finding]:
    out = []
    for gi in _groups(frame):
        lr = _series(frame, f"opt/group{gi}/lr")
        bc = _series(frame, f"opt/group{gi}/v_bias_correction")
        if len(lr) < 3 or bc.empty or not lr.iloc[0] < 0.99 * lr.max():
            continue  # no warm-up (or no Adam-type second moment)
        peak_step = int(lr.index[int(np.argmax(lr.to_numpy() >= 0.99 * lr.max()))])
        if peak_step <= lr.index[0]:
            continue
        # β₂ from the logged correction: bc = 1/(1 − β₂ᵗ)
        t0, b0 = float(bc.index[0]), float(bc.iloc[0])
        if not b0 > 1:
            continue
        beta2 = (1 - 1 / b0) ** (1 / t0)
        need = math.log(1 / (1 - 1 / BIAS_LIMIT)) / -math.log(beta2)
        at_peak = 1 / (1 - beta2**peak_step)
        if at_peak <= BIAS_LIMIT:
            continue
        out.append(
            Finding(
                "warmup",
                f"warm-up of {peak_step} steps is too short for Adam's second moment",
                f"The learning rate of group {gi} reaches its peak at step {peak_step}, when "
                f"the bias correction of the second moment is still ×{at_peak:.2f} "
                f"(β₂ = {beta2:.4g}); it falls below ×{BIAS_LIMIT} only after "
                f"{need:.0f} steps. Until then v̂ rests on few gradients and the effective "
                f"learning rate is noisy: warm up over at least ~{need:.0f} steps or lower β₂.",
                {
                    "group": gi,
                    "warmup_steps": peak_step,
                    "beta2": beta2,
                    "bias_correction_at_peak": at_peak,
                    "steps_needed": need,
                },
                [f"opt/group{gi}/lr", f"opt/group{gi}/v_bias_correction"],
            )
        )
    return out


def check_stability(frame: pd.DataFrame) -> list[Finding]:
    loss = _series(frame, "loss") if "loss" in frame.columns else pd.Series(dtype=float)
    if "loss" in frame.columns:
        raw = frame.set_index("step")["loss"]
        bad = raw[~np.isfinite(raw.to_numpy(dtype=float)) & raw.notna()]
        if len(bad):
            return [
                Finding(
                    "stability",
                    f"loss became non-finite at step {int(bad.index[0])}",
                    f"The loss became {bad.iloc[0]} at step {int(bad.index[0])}: the run "
                    "diverged. A learning rate past the stability edge is the usual cause.",
                    {"step": int(bad.index[0])},
                    ["loss"],
                )
            ]
    loss = loss[np.isfinite(loss)]
    if len(loss) < 12:
        return []
    window = loss.iloc[-max(12, len(loss) // 2) :].to_numpy(dtype=float)
    d = np.diff(window)
    alternation = float(np.mean(np.sign(d[1:]) * np.sign(d[:-1]) < 0))
    half = len(d) // 2
    growth = float(np.mean(np.abs(d[half:])) / max(np.mean(np.abs(d[:half])), 1e-300))
    rising = window[-1] > window.min() * 1.5 or window[-1] > window[0]
    up = float(np.mean(d > 0))
    oscillating = alternation >= 0.6 and growth >= 2 and rising
    climbing = up >= 0.7 and growth >= 2 and window[-1] > 2 * window.min()
    if not (oscillating or climbing):
        return []
    how = (
        f"changed direction on {alternation:.0%} of steps"
        if oscillating
        else f"rose on {up:.0%} of steps (it grows along the sharpest direction, whose sign "
        "alternates)"
    )
    return [
        Finding(
            "stability",
            "loss grows with a growing swing: lr past the stability edge",
            f"Over the last {len(window)} logged steps the loss {how} and the step-to-step "
            f"swing grew {growth:.1f}× from the first half of that window to the second (loss "
            f"{window[0]:.4g} → {window[-1]:.4g}). "
            "That is gradient descent past its stability edge (lr > 2/λ_max along the "
            "sharpest direction): lower the learning rate (by ~2× at least) or add warm-up.",
            {
                "alternation": alternation,
                "amplitude_growth": growth,
                "loss_start": float(window[0]),
                "loss_end": float(window[-1]),
            },
            ["loss"],
        )
    ]


CHECKS: dict[str, Callable[[pd.DataFrame], list[Finding]]] = {
    "update_ratio": check_update_ratio,
    "eff_lr_collapse": check_eff_lr_collapse,
    "skipped/clipped": check_skipped_and_clipped,
    "momentum": check_momentum,
    "warmup": check_warmup,
    "stability": check_stability,
}


def diagnose(run: str | Path | pd.DataFrame) -> list[Finding]:
    """Every finding of every check on ``run`` (a path for :func:`read_run`, or its table)."""
    frame = run if isinstance(run, pd.DataFrame) else read_run(run)
    return [finding for check in CHECKS.values() for finding in check(frame)]
