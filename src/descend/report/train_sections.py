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


def comparison_section(quick: bool) -> Section:
    """Section 9: optimizer comparison on digits over 3 seeds, and the batch-size study."""
    s = Section("comparison", "Optimizers compared on digits, and the batch-size study")
    epochs = 4 if quick else 12
    cmp = train.compare("digits", COMPARE_OPTIMIZERS, seeds=3, epochs=epochs, threads=1)
    table = _summary_table(
        cmp,
        {
            "optimizer": "optimizer",
            "final_val_loss": "final val loss",
            "final_val_acc": "final val acc",
            "test_acc": "test acc",
            "updates": "updates",
            "wall_time": "train time (s)",
        },
    )
    s.tables.append((cmp.budget_text(), table))
    _figures(s, cmp, "digits", {"curves": "Validation loss and accuracy (mean, band over seeds)"})
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
    s.numbers = {
        "comparison": cmp.summary().to_dict(orient="records"),
        "batch_size": study.summary().to_dict(orient="records"),
    }
    s.paragraphs.append(
        "Each optimizer trains the same MLP from the same initial weights, on the same data "
        "order for a given seed, with the same budget; the tables give means and 95% intervals "
        "over seeds. The batch-size study trains on the generated cat-vs-dog features with "
        "B = 1, 8, 32, 128 and the full set, scaling the learning rate linearly with B — and "
        "shows where the linear scaling rule stops working."
    )
    s.budget = f"digits: 5 optimizers × 3 seeds × {epochs} epochs; batch study as stated"
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
    s.budget = "as stated in the table caption"
    return s
