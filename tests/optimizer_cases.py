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


def runs_together_and_alone(cls: type, kwargs: dict, lrs: torch.Tensor, steps: int = 30):
    """The lab's form — one run per row of a (3, 2) parameter with an (N, 1) learning rate
    ``lrs`` — beside the same runs each with its own optimizer and a float lr. Returns the
    batched optimizer, its parameter and the largest |Δθ| between the two."""
    rows = torch.tensor(np.stack([THETA0[1][:2], THETA0[1][2:4], THETA0[1][4:6]]))
    together = rows.clone().requires_grad_(True)
    opt = cls([together], **dict(kwargs, lr=lrs))
    alone = [r.clone().requires_grad_(True) for r in rows]
    opts = [cls([a], **dict(kwargs, lr=float(lr))) for a, lr in zip(alone, lrs, strict=True)]
    for t in range(steps):
        together.grad = torch.sin(3 * together.detach()) + together.detach() ** 3 + 0.01 * t
        opt.step()
        for a, o in zip(alone, opts, strict=True):
            a.grad = torch.sin(3 * a.detach()) + a.detach() ** 3 + 0.01 * t
            o.step()
    return opt, together, float((together - torch.stack(alone)).detach().abs().max())


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


def _defaults(cls: type, kwargs: dict) -> dict:
    """descend's keywords completed with the convention's row (what a reference must be told)."""
    return {**cls.conventions[kwargs.get("convention", "torch")], **kwargs}


def _optax_lamb(kwargs: dict):
    import optax

    k = _defaults(D.LAMB, kwargs)
    b1, b2 = k["betas"]
    return optax.lamb(k["lr"], b1=b1, b2=b2, eps=k["eps"], weight_decay=k["weight_decay"])


def _keras_lamb(kwargs: dict):
    import keras

    k = _defaults(D.LAMB, kwargs)
    b1, b2 = k["betas"]
    wd = k["weight_decay"] or None
    return keras.optimizers.Lamb(k["lr"], beta_1=b1, beta_2=b2, epsilon=k["eps"], weight_decay=wd)


def _optax_lars(kwargs: dict):
    import optax

    k = _defaults(D.LARS, kwargs)
    return optax.lars(
        k["lr"],
        weight_decay=k["weight_decay"],
        trust_coefficient=k["trust_coefficient"],
        eps=k["eps"],
        momentum=k["momentum"],
        nesterov=k["nesterov"],
    )


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
        "rprop",
        D.Rprop,
        [
            dict(),
            dict(lr=0.05, etas=(0.3, 1.5), step_sizes=(1e-3, 0.2)),
            dict(lr=1e-8, etas=(0.6, 1.1), step_sizes=(1e-6, 1.0)),  # η₀ < Γ_min: clamped
            dict(lr=0.02, step_sizes=(1e-6, 0.05), maximize=True),
        ],
        _torch("Rprop"),
        bad=[_BAD_LR, ("etas", (1.0, 0.5)), ("etas", (0.5, 1.0)), ("step_sizes", (1.0, 1e-3))],
    ),
    Case(
        "asgd",
        D.ASGD,
        [
            dict(),
            dict(lr=0.05, lambd=0.01, alpha=0.6, t0=10),
            dict(lr=0.03, weight_decay=0.1, t0=5),
            dict(lr=1e-3, maximize=True, weight_decay=0.1, t0=20),
        ],
        _torch("ASGD"),
        bad=[
            _BAD_LR,
            ("weight_decay", -0.5),
            ("lambd", -1.0),
            ("alpha", -1.0),
            ("t0", -1.0),
            ("weight_decay_mode", "decoupled"),
        ],
    ),
    Case(
        "adafactor",
        D.Adafactor,
        [
            dict(),
            dict(lr=0.05, beta2_decay=-0.5, eps=(1e-20, 1e-2), d=2.0),
            dict(lr=0.03, weight_decay=0.1),
            dict(lr=1e-3, maximize=True, weight_decay=0.1),
            dict(eps=(1e-3, 1e-3), d=1.5, beta2_decay=-1.0),
        ],
        _torch("Adafactor"),
        bad=[
            _BAD_LR,
            ("eps", (-1e-30, 1e-3)),
            ("eps", (None, -1.0)),
            ("d", 0.5),
            ("beta2_decay", 0.8),
            ("weight_decay", -0.1),
        ],
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
        "muon",
        D.Muon,
        [
            dict(lr=0.02),
            dict(lr=0.02, nesterov=False, momentum=0.9, weight_decay=0.0, maximize=True),
            dict(
                lr=0.01,
                adjust_lr_fn="match_rms_adamw",
                ns_steps=3,
                ns_coefficients=(2.0, -1.5, 0.5),
                eps=1e-3,
                adam_betas=(0.8, 0.95),
                adam_eps=1e-6,
                adam_weight_decay=0.1,
                adam_lr_ratio=0.5,
            ),
        ],
        torch_reference(lambda params, **k: _TorchMuonWithAdamW(params, **k)),
        bad=[_BAD_LR, ("ns_steps", 100), ("momentum", 1.0), ("adjust_lr_fn", "bogus")],
    ),
    Case(
        "muon",
        D.Muon,
        [
            dict(convention="optax", lr=0.02),
            dict(convention="optax", lr=0.02, nesterov=False, weight_decay=0.1, momentum=0.9),
            dict(
                convention="optax",
                lr=0.01,
                adjust_lr_fn="match_rms_adamw",
                rms_rate=0.3,
                ns_steps=4,
                eps=1e-6,
                adam_eps=1e-6,
                adam_betas=(0.8, 0.95),
                adam_weight_decay=0.05,
                adam_lr_ratio=0.5,
            ),
        ],
        optax_reference(lambda k: _optax_muon(k)),
        tol64=1e-12,
        package="optax",
        tag="optax",
    ),
    Case(
        "muon",
        D.Muon,
        [
            dict(convention="keras", lr=0.02),
            dict(
                convention="keras",
                lr=0.01,
                nesterov=False,
                momentum=0.9,
                adjust_lr_fn="none",
                adam_betas=(0.8, 0.95),
                adam_weight_decay=0.05,
            ),
        ],
        keras_reference(lambda k: _keras_muon(k)),
        # Keras takes the norm of X₀ in float32 (keras.ops.norm casts float64 down), summed
        # in XLA's order: the float32 rounding differs from descend's now and then
        tol64=1e-7,
        package="keras",
        tag="keras",
    ),
    Case(
        "soap",
        D.SOAP,
        [
            dict(),
            dict(lr=0.01, betas=(0.9, 0.99), shampoo_beta=0.9, precondition_frequency=3),
            dict(lr=0.01, precondition_1d=True, normalize_gradient=True, maximize=True),
            dict(lr=0.01, max_precondition_dim=4, merge_dims=True, weight_decay=0.0),
            dict(lr=0.01, max_precondition_dim=6, correct_bias=False, eps=1e-6),
        ],
        torch_reference("pytorch_optimizer.SOAP"),
        package="pytorch-optimizer",
        bad=[
            _BAD_BETAS,
            ("shampoo_beta", 1.5),
            ("precondition_frequency", 0),
            ("data_format", "nhwc"),
        ],
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
    Case(
        "prodigy",
        D.Prodigy,
        [
            dict(),
            dict(lr=0.5, d_coef=2.0),
            dict(weight_decay=0.1),
            dict(weight_decay=0.1, decouple=False),
            dict(use_bias_correction=True, safeguard_warmup=True, growth_rate=1.1),
            dict(betas=(0.0, 0.99), eps=1e-6),
            dict(beta3=0.9, d0=1e-4, slice_p=3),
        ],
        torch_reference("prodigyopt.Prodigy", _torch_keywords),
        package="prodigyopt",
        bad=[("d0", 0.0), ("growth_rate", 0.5), ("slice_p", 0), ("beta3", 1.0), ("eps", 0.0)],
    ),
    Case(
        "lamb",
        D.LAMB,
        [
            dict(lr=0.01),
            dict(lr=0.03, betas=(0.8, 0.99), weight_decay=0.1),
            dict(lr=0.02, eps=1e-3, weight_decay=0.05, convention="optax"),
        ],
        optax_reference(_optax_lamb),
        tol64=1e-12,
        package="optax",
        bad=[_BAD_BETAS, ("weight_decay_mode", "lars"), ("trust_ratio", 1)],
    ),
    Case(
        "lamb",
        D.LAMB,
        # Keras decays θ before the step: the trust ratio reads the decayed ‖θ‖
        [dict(convention="keras", lr=0.02), dict(convention="keras", lr=0.02, weight_decay=0.05)],
        keras_reference(lambda k: _keras_lamb(k)),
        tol64=1e-12,
        package="keras",
        tag="keras",
    ),
    Case(
        "lars",
        D.LARS,
        [
            dict(lr=0.3),
            dict(lr=0.5, weight_decay=1e-2, trust_coefficient=1e-2, eps=1e-8, momentum=0.8),
            dict(lr=0.2, weight_decay=1e-2, nesterov=True, convention="optax"),
        ],
        optax_reference(_optax_lars),
        tol64=1e-12,
        package="optax",
        bad=[("trust_coefficient", 0.0), ("momentum", 1.0), ("eps", -1.0)],
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


class _TorchMuonWithAdamW:
    """torch's pairing for Muon (its documentation's example): ``torch.optim.Muon`` for the
    matrices and ``torch.optim.AdamW`` for every other parameter, with lr γ·``adam_lr_ratio``.
    torch.optim.Muon has no ``maximize``: maximising f is minimising −f, so the gradients are
    negated before both step."""

    def __init__(self, params, maximize=False, **k):
        adam = {
            "lr": k.get("lr", 1e-3) * k.pop("adam_lr_ratio", 1.0),
            "betas": k.pop("adam_betas", (0.9, 0.999)),
            "eps": k.pop("adam_eps", 1e-8),
            "weight_decay": k.pop("adam_weight_decay", 1e-2),
        }
        self.params, self.maximize = list(params), maximize
        matrices = [p for p in self.params if p.dim() == 2]
        others = [p for p in self.params if p.dim() != 2]
        self.opts = [torch.optim.Muon(matrices, **k), torch.optim.AdamW(others, **adam)]

    def step(self) -> None:
        if self.maximize:
            for p in self.params:
                p.grad = -p.grad
        for opt in self.opts:
            opt.step()


def _optax_muon(k: dict):
    from optax import contrib

    rms = k.get("adjust_lr_fn") == "match_rms_adamw"
    b1, b2 = k.get("adam_betas", (0.9, 0.999))
    lr = k["lr"]
    return contrib.muon(
        lr,
        ns_coeffs=k.get("ns_coefficients", (3.4445, -4.7750, 2.0315)),
        ns_steps=k.get("ns_steps", 5),
        beta=k.get("momentum", 0.95),
        eps=k.get("eps", 1e-8),  # optax's one ε, of Newton–Schulz and of the AdamW part
        weight_decay=k.get("weight_decay", 0.0),
        nesterov=k.get("nesterov", True),
        adam_b1=b1,
        adam_b2=b2,
        adam_weight_decay=k.get("adam_weight_decay", 0.0),
        adam_learning_rate=lr * k.get("adam_lr_ratio", 1.0),
        consistent_rms=k.get("rms_rate", 0.2) if rms else None,
    )


def _keras_muon(k: dict):
    import keras

    b1, b2 = k.get("adam_betas", (0.9, 0.999))
    return keras.optimizers.Muon(
        learning_rate=k["lr"],
        momentum=k.get("momentum", 0.95),
        nesterov=k.get("nesterov", True),
        weight_decay=k.get("weight_decay", 4e-3),
        adam_weight_decay=k.get("adam_weight_decay", 4e-3),
        adam_beta_1=b1,
        adam_beta_2=b2,
        epsilon=k.get("adam_eps", 1e-7),
        rms_rate=None if k.get("adjust_lr_fn") == "none" else k.get("rms_rate", 0.2),
    )


def _keras_lion(k: dict):
    import keras

    b1, b2 = k.get("betas", (0.9, 0.99))
    wd = k.get("weight_decay") or None
    return keras.optimizers.Lion(k.get("lr", 1e-3), beta_1=b1, beta_2=b2, weight_decay=wd)


# -- i14ma: Schedule-Free AdamW / SGD, AdEMAMix, ADOPT ----------------------------------------
class _Reference:
    """A reference optimizer stepped on what descend's wrap feeds its core: −g under
    ``maximize``, then + λθ under ``l2`` (for references that have neither switch)."""

    def __init__(self, opt, params: list, maximize: bool = False, l2: float = 0.0):
        self.opt, self.params, self.maximize, self.l2 = opt, params, maximize, l2

    def step(self) -> None:
        for p in self.params:
            g = -p.grad if self.maximize else p.grad
            p.grad = g + self.l2 * p.detach() if self.l2 else g
        self.opt.step()


def _schedule_free(name: str):
    """``schedulefree.<name>`` (a reference class) in train mode, descend's keywords mapped:
    ``decoupled`` decay is the reference's, ``l2`` is fed to it through the gradient."""

    def make(params: list, **kwargs) -> _Reference:
        import contextlib
        import io

        import schedulefree

        maximize = kwargs.pop("maximize", False)
        l2 = kwargs.pop("weight_decay", 0.0) if kwargs.get("weight_decay_mode") == "l2" else 0.0
        kwargs.pop("weight_decay_mode", None)
        kwargs.pop("convention", None)
        opt = getattr(schedulefree, name)(params, **kwargs)
        with contextlib.redirect_stdout(io.StringIO()):  # AdamW's prints "Switching to train…"
            opt.train()
        return _Reference(opt, params, maximize, l2)

    return make


def _optax_schedule_free(adamw: bool):
    return lambda kwargs: _optax_schedule_free_tx(kwargs, adamw)


def _optax_schedule_free_tx(kwargs: dict, adamw: bool):
    """optax's ``schedule_free_adamw`` / ``schedule_free_sgd``, built as their aliases are but
    with the warm-up in float64 (optax's ``warmup_constant_schedule`` divides an int32 count
    and computes in float32 even under x64: a relative error ~1e-8 in γ)."""
    import jax.numpy as jnp
    import optax

    cls = D.ScheduleFreeAdamW if adamw else D.ScheduleFreeSGD
    kw = {**cls.conventions[kwargs.get("convention", "torch")], **kwargs}
    lr, warmup, wd = kw["lr"], kw["warmup_steps"], kw["weight_decay"]

    def schedule(count):
        c = jnp.asarray(count, jnp.float64)
        return lr * jnp.minimum(c / warmup, 1.0) if warmup else jnp.asarray(lr, jnp.float64)

    if adamw:
        b1, b2 = kw["betas"]
        base = optax.chain(
            optax.scale_by_rms(decay=b2, eps=kw["eps"], eps_in_sqrt=False, bias_correction=True),
            optax.add_decayed_weights(wd),
            optax.scale_by_learning_rate(schedule),
        )
    else:
        b1 = kw["momentum"]
        base = optax.chain(optax.add_decayed_weights(wd), optax.sgd(schedule))
    tx = optax.contrib.schedule_free(
        base, learning_rate=schedule, b1=b1, weight_lr_power=kw["weight_lr_power"]
    )
    return optax.chain(optax.scale(-1.0), tx) if kw.get("maximize") else tx


def _optax_ademamix(kwargs: dict):
    """optax.contrib.ademamix with the paper's warm-ups written as optax schedules (the
    authors' ``alpha_scheduler`` and ``beta3_scheduler``, read at optax's step count)."""
    import jax.numpy as jnp
    import optax

    kwargs = {**D.AdEMAMix.conventions[kwargs.get("convention", "torch")], **kwargs}
    (b1, b2), b3 = kwargs["betas"], kwargs["beta3"]
    alpha, t_alpha, t_b3 = kwargs["alpha"], kwargs["alpha_warmup"], kwargs["beta3_warmup"]

    def alpha_schedule(step):
        s = jnp.asarray(step, jnp.float64)
        return jnp.where(s < t_alpha, (s / t_alpha) * alpha, alpha)

    def beta3_schedule(step):
        s = jnp.asarray(step, jnp.float64)
        a = s / t_b3
        h = (1 - a) * (jnp.log(0.5) / jnp.log(b1) - 1) + a * (jnp.log(0.5) / jnp.log(b3) - 1)
        return jnp.where(s < t_b3, jnp.power(0.5, 1 / (h + 1)), b3)

    tx = optax.contrib.ademamix(
        kwargs["lr"],
        b1=b1,
        b2=b2,
        b3=beta3_schedule if t_b3 else b3,
        alpha=alpha_schedule if t_alpha else alpha,
        eps=kwargs["eps"],
        weight_decay=kwargs["weight_decay"],
    )
    return optax.chain(optax.scale(-1.0), tx) if kwargs.get("maximize") else tx


def _optax_adopt(kwargs: dict):
    import optax

    kwargs = {**D.ADOPT.conventions[kwargs.get("convention", "torch")], **kwargs}
    b1, b2 = kwargs["betas"]
    tx = optax.contrib.adopt(
        kwargs["lr"],
        b1=b1,
        b2=b2,
        eps=kwargs["eps"],
        nesterov=kwargs["nesterov"],
        use_clipping=kwargs["use_clipping"],
    )
    return optax.chain(optax.scale(-1.0), tx) if kwargs.get("maximize") else tx


def _torch_adopt(kwargs: dict) -> dict:
    kw = {k: v for k, v in kwargs.items() if k not in ("convention", "decoupled_weight_decay")}
    return dict(kw, decouple=bool(kwargs.get("decoupled_weight_decay", False)))


CASES += [
    Case(
        "schedule-free-adamw",
        D.ScheduleFreeAdamW,
        [
            dict(lr=0.01),
            dict(
                lr=0.02,
                betas=(0.8, 0.99),
                weight_decay=0.1,
                warmup_steps=10,
                r=1.0,
                weight_lr_power=1.0,
            ),
            dict(lr=0.01, weight_decay=0.1, decay_at_z=True, eps=1e-6, maximize=True),
            dict(lr=0.01, weight_decay=0.1, weight_decay_mode="l2", warmup_steps=5),
        ],
        torch_reference(_schedule_free("AdamWScheduleFreeReference")),
        package="schedulefree",
        bad=[
            _BAD_BETAS,
            ("warmup_steps", -1),
            ("weight_lr_power", -1.0),
            ("weight_decay_mode", "independent"),
        ],
    ),
    Case(
        "schedule-free-adamw",
        D.ScheduleFreeAdamW,
        [
            dict(lr=0.01, convention="optax"),
            dict(
                lr=0.02,
                betas=(0.8, 0.99),
                weight_decay=0.1,
                weight_lr_power=1.0,
                eps=1e-6,
                maximize=True,
                warmup_steps=10,
                convention="optax",
            ),
        ],
        optax_reference(_optax_schedule_free(adamw=True)),
        tol64=1e-12,
        package="optax",
        tag="optax",
    ),
    Case(
        "schedule-free-sgd",
        D.ScheduleFreeSGD,
        [
            dict(lr=0.05),
            dict(
                lr=0.05, momentum=0.8, weight_decay=0.1, warmup_steps=10, r=0.5, weight_lr_power=1.0
            ),
            dict(lr=0.02, maximize=True),
        ],
        torch_reference(_schedule_free("SGDScheduleFreeReference")),
        package="schedulefree",
        bad=[
            ("momentum", 0.0),
            ("momentum", 1.0),
            ("warmup_steps", 2.5),
            ("weight_decay_mode", "decoupled"),
        ],
    ),
    Case(
        "schedule-free-sgd",
        D.ScheduleFreeSGD,
        [dict(lr=0.05, momentum=0.8, weight_decay=0.1, warmup_steps=10, convention="optax")],
        optax_reference(_optax_schedule_free(adamw=False)),
        tol64=1e-12,
        package="optax",
        tag="optax",
    ),
    Case(
        "ademamix",
        D.AdEMAMix,
        [
            dict(lr=0.01, convention="optax"),
            dict(
                lr=0.01,
                betas=(0.8, 0.99),
                beta3=0.999,
                alpha=8.0,
                alpha_warmup=30,
                beta3_warmup=40,
                weight_decay=0.1,
            ),
            dict(lr=0.01, alpha_warmup=150, beta3_warmup=150, eps=1e-6, maximize=True),
        ],
        optax_reference(_optax_ademamix),
        tol64=1e-12,
        package="optax",
        bad=[("betas", (0.9, 0.999, 0.9999)), ("beta3", 1.0), ("alpha", -1.0), ("alpha_warmup", 0)],
    ),
    Case(
        "adopt",
        D.ADOPT,
        [
            dict(lr=0.01),
            dict(lr=0.01, use_clipping=False, betas=(0.8, 0.99), eps=1e-4),
            dict(lr=0.01, nesterov=True, maximize=True, convention="optax"),
            dict(lr=0.01, clip_lambda=lambda s: s**0.25),
            dict(lr=0.01, nesterov=True, use_clipping=False),
        ],
        optax_reference(_optax_adopt),
        tol64=1e-12,
        package="optax",
        bad=[
            ("clip_lambda", -0.25),
            ("clip_lambda", "s**0.25"),
            ("use_clipping", 1),
            ("eps", -1.0),
            _BAD_BETAS,
        ],
    ),
]


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
