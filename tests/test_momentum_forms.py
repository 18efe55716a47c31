"""The three momentum forms of the notes (and their Nesterov variants) against plain loops of
their textbook equations, written out here with no descend code involved.

Notation: θ parameter, g = ∇L(θ), β momentum, γ learning rate, τ dampening, t = 1, 2, …
"""

from __future__ import annotations

import pytest
import torch

import descend.optim as D
from descend.optim.fast import last_path

A = torch.tensor([[3.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 0.3]], dtype=torch.float64)
B = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
THETA0 = torch.tensor([2.0, 1.0, -1.5], dtype=torch.float64)
STEPS = 60
BOTH_PATHS = pytest.mark.parametrize("fused", [True, False], ids=["fused", "chain"])


def grad(theta: torch.Tensor) -> torch.Tensor:
    """∇L for L(θ) = ½θᵀAθ − bᵀθ + Σ(1 − cos θ)·0.5: an ill-conditioned bowl with a wobble."""
    return A @ theta - B + 0.5 * torch.sin(theta)


def run_descend(
    steps: int = STEPS, scheduler=None, *, fused: bool, **kwargs
) -> tuple[list[torch.Tensor], D.SGD]:
    """θ after each step of descend's SGD on the path ``fused`` names (asserted at the end);
    ``scheduler(opt)`` builds a torch lr scheduler."""
    p = THETA0.clone().requires_grad_()
    opt = D.SGD([p], fused=fused, **kwargs)
    sched = scheduler(opt) if scheduler else None
    path = []
    for _ in range(steps):
        p.grad = grad(p.detach())
        opt.step()
        if sched:
            sched.step()
        path.append(p.detach().clone())
    assert last_path(opt) == ({0: "fast"} if fused else {0: "default: fused=False"})
    return path, opt


def assert_paths_equal(a: list[torch.Tensor], b: list[torch.Tensor], tol: float = 1e-12) -> None:
    assert len(a) == len(b)
    for t, (x, y) in enumerate(zip(a, b), 1):
        assert (x - y).abs().max().item() <= tol, f"step {t}: {x} vs {y}"


def _moves(path: list[torch.Tensor]) -> None:
    """Guard: a test comparing two trajectories must compare ones that went somewhere."""
    assert (path[-1] - THETA0).abs().max() > 0.1


# --- the EMA ("classic") form: v = βv + (1 − β)g, θ −= γv -----------------------------------


@BOTH_PATHS
@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("debias", [False, True])
def test_ema_form(debias: bool, nesterov: bool, fused: bool) -> None:
    lr, beta = 0.1, 0.9
    theta, v, expected = THETA0.clone(), torch.zeros(3, dtype=torch.float64), []
    for t in range(1, STEPS + 1):
        g = grad(theta)
        v = beta * v + (1 - beta) * g
        # Nesterov: step along the next velocity βv + (1 − β)g instead of v
        d = beta * v + (1 - beta) * g if nesterov else v
        if debias:
            d = d / (1 - beta**t)
        theta = theta - lr * d
        expected.append(theta.clone())
    ours, opt = run_descend(
        fused=fused, lr=lr, momentum=beta, momentum_form="ema", debias=debias, nesterov=nesterov
    )
    _moves(expected)
    assert_paths_equal(ours, expected)
    torch.testing.assert_close(opt.state[opt.param_groups[0]["params"][0]]["momentum_buffer"], v)


@BOTH_PATHS
def test_ema_debias_makes_the_first_step_a_full_gradient_step(fused: bool) -> None:
    """v₁ = (1 − β)g, so without debiasing the first step is 10× too short at β = 0.9."""
    g = grad(THETA0)
    (plain,), _ = run_descend(1, fused=fused, lr=0.1, momentum=0.9, momentum_form="ema")
    (debiased,), _ = run_descend(
        1, fused=fused, lr=0.1, momentum=0.9, momentum_form="ema", debias=True
    )
    torch.testing.assert_close(debiased, THETA0 - 0.1 * g)
    torch.testing.assert_close(plain, THETA0 - 0.01 * g)


# --- the modern form (torch): v = βv + (1 − τ)g with v₁ = g, θ −= γv -------------------------


@pytest.mark.parametrize(
    "dampening, nesterov", [(0.0, False), (0.5, False), (0.0, True)], ids=["plain", "damp", "nag"]
)
@BOTH_PATHS
def test_modern_form(dampening: float, nesterov: bool, fused: bool) -> None:
    lr, beta = 0.05, 0.8
    theta, v, expected = THETA0.clone(), None, []
    for _ in range(STEPS):
        g = grad(theta)
        # torch's first-step rule: the buffer starts as g itself (no dampening on step 1)
        v = g.clone() if v is None else beta * v + (1 - dampening) * g
        d = g + beta * v if nesterov else v
        theta = theta - lr * d
        expected.append(theta.clone())
    ours, _ = run_descend(fused=fused, lr=lr, momentum=beta, dampening=dampening, nesterov=nesterov)
    _moves(expected)
    assert_paths_equal(ours, expected)


@BOTH_PATHS
def test_first_step_rule_v1_equals_g_even_with_dampening(fused: bool) -> None:
    g = grad(THETA0)
    (first,), opt = run_descend(1, fused=fused, lr=0.1, momentum=0.9, dampening=0.7)
    torch.testing.assert_close(first, THETA0 - 0.1 * g)  # not 0.1·(1 − 0.7)·g
    state = opt.state[opt.param_groups[0]["params"][0]]
    torch.testing.assert_close(state["momentum_buffer"], g)


# --- lr inside (Sutskever; Keras): v = βv + γg, θ −= v ---------------------------------------


@BOTH_PATHS
@pytest.mark.parametrize("nesterov", [False, True])
def test_lr_inside_form(nesterov: bool, fused: bool) -> None:
    lr, beta = 0.05, 0.8
    theta, v, expected = THETA0.clone(), torch.zeros(3, dtype=torch.float64), []
    for _ in range(STEPS):
        g = grad(theta)
        v = beta * v + lr * g
        theta = theta - (beta * v + lr * g if nesterov else v)
        expected.append(theta.clone())
    ours, _ = run_descend(
        fused=fused, lr=lr, momentum=beta, momentum_form="lr_inside", nesterov=nesterov
    )
    _moves(expected)
    assert_paths_equal(ours, expected)


# --- modern vs lr_inside: equal with a constant lr, different with a schedule ----------------


@BOTH_PATHS
@pytest.mark.parametrize("nesterov", [False, True])
def test_modern_and_lr_inside_match_with_a_constant_lr(nesterov: bool, fused: bool) -> None:
    modern, _ = run_descend(fused=fused, lr=0.05, momentum=0.8, nesterov=nesterov)
    inside, _ = run_descend(
        fused=fused, lr=0.05, momentum=0.8, nesterov=nesterov, momentum_form="lr_inside"
    )
    _moves(modern)
    assert_paths_equal(modern, inside, tol=1e-12)


def _decay(opt):
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 1.0 / (1.0 + 0.2 * epoch))


@BOTH_PATHS
def test_modern_and_lr_inside_differ_with_a_changing_lr(fused: bool) -> None:
    lr, beta = 0.05, 0.8
    # hand loops with γ_t = lr / (1 + 0.2(t − 1)), as LambdaLR sets it before step t
    theta_m, theta_i = THETA0.clone(), THETA0.clone()
    v_m, v_i = None, torch.zeros(3, dtype=torch.float64)
    for t in range(1, STEPS + 1):
        gamma = lr / (1 + 0.2 * (t - 1))
        g = grad(theta_m)
        v_m = g.clone() if v_m is None else beta * v_m + g
        theta_m = theta_m - gamma * v_m  # old velocities rescaled by today's γ
        g = grad(theta_i)
        v_i = beta * v_i + gamma * g  # each gradient keeps the γ of its own step
        theta_i = theta_i - v_i
    modern, _ = run_descend(fused=fused, lr=lr, momentum=beta, scheduler=_decay)
    inside, _ = run_descend(
        fused=fused, lr=lr, momentum=beta, scheduler=_decay, momentum_form="lr_inside"
    )
    torch.testing.assert_close(modern[-1], theta_m, rtol=0, atol=1e-12)
    torch.testing.assert_close(inside[-1], theta_i, rtol=0, atol=1e-12)
    assert (modern[-1] - inside[-1]).abs().max() > 1e-3


# --- Nesterov with the look-ahead gradient of the notes ----------------------------------------
#
# seed 001:  v_t = βv_{t−1} + η∇L(w_t − βv_{t−1});  w_{t+1} = w_t − v_t   (v_0 = 0).
# Change variables to the look-ahead point θ_t := w_t − βv_{t−1}, where the gradient is taken:
#   g_t = ∇L(θ_t),  v_t = βv_{t−1} + ηg_t,
#   θ_{t+1} = w_{t+1} − βv_t = (w_t − v_t) − βv_t = θ_t + βv_{t−1} − (1 + β)v_t
#           = θ_t − ηg_t − βv_t            (because βv_{t−1} − v_t = −ηg_t)
# which is the lr-inside Nesterov step θ −= βv + ηg with the same v, needing only ∇L(θ).
# Both start at θ_0 = w_0; the notes' iterate is recovered as w_t = θ_t + βv_{t−1}.
# With a constant η the modern (torch) form keeps buf = v/η, so there w_t = θ_t + βη·buf.


def _lookahead_nesterov(lr: float, beta: float, steps: int) -> list[torch.Tensor]:
    """The notes' algorithm: the gradient is evaluated at w − βv through a closure."""
    w, v, path = THETA0.clone(), torch.zeros(3, dtype=torch.float64), []
    for _ in range(steps):

        def closure(w=w, v=v):
            return grad(w - beta * v)

        v = beta * v + lr * closure()
        w = w - v
        path.append(w.clone())
    return path


@pytest.mark.parametrize("form", ["lr_inside", "modern"])
def test_lookahead_nesterov_is_the_reparametrised_form(form: str) -> None:
    lr, beta = 0.05, 0.9
    expected = _lookahead_nesterov(lr, beta, STEPS)
    p = THETA0.clone().requires_grad_()
    opt = D.SGD([p], lr=lr, momentum=beta, nesterov=True, momentum_form=form)

    def closure():
        opt.zero_grad()
        p.grad = grad(p.detach())  # ∇L at the optimizer's θ, the notes' look-ahead point
        return None

    for t in range(STEPS):
        opt.step(closure)
        v = opt.state[p]["momentum_buffer"]
        v_notes = v if form == "lr_inside" else lr * v
        w = p.detach() + beta * v_notes
        torch.testing.assert_close(w, expected[t], rtol=0, atol=1e-12)
    _moves(expected)


def test_seed003_lookahead_nesterov_matches_torch_nesterov() -> None:
    """seed 003: v = βv + ∇L(w − αβv); w −= αv. With θ = w − αβv the same algebra gives
    θ −= α(g + βv): torch's Nesterov (modern form), and w = θ + αβ·buf."""
    lr, beta = 0.05, 0.9
    w, v, expected = THETA0.clone(), torch.zeros(3, dtype=torch.float64), []
    for _ in range(STEPS):
        v = beta * v + grad(w - lr * beta * v)
        w = w - lr * v
        expected.append(w.clone())
    p = THETA0.clone().requires_grad_()
    opt = D.SGD([p], lr=lr, momentum=beta, nesterov=True)
    for t in range(STEPS):
        p.grad = grad(p.detach())
        opt.step()
        w_t = p.detach() + lr * beta * opt.state[p]["momentum_buffer"]
        torch.testing.assert_close(w_t, expected[t], rtol=0, atol=1e-12)
