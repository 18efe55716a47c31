"""Property-based fuzzing of the web API (hypothesis): no body, however odd, produces a 500,
invalid JSON, or a hang. Bounds are small (few steps, tiny grids) so the suite stays fast;
examples are derandomised so every run of the suite checks the same inputs."""

from __future__ import annotations

import json

import httpx
import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from descend import landscapes
from descend.web import create_app
from descend.web.catalogue import optimizers as optimizer_table

FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
ALLOWED = {200, 400, 413, 422, 503}  # 400: a body that is not even text


class Client:
    def __init__(self, app) -> None:
        self._portal_cm = start_blocking_portal()
        self.portal = self._portal_cm.__enter__()
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self.http = httpx.AsyncClient(transport=transport, base_url="http://testserver")

    def post(self, url: str, **kw) -> httpx.Response:
        return self.portal.call(lambda: self.http.post(url, **kw))

    def close(self) -> None:
        self.portal.call(self.http.aclose)
        self._portal_cm.__exit__(None, None, None)


@pytest.fixture(scope="module")
def client():
    c = Client(create_app(time_limit=5.0))
    yield c
    c.close()


def _no_constant(token: str):
    raise AssertionError(f"response JSON contains {token}")


def check(response: httpx.Response) -> None:
    """The properties every answer must have."""
    assert response.status_code in ALLOWED, (response.status_code, response.text[:2000])
    kind = response.headers.get("content-type", "")
    if kind.startswith("application/json"):
        body = json.loads(response.text, parse_constant=_no_constant)
        if response.status_code == 422:
            assert body["detail"], "a 422 must say what is wrong"
    elif response.status_code == 200:
        assert kind.startswith(("text/csv", "image/gif")), kind


# -- strategies ------------------------------------------------------------------------------
# Each field is mostly plausible (so requests reach the computation) and sometimes wild.
OPTIMIZERS = optimizer_table()
NAMES = landscapes.names()
JUNK = st.text(max_size=12)
NUMBERS = st.one_of(
    st.integers(-3, 3),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.sampled_from([0.0, 1e-300, 1e300, -1e6, 1e6, 2e6]),
)
CHOICES = sorted(
    {c for o in OPTIMIZERS.values() for h in o["hyperparameters"] for c in h["choices"] or []}
)
WILD_VALUE = st.one_of(
    NUMBERS.map(repr),
    st.sampled_from(["true", "false", "none", "nan", "inf", "-inf", "1e999", "", "="]),
    st.sampled_from(CHOICES + ["torch", "keras", "optax"]),
    JUNK,
)


def mostly(plausible, wild):
    """``plausible`` nine times in ten, ``wild`` otherwise."""
    return st.integers(0, 9).flatmap(lambda k: wild if k == 0 else plausible)


def plausible_value(hyper: dict):
    if hyper["kind"] == "choice":
        return st.sampled_from(hyper["choices"])
    if hyper["kind"] == "bool":
        return st.sampled_from(["true", "false"])
    return st.floats(0, 0.999).map(lambda v: f"{v:.3g}")


@st.composite
def specs(draw) -> str:
    name = draw(mostly(st.sampled_from(list(OPTIMIZERS)), JUNK))
    table = OPTIMIZERS.get(name, {"hyperparameters": [], "conventions": []})
    hypers = table["hyperparameters"]
    items = []
    for _ in range(draw(st.integers(0, 3))):
        if hypers and draw(st.integers(0, 5)) > 0:
            hyper = draw(st.sampled_from(hypers))
            value = draw(mostly(plausible_value(hyper), WILD_VALUE))
            items.append(f"{hyper['key']}={value}")
        elif table["conventions"] and draw(st.booleans()):
            items.append("convention=" + draw(st.sampled_from(table["conventions"])))
        else:
            items.append(
                draw(st.sampled_from(["betas", "nonfinite", "x", ""])) + "=" + draw(WILD_VALUE)
            )
    return name + (":" + ",".join(items) if items else "")


WILD_TOKENS = ["x3", "1e308", "**", "(", ")", ",", ".", "__import__", "'a'", "[0]", "lambda"]
WILD_TOKENS += ["<", "if", "z", " "]
WILD_EXPRESSION = st.lists(
    st.sampled_from(WILD_TOKENS + ["x", "y", "1", "+", "sin"]), min_size=1, max_size=14
).map("".join)
LEAVES = st.one_of(
    st.sampled_from(["x", "y", "pi", "e"]),
    st.floats(-1e3, 1e3, allow_nan=False).map(lambda v: f"{v:.4g}"),
)
EXPRESSION = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "**"]), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        st.tuples(st.sampled_from(["sin", "cos", "exp", "log", "sqrt", "abs", "tanh"]), inner).map(
            lambda t: f"{t[0]}({t[1]})"
        ),
        st.tuples(st.sampled_from(["max", "min", "atan2"]), inner, inner).map(
            lambda t: f"{t[0]}({t[1]}, {t[2]})"
        ),
    ),
    max_leaves=8,
)
DOMAIN = mostly(
    st.lists(st.tuples(st.floats(-5, 0), st.floats(0.1, 5)).map(list), min_size=1, max_size=2),
    st.lists(st.lists(NUMBERS, min_size=1, max_size=3), min_size=0, max_size=3),
)


@st.composite
def functions(draw) -> dict:
    if draw(st.integers(0, 2)) > 0:
        name = draw(mostly(st.sampled_from(NAMES), JUNK))
        params = {}
        if name in NAMES and draw(st.booleans()):
            keys = list(landscapes.parameters(name))
            values = mostly(st.floats(0.5, 50), NUMBERS)
            keys = draw(st.lists(mostly(st.sampled_from(keys), JUNK) if keys else JUNK, max_size=2))
            params = {k: draw(values) for k in keys}
        return {"name": name, "params": params} if params else {"name": name}
    text = draw(mostly(EXPRESSION, WILD_EXPRESSION))
    ref: dict = {"name": draw(st.sampled_from(["", "expr:"])) + text}
    if draw(st.booleans()):
        ref["domain"] = draw(DOMAIN)
    return ref


POINT = st.lists(st.floats(-3, 3), min_size=2, max_size=2)
POINTS = mostly(
    st.lists(POINT, min_size=1, max_size=2),
    st.lists(st.lists(NUMBERS, min_size=0, max_size=3), min_size=0, max_size=3),
)
STEPS = mostly(st.integers(1, 25), st.sampled_from([0, -1, 5001, 10**9, -(10**9)]))
SCHEDULES = mostly(
    st.sampled_from(["cosine", "step:step_size=3", "linear_warmup:warmup=5>cosine", "one_cycle"]),
    st.one_of(
        st.sampled_from(["exponential:gamma=2", "cosine:steps=0", "plateau", "step", ">", ""]),
        JUNK,
    ),
)


@st.composite
def run_bodies(draw) -> dict:
    body = {
        "function": draw(functions()),
        "optimizers": draw(mostly(st.lists(specs(), min_size=1, max_size=2), st.just([]))),
        "steps": draw(STEPS),
    }
    optional = {
        "starts": POINTS,
        "seeds": mostly(st.lists(st.integers(0, 3), min_size=1, max_size=2), st.just([-1])),
        "noise_batch": mostly(st.one_of(st.none(), st.integers(1, 8)), st.just(0)),
        "noise_scale": mostly(st.floats(0, 3), NUMBERS),
        "schedule": SCHEDULES,
        "tol": mostly(st.floats(1e-9, 1), NUMBERS),
        "record_every": mostly(st.integers(1, 5), st.integers(-1, 0)),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            body[key] = draw(strategy)
    return body


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | NUMBERS | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
ENDPOINTS = ["/api/run", "/api/run.csv", "/api/contour", "/api/theory", "/api/basins"]
ENDPOINTS += ["/api/gif", "/api/landscape"]


# -- properties ------------------------------------------------------------------------------
@pytest.mark.timeout(300)
@FUZZ
@given(endpoint=st.sampled_from(ENDPOINTS), body=JSON_VALUES)
def test_arbitrary_json_is_refused_cleanly(client, endpoint, body):
    check(client.post(endpoint, json=body))


@pytest.mark.timeout(300)
@FUZZ
@given(endpoint=st.sampled_from(ENDPOINTS), raw=st.binary(max_size=60))
def test_arbitrary_bytes_are_refused_cleanly(client, endpoint, raw):
    check(client.post(endpoint, content=raw, headers={"content-type": "application/json"}))


@pytest.mark.timeout(300)
@settings(FUZZ, max_examples=100)  # most get refused; about one in six runs the lab
@given(body=run_bodies(), endpoint=st.sampled_from(["/api/run", "/api/theory", "/api/run.csv"]))
def test_run_like_requests_never_fail_on_the_server(client, body, endpoint):
    check(client.post(endpoint, json=body))


@pytest.mark.timeout(300)
@FUZZ
@given(
    function=functions(),
    resolution=mostly(st.integers(8, 20), st.sampled_from([7, 301])),
    scale=st.sampled_from(["auto", "linear", "log", "cubic"]),
)
def test_contours_of_any_function_never_fail_on_the_server(client, function, resolution, scale):
    body = {"function": function, "resolution": resolution, "scale": scale}
    check(client.post("/api/contour", json=body))
    check(client.post("/api/landscape", json=function))


@pytest.mark.timeout(300)
@FUZZ
@given(
    function=functions(),
    optimizers=st.lists(specs(), min_size=1, max_size=3),
    grid=mostly(st.integers(4, 6), st.sampled_from([3, 81])),
    steps=STEPS,
)
def test_basins_never_fail_on_the_server(client, function, optimizers, grid, steps):
    body = {"function": function, "optimizers": optimizers, "grid": grid, "steps": steps}
    check(client.post("/api/basins", json=body))


@pytest.mark.timeout(300)
@FUZZ
@given(
    body=run_bodies(),
    frames=mostly(st.integers(2, 4), st.sampled_from([1, 121])),
    size=mostly(st.sampled_from([120, 130]), st.sampled_from([119, 641])),
)
def test_gifs_never_fail_on_the_server(client, body, frames, size):
    check(client.post("/api/gif", json={**body, "frames": frames, "size": size}))
