"""Report sections on landscapes (sections 3–7), computed with the landscape lab."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import lab, plots
from ..lab import quadratic, theory
from ..lab import race as lab_race
from ..landscapes import get as get_landscape
from ..plots._common import plt  # the Agg backend, set once for every picture
from ..schedules import from_spec as schedule_from_spec
from .document import Section


def _error_norms(result, run: int) -> np.ndarray:
    """‖θ_t − θ*‖ along a run (θ* = 0 on the ravine)."""
    return np.linalg.norm(result.trajectories[run], axis=1)


LOSS_FLOOR = 1e-16  # loss axes stop here: below it fp64 rounding, not the method, is plotted


def momentum_claims(steps: int = 800) -> dict:
    """Section 3's numbers on ½(x² + 100y²) from (−1.5, 1): each method at its exact optimum
    (rate predicted and measured), heavy ball and Nesterov at the same (α, β) = (0.01, 0.9)
    (the comparison that isolates the look-ahead), and Nesterov at heavy ball's optimum."""
    lam1, lam2 = 1.0, 100.0
    a_gd, r_gd = theory.gd_optimal(lam1, lam2)
    a_hb, b_hb, r_hb = theory.heavy_ball_optimal(lam1, lam2)
    a_nag, b_nag, r_nag = quadratic.nesterov_optimal(lam1, lam2)
    sk = math.sqrt(lam2 / lam1)
    b_txt = (sk - 1) / (sk + 1)  # the textbook NAG momentum for strongly convex f, at α = 1/L
    r_txt = theory.nesterov_rate(1 / lam2, b_txt, [lam1, lam2])
    methods = [
        ("gradient descent, optimal α", f"sgd:lr={a_gd!r}", a_gd, 0.0, r_gd),
        (
            "heavy ball, modern v = βv + g",
            f"momentum:lr={a_hb!r},momentum={b_hb!r}",
            a_hb,
            b_hb,
            r_hb,
        ),
        (
            "heavy ball, EMA v = βv + (1−β)g, lr α/(1−β)",
            f"momentum-ema:lr={a_hb / (1 - b_hb)!r},momentum={b_hb!r}",
            a_hb,
            b_hb,
            r_hb,
        ),
        (
            "heavy ball, lr inside v = βv + αg",
            f"momentum:lr={a_hb!r},momentum={b_hb!r},momentum_form=lr_inside",
            a_hb,
            b_hb,
            r_hb,
        ),
        (
            "Nesterov, optimal (α, β)",
            f"nesterov:lr={a_nag!r},momentum={b_nag!r}",
            a_nag,
            b_nag,
            r_nag,
        ),
        (
            "Nesterov, α = 1/L, β = (√κ−1)/(√κ+1)",
            f"nesterov:lr={1 / lam2!r},momentum={b_txt!r}",
            1 / lam2,
            b_txt,
            r_txt,
        ),
    ]
    equal = [
        (
            "heavy ball at (0.01, 0.9)",
            "momentum:lr=0.01,momentum=0.9",
            0.01,
            0.9,
            theory.heavy_ball_rate(0.01, 0.9, [lam1, lam2]),
        ),
        (
            "Nesterov at (0.01, 0.9)",
            "nesterov:lr=0.01,momentum=0.9",
            0.01,
            0.9,
            theory.nesterov_rate(0.01, 0.9, [lam1, lam2]),
        ),
        (
            "Nesterov at heavy ball's optimum",
            f"nesterov:lr={a_hb!r},momentum={b_hb!r}",
            a_hb,
            b_hb,
            theory.nesterov_rate(a_hb, b_hb, [lam1, lam2]),
        ),
    ]
    ravine = get_landscape("ravine", lam1=lam1, lam2=lam2)
    start = [(-1.5, 1.0)]
    res = lab.run(ravine, [m[1] for m in methods], starts=start, steps=steps, tol=1e-12)
    eq = lab.run(ravine, [m[1] for m in equal], starts=start, steps=steps, tol=1e-12)
    rows, eq_rows = [], []
    for i, (label, spec, a, b, predicted) in enumerate(methods):
        err = _error_norms(res, i)
        loss = res.losses[i]
        measured = theory.measured_rate(err, steps // 4, steps // 2)
        rows.append(
            {
                "method": label,
                "α": a,
                "β": b,
                "predicted rate": predicted,
                f"measured (e{steps // 2}/e{steps // 4})^(1/{steps // 4})": measured,
                "relative gap": abs(measured - predicted) / predicted,
                "steps until f < 1e-6": quadratic.stays_below(loss, 1e-6),
                "steps until f < 1e-12": quadratic.stays_below(loss, 1e-12),
                "spec": spec,
                "measured": measured,
            }
        )
    for i, (label, spec, a, b, predicted) in enumerate(equal):
        m = eq.metrics.iloc[i]
        edge = (
            theory.nesterov_max_lr(lam2, b)
            if label.startswith("Nesterov")
            else (theory.heavy_ball_max_lr(lam2, b))
        )
        eq_rows.append(
            {
                "run": label,
                "α": a,
                "β": b,
                "stability edge α <": edge,
                "predicted rate": predicted,
                "sign flips of the velocity": int(m["overshoots"]) if not m["diverged"] else "—",
                "steps until f < 1e-12": quadratic.stays_below(eq.losses[i], 1e-12)
                if not m["diverged"]
                else f"diverged at step {int(m['diverged_step'])}",
                "spec": spec,
            }
        )
    return {
        "kappa": lam2 / lam1,
        "steps": steps,
        "gd": (a_gd, r_gd),
        "heavy_ball": (a_hb, b_hb, r_hb),
        "nesterov": (a_nag, b_nag, r_nag),
        "rows": rows,
        "equal": eq_rows,
        "result": res,
        "equal_result": eq,
    }


def _loss_axes(ax, title: str) -> None:
    ax.set(yscale="log", xlabel="step", ylabel="f − f*", title=title)
    ax.set_ylim(bottom=LOSS_FLOOR)
    ax.grid(True, which="both", alpha=0.3)


def momentum_section(quick: bool) -> Section:
    """Section 3: momentum's three forms and Nesterov on a ravine, theory vs measurement,
    then the race of every optimizer, axis-aligned and rotated 45°."""
    s = Section("momentum", "Momentum in three forms, and Nesterov, on a ravine")
    steps = 400 if quick else 800
    c = momentum_claims(steps)
    a_gd, r_gd = c["gd"]
    a_hb, b_hb, r_hb = c["heavy_ball"]
    a_nag, b_nag, r_nag = c["nesterov"]
    rows, eq_rows = c["rows"], c["equal"]
    show = [{k: v for k, v in r.items() if k not in ("spec", "measured")} for r in rows]
    s.tables.append(
        (
            f"½(x² + 100y²), κ = 100, from (−1.5, 1), {steps} steps: every method at its exact "
            "optimum (one deterministic run each)",
            pd.DataFrame(show),
        )
    )
    s.tables.append(
        (
            "The look-ahead alone: heavy ball and Nesterov at the same (α, β), and Nesterov at "
            "heavy ball's optimum",
            pd.DataFrame([{k: v for k, v in r.items() if k != "spec"} for r in eq_rows]),
        )
    )
    res = c["result"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.3))
    styles = ["-", "-", "--", ":", "-", "-."]
    for i, r in enumerate(rows):
        loss = np.maximum(res.losses[i], LOSS_FLOOR)
        (line,) = a.plot(res.recorded_steps, loss, styles[i], lw=1.4, label=r["method"])
        if r["predicted rate"] > 0:
            t = np.arange(steps + 1)
            f0 = res.losses[i][0]
            a.plot(
                t,
                np.maximum(f0 * r["predicted rate"] ** (2 * t), LOSS_FLOOR),
                color=line.get_color(),
                lw=0.6,
                alpha=0.6,
            )
    _loss_axes(a, "At each method's optimum (thin: f₀·r²ᵗ, the theory's rate)")
    a.legend(fontsize=7)
    eq = c["equal_result"]
    for i, r in enumerate(eq_rows[:2]):
        b.plot(
            eq.recorded_steps,
            eq.trajectories[i, :, 1],
            lw=1.2,
            label=f"{r['run']}: {r['sign flips of the velocity']} sign flips",
        )
    b.set(
        xlabel="step",
        ylabel="y (the steep coordinate)",
        xlim=(0, min(steps, 200)),
        title="Same (α, β) = (0.01, 0.9): the look-ahead damps the oscillation",
    )
    b.axhline(0, color="0.5", lw=0.6)
    b.legend(fontsize=8)
    s.figure(fig, "Rates against theory, and the look-ahead at equal settings", "ravine-loss")
    s.plot(
        lambda p, f: plots.contour(res, p, f),
        "Paths on the ravine (one colour per method)",
        "ravine-paths",
    )

    race_steps = 2000
    races = {angle: lab_race.race(angle, steps=race_steps) for angle in (0.0, 45.0)}
    race_rows = []
    for angle, rr in races.items():
        for r in rr.rows:
            race_rows.append(
                {
                    "rotation": f"{angle:g}°",
                    "optimizer": r["optimizer"],
                    "how set": r["how set"],
                    "hyperparameters": lab_race.format_hyperparameters(r["hyperparameters"]),
                    "steps until f < 1e-6": r["reached"]
                    if r["reached"] is not None
                    else f"not in {race_steps}",
                    "steps until f < 1e-12": r["reached_1e-12"]
                    if r["reached_1e-12"] is not None
                    else f"not in {race_steps}",
                    "final loss": r["final"],
                }
            )
    n_grid = len(lab_race.LR_GRID)
    budget = (
        f"tuning budget: lr over the same {n_grid}-point log grid {lab_race.LR_GRID[0]:g}…"
        f"{lab_race.LR_GRID[-1]:g} for every adaptive optimizer (other hyperparameters at "
        "their defaults), per rotation; GD, heavy ball and Nesterov at exact optima; one "
        "deterministic run per setting (no noise, so no seeds)"
    )
    s.tables.append(
        (
            f"The race on ½(x² + 100y²) from (−1.5, 1), axis-aligned and rotated 45°, {race_steps} "
            f"steps — {budget}",
            pd.DataFrame(race_rows),
        )
    )
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.3), sharey=True)
    for ax, (angle, rr) in zip(axes, races.items()):
        for name, curve in rr.curves.items():
            y = [v if v is not None else np.nan for v in curve["reached"]]
            ls = {"adamw": "--", "amsgrad": ":"}.get(name, "-")
            ax.plot(
                curve["lr"],
                y,
                ls,
                marker="o",
                ms=3,
                lw=1.2,
                label=name + (" (under adam)" if name == "adamw" else ""),
            )
        for name in ("sgd", "momentum", "nesterov"):
            r = rr.row(name)
            if r["reached"] is not None:
                ax.axhline(r["reached"], color="0.4", lw=0.8, ls=":")
                ax.text(
                    lab_race.LR_GRID[0], r["reached"], f" {name} (optimum)", fontsize=7, va="bottom"
                )
        ax.set(xscale="log", yscale="log", xlabel="lr", title=f"ravine rotated {angle:g}°")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(f"steps until f < 1e-6 (gap: not in {race_steps})")
    axes[1].legend(fontsize=7)
    s.figure(
        fig,
        "Each adaptive optimizer's steps-to-1e-6 against its lr (the tuning curve)",
        "race-tuning",
    )

    race_num = {
        f"{angle:g}": [
            dict(r, hyperparameters=lab_race.format_hyperparameters(r["hyperparameters"]))
            for r in rr.rows
        ]
        for angle, rr in races.items()
    }
    s.numbers = {
        "kappa": c["kappa"],
        "rates": [
            {
                "method": r["method"],
                "spec": r["spec"],
                "predicted": r["predicted rate"],
                "measured": r["measured"],
            }
            for r in rows
        ],
        "equal": eq_rows,
        "race": race_rows,
        "races": race_num,
        "race_budget": budget,
    }
    hb_row, nag_row = rows[1], rows[4]
    r0, r45 = races[0.0], races[45.0]

    def steps_of(rr, name):
        v = rr.row(name)["reached"]
        return f"{v}" if v is not None else f"more than {race_steps}"

    tuned0 = min(
        (r for r in r0.rows if r["optimizer"] in r0.curves and r["reached"] is not None),
        key=lambda r: r["reached"],
        default=None,
    )
    s.paragraphs += [
        "On a quadratic the theory is exact (Goh, <i>Why Momentum Really Works</i>, Distill "
        f"2017): gradient descent at its best step α = 2/(λ₁+λ₂) = {a_gd:.6g} shrinks the error "
        f"by (κ−1)/(κ+1) = {r_gd:.4f} per step; heavy ball at α = (2/(√λ₁+√λ₂))² = {a_hb:.6g}, "
        f"β = ((√κ−1)/(√κ+1))² = {b_hb:.6g} by (√κ−1)/(√κ+1) = {r_hb:.4f}. The runs use these "
        "values to full precision: rounded ones are no longer the optimum (the heavy ball's "
        "double root splits and the rate gets worse). The measured rates come from the actual "
        "descend optimizers.",
        "The three momentum forms of the notes are the same algorithm in different units: the "
        "EMA form needs lr α/(1−β) to match, and the lr-inside form (Keras, Sutskever) equals "
        "the modern one while the learning rate is constant.",
        "Nesterov is not a better heavy ball on a quadratic. Optimally tuned (α = "
        f"{a_nag:.4g}, β = {b_nag:.4g}, found by minimising its closed-form rate) it converges "
        f"at {r_nag:.4f} per step, slower than heavy ball's {r_hb:.4f}: here heavy ball needs "
        f"{hb_row['steps until f < 1e-6']} steps to f < 1e-6 and "
        f"{hb_row['steps until f < 1e-12']} to 1e-12, Nesterov {nag_row['steps until f < 1e-6']} "
        f"and {nag_row['steps until f < 1e-12']}. At heavy ball's optimum Nesterov diverges: its "
        f"stability edge is α < (2+2β)/((1+2β)λmax) = {eq_rows[2]['stability edge α <']:.4f}. "
        "What the look-ahead does is damp: at the same (α, β) = (0.01, 0.9) heavy ball's "
        f"velocity changes sign {eq_rows[0]['sign flips of the velocity']} times across the "
        f"ravine, Nesterov's {eq_rows[1]['sign flips of the velocity']} times, at nearly the same "
        f"asymptotic rate ({eq_rows[0]['predicted rate']:.4f} vs "
        f"{eq_rows[1]['predicted rate']:.4f}).",
        "The race gives every optimizer the same chance (budget beside the table). Axis-aligned, "
        "the diagonal preconditioners shine: "
        + (
            f"{tuned0['optimizer']} reaches 1e-6 in {tuned0['reached']} steps"
            if tuned0 is not None
            else "none of the tuned optimizers reaches 1e-6"
        )
        + f", against {steps_of(r0, 'momentum')} for heavy ball. Rotate the same ravine by 45° "
        "and the curvature no longer lies along the coordinates that AdaGrad, RMSprop and Adam "
        f"rescale: AdaGrad needs {steps_of(r45, 'adagrad')} steps, Adam {steps_of(r45, 'adam')}, "
        f"RMSprop {steps_of(r45, 'rmsprop')}, while gradient descent ({steps_of(r45, 'sgd')}) "
        f"and heavy ball ({steps_of(r45, 'momentum')}) do not care about the rotation. That "
        "is the lesson about diagonal preconditioners.",
    ]
    s.budget = (
        f"{len(rows)} + {len(eq_rows)} runs × {steps} steps; race 2 rotations × "
        f"({len(r0.rows) - len(r0.curves)} exact + {len(r0.curves)} × {n_grid} lrs) × "
        f"{race_steps} steps"
    )
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
