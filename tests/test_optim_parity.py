"""descend.optim against torch.optim, configuration by configuration.

A table of cases (in the spirit of torch's ``OptimizerInfo``) drives every test: each case
names the torch class, the descend class, the keywords both receive and the overrides of a
second parameter group. Both optimizers run 100 steps on the same non-trivial loss (its
gradient changes every step) over parameters of several shapes split into two groups; the
trajectories must agree to fp64 max |a − b| ≤ 1e-10 and fp32 ‖a − b‖/‖b‖ ≤ 1e-6.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

import descend.optim as D
from descend.optim.fast import last_path

STEPS = 100
SHAPES = [(5,), (3, 4), (2, 3, 2), ()]


def make_params(dtype: torch.dtype, seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Parameters of several shapes (incl. a scalar) and the targets c of the loss."""
    g = torch.Generator().manual_seed(seed)
    targets = [torch.randn(s, generator=g, dtype=torch.float64) for s in SHAPES]
    params = [
        (c + 0.8 * torch.randn(s, generator=g, dtype=torch.float64)).to(dtype)
        for c, s in zip(targets, SHAPES)
    ]
    return [p.requires_grad_() for p in params], [c.to(dtype) for c in targets]


def loss_fn(params: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
    """Σ ¼(p − c)⁴ + ½(p − c)² + 0.3·p·sin(3p): bounded below, curvature that varies."""
    total = 0
    for p, c in zip(params, targets):
        d = p - c
        total = total + (0.25 * d**4 + 0.5 * d**2 + 0.3 * p * torch.sin(3 * p)).sum()
    return total


def set_grads(params: list[torch.Tensor], targets: list[torch.Tensor], sign: float = 1.0) -> None:
    """p.grad = sign·∇loss_fn, written out (faster than autograd; checked against it below)."""
    with torch.no_grad():
        for p, c in zip(params, targets):
            d = p - c
            p.grad = sign * (d**3 + d + 0.3 * torch.sin(3 * p) + 0.9 * p * torch.cos(3 * p))


@dataclass(frozen=True)
class Case:
    id: str
    torch_cls: type
    ours: type
    kwargs: dict
    group2: dict = field(default_factory=dict)

    @property
    def maximize(self) -> bool:
        return bool(self.kwargs.get("maximize") or self.group2.get("maximize"))


def _sgd(id_, kw, g2=None):
    return Case(id_, torch.optim.SGD, D.SGD, dict(lr=0.01, **kw), g2 or {"lr": 0.004})


def _adagrad(id_, kw, g2=None):
    return Case(id_, torch.optim.Adagrad, D.Adagrad, dict(lr=0.05, **kw), g2 or {"lr": 0.02})


def _rms(id_, kw, g2=None):
    return Case(id_, torch.optim.RMSprop, D.RMSprop, dict(lr=0.003, **kw), g2 or {"lr": 0.001})


def _adam(id_, kw, g2=None):
    g2 = g2 or {"lr": 0.004, "betas": (0.8, 0.99)}
    return Case(id_, torch.optim.Adam, D.Adam, dict(lr=0.01, **kw), g2)


def _adamw(id_, kw, g2=None):
    g2 = g2 or {"lr": 0.004, "weight_decay": 0.3}
    return Case(id_, torch.optim.AdamW, D.AdamW, dict(lr=0.01, **kw), g2)


def _nadam(id_, kw, g2=None):
    g2 = g2 or {"lr": 0.004, "betas": (0.85, 0.995), "momentum_decay": 0.01}
    return Case(id_, torch.optim.NAdam, D.NAdam, dict(lr=0.01, **kw), g2)


CASES = [
    # SGD ± momentum ± dampening ± nesterov ± weight decay ± maximize
    _sgd("sgd", {}),
    _sgd("sgd-wd", {"weight_decay": 0.1}, {"lr": 0.004, "weight_decay": 0.0}),
    _sgd("sgd-maximize", {"maximize": True}),
    _sgd("momentum", {"momentum": 0.9}, {"lr": 0.004, "momentum": 0.5}),
    _sgd("momentum-dampening", {"momentum": 0.9, "dampening": 0.3}, {"dampening": 0.7}),
    _sgd("momentum-wd", {"momentum": 0.8, "weight_decay": 0.05}),
    _sgd("momentum-wd-maximize", {"momentum": 0.8, "weight_decay": 0.05, "maximize": True}),
    _sgd("nesterov", {"momentum": 0.9, "nesterov": True}, {"lr": 0.004, "momentum": 0.6}),
    _sgd("nesterov-wd", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    _sgd("nesterov-maximize", {"momentum": 0.7, "nesterov": True, "maximize": True}),
    _sgd(
        "dampening-wd-maximize",
        {"momentum": 0.5, "dampening": 0.5, "weight_decay": 0.02, "maximize": True},
    ),
    # Adagrad ± lr_decay ± initial accumulator
    _adagrad("adagrad", {}),
    _adagrad("adagrad-lr_decay", {"lr_decay": 0.05}, {"lr": 0.02, "lr_decay": 0.0}),
    _adagrad("adagrad-init", {"initial_accumulator_value": 0.5}),
    _adagrad(
        "adagrad-all",
        {"lr_decay": 0.01, "initial_accumulator_value": 0.2, "weight_decay": 0.1, "eps": 1e-6},
        {"lr_decay": 0.1},
    ),
    _adagrad("adagrad-maximize", {"maximize": True, "weight_decay": 0.1}),
    # RMSprop ± centered ± momentum
    _rms("rmsprop", {}),
    _rms("rmsprop-centered", {"centered": True}, {"lr": 0.001, "alpha": 0.9}),
    _rms("rmsprop-momentum", {"momentum": 0.9}, {"lr": 0.001, "momentum": 0.5}),
    _rms("rmsprop-centered-momentum", {"centered": True, "momentum": 0.7}),
    _rms("rmsprop-wd-maximize", {"weight_decay": 0.1, "maximize": True, "eps": 1e-4}),
    _rms("rmsprop-all", {"centered": True, "momentum": 0.5, "weight_decay": 0.05, "alpha": 0.95}),
    # Adam ± amsgrad ± weight decay
    _adam("adam", {}),
    _adam("adam-amsgrad", {"amsgrad": True}),
    _adam("adam-wd", {"weight_decay": 0.1}, {"lr": 0.004, "weight_decay": 0.0}),
    _adam("adam-amsgrad-wd", {"amsgrad": True, "weight_decay": 0.1}),
    _adam("adam-decoupled", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
    _adam("adam-maximize", {"maximize": True, "eps": 1e-3}),
    # AdamW
    _adamw("adamw", {}),
    _adamw("adamw-amsgrad", {"amsgrad": True, "weight_decay": 0.05}),
    _adamw("adamw-maximize", {"maximize": True, "betas": (0.5, 0.9)}),
    # NAdam ± decoupled decay
    _nadam("nadam", {}),
    _nadam("nadam-wd", {"weight_decay": 0.1}),
    _nadam("nadam-decoupled", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
    _nadam("nadam-maximize", {"maximize": True, "momentum_decay": 0.02}),
]


# descend's paths: the C++ kernels (fused=True), the chain of transforms (fused=False), and the
# chain with a trace hook registered (which records every intermediate). Each test asserts
# which one ran (descend.optim.fast.last_path), so a machine with a compiler cannot test only
# the kernels, nor one without a compiler only the chain.
PATHS = ["fused", "chain", "traced"]
EXPECTED_PATH = {
    "fused": "fast",
    "chain": "default: fused=False",
    "traced": "default: a trace hook is registered",
}


def run(
    cls: type, case: Case, dtype: torch.dtype, steps: int = STEPS, path: str | None = None
) -> list[torch.Tensor]:
    return run_with_state(cls, case, dtype, steps, path=path)[0]


def run_with_state(
    cls: type, case: Case, dtype: torch.dtype, steps: int = STEPS, path: str | None = None
) -> tuple[list[torch.Tensor], list[dict]]:
    """The parameters after ``steps`` steps and each parameter's optimizer state. ``path``
    (descend only; None for torch.optim) is one of PATHS, asserted after the run."""
    params, targets = make_params(dtype)
    groups = [
        {"params": params[:2]},
        {"params": params[2:], **case.group2},
    ]
    extra = {} if path is None else {"fused": path == "fused" if path != "traced" else None}
    opt = cls(groups, **case.kwargs, **extra)
    traced = path == "traced"
    if traced:
        calls = []
        opt.register_trace_hook(lambda o, index, record: calls.append(index))
    sign = -1.0 if case.maximize else 1.0  # maximise −loss: the same descent, but ascending
    for _ in range(steps):
        set_grads(params, targets, sign)
        opt.step()
    if traced:
        assert calls == [0, 1] * steps
    if path is not None:
        assert last_path(opt) == {0: EXPECTED_PATH[path], 1: EXPECTED_PATH[path]}
    return [p.detach() for p in params], [opt.state[p] for p in params]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖."""
    return (torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b)).item()


def _concat(xs: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([x.reshape(-1) for x in xs])


def test_the_written_out_gradient_is_the_loss_gradient() -> None:
    params, targets = make_params(torch.float64)
    loss_fn(params, targets).backward()
    auto = [p.grad.clone() for p in params]
    set_grads(params, targets)
    for a, b in zip(auto, params):
        torch.testing.assert_close(b.grad, a, rtol=1e-12, atol=1e-12)


def test_the_table_covers_every_optimizer() -> None:
    covered = {c.ours for c in CASES}
    assert covered == {D.SGD, D.Adagrad, D.RMSprop, D.Adam, D.AdamW, D.NAdam}
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_fp64_parity_with_torch(case: Case, path: str) -> None:
    ours, our_states = run_with_state(case.ours, case, torch.float64, path=path)
    ref, ref_states = run_with_state(case.torch_cls, case, torch.float64)
    start, _ = make_params(torch.float64)
    # the run really moved (otherwise equality would prove nothing)
    assert (_concat(ref) - _concat([p.detach() for p in start])).abs().max() > 1e-2
    for a, b in zip(ours, ref):
        assert a.shape == b.shape and a.dtype == torch.float64
        assert (a - b).abs().max().item() <= 1e-10, case.id
    # the state holds the same quantities under torch's names (state dicts are interchangeable)
    for mine, theirs in zip(our_states, ref_states):
        for key, value in theirs.items():
            if isinstance(value, torch.Tensor):
                assert key in mine, key
                assert (mine[key].double() - value.double()).abs().max().item() <= 1e-10, key


@pytest.mark.parametrize("path", ["fused", "chain"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_fp32_parity_with_torch(case: Case, path: str) -> None:
    ours = _concat(run(case.ours, case, torch.float32, path=path))
    ref = _concat(run(case.torch_cls, case, torch.float32))
    assert ours.dtype == torch.float32
    assert _rel(ours, ref) <= 1e-6


BF16_CASES = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "nadam"]


@pytest.mark.parametrize("case_id", BF16_CASES)
def test_bf16_params_run_and_stay_near_the_fp32_reference(case_id: str) -> None:
    """bf16 keeps 8 bits of mantissa, so steps smaller than half an ulp of θ are lost and the
    trajectory drifts from fp32's by a few percent. descend in bf16 must stay that close to
    the fp32 run (6 %), and no further from it than torch.optim in bf16 is (+0.5 %)."""
    case = next(c for c in CASES if c.id == case_id)
    params, targets = make_params(torch.bfloat16)
    opt = case.ours([{"params": params[:2]}, {"params": params[2:], **case.group2}], **case.kwargs)
    for _ in range(30):
        set_grads(params, targets)
        opt.step()
    assert all(p.dtype == torch.bfloat16 for p in params)
    tensors = [v for st in opt.state.values() for v in st.values() if isinstance(v, torch.Tensor)]
    assert all(v.dtype == torch.bfloat16 for v in tensors if v.dim() > 0)
    ours = _concat([p.detach() for p in params]).float()
    torch_bf16 = _concat(run(case.torch_cls, case, torch.bfloat16, steps=30)).float()
    fp32 = _concat(run(case.torch_cls, case, torch.float32, steps=30))
    start = _concat(make_params(torch.float32)[0]).detach()
    assert torch.isfinite(ours).all()
    err, err_torch = (_rel(x, fp32) for x in (ours, torch_bf16))
    assert err < 0.06
    assert err <= err_torch + 5e-3
    assert torch.linalg.vector_norm(ours - fp32) < 0.5 * torch.linalg.vector_norm(fp32 - start)


@pytest.mark.parametrize("cls", [D.SGD, D.Adagrad, D.RMSprop, D.Adam, D.AdamW, D.NAdam])
def test_sparse_gradients_raise_a_clear_error(cls: type) -> None:
    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = cls(emb.parameters(), lr=0.1)
    before = emb.weight.detach().clone()
    emb(torch.tensor([1, 2])).sum().backward()
    assert emb.weight.grad.is_sparse
    with pytest.raises(RuntimeError, match="sparse gradients"):
        opt.step()
    assert torch.equal(emb.weight.detach(), before)


@pytest.mark.parametrize("clip", ["norm", "value"])
@pytest.mark.parametrize("cls, torch_cls", [(D.Adam, torch.optim.Adam), (D.SGD, torch.optim.SGD)])
@pytest.mark.parametrize("path", PATHS)
def test_clipping_matches_torch_nn_utils(cls: type, torch_cls: type, clip: str, path: str) -> None:
    """max_grad_norm = clip_grad_norm_ and clip_value = clip_grad_value_ before torch's step
    (one param group, so the global norm is over the same tensors)."""
    kw = dict(lr=0.01, momentum=0.9) if cls is D.SGD else dict(lr=0.01)
    ours, targets = make_params(torch.float64)
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    clipping = {"max_grad_norm": 0.5} if clip == "norm" else {"clip_value": 0.2}
    fused = {"fused": True, "chain": False, "traced": None}[path]
    opt = cls(ours, **kw, **clipping, fused=fused)
    ref = torch_cls(theirs, **kw)
    if path == "traced":
        opt.register_trace_hook(lambda *_: None)
    clipped = 0
    for _ in range(STEPS):
        set_grads(ours, targets)
        opt.step()
        set_grads(theirs, targets)
        if clip == "norm":
            clipped += float(torch.nn.utils.clip_grad_norm_(theirs, 0.5)) > 0.5
        else:
            clipped += any(bool((p.grad.abs() > 0.2).any()) for p in theirs)
            torch.nn.utils.clip_grad_value_(theirs, 0.2)
        ref.step()
    assert clipped > 10  # the clipping was active on many steps
    assert last_path(opt) == {0: EXPECTED_PATH[path]}
    for a, b in zip(ours, theirs):
        assert (a.detach() - b.detach()).abs().max().item() <= 1e-10
