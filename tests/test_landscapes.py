"""descend.landscapes: minima against published tables, derivatives against autograd and finite
differences, the ravine's spectrum, the registry, nearest_minimum, default learning rates, and
the reproducible mini-batch noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import descend.optim
from descend import lab, landscapes
from descend.landscapes import Noisy, nearest_minimum, noisy_grad, philox4x32, standard_normal

ALL = landscapes.names()
UNBOUNDED = {"saddle", "monkey-saddle"}


def random_points(ls: landscapes.Landscape, n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    lo = torch.tensor([a for a, _ in ls.domain], dtype=torch.float64)
    hi = torch.tensor([b for _, b in ls.domain], dtype=torch.float64)
    return lo + (hi - lo) * torch.rand(n, ls.dim, generator=gen, dtype=torch.float64)


def central_differences(fn, points: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    """(fn(p + h eᵢ) − fn(p − h eᵢ)) / 2h for every coordinate i, stacked on the last axis."""
    cols = []
    for e in torch.eye(points.shape[1], dtype=points.dtype):
        cols.append((fn(points + h * e) - fn(points - h * e)) / (2 * h))
    return torch.stack(cols, dim=-1)


# ---- minima: published values (SFU library / lab.md table), evaluated directly ------------------

HIMMELBLAU = [(3.0, 2.0), (-2.805118, 3.131312), (-3.779310, -3.283186), (3.584428, -1.848126)]
TABLE = [
    ("rosenbrock", (1.0, 1.0), 0.0, 1e-12),
    ("beale", (3.0, 0.5), 0.0, 1e-12),
    ("booth", (1.0, 3.0), 0.0, 1e-12),
    *[("himmelblau", m, 0.0, 1e-9) for m in HIMMELBLAU],
    ("rastrigin", (0.0, 0.0), 0.0, 1e-12),
    ("ackley", (0.0, 0.0), 0.0, 1e-12),
    ("six-hump-camel", (0.0898, -0.7126), -1.0316, 1e-4),
    ("six-hump-camel", (-0.0898, 0.7126), -1.0316, 1e-4),
    ("goldstein-price", (0.0, -1.0), 3.0, 1e-9),
    ("ravine", (0.0, 0.0), 0.0, 0.0),
    ("bowl", (0.0, 0.0), 0.0, 0.0),
    ("plateau", (0.0, 0.0), 0.0, 0.0),
    ("quadratic", (0.0,), 0.0, 0.0),
    ("double-well", (1.0,), 0.0, 0.0),
    ("double-well", (-1.0,), 0.0, 0.0),
    ("quartic", (0.0,), 0.0, 0.0),
]


@pytest.mark.parametrize(("name", "location", "value", "tol"), TABLE)
def test_published_minimum_value_and_listing(name, location, value, tol):
    ls = landscapes.get(name)
    point = torch.tensor([location], dtype=torch.float64)
    assert ls.f(point).item() == pytest.approx(value, abs=tol)
    assert ls.f_min == pytest.approx(value, abs=max(tol, 1e-12))
    # The registry lists a minimum at this location (rounded tables: within 1e-4).
    listed = [m for m in ls.minima if math.dist(m.location, location) < 1e-4]
    assert len(listed) == 1
    assert listed[0].value == pytest.approx(value, abs=max(tol, 1e-12))


def test_six_hump_camel_and_goldstein_price_local_minima_from_the_literature():
    camel = landscapes.get("six-hump-camel")
    values = sorted(round(m.value, 4) for m in camel.minima)
    assert values == [-1.0316, -1.0316, -0.2155, -0.2155, 2.1043, 2.1043]
    gp = landscapes.get("goldstein-price")
    assert [round(m.value, 6) for m in gp.minima] == [3.0, 30.0, 84.0, 840.0]


def test_two_dips_deep_dip_is_left_and_global():
    ls = landscapes.get("two-dips")
    assert len(ls.minima) == 2
    deep, shallow = ls.minima
    assert deep.location[0] < -0.5 and shallow.location[0] > 0.5
    assert deep.value < shallow.value < 0


def test_rastrigin_lists_its_121_local_minima_near_the_integers():
    ls = landscapes.get("rastrigin")
    assert len(ls.minima) == 121
    # Each coordinate of a local minimum solves 2x + 20π sin 2πx = 0 near an integer k;
    # for k = 1 that is x ≈ 0.99496 (one Newton step from 1: 1 − 2/(2 + 40π²) = 0.99496).
    one = [m for m in ls.minima if m.location[1] == 0.0 and 0.5 < m.location[0] < 1.5]
    assert one[0].location[0] == pytest.approx(1 - 2 / (2 + 40 * math.pi**2), abs=1e-4)


@pytest.mark.parametrize("name", [n for n in ALL if n not in UNBOUNDED])
def test_every_listed_minimum_is_a_stationary_local_minimum(name):
    ls = landscapes.get(name)
    assert ls.minima, "bounded landscapes list their minima"
    loc = ls.points_tensor([m.location for m in ls.minima])
    values = torch.tensor([m.value for m in ls.minima], dtype=torch.float64)
    torch.testing.assert_close(ls.f(loc), values, rtol=0, atol=1e-12)
    assert ls.grad(loc).abs().max().item() < 1e-7
    assert torch.linalg.eigvalsh(ls.hessian(loc)).min().item() >= -1e-9
    # No nearby point is lower (a direct check that needs no derivative).
    gen = torch.Generator().manual_seed(1)
    for radius in (1e-3, 1e-2):
        offsets = radius * torch.randn(64, ls.dim, generator=gen, dtype=torch.float64)
        nearby = ls.f((loc.unsqueeze(1) + offsets).reshape(-1, ls.dim)).reshape(len(loc), 64)
        assert (nearby >= values.unsqueeze(1) - 1e-12).all()
    assert list(values) == sorted(values), "minima are sorted, lowest first"


# ---- derivatives --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL + ["expr:x**2*y + sin(3*x)*exp(y/2)"])
def test_gradient_analytic_vs_autograd_vs_finite_differences(name):
    ls = landscapes.get(name)
    p = random_points(ls, 256)
    g = ls.grad(p)
    scale = 1.0 + g.abs().max().item()
    torch.testing.assert_close(g, ls.autograd_grad(p), rtol=0, atol=1e-12 * scale)
    torch.testing.assert_close(g, central_differences(ls.f, p), rtol=0, atol=1e-7 * scale)


@pytest.mark.parametrize("name", ALL + ["expr:x**2*y + sin(3*x)*exp(y/2)"])
def test_hessian_vs_autograd_and_differences_of_the_gradient(name):
    ls = landscapes.get(name)
    p = random_points(ls, 128, seed=2)
    h = ls.hessian(p)
    scale = 1.0 + h.abs().max().item()
    torch.testing.assert_close(h, ls.autograd_hessian(p), rtol=0, atol=1e-12 * scale)
    torch.testing.assert_close(h, h.transpose(1, 2), rtol=0, atol=1e-12 * scale)
    fd = central_differences(ls.grad, p)  # fd[n, i, j] = ∂gᵢ/∂xⱼ
    torch.testing.assert_close(h, fd, rtol=0, atol=1e-6 * scale)


def test_value_and_grad_matches_separate_calls():
    for name in ("rosenbrock", "goldstein-price", "expr:x*y + exp(x)"):
        ls = landscapes.get(name)
        p = random_points(ls, 50)
        value, grad = ls.value_and_grad(p)
        torch.testing.assert_close(value, ls.f(p))
        torch.testing.assert_close(grad, ls.grad(p))


def test_rosenbrock_hessian_at_the_minimum():
    h = landscapes.get("rosenbrock").hessian(torch.tensor([[1.0, 1.0]], dtype=torch.float64))[0]
    torch.testing.assert_close(h, torch.tensor([[802.0, -400.0], [-400.0, 200.0]], dtype=h.dtype))
    # Eigenvalues of [[802, −400], [−400, 200]]: (1002 ± √(602² + 4·400²)) / 2.
    root = math.sqrt(602**2 + 4 * 400**2)
    small, large = torch.linalg.eigvalsh(h).tolist()
    assert small == pytest.approx((1002 - root) / 2, rel=1e-12)
    assert large == pytest.approx((1002 + root) / 2, rel=1e-12)
    assert round(small, 3) == 0.399 and round(large, 1) == 1001.6


def test_booth_condition_number_is_nine():
    ev = torch.linalg.eigvalsh(landscapes.get("booth").hessian(torch.zeros(1, 2)))[0]
    assert ev.tolist() == pytest.approx([2.0, 18.0])


@pytest.mark.parametrize(
    ("lam1", "lam2", "angle"), [(1.0, 10.0, 0.0), (0.5, 50.0, 30.0), (2, 3, -120)]
)
def test_ravine_spectrum_and_rotation(lam1, lam2, angle):
    ls = landscapes.get("ravine", lam1=lam1, lam2=lam2, angle=angle)
    p = random_points(ls, 64)
    h = ls.hessian(p)
    evals, evecs = torch.linalg.eigh(h[0])
    assert evals.tolist() == pytest.approx([min(lam1, lam2), max(lam1, lam2)], rel=1e-12)
    # The λ₁ axis points at `angle` degrees: H·(cos θ, sin θ) = λ₁·(cos θ, sin θ).
    theta = math.radians(angle)
    axis = torch.tensor([math.cos(theta), math.sin(theta)], dtype=torch.float64)
    torch.testing.assert_close(h[0] @ axis, lam1 * axis)
    # f at the rotated point equals the unrotated ravine at the original point.
    rot = torch.tensor(
        [[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]],
        dtype=torch.float64,
    )
    plain = landscapes.get("ravine", lam1=lam1, lam2=lam2)
    torch.testing.assert_close(ls.f(p @ rot.T), plain.f(p))
    torch.testing.assert_close(ls.f(p), 0.5 * torch.einsum("ni,nij,nj->n", p, h, p))
    assert ls.params == {"lam1": lam1, "lam2": lam2, "angle": angle}


def test_ravine_kappa_parameter_and_bad_values():
    ls = landscapes.get("ravine", lam1=2.0, kappa=25.0, angle=45)
    ev = torch.linalg.eigvalsh(ls.hessian(torch.zeros(1, 2, dtype=torch.float64)))[0]
    assert ev.tolist() == pytest.approx([2.0, 50.0])
    with pytest.raises(ValueError, match="lam2 or kappa"):
        landscapes.get("ravine", lam2=3.0, kappa=3.0)
    with pytest.raises(ValueError, match="lam1 must be a finite number > 0, got -1.0"):
        landscapes.get("ravine", lam1=-1)
    with pytest.raises(ValueError, match="kappa"):
        landscapes.get("ravine", kappa=float("nan"))


def test_ackley_is_finite_at_its_cusp():
    ls = landscapes.get("ackley")
    for dtype in (torch.float32, torch.float64):
        zero = torch.zeros(3, 2, dtype=dtype)
        assert ls.f(zero).tolist() == [0.0, 0.0, 0.0]
        assert ls.grad(zero).tolist() == [[0.0, 0.0]] * 3
        assert ls.autograd_grad(zero).tolist() == [[0.0, 0.0]] * 3
        assert torch.isfinite(ls.hessian(zero)).all()
        assert torch.isfinite(ls.autograd_hessian(zero)).all()
        tiny = torch.tensor([[1e-30, 0.0], [0.0, -1e-20]], dtype=dtype)
        assert torch.isfinite(ls.grad(tiny)).all()
    # Off the cusp the cone term pulls towards 0 with slope 4·e^{−0.2r}/(2r)·x (hand derivation).
    p = torch.tensor([[0.5, 0.0]], dtype=torch.float64)
    r = math.sqrt(0.5 * 0.25)
    ripple = math.exp(0.5 * (math.cos(math.pi) + 1))
    expected_x = 4 * math.exp(-0.2 * r) / (2 * r) * 0.5 + math.pi * ripple * math.sin(math.pi)
    assert ls.grad(p)[0, 0].item() == pytest.approx(expected_x, rel=1e-12)


@pytest.mark.parametrize("name", ALL)
def test_float32_in_float32_out_and_close_to_float64(name):
    ls = landscapes.get(name)
    p64 = random_points(ls, 100, seed=3)
    p32 = p64.float()
    f32, g32, h32 = ls.f(p32), ls.grad(p32), ls.hessian(p32)
    assert (f32.dtype, g32.dtype, h32.dtype) == (torch.float32,) * 3
    assert f32.shape == (100,) and g32.shape == (100, ls.dim) and h32.shape == (100, ls.dim, ls.dim)
    f64 = ls.f(p32.double())
    torch.testing.assert_close(f32.double(), f64, rtol=1e-4, atol=1e-4 * (1 + f64.abs().max()))


@pytest.mark.parametrize("name", ["rosenbrock", "ackley", "goldstein-price", "rastrigin"])
def test_rows_are_independent_in_a_batch_of_100k(name):
    ls = landscapes.get(name)
    p = random_points(ls, 100_000, seed=4)
    f, g = ls.f(p), ls.grad(p)
    assert f.shape == (100_000,) and g.shape == (100_000, 2)
    for i in (0, 12_345, 99_999):
        torch.testing.assert_close(f[i : i + 1], ls.f(p[i : i + 1]), rtol=1e-15, atol=0)
        torch.testing.assert_close(g[i : i + 1], ls.grad(p[i : i + 1]), rtol=1e-15, atol=0)


def test_bad_points_are_rejected_with_the_shape():
    ls = landscapes.get("bowl")
    with pytest.raises(ValueError, match=r"shape \(N, 2\), got \(5, 3\)"):
        ls.f(torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"shape \(N, 2\), got \(2,\)"):
        ls.grad(torch.zeros(2))
    with pytest.raises(ValueError, match="floating"):
        ls.hessian(torch.zeros(4, 2, dtype=torch.int64))


# ---- registry -----------------------------------------------------------------------------------


def test_registry_names_cover_the_required_functions():
    required_2d = {
        "ravine", "bowl", "rosenbrock", "beale", "booth", "himmelblau", "rastrigin", "ackley",
        "six-hump-camel", "goldstein-price", "saddle", "monkey-saddle", "plateau", "two-dips",
    }  # fmt: skip
    assert required_2d <= set(landscapes.names(dim=2))
    assert {"quadratic", "double-well", "quartic"} <= set(landscapes.names(dim=1))
    for name in ALL:
        ls = landscapes.get(name)
        assert ls.name == name
        assert ls.dim == (1 if name in landscapes.names(dim=1) else 2)
        assert ls.contour in ("linear", "log") and ls.description and ls.formula
        assert ls.starts and all(
            lo <= c <= hi for s in ls.starts for c, (lo, hi) in zip(s, ls.domain)
        )
    assert landscapes.get("goldstein-price").contour == "log"


def test_registry_lookup_rules_and_errors():
    assert landscapes.get("Six_Hump_Camel").name == "six-hump-camel"
    assert landscapes.get("expr:x**2 + y**2").dim == 2
    assert landscapes.get("x**2 + y**2").name == "expr:x**2 + y**2"
    with pytest.raises(ValueError, match="unknown landscape 'rosenbrok'") as info:
        landscapes.get("rosenbrok")
    assert "Did you mean 'rosenbrock'" in str(info.value)
    assert all(n in str(info.value) for n in ALL)
    with pytest.raises(ValueError, match="expr:"):
        landscapes.get("x")
    with pytest.raises(ValueError, match="has no parameter 'lr'; its parameters: lam1, lam2"):
        landscapes.get("ravine", lr=1)
    with pytest.raises(ValueError, match="its parameters: none"):
        landscapes.get("bowl", width=1)
    assert landscapes.parameters("rosenbrock") == {"a": 1.0, "b": 100.0}


@pytest.mark.parametrize(
    ("name", "params"),
    [("ravine", {"kappa": 40, "angle": 15}), ("rosenbrock", {"b": 10}), ("expr:x*y", {"dim": 3})]
    + [(n, {}) for n in ALL],
)
def test_params_rebuild_the_same_landscape(name, params):
    ls = landscapes.get(name, **params)
    again = landscapes.get(ls.name, **ls.params)
    assert again.params == ls.params and again.minima == ls.minima
    p = random_points(ls, 20)
    torch.testing.assert_close(again.f(p), ls.f(p), rtol=0, atol=0)


def test_rosenbrock_parameters_move_the_minimum():
    ls = landscapes.get("rosenbrock", a=2.0, b=10.0)
    assert ls.minima[0].location == (2.0, 4.0)
    assert ls.f(torch.tensor([[2.0, 4.0]])).item() == 0.0


def test_expression_landscape_options():
    ls = landscapes.get("expr:x**2", dim=3, domain=[(-1, 1), (-2, 2), (0, 5)])
    assert ls.dim == 3 and ls.domain == ((-1.0, 1.0), (-2.0, 2.0), (0.0, 5.0))
    torch.testing.assert_close(ls.grad(torch.ones(2, 3)), torch.tensor([[2.0, 0, 0]] * 2))
    assert ls.minima == () and ls.f_min is None
    with pytest.raises(ValueError, match="dim must be an integer >= 2"):
        landscapes.get("x*y", dim=1)
    with pytest.raises(ValueError, match="domain"):
        landscapes.get("x*y", domain=[(0, 1)])


# ---- nearest_minimum ----------------------------------------------------------------------------


def test_nearest_minimum_matches_a_brute_force_loop():
    ls = landscapes.get("himmelblau")
    p = random_points(ls, 500, seed=5)
    index, distance = nearest_minimum(ls, p)
    assert index.dtype == torch.int64 and distance.shape == (500,)
    for n in range(0, 500, 37):
        dists = [math.dist(p[n].tolist(), m.location) for m in ls.minima]
        assert index[n].item() == dists.index(min(dists))
        assert distance[n].item() == pytest.approx(min(dists), rel=1e-12)
    # A point 0.01 to the right of each minimum belongs to it at distance 0.01.
    at = ls.points_tensor([m.location for m in ls.minima]) + torch.tensor([0.01, 0.0])
    index, distance = nearest_minimum(ls, at)
    assert index.tolist() == list(range(4))
    torch.testing.assert_close(distance, torch.full((4,), 0.01, dtype=torch.float64))


def test_nearest_minimum_needs_minima():
    with pytest.raises(ValueError, match="lists no minima"):
        nearest_minimum(landscapes.get("saddle"), torch.zeros(3, 2))


# ---- default learning rates ---------------------------------------------------------------------


def test_default_lrs_name_every_optimizer_of_descend_optim():
    for name in ALL:
        lrs = landscapes.get(name).default_lrs
        assert set(lrs) == set(descend.optim.available())
        assert all(lr > 0 and math.isfinite(lr) for lr in lrs.values())


FIRST_ORDER = [n for n in descend.optim.available() if n != "newton"]


@pytest.mark.parametrize("name", ALL)
def test_default_lrs_make_progress_from_every_start(name):
    """Each first-order optimizer at its default lr lowers f from every suggested start and stays
    finite (150 steps; 10 on unbounded landscapes, whose runs blow up by design). Stepped by the
    lab, as its users run them: the runs of an optimizer whose update reads other coordinates
    (``couples``: a norm, a matrix, a global estimate) each get their own optimizer, so one
    start's run never moves another's; the others share one (N, d) parameter."""
    ls = landscapes.get(name)
    steps = 10 if name in UNBOUNDED else 150
    result = lab.run(ls, FIRST_ORDER, steps=steps, record_every=0)  # spec-major, then start
    f0, f1 = result.losses[:, 0], result.losses[:, -1]
    assert len(f1) == len(FIRST_ORDER) * len(ls.starts)
    assert np.allclose(f0, np.tile(ls.f(ls.points_tensor(ls.starts)).numpy(), len(FIRST_ORDER)))
    table = result.metrics
    for i, row in table.iterrows():
        where = (row["optimizer"], row["start"], row["status"], f0[i], f1[i])
        assert row["status"] == "ok" and np.isfinite(f1[i]), where
        assert f1[i] < f0[i], where


@pytest.mark.parametrize("name", ["ravine", "bowl", "booth", "quadratic", "double-well"])
def test_default_lrs_converge_on_the_easy_landscapes(name):
    ls = landscapes.get(name)
    start = ls.points_tensor(ls.starts)
    for opt_name in ("sgd", "momentum", "nesterov", "adam"):
        p = start.clone().requires_grad_(True)
        opt = descend.optim.from_spec(f"{opt_name}:lr={ls.default_lrs[opt_name]}", [p])
        for _ in range(400):
            opt.zero_grad()
            p.grad = ls.grad(p.detach())
            opt.step()
        _, distance = nearest_minimum(ls, p.detach())
        assert distance.max().item() < 1e-3, opt_name
    # Newton's step x − lr·H⁻¹∇f with the default lr (1) lands on a quadratic's minimum at once.
    if name != "double-well":
        x = start - ls.default_lrs["newton"] * torch.linalg.solve(
            ls.hessian(start), ls.grad(start).unsqueeze(-1)
        ).squeeze(-1)
        assert nearest_minimum(ls, x)[1].max().item() < 1e-9


# ---- noise --------------------------------------------------------------------------------------

# Random123's published known-answer vectors for Philox4x32-10.
PHILOX_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize(("counter", "key", "expected"), PHILOX_KAT)
def test_philox_known_answers(counter, key, expected):
    out = philox4x32([torch.tensor(c) for c in counter], [torch.tensor(k) for k in key])
    assert tuple(int(w) for w in out) == expected


def test_noise_of_a_run_is_the_same_alone_or_inside_100k_runs():
    seeds = torch.randint(-(2**62), 2**62, (100_000,), generator=torch.Generator().manual_seed(6))
    for step in (0, 1, 2**33 + 5):
        batch = standard_normal(seeds, step, dim=3)
        for i in (0, 777, 99_999):
            alone = standard_normal(seeds[i : i + 1], step, dim=3)
            assert torch.equal(alone[0], batch[i])
        # and inside a different batch, at a different position
        shuffled = standard_normal(seeds.flip(0)[:1000], step, dim=3)
        assert torch.equal(shuffled[0], batch[-1])
    assert not torch.equal(standard_normal(seeds[:5], 1, 3), standard_normal(seeds[:5], 2, 3))
    assert not torch.equal(standard_normal(seeds[:5], 1, 3), standard_normal(seeds[1:6], 1, 3))
    # Coordinates are a prefix: the first d draws do not depend on how many are asked for.
    assert torch.equal(standard_normal(seeds[:9], 4, 5), standard_normal(seeds[:9], 4, 11)[:, :5])
    # Per-run steps equal separate calls.
    steps = torch.tensor([3, 8])
    both = standard_normal(seeds[:2], steps, 2)
    assert torch.equal(both[1], standard_normal(seeds[1:2], 8, 2)[0])


def test_noisy_sgd_trajectory_of_one_run_equals_its_row_in_a_batch():
    ls = landscapes.get("rosenbrock")
    noisy = Noisy(ls, batch_size=8)
    n = 100_000
    seeds = torch.arange(1000, 1000 + n)
    batch = ls.points_tensor([ls.starts[0]], dtype=torch.float32).repeat(n, 1)
    alone = batch[4321:4322].clone()
    for step in range(15):
        batch = batch - 1e-3 * noisy.grad(batch, step, seeds)
        alone = alone - 1e-3 * noisy.grad(alone, step, seeds[4321:4322])
    assert torch.equal(alone[0], batch[4321])
    assert batch.std(dim=0).min() > 0  # the runs did receive different noise


@pytest.mark.parametrize("batch_size", [1, 4, 16, 100])
def test_noise_std_shrinks_like_one_over_root_b(batch_size):
    ls = landscapes.get("bowl")
    n = 100_000
    points = random_points(ls, n, seed=7)
    noise = noisy_grad(ls, points, step=11, seeds=torch.arange(n), batch_size=batch_size) - ls.grad(
        points
    )
    expected = 1 / math.sqrt(batch_size)
    # std of a sample std ≈ σ/√(2n) = 0.22% of σ; allow 1.5%. Mean: 5 standard errors.
    assert noise.std(dim=0).tolist() == pytest.approx([expected] * 2, rel=0.015)
    assert noise.mean(dim=0).abs().max().item() < 5 * expected / math.sqrt(n)


def test_standard_normal_is_normal_and_uncorrelated():
    n = 200_000
    seeds = torch.arange(n)
    z = standard_normal(seeds, 0, dim=4)
    flat = z.flatten()
    # Coverage of ±1σ and ±2σ (standard errors ≈ 0.0005): 0.6827 and 0.9545.
    assert (flat.abs() < 1).double().mean().item() == pytest.approx(0.682689, abs=0.003)
    assert (flat.abs() < 2).double().mean().item() == pytest.approx(0.954500, abs=0.002)
    # Kolmogorov–Smirnov distance to Φ, against the 1% critical value 1.63/√n.
    sorted_z = flat.sort().values
    cdf = torch.special.ndtr(sorted_z)
    m = sorted_z.numel()
    ks = torch.maximum(
        torch.arange(1, m + 1, dtype=torch.float64) / m - cdf,
        cdf - torch.arange(0, m, dtype=torch.float64) / m,
    ).max()
    assert ks.item() < 1.63 / math.sqrt(m)
    # No correlation between coordinates, consecutive steps, or neighbouring seeds.
    bound = 5 / math.sqrt(n)
    corr = torch.corrcoef(z.T)
    assert (corr - torch.eye(4, dtype=corr.dtype)).abs().max().item() < bound
    nxt = standard_normal(seeds, 1, dim=4)
    assert torch.corrcoef(torch.stack((z[:, 0], nxt[:, 0])))[0, 1].abs().item() < bound
    assert torch.corrcoef(torch.stack((z[:-1, 0], z[1:, 0])))[0, 1].abs().item() < bound


def test_noisy_loss_is_consistent_with_the_noisy_gradient():
    ls = landscapes.get("himmelblau")
    noisy = Noisy(ls, batch_size=4, scale=2.0)
    p = random_points(ls, 20, seed=8)
    seeds = torch.arange(20)
    fd = central_differences(lambda q: noisy.f(q, 5, seeds), p)
    torch.testing.assert_close(noisy.grad(p, 5, seeds), fd, rtol=0, atol=1e-6)
    value, grad = noisy.value_and_grad(p, 5, seeds)
    torch.testing.assert_close(value, noisy.f(p, 5, seeds))
    torch.testing.assert_close(grad, noisy.grad(p, 5, seeds))
    assert noisy.noise_std == pytest.approx(1.0)
    # Same z for every batch size: B = 4 noise is exactly half of B = 1 noise (σ = 1).
    half = Noisy(ls, 4).noise(p, 5, seeds)
    torch.testing.assert_close(half, 0.5 * Noisy(ls, 1).noise(p, 5, seeds), rtol=1e-15, atol=0)
    # float32 noise is the float64 noise rounded.
    assert torch.equal(noisy.noise(p.float(), 5, seeds), noisy.noise(p, 5, seeds).float())


def test_noise_arguments_are_checked():
    ls = landscapes.get("bowl")
    p = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        Noisy(ls, 0)
    with pytest.raises(ValueError, match="scale"):
        Noisy(ls, 2, scale=-1.0)
    with pytest.raises(ValueError, match=r"one entry per point \(3\), got 2"):
        Noisy(ls, 2).grad(p, 0, [1, 2])
    with pytest.raises(ValueError, match="step must be >= 0, got -1"):
        Noisy(ls, 2).grad(p, -1, [1, 2, 3])
    with pytest.raises(ValueError, match="seeds must hold integers"):
        Noisy(ls, 2).grad(p, 0, torch.tensor([1.0, 2.0, 3.0]))


def test_bad_parameters_are_named_in_the_error():
    with pytest.raises(ValueError, match="lam1 must be a finite number > 0, got 'abc'"):
        landscapes.get("ravine", lam1="abc")
    with pytest.raises(ValueError, match="angle must be a finite number, got inf"):
        landscapes.get("ravine", angle=math.inf)
    with pytest.raises(ValueError, match="width must be a finite number > 0, got 0.0"):
        landscapes.get("plateau", width=0)
    with pytest.raises(ValueError, match="has no parameter 'foo'; its parameters: dim, domain"):
        landscapes.get("expr:x", foo=1)
    with pytest.raises(ValueError, match="domain must be"):
        landscapes.get("x*y", domain=5)
    with pytest.raises(ValueError, match=r"domain\[0\] must be finite with lo < hi"):
        landscapes.get("x*y", domain=(3, 1))
    with pytest.raises(ValueError, match="has 3 coordinates, expected 2"):
        landscapes.get("x*y", starts=[(0, 1, 2)])
    with pytest.raises(ValueError, match="contour must be one of"):
        landscapes.get("x*y", contour="cubic")
