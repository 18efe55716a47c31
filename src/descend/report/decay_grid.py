"""Loshchilov & Hutter's figure 2 on digits: final validation loss over an lr × λ grid for
Adam + L2 and AdamW, every cell a separate model, the whole grid trained at once.

Each cell is a one-hidden-layer MLP (64 → ``hidden`` → 10, ReLU) with its own leaf tensors in
its own parameter group (its lr and weight_decay); the forward pass stacks the cells' weights
and runs them as one batched matmul on the same minibatch, so the loss is a sum of independent
per-cell losses and each cell's gradient is exactly the one it would get alone. Every cell
starts from the same initial weights (per seed) and sees the same data order.

Adam + L2 adds λθ to the gradient before the division by √v̂ (decay per step γλ/(√v̂ᵢ + ε),
different for every coordinate); AdamW multiplies the weights by 1 − γλ (torch's convention:
the decay is scaled by the lr). The two λ axes therefore live at different scales and each
family gets its own grid, starting where its decay measurably changes the result.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import train
from ..optim import from_spec

# λ grids (ratio √10), chosen so the first point already moves the validation loss and the
# last one has collapsed the model or nearly so; see the report's table for the measurement
L2_LAMBDAS = tuple(10.0 ** (k / 2) for k in range(-6, 0))  # 1e-3 … 0.316
ADAMW_LAMBDAS = tuple(10.0 ** (k / 2) for k in range(-2, 4))  # 0.1 … 31.6
LRS = tuple(10.0 ** (k / 2) for k in range(-6, -1))  # 1e-3 … 0.1


def _init(n_in: int, hidden: int, n_out: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(n_in, hidden, generator=g) / n_in**0.5,
        torch.zeros(hidden),
        torch.randn(hidden, n_out, generator=g) / hidden**0.5,
        torch.zeros(n_out),
    ]


def _forward(cells: list[list[torch.Tensor]], x: torch.Tensor) -> torch.Tensor:
    """Logits of every cell on ``x``: shape (cells, samples, classes)."""
    w1, b1, w2, b2 = (torch.stack([c[k] for c in cells]) for k in range(4))
    return torch.relu(x @ w1 + b1[:, None]) @ w2 + b2[:, None]


def _losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    g, n, c = logits.shape
    per = nn.functional.cross_entropy(logits.reshape(-1, c), y.repeat(g), reduction="none")
    return per.reshape(g, n).mean(1)


def batch_orders(n: int, batch_size: int, epochs: int, seed: int) -> list[torch.Tensor]:
    """The minibatch index lists every cell trains on (reshuffled each epoch)."""
    g = torch.Generator().manual_seed(10_000 + seed)
    out = []
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        out.extend(perm[k : k + batch_size] for k in range(0, n, batch_size))
    return out


def train_grid(
    spec: str,
    lrs,
    lambdas,
    *,
    epochs: int,
    seed: int = 0,
    hidden: int = 32,
    batch_size: int = 64,
    data=None,
) -> dict:
    """Train one MLP per (lr, λ) with descend's optimizer ``spec`` (``adam`` or ``adamw``)
    and return the final validation loss and accuracy as (len(lrs), len(lambdas)) arrays
    (NaN loss where a cell diverged)."""
    data = data if data is not None else train.load("digits")
    init = _init(data.n_features, hidden, data.n_classes, seed)
    cells, groups = [], []
    for lr in lrs:
        for lam in lambdas:
            leaves = [t.clone().requires_grad_() for t in init]
            cells.append(leaves)
            groups.append({"params": leaves, "lr": float(lr), "weight_decay": float(lam)})
    opt = from_spec(spec, groups)
    x, y = data.x_train, data.y_train
    for idx in batch_orders(len(y), batch_size, epochs, seed):
        loss = _losses(_forward(cells, x[idx]), y[idx]).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        logits = _forward(cells, data.x_val)
        val_loss = _losses(logits, data.y_val)
        acc = (logits.argmax(-1) == data.y_val).float().mean(1)
    shape = (len(lrs), len(lambdas))
    loss = val_loss.double().numpy().reshape(shape)
    loss[~np.isfinite(loss)] = np.nan
    return {"val_loss": loss, "val_acc": acc.double().numpy().reshape(shape)}


def best_lr_per_lambda(loss: np.ndarray, lrs, lambdas, within: float = 2.0) -> list[dict]:
    """For every λ column whose best loss is within ``within``× the grid's best: the lr
    that minimises it (columns where every lr collapsed have no meaningful optimum)."""
    best = np.nanmin(loss)
    out = []
    for j, lam in enumerate(lambdas):
        col = loss[:, j]
        if np.all(np.isnan(col)) or np.nanmin(col) > within * best:
            continue
        i = int(np.nanargmin(col))
        out.append({"lambda": float(lam), "lr": float(lrs[i]), "index": i, "loss": float(col[i])})
    return out


def heatmap_claims(
    *, epochs: int = 10, seeds: int = 2, lrs=LRS, l2=L2_LAMBDAS, adamw=ADAMW_LAMBDAS
) -> dict:
    """Both families' grids (validation loss and accuracy averaged over ``seeds``), the best
    cell of each, how far the best lr moves across each λ grid (in grid steps), and the
    λ = 0 column (plain Adam, the same for both) as the reference decay must beat."""
    data = train.load("digits")
    out = {"lrs": list(lrs), "epochs": epochs, "seeds": seeds, "families": {}}
    for name, spec, lambdas in (("Adam + L2", "adam", l2), ("AdamW", "adamw", adamw)):
        runs = [
            train_grid(spec, lrs, (0.0, *lambdas), epochs=epochs, seed=s, data=data)
            for s in range(seeds)
        ]
        loss_all = np.mean([r["val_loss"] for r in runs], axis=0)
        acc_all = np.mean([r["val_acc"] for r in runs], axis=0)
        loss, acc = loss_all[:, 1:], acc_all[:, 1:]
        ref = loss_all[:, 0]
        i, j = np.unravel_index(np.nanargmin(loss), loss.shape)
        path = best_lr_per_lambda(loss, lrs, lambdas)
        moves = [p["index"] for p in path]
        out["families"][name] = {
            "spec": spec,
            "lambdas": list(lambdas),
            "val_loss": loss,
            "val_acc": acc,
            "best": {
                "lr": float(lrs[i]),
                "lambda": float(lambdas[j]),
                "loss": float(loss[i, j]),
                "acc": float(acc[i, j]),
            },
            "best_lr_path": path,
            "lr_shift_steps": (max(moves) - min(moves)) if moves else 0,
            "diverged": int(np.isnan(loss).sum()),
            "no_decay": {"val_loss": ref, "val_acc": acc_all[:, 0], "best": float(np.nanmin(ref))},
        }
    return out


def coupling_sentence(claims: dict) -> str:
    """What the two grids show about the lr–λ coupling, computed from the claims."""
    fams = claims["families"]
    parts = []
    for name, f in fams.items():
        path = f["best_lr_path"]
        lrs_txt = ", ".join(f"{p['lr']:.3g}" for p in path)
        parts.append(
            f"{name}'s best lr across its {len(path)} λ values that still train "
            f"({lrs_txt}) moves by {f['lr_shift_steps']} grid step"
            f"{'' if f['lr_shift_steps'] == 1 else 's'}"
        )
    a, w = fams["Adam + L2"]["lr_shift_steps"], fams["AdamW"]["lr_shift_steps"]
    if abs(a - w) < 2:
        verdict = (
            "A difference of fewer than 2 grid steps is within the grid's resolution: on "
            "this budget the two are not distinguishable by how much the best lr depends on λ."
        )
    elif w < a:
        verdict = "AdamW's optimum lr depends less on λ here, as in Loshchilov & Hutter's figure 2."
    elif w > a:
        verdict = (
            "AdamW's optimum lr depends more on λ here — the opposite of Loshchilov & "
            "Hutter's figure 2 (torch's AdamW scales the decay by the lr, their figure does not)."
        )
    seeds = claims.get("seeds")
    helped = [
        f"{name} {f['best']['loss']:.3g} (lr {f['best']['lr']:.3g}, λ = "
        f"{f['best']['lambda']:.3g}) against {f['no_decay']['best']:.3g} without decay, "
        f"{'lower' if f['best']['loss'] < f['no_decay']['best'] else 'not lower'}"
        for name, f in fams.items()
    ]
    return (
        "; ".join(parts)
        + ". "
        + verdict
        + " Best validation loss over each grid: "
        + "; ".join(helped)
        + (f" (means of {seeds} seed{'s' if seeds != 1 else ''}, " if seeds else " (")
        + "no interval: not a ranking)."
    )


def heatmap_figure(claims: dict):
    """Two heat-maps (lr down, λ across) of the mean final validation loss, the λ = 0
    reference as the first column, the best cell of each ringed and diverged cells marked."""
    from ..plots._common import plt

    fams = claims["families"]
    lrs = claims["lrs"]
    finite = np.concatenate(
        [
            np.concatenate([f["no_decay"]["val_loss"][:, None], f["val_loss"]], 1).ravel()
            for f in fams.values()
        ]
    )
    lo, hi = np.nanmin(finite), min(np.nanmax(finite), np.log(10) * 1.05)
    fig, axes = plt.subplots(1, len(fams), figsize=(5.6 * len(fams), 4.2))
    for ax, (name, f) in zip(np.atleast_1d(axes), fams.items()):
        grid = np.concatenate([f["no_decay"]["val_loss"][:, None], f["val_loss"]], 1)
        im = ax.imshow(
            np.log10(grid), origin="lower", cmap="viridis_r", vmin=np.log10(lo), vmax=np.log10(hi)
        )
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                v = grid[i, j]
                ax.text(
                    j,
                    i,
                    "div." if np.isnan(v) else f"{v:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="w" if not np.isnan(v) and v > np.sqrt(lo * hi) else "k",
                )
        bi = lrs.index(f["best"]["lr"])
        bj = 1 + f["lambdas"].index(f["best"]["lambda"])
        ax.add_patch(plt.Rectangle((bj - 0.5, bi - 0.5), 1, 1, fill=False, ec="r", lw=2))
        for p in f["best_lr_path"]:
            ax.plot(1.3 + f["lambdas"].index(p["lambda"]), p["index"] - 0.3, "r.", ms=5)
        ax.axvline(0.5, color="w", lw=2)
        ax.set_xticks(range(grid.shape[1]), ["0"] + [f"{v:.2g}" for v in f["lambdas"]], fontsize=8)
        ax.set_yticks(range(len(lrs)), [f"{v:.2g}" for v in lrs], fontsize=8)
        ax.set(
            xlabel="weight_decay λ (first column: no decay)",
            ylabel="lr",
            title=f"{name} ({f['spec']}): final val loss",
        )
        fig.colorbar(im, ax=ax, label="log₁₀ val loss")
    fig.suptitle(
        f"Digits MLP 64→32→10, {claims['epochs']} epochs, B = 64, mean of {claims['seeds']} "
        "seed(s); ringed: best cell, dots: best lr per λ"
    )
    fig.tight_layout()
    return fig
