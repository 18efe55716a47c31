"""The notes' two experiments as built-in comparisons, measured for real.

``batch-size``  SGD on the cat-vs-dog MLP (1000 → 100 → 2) with B = 1, 8, 32, 128 and the
                full training set, lr scaled by the linear rule lr = base·B/32, every batch
                size trained for the same number of epochs (as in the notes). The notes
                start from lr 0.01 at B = 32; on this task that barely moves the loss in a few
                epochs (validation accuracy about 0.56 after 3 epochs, measured), so the
                study starts from 0.1, where ``descend lr-find`` shows SGD learning.
``adamw``       Adam with L2 (weight decay added to the gradient, then divided by √v̂) against
                AdamW (decay applied to the weights, θ ← θ(1 − γλ)), each over the same
                log-spaced grid of λ, on a small cat-vs-dog set (600 training samples, 1,000
                features of which 100 carry the signal) where regularisation matters. The two
                respond to λ very differently: Adam + L2 collapses to chance from λ ≈ 1,
                AdamW only shrinks by γλ per step and needs λ about 100× larger.

Each study has three budgets, always stated in the result (``Comparison.budget_text()``):
``"quick"`` (a smoke run, seconds), ``"default"`` (well under a minute on 2 cores) and
``"full"`` (minutes; larger data, more epochs and seeds).
"""

from __future__ import annotations

from typing import Any

from descend.train.compare import Comparison, compare

BUDGETS = ("quick", "default", "full")


def _budget(budget: str) -> str:
    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {', '.join(BUDGETS)}; got {budget!r}")
    return budget


# (n_samples, epochs, seeds, target accuracy) per budget
BATCH_SIZE_BUDGETS = {
    "quick": (2000, 2, 2, 0.65),
    "default": (2000, 3, 3, 0.65),
    "full": (8000, 10, 3, 0.75),
}


def batch_size_study(
    *,
    budget: str = "default",
    seeds: int | None = None,
    epochs: int | None = None,
    base_lr: float = 0.1,
    scale_lr: str | None = "linear",
    threads: int | None = 1,
    progress: bool = False,
    **run_options: Any,
) -> Comparison:
    """B = 1, 8, 32, 128, full with lr = base_lr·B/32 (``scale_lr=None`` keeps lr fixed).

    ``seeds`` and ``epochs`` override the budget's values; ``run_options`` (``workers``,
    ``address``, ``store``) go to :func:`~descend.train.compare.compare`.
    """
    n_samples, n_epochs, n_seeds, target = BATCH_SIZE_BUDGETS[_budget(budget)]
    return compare(
        "cat-dog",
        [f"sgd:lr={base_lr:g}"],
        batch_sizes=[1, 8, 32, 128, "full"],
        scale_lr=scale_lr,
        base_batch=32,
        seeds=seeds or n_seeds,
        epochs=epochs or n_epochs,
        task_options={"n_samples": n_samples},
        target_accuracy=target,
        threads=threads,
        progress=progress,
        **run_options,
    )


ADAMW_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
# (epochs, seeds) per budget; the task is the same small set in every budget
ADAMW_BUDGETS = {"quick": (6, 2), "default": (12, 3), "full": (30, 5)}


def adamw_study(
    *,
    budget: str = "default",
    seeds: int | None = None,
    epochs: int | None = None,
    lr: float = 1e-3,
    grid: tuple[float, ...] = ADAMW_GRID,
    threads: int | None = 1,
    progress: bool = False,
    **run_options: Any,
) -> Comparison:
    """Adam + L2 vs AdamW, each over the weight-decay grid ``grid`` at learning rate ``lr``.

    The study does not assume a winner: it reports both curves over λ and the best point of
    each. ``seeds`` and ``epochs`` override the budget's values; ``run_options`` (``workers``,
    ``address``, ``store``) go to :func:`~descend.train.compare.compare`.
    """
    n_epochs, n_seeds = ADAMW_BUDGETS[_budget(budget)]
    return compare(
        "cat-dog",
        [f"adam:lr={lr:g}", f"adamw:lr={lr:g}"],
        grid={"weight_decay": list(grid)},
        batch_sizes=[32],
        seeds=seeds or n_seeds,
        epochs=epochs or n_epochs,
        task_options={"n_samples": 1000, "informative": 100},
        target_accuracy=0.65,
        threads=threads,
        progress=progress,
        **run_options,
    )


STUDIES: dict[str, Any] = {"batch-size": batch_size_study, "adamw": adamw_study}


def run_study(name: str, **options: Any) -> Comparison:
    """Run built-in study ``name`` (``batch-size`` or ``adamw``); ``options`` as for it."""
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; valid choices: {', '.join(STUDIES)}")
    result = STUDIES[name](**options)
    result.config["study"] = name
    result.config["study_budget"] = options.get("budget", "default")
    return result
