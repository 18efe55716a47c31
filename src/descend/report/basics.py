"""Report sections on the update rule, EWA and the framework conventions (sections 1, 2, 11)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..ewa import bias_correction_factor, effective_window, ewa
from ..landscapes import get as get_landscape
from ..optim import Newton, from_spec
from ..plots._common import plt  # the Agg backend, set once for every picture
from .document import Section


def descend_path(landscape, spec: str, start, steps: int, scale: float = 1.0) -> np.ndarray:
    """One trajectory of a descend optimizer (by spec) on a landscape, via autograd of the
    landscape's value (×``scale``); Newton specs take the closure with the graph."""
    w = torch.tensor([list(start)], dtype=torch.float64, requires_grad=True)
    opt = from_spec(spec, [w])
    path = [w.detach().clone()]

    def loss():
        return scale * landscape.f(w).sum()

    for _ in range(steps):
        if isinstance(opt, Newton):
            opt.step(loss)
        else:
            w.grad = scale * landscape.grad(w.detach())
            opt.step()
        path.append(w.detach().clone())
        if not torch.isfinite(w).all():
            break
    return torch.cat(path).numpy()


def _first_below(errors: np.ndarray, tol: float) -> int | None:
    hit = np.nonzero(errors < tol)[0]
    return int(hit[0]) if hit.size else None


def update_rule(quick: bool) -> Section:
    """Section 1: θ ← θ − α∇f against Newton's θ ← θ − H⁻¹∇f."""
    s = Section("update-rule", "The update rule: gradient descent vs a Newton step")
    s.paragraphs.append(
        "Gradient descent moves against the gradient by a step α that carries the units of "
        "θ²/f: too small and it crawls, too large and it overshoots. Newton's step divides the "
        "gradient by the curvature instead, θ ← θ − f′(θ)/f″(θ), so it needs no learning rate "
        "and lands on the minimum of a quadratic in one step — at the price of second "
        "derivatives, and only where the curvature is positive."
    )
    steps_1d, steps_2d = (60, 2000) if quick else (100, 20000)
    lr1, lr2 = 0.02, 0.001  # every label below is written from these, never retyped
    well = get_landscape("double-well")
    start1 = (2.0,)
    gd1 = descend_path(well, f"sgd:lr={lr1}", start1, steps_1d)
    nt1 = descend_path(well, "newton:lr=1", start1, steps_1d)
    ros = get_landscape("rosenbrock")
    start2 = (-1.2, 1.0)
    gd2 = descend_path(ros, f"sgd:lr={lr2}", start2, steps_2d)
    nt2 = descend_path(ros, "newton:lr=1,mode=saddle_free", start2, 50)
    tol = 1e-8
    rows = []
    for name, path, target in (
        (f"GD α={lr1:g}, double well", gd1, np.array([1.0])),
        ("Newton, double well", nt1, np.array([1.0])),
        (f"GD α={lr2:g}, Rosenbrock", gd2, np.array([1.0, 1.0])),
        ("Newton (saddle-free), Rosenbrock", nt2, np.array([1.0, 1.0])),
    ):
        err = np.linalg.norm(path - target, axis=1)
        reached = _first_below(err, tol)
        rows.append(
            {
                "run": name,
                "steps": len(path) - 1,
                "steps to ‖θ − θ*‖ < 1e-8": reached if reached is not None else "not reached",
                "final error": float(err[-1]),
            }
        )
    table = pd.DataFrame(rows)
    s.tables.append(("Steps to the minimum", table))
    s.numbers = {
        "newton_steps_double_well": rows[1]["steps to ‖θ − θ*‖ < 1e-8"],
        "gd_steps_double_well": rows[0]["steps to ‖θ − θ*‖ < 1e-8"],
        "newton_steps_rosenbrock": rows[3]["steps to ‖θ − θ*‖ < 1e-8"],
        "gd_final_error_rosenbrock": rows[2]["final error"],
    }
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    xs = np.linspace(-2.2, 2.2, 400)
    a.plot(xs, (xs**2 - 1) ** 2, color="0.3", lw=1.5, label="f(x) = (x² − 1)²")
    for path, color, label in ((gd1, "tab:blue", f"GD α = {lr1:g}"), (nt1, "tab:red", "Newton")):
        x = path[:12, 0]
        a.plot(x, (x**2 - 1) ** 2, "o-", color=color, ms=4, lw=1, label=f"{label} (first 12)")
    a.set(xlim=(-0.2, 2.2), ylim=(-0.3, 10), xlabel="x", ylabel="f(x)", title="1-D: double well")
    a.legend()
    lo = np.minimum(np.r_[-2.0, -1.0], np.vstack([gd2, nt2]).min(0)) - 0.2
    hi = np.maximum(np.r_[2.0, 3.0], np.vstack([gd2, nt2]).max(0)) + 0.2
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 300), np.linspace(lo[1], hi[1], 300))
    z = (1 - gx) ** 2 + 100 * (gy - gx**2) ** 2
    b.contour(gx, gy, np.log10(z + 1e-3), levels=25, cmap="viridis", linewidths=0.7)
    b.plot(
        gd2[:, 0],
        gd2[:, 1],
        "-",
        color="tab:blue",
        lw=1.2,
        label=f"GD α = {lr2:g} ({steps_2d} steps)",
    )
    b.plot(nt2[:, 0], nt2[:, 1], "o-", color="tab:red", ms=4, lw=1.2, label="Newton")
    b.plot(*start2, "ks", label="start")
    b.plot(1, 1, "k*", ms=12, label="minimum (1, 1)")
    b.set(xlabel="x", ylabel="y", title="2-D: Rosenbrock (log contours)")
    b.legend(loc="lower right", fontsize=8)
    s.figure(fig, "Gradient descent and Newton's method on a 1-D and a 2-D function", "paths")

    def reach(row) -> str:
        k = row["steps to ‖θ − θ*‖ < 1e-8"]
        if isinstance(k, int):
            return f"reaches the minimum to 1e-8 in {k} steps"
        return f"is still {row['final error']:.2g} away after {row['steps']} steps"

    s.paragraphs.append(
        f"On the double well Newton {reach(rows[1])}; gradient descent {reach(rows[0])}. On "
        f"Rosenbrock's curved valley gradient descent {reach(rows[2])}, while Newton (with "
        f"|eigenvalues|, so it never climbs towards a saddle) {reach(rows[3])} — after one "
        "step that overshoots far down the valley's wall."
    )
    from .ideas import stability_edge

    edge = stability_edge(s)
    s.tables.append(
        ("Gradient descent on ½λx² at both sides of the edge", pd.DataFrame(edge["rows"]))
    )
    s.numbers["stability_edge"] = edge["rows"]
    s.paragraphs.append(
        "The step size has a hard edge: on ½λx² each step multiplies x by 1 − αλ, so gradient "
        f"descent converges only for αλ < 2. At λ = {edge['lam']:g} the runs at αλ = 0.5 and 1 "
        "converge (αλ = 1 lands in one step: the Newton step of a quadratic), 1.9 converges "
        "while flipping sign, and 2.1 — only 5% past the edge — diverges; on a ravine the "
        "largest curvature sets this edge for every direction."
    )
    s.budget = (
        f"1-D: {steps_1d} steps each; 2-D: GD {steps_2d} steps, Newton ≤ 50; edge: 4 × "
        f"{edge['steps']} steps; fp64"
    )
    return s


def ewa_section(quick: bool) -> Section:
    """Section 2: exponentially weighted averages of a noisy series, with bias correction."""
    s = Section("ewa", "Exponentially weighted averages and bias correction")
    days = 365
    rng = np.random.default_rng(0)
    t = np.arange(days)
    signal = 12 + 10 * np.sin(2 * np.pi * (t - 100) / 365)
    series = pd.Series(signal + rng.normal(0, 3.0, days), index=t, name="temperature")
    betas = [0.5, 0.9, 0.98]
    raw = ewa(series, betas)
    corrected = ewa(series, betas, bias_correction=True)
    rows = []

    def rmse(a, b):
        return float(np.sqrt(np.mean((a - b) ** 2)))

    for i, beta in enumerate(betas):
        col_raw, col_bc = raw.iloc[:, i].to_numpy(), corrected.iloc[:, i].to_numpy()
        rows.append(
            {
                "β": beta,
                "window 1/(1−β)": effective_window(beta),
                "v₁ (no correction)": col_raw[0],
                "v₁ corrected": col_bc[0],
                "1/(1 − β¹⁰)": float(bias_correction_factor(beta, 10)),
                "RMSE vs true signal": float(np.sqrt(np.mean((col_bc - signal) ** 2))),
                "RMSE, first 20 days, no correction": float(
                    np.sqrt(np.mean((col_raw[:20] - signal[:20]) ** 2))
                ),
                "RMSE, first 20 days, corrected": float(
                    np.sqrt(np.mean((col_bc[:20] - signal[:20]) ** 2))
                ),
            }
        )
    table = pd.DataFrame(rows)
    s.tables.append(("Smoothing a year of noisy daily temperatures", table))
    s.numbers = {"rows": rows, "first_value": float(series.iloc[0])}
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(t, series, ".", color="0.6", ms=3, label="noisy data")
    a.plot(t, signal, "k--", lw=1, label="true signal")
    for i, beta in enumerate(betas):
        a.plot(
            t,
            corrected.iloc[:, i],
            lw=1.5,
            label=f"β = {beta} (window {effective_window(beta):.0f})",
        )
    a.set(xlabel="day", ylabel="°C", title="EWA with bias correction")
    a.legend(fontsize=8)
    for i, beta in enumerate(betas):
        (line,) = b.plot(t[:40], raw.iloc[:40, i], lw=1.2, label=f"β = {beta}, from v₀ = 0")
        b.plot(
            t[:40],
            corrected.iloc[:40, i],
            "--",
            color=line.get_color(),
            lw=1.2,
            label=f"β = {beta}, corrected",
        )
    b.plot(t[:40], series[:40], ".", color="0.6", ms=4)
    b.set(
        xlabel="day",
        ylabel="°C",
        title="The first 40 days: bias correction removes the start-up bias",
    )
    b.legend(fontsize=7)
    s.figure(fig, "EWA of a noisy series for β = 0.5, 0.9, 0.98", "ewa")
    s.paragraphs.append(
        "v_t = βv_{t−1} + (1 − β)x_t averages over about 1/(1 − β) recent points: β = 0.5 follows "
        "the noise, β = 0.98 lags behind the seasons. Started from v₀ = 0 the average is biased "
        "towards zero at first (v₁ = (1 − β)x₁); dividing by 1 − βᵗ removes that bias, which is "
        "exactly what Adam does to its moments. Larger β needs the correction for longer."
    )
    s.budget = f"{days} generated points, seed 0; no optimisation"
    return s


CONVENTION_CASES = [
    ("sgd", "momentum=0.9", "rosenbrock", 1.0, 1e-3),
    ("rmsprop", "", "rosenbrock", 1.0, 0.01),
    ("adagrad", "", "rosenbrock", 1.0, 0.5),
    ("adam", "", "rosenbrock", 1.0, 0.05),
    ("adam", "", "rosenbrock", 1e-7, 0.05),
    ("nadam", "", "rosenbrock", 1.0, 0.05),
]


def case_label(name: str, extra: str, scale: float) -> str:
    """A row's optimizer as the reader should read it: the name with every non-default
    setting that the runs use (``sgd`` with momentum 0.9 is not plain SGD)."""
    label = name + (f" ({extra.replace('=', ' ')})" if extra else "")
    return label + (f" (loss × {scale:g})" if scale != 1 else "")


EPS_CASES = (
    ("torch: ε = 1e-8 outside √v̂", "adam:lr=0.05,convention=torch"),
    ("torch form, Keras' ε = 1e-7", "adam:lr=0.05,convention=torch,eps=1e-7"),
    ("Keras ε̂ form, torch's ε = 1e-8", "adam:lr=0.05,convention=keras,eps=1e-8"),
    ("Keras: ε̂ form, ε = 1e-7", "adam:lr=0.05,convention=keras"),
)


def epsilon_claims(steps: int = 500, scale: float = 1e-7) -> dict:
    """How much ε matters for Adam on Rosenbrock × ``scale`` from (−1.2, 1): the ratio ε/√v̂
    along the torch run (v̂ recomputed from the run's own gradients, β₂ = 0.999), and the
    value of ε and its placement varied separately (a 2 × 2 design)."""
    ros = get_landscape("rosenbrock")
    start = (-1.2, 1.0)
    paths = {label: descend_path(ros, spec, start, steps, scale=scale) for label, spec in EPS_CASES}
    ref = paths[EPS_CASES[0][0]]
    grads = scale * ros.grad(torch.tensor(ref[:-1])).numpy()
    beta2, eps = 0.999, 1e-8
    v = np.zeros(2)
    ratios = []
    for t, g in enumerate(grads, 1):
        v = beta2 * v + (1 - beta2) * g**2
        ratios.append(eps / np.sqrt(v / (1 - beta2**t)))
    ratios = np.asarray(ratios)
    rows = []
    for label, spec in EPS_CASES:
        p = paths[label]
        n = min(len(p), len(ref))
        rows.append(
            {
                "variant": label,
                "spec": spec,
                "final loss": float(ros.f(torch.tensor(p[-1][None])).item()),
                "max ‖θ − θ_torch‖": float(np.linalg.norm(p[:n] - ref[:n], axis=1).max()),
                "final ‖θ − θ_torch‖": float(np.linalg.norm(p[n - 1] - ref[n - 1])),
            }
        )
    return {
        "ratio_median": float(np.median(ratios)),
        "ratio_q90": float(np.quantile(ratios, 0.9)),
        "ratio_max": float(ratios.max()),
        "ratios": ratios,
        "rows": rows,
        "paths": paths,
        "steps": steps,
    }


def conventions_section(quick: bool) -> Section:
    """Section 11: the same optimizer name under torch, Keras and optax conventions."""
    s = Section("conventions", "One name, three conventions: torch, Keras and optax side by side")
    steps = 150 if quick else 500
    ros = get_landscape("rosenbrock")
    start = (-1.2, 1.0)
    rows, paths = [], {}
    for name, extra, _fn, scale, lr in CONVENTION_CASES:
        ref = None
        for conv in ("torch", "keras", "optax"):
            spec = f"{name}:lr={lr},convention={conv}" + (f",{extra}" if extra else "")
            path = descend_path(ros, spec, start, steps, scale=scale)
            paths[(name, scale, conv)] = path
            ref = path if ref is None else ref
            n = min(len(ref), len(path))
            final = path[-1]
            rows.append(
                {
                    "optimizer": case_label(name, extra, scale),
                    "convention": conv,
                    "lr": lr,
                    "final x": float(final[0]),
                    "final y": float(final[1]),
                    "final loss": float(ros.f(torch.tensor(final[None])).item()),
                    "max ‖θ − θ_torch‖ over the run": float(np.abs(path[:n] - ref[:n]).max()),
                }
            )
    table = pd.DataFrame(rows)
    s.tables.append((f"Rosenbrock from {start}, {steps} steps, same lr per row group", table))
    s.numbers = {"rows": rows, "steps": steps}
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    styles = (("torch", "tab:red", "-"), ("keras", "tab:blue", "--"), ("optax", "tab:green", ":"))
    for ax, (name, scale, title) in zip(
        axes,
        [
            ("rmsprop", 1.0, "RMSprop: decay, ε placement, lr inside"),
            ("adam", 1e-7, "Adam on loss × 1e-7: ε vs ε̂"),
            ("nadam", 1.0, "NAdam: momentum schedules"),
        ],
    ):
        pts = np.vstack([paths[(name, scale, c)] for c, _, _ in styles])
        pad = 0.15 * (pts.max(0) - pts.min(0)).max() + 0.02
        lo, hi = pts.min(0) - pad, pts.max(0) + pad
        gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
        z = (1 - gx) ** 2 + 100 * (gy - gx**2) ** 2
        ax.contour(gx, gy, np.log10(z + 1e-3), levels=20, cmap="Greys", linewidths=0.6)
        for conv, color, style in styles:
            p = paths[(name, scale, conv)]
            ax.plot(p[:, 0], p[:, 1], style, color=color, lw=1.6, label=conv)
            ax.plot(p[-1, 0], p[-1, 1], "o", color=color, ms=5)
        ax.plot(*start, "ks", ms=6, label="start")
        ax.set_title(title, fontsize=10)
        ax.set(xlabel="x", ylabel="y", xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]))
        ax.legend(fontsize=8)
    fig.tight_layout()
    s.figure(fig, "The same optimizer name under three frameworks' conventions", "conventions")
    gaps = {(r["optimizer"], r["convention"]): r["max ‖θ − θ_torch‖ over the run"] for r in rows}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for (name, extra, _fn, scale, _lr), ls in zip(
        CONVENTION_CASES, ("-", "-", "-", "-", "--", "-")
    ):
        label = case_label(name, extra, scale)
        for ax, conv in zip(axes, ("keras", "optax")):
            p, ref = paths[(name, scale, conv)], paths[(name, scale, "torch")]
            n = min(len(p), len(ref))
            dist = np.maximum(np.linalg.norm(p[:n] - ref[:n], axis=1), 1e-16)
            ax.plot(range(n), dist, ls, lw=1.3, label=label)
    for ax, conv in zip(axes, ("keras", "optax")):
        ax.set(
            yscale="log",
            ylim=(1e-16, 10),
            xlabel="step",
            ylabel="‖θ − θ_torch‖",
            title=f"{conv} against torch (clipped at 1e-16: identical paths)",
        )
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    s.figure(fig, "Distance from the torch convention's path, per step", "distance")
    eps = epsilon_claims(steps)
    s.tables.append(
        (
            f"Adam on Rosenbrock × 1e-7, {steps} steps: the ε value and the ε placement varied "
            "separately",
            pd.DataFrame([{k: v for k, v in r.items() if k != "spec"} for r in eps["rows"]]),
        )
    )
    e = {r["variant"]: r for r in eps["rows"]}
    value_only = e[EPS_CASES[1][0]]["final ‖θ − θ_torch‖"]
    place_only = e[EPS_CASES[2][0]]["final ‖θ − θ_torch‖"]
    both = e[EPS_CASES[3][0]]["final ‖θ − θ_torch‖"]
    s.numbers["epsilon"] = {k: v for k, v in eps.items() if k not in ("paths", "ratios")}
    s.paragraphs.append(
        "torch, Keras and optax disagree on details that change trajectories: where ε sits "
        "(outside √v, inside it, or Keras' ε̂ = ε·√(1 − β₂ᵗ), which acts like ε/√(1 − β₂ᵗ) "
        "outside √v̂ — larger early on), the defaults (RMSprop's decay 0.99 vs 0.9, ε 1e-8 vs "
        "1e-7, AdaGrad's initial accumulator 0 vs 0.1), whether the learning rate lives inside "
        "the momentum buffer, and NAdam's momentum schedule. SGD with momentum 0.9 differs only "
        "in floating point (distance "
        f"{gaps[(case_label('sgd', 'momentum=0.9', 1.0), 'keras')]:.1e}): with a constant "
        "learning rate the lr-inside and lr-outside forms are the same algorithm."
    )
    s.paragraphs.append(
        "Even with the loss scaled down by 1e-7, ε "
        + ("does not dominate" if eps["ratio_median"] < 0.1 else "matters for")
        + " Adam's step here: along "
        f"the torch run ε/√v̂ has a median of {eps['ratio_median']:.2%} and a maximum of "
        f"{eps['ratio_max']:.2%} (v̂ recomputed from the run's gradients), because √v̂ scales "
        "with the gradients. Keras' path differs "
        + (
            "mostly because its default ε is 10× larger"
            if value_only > place_only
            else "mostly because of where its ε̂ sits"
        )
        + f": after {steps} steps the torch form with Keras' ε = 1e-7 ends {value_only:.3g} "
        f"away from torch ({value_only / both:.0%} of Keras' {both:.3g}), while Keras' ε̂ "
        f"placement with torch's ε = 1e-8 ends only {place_only:.3g} away "
        f"({place_only / both:.0%}); the two together compound."
    )
    s.budget = f"{steps} steps per run, {len(rows)} runs, fp64"
    return s
