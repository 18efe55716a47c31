"""descend.optim.Newton against closed forms: x* = A⁻¹b for a quadratic, the saddle-free step
on x² − y², quadratic convergence on a convex problem."""

from __future__ import annotations

import pytest
import torch

import descend.optim as D

F64 = torch.float64
A = torch.tensor([[4.0, 1.0, 0.5], [1.0, 3.0, -0.2], [0.5, -0.2, 2.0]], dtype=F64)
B = torch.tensor([1.0, -2.0, 0.5], dtype=F64)


def quadratic(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x @ A @ x - B @ x + 3.0


def test_one_step_solves_a_positive_definite_quadratic() -> None:
    # the parameter vector is split over two tensors: cross terms of H must be assembled
    u = torch.tensor([5.0, -3.0], dtype=F64, requires_grad=True)
    w = torch.tensor([2.0], dtype=F64, requires_grad=True)
    opt = D.Newton([u, w], lr=1.0)
    opt.step(lambda: quadratic(torch.cat([u, w])))
    x = torch.cat([u.detach(), w.detach()])
    torch.testing.assert_close(x, torch.linalg.solve(A, B), rtol=0, atol=1e-12)
    torch.testing.assert_close(opt.last["hessian"], A, rtol=0, atol=1e-12)


def test_the_hessian_and_gradient_match_autograd_functional() -> None:
    x = torch.tensor([0.3, -0.7, 1.1], dtype=F64, requires_grad=True)

    def f(v):
        return (v**4).sum() + torch.sin(v[0] * v[1]) + v[2] * v[0] ** 2

    opt = D.Newton([x], damping=50.0)  # damped: any curvature is fine
    x0 = x.detach().clone()
    opt.step(lambda: f(x))
    H = torch.autograd.functional.hessian(f, x0)
    g = torch.autograd.functional.jacobian(f, x0)
    torch.testing.assert_close(opt.last["hessian"], H)
    torch.testing.assert_close(opt.last["grad"], g)
    step = torch.linalg.solve(H + 50.0 * torch.eye(3, dtype=F64), g)
    torch.testing.assert_close(x.detach(), x0 - step)  # (H + λI)d = g


def test_lr_scales_the_newton_step() -> None:
    x = torch.zeros(3, dtype=F64, requires_grad=True)
    D.Newton([x], lr=0.5).step(lambda: quadratic(x))
    torch.testing.assert_close(x.detach(), 0.5 * torch.linalg.solve(A, B))


def test_diagonal_hessian_solves_a_separable_quadratic_in_one_step() -> None:
    a = torch.tensor([[0.5, 2.0], [7.0, 0.1]], dtype=F64)
    c = torch.tensor([[1.0, -1.0], [3.0, 0.25]], dtype=F64)
    x = torch.zeros(2, 2, dtype=F64, requires_grad=True)
    opt = D.Newton([x], hessian="diagonal")
    opt.step(lambda: (a * (x - c) ** 2).sum())
    torch.testing.assert_close(x.detach(), c, rtol=0, atol=1e-12)
    torch.testing.assert_close(opt.last["hessian_diagonal"], 2 * a.reshape(-1))


def test_diagonal_hessian_ignores_cross_terms() -> None:
    x = torch.zeros(3, dtype=F64, requires_grad=True)
    D.Newton([x], hessian="diagonal").step(lambda: quadratic(x))
    torch.testing.assert_close(x.detach(), B / torch.diagonal(A))  # not A⁻¹b


def saddle(p: torch.Tensor) -> torch.Tensor:
    return p[0] ** 2 - p[1] ** 2


@pytest.mark.parametrize("hessian", ["full", "diagonal"])
def test_an_indefinite_hessian_raises_and_leaves_params_alone(hessian: str) -> None:
    p = torch.tensor([1.0, 1.0], dtype=F64, requires_grad=True)
    with pytest.raises(ValueError, match="saddle_free"):
        D.Newton([p], hessian=hessian).step(lambda: saddle(p))
    assert torch.equal(p.detach(), torch.tensor([1.0, 1.0], dtype=F64))


@pytest.mark.parametrize("hessian", ["full", "diagonal"])
def test_saddle_free_moves_away_from_the_saddle(hessian: str) -> None:
    """On x² − y², H = diag(2, −2), |H| = diag(2, 2): from (1, 1) the step d = |H|⁻¹g =
    (1, −1) lands on (0, 2): x goes to the valley floor, y doubles away from the saddle
    (exact Newton would jump onto the saddle point (0, 0))."""
    p = torch.tensor([1.0, 1.0], dtype=F64, requires_grad=True)
    D.Newton([p], hessian=hessian, mode="saddle_free").step(lambda: saddle(p))
    torch.testing.assert_close(p.detach(), torch.tensor([0.0, 2.0], dtype=F64))
    assert saddle(p.detach()) < saddle(torch.tensor([1.0, 1.0]))


def test_damping_beyond_the_negative_curvature_makes_exact_mode_work() -> None:
    p = torch.tensor([1.0, 1.0], dtype=F64, requires_grad=True)
    D.Newton([p], damping=3.0).step(lambda: saddle(p))
    # (H + 3I) = diag(5, 1), g = (2, −2): d = (0.4, −2)
    torch.testing.assert_close(p.detach(), torch.tensor([0.6, 3.0], dtype=F64))


def test_newton_converges_quadratically_on_logistic_regression() -> None:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 3, generator=g, dtype=F64)
    y = (
        X @ torch.tensor([1.0, -2.0, 0.5], dtype=F64) + torch.randn(40, generator=g, dtype=F64) > 0
    ).to(F64)
    w = torch.zeros(3, dtype=F64, requires_grad=True)

    def loss():
        z = X @ w
        return torch.nn.functional.softplus(z).sum() - y @ z + 0.05 * (w @ w)

    opt = D.Newton([w])
    norms = []
    for _ in range(8):
        opt.step(loss)
        norms.append(opt.last["grad"].norm().item())
    final = torch.autograd.grad(loss(), w)[0].norm().item()
    assert final < 1e-12
    # quadratic convergence: once small, the gradient norm roughly squares every step
    k = next(i for i, n in enumerate(norms) if n < 1e-2)
    assert norms[k + 1] < 10 * norms[k] ** 2


def test_too_many_parameters_are_refused_with_a_message() -> None:
    x = torch.zeros(50, requires_grad=True)
    with pytest.raises(ValueError, match=r"50 parameters .* max_params=10.*hessian='diagonal'"):
        D.Newton([x], max_params=10).step(lambda: (x**2).sum())
    big = torch.zeros(5000, requires_grad=True)
    with pytest.raises(ValueError, match="max_params=4096"):
        D.Newton([big]).step(lambda: (big**2).sum())


def test_closure_misuse_is_explained() -> None:
    x = torch.ones(2, requires_grad=True)
    opt = D.Newton([x])
    with pytest.raises(ValueError, match="needs a closure"):
        opt.step()
    with pytest.raises(ValueError, match="with its graph"):
        opt.step(lambda: (x**2).sum().detach())


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(lr=-1.0), r"lr=-1\.0 is invalid"),
        (dict(damping=-0.1), r"damping=-0\.1 is invalid"),
        (dict(hessian="bfgs"), "hessian='bfgs' is not valid; choose one of: full, diagonal"),
        (dict(mode="trust"), "mode='trust' is not valid; choose one of: exact, saddle_free"),
        (dict(max_params=0), "max_params=0 is invalid"),
    ],
)
def test_newton_validation(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        D.Newton([torch.zeros(2, requires_grad=True)], **kw)


def test_newton_refuses_sharded_parameters() -> None:
    """One solve over the whole model: sharded (DTensor) parameters would each solve for
    their own block of H (a ZeroRedundancyOptimizer's share is refused too: the 2-rank job
    of tests/test_distributed_matrix.py checks it)."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    assert not dist.is_initialized()
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        mesh = init_device_mesh("cpu", (1,))
        shard = torch.nn.Parameter(distribute_tensor(torch.zeros(4, 2), mesh, [Shard(0)]))
        with pytest.raises(ValueError, match="the Hessian is not assembled across processes"):
            D.Newton([shard])
        D.Newton([torch.nn.Parameter(torch.zeros(2))])  # plain parameters: one process's solve
    finally:
        dist.destroy_process_group()
