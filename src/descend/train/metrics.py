"""What the trainer measures: accuracy, evaluation over a loader, gradient statistics and the
effective per-parameter learning rates of adaptive optimizers."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

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


@contextmanager
def at_average(optimizer) -> Iterator[None]:
    """Evaluate where the optimizer says the model is: a Schedule-Free optimizer (descend's or
    the ``schedulefree`` package's) trains at y and wants ``optimizer.eval()`` (the average x
    in the parameters) around evaluation and ``optimizer.train()`` after; any other optimizer
    is left alone."""
    swap = callable(getattr(optimizer, "eval", None)) and callable(
        getattr(optimizer, "train", None)
    )
    if swap:
        optimizer.eval()
    try:
        yield
    finally:
        if swap:
            optimizer.train()


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


def _pair(flag: Any) -> tuple[bool, bool]:
    return (bool(flag), bool(flag)) if not isinstance(flag, tuple | list) else tuple(flag)


def _sqrt_plus(v: torch.Tensor, eps: float, placement: str) -> torch.Tensor:
    return (v + eps).sqrt() if placement == "inside" else v.sqrt() + eps


def _param_eff_lr(group: dict, state: dict) -> torch.Tensor | None:
    """Effective rate of one parameter from its optimizer state, or ``None`` if not adaptive.

    It is the factor that turns the raw first moment (m for Adam, g for RMSprop and AdaGrad)
    into the step, the same definition as descend's trace (``lr_eff``), with cᵢ = 1 − βᵢᵗ:

        Adam (ε outside)  γ / (c₁(√(v/c₂) + ε))     inside: γ / (c₁√(v/c₂ + ε))
        Adam (ε "hat")    γ·√c₂ / (c₁(√v + ε))      NAdam: γ / (√(v/c₂) + ε)
        RMSprop           γ / (√ṽ + ε), ṽ = v − ḡ² when centered (÷(1 − αᵗ) if bias-corrected)
        AdaGrad           γ / ((1 + (t − 1)δ)(√s + ε))

    descend's switches (``bias_correction``, ``eps_placement``, ``amsgrad_of``) are read from
    the group; torch's optimizers have none of them and get torch's behaviour. None for the
    matrix methods (Muon's AdamW part keeps its betas as ``adam_betas``; SOAP's v lives in a
    rotating eigenbasis).
    """
    lr = float(group["lr"])
    t = max(float(state.get("step", 1)), 1.0)
    placement = group.get("eps_placement") or "outside"
    if "exp_avg_sq" in state:
        if "betas" not in group or "Q" in state:  # Muon's AdamW part, SOAP
            return None
        b1, b2 = (float(b) for b in group["betas"])
        eps = float(group["eps"])
        if "mu_product" in state:  # NAdam: the corrected numerator is divided by √v̂ + ε
            return lr / _sqrt_plus(state["exp_avg_sq"] / (1 - b2**t), eps, "outside")
        bc_m, bc_v = _pair(group.get("bias_correction", True))
        c1 = 1 - b1**t if bc_m else 1.0
        c2 = 1 - b2**t if bc_v else 1.0
        v = state["exp_avg_sq"]
        corrected_max = group.get("amsgrad_of", "raw") == "corrected"
        if group.get("amsgrad") and not corrected_max:
            v = state["max_exp_avg_sq"]
        if placement == "hat":
            return lr * math.sqrt(c2) / (c1 * _sqrt_plus(v, eps, "outside"))
        v_hat = v / c2
        if group.get("amsgrad") and corrected_max:
            v_hat = state["max_exp_avg_sq"]
        return lr / (c1 * _sqrt_plus(v_hat, eps, placement))
    if "square_avg" in state:
        v = state["square_avg"]
        if group.get("centered", False):
            v = v - state["grad_avg"] ** 2
        if group.get("bias_correction", False):
            v = v / (1 - float(group["alpha"]) ** t)
        return lr / _sqrt_plus(v, float(group["eps"]), placement)
    if "sum" in state:
        decay = 1.0 + (t - 1.0) * float(group.get("lr_decay", 0.0))
        return lr / (decay * _sqrt_plus(state["sum"], float(group["eps"]), placement))
    return None


QUANTILES = {"eff_lr_p10": 0.1, "eff_lr_median": 0.5, "eff_lr_p90": 0.9}
QUANTILE_SAMPLE = 4096


def effective_lr_stats(optimizer: torch.optim.Optimizer) -> dict[str, float] | None:
    """Distribution of per-parameter effective learning rates, or ``None`` if not adaptive.

    The rates are computed from the optimizer state after the step (see :func:`_param_eff_lr`),
    so reading them costs nothing inside the step and works for torch's optimizers too.

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
            # an optimizer that knows its own rate says so (Schedule-Free, AdEMAMix, ADOPT)
            own = getattr(optimizer, "effective_lr", None)
            eff = own(group, state) if own is not None else _param_eff_lr(group, state)
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
