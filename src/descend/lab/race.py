"""The optimizer race on the ravine ½(λ₁u² + λ₂v²), axis-aligned or rotated, tuned fairly.

Every optimizer gets the best of what the theory or the same tuning budget gives it:

* gradient descent, heavy ball (both momentum forms) and Nesterov run at their **exact**
  optima on the spectrum (λ₁, λ₂): α = 2/(λ₁+λ₂); α = (2/(√λ₁+√λ₂))², β = ((√κ−1)/(√κ+1))²;
  Nesterov's (α, β) minimise its closed-form rate (:func:`.quadratic.nesterov_optimal`).
  These depend on the spectrum only, so they are the same at every rotation angle.
* every other optimizer has its learning rate tuned over the same log grid (:data:`LR_GRID`,
  17 points, 4 per decade), the other hyperparameters at their defaults (AdamW's weight decay
  set to 0: the race's minimum is at 0, where decay only helps), separately for each angle;
  the best point is the fewest steps after which f stays below tol for the rest of the budget
  (a run that dips below tol and climbs out again has not reached it; ties and runs that never
  get there: the lowest final loss).
* Newton's step at lr 1.

The problem is deterministic (one start, no noise), so one run per setting is the whole
distribution. Used by ``descend demo`` (its console table) and the report's momentum section.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import quadratic, theory

LAMBDAS = (1.0, 100.0)
START = (-1.5, 1.0)
LR_GRID = tuple(float(x) for x in np.geomspace(1e-3, 10.0, 17))
TUNED = ("adagrad", "rmsprop", "rmsprop-centered", "adam", "adamw", "amsgrad", "nadam")
SHOWN_KEYS = ("lr", "momentum", "betas", "alpha", "eps", "weight_decay")


def closed_form_specs(lam1: float = LAMBDAS[0], lam2: float = LAMBDAS[1]) -> list[dict]:
    """The optimizers run at exact optima: name, spec (full float precision), how it was set,
    and the predicted asymptotic rate."""
    a_gd, r_gd = theory.gd_optimal(lam1, lam2)
    a_hb, b_hb, r_hb = theory.heavy_ball_optimal(lam1, lam2)
    a_nag, b_nag, r_nag = quadratic.nesterov_optimal(lam1, lam2)
    how = "closed-form optimum"
    return [
        dict(name="sgd", spec=f"sgd:lr={a_gd!r}", how=how, rate=r_gd),
        dict(
            name="momentum",
            spec=f"momentum:lr={a_hb!r},momentum={b_hb!r}",
            how=how,
            rate=r_hb,
        ),
        dict(
            name="momentum-ema",
            spec=f"momentum-ema:lr={a_hb / (1.0 - b_hb)!r},momentum={b_hb!r}",
            how=how + " (lr α/(1−β))",
            rate=r_hb,
        ),
        dict(
            name="nesterov",
            spec=f"nesterov:lr={a_nag!r},momentum={b_nag!r}",
            how="optimum of the closed-form rate (numerical)",
            rate=r_nag,
        ),
        dict(name="newton", spec="newton:lr=1", how="Newton's step, lr 1", rate=0.0),
    ]


def tuned_spec(name: str, lr: float) -> str:
    extra = ",weight_decay=0" if name == "adamw" else ""
    return f"{name}:lr={float(lr)!r}{extra}"


def group_values(spec: str) -> dict[str, Any]:
    """The hyperparameters the optimizer of ``spec`` actually runs with (its param group)."""
    import torch

    from descend.optim import from_spec

    group = from_spec(spec, [torch.zeros(2, requires_grad=True)]).param_groups[0]
    return {k: group[k] for k in SHOWN_KEYS if k in group}


@dataclass
class RaceResult:
    """Rows (one per optimizer) and, for the tuned ones, steps-to-tol against lr."""

    angle: float
    steps: int
    tol: float
    rows: list[dict] = field(default_factory=list)
    curves: dict[str, dict[str, list]] = field(default_factory=dict)

    def row(self, name: str) -> dict:
        return next(r for r in self.rows if r["optimizer"] == name)


def race(
    angle: float = 0.0,
    steps: int = 2000,
    tol: float = 1e-6,
    lr_grid: tuple[float, ...] = LR_GRID,
    lam: tuple[float, float] = LAMBDAS,
    start: tuple[float, float] = START,
    tuned: tuple[str, ...] = TUNED,
) -> RaceResult:
    """Run the race on the ravine rotated by ``angle`` degrees (see the module docstring)."""
    from descend.landscapes import get

    from .engine import run

    fixed = closed_form_specs(*lam)
    landscape = get("ravine", lam1=lam[0], lam2=lam[1], angle=angle)
    # one lab call per optimizer: a single group of runs takes the compiled fused loop
    batches = [[c["spec"]] for c in fixed] + [[tuned_spec(n, lr) for lr in lr_grid] for n in tuned]
    losses_list, diverged_list = [], []
    for specs in batches:
        result = run(landscape, specs, starts=[start], steps=steps, tol=tol)
        losses_list.append(np.asarray(result.losses, dtype=float))
        diverged_list += [bool(d) for d in result.metrics["diverged"]]
    losses = np.concatenate(losses_list)
    out = RaceResult(angle=float(angle), steps=steps, tol=tol)

    def measure(i: int) -> dict:
        curve = losses[i]
        finite = curve[np.isfinite(curve)]
        return {
            "reached": quadratic.stays_below(curve, tol),
            "reached_1e-12": quadratic.stays_below(curve, 1e-12),
            "first_below": quadratic.first_below(curve, tol),
            "final": float(finite[-1]) if finite.size else float("nan"),
            "diverged": diverged_list[i],
        }

    for i, c in enumerate(fixed):
        m = measure(i)
        out.rows.append(
            {
                "optimizer": c["name"],
                "how set": c["how"],
                "hyperparameters": group_values(c["spec"]),
                "spec": c["spec"],
                "predicted rate": c["rate"],
                **m,
            }
        )
    n0 = len(fixed)
    for k, name in enumerate(tuned):
        ms = [measure(n0 + k * len(lr_grid) + j) for j in range(len(lr_grid))]
        out.curves[name] = {
            "lr": list(lr_grid),
            "reached": [m["reached"] for m in ms],
            "final": [m["final"] for m in ms],
        }

        def key(j: int, ms: list[dict] = ms) -> tuple:
            m = ms[j]
            final = m["final"] if np.isfinite(m["final"]) else np.inf
            return (m["reached"] is None, m["reached"] or 0, final)

        best = min(range(len(lr_grid)), key=key)
        edge = best in (0, len(lr_grid) - 1)
        spec = tuned_spec(name, lr_grid[best])
        out.rows.append(
            {
                "optimizer": name,
                "how set": "lr: best of the grid"
                + (" (its edge)" if edge else "")
                + (", weight_decay = 0" if name == "adamw" else ""),
                "hyperparameters": group_values(spec),
                "spec": spec,
                "predicted rate": None,
                **ms[best],
            }
        )
    return out


def format_hyperparameters(values: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, tuple | list):
            return "(" + ", ".join(fmt(x) for x in v) + ")"
        if isinstance(v, float):
            return f"{v:.6g}"
        return str(v)

    return ", ".join(f"{k}={fmt(v)}" for k, v in values.items())


def race_table(angles: tuple[float, ...] = (0.0, 45.0), steps: int = 2000, tol: float = 1e-6):
    """The race at each angle as one pandas DataFrame (one row per optimizer and angle)."""
    import pandas as pd

    rows = []
    for angle in angles:
        res = race(angle, steps=steps, tol=tol)
        for r in res.rows:
            rows.append(
                {
                    "rotation": f"{angle:g}°",
                    "optimizer": r["optimizer"],
                    "how set": r["how set"],
                    "hyperparameters": format_hyperparameters(r["hyperparameters"]),
                    f"steps until f stays < {tol:g}": r["reached"]
                    if r["reached"] is not None
                    else f"not in {steps}",
                    "steps until f stays < 1e-12": r["reached_1e-12"]
                    if r["reached_1e-12"] is not None
                    else f"not in {steps}",
                    "final loss": r["final"],
                }
            )
    return pd.DataFrame(rows)
