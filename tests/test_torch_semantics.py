"""torch.optim's behaviour where descend used to differ (issue 12), each against torch itself.

Copies and pickles step like the original; ``state_dict()`` keeps its keys after a load or a
copy; an old checkpoint's Python-number ``step`` loads; a one-element lr tensor of any shape
is a number; complex parameters are their ``view_as_real`` (against torch.optim in complex128,
both paths); ``AdamW`` loading an Adam state dict stays decoupled; a NaN/Inf global gradient
norm reaches the gradients as ``clip_grad_norm_``; a group spanning two devices steps without
a cross-device ``torch.stack``; ``Newton`` solves one system over all param groups; ``debias``
is validated. Every optimizer case runs on both paths (``fused=True`` / ``fused=False``) and
asserts which one ran.
"""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

import descend.optim as D
from conftest import require_kernels
from descend.optim.fast import last_path

NAMES = ("SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "NAdam")
PATHS = {"fused": True, "chain": False}
CONFIGS = {  # a configuration that exercises each optimizer's state, torch's keywords only
    "SGD": dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1),
    "Adagrad": dict(lr=0.1, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.1),
    "RMSprop": dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.1),
    "Adam": dict(lr=0.01, amsgrad=True, weight_decay=0.1),
    "AdamW": dict(lr=0.01, weight_decay=0.1),
    "NAdam": dict(lr=0.01, weight_decay=0.1, momentum_decay=6e-3),
}


@pytest.fixture(autouse=True)
def one_thread():
    """1 thread, as in test_fast_path: these tensors are tiny, and 2-thread OpenMP regions
    stall for ~10 ms when another process is busy (20× slower on a loaded 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(params=list(PATHS))
def fused(request) -> bool:
    value = PATHS[request.param]
    if value:
        require_kernels()  # skips locally, fails under CI=true (tests/conftest.py)
    return value


def assert_path(opt, fused: bool) -> None:
    paths = last_path(opt)
    assert paths, "no group was stepped"
    expected = "fast" if fused else "default: fused=False"
    assert set(paths.values()) == {expected}, paths


def make_params(dtype=torch.float64, seed=0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(5, 3, generator=g, dtype=dtype).requires_grad_(),
        torch.randn(4, generator=g, dtype=dtype).requires_grad_(),
    ]


def grads_for(step: int, params) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + step)
    return [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]


def run(opt, params, steps: int, start: int = 0) -> None:
    for t in range(start, start + steps):
        for p, g in zip(params, grads_for(t, params)):
            p.grad = g
        opt.step()


def clone_params(params) -> list[torch.Tensor]:
    return [p.detach().clone().requires_grad_() for p in params]


def same(a, b) -> None:
    """Nested equality of state dicts: tensors bitwise (dtype included), the rest with ==."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype
        assert torch.equal(a, b), (a, b)
    elif isinstance(a, dict):
        assert set(a) == set(b), set(a) ^ set(b)
        for k in a:
            same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            same(x, y)
    else:
        assert a == b, (a, b)


# -- copies, pickles and state dicts -------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_copies_and_pickles_step_like_the_original(name, how, fused):
    params = make_params()
    opt = getattr(D, name)(params, fused=fused, **CONFIGS[name])
    run(opt, params, 3)
    if how == "deepcopy":
        params2, opt2 = copy.deepcopy((params, opt))
    else:
        params2, opt2 = pickle.loads(pickle.dumps((params, opt)))
    same(opt2.state_dict(), opt.state_dict())
    run(opt, params, 4, start=3)
    run(opt2, params2, 4, start=3)
    assert_path(opt2, fused)
    for a, b in zip(params, params2):
        assert torch.equal(a, b)
    same(opt2.state_dict(), opt.state_dict())


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_keys_survive_load_and_copy(name, fused):
    params = make_params()
    opt = getattr(D, name)(params, fused=fused, **CONFIGS[name])
    run(opt, params, 2)
    sd = opt.state_dict()
    loaded = getattr(D, name)(clone_params(params), fused=fused, **CONFIGS[name])
    loaded.load_state_dict(copy.deepcopy(sd))
    for other in (loaded, copy.deepcopy(opt), copy.deepcopy(loaded)):
        assert other.state_dict()["param_groups"] == sd["param_groups"]
        assert "differentiable" not in other.defaults
    # torch's own rule, for reference: the keys of a torch optimizer's groups never change
    t = torch.optim.Adam(clone_params(params))
    keys = set(t.state_dict()["param_groups"][0])
    t.load_state_dict(t.state_dict())
    assert set(t.state_dict()["param_groups"][0]) == keys


@pytest.mark.parametrize("name", NAMES)
def test_old_checkpoint_with_a_number_step(name, fused):
    """torch < 1.12 saved ``step`` as a Python number; loading it resumes the same run."""
    params = make_params()
    opt = getattr(D, name)(params, fused=fused, **CONFIGS[name])
    run(opt, params, 3)
    sd = copy.deepcopy(opt.state_dict())
    for st in sd["state"].values():
        if "step" in st:  # SGD's, as torch's, has none where nothing reads it
            st["step"] = st["step"].item()
    params2 = clone_params(params)
    opt2 = getattr(D, name)(params2, fused=fused, **CONFIGS[name])
    opt2.load_state_dict(sd)
    assert all(isinstance(st["step"], torch.Tensor) for st in opt2.state.values() if "step" in st)
    run(opt, params, 3, start=3)
    run(opt2, params2, 3, start=3)
    assert_path(opt2, fused)
    for a, b in zip(params, params2):
        assert torch.equal(a, b)


def test_adamw_keeps_decoupled_decay_when_loading_an_adam_state_dict(fused):
    """As torch: an AdamW that loads an Adam (L2) state dict is still AdamW, and steps as
    torch's AdamW that loaded torch's Adam state dict."""
    params, ref = make_params(), make_params()
    adam = D.Adam(clone_params(params), weight_decay=0.1, fused=fused)
    run(adam, adam.param_groups[0]["params"], 2)
    adamw = D.AdamW(params, weight_decay=0.1, fused=fused)
    adamw.load_state_dict(adam.state_dict())
    assert adamw.param_groups[0]["weight_decay_mode"] == "decoupled"
    t_adam = torch.optim.Adam(clone_params(ref), weight_decay=0.1)
    run(t_adam, t_adam.param_groups[0]["params"], 2)
    t_adamw = torch.optim.AdamW(ref, weight_decay=0.1)
    t_adamw.load_state_dict(t_adam.state_dict())
    run(adamw, params, 5, start=2)
    run(t_adamw, ref, 5, start=2)
    assert_path(adamw, fused)
    for a, b in zip(params, ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # and torch's Adam state dict (decoupled_weight_decay=False) into descend's AdamW
    adamw2 = D.AdamW(clone_params(params), weight_decay=0.1, fused=fused)
    adamw2.load_state_dict(t_adam.state_dict())
    assert adamw2.param_groups[0]["weight_decay_mode"] == "decoupled"
    assert adamw2.param_groups[0]["decoupled_weight_decay"] is True


# -- tensor learning rates -----------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(), (1,), (1, 1), (1, 1, 1)])
def test_one_element_tensor_lr_of_any_shape(name, shape, fused):
    """torch reads a one-element lr tensor as a number, whatever its shape (here with more
    dimensions than the 1-D parameter): descend equals torch.optim given the same tensor."""
    kwargs = {k: v for k, v in CONFIGS[name].items() if k != "lr"}
    lr = torch.tensor(0.01, dtype=torch.float64).reshape(shape)
    params, ref = make_params(), make_params()
    opt = getattr(D, name)(params, lr=lr, fused=fused, **kwargs)
    t = getattr(torch.optim, name)(ref, lr=lr.clone(), **kwargs)
    run(opt, params, 5)
    run(t, ref, 5)
    assert_path(opt, fused)
    for a, b in zip(params, ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


# -- complex parameters --------------------------------------------------------------------
COMPLEX_CONFIGS = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.1, maximize=True)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.1)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1, maximize=True)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1)),
    ("NAdam", dict(lr=0.01, weight_decay=0.1, momentum_decay=6e-3)),
    ("NAdam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
]


@pytest.mark.parametrize("name,kwargs", COMPLEX_CONFIGS)
def test_complex_parameters_as_torch(name, kwargs, fused):
    """A complex θ is its view_as_real (|g|² = re² + im², not g·g): complex128 parameters (a
    real one in the same group) against torch.optim after 20 steps, state included."""
    g = torch.Generator().manual_seed(3)
    start = [
        torch.randn(6, 4, generator=g, dtype=torch.complex128),
        torch.randn(5, generator=g, dtype=torch.complex128),
        torch.randn(3, generator=g, dtype=torch.float64),
    ]
    params = [x.clone().requires_grad_() for x in start]
    ref = [x.clone().requires_grad_() for x in start]
    opt = getattr(D, name)(params, fused=fused, **kwargs)
    t = getattr(torch.optim, name)(ref, **kwargs)
    for _ in range(20):
        gs = [torch.randn(x.shape, generator=g, dtype=x.dtype) for x in start]
        for p, q, x in zip(params, ref, gs):
            p.grad, q.grad = x.clone(), x.clone()
        opt.step()
        t.step()
    assert_path(opt, fused)
    for a, b in zip(params, ref):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    for a, b in zip(params, ref):
        sa, sb = opt.state[a], t.state[b]
        for key, value in sb.items():
            if isinstance(value, torch.Tensor):
                assert sa[key].dtype == value.dtype, key  # complex state, as torch's
                torch.testing.assert_close(sa[key], value, rtol=1e-12, atol=1e-12)


def test_complex_is_not_the_naive_product():
    """The case the issue found: without view_as_real, Adam's v holds g·g (complex), not
    |g|²; the result then differs from torch by far more than rounding."""
    p = torch.tensor([1 + 2j, -0.5 + 0.25j], dtype=torch.complex128, requires_grad=True)
    q = p.detach().clone().requires_grad_()
    opt, t = D.Adam([p], lr=0.1, fused=False), torch.optim.Adam([q], lr=0.1)
    for k in range(5):
        grad = torch.tensor([0.3 - 1j, 2j], dtype=torch.complex128) * (k + 1)
        p.grad, q.grad = grad.clone(), grad.clone()
        opt.step()
        t.step()
    sq = torch.view_as_real(opt.state[p]["exp_avg_sq"])
    assert (sq >= 0).all()  # |re|², |im|² per component: never negative
    torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)


# -- clipping with a NaN or Inf norm -------------------------------------------------------
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_clipping_a_nonfinite_norm_poisons_the_gradients(name, bad, fused):
    """max_grad_norm is torch's clip_grad_norm_ before the step: a NaN norm makes every
    gradient NaN, an Inf norm makes the factor 0 (finite entries 0, the Inf one NaN)."""
    start = [
        torch.tensor([1.0, bad, -2.0], dtype=torch.float64),
        torch.ones(2, dtype=torch.float64),
    ]
    params = [x.clone().requires_grad_() for x in start]
    ref = [x.clone().requires_grad_() for x in start]
    kwargs = dict(lr=0.1, momentum=0.9) if name == "SGD" else dict(lr=0.1)
    opt = getattr(D, name)(params, max_grad_norm=1.0, fused=fused, **kwargs)
    t = getattr(torch.optim, name)(ref, **kwargs)
    grads = [torch.tensor([0.5, bad, 1.0], dtype=torch.float64), torch.ones(2, dtype=torch.float64)]
    for p, q, x in zip(params, ref, grads):
        p.grad, q.grad = x.clone(), x.clone()
    torch.nn.utils.clip_grad_norm_(ref, 1.0)
    opt.step()
    t.step()
    assert_path(opt, fused)
    assert not torch.isfinite(params[0]).all()
    for a, b in zip(params, ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, equal_nan=True)


# -- a group on two devices ----------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_group_on_two_devices(name):
    """A group with a CPU and a "meta" parameter: the fast path declines it (saying why),
    the chain steps it, and the CPU parameter moves exactly as in a CPU-only group."""
    for fused in (None, False):
        cpu, meta = make_params()[0], torch.randn(3, device="meta", dtype=torch.float64)
        meta.requires_grad_()
        alone = cpu.detach().clone().requires_grad_()
        opt = getattr(D, name)([cpu, meta], fused=fused, **CONFIGS[name])
        ref = getattr(D, name)([alone], fused=False, **CONFIGS[name])
        for t in range(3):
            cpu.grad = grads_for(t, [cpu])[0]
            alone.grad = cpu.grad.clone()
            meta.grad = torch.ones(3, device="meta", dtype=torch.float64)
            opt.step()
            ref.step()
        assert torch.equal(cpu, alone)
        reason = "default: fused=False" if fused is False else "default: a parameter not on the CPU"
        assert last_path(opt)[0].startswith(reason)
        assert fused is False or "(meta;" in last_path(opt)[0]  # the reason names the device
    with pytest.raises(ValueError, match="meta"):
        getattr(D, name)([cpu, meta], fused=True)


@pytest.mark.parametrize("what", ["max_grad_norm", "nonfinite"])
def test_cross_device_reductions_gather_on_the_first_device(what):
    """Global clipping and the non-finite check reduce one value per tensor: like
    clip_grad_norm_, they move those values to the first tensor's device before stacking.
    A meta tensor has no data, so the step stops where the value is read, never at a
    ``torch.stack`` of tensors on two devices."""
    meta = torch.randn(3, device="meta", requires_grad=True)
    cpu = torch.randn(4, requires_grad=True)
    meta.grad, cpu.grad = torch.ones(3, device="meta"), torch.ones(4)
    kwargs = {"max_grad_norm": 1.0} if what == "max_grad_norm" else {"nonfinite": "skip"}
    opt = D.Adam([meta, cpu], fused=False, **kwargs)
    with pytest.raises((RuntimeError, NotImplementedError)) as err:
        opt.step()
    assert "expected device" not in str(err.value)
    assert "meta" in str(err.value)


# -- Newton with several groups --------------------------------------------------------------
def _coupled_quadratic():
    a = torch.tensor([[4.0, 1.0, 0.5], [1.0, 3.0, 1.0], [0.5, 1.0, 2.0]], dtype=torch.float64)
    b = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)

    def loss(x, y):
        z = torch.cat([x, y])
        return 0.5 * z @ a @ z - b @ z

    return a, b, loss


@pytest.mark.parametrize("hessian", ["full", "diagonal"])
def test_newton_solves_all_groups_jointly(hessian):
    """Two groups holding the blocks of one coupled quadratic: one step of the joint solve
    equals the single-group step (with the full Hessian: lands on the minimum A⁻¹b)."""
    a, b, loss = _coupled_quadratic()
    x, y = torch.zeros(2, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    x.requires_grad_(), y.requires_grad_()
    opt = D.Newton([{"params": [x]}, {"params": [y]}], hessian=hessian)
    opt.step(lambda: loss(x, y))
    xs, ys = torch.zeros(2, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    xs.requires_grad_(), ys.requires_grad_()
    D.Newton([xs, ys], hessian=hessian).step(lambda: loss(xs, ys))
    torch.testing.assert_close(torch.cat([x, y]), torch.cat([xs, ys]), rtol=0, atol=0)
    if hessian == "full":
        torch.testing.assert_close(torch.cat([x, y]).detach(), torch.linalg.solve(a, b))
    else:  # d = g / diag(H) at 0: g = −b
        torch.testing.assert_close(torch.cat([x, y]).detach(), b / a.diagonal())


def test_newton_groups_lr_and_shared_settings():
    a, b, loss = _coupled_quadratic()
    x, y = torch.zeros(2, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    x.requires_grad_(), y.requires_grad_()
    opt = D.Newton([{"params": [x]}, {"params": [y], "lr": 0.5}])
    opt.step(lambda: loss(x, y))
    d = torch.linalg.solve(a, b)
    torch.testing.assert_close(x.detach(), d[:2])
    torch.testing.assert_close(y.detach(), 0.5 * d[2:])
    for key, value in [("damping", 0.1), ("hessian", "diagonal"), ("mode", "saddle_free")]:
        with pytest.raises(ValueError, match=f"{key}=.*one system"):
            D.Newton([{"params": [x]}, {"params": [y], key: value}])
    with pytest.raises(ValueError, match="damping"):
        D.Newton([{"params": [x], "damping": -1.0}])


# -- debias ----------------------------------------------------------------------------------
def test_debias_is_validated():
    p = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(ValueError, match="debias must be True or False"):
        D.SGD(p, lr=0.1, momentum=0.9, momentum_form="ema", debias="yes")
    for form in ("modern", "lr_inside"):
        with pytest.raises(ValueError, match=f"debias=True with momentum_form='{form}'"):
            D.SGD(p, lr=0.1, momentum=0.9, momentum_form=form, debias=True)
    opt = D.SGD(p, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="debias=True"):
        opt.add_param_group({"params": [torch.zeros(1)], "debias": True})
    assert len(opt.param_groups) == 1
    # with the ema form, debias=True divides v by 1 − βᵗ: v₁ = (1 − β)g / (1 − β) = g
    q = torch.zeros(2, requires_grad=True)
    opt = D.SGD([q], lr=0.1, momentum=0.9, momentum_form="ema", debias=True, fused=False)
    q.grad = torch.tensor([1.0, -2.0])
    opt.step()
    torch.testing.assert_close(q.detach(), torch.tensor([-0.1, 0.2]))
