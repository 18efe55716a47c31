"""The batched engine against each configuration run alone through the plain optimizer loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from descend import lab, landscapes
from descend.optim import Newton, from_spec

ROSEN = landscapes.get("rosenbrock")
STARTS = [(-1.2, 1.0), (0.0, 2.5), (1.5, 1.5), (-0.5, -0.5)]


def alone(landscape, spec: str, start, steps: int, grad_hook=None) -> np.ndarray:
    """The reference: one (d,) parameter, the optimizer `from_spec` builds, p.grad from the
    landscape's gradient, ``steps`` calls of ``step()``."""
    p = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    opt = from_spec(spec, [p])
    out = [p.detach().clone()]
    for t in range(steps):
        g = landscape.grad(p.detach()[None])[0]
        p.grad = grad_hook(g, t, opt) if grad_hook else g
        opt.step()
        out.append(p.detach().clone())
    return torch.stack(out).numpy()


def test_batched_runs_equal_each_configuration_alone() -> None:
    # Several optimizers, and the same optimizer with different numbers (one shared optimizer
    # with (N, 1) hyperparameter tensors), each from four starts.
    specs = [
        "adam:lr=0.05",
        "adam:lr=0.01,beta1=0.8,beta2=0.99",
        "momentum:lr=0.001,momentum=0.5",
        "momentum:lr=0.0005",
        "nesterov:lr=0.0003,momentum=0.8",
        "rmsprop:lr=0.01",
        "rmsprop:lr=0.003,alpha=0.9,eps=1e-6",
        "adagrad:lr=0.3",
        "sgd:lr=0.001",
        "momentum-ema:lr=0.002,momentum=0.7",
    ]
    steps = 60
    result = lab.run(ROSEN, specs, STARTS, steps=steps)
    assert result.trajectories.shape == (len(specs) * len(STARTS), steps + 1, 2)
    for i, spec in enumerate(specs):
        for j, start in enumerate(STARTS):
            ref = alone(ROSEN, spec, start, steps)
            got = result.trajectories[i * len(STARTS) + j]
            np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12, err_msg=f"{spec} {start}")
    # the losses are f along the same path
    f = ROSEN.f(torch.tensor(result.trajectories[5])).numpy()
    np.testing.assert_allclose(result.losses[5], f, rtol=1e-15)


def test_nadam_with_per_run_beta1_matches_alone_to_float32_bookkeeping() -> None:
    # NAdam keeps ∏μ in a float32 scalar (as torch does); with β₁ differing per run the
    # product becomes an (N, 1) tensor in the parameters' dtype, so the two agree to ~1e-9.
    specs = ["nadam:lr=0.01,beta1=0.95", "nadam:lr=0.02"]
    result = lab.run(ROSEN, specs, STARTS[:2], steps=60)
    for i, spec in enumerate(specs):
        for j, start in enumerate(STARTS[:2]):
            ref = alone(ROSEN, spec, start, 60)
            np.testing.assert_allclose(result.trajectories[i * 2 + j], ref, atol=1e-8)


def test_per_run_clipping_is_torch_clip_grad_norm_on_each_run() -> None:
    specs = ["momentum:lr=0.001,max_grad_norm=5", "momentum:lr=0.001,max_grad_norm=50"]
    result = lab.run(ROSEN, specs, STARTS, steps=40)

    for i, norm in enumerate((5.0, 50.0)):

        def clip(g, t, opt, norm=norm):
            g = g.clone().requires_grad_(False)
            holder = torch.zeros_like(g, requires_grad=True)
            holder.grad = g
            torch.nn.utils.clip_grad_norm_([holder], norm)  # float64 norm, torch's formula
            return holder.grad

        for j, start in enumerate(STARTS):
            ref = alone(ROSEN, "momentum:lr=0.001", start, 40, grad_hook=clip)
            np.testing.assert_allclose(result.trajectories[i * 4 + j], ref, rtol=0, atol=1e-12)


def test_a_noisy_run_is_the_same_alone_or_in_a_big_batch() -> None:
    specs = ["adam:lr=0.02", "momentum:lr=0.0005"]
    seeds = list(range(7))
    big = lab.run(ROSEN, specs, STARTS, steps=80, seeds=seeds, noise_batch=4)
    m = big.metrics
    row = m.index[(m["optimizer"] == "momentum") & (m["seed"] == 5) & (m["start"] == STARTS[3])]
    single = lab.run(ROSEN, ["momentum:lr=0.0005"], [STARTS[3]], steps=80, seeds=5, noise_batch=4)
    assert np.array_equal(big.trajectories[row[0]], single.trajectories[0])
    # and the noise is there: another seed takes another path, batch size scales it
    other = lab.run(ROSEN, ["momentum:lr=0.0005"], [STARTS[3]], steps=80, seeds=6, noise_batch=4)
    clean = lab.run(ROSEN, ["momentum:lr=0.0005"], [STARTS[3]], steps=80)
    assert not np.allclose(other.trajectories[0], single.trajectories[0])
    assert not np.allclose(clean.trajectories[0], single.trajectories[0])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_diverging_run_does_not_touch_the_others(dtype) -> None:
    calm = ["momentum:lr=0.001,momentum=0.9", "adam:lr=0.03", "momentum:lr=0.0004,momentum=0.5"]
    wild = [calm[0], "momentum:lr=50", calm[1], calm[2]]
    a = lab.run(ROSEN, calm, STARTS, steps=150, dtype=dtype)
    b = lab.run(ROSEN, wild, STARTS, steps=150, dtype=dtype)
    keep = (b.metrics["spec"] != "momentum:lr=50").to_numpy()
    assert b.metrics.loc[~keep, "diverged"].all()
    assert np.array_equal(a.trajectories, b.trajectories[keep], equal_nan=True)  # bitwise
    assert np.array_equal(a.losses, b.losses[keep], equal_nan=True)
    cols = ["final_loss", "path_length", "overshoots", "steps_to_tol", "distance"]
    pd_a, pd_b = (
        a.metrics[cols].reset_index(drop=True),
        b.metrics[keep][cols].reset_index(drop=True),
    )
    assert pd_a.equals(pd_b)


def test_a_diverging_start_in_a_shared_optimizer_does_not_touch_the_others() -> None:
    # One spec, so every hyperparameter is a plain number (descend's fast path); the start
    # (2, 3) blows up at lr = 0.003, the other two do not.
    specs = ["sgd:lr=0.003", "momentum:lr=0.0015,momentum=0.9"]
    with_it = lab.run(ROSEN, specs, [(-1.2, 1.0), (2.0, 3.0), (1.5, 1.5)], steps=200)
    without = lab.run(ROSEN, specs, [(-1.2, 1.0), (1.5, 1.5)], steps=200)
    assert with_it.metrics["diverged"].tolist() == [False, True, False, False, True, False]
    keep = [0, 2, 3, 5]
    assert np.array_equal(with_it.trajectories[keep], without.trajectories)


def test_invalid_configurations_are_marked_and_the_rest_runs() -> None:
    result = lab.run(ROSEN, ["momentum:momentum=1.0", "nesterov:momentum=0", "sgd"], STARTS[:1])
    status = result.metrics["status"].tolist()
    assert status == ["invalid", "invalid", "ok"]
    assert "momentum=1.0 is invalid" in result.metrics["message"][0]
    assert "nesterov" in result.metrics["message"][1]
    assert np.isnan(result.trajectories[0, 1:]).all()
    assert result.trajectories[0, 0].tolist() == list(STARTS[0])


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="available: sgd, momentum"):
        lab.run(ROSEN, ["adamm"])
    with pytest.raises(ValueError, match="Valid names: .*rosenbrock"):
        lab.run("rosenbrok", ["adam"])
    with pytest.raises(ValueError, match=r"shape \(S, 2\)"):
        lab.run(ROSEN, ["adam"], [(1.0, 2.0, 3.0)])


def test_schedule_is_any_callable_of_the_step() -> None:
    def schedule(t: int) -> float:
        return 0.5 ** (t // 10)

    result = lab.run(
        ROSEN, ["adam:lr=0.05", "adam:lr=0.02"], STARTS[:2], steps=40, schedule=schedule
    )

    for i, lr in enumerate((0.05, 0.02)):

        def set_lr(g, t, opt, lr=lr):
            opt.param_groups[0]["lr"] = lr * schedule(t)
            return g

        for j, start in enumerate(STARTS[:2]):
            ref = alone(ROSEN, f"adam:lr={lr}", start, 40, grad_hook=set_lr)
            np.testing.assert_allclose(result.trajectories[i * 2 + j], ref, rtol=0, atol=1e-12)


def test_newton_runs_follow_descend_newton() -> None:
    himmel = landscapes.get("himmelblau")
    cases = [
        (ROSEN, "newton:lr=1", (-1.2, 1.0)),
        (ROSEN, "newton:lr=0.5,damping=2", (1.5, 1.5)),
        (himmel, "newton:mode=saddle_free", (0.5, 0.5)),
        (himmel, "newton:hessian=diagonal,mode=saddle_free,damping=0.5", (-1.0, 2.0)),
    ]
    for landscape, spec, start in cases:
        result = lab.run(landscape, [spec], [start], steps=12)
        p = torch.tensor(start, dtype=torch.float64, requires_grad=True)
        opt = from_spec(spec, [p])
        assert isinstance(opt, Newton)
        ref = [p.detach().clone()]

        def closure(landscape=landscape, p=p):
            return landscape.f(p[None]).sum()  # Newton takes gradient and Hessian by autograd

        for _ in range(12):
            opt.step(closure)
            ref.append(p.detach().clone())
        np.testing.assert_allclose(result.trajectories[0], torch.stack(ref).numpy(), atol=1e-9)


def test_newton_stops_only_the_rows_with_an_indefinite_hessian() -> None:
    # At (0, 2.5) Rosenbrock's Hessian has a negative eigenvalue: descend.optim.Newton would
    # raise; the lab stops that run and leaves the others bitwise unchanged.
    both = lab.run(ROSEN, ["newton"], [(-1.2, 1.0), (0.0, 2.5), (1.5, 1.5)], steps=10)
    two = lab.run(ROSEN, ["newton"], [(-1.2, 1.0), (1.5, 1.5)], steps=10)
    assert both.metrics["status"].tolist() == ["ok", "stopped", "ok"]
    assert "not positive definite" in both.metrics["message"][1]
    assert "step 0" in both.metrics["message"][1]
    assert np.array_equal(both.trajectories[[0, 2]], two.trajectories)
    p = torch.tensor([0.0, 2.5], dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="not positive definite"):
        Newton([p]).step(lambda: ROSEN.f(p[None]).sum())


def test_thinned_records_and_float32() -> None:
    full = lab.run(ROSEN, ["adam:lr=0.02"], STARTS[:2], steps=25)
    thin = lab.run(ROSEN, ["adam:lr=0.02"], STARTS[:2], steps=25, record_every=10)
    ends = lab.run(ROSEN, ["adam:lr=0.02"], STARTS[:2], steps=25, record_every=0)
    assert thin.recorded_steps.tolist() == [0, 10, 20, 25]
    assert ends.recorded_steps.tolist() == [0, 25]
    assert np.array_equal(thin.trajectories, full.trajectories[:, [0, 10, 20, 25]])
    assert np.array_equal(thin.losses, full.losses[:, [0, 10, 20, 25]])
    assert full.metrics["path_length"].equals(ends.metrics["path_length"])
    f32 = lab.run(ROSEN, ["adam:lr=0.02"], STARTS[:2], steps=25, dtype=torch.float32)
    assert f32.trajectories.dtype == np.float32
    np.testing.assert_allclose(f32.trajectories, full.trajectories, atol=1e-4)


def test_bad_arguments_name_the_parameter() -> None:
    with pytest.raises(ValueError, match="steps=-1"):
        lab.run(ROSEN, ["adam"], steps=-1)
    with pytest.raises(ValueError, match="record_every"):
        lab.run(ROSEN, ["adam"], record_every=-2)
    with pytest.raises(ValueError, match="batch_size"):
        lab.run(ROSEN, ["adam"], noise_batch=0)
    with pytest.raises(ValueError, match="seeds"):
        lab.run(ROSEN, ["adam"], seeds=[0.5])
    with pytest.raises(ValueError, match="raise record_every"):  # 7.2 GB of records
        lab.run(ROSEN, ["adam"], np.zeros((300_000, 2)), steps=1000)
    with pytest.raises(ValueError, match="no optimizer"):
        lab.run(ROSEN, " ; ")
    assert math.isinf(lab.run(ROSEN, ["sgd:lr=1"], STARTS[:1], steps=5).metrics["final_loss"][0])


def test_newton_solve_batched_against_numpy_and_one_system_at_a_time() -> None:
    # One solve function serves descend.optim.Newton and the lab: a batch of (H + λI) d = g
    # equals numpy's solve of each system; a refused row (indefinite H, exact mode) gets d = 0
    # and ok False without changing the others; saddle_free uses |eigenvalues| (by hand for a
    # diagonal H: d_i = g_i / (|h_i| + λ)).
    from descend.optim.newton import solve

    rng = np.random.default_rng(3)
    a = rng.normal(size=(5, 3, 3))
    h = a @ a.transpose(0, 2, 1) + 0.5 * np.eye(3)
    h[2] = np.diag([1.0, -2.0, 3.0])
    g = rng.normal(size=(5, 3))
    lam = 0.1
    sol = solve(torch.tensor(h), torch.tensor(g), lam, "exact")
    assert sol.ok.tolist() == [True, True, False, True, True]
    assert np.all(sol.direction[2].numpy() == 0)
    assert float(sol.lowest[2]) == pytest.approx(-2.0 + lam)
    for i in (0, 1, 3, 4):
        expect = np.linalg.solve(h[i] + lam * np.eye(3), g[i])
        assert np.allclose(sol.direction[i].numpy(), expect, rtol=1e-10, atol=1e-12)
        one = solve(torch.tensor(h[i]), torch.tensor(g[i]), lam, "exact")
        assert bool(one.ok) and np.allclose(one.direction.numpy(), expect, rtol=1e-10)
    free = solve(torch.tensor(h[2]), torch.tensor(g[2]), lam, "saddle_free")
    assert np.allclose(free.direction.numpy(), g[2] / (np.array([1.0, 2.0, 3.0]) + lam))
    diag = solve(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0]), 0.0, "saddle_free", "diagonal")
    assert not bool(diag.ok)  # a zero entry is singular
    with pytest.raises(ValueError, match="mode='bogus'"):
        solve(torch.tensor(h), torch.tensor(g), lam, "bogus")
