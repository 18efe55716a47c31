"""Issue #16's remaining report pieces, each checked against an independent recomputation:
the lr × λ grids (Loshchilov & Hutter's figure 2) against torch.optim models trained alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from descend import train
from descend.report import decay_grid


@pytest.fixture(scope="module")
def digits():
    return train.load("digits")


def _alone(cls, lr, lam, data, epochs, seed, hidden=32, batch_size=64):
    """One MLP trained by torch.optim's ``cls`` on its own, the same init and data order."""
    params = [t.clone().requires_grad_() for t in decay_grid._init(64, hidden, 10, seed)]
    w1, b1, w2, b2 = params
    opt = cls(params, lr=lr, weight_decay=lam)

    def logits(x):
        return torch.relu(x @ w1 + b1) @ w2 + b2

    for idx in decay_grid.batch_orders(len(data.y_train), batch_size, epochs, seed):
        loss = nn.functional.cross_entropy(logits(data.x_train[idx]), data.y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = logits(data.x_val)
        return (
            float(nn.functional.cross_entropy(out, data.y_val)),
            float((out.argmax(1) == data.y_val).float().mean()),
        )


@pytest.mark.parametrize(
    ("spec", "cls", "lambdas"),
    [("adam", torch.optim.Adam, (0.0, 0.1)), ("adamw", torch.optim.AdamW, (0.0, 10.0))],
)
def test_batched_grid_cells_equal_torch_optim_models_trained_alone(digits, spec, cls, lambdas):
    lrs = (1e-3, 3e-2)
    grid = decay_grid.train_grid(spec, lrs, lambdas, epochs=2, seed=1, data=digits)
    for i, lr in enumerate(lrs):
        for j, lam in enumerate(lambdas):
            loss, acc = _alone(cls, lr, lam, digits, epochs=2, seed=1)
            assert grid["val_loss"][i, j] == pytest.approx(loss, rel=2e-4)
            assert grid["val_acc"][i, j] == pytest.approx(acc, abs=1.5 / len(digits.y_val))
    # decay acts on this budget: the largest λ changes every lr's loss by more than 1%
    assert np.all(np.abs(grid["val_loss"][:, 1] / grid["val_loss"][:, 0] - 1) > 0.01)


def _claims(l2_loss, adamw_loss):
    lrs = [1e-3, 1e-2, 1e-1]
    lam = [1e-3, 1e-2, 1e-1]
    fams = {}
    for name, loss in (("Adam + L2", l2_loss), ("AdamW", adamw_loss)):
        loss = np.asarray(loss, float)
        path = decay_grid.best_lr_per_lambda(loss, lrs, lam)
        idx = [p["index"] for p in path]
        i, j = np.unravel_index(np.nanargmin(loss), loss.shape)
        fams[name] = {
            "best_lr_path": path,
            "lr_shift_steps": max(idx) - min(idx),
            "best": {"loss": loss[i, j], "lr": lrs[i], "lambda": lam[j]},
            "no_decay": {"best": 0.2},
        }
    return {"families": fams, "seeds": 2}


def test_coupling_verdict_follows_the_best_lr_per_lambda():
    # Adam + L2: the best lr falls one row per λ column (a tilted valley: 2 steps);
    # the third AdamW column has collapsed (> 2× the best) and has no optimum to count
    tilted = [[0.9, 0.9, 0.1], [0.5, 0.1, 0.5], [0.1, 0.5, 0.9]]
    upright = [[0.9, 0.9, 2.2], [0.1, 0.12, 2.3], [0.5, 0.5, np.nan]]
    claims = _claims(tilted, upright)
    assert [p["lr"] for p in claims["families"]["Adam + L2"]["best_lr_path"]] == [0.1, 0.01, 0.001]
    assert [p["lambda"] for p in claims["families"]["AdamW"]["best_lr_path"]] == [1e-3, 1e-2]
    text = decay_grid.coupling_sentence(claims)
    assert "moves by 2 grid steps" in text and "moves by 0 grid steps" in text
    assert "AdamW's optimum lr depends less on λ here" in text
    assert "Adam + L2 0.1 (lr 0.001, λ = 0.1) against 0.2 without decay, lower" in text
    assert "AdamW 0.1 (lr 0.01, λ = 0.001) against 0.2 without decay, lower" in text
    assert text.endswith("(means of 2 seeds, no interval: not a ranking).")
    # a one-step difference is within the grid's resolution
    shifted = [[0.9, 0.1, 0.9], [0.1, 0.5, 0.5], [0.5, 0.9, 0.9]]
    text = decay_grid.coupling_sentence(_claims(shifted, upright))
    assert "not distinguishable" in text and "depends less" not in text
    text = decay_grid.coupling_sentence(_claims(upright, tilted))
    assert "AdamW's optimum lr depends more on λ here" in text


def test_scaling_arms_run_the_rules_lr_on_an_updates_budget():
    from descend.report import batch_arms

    result = batch_arms.run_arms(
        batch_sizes=(128, "full"), epochs=1, min_updates=6, warmup=3, seeds=1
    )
    n = result["n_train"]
    assert n == 1200  # 60% of the study's 2000 samples
    for r in result["rows"]:
        b = n if r["batch size"] == "full" else r["batch size"]
        ratio = b / 32
        want = 0.1 * (ratio**0.5 if r["arm"] == "√B" else ratio)
        assert r["lr (peak)"] == pytest.approx(want, rel=1e-12)
        assert r["updates budget"] == max(6, -(-n // b))
        assert r["schedule"] == ("linear_warmup:warmup=3" if "warm" in r["arm"] else "constant")
        if r["reached"]:
            assert r["samples to target"] == pytest.approx(r["updates to target"] * b)


def _arm_rows(hits):
    return {
        "rows": [
            {
                "arm": arm,
                "batch size": "full",
                "lr (peak)": lr,
                "updates budget": 24,
                "reached": int(h is not None),
                "runs": 1,
                "diverged": 0,
                "updates to target": float("nan") if h is None else h,
            }
            for (arm, lr), h in zip(
                [("linear", 3.75), ("linear + warm-up", 3.75), ("√B", 0.612)], hits
            )
        ],
        "epochs": 3,
        "warmup": 10,
        "min_updates": 24,
        "seeds": 1,
    }


def test_arms_sentence_says_what_the_full_batch_rows_show():
    from descend.report import batch_arms

    text = batch_arms.arms_sentence(_arm_rows([None, 9.0, 7.0]))
    assert "linear (lr 3.75) never reaches the target" in text
    assert "Warm-up is what rescues" in text
    text = batch_arms.arms_sentence(_arm_rows([4.5, 9.5, 7.5]), {"reached": 0, "runs": 2})
    assert "without warm-up too" in text and "held back by its 3-update budget" in text
    assert "warm-up costs updates here" in text and "rescues" not in text
    assert "(0/2 runs reached it)" in text


def test_noisy_adam_runs_match_a_hand_written_adam_with_warm_up():
    from descend.report.ideas import noisy_adam_runs

    lr, w, seeds, steps, sigma = 0.5, 4, 3, 20, 10.0
    got = noisy_adam_runs(lr, w, seeds=seeds, steps=steps, sigma=sigma)
    g = torch.Generator().manual_seed(0)
    lam = np.array([1.0, 10.0])
    theta = np.ones((seeds, 2))
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    for t in range(1, steps + 1):
        noise = torch.randn(seeds, 2, generator=g, dtype=torch.float64).numpy()
        grad = lam * theta + sigma * noise
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad**2
        step = lr * min(1.0, t / w)
        theta = theta - step * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        np.testing.assert_allclose(got[t - 1], 0.5 * (lam * theta**2).sum(1), rtol=1e-12)


def test_adam_warmup_verdicts_follow_the_intervals():
    from scipy import stats

    from descend.report.document import Section
    from descend.report.ideas import adam_warmup

    out = adam_warmup(
        Section("x", "x"), lrs=(0.5,), seeds=16, steps=60, warmup=10, early=20, tail=20
    )
    none, warm = out["rows"]
    for row in (none, warm):
        assert row["±95% (max)"] > 0
    # recompute the early-peak interval of the no-warm-up arm from fresh runs
    from descend.report.ideas import noisy_adam_runs

    peaks = noisy_adam_runs(0.5, 0, seeds=16, steps=60, sigma=10.0)[:20].max(0)
    half = stats.t.ppf(0.975, 15) * peaks.std(ddof=1) / np.sqrt(16)
    assert none["max f, steps 1–20"] == pytest.approx(peaks.mean(), rel=1e-12)
    assert none["±95% (max)"] == pytest.approx(half, rel=1e-9)
    apart = abs(none["max f, steps 1–20"] - warm["max f, steps 1–20"]) > (
        none["±95% (max)"] + warm["±95% (max)"]
    )
    assert (out["verdicts"][0]["early"] != "not distinguishable") == apart
    assert f"at lr 0.5 the early peak is {out['verdicts'][0]['early']}" in out["text"]


def test_path_frames_hold_every_path_point(tmp_path):
    from descend import lab
    from descend.report.framed import framed_contour, path_frame

    beale = lab.run("beale", ["adagrad:lr=0.5", "adam:lr=0.05"], starts=[(1.0, 1.5)], steps=300)
    (x0, x1), (y0, y1) = path_frame(beale)
    pts = beale.trajectories.reshape(-1, 2)
    assert (pts[:, 0] > x0).all() and (pts[:, 0] < x1).all()
    assert (pts[:, 1] > y0).all() and (pts[:, 1] < y1).all()
    # tighter than the lab's domain (−4.5, 4.5)², which frames these paths loosely
    assert x1 - x0 < 9 and y1 - y0 < 9
    saddle = lab.run("saddle", ["sgd:lr=0.05"], starts=[(1.0, 1e-6)], steps=300, bound=1e6)
    assert np.nanmax(np.abs(saddle.trajectories)) > 1e3  # it escapes …
    (x0, x1), (y0, y1) = path_frame(saddle, limit=2.5)
    assert -5 <= x0 and x1 <= 5 and -5.3 <= y0 and y1 <= 5.3  # … the frame stays near it
    near = saddle.trajectories[0][(np.abs(saddle.trajectories[0]) <= 5).all(axis=1)]
    assert (near[:, 1] >= y0).all() and (near[:, 1] <= y1).all()
    written = framed_contour(saddle, tmp_path / "saddle", ("png",), limit=2.5)
    assert written[0].stat().st_size > 5_000
