"""Report sections on real models (sections 8–10), computed with the training lab."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import train
from ..optim import from_spec
from ..plots._common import plt  # the Agg backend, set once for every picture
from ..train.figures import plot_lr_find
from .document import Section

COMPARE_OPTIMIZERS = [
    "sgd:lr=0.1",
    "momentum:lr=0.05,momentum=0.9",
    "rmsprop:lr=0.001",
    "adam:lr=0.001",
    "adamw:lr=0.001,weight_decay=0.01",
]


def _summary_table(cmp, columns: dict[str, str]) -> pd.DataFrame:
    summary = cmp.summary()
    out = {}
    for key, label in columns.items():
        out[label] = summary[key]
        if f"{key}_ci" in summary and summary[f"{key}_ci"].abs().sum() > 0:
            out[f"{label} ±95%"] = summary[f"{key}_ci"]
    return pd.DataFrame(out)


def _figures(section: Section, cmp, prefix: str, captions: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for path in cmp.save(tmp, prefix):
            name = Path(path).name
            if name.endswith(".png"):
                kind = name[len(prefix) + 1 : -4]
                caption = captions.get(kind, kind.replace("_", " "))
                section.image(path, caption, f"{prefix}-{kind}")


def lr_finder_section(quick: bool) -> Section:
    """Section 8: the LR range test on digits, all three suggestion rules, over seeds."""
    s = Section("lr-finder", "The learning-rate range test on digits")
    data = train.load("digits")
    steps = 80 if quick else 150
    seeds = list(range(10))

    def build(seed: int):
        torch.manual_seed(seed)
        model = train.mlp(data.n_features, hidden=(64,), n_classes=data.n_classes)
        loader = train.TensorLoader(
            data.x_train, data.y_train, batch_size=32, shuffle=True, seed=seed
        )
        return (
            model,
            nn.CrossEntropyLoss(),
            loader,
            from_spec("sgd:momentum=0.9", model.parameters()),
        )

    spread = train.lr_find_seeds(build, seeds, start_lr=1e-5, end_lr=10.0, num_steps=steps)
    with tempfile.TemporaryDirectory() as tmp:
        path = plot_lr_find(
            spread.results,
            Path(tmp) / "lr.png",
            title="Range test: MLP on digits, SGD momentum 0.9",
            labels=[f"seed {k}" for k in seeds],
        )
        s.image(
            path,
            f"Loss against learning rate over {len(seeds)} seeds, with each rule's suggestion",
            "range-test",
        )
    table = spread.table().reset_index()
    s.tables.append(("Suggested learning rates per seed", table))
    spread_stats = spread.spread()
    s.tables.append(
        (
            "Spread of each rule over seeds",
            pd.DataFrame(spread_stats).T.reset_index().rename(columns={"index": "rule"}),
        )
    )
    lrs = spread.results[0].lrs
    ratio = float(lrs[1] / lrs[0])  # the sweep's constant factor between steps
    fragility = rule_spreads(spread.table(), ratio)
    s.tables.append(
        (
            f"Spread in grid steps (one step = ×{ratio:.4f} in lr), {len(seeds)} seeds, "
            "bootstrap 95% interval of the standard deviation",
            pd.DataFrame(fragility["rows"]),
        )
    )
    s.numbers = {
        "suggestions": table.to_dict(orient="records"),
        "spread": spread_stats,
        "fragility": fragility,
    }
    s.paragraphs.append(
        "The range test (Smith 2015) trains while the learning rate grows exponentially and "
        "watches the loss, smoothed by a bias-corrected EWA. Three rules read a suggestion off "
        "the curve: the steepest descent, fastai's valley, and a tenth of the minimum. The "
        f"model and optimizer are restored afterwards. Repeating it over {len(seeds)} seeds "
        "shows how much each rule moves, counted in steps of the sweep's grid (each step "
        f"multiplies the lr by {ratio:.4f}): " + fragility["text"]
    )
    s.budget = f"{len(seeds)} seeds × ≤ {steps} steps, batch 32, MLP 64→64→10"
    return s


def rule_spreads(table: pd.DataFrame, ratio: float, resamples: int = 2000) -> dict:
    """Each rule's spread over seeds in grid steps (log of the suggestion in base ``ratio``):
    max − min, standard deviation and a bootstrap 95% interval of that deviation; a rule is
    called more fragile than another only where the intervals do not overlap."""
    rng = np.random.default_rng(0)
    rows = []
    for rule in table.columns:
        values = np.array([v for v in table[rule] if v is not None and np.isfinite(v)], float)
        if len(values) < 2:
            continue
        steps = np.log(values) / np.log(ratio)
        boot = [
            rng.choice(steps, size=len(steps), replace=True).std(ddof=1) for _ in range(resamples)
        ]
        lo, hi = np.quantile(boot, [0.025, 0.975])
        rows.append(
            {
                "rule": rule,
                "seeds": len(values),
                "max − min (grid steps)": float(steps.max() - steps.min()),
                "std (grid steps)": float(steps.std(ddof=1)),
                "95% low": float(lo),
                "95% high": float(hi),
            }
        )
    clear = [
        (a["rule"], b["rule"])
        for a in rows
        for b in rows
        if a is not b and a["95% low"] > b["95% high"]
    ]
    described = "; ".join(
        f"{r['rule']} {r['std (grid steps)']:.1f} (95%: {r['95% low']:.1f}–{r['95% high']:.1f})"
        for r in rows
    )
    if clear:
        verdict = "; ".join(f"{a} moves more than {b}" for a, b in clear) + (
            " (intervals apart); the other pairs are not distinguishable."
        )
    else:
        verdict = "the intervals overlap, so on this evidence no rule is more fragile than another."
    text = f"standard deviations of {described} grid steps; {verdict}"
    return {"rows": rows, "more_fragile": clear, "text": text}


COMPARE_LRS = tuple(float(x) for x in np.geomspace(1e-4, 1.0, 7))


def overlap_verdicts(means, halves) -> list[str]:
    """For values ranked best-first (higher is better): "best" for the first, then "not
    distinguishable" where a 95% interval overlaps the best's, else "lower"."""
    best = int(np.nanargmax(means))
    lo_best = means[best] - halves[best]
    out = []
    for i, (m, h) in enumerate(zip(means, halves)):
        if i == best:
            out.append("best")
        elif m + h >= lo_best:
            out.append("not distinguishable from the best")
        else:
            out.append("lower (intervals apart)")
    return out


def _without_lr(spec: str) -> str:
    """``momentum:lr=0.05,momentum=0.9`` → ``momentum (momentum=0.9)``: the lr has its column."""
    name, _, rest = spec.partition(":")
    rest = ",".join(kv for kv in rest.split(",") if kv and not kv.startswith("lr="))
    return name + (f" ({rest})" if rest else "")


def fair_comparison(
    epochs: int,
    tune_seeds: int,
    final_seeds: int = 10,
    optimizers: tuple[str, ...] | list[str] | None = None,
) -> dict:
    """Every optimizer (default :data:`COMPARE_OPTIMIZERS`) gets the same tuning budget: its lr over
    :data:`COMPARE_LRS` (other hyperparameters as written), ``tune_seeds`` seeds each, selected
    by mean final validation accuracy; the selected settings are then rerun on
    ``final_seeds`` fresh seeds (100, 101, …) and reported with validation and test accuracy."""
    optimizers = list(COMPARE_OPTIMIZERS if optimizers is None else optimizers)
    names = [spec.split(":")[0] for spec in optimizers]
    bases = [
        ",".join(kv for kv in spec.partition(":")[2].split(",") if kv and not kv.startswith("lr="))
        for spec in optimizers
    ]
    tuning = train.compare(
        "digits",
        [n + (":" + b if b else "") for n, b in zip(names, bases)],
        lr_grid=list(COMPARE_LRS),
        seeds=tune_seeds,
        epochs=epochs,
        threads=1,
    )
    chosen = tuning.summary(selected_only=True)
    specs = [
        f"{row['optimizer'].split(':')[0]}:lr={row['lr']!r}"
        + ("," + row["optimizer"].partition(":")[2] if ":" in row["optimizer"] else "")
        for _, row in chosen.iterrows()
    ]
    final = train.compare(
        "digits", specs, seeds=list(range(100, 100 + final_seeds)), epochs=epochs, threads=1
    )
    summary = final.summary()
    order = np.argsort(-summary["final_val_acc"].to_numpy())
    summary = summary.iloc[order].reset_index(drop=True)
    verdict_val = overlap_verdicts(
        summary["final_val_acc"].to_numpy(), summary["final_val_acc_ci"].to_numpy()
    )
    verdict_test = overlap_verdicts(
        summary["test_acc"].to_numpy(), summary["test_acc_ci"].to_numpy()
    )
    edge = {COMPARE_LRS[0], COMPARE_LRS[-1]}
    rows = [
        {
            "optimizer": _without_lr(row["optimizer"]),
            "selected lr": row["lr"],
            "lr at the grid's edge": any(abs(row["lr"] / e - 1) < 1e-9 for e in edge),
            "final val acc": row["final_val_acc"],
            "val ±95%": row["final_val_acc_ci"],
            "val ranking": verdict_val[i],
            "test acc": row["test_acc"],
            "test ±95%": row["test_acc_ci"],
            "test ranking": verdict_test[i],
            "seeds": int(row["runs"] - row["diverged"]),
            "diverged": int(row["diverged"]),
        }
        for i, (_, row) in enumerate(summary.iterrows())
    ]
    budget = (
        f"tuning budget: lr over the same {len(COMPARE_LRS)}-point log grid "
        f"{COMPARE_LRS[0]:g}…{COMPARE_LRS[-1]:g} for every optimizer (momentum 0.9 and AdamW's "
        f"λ = 0.01 as written, the rest at defaults), {tune_seeds} seed(s) per point, selected "
        f"by final validation accuracy; then {final_seeds} fresh seeds at the selected lr; "
        f"{epochs} epochs, batch 32"
    )
    return {"tuning": tuning, "final": final, "rows": rows, "budget": budget}


def ranking_sentence(rows: list[dict]) -> str:
    """What the ranking supports, in words: the best, and who cannot be told apart from it."""
    if not rows:
        return ""
    best = rows[0]
    tied_val = [r["optimizer"] for r in rows if r["val ranking"].startswith("not")]
    test_best = next(r for r in rows if r["test ranking"] == "best")
    tied_test = [r["optimizer"] for r in rows if r["test ranking"].startswith("not")]
    text = (
        f"{best['optimizer']} has the highest mean validation accuracy "
        f"({best['final val acc']:.3f} ± {best['val ±95%']:.3f})"
    )
    text += (
        "; " + ", ".join(tied_val) + " are not distinguishable from it (95% intervals overlap)"
        if tied_val
        else ", and its interval is apart from every other's"
    )
    text += (
        f". On the test set {test_best['optimizer']} is highest "
        f"({test_best['test acc']:.3f} ± {test_best['test ±95%']:.3f})"
        + (", with " + ", ".join(tied_test) + " not distinguishable." if tied_test else ".")
    )
    return text


def sharpness(model: nn.Module, x: torch.Tensor, y: torch.Tensor, iters: int = 20) -> float:
    """The largest eigenvalue of the Hessian of the mean cross-entropy at the model's weights,
    by power iteration on Hessian-vector products (double backward), from a seeded start."""
    params = [p for p in model.parameters() if p.requires_grad]
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(0)
    v = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
    lam = 0.0
    for _ in range(iters):
        norm = torch.sqrt(sum((u * u).sum() for u in v))
        v = [u / norm for u in v]
        grads = torch.autograd.grad(loss_fn(model(x), y), params, create_graph=True)
        hv = torch.autograd.grad(sum((g * u).sum() for g, u in zip(grads, v)), params)
        lam = float(sum((h * u).sum() for h, u in zip(hv, v)))
        v = [h.detach() for h in hv]
    return lam


def batch_scaling(section: Section, study, budget: str) -> dict:
    """Updates and samples to the target accuracy against B with the ideal-scaling line, and
    the sharpness of the training loss at the initial weights: lr × sharpness > 2 is where
    full-batch gradient descent on the initial quadratic model cannot be stable."""
    from ..train.studies import BATCH_SIZE_BUDGETS
    from ..train.trainer import seed_everything

    cfg = study.config
    n_train = cfg["n_train"]
    summary = study.summary()
    summary = summary[summary["selected"]]
    rows = []
    for _, r in summary.iterrows():
        b = n_train if r["batch_size"] == "full" else int(r["batch_size"])
        rows.append(
            {
                "batch size": r["batch_size"],
                "B": b,
                "lr": float(r["lr"]),
                "reached target (runs)": f"{int(r['reached'])}/{int(r['runs'])}",
                "updates to target": float(r["updates_to_target"]),
                "samples to target": float(r["updates_to_target"]) * b,
            }
        )
    ds = train.load("cat-dog", n_samples=BATCH_SIZE_BUDGETS[budget][0])  # the study's data
    seed_everything(cfg["seeds"][0])
    model = train.build("mlp", ds)
    sharp = sharpness(model, ds.x_train, ds.y_train)
    for r in rows:
        r["lr × sharpness at init"] = r["lr"] * sharp
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    ok = [r for r in rows if np.isfinite(r["updates to target"])]
    if ok:
        bs = np.array([r["B"] for r in ok], float)
        a.plot(bs, [r["updates to target"] for r in ok], "o-", label="measured (mean of runs)")
        a.plot(bs, ok[0]["updates to target"] * bs[0] / bs, "k--", lw=1, label="ideal: ∝ 1/B")
        b.plot(bs, [r["samples to target"] for r in ok], "o-", label="measured")
        b.axhline(ok[0]["samples to target"], color="k", ls="--", lw=1, label="ideal: constant")
        b.set_ylim(ok[0]["samples to target"] / 4, ok[0]["samples to target"] * 4)
    for ax, name in zip((a, b), ("updates to target", "samples to target")):
        ax.set(xscale="log", yscale="log", xlabel="batch size B", ylabel=name)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"Batch size against the target val accuracy {cfg['target_accuracy']:g} (lr ∝ B); "
        f"sharpness at init {sharp:.3g}"
    )
    fig.tight_layout()
    section.figure(
        fig, "Updates and samples to the target against B, with ideal scaling", "scaling"
    )
    section.tables.append(
        ("Perfect scaling would keep samples to target constant", pd.DataFrame(rows))
    )
    full = next((r for r in rows if r["batch size"] == "full"), None)
    text = (
        f"The loss's sharpness (largest Hessian eigenvalue) at the initial weights is {sharp:.3g}, "
        "so gradient descent on it is stable only for lr < 2/sharpness = "
        f"{2 / sharp:.3g}"
        + (
            f"; the full batch's linearly scaled lr {full['lr']:.3g} gives lr × sharpness = "
            f"{full['lr × sharpness at init']:.3g}"
            + (
                " > 2: its first updates cannot be stable on the initial quadratic model "
                "(whether that stops training is measured by the arms below)."
                if full["lr × sharpness at init"] > 2
                else "."
            )
            if full
            else "."
        )
    )
    return {"rows": rows, "sharpness": sharp, "text": text}


def scaling_arms(section: Section, study, quick: bool) -> dict:
    """The "linear + warm-up" and "√B" arms (with the linear control) on an updates budget,
    beside the study (see :mod:`descend.report.batch_arms`)."""
    from ..train.studies import BATCH_SIZE_BUDGETS
    from . import batch_arms

    cfg = study.config
    result = batch_arms.run_arms(
        epochs=cfg["epochs"],
        seeds=1 if quick else 2,
        n_samples=BATCH_SIZE_BUDGETS["quick" if quick else "default"][0],
        target=cfg["target_accuracy"],
    )
    study_rows = []
    summary = study.summary()
    for _, r in summary[summary["selected"]].iterrows():
        b = cfg["n_train"] if r["batch_size"] == "full" else int(r["batch_size"])
        study_rows.append({"B": b, "updates to target": float(r["updates_to_target"])})
    section.figure(
        batch_arms.arms_figure(result, study_rows),
        "Updates to the target against B: the study (epoch budget) and the scaling-rule arms "
        "(updates budget)",
        "arms",
    )
    section.tables.append(
        (
            f"Scaling-rule arms: sgd from lr {result['base_lr']:g} at B = 32, budget "
            f"max({result['min_updates']}, {result['epochs']} epochs) updates, warm-up "
            f"{result['warmup']} updates, {result['seeds']} seed(s), no tuning",
            batch_arms.arms_table(result),
        )
    )
    full = summary[summary["selected"] & (summary["batch_size"] == "full")]
    study_full = (
        {"reached": int(full["reached"].iloc[0]), "runs": int(full["runs"].iloc[0])}
        if len(full)
        else None
    )
    return {**result, "text": batch_arms.arms_sentence(result, study_full)}


def comparison_section(quick: bool) -> Section:
    """Section 9: a fairly tuned optimizer comparison on digits, and the batch-size study."""
    s = Section("comparison", "Optimizers compared on digits, and the batch-size study")
    epochs = 3 if quick else 8
    fair = fair_comparison(epochs, tune_seeds=1 if quick else 2, final_seeds=10)
    s.tables.append(
        (
            f"Ranked by final validation accuracy, mean ± 95% t-interval over the "
            f"{fair['rows'][0]['seeds'] if fair['rows'] else 0} final seeds — {fair['budget']}",
            pd.DataFrame(fair["rows"]),
        )
    )
    _figures(
        s,
        fair["tuning"],
        "digits-tuning",
        {
            "loss_vs_lr": "Tuning curves: final validation loss and accuracy against lr "
            "(circled: selected)",
            "curves": "Validation curves of the selected lrs during tuning",
        },
    )
    _figures(
        s,
        fair["final"],
        "digits",
        {"curves": "Selected settings on 10 fresh seeds (mean, band = min–max)"},
    )
    cmp = fair["final"]
    study = train.batch_size_study(budget="quick" if quick else "default")
    s.tables.append(
        (
            study.budget_text(),
            _summary_table(
                study,
                {
                    "batch_size": "batch size",
                    "lr": "lr (linear rule)",
                    "final_val_acc": "final val acc",
                    "updates": "updates",
                    "wall_time": "train time (s)",
                },
            ),
        )
    )
    _figures(
        s,
        study,
        "batch",
        {
            "accuracy_vs_batch": "Accuracy against batch size (lr scaled linearly with B)",
            "curves": "Batch-size study curves",
        },
    )
    scaling = batch_scaling(s, study, "quick" if quick else "default")
    arms = scaling_arms(s, study, quick)
    s.numbers = {
        "batch_scaling": scaling,
        "batch_arms": arms,
        "comparison": cmp.summary().to_dict(orient="records"),
        "ranking": fair["rows"],
        "ranking_budget": fair["budget"],
        "tuning": fair["tuning"].summary().to_dict(orient="records"),
        "batch_size": study.summary().to_dict(orient="records"),
    }
    s.paragraphs.append(
        "Each optimizer trains the same MLP from the same initial weights, on the same data "
        "order for a given seed, with the same budget, and each gets the same tuning budget: "
        f"its learning rate over the same {len(COMPARE_LRS)} log-spaced values, picked on the "
        "validation set, then rerun on 10 fresh seeds and reported on the test set too. "
        + ranking_sentence(fair["rows"])
        + " The batch-size study trains on the generated cat-vs-dog features with B = 1, 8, "
        "32, 128 and the full set, scaling the learning rate linearly with B (the legends give "
        "the lr each batch size ran with) — and shows where the linear scaling rule stops "
        "working. " + scaling["text"] + " " + arms["text"]
    )
    n_tune = len(fair["tuning"].runs)
    s.budget = (
        f"digits: {n_tune} tuning runs + {len(fair['final'].runs)} final runs × {epochs} "
        "epochs; batch study as stated"
    )
    return s


def adamw_section(quick: bool) -> Section:
    """Section 10: Adam + L2 against AdamW over a weight-decay grid."""
    s = Section("adamw", "Adam + L2 or AdamW?")
    study = train.adamw_study(budget="quick" if quick else "default")
    summary = study.summary()
    table = _summary_table(
        study,
        {
            "family": "optimizer",
            "weight_decay": "λ",
            "final_val_acc": "final val acc",
            "final_val_loss": "final val loss",
        },
    )
    s.tables.append((study.budget_text(), table))
    _figures(
        s,
        study,
        "adamw",
        {
            "loss_vs_weight_decay": "Final validation loss against λ",
            "curves": "Curves of each family's best λ",
        },
    )
    best = summary[summary["selected"]][["family", "weight_decay", "final_val_acc"]]
    s.numbers = {"rows": summary.to_dict(orient="records"), "best": best.to_dict(orient="records")}
    s.paragraphs.append(
        "With L2 the decay λθ is added to the gradient and then divided by √v̂ like the rest "
        "of it, so parameters with large gradients are barely regularised; AdamW shrinks every "
        "weight by the same factor 1 − γλ. The two therefore want very different λ: the table "
        "shows each over the same grid, and the best λ of each is marked by the study. Which "
        "one wins depends on the task; descend reports it rather than assuming it."
    )
    adam_l2 = summary[summary["selected"] & summary["optimizer"].str.startswith("adam:")]
    lam = float(adam_l2["weight_decay"].iloc[0]) if len(adam_l2) else 1e-2
    decay = decay_histogram(s, lam, epochs=study.config["epochs"])
    s.numbers["effective_decay"] = {k: v for k, v in decay.items() if k != "values"}
    s.paragraphs.append(
        f"Per coordinate, after training Adam + L2 with its selected λ = {lam:g} at lr "
        f"{decay['lr']:g}: the effective decay per step γλ/(√v̂ᵢ + ε) has a median of "
        f"{decay['median']:.3g} and spans {decay['q10']:.3g} to {decay['q90']:.3g} (10%–90%), "
        f"against AdamW's single γλ = {decay['adamw']:.3g} at the same λ — a median "
        f"{decay['median'] / decay['adamw']:.3g}× stronger, and weakest exactly on the "
        "coordinates with the largest gradients."
    )
    grid = decay_heatmap(s, quick)
    s.numbers["lr_lambda_grid"] = grid
    s.budget = (
        "as stated in the table caption; one extra Adam + L2 run for the histogram; the "
        f"lr × λ grids: {len(grid['lrs'])} lrs × (1 + {len(grid['families']['AdamW']['lambdas'])})"
        f" λ per family, {grid['epochs']} epochs, {grid['seeds']} seed(s), trained batched"
    )
    return s


def decay_heatmap(section: Section, quick: bool) -> dict:
    """Loshchilov & Hutter's figure 2 on digits: the lr × λ grid of each family side by side
    (see :mod:`descend.report.decay_grid`), with what it shows about the lr–λ coupling."""
    from . import decay_grid

    claims = decay_grid.heatmap_claims(epochs=4 if quick else 10, seeds=1 if quick else 2)
    section.figure(
        decay_grid.heatmap_figure(claims),
        "Final validation loss over lr × λ for Adam + L2 and AdamW (Loshchilov & Hutter's "
        "figure 2 on digits)",
        "lr-lambda",
    )
    rows = []
    for name, f in claims["families"].items():
        for lr, loss_row, acc_row in zip(claims["lrs"], f["val_loss"], f["val_acc"]):
            for lam, v, a in zip(f["lambdas"], loss_row, acc_row):
                rows.append({"optimizer": name, "lr": lr, "λ": lam, "val loss": v, "val acc": a})
    section.tables.append(
        (
            f"lr × λ grids: mean final validation loss and accuracy over {claims['seeds']} "
            f"seed(s), {claims['epochs']} epochs, every cell tuned nowhere else",
            pd.DataFrame(rows),
        )
    )
    text = decay_grid.coupling_sentence(claims)
    section.paragraphs.append(
        f"The lr × λ grids train {len(claims['lrs'])} learning rates against each family's own "
        "λ grid (ratio √10, starting where decay already changes the validation loss, plus "
        "λ = 0 as the reference), every cell a separate MLP on digits from the same initial "
        "weights and data order. " + text
    )
    return {
        "lrs": claims["lrs"],
        "epochs": claims["epochs"],
        "seeds": claims["seeds"],
        "text": text,
        "families": {
            name: {k: v for k, v in f.items() if k not in ("val_loss", "val_acc", "no_decay")}
            | {"val_loss": f["val_loss"].tolist(), "no_decay_best": f["no_decay"]["best"]}
            for name, f in claims["families"].items()
        },
    }


def effective_decays(optimizer: torch.optim.Optimizer) -> np.ndarray:
    """Adam + L2's decay per step of every coordinate, γλ/(√v̂ᵢ + ε) with
    v̂ = exp_avg_sq/(1 − β₂ᵗ), read from the optimizer's state (AdamW's is γλ for all)."""
    out = []
    for group in optimizer.param_groups:
        lr, lam, eps = group["lr"], group["weight_decay"], group["eps"]
        beta2 = group["betas"][1]
        for p in group["params"]:
            state = optimizer.state.get(p)
            if not state:
                continue
            t = float(state["step"])
            vhat = state["exp_avg_sq"].double() / (1 - beta2**t)
            out.append((lr * lam / (vhat.sqrt() + eps)).reshape(-1).numpy())
    return np.concatenate(out) if out else np.zeros(0)


def decay_histogram(section: Section, lam: float, epochs: int, lr: float = 1e-3) -> dict:
    """Train the AdamW study's MLP once with Adam + L2 (λ = ``lam``) and draw the histogram of
    its per-coordinate effective decay against AdamW's constant γλ."""
    from ..train.trainer import fit, seed_everything

    ds = train.load("cat-dog", n_samples=1000, informative=100)  # the study's task
    seed_everything(0)
    model = train.build("mlp", ds)
    opt = from_spec(f"adam:lr={lr},weight_decay={lam!r}", model.parameters())
    loader = ds.loader("train", 32, seed=0)
    fit(model, nn.CrossEntropyLoss(), loader, opt, epochs=epochs, progress=False, trace_every=10**9)
    values = effective_decays(opt)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(np.log10(values), bins=60, color="tab:blue", alpha=0.8, label="Adam + L2: γλ/(√v̂ᵢ + ε)")
    ax.axvline(np.log10(lr * lam), color="tab:red", lw=2, label=f"AdamW: γλ = {lr * lam:.3g}")
    ax.set(
        xlabel="log₁₀ decay per step",
        ylabel="coordinates",
        title=f"Effective weight decay per coordinate after {epochs} epochs (λ = {lam:g})",
    )
    ax.legend(fontsize=8)
    section.figure(fig, "Adam + L2 decays each weight differently; AdamW by the same γλ", "decay")
    q10, med, q90 = np.quantile(values, [0.1, 0.5, 0.9])
    return {
        "values": values,
        "lr": lr,
        "lambda": lam,
        "adamw": lr * lam,
        "median": float(med),
        "q10": float(q10),
        "q90": float(q90),
        "coordinates": int(values.size),
    }
