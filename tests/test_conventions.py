"""``convention="keras"`` and ``"optax"`` against those frameworks' update rules, written out
below as plain loops (transcribed from Keras 3 ``keras/src/optimizers/*.py`` and optax
``_src/transform.py`` / ``alias.py``), plus each convention's default hyperparameters, and the
Adam switches (bias correction per moment, ε placement) against hand equations.

The gradient field scales its coordinates by 1, 0.1 and 0.001 so that ε and its placement
matter on the small coordinate (each test also checks that the rival rule really differs).
"""

from __future__ import annotations

import math

import pytest
import torch

import descend.optim as D
from descend.optim.fast import last_path

F64 = torch.float64
A = torch.tensor([[3.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 0.3]], dtype=F64)
B = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
SCALE = torch.tensor([1.0, 0.1, 0.001], dtype=F64)
THETA0 = torch.tensor([2.0, 1.0, -1.5], dtype=F64)
STEPS = 50


def grad(theta: torch.Tensor) -> torch.Tensor:
    return SCALE * (A @ theta - B + 0.5 * torch.sin(theta))


def descend_path(fused: bool, cls: type, steps: int = STEPS, **kwargs) -> torch.Tensor:
    """θ after each step, as a (steps, 3) tensor, on the path ``fused`` names (asserted)."""
    p = THETA0.clone().requires_grad_()
    opt = cls([p], fused=fused, **kwargs)
    out = []
    for _ in range(steps):
        p.grad = grad(p.detach())
        opt.step()
        out.append(p.detach().clone())
    assert last_path(opt) == ({0: "fast"} if fused else {0: "default: fused=False"})
    return torch.stack(out)


BOTH_PATHS = pytest.mark.parametrize("fused", [True, False], ids=["fused", "chain"])


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-12) -> None:
    assert (a - b).abs().max().item() <= tol, (a - b).abs().max().item()


def differ(a: torch.Tensor, b: torch.Tensor, by: float = 1e-7) -> None:
    assert (a - b).abs().max().item() > by


# ============================ Keras 3 ============================================================


def keras_adam(lr, b1, b2, eps, steps=STEPS, amsgrad=False, wd=0.0) -> torch.Tensor:
    """keras.optimizers.Adam / AdamW: α_t = γ√(1−β₂ᵗ)/(1−β₁ᵗ); θ −= α_t·m/(√v + ε̂)."""
    theta, m, v, v_hat, out = THETA0.clone(), 0 * THETA0, 0 * THETA0, 0 * THETA0, []
    for t in range(1, steps + 1):
        g = grad(theta)
        theta = theta - theta * wd * lr  # _apply_weight_decay, before update_step
        alpha = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        m = m + (g - m) * (1 - b1)
        v = v + (g * g - v) * (1 - b2)
        if amsgrad:
            v_hat = torch.maximum(v_hat, v)
        theta = theta - m * alpha / (torch.sqrt(v_hat if amsgrad else v) + eps)
        out.append(theta.clone())
    return torch.stack(out)


@BOTH_PATHS
@pytest.mark.parametrize("amsgrad", [False, True])
def test_keras_adam(amsgrad: bool, fused: bool) -> None:
    expected = keras_adam(0.05, 0.9, 0.999, 1e-3, amsgrad=amsgrad)
    ours = descend_path(fused, D.Adam, lr=0.05, eps=1e-3, amsgrad=amsgrad, convention="keras")
    close(ours, expected)
    differ(ours, descend_path(fused, D.Adam, lr=0.05, eps=1e-3, amsgrad=amsgrad))  # torch's ε


@BOTH_PATHS
def test_keras_adam_with_its_default_epsilon(fused: bool) -> None:
    close(
        descend_path(fused, D.Adam, lr=0.05, convention="keras"), keras_adam(0.05, 0.9, 0.999, 1e-7)
    )


@BOTH_PATHS
def test_keras_adamw_decay_is_theta_times_wd_times_lr_before_the_update(fused: bool) -> None:
    expected = keras_adam(0.05, 0.9, 0.99, 1e-3, wd=0.2)
    ours = descend_path(
        fused, D.AdamW, lr=0.05, betas=(0.9, 0.99), eps=1e-3, weight_decay=0.2, convention="keras"
    )
    close(ours, expected)
    # Adam's weight_decay is also decoupled under Keras (no L2 anywhere in Keras)
    close(
        descend_path(
            fused,
            D.Adam,
            lr=0.05,
            betas=(0.9, 0.99),
            eps=1e-3,
            weight_decay=0.2,
            convention="keras",
        ),
        expected,
    )
    differ(ours, keras_adam(0.05, 0.9, 0.99, 1e-3))


def keras_rmsprop(lr, rho, eps, momentum=0.0, centered=False, wd=0.0, steps=STEPS):
    """keras.optimizers.RMSprop: ε inside the root, lr inside the momentum buffer."""
    theta, vel, mom, avg, out = THETA0.clone(), 0 * THETA0, 0 * THETA0, 0 * THETA0, []
    for _ in range(steps):
        g = grad(theta)
        theta = theta - theta * wd * lr
        vel = rho * vel + (1 - rho) * g * g
        if centered:
            avg = rho * avg + (1 - rho) * g
            denominator = vel - avg * avg + eps
        else:
            denominator = vel + eps
        increment = lr * g / torch.sqrt(denominator)
        if momentum > 0:
            mom = momentum * mom + increment
            theta = theta - mom
        else:
            theta = theta - increment
        out.append(theta.clone())
    return torch.stack(out)


@pytest.mark.parametrize(
    "momentum, centered, wd", [(0.0, False, 0.0), (0.9, False, 0.0), (0.5, True, 0.1)]
)
@BOTH_PATHS
def test_keras_rmsprop(momentum: float, centered: bool, wd: float, fused: bool) -> None:
    expected = keras_rmsprop(0.01, 0.9, 1e-4, momentum=momentum, centered=centered, wd=wd)
    kw = dict(lr=0.01, eps=1e-4, momentum=momentum, centered=centered, weight_decay=wd)
    ours = descend_path(fused, D.RMSprop, convention="keras", **kw)  # ρ = 0.9 from the convention
    close(ours, expected)
    differ(ours, descend_path(fused, D.RMSprop, alpha=0.9, **kw))  # torch: ε outside


def keras_sgd(lr, momentum, nesterov=False, wd=0.0, steps=STEPS):
    """keras.optimizers.SGD: velocity = μ·velocity − γg; θ += velocity
    (Nesterov: θ += μ·velocity − γg)."""
    theta, m, out = THETA0.clone(), 0 * THETA0, []
    for _ in range(steps):
        g = grad(theta)
        theta = theta - theta * wd * lr
        if momentum:
            m = m * momentum - g * lr
            theta = theta + (m * momentum - g * lr if nesterov else m)
        else:
            theta = theta - g * lr
        out.append(theta.clone())
    return torch.stack(out)


@pytest.mark.parametrize(
    "momentum, nesterov, wd",
    [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 0.0), (0.8, False, 0.3)],
)
@BOTH_PATHS
def test_keras_sgd(momentum: float, nesterov: bool, wd: float, fused: bool) -> None:
    expected = keras_sgd(0.05, momentum, nesterov, wd)
    ours = descend_path(
        fused,
        D.SGD,
        lr=0.05,
        momentum=momentum,
        nesterov=nesterov,
        weight_decay=wd,
        convention="keras",
    )
    close(ours, expected)
    if wd:  # torch: L2, added to the gradient instead
        differ(ours, descend_path(fused, D.SGD, lr=0.05, momentum=momentum, weight_decay=wd))


@BOTH_PATHS
def test_keras_adagrad(fused: bool) -> None:
    """keras.optimizers.Adagrad: accumulator from 0.1; θ −= γg/√(acc + ε)."""
    lr, eps = 0.1, 1e-3
    theta, acc, out = THETA0.clone(), torch.full((3,), 0.1, dtype=F64), []
    for _ in range(STEPS):
        g = grad(theta)
        acc = acc + g * g
        theta = theta - lr * g / torch.sqrt(acc + eps)
        out.append(theta.clone())
    ours = descend_path(fused, D.Adagrad, lr=lr, eps=eps, convention="keras")
    close(ours, torch.stack(out))
    differ(ours, descend_path(fused, D.Adagrad, lr=lr, eps=eps, initial_accumulator_value=0.1))


# Under Keras' and optax's conventions descend keeps ∏μ (state["mu_product"]) in the parameter's
# precision, as those frameworks do (a float32 Π, torch's choice, moved θ by ~1e-8 here), so
# NAdam meets the same 1e-12 as every other optimizer.
NADAM_TOL = 1e-12


def keras_nadam(lr, b1, b2, eps, steps=STEPS):
    """keras.optimizers.Nadam: u_t = β₁(1 − ½·0.96ᵗ), u_product updated before the step."""
    theta, m, v, u_product, out = THETA0.clone(), 0 * THETA0, 0 * THETA0, 1.0, []
    for t in range(1, steps + 1):
        g = grad(theta)
        u_product = u_product * b1 * (1.0 - 0.5 * 0.96**t)
        u_t = b1 * (1.0 - 0.5 * 0.96**t)
        u_t_1 = b1 * (1.0 - 0.5 * 0.96 ** (t + 1))
        u_product_t_1 = u_product * u_t_1
        m = m + (g - m) * (1 - b1)
        v = v + (g * g - v) * (1 - b2)
        m_hat = u_t_1 * m / (1 - u_product_t_1) + (1 - u_t) * g / (1 - u_product)
        v_hat = v / (1 - b2**t)
        theta = theta - m_hat * lr / (torch.sqrt(v_hat) + eps)
        out.append(theta.clone())
    return torch.stack(out)


@BOTH_PATHS
def test_keras_nadam(fused: bool) -> None:
    expected = keras_nadam(0.05, 0.9, 0.999, 1e-3)
    ours = descend_path(fused, D.NAdam, lr=0.05, eps=1e-3, convention="keras")
    close(ours, expected, tol=NADAM_TOL)
    differ(
        ours, descend_path(fused, D.NAdam, lr=0.05, eps=1e-3), by=1e-4
    )  # torch's ψ-slowed schedule


# ============================ optax ==============================================================


def optax_adam(lr, b1, b2, eps, steps=STEPS, wd=0.0, amsgrad=False, nesterov=False):
    """optax.adam / adamw / amsgrad / nadam: scale_by_adam (or scale_by_amsgrad) →
    add_decayed_weights → scale_by_learning_rate."""
    theta, mu, nu, nu_max, out = THETA0.clone(), 0 * THETA0, 0 * THETA0, 0 * THETA0, []
    for count in range(1, steps + 1):
        g = grad(theta)
        mu = (1 - b1) * g + b1 * mu
        nu = (1 - b2) * g * g + b2 * nu
        if nesterov:
            mu_hat = b1 * mu / (1 - b1 ** (count + 1)) + (1 - b1) * g / (1 - b1**count)
        else:
            mu_hat = mu / (1 - b1**count)
        nu_hat = nu / (1 - b2**count)
        if amsgrad:
            nu_max = torch.maximum(nu_hat, nu_max)  # the max of the bias-corrected v̂
            nu_hat = nu_max
        updates = mu_hat / (torch.sqrt(nu_hat) + eps)
        updates = updates + wd * theta
        theta = theta + (-lr) * updates
        out.append(theta.clone())
    return torch.stack(out)


@BOTH_PATHS
def test_optax_adam(fused: bool) -> None:
    ours = descend_path(fused, D.Adam, lr=0.05, eps=1e-3, convention="optax")
    close(ours, optax_adam(0.05, 0.9, 0.999, 1e-3))


@BOTH_PATHS
def test_optax_adamw(fused: bool) -> None:
    ours = descend_path(fused, D.AdamW, lr=0.05, eps=1e-3, weight_decay=0.2, convention="optax")
    close(ours, optax_adam(0.05, 0.9, 0.999, 1e-3, wd=0.2))


@BOTH_PATHS
def test_optax_amsgrad_takes_the_max_of_the_bias_corrected_v(fused: bool) -> None:
    # β₂ = 0.9 and a gradient that shrinks: v̂ decreases, so the max matters
    ours = descend_path(fused, D.AMSGrad, lr=0.05, betas=(0.9, 0.9), eps=1e-3, convention="optax")
    close(ours, optax_adam(0.05, 0.9, 0.9, 1e-3, amsgrad=True))
    raw = descend_path(fused, D.AMSGrad, lr=0.05, betas=(0.9, 0.9), eps=1e-3)  # torch: max of raw v
    differ(ours, raw)


@BOTH_PATHS
def test_optax_nadam_has_no_schedule(fused: bool) -> None:
    """m̂ = β₁m/(1 − β₁^{t+1}) + (1 − β₁)g/(1 − β₁ᵗ)."""
    ours = descend_path(fused, D.NAdam, lr=0.05, eps=1e-3, convention="optax")
    close(ours, optax_adam(0.05, 0.9, 0.999, 1e-3, nesterov=True), tol=NADAM_TOL)
    differ(ours, descend_path(fused, D.NAdam, lr=0.05, eps=1e-3), by=1e-4)


def optax_rmsprop(lr, decay, eps, momentum=None, nesterov=False, centered=False, steps=STEPS):
    """optax.rmsprop: scale_by_rms (ε inside the root) or scale_by_stddev →
    scale_by_learning_rate → trace(momentum, nesterov): the lr is applied before the trace."""
    theta, nu, mu, tr, out = THETA0.clone(), 0 * THETA0, 0 * THETA0, 0 * THETA0, []
    for _ in range(steps):
        g = grad(theta)
        nu = (1 - decay) * g * g + decay * nu
        if centered:
            mu = (1 - decay) * g + decay * mu
            updates = g * torch.rsqrt(nu - mu * mu + eps)
        else:
            updates = g * torch.rsqrt(nu + eps)
        updates = -lr * updates
        if momentum is not None:
            tr = updates + momentum * tr
            updates = updates + momentum * tr if nesterov else tr
        theta = theta + updates
        out.append(theta.clone())
    return torch.stack(out)


@pytest.mark.parametrize(
    "momentum, nesterov, centered",
    [(None, False, False), (0.9, False, False), (0.9, True, False), (None, False, True)],
)
@BOTH_PATHS
def test_optax_rmsprop(momentum, nesterov: bool, centered: bool, fused: bool) -> None:
    expected = optax_rmsprop(0.01, 0.9, 1e-4, momentum, nesterov, centered)
    ours = descend_path(
        fused,
        D.RMSprop,
        lr=0.01,
        eps=1e-4,
        momentum=momentum or 0.0,
        nesterov=nesterov,
        centered=centered,
        convention="optax",
    )
    close(ours, expected)


@BOTH_PATHS
def test_optax_sgd_trace_starts_from_zero_and_matches(fused: bool) -> None:
    """optax.sgd = trace(μ, nesterov) → scale_by_learning_rate; t = g + μt from t₀ = 0."""
    for nesterov in (False, True):
        theta, tr, out = THETA0.clone(), 0 * THETA0, []
        for _ in range(STEPS):
            g = grad(theta)
            tr = g + 0.9 * tr
            theta = theta - 0.05 * (g + 0.9 * tr if nesterov else tr)
            out.append(theta.clone())
        ours = descend_path(
            fused, D.SGD, lr=0.05, momentum=0.9, nesterov=nesterov, convention="optax"
        )
        close(ours, torch.stack(out))


@BOTH_PATHS
def test_optax_adagrad(fused: bool) -> None:
    """optax.adagrad = scale_by_rss (sum from 0.1, g·rsqrt(sum + ε)) → scale_by_learning_rate."""
    theta, s, out = THETA0.clone(), torch.full((3,), 0.1, dtype=F64), []
    for _ in range(STEPS):
        g = grad(theta)
        s = g * g + s
        theta = theta - 0.1 * (torch.rsqrt(s + 1e-3) * g)
        out.append(theta.clone())
    close(descend_path(fused, D.Adagrad, lr=0.1, eps=1e-3, convention="optax"), torch.stack(out))


# ============================ defaults ===========================================================

KERAS_DEFAULTS = {
    # keras.optimizers.<Name>.__init__ defaults (Keras 3)
    D.SGD: dict(lr=0.01, momentum=0.0, nesterov=False, momentum_form="lr_inside"),
    D.Adam: dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-7, eps_placement="hat", amsgrad=False),
    D.AdamW: dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-7, eps_placement="hat", weight_decay=4e-3),
    D.RMSprop: dict(
        lr=1e-3,
        alpha=0.9,
        eps=1e-7,
        momentum=0.0,
        centered=False,
        eps_placement="inside",
        momentum_form="lr_inside",
    ),
    D.Adagrad: dict(lr=1e-3, initial_accumulator_value=0.1, eps=1e-7, eps_placement="inside"),
    D.NAdam: dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-7, schedule="keras"),
}
OPTAX_DEFAULTS = {
    # optax alias signatures (the learning rate has no default there)
    D.SGD: dict(momentum=0.0, nesterov=False, momentum_form="modern"),
    D.Adam: dict(betas=(0.9, 0.999), eps=1e-8, eps_placement="outside"),
    D.AdamW: dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-4, weight_decay_mode="decoupled"),
    D.AMSGrad: dict(betas=(0.9, 0.999), eps=1e-8, amsgrad=True, amsgrad_of="corrected"),
    D.RMSprop: dict(
        alpha=0.9,
        eps=1e-8,
        centered=False,
        eps_placement="inside",
        momentum_form="lr_inside",
        bias_correction=False,
        initial_accumulator_value=0.0,
    ),
    D.Adagrad: dict(initial_accumulator_value=0.1, eps=1e-7, eps_placement="inside"),
    D.NAdam: dict(betas=(0.9, 0.999), eps=1e-8, schedule="none"),
}


def _group(cls: type, **kw) -> dict:
    return cls([torch.zeros(2, requires_grad=True)], **kw).param_groups[0]


@pytest.mark.parametrize("cls", list(KERAS_DEFAULTS), ids=lambda c: c.__name__)
def test_keras_defaults(cls: type) -> None:
    group = _group(cls, convention="keras")
    assert group["convention"] == "keras"
    assert group["weight_decay_mode"] == "decoupled"  # Keras only has decoupled decay
    for key, value in KERAS_DEFAULTS[cls].items():
        assert group[key] == value, key


@pytest.mark.parametrize("cls", list(OPTAX_DEFAULTS), ids=lambda c: c.__name__)
def test_optax_defaults(cls: type) -> None:
    group = _group(cls, convention="optax")
    for key, value in OPTAX_DEFAULTS[cls].items():
        assert group[key] == value, key


TORCH_PAIRS = [
    (D.SGD, torch.optim.SGD),
    (D.Adagrad, torch.optim.Adagrad),
    (D.RMSprop, torch.optim.RMSprop),
    (D.Adam, torch.optim.Adam),
    (D.AdamW, torch.optim.AdamW),
    (D.NAdam, torch.optim.NAdam),
]


@pytest.mark.parametrize("ours, theirs", TORCH_PAIRS, ids=lambda c: c.__name__)
def test_torch_defaults_are_torch_optims(ours: type, theirs: type) -> None:
    mine = _group(ours)
    ref = theirs([torch.zeros(2, requires_grad=True)]).param_groups[0]
    skip = {"params", "foreach", "differentiable", "capturable", "fused", "decoupled_weight_decay"}
    for key, value in ref.items():
        if key not in skip:
            assert mine[key] == value, key
    expected_mode = "decoupled" if theirs is torch.optim.AdamW else "l2"
    assert mine["weight_decay_mode"] == expected_mode


@pytest.mark.parametrize(
    "cls, convention, kw",
    [
        (D.Adam, "keras", dict(eps=1e-3, betas=(0.8, 0.99), eps_placement="outside")),
        (D.RMSprop, "keras", dict(alpha=0.95, eps=1e-5, eps_placement="outside")),
        (D.Adagrad, "optax", dict(initial_accumulator_value=0.0, eps=1e-10)),
        (D.SGD, "keras", dict(lr=0.3, momentum_form="modern", weight_decay_mode="l2")),
        (D.AdamW, "optax", dict(weight_decay=0.05, amsgrad_of="raw")),
        (D.NAdam, "keras", dict(schedule="torch", eps=1e-8)),
    ],
)
def test_explicit_keywords_override_the_convention(cls: type, convention: str, kw: dict) -> None:
    group = _group(cls, convention=convention, **kw)
    for key, value in kw.items():
        assert group[key] == value, key


@BOTH_PATHS
def test_an_overridden_convention_follows_the_override(fused: bool) -> None:
    """Keras Adam with ε placed outside (after bias correction) is torch's Adam."""
    keras_outside = descend_path(
        fused, D.Adam, lr=0.05, eps=1e-3, convention="keras", eps_placement="outside"
    )
    close(
        keras_outside, descend_path(fused, D.Adam, lr=0.05, eps=1e-3, weight_decay_mode="decoupled")
    )


# ============================ Adam switches ======================================================


def hand_adam(lr, b1, b2, eps, correct_m=True, correct_v=True, placement="outside"):
    theta, m, v, out = THETA0.clone(), 0 * THETA0, 0 * THETA0, []
    for t in range(1, STEPS + 1):
        g = grad(theta)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        c1 = (1 - b1**t) if correct_m else 1.0
        c2 = (1 - b2**t) if correct_v else 1.0
        if placement == "outside":
            u = (m / c1) / (torch.sqrt(v / c2) + eps)
        elif placement == "inside":
            u = (m / c1) / torch.sqrt(v / c2 + eps)
        else:  # hat: the paper's ε̂, α_t = γ√c₂/c₁
            u = math.sqrt(c2) / c1 * m / (torch.sqrt(v) + eps)
        theta = theta - lr * u
        out.append(theta.clone())
    return torch.stack(out)


@pytest.mark.parametrize("placement", ["outside", "inside", "hat"])
@pytest.mark.parametrize(
    "bc", [True, False, (True, False), (False, True)], ids=["both", "none", "m-only", "v-only"]
)
@BOTH_PATHS
def test_adam_bias_correction_and_eps_placement(bc, placement: str, fused: bool) -> None:
    cm, cv = (bc, bc) if isinstance(bc, bool) else bc
    expected = hand_adam(0.02, 0.9, 0.99, 1e-3, cm, cv, placement)
    ours = descend_path(
        fused,
        D.Adam,
        lr=0.02,
        betas=(0.9, 0.99),
        eps=1e-3,
        bias_correction=bc,
        eps_placement=placement,
    )
    close(ours, expected)


def test_the_placements_really_differ() -> None:
    paths = [hand_adam(0.02, 0.9, 0.99, 1e-3, placement=p) for p in ("outside", "inside", "hat")]
    differ(paths[0], paths[1])
    differ(paths[0], paths[2])
    differ(paths[1], paths[2])
    differ(hand_adam(0.02, 0.9, 0.99, 1e-3), hand_adam(0.02, 0.9, 0.99, 1e-3, correct_m=False))
