"""Report sections on landscapes (sections 3–7), computed with the landscape lab."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import lab, plots
from ..lab import theory
from ..landscapes import get as get_landscape
from ..plots._common import plt  # the Agg backend, set once for every picture
from ..schedules import from_spec as schedule_from_spec
from .document import Section


def _error_norms(result, run: int) -> np.ndarray:
    """‖θ_t − θ*‖ along a run (θ* = 0 on the ravine)."""
    return np.linalg.norm(result.trajectories[run], axis=1)


def momentum_section(quick: bool) -> Section:
    """Section 3: momentum's three forms and Nesterov on the ravine, theory vs measurement."""
    from ..cli.demo import race_table

    s = Section("momentum", "Momentum in three forms, and Nesterov, on a ravine")
    lam1, lam2 = 1.0, 100.0
    steps = 400 if quick else 800
    a_gd, r_gd = theory.gd_optimal(lam1, lam2)
    a_hb, b_hb, r_hb = theory.heavy_ball_optimal(lam1, lam2)
    b_nag = 0.9
    a_nag = 1.0 / lam2  # a standard NAG step size, 1/L
    r_nag = theory.nesterov_rate(a_nag, b_nag, [lam1, lam2])
    rows_spec = [
        ("gradient descent (optimal α)", f"sgd:lr={a_gd}", a_gd, 0.0, r_gd),
        ("heavy ball, modern v = βv + g", f"momentum:lr={a_hb},momentum={b_hb}", a_hb, b_hb, r_hb),
        (
            "heavy ball, EMA v = βv + (1−β)g, lr α/(1−β)",
            f"momentum-ema:lr={a_hb / (1 - b_hb)},momentum={b_hb}",
            a_hb,
            b_hb,
            r_hb,
        ),
        (
            "heavy ball, lr inside v = βv + αg",
            f"momentum:lr={a_hb},momentum={b_hb},momentum_form=lr_inside",
            a_hb,
            b_hb,
            r_hb,
        ),
        (
            "Nesterov (α = 1/λmax, β = 0.9)",
            f"nesterov:lr={a_nag},momentum={b_nag}",
            a_nag,
            b_nag,
            r_nag,
        ),
    ]
    specs = [spec for _, spec, *_ in rows_spec]
    ravine = get_landscape("ravine", lam1=lam1, lam2=lam2)
    result = lab.run(ravine, specs, starts=[(-1.5, 1.0)], steps=steps, tol=1e-12)
    rows = []
    for i, (label, _spec, a, b, predicted) in enumerate(rows_spec):
        err = _error_norms(result, i)
        measured = theory.measured_rate(err, 200, 400)
        m = result.metrics.iloc[i]
        rows.append(
            {
                "method": label,
                "α": a,
                "β": b,
                "predicted rate": predicted,
                "measured (e₄₀₀/e₂₀₀)^(1/200)": measured,
                "relative gap": abs(measured - predicted) / predicted,
                "steps to f < 1e-12": m["steps_to_tol"] if pd.notna(m["steps_to_tol"]) else "—",
                "overshoots": m["overshoots"],
            }
        )
    table = pd.DataFrame(rows)
    s.tables.append((f"½(x² + 100y²), κ = {lam2 / lam1:g}, from (−1.5, 1), {steps} steps", table))
    s.plot(
        lambda p, f: plots.contour(result, p, f),
        "Paths on the ravine (one colour per method)",
        "ravine-paths",
    )
    s.plot(
        lambda p, f: plots.loss_curves(result, p, f), "f − f* per step, log scale", "ravine-loss"
    )
    race_steps = 600 if quick else 2000
    race = race_table(race_steps)
    s.tables.append((f"Every optimizer on ½(x² + 100y²) from (−1.5, 1), budget {race_steps}", race))
    s.numbers = {
        "kappa": lam2 / lam1,
        "rates": [
            {
                "method": r["method"],
                "predicted": r["predicted rate"],
                "measured": r["measured (e₄₀₀/e₂₀₀)^(1/200)"],
            }
            for r in rows
        ],
        "race": race.to_dict(orient="records"),
    }
    s.paragraphs += [
        "On a quadratic the theory is exact (Goh, <i>Why Momentum Really Works</i>, Distill "
        f"2017): gradient descent at its best step α = 2/(λ₁+λ₂) = {a_gd:.4f} shrinks the error "
        f"by (κ−1)/(κ+1) = {r_gd:.4f} per step; heavy ball at α = {a_hb:.4f}, β = {b_hb:.4f} by "
        f"(√κ−1)/(√κ+1) = {r_hb:.4f} — about ten times fewer steps for the same accuracy. The "
        "measured rates below come from the actual descend optimizers.",
        "The three momentum forms of the notes are the same algorithm in different units: the "
        "EMA form needs lr α/(1−β) to match, and the lr-inside form (Keras, Sutskever) equals "
        "the modern one while the learning rate is constant. Nesterov's look-ahead damps the "
        "oscillation across the ravine (fewer overshoots).",
    ]
    s.budget = f"{len(specs)} runs × {steps} steps on the ravine; race {race_steps} steps × 12"
    return s


def adaptive_section(quick: bool) -> Section:
    """Section 4: the adaptive optimizers on Rosenbrock and Beale."""
    s = Section("adaptive", "AdaGrad, RMSprop, Adam, AdamW and NAdam on Rosenbrock and Beale")
    steps = 800 if quick else 4000
    rows = []
    for name, start, lrs in (
        (
            "rosenbrock",
            (-1.2, 1.0),
            dict(adagrad=0.5, rmsprop=0.01, adam=0.05, adamw=0.05, nadam=0.05),
        ),
        ("beale", (1.0, 1.5), dict(adagrad=0.5, rmsprop=0.01, adam=0.05, adamw=0.05, nadam=0.05)),
    ):
        specs = [
            f"{k}:lr={v}" + (",weight_decay=0.01" if k == "adamw" else "") for k, v in lrs.items()
        ]
        result = lab.run(name, specs, starts=[start], steps=steps, tol=1e-6)
        s.plot(lambda p, f, r=result: plots.contour(r, p, f), f"{name.title()}: paths", name)
        s.plot(
            lambda p, f, r=result: plots.loss_curves(r, p, f),
            f"{name.title()}: f − f*",
            f"{name}-loss",
        )
        for _, m in result.metrics.iterrows():
            rows.append(
                {
                    "function": name,
                    "optimizer": m["spec"],
                    "final loss": m["final_loss"],
                    "distance to minimum": m["distance"],
                    "steps to f − f* < 1e-6": m["steps_to_tol"]
                    if pd.notna(m["steps_to_tol"])
                    else "not reached",
                    "path length": m["path_length"],
                }
            )
    s.tables.append((f"{steps} steps each", pd.DataFrame(rows)))
    s.numbers = {"rows": rows}
    s.paragraphs.append(
        "Adaptive methods divide each coordinate's step by a running root-mean-square of its "
        "gradients, so the steep wall and the flat floor of Rosenbrock's valley get comparable "
        "steps. AdaGrad's sum only grows, so its steps shrink for good; RMSprop forgets with an "
        "EWA and keeps a constant-size jitter; Adam adds momentum and bias correction; NAdam "
        "looks ahead; AdamW's decoupled decay pulls the parameters slightly towards zero, which "
        "moves its end point off the true minimum in proportion to λ."
    )
    s.budget = f"5 optimizers × 2 functions × {steps} steps, fp64"
    return s


def saddles_section(quick: bool) -> Section:
    """Section 5: escaping a saddle and a plateau; basins of attraction."""
    s = Section("saddles", "Saddles, plateaus and basins of attraction")
    steps = 150 if quick else 300
    specs = ["sgd:lr=0.05", "momentum:lr=0.05,momentum=0.9", "rmsprop:lr=0.05", "adam:lr=0.05"]
    saddle = lab.run("saddle", specs, starts=[(1.0, 1e-6)], steps=steps, bound=1e6)
    plateau = lab.run("plateau", specs, starts=[(1.5, 1.5)], steps=steps)
    rows = []
    for i, m in saddle.metrics.iterrows():
        y = np.abs(saddle.trajectories[i, :, 1])
        left = np.nonzero(y > 1.0)[0]
        pm = plateau.metrics.iloc[i]
        rows.append(
            {
                "optimizer": m["spec"],
                "saddle: steps until |y| > 1": int(saddle.recorded_steps[left[0]])
                if left.size
                else "not in budget",
                "plateau: final f": pm["final_loss"],
                "plateau: path length": pm["path_length"],
            }
        )
    s.tables.append(
        (
            "Leaving the saddle of x² − y² from (1, 1e-6), and the plateau from (1.5, 1.5)",
            pd.DataFrame(rows),
        )
    )
    s.plot(lambda p, f: plots.contour(saddle, p, f), "Leaving the saddle of x² − y²", "saddle")
    grid = 40 if quick else 120
    bsteps = 300 if quick else 600
    bspecs = ["sgd:lr=0.01", "momentum:lr=0.01,momentum=0.9", "adam:lr=0.05"]
    shares = {}
    for fn in ("himmelblau", "two-dips"):
        b = lab.basins(fn, bspecs, grid=grid, steps=bsteps)
        s.plot(
            lambda p, f, b=b: plots.basin_map(b, p, f),
            f"Basins of attraction on {fn} ({grid}×{grid} starts)",
            f"basins-{fn}",
        )
        shares[fn] = b.shares()
    share_rows = []
    for fn, per_spec in shares.items():
        for spec, dist in per_spec.items():
            row = {"function": fn, "optimizer": spec}
            row.update({f"minimum {k}" if k >= 0 else "none": v for k, v in sorted(dist.items())})
            share_rows.append(row)
    s.tables.append(("Share of start points ending in each minimum", pd.DataFrame(share_rows)))
    s.numbers = {"escape": rows, "basin_shares": shares}
    deep = {spec: d.get(0, 0.0) for spec, d in shares["two-dips"].items()}
    s.paragraphs.append(
        "At a saddle the gradient along the escape direction is tiny, so plain gradient "
        "descent needs many steps to leave it (|y| grows by a factor 1 + 2α per step); "
        "momentum accumulates the small push, and adaptive methods rescale it to a full step. "
        "On the plateau the gradient is nearly zero everywhere: SGD and momentum barely move, "
        "while RMSprop and Adam divide by the equally tiny RMS and walk off it."
    )
    s.paragraphs.append(
        "Basin maps colour every start by the minimum it reaches. On the bowl with two dips the "
        "deeper dip (minimum 0) collects "
        + ", ".join(f"{v:.0%} of the starts with {k}" for k, v in deep.items())
        + ": momentum rolls out of the shallow dip, so the map depends on the optimizer, not "
        "only on the function."
    )
    s.budget = f"escape {steps} steps; basins {grid}×{grid} starts × {len(bspecs)} × {bsteps} steps"
    return s


def noise_section(quick: bool) -> Section:
    """Section 6: noisy gradients and batch size on a 2-D landscape."""
    s = Section("noise", "Noisy gradients and batch size")
    steps = 400 if quick else 800
    seeds = list(range(8 if quick else 32))
    batches = [1, 8, 64, 512]
    ravine = get_landscape("ravine", lam1=1.0, lam2=10.0)
    rows, finals = [], {}
    for B in batches:
        res = lab.run(
            ravine, NOISE_SPECS, starts=[(-1.5, 1.0)], steps=steps, seeds=seeds, noise_batch=B
        )
        for spec in res.specs:
            idx = res.runs_of(spec)
            tail = res.losses[idx, -max(1, len(res.recorded_steps) // 5) :]
            finals[(spec, B)] = tail.mean(axis=1)
            rows.append(
                {
                    "optimizer": spec,
                    "batch size B": B,
                    "noise std 1/√B": 1 / np.sqrt(B),
                    "mean loss, last 20% (over seeds)": float(tail.mean()),
                    "std over seeds": float(tail.mean(axis=1).std()),
                }
            )
    table = pd.DataFrame(rows)
    s.tables.append(
        (f"Ravine with DeepOBS gradient noise, {len(seeds)} seeds × {steps} steps", table)
    )
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for spec in NOISE_SPECS:
        means = [finals[(spec, B)].mean() for B in batches]
        stds = [finals[(spec, B)].std() for B in batches]
        ax.errorbar(batches, means, yerr=stds, marker="o", capsize=3, label=spec)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="batch size B",
        ylabel="loss over the last 20% of steps",
        title="Noise floor vs batch size",
    )
    ax.legend()
    s.figure(fig, "The loss a constant lr can reach falls as the batch grows", "noise-floor")
    s.numbers = {"rows": rows}
    sgd = [finals[(NOISE_SPECS[0], B)].mean() for B in batches]
    ratios = ", ".join(f"{a / b:.1f}×" for a, b in zip(sgd, sgd[1:]))
    s.paragraphs.append(
        "With a mini-batch of size B the gradient is the true one plus noise of standard "
        "deviation σ/√B (DeepOBS' 2-D model). A constant learning rate then stalls at a noise "
        "floor proportional to the noise variance σ²/B: here SGD's floor falls by "
        f"{ratios} for each 8× larger batch. Equivalently, a batch k times larger tolerates a "
        "learning rate about k times larger at the same floor — the linear scaling rule."
    )
    s.budget = f"2 optimizers × {len(batches)} batch sizes × {len(seeds)} seeds × {steps} steps"
    return s


NOISE_SPECS = ["sgd:lr=0.05", "adam:lr=0.02"]

SCHEDULES = [
    "constant",
    "step:step_size={q},gamma=0.3",
    "cosine",
    "warmup_cosine:warmup={w}",
    "one_cycle",
]


def schedules_section(quick: bool) -> Section:
    """Section 7: learning-rate schedules and their effect on a noisy run."""
    s = Section("schedules", "Learning-rate schedules and what they do to a run")
    steps = 400 if quick else 1000
    seeds = list(range(8 if quick else 24))
    specs = [x.format(q=steps // 4, w=steps // 10) for x in SCHEDULES]
    ravine = get_landscape("ravine", lam1=1.0, lam2=10.0)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    rows = []
    for spec in specs:
        sched = schedule_from_spec(spec, total_steps=steps)
        a.plot(range(steps), sched.values(steps), label=spec.split(":")[0])
        res = lab.run(
            ravine,
            ["sgd:lr=0.1"],
            starts=[(-1.5, 1.0)],
            steps=steps,
            seeds=seeds,
            noise_batch=1,
            schedule=sched,
        )
        curve = np.nanmean(res.losses, axis=0)
        b.plot(res.recorded_steps, curve, label=spec.split(":")[0])
        rows.append(
            {
                "schedule": spec,
                "final loss (mean over seeds)": float(curve[-1]),
                "best mean loss": float(np.nanmin(curve)),
            }
        )
    a.set(xlabel="step", ylabel="lr factor", title="Schedules (factor of the base lr)")
    a.legend(fontsize=8)
    b.set(
        yscale="log",
        xlabel="step",
        ylabel="mean loss over seeds",
        title="SGD on the noisy ravine (κ = 10, B = 1)",
    )
    b.legend(fontsize=8)
    s.figure(fig, "Schedules and the loss they give on a noisy problem", "schedules")
    s.tables.append(
        (
            f"SGD lr 0.1 on ½(x² + 10y²), {len(seeds)} seeds × {steps} steps, noise B = 1",
            pd.DataFrame(rows),
        )
    )
    s.numbers = {"rows": rows}
    const = rows[0]["final loss (mean over seeds)"]
    best = min(rows[1:], key=lambda r: r["final loss (mean over seeds)"])
    s.paragraphs.append(
        "A constant learning rate stalls at the noise floor; decaying it (step, cosine) lowers "
        "the floor late in the run, warm-up avoids large first steps, and one-cycle climbs then "
        f"anneals. Here the constant rate ends at {const:.2g}; the best decaying schedule, "
        f"{best['schedule'].split(':')[0]}, ends at {best['final loss (mean over seeds)']:.2g} "
        f"({const / best['final loss (mean over seeds)']:.0f}× lower)."
    )
    s.budget = f"{len(specs)} schedules × {len(seeds)} seeds × {steps} steps"
    return s
