"""`descend demo --quick` writes a report whose numbers are checked, not only its shape."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re

import pytest

from descend.cli import main
from descend.lab import theory


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One `descend demo --quick`, its stderr captured as a pipe would see it."""
    out = tmp_path_factory.mktemp("report")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["demo", "--quick", "--out", str(out)]) == 0
    return out, err.getvalue()


@pytest.fixture(scope="module")
def report(demo_run):
    out, _ = demo_run
    return out, json.loads((out / "numbers.json").read_text())


def test_demo_prints_a_progress_line_per_section(demo_run):
    """In a pipe (make demo, CI) the tour says which section runs, one line each, in order."""
    from descend.report import section_functions

    _, err = demo_run
    titles = [title for title, _ in section_functions()]
    lines = re.findall(r"^descend: section (\d+)/(\d+): (.+)…$", err, flags=re.M)
    assert [(int(i), int(n), t) for i, n, t in lines] == [
        (i, len(titles), t) for i, t in enumerate(titles, 1)
    ]


def test_files_are_self_contained(report):
    out, numbers = report
    page = (out / "index.html").read_text()
    assert len(numbers) == 12
    assert page.count("<section id=") == 12
    # every figure is embedded; nothing is fetched from a network or another file
    assert not re.search(r"(src|href)=['\"]https?://", page)
    assert not re.search(r"<script", page)
    images = re.findall(r"src='data:image/png;base64,", page)
    assert len(images) >= 11
    summary = (out / "summary.md").read_text()
    for name in re.findall(r"\(figures/([^)]+)\)", summary):
        assert (out / "figures" / name).stat().st_size > 5_000
    for key, section in numbers.items():
        assert section["budget"], f"section {key} states no budget"


def test_ravine_rates_match_theory(report):
    _, numbers = report
    sec = numbers["momentum"]
    assert sec["kappa"] == 100
    kappa = 100.0
    closed_form = {
        "gradient descent": (kappa - 1) / (kappa + 1),
        "heavy ball": (math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1),
    }
    for row in sec["rates"]:
        # measured (e400/e200)^(1/200) against the closed-form rate, within 2%
        assert abs(row["measured"] - row["predicted"]) / row["predicted"] < 0.02, row
        for name, rate in closed_form.items():
            if row["method"].startswith(name):
                assert row["predicted"] == pytest.approx(rate, rel=1e-9)
    assert theory.gd_optimal(1, 100)[1] == pytest.approx(0.980198, abs=1e-6)
    # the optimizer race: Newton solves the quadratic in one step, heavy ball beats GD
    for angle in ("0°", "45°"):
        race = {r["optimizer"]: r for r in sec["race"] if r["rotation"] == angle}
        assert race["newton"]["steps until f < 1e-6"] == 1
        assert race["momentum"]["steps until f < 1e-6"] < race["sgd"]["steps until f < 1e-6"]


def test_conventions_table_shows_different_trajectories(report):
    _, numbers = report
    rows = numbers["conventions"]["rows"]
    gap = {(r["optimizer"], r["convention"]): r["max ‖θ − θ_torch‖ over the run"] for r in rows}
    # RMSprop's defaults (decay 0.99 vs 0.9, ε inside the root) change the path a lot …
    assert gap[("rmsprop", "keras")] > 1e-2 and gap[("rmsprop", "optax")] > 1e-2
    # … NAdam's momentum schedules differ, and on a tiny loss ε̂ changes Adam's path …
    assert gap[("nadam", "keras")] > 1e-4 and gap[("nadam", "optax")] > 1e-4
    assert gap[("adam (loss × 1e-07)", "keras")] > 1e-3
    # … while lr-inside and lr-outside momentum are the same algorithm at constant lr
    assert gap[("sgd (momentum 0.9)", "keras")] < 1e-12
    assert gap[("adam (loss × 1e-07)", "optax")] == 0.0


def test_comparison_has_one_finite_row_per_optimizer(report):
    _, numbers = report
    rows = numbers["comparison"]["comparison"]
    assert len(rows) == 5
    assert len({r["optimizer"] for r in rows}) == 5
    for r in rows:
        for key in ("final_val_loss", "final_val_acc", "test_acc", "wall_time"):
            assert math.isfinite(r[key]), (r["optimizer"], key)
        assert r["final_val_acc"] > 0.8  # digits is easy: every optimizer learns it
    sizes = [r["batch_size"] for r in numbers["comparison"]["batch_size"]]
    assert sizes == [1, 8, 32, 128, "full"]


def test_ewa_and_noise_numbers(report):
    _, numbers = report
    rows = numbers["ewa"]["rows"]
    first = numbers["ewa"]["first_value"]
    for r in rows:
        # bias correction at t = 1 recovers the first value exactly: (1−β)x₁/(1−β) = x₁
        assert r["v₁ corrected"] == pytest.approx(first)
        assert r["v₁ (no correction)"] == pytest.approx((1 - r["β"]) * first)
        assert r["window 1/(1−β)"] == pytest.approx(1 / (1 - r["β"]))
    noise = [r for r in numbers["noise"]["rows"] if r["optimizer"].startswith("sgd")]
    floors = [r["measured floor (mean of last 20%)"] for r in noise]
    # the noise floor of constant-lr SGD scales like 1/B: 8× larger batch, ~8× lower floor
    for a, b in zip(floors, floors[1:]):
        assert 5 < a / b < 12
    # … and sits at ασ²/(2B)·Σ1/(2 − αλᵢ) (λ = 1, 10; α = 0.05; σ = 1), recomputed here
    for r, floor in zip(noise, floors):
        theory = 0.05 / (2 * r["batch size B"]) * (1 / (2 - 0.05) + 1 / (2 - 0.5))
        assert abs(floor - theory) < 0.25 * theory


def test_rankings_state_their_tuning_budget_and_seeds(report):
    out, numbers = report
    page = (out / "index.html").read_text()
    captions = re.findall(r"<p><b>(.*?)</b></p>", page)
    race = [c for c in captions if c.startswith("The race")]
    assert race and "17-point log grid" in race[0] and "no seeds" in race[0]
    ranking = [c for c in captions if c.startswith("Ranked by")]
    assert ranking and "10 final seeds" in ranking[0] and "7-point log grid" in ranking[0]
    schedules = [c for c in captions if "base lr tuned" in c]
    assert schedules and "25-point log grid" in schedules[0] and "seeds" in schedules[0]
    rows = numbers["comparison"]["ranking"]
    assert all(r["seeds"] + r["diverged"] == 10 for r in rows)
    verdicts = {r["val ranking"] for r in rows}
    assert "best" in verdicts and verdicts <= {
        "best",
        "not distinguishable from the best",
        "lower (intervals apart)",
    }
