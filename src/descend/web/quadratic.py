"""The theory panel: for a quadratic landscape, what :mod:`descend.lab.theory` predicts, beside
what the lab measures.

A landscape counts as quadratic when its Hessian is constant (:func:`.functions.quadratic_form`);
then f(θ) = ½(θ − θ*)ᵀH(θ − θ*) + c with θ* = p − H⁻¹∇f(p) for any p. With eigenvalues
λ₁ ≤ … ≤ λₙ > 0 the panel shows

* κ = λₙ/λ₁;
* gradient descent's optimal step 2/(λ₁+λₙ), its rate (κ−1)/(κ+1) and its edge 2/λₙ;
* heavy ball's optimal pair α* = (2/(√λ₁+√λₙ))², β* = ((√κ−1)/(√κ+1))², its rate
  (√κ−1)/(√κ+1) and its edge (2+2β*)/λₙ;
* for each ticked optimizer the theory covers (SGD, heavy ball in the modern, lr-inside or EMA
  form, Nesterov in torch's form; no weight decay, dampening, clipping or maximize), its
  predicted rate against the rate measured on its trajectory: e_t = ‖θ_t − θ*‖ from the lab
  with the exact gradient and a constant lr, r = (e_{t₂}/e_{t₁})^{1/(t₂−t₁)} over the second
  half of the steps before e_t falls under 10⁻¹⁰·e₀ (or the run diverges).

This detection and measurement are a thin adapter here because :mod:`descend.lab.theory` works
from eigenvalues and leaves finding them to its caller.
"""

from __future__ import annotations

import math

import numpy as np

from descend.lab import theory
from descend.lab.configs import Config

from .deadline import Deadline
from .functions import quadratic_form
from .runs import execute, prepare
from .schemas import TheoryRequest

ERROR_FLOOR = 1e-10


def _model(config: Config) -> tuple[str, float, float] | str:
    """(theory name, α, β) for a configuration the theory covers, else why not."""
    group = config.group
    if config.name not in ("sgd", "momentum", "momentum-ema", "nesterov"):
        return "theory covers SGD, heavy ball and Nesterov only"
    for key, why in (
        ("weight_decay", "weight decay"),
        ("dampening", "dampening"),
        ("max_grad_norm", "clipping"),
        ("clip_value", "clipping"),
    ):
        if group.get(key):
            return f"{why} is outside the theory"
    if group.get("maximize"):
        return "maximize ascends: outside the theory"
    lr, beta = float(group["lr"]), float(group.get("momentum", 0.0))
    form = group.get("momentum_form", "modern")
    if group.get("nesterov"):
        if form != "modern":
            return "the theory covers Nesterov in torch's (modern) form only"
        return "nesterov", lr, beta
    if beta == 0:
        return "sgd", lr, 0.0
    if form == "ema":  # v = βv + (1−β)g is heavy ball with α(1−β)
        return "momentum-ema", lr, beta
    return "momentum", lr, beta  # modern and lr-inside agree for a constant lr


def predicted_rate(name: str, lr: float, beta: float, eigenvalues: np.ndarray) -> float:
    if name == "sgd":
        return theory.gd_rate(lr, eigenvalues)
    if name == "momentum":
        return theory.heavy_ball_rate(lr, beta, eigenvalues)
    if name == "momentum-ema":
        return theory.heavy_ball_rate(lr * (1.0 - beta), beta, eigenvalues)
    return theory.nesterov_rate(lr, beta, eigenvalues)


def measured(errors: np.ndarray) -> float | None:
    """Average per-step error factor over the second half of the informative steps."""
    finite = np.flatnonzero(np.isfinite(errors))
    if finite.size < 2 or errors[0] <= 0:
        return None
    informative = finite[errors[finite] > ERROR_FLOOR * errors[0]]
    last = int(informative.max()) if informative.size else 0
    if last < 2:
        return None
    first = last // 2
    if errors[first] <= 0:
        return None
    return theory.measured_rate(errors, first, last)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def payload(req: TheoryRequest, deadline: Deadline) -> dict:
    """The JSON answer of ``POST /api/theory``."""
    prepared = prepare(req)
    form = quadratic_form(prepared.landscape)
    if isinstance(form, str):
        return {"quadratic": False, "reason": form}
    h, minimizer = form
    eigenvalues = np.linalg.eigvalsh(h)
    lam_min, lam_max = float(eigenvalues[0]), float(eigenvalues[-1])
    gd_alpha, gd_rate = theory.gd_optimal(lam_min, lam_max)
    hb_alpha, hb_beta, hb_rate = theory.heavy_ball_optimal(lam_min, lam_max)

    result = execute(prepared, req, deadline, record_every=1, noise=False, schedule=False)
    per_spec = len(prepared.starts) * len(req.seeds)
    rows = []
    for k, config in enumerate(prepared.configs):
        row = {"spec": prepared.specs[k], "optimizer": config.name}
        model = _model(config)
        if isinstance(model, str):
            rows.append({**row, "covered": False, "note": model})
            continue
        name, lr, beta = model
        edge = theory.max_lr(name, lam_max, beta)
        errors = np.linalg.norm(result.trajectories[k * per_spec] - minimizer, axis=1)
        rate = predicted_rate(name, lr, beta, eigenvalues)
        rows.append(
            {
                **row,
                "covered": True,
                "model": name,
                "lr": lr,
                "momentum": beta,
                "predicted_rate": _finite(rate),
                "measured_rate": _finite(measured(errors)),
                "max_lr": _finite(edge),
                "stable": bool(rate < 1.0),
                "note": "",
            }
        )
    return {
        "quadratic": True,
        "reason": None,
        "hessian": h.tolist(),
        "eigenvalues": eigenvalues.tolist(),
        "minimizer": minimizer.tolist(),
        "kappa": lam_max / lam_min,
        "gd": {
            "alpha": gd_alpha,
            "rate": gd_rate,
            "steps": _steps(gd_rate),
            "max_lr": theory.gd_max_lr(lam_max),
        },
        "heavy_ball": {
            "alpha": hb_alpha,
            "beta": hb_beta,
            "rate": hb_rate,
            "steps": _steps(hb_rate),
            "max_lr": theory.heavy_ball_max_lr(lam_max, hb_beta),
        },
        "measured_from": list(prepared.starts[0]),
        "runs": rows,
    }


def _steps(rate: float) -> int | None:
    """Steps to shrink the error by 10⁻⁶ at ``rate``."""
    return theory.steps_to_reduce(rate, 1e-6) if 0 <= rate < 1 else None
