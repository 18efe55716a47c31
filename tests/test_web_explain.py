"""``POST /api/explain``: the explain panel's numbers are descend.explain's for the same run."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient  # the web extra: a missing one fails, never skips

from descend.explain import explain
from descend.landscapes import get
from descend.web import create_app


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app())


def test_the_answer_is_the_explain_table_at_that_step(client: TestClient) -> None:
    body = {
        "function": {"name": "ravine", "params": {"kappa": 20}},
        "optimizer": "nesterov:lr=0.05",
        "start": [1.0, -0.5],
        "step": 4,
    }
    answer = client.post("/api/explain", json=body).json()
    frame = explain(
        "nesterov:lr=0.05", function=get("ravine", kappa=20), steps=4, start=[1.0, -0.5]
    )
    last = frame[frame["step"] == 4]
    assert answer["step"] == 4 and answer["optimizer"] == "nesterov"
    got = {q["name"]: q["values"] for q in answer["quantities"]}
    assert set(got) == set(frame.columns) - {"step", "element"}
    for name, values in got.items():
        assert values == last[name].tolist(), name
    assert answer["command"] is None  # the command line cannot name kappa=20
    symbols = {q["name"]: q["symbol"] for q in answer["quantities"]}
    assert symbols["velocity"] == "v" and symbols["new_param"] == "θ"


def test_registered_function_gets_the_reproducing_command(client: TestClient) -> None:
    body = {"function": {"name": "himmelblau"}, "optimizer": "adam", "start": [0, 0], "step": 2}
    answer = client.post("/api/explain", json=body).json()
    assert (
        answer["command"]
        == "descend explain adam --function himmelblau --start '0.0;0.0' --steps 2"
    )


@pytest.mark.parametrize(
    "change, loc, message",
    [
        ({"optimizer": "adam:lr=abc"}, ["body", "optimizer"], "lr must be a number"),
        ({"start": [1.0]}, ["body", "start"], "needs 2 coordinate(s)"),
        ({"step": 0}, ["body", "step"], "greater than or equal to 1"),
        ({"step": 10**6}, ["body", "step"], "less than or equal to 5000"),
    ],
)
def test_bad_requests_name_the_field(client: TestClient, change, loc, message) -> None:
    body = {"function": {"name": "ravine"}, "optimizer": "adam", "start": [1, 1], "step": 3}
    response = client.post("/api/explain", json={**body, **change})
    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"] == loc and message in detail["msg"]
