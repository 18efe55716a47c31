"""The shared optimizer test-case table: one row per optimizer, as torch's ``OptimizerInfo``.

``tests/test_cases.py`` iterates it: 100-step float64 parity with the row's independent
reference on every path the optimizer has (the fast kernels where its core has one, and the
chain; ``last_path()`` asserted), a bitwise resume from ``state_dict()``, refusal of bad input
with the parameter named and nothing changed, and the spec name. Adding an optimizer adds a row.

A reference is a callable ``(kwargs, theta0, steps) -> final parameters`` (lists of float64
numpy arrays), built by :func:`torch_reference` for a torch-style optimizer class (torch.optim,
``lion-pytorch``, ``schedulefree``, …), :func:`optax_reference` for an optax transformation
(x64) or :func:`keras_reference` for a Keras 3 optimizer (jax backend, float64); each takes
descend's keywords and translates them. The loss gradient
(:func:`grad`) depends on the parameters, so the trajectories must agree step by step.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

import descend.optim as D

SHAPES = ((5, 4), (7,))
STEPS = 100
_rng = np.random.default_rng(2026)
CENTRES = [_rng.standard_normal(s) for s in SHAPES]
THETA0 = [c + 0.7 * _rng.standard_normal(c.shape) for c in CENTRES]
SCALES = [np.logspace(0, -1.5, c.size).reshape(c.shape) for c in CENTRES]
NOISE = [[0.05 * _rng.standard_normal(c.shape) for c in CENTRES] for _ in range(STEPS + 50)]


def grad(xp, theta: list, t: int) -> list:
    """Gradients at step ``t`` (0-based): a scaled non-quadratic bowl plus fixed noise, written
    once for numpy-like modules (numpy, jax.numpy, torch)."""
    out = []
    for th, c, s, n in zip(theta, CENTRES, SCALES, NOISE[t], strict=True):
        if xp is torch:
            c, s, n = (torch.as_tensor(a, dtype=th.dtype) for a in (c, s, n))
        d = th - c
        out.append(s * (d + 0.3 * d**3 + 0.2 * xp.sin(3 * th)) + n)
    return out


Reference = Callable[[dict, list, int], list]


def _import(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def torch_reference(cls: str | type, translate: Callable[[dict], dict] | None = None) -> Reference:
    """A torch-style optimizer class (or its dotted import path) as a reference."""

    def run(kwargs: dict, theta0: list, steps: int) -> list:
        klass = _import(cls) if isinstance(cls, str) else cls
        params = [torch.tensor(t, dtype=torch.float64, requires_grad=True) for t in theta0]
        opt = klass(params, **(translate(kwargs) if translate else kwargs))
        for t in range(steps):
            for p, g in zip(params, grad(torch, [p.detach() for p in params], t), strict=True):
                p.grad = g
            opt.step()
        return [p.detach().numpy() for p in params]

    return run


def optax_reference(make: Callable[[dict], object]) -> Reference:
    """``make(kwargs)`` → an optax ``GradientTransformation``, run in x64."""

    def run(kwargs: dict, theta0: list, steps: int) -> list:
        import jax
        import jax.numpy as jnp
        import optax

        jax.config.update("jax_enable_x64", True)
        tx = make(kwargs)
        theta = [jnp.asarray(t, dtype=jnp.float64) for t in theta0]
        state = tx.init(theta)

        @jax.jit
        def step(theta, state, g):
            updates, state = tx.update(g, state, theta)
            return optax.apply_updates(theta, updates), state

        for t in range(steps):
            g = [jnp.asarray(x) for x in grad(np, [np.asarray(x) for x in theta], t)]
            theta, state = step(theta, state, g)
        return [np.asarray(x) for x in theta]

    return run


def keras_reference(make: Callable[[dict], object]) -> Reference:
    """``make(kwargs)`` → a Keras 3 optimizer, run on the jax backend in float64 (the backend
    must be jax: set ``KERAS_BACKEND=jax`` before Keras is first imported)."""

    def run(kwargs: dict, theta0: list, steps: int) -> list:
        os.environ.setdefault("KERAS_BACKEND", "jax")
        import jax
        import keras

        if keras.backend.backend() != "jax":
            raise RuntimeError(f"Keras runs on {keras.backend.backend()!r}; these need 'jax'")
        jax.config.update("jax_enable_x64", True)
        keras.config.set_floatx("float64")
        opt = make(kwargs)
        variables = [keras.Variable(t.copy(), dtype="float64") for t in theta0]
        opt.build(variables)
        for t in range(steps):
            g = grad(np, [np.asarray(v.value) for v in variables], t)
            opt.apply_gradients(zip([jax.numpy.asarray(x) for x in g], variables, strict=True))
        return [np.asarray(v.value) for v in variables]

    return run


def run_descend(cls: type, kwargs: dict, steps: int, fused: bool | None) -> tuple[list, object]:
    params = [torch.tensor(t, dtype=torch.float64, requires_grad=True) for t in THETA0]
    opt = cls(params, fused=fused, **kwargs)
    for t in range(steps):
        for p, g in zip(params, grad(torch, [p.detach() for p in params], t), strict=True):
            p.grad = g
        opt.step()
    return [p.detach().numpy() for p in params], opt


@dataclass
class Case:
    """One optimizer: its spec name, class, the keyword variants each tested for parity, the
    reference, the tolerance (float64, ``STEPS`` steps), the pip package the reference needs,
    and bad inputs ``(keyword, value)`` that must be refused naming the keyword."""

    name: str
    cls: type
    variants: list[dict]
    reference: Reference
    tol64: float = 1e-10
    package: str | None = None
    bad: list[tuple[str, object]] = field(default_factory=list)
    steps: int = STEPS
    tag: str = ""  # tells two rows of one optimizer apart (another reference)

    @property
    def id(self) -> str:
        return f"{self.name}-{self.tag}" if self.tag else self.name

    @property
    def fast(self) -> bool:
        """Whether the optimizer's chain has a fast-path kernel (its core declares one)."""
        opt = self.cls([torch.zeros(2, requires_grad=True)])
        from descend.optim.fast.plan import Unsupported, shape_of

        try:
            shape_of(opt.chain(opt.param_groups[0]).transforms)
        except Unsupported:
            return False
        return True


def _torch(name: str) -> Reference:
    return torch_reference(getattr(torch.optim, name), _torch_keywords)


def _torch_keywords(kwargs: dict) -> dict:
    return {k: v for k, v in kwargs.items() if k != "convention"}


_BAD_LR = ("lr", -0.1)
_BAD_BETAS = ("betas", (0.9, 1.5))

CASES: list[Case] = [
    Case(
        "sgd",
        D.SGD,
        [dict(lr=0.05), dict(lr=0.05, weight_decay=0.1, maximize=False)],
        _torch("SGD"),
        bad=[_BAD_LR, ("momentum", -0.5)],
    ),
    Case(
        "momentum",
        D.SGD,
        [dict(lr=0.02, momentum=0.9), dict(lr=0.02, momentum=0.8, dampening=0.3)],
        _torch("SGD"),
        bad=[("dampening", 2.0)],
    ),
    Case(
        "nesterov",
        D.SGD,
        [dict(lr=0.02, momentum=0.9, nesterov=True, weight_decay=0.01)],
        _torch("SGD"),
    ),
    Case(
        "adagrad",
        D.Adagrad,
        [dict(lr=0.1), dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.2)],
        _torch("Adagrad"),
        bad=[("lr_decay", -1.0), ("eps", -1e-8)],
    ),
    Case(
        "rmsprop",
        D.RMSprop,
        [dict(lr=0.01), dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.01)],
        _torch("RMSprop"),
        bad=[("alpha", 1.0)],
    ),
    Case(
        "adam",
        D.Adam,
        [dict(lr=0.02), dict(lr=0.02, amsgrad=True, weight_decay=0.05, betas=(0.8, 0.95))],
        _torch("Adam"),
        bad=[_BAD_LR, _BAD_BETAS, ("eps", -1.0)],
    ),
    Case(
        "amsgrad",
        D.AMSGrad,
        [dict(lr=0.02, betas=(0.8, 0.99))],
        torch_reference(torch.optim.Adam, lambda k: {**_torch_keywords(k), "amsgrad": True}),
        bad=[("amsgrad", False)],
    ),
    Case("adamw", D.AdamW, [dict(lr=0.02, weight_decay=0.1)], _torch("AdamW")),
    Case(
        "nadam",
        D.NAdam,
        [dict(lr=0.02), dict(lr=0.02, weight_decay=0.05, decoupled_weight_decay=True)],
        _torch("NAdam"),
        bad=[("momentum_decay", -1.0)],
    ),
    Case(
        "lion",
        D.Lion,
        [
            dict(lr=1e-3),
            dict(lr=3e-3, weight_decay=0.5, betas=(0.95, 0.98)),
            dict(lr=2e-3, weight_decay=0.02, weight_decay_mode="independent"),
        ],
        torch_reference("lion_pytorch.Lion", lambda k: _lion_pytorch(k)),
        package="lion-pytorch",
        bad=[_BAD_LR, _BAD_BETAS],
    ),
    Case(
        "lion",
        D.Lion,
        [dict(convention="optax", lr=1e-3), dict(convention="optax", lr=2e-3, betas=(0.8, 0.9))],
        optax_reference(lambda k: _optax_lion(k)),
        tol64=1e-12,
        package="optax",
        tag="optax",
    ),
    Case(
        "lion",
        D.Lion,
        [dict(convention="keras"), dict(convention="keras", lr=2e-3, weight_decay=0.05)],
        keras_reference(lambda k: _keras_lion(k)),
        tol64=1e-12,
        package="keras",
        tag="keras",
    ),
]


def _lion_pytorch(k: dict) -> dict:
    """lion-pytorch's keywords: its decoupled_weight_decay=True decays by θ(1 − γλ/γ₀) (λ
    divided by the initial lr), i.e. descend's weight_decay_mode='independent', θ(1 − λ), at
    a constant lr."""
    out = {"lr": k["lr"], "betas": k.get("betas", (0.9, 0.99))}
    out["weight_decay"] = k.get("weight_decay", 0.0)
    if k.get("weight_decay_mode") == "independent":
        out["decoupled_weight_decay"] = True
    return out


def _optax_lion(k: dict):
    import optax

    b1, b2 = k.get("betas", (0.9, 0.99))
    return optax.lion(k["lr"], b1=b1, b2=b2, weight_decay=k.get("weight_decay", 1e-3))


def _keras_lion(k: dict):
    import keras

    b1, b2 = k.get("betas", (0.9, 0.99))
    wd = k.get("weight_decay") or None
    return keras.optimizers.Lion(k.get("lr", 1e-3), beta_1=b1, beta_2=b2, weight_decay=wd)


# -- the rest of torch.optim, part A: RAdam, Adamax, Adadelta ----------------------------------
CASES += [
    Case(
        "radam",
        D.RAdam,
        [
            dict(lr=0.02),
            dict(lr=0.02, betas=(0.8, 0.95), eps=1e-4, weight_decay=0.1),
            dict(lr=0.02, weight_decay=0.1, decoupled_weight_decay=True),
            dict(lr=0.01, betas=(0.5, 0.9), weight_decay=0.05, maximize=True),
        ],
        _torch("RAdam"),
        bad=[_BAD_LR, _BAD_BETAS, ("threshold", 3.0), ("eps_root", 1e-4), ("eps", -1.0)],
    ),
    Case(
        "radam",
        D.RAdam,
        [
            dict(convention="optax", lr=0.02),
            dict(convention="optax", lr=0.02, betas=(0.8, 0.95), eps=1e-4, threshold=6.0),
            dict(convention="optax", lr=0.02, nesterov=True, eps=1e-6, eps_root=1e-5),
        ],
        optax_reference(lambda k: _optax_radam(k)),
        tol64=1e-12,
        package="optax",
        tag="optax",
    ),
    Case(
        "adamax",
        D.Adamax,
        [
            dict(lr=0.02),
            dict(lr=0.02, betas=(0.8, 0.95), eps=1e-3, weight_decay=0.1),
            dict(lr=0.01, weight_decay=0.05, maximize=True),
        ],
        _torch("Adamax"),
        bad=[_BAD_LR, _BAD_BETAS, ("eps", -1.0), ("eps_placement", "max")],
    ),
    Case(
        "adamax",
        D.Adamax,
        [
            dict(convention="optax", lr=0.02),
            dict(convention="optax", lr=0.02, betas=(0.8, 0.95), eps=1e-3, weight_decay=0.1),
        ],
        optax_reference(lambda k: _optax_adamax(k)),
        tol64=1e-12,
        package="optax",
        tag="optax",
    ),
    Case(
        "adamax",
        D.Adamax,
        [
            dict(convention="keras", lr=0.02),
            dict(convention="keras", lr=0.02, betas=(0.8, 0.95), eps=1e-3, weight_decay=0.1),
        ],
        keras_reference(lambda k: _keras_adamax(k)),
        tol64=1e-12,
        package="keras",
        tag="keras",
    ),
    Case(
        "adadelta",
        D.Adadelta,
        [
            dict(),
            dict(lr=0.5, rho=0.95, eps=1e-4, weight_decay=0.1),
            dict(lr=2.0, weight_decay=0.05, maximize=True),
        ],
        _torch("Adadelta"),
        bad=[_BAD_LR, ("rho", 1.0), ("rho", -0.1), ("eps", -1e-6)],
    ),
    Case(
        "adadelta",
        D.Adadelta,
        [
            dict(convention="optax"),
            dict(convention="optax", lr=0.5, rho=0.95, eps=1e-4, weight_decay=0.1),
        ],
        optax_reference(lambda k: _optax_adadelta(k)),
        tol64=1e-12,
        package="optax",
        tag="optax",
    ),
    Case(
        "adadelta",
        D.Adadelta,
        [
            dict(convention="keras", lr=1.0),
            dict(convention="keras", lr=0.5, rho=0.9, eps=1e-5, weight_decay=0.1),
        ],
        keras_reference(lambda k: _keras_adadelta(k)),
        tol64=1e-12,
        package="keras",
        tag="keras",
    ),
]


def _optax_radam(k: dict):
    import optax

    b1, b2 = k.get("betas", (0.9, 0.999))
    return optax.radam(
        k["lr"],
        b1=b1,
        b2=b2,
        eps=k.get("eps", 1e-8),
        eps_root=k.get("eps_root", 0.0),
        threshold=k.get("threshold", 5.0),
        nesterov=k.get("nesterov", False),
    )


def _optax_adamax(k: dict):
    """optax.adamax, or optax.adamaxw (decoupled decay) when there is a weight decay."""
    import optax

    b1, b2 = k.get("betas", (0.9, 0.999))
    eps, wd = k.get("eps", 1e-8), k.get("weight_decay", 0.0)
    if wd:
        return optax.adamaxw(k["lr"], b1=b1, b2=b2, eps=eps, weight_decay=wd)
    return optax.adamax(k["lr"], b1=b1, b2=b2, eps=eps)


def _optax_adadelta(k: dict):
    import optax

    return optax.adadelta(
        k.get("lr", 1.0),
        rho=k.get("rho", 0.9),
        eps=k.get("eps", 1e-6),
        weight_decay=k.get("weight_decay", 0.0),
    )


def _keras_adamax(k: dict):
    import keras

    b1, b2 = k.get("betas", (0.9, 0.999))
    wd = k.get("weight_decay") or None
    return keras.optimizers.Adamax(
        k["lr"], beta_1=b1, beta_2=b2, epsilon=k.get("eps", 1e-7), weight_decay=wd
    )


def _keras_adadelta(k: dict):
    import keras

    wd = k.get("weight_decay") or None
    return keras.optimizers.Adadelta(
        k["lr"], rho=k.get("rho", 0.95), epsilon=k.get("eps", 1e-7), weight_decay=wd
    )
