"""The ideas the notes hinge on, shown: figures and their numbers, each computed live from
closed forms (:mod:`descend.lab.theory`, :mod:`descend.lab.quadratic`) and checked against the
actual descend optimizers where a run is cheap.

* :func:`stability_edge` — α < 2/λmax: gradient descent at αλ = 0.5, 1, 1.9, 2.1 (section 1);
* :func:`sqrt_kappa` — momentum's √κ: steps against κ for GD, heavy ball, Nesterov, and the
  heavy ball's (α, β) rate map with its stability edges and critical damping (section 3);
* :func:`adam_steps` — Adam's first step sizes with and without bias correction, RMSprop's,
  and the update size against the gradient scale (sign descent until |g| nears ε) (section 4);
* :func:`adam_warmup` — Adam with and without linear warm-up under heavy gradient noise, over
  seeds with intervals (section 4).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..lab import quadratic, theory
from ..optim import from_spec
from ..plots._common import plt
from .document import Section

EDGE_PRODUCTS = (0.5, 1.0, 1.9, 2.1)


def stability_edge(section: Section, lam: float = 100.0, steps: int = 40) -> dict:
    """GD on f = ½λx² from x₀ = 1 at αλ ∈ :data:`EDGE_PRODUCTS`: |x_t| measured with descend's
    SGD against the closed form |1 − αλ|ᵗ."""
    rows = []
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for c in EDGE_PRODUCTS:
        lr = c / lam
        w = torch.ones(1, dtype=torch.float64, requires_grad=True)
        opt = from_spec(f"sgd:lr={lr!r}", [w])
        xs = [1.0]
        for _ in range(steps):
            w.grad = lam * w.detach().clone()
            opt.step()
            xs.append(float(w.detach()))
        xs = np.abs(np.array(xs))
        factor = abs(1 - c)
        theory_xs = factor ** np.arange(steps + 1)
        (line,) = ax.plot(xs, "o", ms=3, label=f"αλ = {c:g} (lr {lr:g}): |1 − αλ| = {factor:g}")
        ax.plot(np.maximum(theory_xs, 1e-16), color=line.get_color(), lw=1)
        rows.append(
            {
                "αλ": c,
                "lr": lr,
                "factor |1 − αλ|": factor,
                "|x_40| measured": float(xs[-1]),
                "|x_40| theory": float(theory_xs[-1]),
                "converges": bool(c < 2),
            }
        )
    ax.set(
        yscale="log",
        ylim=(1e-16, 1e3),
        xlabel="step",
        ylabel="|x_t| (log)",
        title=f"GD on ½λx², λ = {lam:g}: the edge α < 2/λ = {2 / lam:g}",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    section.figure(fig, "The stability edge: points measured, lines |1 − αλ|ᵗ", "stability-edge")
    return {"rows": rows, "lam": lam, "steps": steps}


def hb_rates(alpha: np.ndarray, beta: np.ndarray, lams) -> np.ndarray:
    """Heavy ball's rate max|σ| on arrays of (α, β) (see :func:`theory.heavy_ball_roots`)."""
    worst = np.zeros(np.broadcast(alpha, beta).shape)
    for lam in lams:
        a = 1.0 + beta - alpha * lam
        root = np.sqrt((a * a - 4.0 * beta).astype(complex))
        worst = np.maximum(worst, np.maximum(np.abs((a + root) / 2), np.abs((a - root) / 2)))
    return worst


KAPPAS = tuple(float(k) for k in np.geomspace(10, 1e4, 7))


def sqrt_kappa(section: Section, tol: float = 1e-6) -> dict:
    """Steps to shrink the error by ``tol`` against κ (λ₁ = 1, λₙ = κ) at the closed-form rates
    of GD (best step), heavy ball (optimum), Nesterov at (1/L, (√κ−1)/(√κ+1)) and tuned Nesterov,
    with reference slopes 1 and ½; and heavy ball's rate over (α, β) at κ = 100."""
    rows = []
    for k in KAPPAS:
        r_gd = theory.gd_optimal(1.0, k)[1]
        r_hb = theory.heavy_ball_optimal(1.0, k)[2]
        sk = math.sqrt(k)
        r_txt = theory.nesterov_rate(1.0 / k, (sk - 1) / (sk + 1), [1.0, k])
        r_nag = quadratic.nesterov_optimal(1.0, k)[2]
        rows.append(
            {
                "κ": k,
                "GD, α = 2/(λ₁+λₙ)": theory.steps_to_reduce(r_gd, tol),
                "heavy ball, optimal": theory.steps_to_reduce(r_hb, tol),
                "Nesterov, 1/L, (√κ−1)/(√κ+1)": theory.steps_to_reduce(r_txt, tol),
                "Nesterov, tuned": theory.steps_to_reduce(r_nag, tol),
            }
        )
    slopes = {}
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.4))
    ks = np.array(KAPPAS)
    for name in list(rows[0])[1:]:
        y = np.array([r[name] for r in rows], float)
        slopes[name] = float(np.polyfit(np.log(ks), np.log(y), 1)[0])
        a.plot(ks, y, "o-", ms=4, label=f"{name} (slope {slopes[name]:.2f})")
    ref = rows[0]["GD, α = 2/(λ₁+λₙ)"]
    a.plot(ks, ref * ks / ks[0], "k:", lw=1, label="slope 1")
    ref = rows[0]["heavy ball, optimal"]
    a.plot(ks, ref * np.sqrt(ks / ks[0]), "k--", lw=1, label="slope ½")
    a.set(
        xscale="log",
        yscale="log",
        xlabel="condition number κ",
        ylabel=f"steps to shrink the error by {tol:g}",
        title="Momentum's √κ (closed-form rates)",
    )
    a.grid(True, which="both", alpha=0.3)
    a.legend(fontsize=7)
    # heavy ball's rate over (α, β) on the spectrum (1, 100)
    lams = (1.0, 100.0)
    alphas = np.linspace(1e-4, 0.045, 300)
    betas = np.linspace(0.0, 0.999, 300)
    A, B = np.meshgrid(alphas, betas)
    R = hb_rates(A, B, lams)
    img = b.contourf(A, B, np.minimum(R, 1.0), levels=np.linspace(0.8, 1.0, 21), cmap="viridis")
    fig.colorbar(img, ax=b, label="rate max|σ| (≥ 1: diverges)")
    b.contour(A, B, R, levels=[1.0], colors="red", linewidths=1.2)
    b.plot((2 + 2 * betas) / lams[1], betas, "r--", lw=1, label="edge α = (2 + 2β)/λmax")
    for lam, ls in zip(lams, (":", "-.")):
        crit = (1 - np.sqrt(alphas * lam)) ** 2
        ok = alphas * lam <= 4
        b.plot(alphas[ok], crit[ok], "w" + ls, lw=1.2, label=f"critical damping, λ = {lam:g}")
    a_hb, b_hb, r_hb = theory.heavy_ball_optimal(*lams)
    b.plot([a_hb], [b_hb], "w*", ms=12, mec="k", label=f"optimum, rate {r_hb:.4f}")
    b.set(
        xlim=(alphas[0], alphas[-1]),
        ylim=(0, 1),
        xlabel="α",
        ylabel="β",
        title="Heavy ball's rate on λ = (1, 100) (Distill's view)",
    )
    b.legend(fontsize=7, loc="lower right", facecolor="0.35", labelcolor="white")
    fig.tight_layout()
    section.figure(
        fig,
        "Steps against κ (log–log) with slopes 1 and ½, and the (α, β) rate map with both "
        "stability edges (red) and the critical-damping curves",
        "sqrt-kappa",
    )
    return {"rows": rows, "slopes": slopes, "map_min": float(R.min())}


def adam_steps(section: Section, steps: int = 50, lr: float = 1e-3) -> dict:
    """|update|/lr for a constant gradient over the first ``steps`` steps: Adam (bias-corrected:
    1), Adam without correction ((1 − β₁ᵗ)/√(1 − β₂ᵗ)) and RMSprop (1/√(1 − αᵗ)), measured with
    descend's optimizers; and Adam's first update against the gradient's scale."""
    cases = {
        "Adam, bias-corrected": f"adam:lr={lr}",
        "Adam, no bias correction": f"adam:lr={lr},bias_correction=false",
        "RMSprop (α = 0.99)": f"rmsprop:lr={lr}",
    }
    formulas = {
        "Adam, bias-corrected": lambda t: np.ones_like(t),
        "Adam, no bias correction": lambda t: (1 - 0.9**t) / np.sqrt(1 - 0.999**t),
        "RMSprop (α = 0.99)": lambda t: 1 / np.sqrt(1 - 0.99**t),
    }
    measured = {}
    for name, spec in cases.items():
        w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        opt = from_spec(spec, [w])
        prev, sizes = 0.0, []
        for _ in range(steps):
            w.grad = torch.full_like(w, 0.5)
            opt.step()
            now = float(w.detach())
            sizes.append(abs(now - prev) / lr)
            prev = now
        measured[name] = np.array(sizes)
    t = np.arange(1, steps + 1, dtype=float)
    scales = np.geomspace(1e-12, 1e2, 57)
    first = []
    for g in scales:
        w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        opt = from_spec(f"adam:lr={lr}", [w])
        w.grad = torch.full_like(w, float(g))
        opt.step()
        first.append(abs(float(w.detach())) / lr)
    first = np.array(first)
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4))
    for name, sizes in measured.items():
        (line,) = a.plot(t, sizes, "o", ms=3, label=f"{name} (measured)")
        a.plot(t, formulas[name](t), color=line.get_color(), lw=1)
    a.set(
        yscale="log",
        xlabel="step t",
        ylabel="|update| / lr",
        title="First steps under a constant gradient (lines: formulas)",
    )
    a.grid(True, which="both", alpha=0.3)
    a.legend(fontsize=8)
    b.plot(scales, first, "o", ms=3, label="Adam's first update / lr (measured)")
    b.plot(scales, scales / (scales + 1e-8), "k-", lw=1, label="|g|/(|g| + ε), ε = 1e-8")
    b.axvline(1e-8, color="0.5", ls=":", lw=1)
    b.set(
        xscale="log",
        yscale="log",
        xlabel="gradient scale |g|",
        ylabel="|update| / lr",
        title="Sign descent until |g| nears ε",
    )
    b.grid(True, which="both", alpha=0.3)
    b.legend(fontsize=8)
    fig.tight_layout()
    section.figure(fig, "Adam's mechanics: bias correction and the role of ε", "adam-steps")
    return {
        "first_steps": {k: v[:3].tolist() for k, v in measured.items()},
        "formula_first_steps": {k: formulas[k](t[:3]).tolist() for k in measured},
        "scales": scales.tolist(),
        "first_update": first.tolist(),
    }


def nadam_schedule(section: Section, steps: int, lr: float = 0.05, window: int = 50) -> dict:
    """NAdam on Rosenbrock from (−1.2, 1) with torch's momentum schedule
    μ_t = β₁(1 − ½·0.96^{0.004t}) against a constant μ = β₁ = 0.9 (optax's convention), and
    the schedule itself. A spike is counted where f rises above 100× its minimum over the
    previous ``window`` steps (each such excursion once)."""
    from .. import lab

    specs = [f"nadam:lr={lr}", f"nadam:lr={lr},convention=optax"]
    names = ["torch: μ_t scheduled", "optax: μ = 0.9 constant"]
    res = lab.run("rosenbrock", specs, starts=[(-1.2, 1.0)], steps=steps, tol=1e-6)
    t = np.arange(steps + 1)
    mu = 0.9 * (1 - 0.5 * 0.96 ** (0.004 * t))
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4))
    rows = []
    for i, name in enumerate(names):
        f = np.asarray(res.losses[i], float)
        prev = np.array([f[max(0, k - window) : k].min() if k else f[0] for k in range(len(f))])
        rise = f > 100 * prev
        spikes = int(np.sum(rise[1:] & ~rise[:-1]))
        a.plot(
            res.recorded_steps,
            np.maximum(f, 1e-16),
            lw=1.1,
            ls="-" if i == 0 else "--",
            label=f"{name}: {spikes} spikes",
        )
        rows.append({"variant": name, "spec": specs[i], "spikes": spikes, "final f": float(f[-1])})
    a.set(
        yscale="log",
        ylim=(1e-16, None),
        xlabel="step",
        ylabel="f − f*",
        title=f"NAdam lr {lr:g} on Rosenbrock",
    )
    a.grid(True, which="both", alpha=0.3)
    a.legend(fontsize=8)
    b.plot(t, mu, label="torch: 0.9(1 − ½·0.96^{0.004t})")
    b.axhline(0.9, color="tab:orange", ls="--", label="constant 0.9")
    b.set(xlabel="step", ylabel="momentum μ_t", ylim=(0, 1), title="NAdam's momentum schedule")
    b.legend(fontsize=8)
    fig.tight_layout()
    section.figure(fig, "NAdam with torch's μ schedule and with a constant μ", "nadam")
    return {"rows": rows, "mu_start": float(mu[0]), "mu_end": float(mu[-1]), "steps": steps}


def noisy_adam_runs(
    lr: float,
    warmup: int,
    *,
    seeds: int,
    steps: int,
    sigma: float,
    lams=(1.0, 10.0),
    seed: int = 0,
) -> np.ndarray:
    """f(θ_t) = ½Σλᵢθᵢ² along descend's Adam (torch defaults but lr) from θ₀ = 1 with gradient
    λθ + σξ, ξ ~ N(0, 1) fresh every step; ``seeds`` runs at once as the rows of one tensor
    (Adam is elementwise, so the rows are independent runs), the noise drawn from one seeded
    generator (the same draws for every lr and warm-up). With ``warmup`` = W > 0 the lr is
    lr·min(1, t/W) at update t = 1, 2, … (linear warm-up, then constant). Shape (steps, seeds)."""
    g = torch.Generator().manual_seed(seed)
    lam = torch.tensor(lams, dtype=torch.float64)
    theta = torch.ones(seeds, len(lams), dtype=torch.float64, requires_grad=True)
    opt = from_spec("adam", [theta], lr=lr)
    out = np.empty((steps, seeds))
    for t in range(steps):
        opt.param_groups[0]["lr"] = lr * min(1.0, (t + 1) / warmup) if warmup else lr
        noise = torch.randn(seeds, len(lams), generator=g, dtype=torch.float64)
        theta.grad = lam * theta.detach() + sigma * noise
        opt.step()
        out[t] = (0.5 * lam * theta.detach() ** 2).sum(1).numpy()
    return out


def adam_warmup(
    section: Section,
    lrs=(0.01, 0.1, 0.5),
    *,
    seeds: int = 64,
    steps: int = 600,
    warmup: int = 100,
    sigma: float = 10.0,
    early: int = 150,
    tail: int = 100,
) -> dict:
    """Adam with and without linear warm-up on a noisy quadratic (gradient noise σ = 10 against
    gradients of at most 10 at the start): the largest f over the first ``early`` steps and the
    mean f over the last ``tail`` steps, each a mean over seeds with its 95% t-interval, and a
    verdict that calls overlapping intervals "not distinguishable"."""
    from ..train.compare import t_interval

    rows, curves = [], {}
    for lr in lrs:
        for w in (0, warmup):
            f = noisy_adam_runs(lr, w, seeds=seeds, steps=steps, sigma=sigma)
            curves[(lr, w)] = f
            em, eh, _ = t_interval(f[:early].max(0).tolist())
            fm, fh, _ = t_interval(f[-tail:].mean(0).tolist())
            rows.append(
                {
                    "lr": lr,
                    "warm-up": f"linear, {w} steps" if w else "none",
                    f"max f, steps 1–{early}": em,
                    "±95% (max)": eh,
                    f"mean f, last {tail} steps": fm,
                    "±95% (final)": fh,
                }
            )

    def verdict(a: dict, b: dict, key: str, half: str) -> str:
        lo_a, hi_a = a[key] - a[half], a[key] + a[half]
        lo_b, hi_b = b[key] - b[half], b[key] + b[half]
        if hi_b < lo_a:
            return "lower with warm-up"
        if hi_a < lo_b:
            return "higher with warm-up"
        return "not distinguishable"

    verdicts = []
    for k, lr in enumerate(lrs):
        a, b = rows[2 * k], rows[2 * k + 1]
        verdicts.append(
            {
                "lr": lr,
                "early": verdict(a, b, f"max f, steps 1–{early}", "±95% (max)"),
                "final": verdict(a, b, f"mean f, last {tail} steps", "±95% (final)"),
            }
        )
    fig, axes = plt.subplots(1, len(lrs), figsize=(4.2 * len(lrs), 3.6), sharey=True)
    t = np.arange(1, steps + 1)
    for ax, lr in zip(np.atleast_1d(axes), lrs):
        for w, style in ((0, "-"), (warmup, "--")):
            f = curves[(lr, w)]
            lo, med, hi = np.quantile(f, [0.1, 0.5, 0.9], axis=1)
            (line,) = ax.plot(t, med, ls=style, label="no warm-up" if not w else f"warm-up {w}")
            ax.fill_between(t, lo, hi, color=line.get_color(), alpha=0.2)
        ax.axvline(warmup, color="0.5", ls=":", lw=1)
        ax.set(yscale="log", xlabel="step t", title=f"Adam, lr {lr:g}, σ = {sigma:g}")
        ax.grid(True, which="both", alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("f(θ_t) (median, band 10–90% of seeds)")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    section.figure(
        fig, "Adam under heavy gradient noise, with and without linear warm-up", "warmup"
    )
    said = "; ".join(
        f"at lr {v['lr']:g} the early peak is {v['early']} and the final loss {v['final']}"
        for v in verdicts
    )
    text = (
        f"Warm-up for Adam under heavy noise, on f = ½(θ₁² + 10θ₂²) from θ₀ = (1, 1) with "
        f"gradient noise σ = {sigma:g} ({seeds} seeds, {steps} steps, linear warm-up over "
        f"{warmup} steps, 95% t-intervals; f₀ = 5.5, so an early peak near it means no "
        f"excursion): {said}. Adam's first update is lr·sign(g) in every "
        "coordinate whatever the noise, so without warm-up the early steps are full-size random "
        "moves; whether that matters depends on lr against the distance to the minimum."
    )
    return {"rows": rows, "verdicts": verdicts, "text": text, "seeds": seeds, "steps": steps}
