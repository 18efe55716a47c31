"""The report's section "The modern optimizers": what it shows comes from the registry and from
its runs, and each paper's claim is judged by the criterion the table states."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from descend import landscapes, train
from descend.optim.registry import REGISTRY
from descend.report import modern


@pytest.fixture(scope="module")
def section():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as descend demo runs it
    try:
        return modern.modern_section(quick=True)
    finally:
        torch.set_num_threads(threads)


def _table(section, start: str) -> pd.DataFrame:
    return next(df for caption, df in section.tables if caption.startswith(start))


def test_modern_names_are_the_registry_minus_the_notes(monkeypatch):
    names = modern.modern_names()
    assert "lion" in names
    assert not set(names) & set(modern.NOTES)
    assert set(names) | set(modern.NOTES) == set(REGISTRY)
    # a newly registered optimizer joins the section without any list to edit
    monkeypatch.setitem(REGISTRY, "test-sign", REGISTRY["lion"])
    assert "test-sign" in modern.modern_names()


def test_every_registered_modern_optimizer_is_in_the_section(section):
    names = modern.modern_names()
    assert section.key == "modern" and section.numbers["names"] == names
    land = _table(section, "The adaptive section's landscapes")
    for fn, _ in modern.LANDSCAPES:
        rows = land[land["function"] == fn]
        shown = {spec.split(":")[0] for spec in rows["optimizer"]}
        assert shown == {"adam", "adamw", *names}
        # each modern optimizer ran at the landscape's declared rate (lab_lr), not a tuned one
        default = landscapes.get(fn).default_lrs
        for _, r in rows.iterrows():
            name = r["optimizer"].split(":")[0]
            expected = modern.BASELINE_LAB_LR if name in ("adam", "adamw") else default[name]
            assert r["lr"] == pytest.approx(expected, rel=1e-12)
    digits = _table(section, "Digits, next to Adam/AdamW")
    assert [s.split(" ")[0].split(":")[0] for s in digits["optimizer"]] == [
        "adam",
        "adamw",
        *names,
    ]
    assert "error" not in digits.columns, digits
    assert len(section.figures) == 2 * len(modern.LANDSCAPES) + 1


def test_claims_table_has_the_registered_claims_only(section):
    claims = section.numbers["claims"]
    expected = [name for _, name in modern.registered_claims(modern.modern_names())]
    assert [r["optimizer"] for r in claims] == expected
    assert "lion" in expected
    for r in claims:
        assert r["holds?"] in ("yes", "no"), r["measured"]  # every check ran
    # a claim whose optimizer is not registered is absent, here and in the page's table
    absent = [c for c in modern.CLAIMS if not set(c.names) & set(REGISTRY)]
    table = _table(section, "Each paper's claim")
    for c in absent:
        assert c.claim not in set(table["claim"])
    assert modern.registered_claims(["lion"]) == [(modern.CLAIMS[0], "lion")]
    assert modern.registered_claims(["sgd", "adam"]) == []


def test_lion_claim_numbers_come_from_the_runs(section):
    """The digits table's AdamW row is the claim's baseline, and Lion at AdamW's lr ÷ 3 (λ × 3),
    rerun here with the same seeds and budget, gives the claim's number."""
    row = next(r for r in section.numbers["claims"] if r["optimizer"] == "lion")
    n = row["numbers"]
    digits = _table(section, "Digits, next to Adam/AdamW")
    adamw = digits[digits["optimizer"] == modern.BASELINES[1]].iloc[0]
    assert n["adamw"]["lr"] == adamw["selected lr"]
    assert n["adamw"]["loss"] == adamw["final val loss"]
    lr = n["adamw"]["lr"] / 3
    rerun = train.compare(
        "digits",
        [f"lion:lr={lr!r},weight_decay={0.03!r}"],
        seeds=section.numbers["seeds"],
        epochs=section.numbers["epochs"],
        threads=1,
        eval_points=5,
        trace_every=10**9,
    )
    assert rerun.runs["final_val_loss"].mean() == pytest.approx(n["lion_3"], rel=1e-6)
    verdict = "yes" if min(n["lion_3"], n["lion_10"]) <= modern.MATCH * n["adamw"]["loss"] else "no"
    assert row["holds?"] == verdict


def _claim(name: str) -> modern.Claim:
    return next(c for c in modern.CLAIMS if name in c.names)


def _loss(x: float) -> dict:
    return {"lr": 1e-3, "loss": x, "loss_ci": math.nan, "acc": 0.9, "acc_ci": math.nan}


@pytest.mark.parametrize(
    ("name", "holds", "fails"),
    [
        (
            "lion",
            {"adamw": _loss(0.20), "lion_3": 0.219, "lion_10": 0.5},
            {"adamw": _loss(0.20), "lion_3": 0.23, "lion_10": 0.5},
        ),
        (
            "prodigy",
            {"default": _loss(0.21), "adam": _loss(0.20)},
            {"default": _loss(0.3), "adam": _loss(0.20)},
        ),
        (
            "adopt",
            {"adopt": {0.5: 0.2, 0.9: 0.25, "default": 0.29}, "adam": {0.5: 9.0}},
            {"adopt": {0.5: 0.31, 0.9: 0.25, "default": 0.2}, "adam": {0.5: 0.2}},
        ),
        (
            "ademamix",
            {
                "ademamix": _loss(0.1),
                "adamw": _loss(0.2),
                "gap_mid": 0.01,
                "gap_end": 0.1,
                "mid": 5,
            },
            {"ademamix": _loss(0.1), "adamw": _loss(0.2), "gap_mid": 0.2, "gap_end": 0.1, "mid": 5},
        ),
        (
            "lamb",
            {
                "rule": "sqrt",
                "other_name": "adam",
                "opt": {"small": 0.95, "large": 0.941, "large_ci": 0.0},
                "other": {"small": 0.95, "large": 0.8, "large_ci": 0.0},
            },
            {
                "rule": "sqrt",
                "other_name": "adam",
                "opt": {"small": 0.95, "large": 0.93, "large_ci": 0.0},
                "other": {"small": 0.95, "large": 0.95, "large_ci": 0.0},
            },
        ),
        (
            "asgd",
            {"floor": 0.03, "floor_ci": 0.002, "avg": 0.004, "avg_ci": 0.001, "steps": 400},
            {"floor": 0.03, "floor_ci": 0.002, "avg": 0.027, "avg_ci": 0.002, "steps": 400},
        ),
        (
            "adamax",
            {"rosenbrock": {"ratio": 1.0, "every": 1, "lr": 0.1}},
            {"rosenbrock": {"ratio": 1.02, "every": 1, "lr": 0.1}},
        ),
        (
            "soap",
            {"opt": _loss(0.1), "adamw": _loss(0.2), "updates": 68, "to_adamw_final": 40},
            {"opt": _loss(0.3), "adamw": _loss(0.2), "updates": 68, "to_adamw_final": None},
        ),
        (
            "schedule-free-adamw",
            {"sf": _loss(0.21), "cosine": _loss(0.2), "base": "adamw"},
            {"sf": _loss(0.23), "cosine": _loss(0.2), "base": "adamw"},
        ),
        (
            "radam",
            {"radam": _loss(0.2), "warm": _loss(0.19), "plain": 0.3, "warmup": 10},
            {"radam": _loss(0.3), "warm": _loss(0.19), "plain": 0.3, "warmup": 10},
        ),
        (
            "rprop",
            {"rprop": _loss(0.1), "adam": _loss(0.2)},
            {"rprop": _loss(math.nan), "adam": _loss(0.2)},
        ),
        (
            "muon",
            {"opt": _loss(0.19), "adamw": _loss(0.2), "updates": 68, "to_adamw_final": 60},
            {"opt": _loss(0.2), "adamw": _loss(0.2), "updates": 68, "to_adamw_final": 68},
        ),
        (
            "adafactor",
            {"opt": _loss(0.2), "adam": _loss(0.2), "state": 300, "adam_state": 9000},
            {"opt": _loss(0.2), "adam": _loss(0.2), "state": 9000, "adam_state": 9000},
        ),
    ],
)
def test_a_claim_is_judged_by_its_stated_criterion(name, holds, fails):
    claim = _claim(name)
    assert modern.claim_row(claim, name, holds)["holds?"] == "yes"
    row = modern.claim_row(claim, name, fails)
    assert row["holds?"] == "no"
    assert row["measured"] and row["check"] == claim.check


def test_matches_is_finite_and_relative():
    assert modern.matches(0.22, 0.2) and not modern.matches(0.23, 0.2)
    assert not modern.matches(math.nan, 0.2) and not modern.matches(0.1, math.inf)


def test_adamax_bound_is_read_from_every_step():
    """The |Δθ|/γ measure takes the largest coordinate step of a recorded trajectory."""

    class Fake:
        trajectories = np.array([[[0.0, 0.0], [0.05, -0.1], [0.0, -0.2]]])
        recorded_steps = np.array([0, 1, 2])
        metrics = pd.DataFrame({"optimizer": ["adamax"], "lr": [0.1]})

    ctx = modern.Context(quick=True, epochs=1, seeds=[0], landscape_steps=2)
    ctx.landscapes = {fn: Fake() for fn, _ in modern.LANDSCAPES}
    n = modern._adamax_measure(ctx, "adamax")
    assert all(v["ratio"] == pytest.approx(1.0) and v["every"] == 1 for v in n.values())
