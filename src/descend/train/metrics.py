"""What the trainer measures: accuracy, evaluation over a loader, gradient statistics and the
effective per-parameter learning rates of adaptive optimizers."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

Accuracy = Callable[[torch.Tensor, torch.Tensor], float | None]


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> float | None:
    """Fraction of correct predictions, or ``None`` when the task is not classification.

    Logits of shape (n, C) with C ≥ 2 and integer targets: argmax. One logit per sample
    (shape (n,) or (n, 1)) with 0/1 targets: the sign of the logit.
    """
    if targets.is_floating_point() and outputs.ndim == 2 and outputs.shape[1] > 1:
        return None  # e.g. soft labels or regression targets
    if outputs.ndim == 2 and outputs.shape[1] > 1:
        pred = outputs.argmax(dim=1)
    elif outputs.ndim == 1 or (outputs.ndim == 2 and outputs.shape[1] == 1):
        if targets.is_floating_point() and not bool(((targets == 0) | (targets == 1)).all()):
            return None
        pred = (outputs.reshape(-1) > 0).to(targets.dtype)
        targets = targets.reshape(-1)
    else:
        return None
    return float((pred == targets).float().mean())


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    loader: Iterable,
    accuracy_fn: Accuracy | None = accuracy,
) -> tuple[float, float | None]:
    """Mean loss and accuracy of ``model`` over ``loader`` in eval mode (weighted by batch size).

    Assumes ``loss_fn`` averages over its batch. The model's train/eval mode is restored.
    """
    was_training = model.training
    model.eval()
    total_loss, total_correct, n, acc_known = 0.0, 0.0, 0, True
    try:
        for x, y in loader:
            out = model(x)
            b = int(y.shape[0])
            total_loss += float(loss_fn(out, y)) * b
            acc = accuracy_fn(out, y) if accuracy_fn is not None else None
            if acc is None:
                acc_known = False
            else:
                total_correct += acc * b
            n += b
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("evaluation loader yielded no batches")
    return total_loss / n, (total_correct / n if acc_known else None)


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1).float() for t in tensors])


def grad_stats(params: Iterable[torch.Tensor]) -> dict[str, float]:
    """Global L2 norm, mean, std, min and max over all gradient entries (NaN if no gradients)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        nan = math.nan
        return {
            "grad_norm": nan,
            "grad_mean": nan,
            "grad_std": nan,
            "grad_min": nan,
            "grad_max": nan,
        }
    g = _flat(grads)
    return {
        "grad_norm": float(torch.linalg.vector_norm(g)),
        "grad_mean": float(g.mean()),
        "grad_std": float(g.std()) if g.numel() > 1 else 0.0,
        "grad_min": float(g.min()),
        "grad_max": float(g.max()),
    }


def _group_eff_lr(group: dict, state: dict) -> torch.Tensor | None:
    """lr / (√v̂ + ε) for one parameter's state, by the torch-compatible state keys."""
    lr = float(group["lr"])
    eps = float(group.get("eps", 1e-8))
    if "exp_avg_sq" in state:  # Adam, AdamW, AMSGrad, NAdam: v̂ = v / (1 − β₂ᵗ)
        v = state.get("max_exp_avg_sq") if group.get("amsgrad") else None
        v = state["exp_avg_sq"] if v is None else v
        beta2 = group["betas"][1] if "betas" in group else group.get("beta2", 0.999)
        t = float(state.get("step", 1))
        correction = 1.0 - float(beta2) ** max(t, 1.0)
        return lr / ((v / correction).sqrt() + eps)
    if "square_avg" in state:  # RMSprop (centered: v − ḡ²)
        v = state["square_avg"]
        if "grad_avg" in state and group.get("centered", False):
            v = v - state["grad_avg"] ** 2
        return lr / (v.clamp(min=0).sqrt() + eps)
    if "sum" in state:  # Adagrad: γ̃ = γ / (1 + (t − 1)·lr_decay)
        t = float(state.get("step", 1))
        clr = lr / (1.0 + (t - 1.0) * float(group.get("lr_decay", 0.0)))
        return clr / (state["sum"].sqrt() + float(group.get("eps", 1e-10)))
    return None


QUANTILES = {"eff_lr_p10": 0.1, "eff_lr_median": 0.5, "eff_lr_p90": 0.9}
QUANTILE_SAMPLE = 4096


def effective_lr_stats(optimizer: torch.optim.Optimizer) -> dict[str, float] | None:
    """Distribution of per-parameter effective learning rates, or ``None`` if not adaptive.

    For Adam-family optimizers the step is lr·m̂/(√v̂ + ε), so the effective rate multiplying
    the (bias-corrected) momentum is lr/(√v̂ + ε); RMSprop uses lr/(√v + ε) and Adagrad
    γ̃/(√Σg² + ε). Reads the torch-style state (``exp_avg_sq``, ``square_avg``, ``sum``), which
    descend's optimizers keep.

    Returns the exact min, max and geometric mean over all entries, and the 10th, 50th and 90th
    percentiles. Beyond ``QUANTILE_SAMPLE`` entries the percentiles come from an evenly strided
    sample of about that many entries (a full sort of 100k values costs milliseconds per step;
    the sample's rank error is about 1/√4096 ≈ 1.6 percentile points).
    """
    parts: list[torch.Tensor] = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p)
            if not state:
                continue
            eff = _group_eff_lr(group, state)
            if eff is not None:
                parts.append(eff.detach().reshape(-1).float())
    if not parts:
        return None
    e = torch.cat(parts)
    sample = e if e.numel() <= QUANTILE_SAMPLE else e[:: -(-e.numel() // QUANTILE_SAMPLE)]
    q = np.quantile(sample.numpy(), list(QUANTILES.values()))
    out = {"eff_lr_min": float(e.min()), "eff_lr_max": float(e.max())}
    out.update({k: float(v) for k, v in zip(QUANTILES, q)})
    out["eff_lr_geomean"] = float(e.clamp(min=1e-45).log().mean().exp())
    return out
