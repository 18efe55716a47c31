"""The web lab runs the modern optimizers through its API (``descend serve``'s endpoints):
Lion's trajectory against a hand-written Lion loop, its landscape default lr, its catalogue
entry."""

from __future__ import annotations

import numpy as np
import pytest

from descend import landscapes
from descend.web import create_app
from test_web_api import Client, run_body


@pytest.fixture(scope="module")
def client():
    c = Client(create_app())
    yield c
    c.close()


def _rosenbrock_grad(p: np.ndarray) -> np.ndarray:
    x, y = p
    return np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])


def lion_loop(p: np.ndarray, lr: float, b1: float, b2: float, wd: float, steps: int):
    """Chen et al. 2023, Algorithm 2: u = sign(β₁m + (1 − β₁)g), θ ← θ − γ(u + λθ),
    m ← β₂m + (1 − β₂)g."""
    m = np.zeros_like(p)
    out = [p.copy()]
    for _ in range(steps):
        g = _rosenbrock_grad(p)
        u = np.sign(b1 * m + (1 - b1) * g)
        p = p - lr * (u + wd * p)
        m = b2 * m + (1 - b2) * g
        out.append(p.copy())
    return np.array(out)


@pytest.mark.parametrize(
    ("spec", "lr", "betas", "wd"),
    [
        ("lion:lr=0.01", 0.01, (0.9, 0.99), 0.0),
        ("lion:lr=0.003,betas=(0.95,0.98),weight_decay=0.1", 0.003, (0.95, 0.98), 0.1),
    ],
)
def test_lion_runs_in_the_web_lab_as_the_paper_writes_it(client, spec, lr, betas, wd):
    r = client.post("/api/run", json=run_body(optimizers=[spec], steps=60))
    assert r.status_code == 200, r.text
    run = r.json()["runs"][0]
    expected = lion_loop(np.array([-1.2, 1.0]), lr, *betas, wd, 60)
    assert np.allclose(np.array(run["trajectory"]), expected, rtol=1e-12, atol=1e-12)
    assert run["status"] == "ok" and run["lr_source"] == "spec"


def test_lion_without_lr_takes_its_declared_landscape_rate(client):
    run = client.post("/api/run", json=run_body(optimizers=["lion"])).json()["runs"][0]
    rosen = landscapes.get("rosenbrock")
    assert run["lr_source"] == "landscape"
    assert run["lr"] == rosen.default_lrs["lion"]
    assert run["lr"] == pytest.approx(0.3 * rosen.default_lrs["adam"])  # Spec lab_lr ("adam", 0.3)


def test_lion_is_in_the_catalogue_with_its_defaults(client):
    lion = client.get("/api/optimizers").json()["lion"]
    torch_defaults = lion["defaults"]["torch"]
    assert torch_defaults["lr"] == 1e-4  # lion-pytorch's default
    assert (torch_defaults["beta1"], torch_defaults["beta2"]) == (0.9, 0.99)
    assert set(lion["conventions"]) == {"torch", "optax", "keras"}
