"""``descend compare`` and ``descend lr-find`` end to end (small budgets)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from descend.cli import main


def test_compare_writes_table_and_files(tmp_path, capsys) -> None:
    rc = main(
        [
            "compare",
            "--task",
            "breast-cancer",
            "--model",
            "logistic",
            "--optimizers",
            "sgd:lr=0.1",
            "adam:lr=0.01",
            "--epochs",
            "2",
            "--seeds",
            "2",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "budget 2 epochs per run; 2 seeds" in out
    assert "sgd:lr=0.1 B=32" in out and "adam:lr=0.01 B=32" in out
    runs = pd.read_csv(tmp_path / "compare_runs.csv")
    assert len(runs) == 4 and set(runs["seed"]) == {0, 1}
    assert (tmp_path / "compare_curves.png").exists()


def test_batch_size_study_runs_every_batch_size(tmp_path, capsys) -> None:
    rc = main(
        [
            "compare",
            "--study",
            "batch-size",
            "--quick",
            "--epochs",
            "1",
            "--seeds",
            "2",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "study batch-size" in out and "budget 1 epochs per run; 2 seeds" in out
    summary = pd.read_csv(tmp_path / "batch-size_summary.csv")
    assert list(summary["batch_size"].astype(str)) == ["1", "8", "32", "128", "full"]
    # linear scaling from 0.1 at B = 32; the quick task has 1,200 training samples
    assert summary["lr"].tolist() == pytest.approx([0.1 / 32, 0.025, 0.1, 0.4, 0.1 * 1200 / 32])
    assert (tmp_path / "batch-size_accuracy_vs_batch.png").exists()


def test_adamw_study_reports_the_weight_decay_grid(tmp_path, capsys) -> None:
    rc = main(
        [
            "compare",
            "--study",
            "adamw",
            "--quick",
            "--epochs",
            "1",
            "--seeds",
            "2",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "grid of 6 setting(s) per optimizer" in out
    assert "final val accuracy / loss at each weight_decay" in out
    data = json.loads((tmp_path / "adamw.json").read_text())
    families = {row["family"] for row in data["summary"]}
    assert families == {"adam:lr=0.001 B=32", "adamw:lr=0.001 B=32"}
    assert (tmp_path / "adamw_loss_vs_weight_decay.png").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--task", "mnist"], "unknown task 'mnist'; valid choices: breast-cancer, cat-dog"),
        (["--optimizers", "adamx"], "unknown optimizer 'adamx'; available: sgd"),
        (["--task", "wine", "--batch-sizes", "500"], "choose 1..107 or 'full'"),
        (["--epochs", "0"], "--epochs must be an integer in [1, 10,000], got 0"),
        (["--study", "lr"], "unknown study 'lr'; valid choices: batch-size, adamw"),
        (["--full"], "--full applies to --study only"),
    ],
)
def test_compare_bad_arguments_get_one_line(argv, message, capsys, tmp_path) -> None:
    rc = main(["compare", *argv, "--out", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("descend compare: error: ") and message in err
    assert "\n" not in err


def test_lr_find_on_a_task_over_seeds(tmp_path, capsys) -> None:
    rc = main(
        [
            "lr-find",
            "--task",
            "breast-cancer",
            "--model",
            "logistic",
            "--steps",
            "30",
            "--seeds",
            "2",
            "--start",
            "1e-4",
            "--out",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert out.count("suggested lr: steepest") == 2
    assert "spread over seeds" in out
    curve = pd.read_csv(tmp_path / "lr_find_breast-cancer.csv")
    assert set(curve["seed"]) == {0, 1}
    assert (tmp_path / "lr_find_breast-cancer.png").stat().st_size > 0


def test_lr_find_on_the_ravine_places_suggestions_in_the_stable_range(tmp_path, capsys) -> None:
    rc = main(["lr-find", "--landscape", "ravine", "--steps", "60", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "stable for lr < 0.2; fastest lr 0.1818" in out
    data = json.loads((tmp_path / "lr_find_ravine.json").read_text())
    assert data["stable_limit"] == pytest.approx(0.2)
    assert set(data["placement"]) == {"steepest", "valley", "minimum/10"}


def test_lr_find_unknown_task(capsys) -> None:
    assert main(["lr-find", "--task", "mnist"]) == 2
    assert "valid choices: breast-cancer" in capsys.readouterr().err
