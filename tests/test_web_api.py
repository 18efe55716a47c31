"""The web lab's JSON API through the ASGI client: answers checked against independent
references (hand-written loops, torch.optim, closed forms), and every rejection path."""

from __future__ import annotations

import csv
import io
import json
import math
import re

import httpx
import numpy as np
import pytest
import torch
from anyio.from_thread import start_blocking_portal
from PIL import Image

from descend import landscapes, schedules
from descend.optim import available
from descend.web import create_app, limits
from descend.web.gif import FIRST_OPTIMIZER


class Client:
    """A synchronous client over httpx's ASGI transport (one event loop for the module)."""

    def __init__(self, app) -> None:
        self._portal_cm = start_blocking_portal()
        self.portal = self._portal_cm.__enter__()
        transport = httpx.ASGITransport(app=app)
        self.http = httpx.AsyncClient(transport=transport, base_url="http://testserver")

    def get(self, url: str, **kw) -> httpx.Response:
        return self.portal.call(lambda: self.http.get(url, **kw))

    def post(self, url: str, **kw) -> httpx.Response:
        return self.portal.call(lambda: self.http.post(url, **kw))

    def close(self) -> None:
        self.portal.call(self.http.aclose)
        self._portal_cm.__exit__(None, None, None)


@pytest.fixture(scope="module")
def client():
    c = Client(create_app())
    yield c
    c.close()


ROSENBROCK = {"name": "rosenbrock"}


def run_body(**kw) -> dict:
    body = {"function": ROSENBROCK, "optimizers": ["sgd:lr=0.001"], "starts": [[-1.2, 1.0]]}
    body["steps"] = 50
    body.update(kw)
    return body


def rejected(response: httpx.Response, field: str, *fragments: str) -> str:
    """Assert a 422 whose detail names ``field`` and contains every fragment; return it."""
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail
    text = " | ".join(".".join(str(p) for p in d["loc"]) + ": " + d["msg"] for d in detail)
    assert field in text, text
    for fragment in fragments:
        assert fragment in text, text
    return text


# -- the page and its assets ------------------------------------------------------------------
def test_page_and_assets_come_from_the_package_without_any_cdn(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert "/static/app.js" in refs and "/static/plot.js" in refs and "/static/style.css" in refs
    for ref in refs:
        assert ref.startswith(("/", "data:")), f"external reference {ref}"
    for name in ("app.js", "plot.js", "style.css"):
        asset = client.get(f"/static/{name}")
        assert asset.status_code == 200 and len(asset.content) > 1000
        assert not re.search(r"https?://", asset.text), f"{name} refers to the network"
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp


@pytest.mark.parametrize(
    "path", ["/static/index.html", "/static/../app.py", "/static/%2e%2e%2fapp.py", "/static/x.js"]
)
def test_static_serves_only_its_fixed_table(client, path):
    assert client.get(path).status_code == 404


def test_openapi_schema_documents_the_bounds_and_docs_page_is_off(client):
    schema = client.get("/openapi.json").json()
    for path in ["/api/run", "/api/contour", "/api/basins", "/api/theory", "/api/gif"]:
        assert path in schema["paths"]
    steps = schema["components"]["schemas"]["RunRequest"]["properties"]["steps"]
    assert steps["maximum"] == limits.MAX_STEPS and steps["minimum"] == 1
    assert client.get("/docs").status_code == 404  # Swagger UI would load from a CDN


# -- catalogues -------------------------------------------------------------------------------
def test_limits_endpoint_serves_the_limits_table(client):
    assert client.get("/api/limits").json() == json.loads(json.dumps(limits.table()))


def test_landscapes_are_the_whole_registry(client):
    listed = client.get("/api/landscapes").json()
    assert [entry["name"] for entry in listed] == landscapes.names()
    for entry in listed:
        ls = landscapes.get(entry["name"])
        assert entry["dim"] == ls.dim
        assert entry["domain"] == [list(b) for b in ls.domain]
        assert len(entry["minima"]) == len(ls.minima)


def test_optimizers_offer_every_spec_with_torch_defaults_and_conventions(client):
    table = client.get("/api/optimizers").json()
    assert set(table) == set(available())
    adam = table["adam"]
    reference = torch.optim.Adam([torch.zeros(1, requires_grad=True)]).defaults
    torch_defaults = adam["defaults"]["torch"]
    assert torch_defaults["lr"] == reference["lr"] and torch_defaults["eps"] == reference["eps"]
    assert (torch_defaults["beta1"], torch_defaults["beta2"]) == reference["betas"]
    assert adam["defaults"]["keras"]["eps"] == 1e-7  # Keras 3's Adam default
    assert set(adam["conventions"]) == {"torch", "keras", "optax"}
    keys = {h["key"]: h for h in adam["hyperparameters"]}
    assert keys["eps_placement"]["choices"] == ["outside", "inside", "hat"]
    assert keys["amsgrad"]["kind"] == "bool" and keys["max_grad_norm"]["optional"]
    sgd = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1).defaults
    assert table["momentum"]["defaults"]["torch"]["dampening"] == sgd["dampening"]
    assert table["newton"]["conventions"] == []


def test_schedules_endpoint_lists_every_schedule(client):
    assert set(client.get("/api/schedules").json()) == set(schedules.available())


# -- landscapes and contours ------------------------------------------------------------------
def test_contour_values_are_the_function_on_the_grid(client):
    r = client.post("/api/contour", json={"function": ROSENBROCK, "resolution": 21})
    assert r.status_code == 200
    data = r.json()
    x, y, z = np.array(data["x"]), np.array(data["y"]), np.array(data["z"], dtype=float)
    assert np.allclose(x, np.linspace(-2, 2, 21)) and np.allclose(y, np.linspace(-1, 3, 21))
    expected = (1 - x[None, :]) ** 2 + 100 * (y[:, None] - x[None, :] ** 2) ** 2
    assert np.allclose(z, expected, rtol=1e-12, atol=1e-12)
    assert data["scale"] == "log" and data["landscape"]["contour"] == "log"
    assert data["low"] == pytest.approx(expected.min()) and data["high"] == pytest.approx(
        expected.max()
    )


def test_contour_of_an_expression_with_its_domain_and_a_forced_scale(client):
    body = {
        "function": {"name": "expr:x**2 + 3*y", "domain": [[0, 1], [-1, 2]]},
        "resolution": 8,
        "scale": "log",
    }
    data = client.post("/api/contour", json=body).json()
    x, y = np.linspace(0, 1, 8), np.linspace(-1, 2, 8)
    assert np.allclose(np.array(data["z"]), x[None, :] ** 2 + 3 * y[:, None])
    assert data["scale"] == "log" and data["landscape"]["kind"] == "expression"


def test_one_dimensional_contour_is_a_curve(client):
    body = {"function": {"name": "quadratic", "params": {"curvature": 3}}, "resolution": 9}
    data = client.post("/api/contour", json=body).json()
    x = np.linspace(-2, 2, 9)
    assert "y" not in data and np.allclose(data["z"], 0.5 * 3 * x**2)


def test_non_finite_values_become_null(client):
    body = {"function": {"name": "expr:log(x)", "domain": [[-1, 1]]}, "resolution": 9}
    r = client.post("/api/contour", json=body)
    assert r.status_code == 200
    z = r.json()["z"]
    assert z[:5] == [None] * 5  # log of x ≤ 0 is NaN or −inf
    assert z[8] == pytest.approx(0.0)


def test_describe_a_landscape(client):
    r = client.post("/api/landscape", json={"name": "ravine", "params": {"kappa": 50}})
    data = r.json()
    assert r.status_code == 200 and data["params"]["lam2"] == 50  # κ = λ₂/λ₁, λ₁ = 1
    assert data["default_lrs"] == dict(landscapes.get("ravine", kappa=50).default_lrs)


# -- runs ----------------------------------------------------------------------------------------
def rosenbrock_grad(p):
    x, y = p
    return np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])


def rosenbrock(p):
    return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2


def test_sgd_trajectory_matches_a_hand_written_loop(client):
    r = client.post("/api/run", json=run_body(optimizers=["sgd:lr=0.001"], steps=60, tol=0.5))
    assert r.status_code == 200
    run = r.json()["runs"][0]
    p = np.array([-1.2, 1.0])
    expected, losses = [p.copy()], [rosenbrock(p)]
    for _ in range(60):
        p = p - 0.001 * rosenbrock_grad(p)
        expected.append(p.copy())
        losses.append(rosenbrock(p))
    assert np.allclose(np.array(run["trajectory"]), np.array(expected), rtol=1e-12, atol=1e-12)
    assert np.allclose(run["losses"], losses, rtol=1e-12)
    reached = next((t for t, f in enumerate(losses) if f < 0.5), None)
    assert run["steps_to_tol"] == reached
    assert run["status"] == "ok" and not run["diverged"]
    assert run["final_loss"] == pytest.approx(losses[-1], rel=1e-12)
    assert run["basin"] == 0 and run["lr_source"] == "spec"


@pytest.mark.parametrize(
    ("spec", "make"),
    [
        ("momentum:lr=0.0005,momentum=0.9", lambda w: torch.optim.SGD(w, lr=5e-4, momentum=0.9)),
        (
            "nesterov:lr=0.0005,momentum=0.8",
            lambda w: torch.optim.SGD(w, lr=5e-4, momentum=0.8, nesterov=True),
        ),
        ("adam:lr=0.02", lambda w: torch.optim.Adam(w, lr=0.02)),
        ("nadam:lr=0.01", lambda w: torch.optim.NAdam(w, lr=0.01)),
    ],
)
def test_trajectories_match_torch_optim(client, spec, make):
    r = client.post("/api/run", json=run_body(optimizers=[spec], steps=40))
    got = np.array(r.json()["runs"][0]["trajectory"])
    w = torch.tensor([-1.2, 1.0], dtype=torch.float64, requires_grad=True)
    opt = make([w])
    expected = [w.detach().numpy().copy()]
    for _ in range(40):
        opt.zero_grad()
        x, y = w[0], w[1]
        ((1 - x) ** 2 + 100 * (y - x * x) ** 2).backward()
        opt.step()
        expected.append(w.detach().numpy().copy())
    assert np.allclose(got, np.array(expected), rtol=1e-10, atol=1e-12)


def test_a_quadratic_expression_gets_its_minimum_as_the_target(client):
    # f = (x − 1)² + 10y² + 3: minimum 3 at (1, 0); GD with lr 0.05 multiplies x − 1 by 0.9
    # and y by 0 each step, so f − 3 = 0.81ᵗ·(x₀ − 1)² from step 1 on.
    body = {
        "function": {"name": "(x - 1)**2 + 10*y**2 + 3"},
        "optimizers": ["sgd:lr=0.05"],
        "starts": [[2.0, 1.0]],
        "steps": 80,
        "tol": 1e-4,
    }
    data = client.post("/api/run", json=body).json()
    assert data["f_star"] == pytest.approx(3.0)
    expected = next(t for t in range(1, 80) if 0.81**t < 1e-4)
    assert data["runs"][0]["steps_to_tol"] == expected


def test_missing_lr_takes_the_landscape_default(client):
    run = client.post("/api/run", json=run_body(optimizers=["adam"])).json()["runs"][0]
    assert run["lr"] == landscapes.get("rosenbrock").default_lrs["adam"]
    assert run["lr_source"] == "landscape"


def test_divergence_is_reported_and_the_trajectory_stops(client):
    r = client.post("/api/run", json=run_body(optimizers=["sgd:lr=0.1"], steps=30))
    run = r.json()["runs"][0]
    assert run["diverged"] and run["status"] == "diverged"
    assert run["final_loss"] is None and run["basin"] is None
    assert run["diverged_step"] is not None and run["trajectory"][-1] == [None, None]


def test_basin_is_the_minimum_reached(client):
    body = run_body(function={"name": "himmelblau"}, optimizers=["adam:lr=0.05"], starts=[[-3, -3]])
    data = client.post("/api/run", json={**body, "steps": 400}).json()
    run = data["runs"][0]
    location = data["landscape"]["minima"][run["basin"]]["location"]
    assert location == pytest.approx([-3.779310, -3.283186], abs=1e-5)
    assert run["distance"] < 1e-3


def test_grid_of_optimizers_starts_and_seeds_and_default_starts(client):
    body = run_body(optimizers=["sgd", "adam"], starts=[[-1, 1], [0.5, 0.5], [1, 2]], seeds=[3])
    data = client.post("/api/run", json=body).json()
    assert [(r["optimizer_index"], r["start"]) for r in data["runs"]] == [
        (k, s) for k in (0, 1) for s in ([-1, 1], [0.5, 0.5], [1, 2])
    ]
    body.pop("starts")
    data = client.post("/api/run", json=body).json()
    assert len(data["runs"]) == 2 * len(landscapes.get("rosenbrock").starts)


def test_noise_is_reproducible_per_seed(client):
    body = run_body(function={"name": "bowl"}, starts=[[1, 1]], noise_batch=4, steps=20)
    both = client.post("/api/run", json={**body, "seeds": [0, 1]}).json()["runs"]
    alone = client.post("/api/run", json={**body, "seeds": [1]}).json()["runs"]
    assert both[1]["trajectory"] == alone[0]["trajectory"]
    assert both[0]["trajectory"] != both[1]["trajectory"]
    exact = client.post("/api/run", json={**body, "noise_batch": None}).json()["runs"][0]
    assert exact["trajectory"] != both[0]["trajectory"]


def test_schedule_scales_each_step(client):
    # f = ½·2·x², x₀ = 1.5, lr 0.1, step schedule halving every step: x_{t+1} = x_t(1 − 0.2·½ᵗ)
    body = {
        "function": {"name": "quadratic", "params": {"curvature": 2}},
        "optimizers": ["sgd:lr=0.1"],
        "starts": [[1.5]],
        "steps": 6,
        "schedule": "step:step_size=1,gamma=0.5",
    }
    run = client.post("/api/run", json=body).json()["runs"][0]
    x, expected = 1.5, [1.5]
    for t in range(6):
        x *= 1 - 0.2 * 0.5**t
        expected.append(x)
    assert np.allclose([p[0] for p in run["trajectory"]], expected, rtol=1e-13)


def test_long_runs_are_thinned_to_about_two_thousand_points(client):
    body = run_body(function={"name": "bowl"}, starts=[[1, 1]], steps=4001)
    data = client.post("/api/run", json=body).json()
    steps = data["recorded_steps"]
    assert steps[:3] == [0, 3, 6] and steps[-1] == 4001 and len(steps) == 1335
    explicit = client.post("/api/run", json={**body, "steps": 10, "record_every": 4}).json()
    assert explicit["recorded_steps"] == [0, 4, 8, 10]


def test_csv_export_has_the_json_trajectories(client):
    body = run_body(optimizers=["sgd:lr=0.001", "adam:lr=0.01"], steps=7)
    data = client.post("/api/run", json=body).json()
    r = client.post("/api/run.csv", json=body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 2 * 8
    for row in rows:
        run = data["runs"][int(row["run"])]
        step = int(row["step"])
        assert [float(row["x"]), float(row["y"])] == run["trajectory"][step]
        assert float(row["loss"]) == run["losses"][step]
        assert row["spec"] == run["label"]


def test_gif_animates_the_trajectories(client):
    body = run_body(optimizers=["sgd:lr=0.001", "adam:lr=0.05"], steps=80)
    r = client.post("/api/gif", json={**body, "frames": 6, "size": 160, "frame_ms": 50})
    assert r.status_code == 200 and r.headers["content-type"] == "image/gif"
    image = Image.open(io.BytesIO(r.content))
    assert image.format == "GIF" and image.size == (160, 160) and image.n_frames == 6
    palette = image.getpalette()

    def pixels_of(frame: int, colour_index: int) -> int:
        image.seek(frame)
        rgb = np.array(image.convert("RGB")).reshape(-1, 3)
        colour = palette[3 * colour_index : 3 * colour_index + 3]
        return int((rgb == colour).all(axis=1).sum())

    adam = FIRST_OPTIMIZER + 1
    assert pixels_of(5, adam) > pixels_of(0, adam) + 20  # the trail grew
    assert pixels_of(5, FIRST_OPTIMIZER) > 0


# -- theory ----------------------------------------------------------------------------------
def test_theory_on_a_quadratic_matches_closed_forms_and_measurement(client):
    body = {
        "function": {"name": "ravine", "params": {"kappa": 100}},
        "optimizers": [
            "sgd:lr=0.0198",
            "momentum:lr=0.0331,momentum=0.669",
            "momentum-ema:lr=0.04,momentum=0.5",
            "adam:lr=0.1",
        ],
        "starts": [[-1.8, 1.2]],
        "steps": 400,
    }
    t = client.post("/api/theory", json=body).json()
    assert t["quadratic"] and t["kappa"] == pytest.approx(100)
    assert t["eigenvalues"] == pytest.approx([1, 100]) and t["minimizer"] == pytest.approx([0, 0])
    # Goh (2017): α* = 2/(λ₁+λₙ); heavy ball α* = (2/(√λ₁+√λₙ))², β* = ((√κ−1)/(√κ+1))²
    assert t["gd"]["alpha"] == pytest.approx(2 / 101) and t["gd"]["rate"] == pytest.approx(99 / 101)
    assert t["gd"]["max_lr"] == pytest.approx(2 / 100)
    assert t["heavy_ball"]["alpha"] == pytest.approx((2 / 11) ** 2)
    assert t["heavy_ball"]["beta"] == pytest.approx((9 / 11) ** 2)
    assert t["heavy_ball"]["rate"] == pytest.approx(9 / 11)
    sgd, momentum, ema, adam = t["runs"]
    assert sgd["predicted_rate"] == pytest.approx(max(abs(1 - 0.0198), abs(1 - 1.98)))
    assert sgd["measured_rate"] == pytest.approx(sgd["predicted_rate"], abs=1e-3)
    assert momentum["measured_rate"] == pytest.approx(momentum["predicted_rate"], abs=1e-3)
    # the EMA form v = βv + (1−β)g is heavy ball with α(1−β): roots of z² − (1+β−αλ)z + β
    a = 0.04 * 0.5
    rates = [abs(np.roots([1, -(1 + 0.5 - a * lam), 0.5])).max() for lam in (1, 100)]
    assert ema["predicted_rate"] == pytest.approx(max(rates))
    assert ema["measured_rate"] == pytest.approx(ema["predicted_rate"], abs=2e-3)
    assert ema["max_lr"] == pytest.approx((2 + 2 * 0.5) / (1 - 0.5) / 100)
    assert not adam["covered"] and "theory covers" in adam["note"]


def test_theory_says_why_not_for_other_functions(client):
    body = run_body(steps=5)
    t = client.post("/api/theory", json=body).json()
    assert t == {"quadratic": False, "reason": t["reason"]} and "changes" in t["reason"]
    saddle = client.post("/api/theory", json=run_body(function={"name": "saddle"})).json()
    assert not saddle["quadratic"] and "not all positive" in saddle["reason"]


def test_theory_past_the_stability_edge_measures_growth(client):
    body = {
        "function": {"name": "expr:x**2 + 10*y**2"},  # λ = 2, 20: GD edge α < 0.1
        "optimizers": ["sgd:lr=0.105"],
        "starts": [[0.5, 0.5]],
        "steps": 40,
    }
    t = client.post("/api/theory", json=body).json()
    run = t["runs"][0]
    assert run["max_lr"] == pytest.approx(0.1) and not run["stable"]
    assert run["predicted_rate"] == pytest.approx(abs(1 - 0.105 * 20))
    assert run["measured_rate"] == pytest.approx(run["predicted_rate"], abs=1e-3)


# -- basins ---------------------------------------------------------------------------------
def test_basins_colour_each_start_by_its_minimum(client):
    body = {"function": {"name": "himmelblau"}, "optimizers": ["adam:lr=0.05"], "grid": 11}
    data = client.post("/api/basins", json={**body, "steps": 400}).json()
    labels = np.array(data["maps"][0]["labels"])
    assert labels.shape == (11, 11) and data["xs"] == pytest.approx(np.linspace(-5, 5, 11))
    minima = [m["location"] for m in data["landscape"]["minima"]]
    at = minima.index(pytest.approx([3.0, 2.0]))
    assert labels[data["ys"].index(2.0), data["xs"].index(3.0)] == at  # starts on its minimum
    assert set(np.unique(labels)) <= {-3, -2, -1, 0, 1, 2, 3}
    shares = data["maps"][0]["shares"]
    assert sum(shares.values()) == pytest.approx(1.0)


# -- rejections -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"steps": 0}, "steps", "greater than or equal to 1"),
        ({"steps": limits.MAX_STEPS + 1}, "steps", f"less than or equal to {limits.MAX_STEPS}"),
        ({"steps": "many"}, "steps", "integer"),
        ({"steps": 1.5}, "steps", "integer"),
        ({"optimizers": []}, "optimizers", "at least 1"),
        ({"optimizers": ["sgd"] * 13}, "optimizers", "at most 12"),
        ({"optimizers": ["sgd:lr=" + "1" * 300]}, "optimizers", "at most 300 characters"),
        ({"optimizers": ["adamm"]}, "optimizers.0", "unknown optimizer 'adamm'"),
        ({"optimizers": ["sgd", "adam:betas2=0.9"]}, "optimizers.1", "unknown key 'betas2'"),
        ({"optimizers": ["adam:lr=-1"]}, "optimizers.0", "≥ 0"),
        ({"optimizers": ["momentum:momentum=1"]}, "optimizers.0", "[0, 1)"),
        ({"optimizers": ["adam:lr"]}, "optimizers.0", "key=value"),
        ({"starts": [[0, 0]] * 17}, "starts", "at most 16"),
        ({"starts": [[0, 0, 0]]}, "starts.0", "at most 2"),
        ({"starts": [[0.5]]}, "starts.0", "needs 2 coordinate"),
        ({"starts": [[1e7, 0]]}, "starts.0.0", "less than or equal to 1000000"),
        ({"seeds": list(range(17))}, "seeds", "at most 16"),
        ({"seeds": [-1]}, "seeds.0", "greater than or equal to 0"),
        (
            {"optimizers": ["sgd"] * 12, "starts": [[0, 0]] * 6},
            "body",
            "72 runs; at most 64",
        ),
        ({"optimizers": ["sgd"] * 12, "steps": 5000}, "body", "at most 24000"),
        ({"noise_batch": 0}, "noise_batch", "greater than or equal to 1"),
        ({"noise_batch": 100_001}, "noise_batch", "less than or equal to 100000"),
        ({"noise_scale": -1}, "noise_scale", "greater than or equal to 0"),
        ({"noise_scale": 1001}, "noise_scale", "less than or equal to 1000"),
        ({"schedule": "cosin"}, "schedule", "/api/schedules"),
        ({"schedule": "x" * 301}, "schedule", "at most 300 characters"),
        ({"schedule": "step:gamma=2"}, "schedule", "step_size"),
        ({"tol": 0}, "tol", "greater than 0"),
        ({"record_every": 0}, "record_every", "greater than or equal to 1"),
        ({"colour": "red"}, "colour", "Extra inputs are not permitted"),
        (
            {"optimizers": ["sgd"] * 4, "starts": [[0, 0]] * 16, "steps": 5000, "record_every": 1},
            "record_every",
            "more than 200000",
        ),
    ],
)
def test_run_rejections_say_what_is_allowed(client, change, field, fragment):
    rejected(client.post("/api/run", json=run_body(**change)), field, fragment)


@pytest.mark.parametrize(
    ("function", "field", "fragment"),
    [
        ({"name": "rosenbrok"}, "function.name", "Did you mean 'rosenbrock'"),
        ({"name": ""}, "function.name", "at least 1 character"),
        ({"name": "x+" * 260}, "function.name", "at most 505 characters"),
        ({"name": "x+" * 250 + "x"}, "function.name", "the limit is 500"),
        ({"name": "expr:" + "sin(" * 60 + "x" + ")" * 60}, "function.name", "nest"),
        ({"name": "x**2 + __import__('os')"}, "function.name", "unknown function '__import__'"),
        ({"name": "x.real"}, "function.name", "attribute"),
        ({"name": "9**9**9"}, "function.name", "exponent"),
        ({"name": "x + y + z"}, "function.name", "1 or 2 variables"),
        ({"name": "rosenbrock", "domain": [[0, 1]]}, "function.domain", "expression"),
        ({"name": "x**2", "params": {"a": 1}}, "function.params", "registered functions"),
        ({"name": "ravine", "params": {"kapa": 3}}, "function.params", "no parameter 'kapa'"),
        ({"name": "ravine", "params": {"kappa": -3}}, "function.params", "kappa"),
        ({"name": "ravine", "params": {"kappa": "big"}}, "function.params.kappa", "number"),
        ({"name": "ravine", "params": {"kappa": 1e7}}, "function.params.kappa", "1000000"),
        ({"name": "ravine", "params": {f"p{i}": 1 for i in range(9)}}, "params", "at most 8"),
        ({"name": "x*y", "domain": [[1, 0], [0, 1]]}, "function.name", "lo < hi"),
        ({"name": "x*y", "domain": [[0, 1]] * 3}, "function.domain", "at most 2"),
        ({"name": "x*y", "domain": [[0, 1, 2]]}, "function.domain.0", "at most 2"),
    ],
)
def test_function_rejections(client, function, field, fragment):
    body = {"function": function, "resolution": 10}
    rejected(client.post("/api/contour", json=body), field, fragment)


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"resolution": 7}, "resolution", "greater than or equal to 8"),
        ({"resolution": 301}, "resolution", "less than or equal to 300"),
        ({"scale": "cubic"}, "scale", "'auto', 'linear' or 'log'"),
    ],
)
def test_contour_rejections(client, body, field, fragment):
    rejected(client.post("/api/contour", json={"function": ROSENBROCK, **body}), field, fragment)


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"frames": 1}, "frames", "greater than or equal to 2"),
        ({"frames": 121}, "frames", "less than or equal to 120"),
        ({"size": 100}, "size", "greater than or equal to 120"),
        ({"size": 641}, "size", "less than or equal to 640"),
        ({"frame_ms": 10}, "frame_ms", "greater than or equal to 20"),
        ({"steps": 0}, "steps", "greater than or equal to 1"),
    ],
)
def test_gif_rejections(client, change, field, fragment):
    rejected(client.post("/api/gif", json=run_body(**change)), field, fragment)


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"grid": 3}, "grid", "greater than or equal to 4"),
        ({"grid": 81}, "grid", "less than or equal to 80"),
        ({"optimizers": ["sgd"] * 7}, "optimizers", "at most 6"),
        ({"optimizers": ["sgd"] * 4, "steps": 2000}, "body", "at most 6000"),
        ({"steps": 2001}, "steps", "less than or equal to 2000"),
        ({"function": {"name": "x**2 + y**2"}}, "function.name", "no minima"),
        ({"function": {"name": "double-well"}}, "function.name", "function of x and y"),
        ({"optimizers": ["adam:eps=-1"]}, "optimizers.0", "eps"),
    ],
)
def test_basins_rejections(client, change, field, fragment):
    body = {"function": {"name": "himmelblau"}, "optimizers": ["sgd"], "grid": 4, "steps": 5}
    rejected(client.post("/api/basins", json={**body, **change}), field, fragment)


def test_theory_rejects_like_a_run(client):
    rejected(client.post("/api/theory", json=run_body(steps=0)), "steps", "greater than")


def test_non_finite_numbers_and_bad_json_are_refused(client):
    raw = '{"function": {"name": "ravine", "params": {"kappa": NaN}}, "resolution": 10}'
    r = client.post("/api/contour", content=raw, headers={"content-type": "application/json"})
    rejected(r, "kappa", "finite number")
    raw = '{"function": {"name": "rosenbrock"}, "optimizers": ["sgd"], "tol": Infinity}'
    r = client.post("/api/run", content=raw, headers={"content-type": "application/json"})
    rejected(r, "tol", "finite number")
    r = client.post("/api/run", content="{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_a_large_body_is_refused_before_parsing(client):
    big = json.dumps(run_body(optimizers=["sgd"], padding="x" * (limits.MAX_BODY_BYTES + 1)))
    r = client.post("/api/run", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and str(limits.MAX_BODY_BYTES) in r.json()["detail"]


def test_a_request_past_the_time_limit_gets_503():
    quick = Client(create_app(time_limit=0.01))
    try:
        body = run_body(optimizers=["sgd", "adam", "momentum", "nesterov"], steps=5000)
        r = quick.post("/api/run", json=body)
        assert r.status_code == 503 and "time limit of 0.01 s" in r.json()["detail"]
        gif = quick.post("/api/gif", json={**body, "steps": 4000, "frames": 120})
        assert gif.status_code == 503
    finally:
        quick.close()


def test_the_served_app_accepts_only_its_host_names():
    guarded = Client(create_app(allowed_hosts=["127.0.0.1", "localhost"]))
    try:
        assert guarded.get("/api/limits", headers={"host": "127.0.0.1:8000"}).status_code == 200
        assert guarded.get("/api/limits", headers={"host": "evil.example"}).status_code == 400
    finally:
        guarded.close()


def test_serve_command_binds_to_loopback_by_default():
    from descend.cli import build_parser
    from descend.cli.serve import allowed_hosts

    args = build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1" and args.port == 8000
    assert "localhost" in allowed_hosts("127.0.0.1") and allowed_hosts("0.0.0.0") is None
    assert math.isfinite(limits.TIME_LIMIT_S)


def test_descend_serve_answers_on_loopback():
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "descend", "serve", "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/limits", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read().decode()
                assert time.monotonic() < deadline, "descend serve did not answer in 60 s"
                time.sleep(0.2)
        assert r.status_code == 200 and r.json()["steps"] == [1, limits.MAX_STEPS]
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert page.status_code == 200 and "descend" in page.text
        # bound to 127.0.0.1, it refuses Host names other than the loopback ones
        foreign = httpx.get(f"http://127.0.0.1:{port}/", headers={"host": "evil.example"})
        assert foreign.status_code == 400
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_serve_command_rejects_a_bad_port(capsys):
    from descend.cli import main

    assert main(["serve", "--port", "70000"]) == 2
    assert "--port must be in 1..65535" in capsys.readouterr().err
