"""descend against the real Keras 3 and optax, live, in float64, on both paths.

Instead of equations transcribed by hand (``test_conventions.py``), the references here are the
packages themselves: Keras 3 on its jax backend with ``floatx = float64`` and optax with jax's
x64 mode. Every optimizer and option descend shares with them — SGD (momentum, Nesterov,
Keras' decoupled decay, optax with L2 in front), Adagrad, RMSprop (centered, momentum,
Nesterov in optax, optax's bias correction and ε placements), Adam, AMSGrad, AdamW, NAdam —
runs 50 steps on the same loss, whose gradient changes at every step,

    g(θ) = s ⊙ (d³ + d + 0.3 sin 3θ + 0.9 θ cos 3θ),  d = θ − c,

with per-coordinate scales s from 1 down to 0.01 (so ε and its placement matter), and the
whole trajectory must agree to max |Δθ| ≤ 1e-12, on ``fused=True`` (C++ kernels) and
``fused=False`` (the chain), each asserted with :func:`descend.optim.fast.last_path`. Each
reference trajectory is one jitted ``lax.scan`` (Keras through ``stateless_apply``), computed
once per case for both paths. The settings keep every trajectory well conditioned: θ perturbed
by one ulp stays within 1e-13 after 50 steps, so 1e-12 measures the optimizer, not chaos.

The packages are test dependencies (``pip install -e '.[test]'``). Without them the module is
skipped on a developer's machine and fails under ``CI=true``.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest
import torch

import descend.optim as D
from descend.optim.fast import last_path

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported
try:
    import jax
    import jax.numpy as jnp
    import keras
    import optax
except ImportError as exc:  # pragma: no cover - exercised only without the test extra
    if os.environ.get("CI", "").lower() == "true":
        raise
    pytest.skip(f"live references need keras, jax and optax: {exc}", allow_module_level=True)

jax.config.update("jax_enable_x64", True)
keras.config.set_floatx("float64")

STEPS = 50
TOL = 1e-12
N = 24
_rng = np.random.default_rng(12)
C = _rng.standard_normal(N)
THETA0 = C + 0.8 * _rng.standard_normal(N)
SCALE = np.logspace(0, -2, N)


def grad(xp, theta):
    """The loss gradient, written once for numpy-like modules (jax.numpy, torch)."""
    if xp is torch:
        c, s = torch.tensor(C), torch.tensor(SCALE)
    else:
        c, s = xp.asarray(C), xp.asarray(SCALE)
    d = theta - c
    return s * (d**3 + d + 0.3 * xp.sin(3 * theta) + 0.9 * theta * xp.cos(3 * theta))


def keras_trajectory(make) -> np.ndarray:
    """θ after each of STEPS steps of a fresh ``make()`` Keras optimizer, float64."""
    opt = make()
    var = keras.Variable(THETA0.copy(), dtype="float64")
    opt.build([var])
    assert all(v.dtype in ("float64", "int32", "int64") for v in opt.variables)
    opt_vars = [v.value for v in opt.variables]

    def body(carry, _):
        theta, ov = carry
        (theta,), ov = opt.stateless_apply(ov, [grad(jnp, theta)], [theta])
        return (theta, ov), theta

    run = jax.jit(lambda th, ov: jax.lax.scan(body, (th, ov), None, length=STEPS)[1])
    return np.asarray(run(jnp.asarray(THETA0), opt_vars))


def optax_trajectory(make) -> np.ndarray:
    """θ after each of STEPS steps of the optax transformation ``make()``, x64."""
    tx = make()

    def body(carry, _):
        theta, state = carry
        updates, state = tx.update(grad(jnp, theta), state, theta)
        theta = optax.apply_updates(theta, updates)
        return (theta, state), theta

    def run(theta):
        return jax.lax.scan(body, (theta, tx.init(theta)), None, length=STEPS)[1]

    out = np.asarray(jax.jit(run)(jnp.asarray(THETA0)))
    assert out.dtype == np.float64
    return out


def descend_trajectory(cls, fused: bool, **kwargs) -> tuple[np.ndarray, dict]:
    p = torch.tensor(THETA0, dtype=torch.float64, requires_grad=True)
    opt = cls([p], fused=fused, **kwargs)
    out = []
    for _ in range(STEPS):
        p.grad = grad(torch, p.detach())
        opt.step()
        out.append(p.detach().clone())
    return torch.stack(out).numpy(), opt


K, O = keras.optimizers, optax

# id → (reference, descend class, descend keywords); the convention is the id's prefix.
KERAS = {
    "sgd": (lambda: K.SGD(0.05), D.SGD, dict(lr=0.05)),
    "sgd-nesterov-default-momentum": (
        lambda: K.SGD(0.05, nesterov=True),
        D.SGD,
        dict(lr=0.05, nesterov=True),
    ),
    "sgd-momentum": (lambda: K.SGD(0.02, momentum=0.9), D.SGD, dict(lr=0.02, momentum=0.9)),
    "sgd-nesterov": (
        lambda: K.SGD(0.02, momentum=0.9, nesterov=True),
        D.SGD,
        dict(lr=0.02, momentum=0.9, nesterov=True),
    ),
    "sgd-nesterov-wd": (
        lambda: K.SGD(0.02, momentum=0.8, nesterov=True, weight_decay=0.1),
        D.SGD,
        dict(lr=0.02, momentum=0.8, nesterov=True, weight_decay=0.1),
    ),
    "adagrad": (lambda: K.Adagrad(0.1), D.Adagrad, dict(lr=0.1)),
    "adagrad-wd": (
        lambda: K.Adagrad(0.1, initial_accumulator_value=0.3, epsilon=1e-4, weight_decay=0.05),
        D.Adagrad,
        dict(lr=0.1, initial_accumulator_value=0.3, eps=1e-4, weight_decay=0.05),
    ),
    "rmsprop": (lambda: K.RMSprop(0.01, epsilon=1e-4), D.RMSprop, dict(lr=0.01, eps=1e-4)),
    "rmsprop-default-eps": (lambda: K.RMSprop(0.003), D.RMSprop, dict(lr=0.003)),
    "rmsprop-centered": (
        lambda: K.RMSprop(0.01, rho=0.95, epsilon=1e-4, centered=True),
        D.RMSprop,
        dict(lr=0.01, alpha=0.95, eps=1e-4, centered=True),
    ),
    "rmsprop-momentum-wd": (
        lambda: K.RMSprop(0.005, momentum=0.8, epsilon=1e-4, weight_decay=0.1),
        D.RMSprop,
        dict(lr=0.005, momentum=0.8, eps=1e-4, weight_decay=0.1),
    ),
    "rmsprop-centered-momentum": (
        lambda: K.RMSprop(0.005, momentum=0.7, epsilon=1e-4, centered=True),
        D.RMSprop,
        dict(lr=0.005, momentum=0.7, eps=1e-4, centered=True),
    ),
    "adam": (lambda: K.Adam(0.05), D.Adam, dict(lr=0.05)),
    "adam-eps-wd": (
        lambda: K.Adam(0.05, beta_1=0.8, beta_2=0.99, epsilon=1e-3, weight_decay=0.1),
        D.Adam,
        dict(lr=0.05, betas=(0.8, 0.99), eps=1e-3, weight_decay=0.1),
    ),
    "amsgrad": (lambda: K.Adam(0.05, amsgrad=True), D.Adam, dict(lr=0.05, amsgrad=True)),
    "adamw": (lambda: K.AdamW(0.05), D.AdamW, dict(lr=0.05)),
    "adamw-amsgrad": (
        lambda: K.AdamW(0.05, weight_decay=0.2, amsgrad=True, epsilon=1e-4),
        D.AdamW,
        dict(lr=0.05, weight_decay=0.2, amsgrad=True, eps=1e-4),
    ),
    "nadam": (lambda: K.Nadam(0.05), D.NAdam, dict(lr=0.05)),
    "nadam-wd": (
        lambda: K.Nadam(0.05, beta_1=0.8, beta_2=0.99, epsilon=1e-4, weight_decay=0.1),
        D.NAdam,
        dict(lr=0.05, betas=(0.8, 0.99), eps=1e-4, weight_decay=0.1),
    ),
}

OPTAX = {
    "sgd": (lambda: O.sgd(0.05), D.SGD, dict(lr=0.05)),
    "sgd-momentum": (lambda: O.sgd(0.02, momentum=0.9), D.SGD, dict(lr=0.02, momentum=0.9)),
    "sgd-nesterov": (
        lambda: O.sgd(0.02, momentum=0.9, nesterov=True),
        D.SGD,
        dict(lr=0.02, momentum=0.9, nesterov=True),
    ),
    "sgd-l2": (
        lambda: O.chain(O.add_decayed_weights(0.1), O.sgd(0.02, momentum=0.8)),
        D.SGD,
        dict(lr=0.02, momentum=0.8, weight_decay=0.1),
    ),
    "adagrad": (lambda: O.adagrad(0.1), D.Adagrad, dict(lr=0.1)),
    "rmsprop": (
        lambda: O.rmsprop(0.01, decay=0.9, eps=1e-4),
        D.RMSprop,
        dict(lr=0.01, alpha=0.9, eps=1e-4),
    ),
    "rmsprop-eps-outside": (
        lambda: O.rmsprop(0.01, eps=1e-4, eps_in_sqrt=False),
        D.RMSprop,
        dict(lr=0.01, eps=1e-4, eps_placement="outside"),
    ),
    "rmsprop-centered-momentum": (
        lambda: O.rmsprop(0.005, eps=1e-4, centered=True, momentum=0.8),
        D.RMSprop,
        dict(lr=0.005, eps=1e-4, centered=True, momentum=0.8),
    ),
    "rmsprop-nesterov": (
        lambda: O.rmsprop(0.005, eps=1e-4, momentum=0.8, nesterov=True),
        D.RMSprop,
        dict(lr=0.005, eps=1e-4, momentum=0.8, nesterov=True),
    ),
    "rmsprop-bias-correction": (
        lambda: O.rmsprop(0.01, decay=0.95, eps=1e-4, bias_correction=True, initial_scale=0.1),
        D.RMSprop,
        dict(lr=0.01, alpha=0.95, eps=1e-4, bias_correction=True, initial_accumulator_value=0.1),
    ),
    "rmsprop-centered-bias-correction": (
        lambda: O.rmsprop(0.01, eps=1e-2, centered=True, bias_correction=True, momentum=0.5),
        D.RMSprop,
        dict(lr=0.01, eps=1e-2, centered=True, bias_correction=True, momentum=0.5),
    ),
    "adam": (lambda: O.adam(0.05), D.Adam, dict(lr=0.05)),
    "adam-eps-root": (
        lambda: O.adam(0.05, b1=0.8, b2=0.99, eps=0.0, eps_root=1e-4),
        D.Adam,
        dict(lr=0.05, betas=(0.8, 0.99), eps=1e-4, eps_placement="inside"),
    ),
    "adam-l2": (
        lambda: O.chain(O.add_decayed_weights(0.1), O.adam(0.05)),
        D.Adam,
        dict(lr=0.05, weight_decay=0.1),
    ),
    "amsgrad": (lambda: O.amsgrad(0.05), D.Adam, dict(lr=0.05, amsgrad=True)),
    "adamw": (lambda: O.adamw(0.05, weight_decay=0.2), D.AdamW, dict(lr=0.05, weight_decay=0.2)),
    "nadam": (lambda: O.nadam(0.05), D.NAdam, dict(lr=0.05)),
    "nadam-l2": (
        lambda: O.chain(O.add_decayed_weights(0.1), O.nadam(0.05, b1=0.8, b2=0.99)),
        D.NAdam,
        dict(lr=0.05, betas=(0.8, 0.99), weight_decay=0.1),
    ),
}

CASES = [("keras", k) for k in KERAS] + [("optax", k) for k in OPTAX]


@functools.cache
def reference(convention: str, name: str) -> np.ndarray:
    if convention == "keras":
        return keras_trajectory(KERAS[name][0])
    return optax_trajectory(OPTAX[name][0])


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "chain"])
@pytest.mark.parametrize("convention, name", CASES, ids=[f"{c}-{n}" for c, n in CASES])
def test_descend_matches_the_real_framework(convention: str, name: str, fused: bool) -> None:
    _, cls, kwargs = (KERAS if convention == "keras" else OPTAX)[name]
    ref = reference(convention, name)
    assert np.abs(ref[-1] - THETA0).max() > 0.1  # the reference really moved
    ours, opt = descend_trajectory(cls, fused, convention=convention, **kwargs)
    assert last_path(opt) == ({0: "fast"} if fused else {0: "default: fused=False"})
    err = np.abs(ours - ref).max()
    assert err <= TOL, f"{convention}-{name}: max |Δθ| = {err:.3g}"


def test_the_cases_are_well_conditioned() -> None:
    """One ulp on θ₀ moves no trajectory by more than 1e-13 (so rounding differences between
    implementations cannot grow to the 1e-12 tolerance; measured: 1.6e-14)."""
    worst = 0.0
    for convention, table in (("keras", KERAS), ("optax", OPTAX)):
        for _, cls, kwargs in table.values():
            a, _ = descend_trajectory(cls, False, convention=convention, **kwargs)
            p = torch.tensor(np.nextafter(THETA0, np.inf), requires_grad=True)
            opt = cls([p], fused=False, convention=convention, **kwargs)
            out = []
            for _ in range(STEPS):
                p.grad = grad(torch, p.detach())
                opt.step()
                out.append(p.detach().clone())
            worst = max(worst, float(np.abs(torch.stack(out).numpy() - a).max()))
    assert worst <= 1e-13, worst


def test_the_references_tell_conventions_apart() -> None:
    """The tolerance is sharp: torch's convention misses Keras' by far more (its SGD momentum
    with a constant lr is the same trajectory, so SGD is checked with Keras' decoupled decay)."""
    for name in ("adam", "rmsprop", "nadam", "adagrad", "sgd-nesterov-wd"):
        _, cls, kwargs = KERAS[name]
        ours, _ = descend_trajectory(cls, False, convention="torch", **kwargs)
        assert np.abs(ours - reference("keras", name)).max() > 1e3 * TOL, name
