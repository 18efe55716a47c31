"""`descend landscape`, `basins` and `sweep` end to end, and the list/range syntax."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from descend.cli import main
from descend.lab import parse_list, parse_point, parse_range


def _files(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if p.stat().st_size > 200}


def test_landscape_writes_pictures_csv_and_prints_the_table(tmp_path: Path, capsys) -> None:
    out = tmp_path / "rosen"
    argv = ["landscape", "rosenbrock", "--optimizers", "adam:lr=0.05;momentum", "newton"]
    argv += ["--steps", "40", "--animate", "--max-frames", "6", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "default learning rates of rosenbrock: momentum lr=0.001, newton lr=1" in text
    assert "final loss" in text and "steps to tol" in text and "momentum:lr=0.001" in text
    assert {
        "metrics.csv",
        "contour.png",
        "contour.svg",
        "surface.png",
        "surface.svg",
        "loss.png",
        "loss.svg",
        "animation.gif",
    } <= _files(out)
    table = pd.read_csv(out / "metrics.csv")
    assert len(table) == 3 * 3  # three specs × rosenbrock's three starts
    assert set(table["optimizer"]) == {"adam", "momentum", "newton"}
    assert "stopped" in set(table["status"])  # Newton from (0, 2.5): indefinite Hessian
    assert "Newton stopped at step 0" in text


def test_landscape_one_d_noise_and_start(tmp_path: Path, capsys) -> None:
    argv = ["landscape", "double-well", "--optimizers", "sgd", "adam", "--start", "0.3;-1.8"]
    argv += ["--noise-batch", "8", "--seed", "3", "--steps", "30", "--out", str(tmp_path)]
    assert main(argv) == 0
    assert {"curve.png", "curve.svg", "loss.png", "metrics.csv"} <= _files(tmp_path)
    table = pd.read_csv(tmp_path / "metrics.csv")
    assert table["start"].tolist() == [0.3, -1.8, 0.3, -1.8]
    assert (table["seed"] == 3).all()
    assert "noise batch 8" in capsys.readouterr().out


def test_landscape_with_parameters_and_schedule(tmp_path: Path, capsys) -> None:
    argv = ["landscape", "ravine", "--params", "kappa=50,angle=30", "--optimizers", "sgd:lr=0.01"]
    argv += ["--schedule", "cosine", "--steps", "20", "--out", str(tmp_path)]
    assert main(argv) == 0
    assert "ravine: 20 steps" in capsys.readouterr().out


def test_basins_command(tmp_path: Path, capsys) -> None:
    argv = ["basins", "himmelblau", "--optimizers", "sgd:lr=0.01", "adam:lr=0.1", "--grid", "10"]
    argv += ["--steps", "150", "--out", str(tmp_path)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "share of 10×10 starts" in text and "min 0" in text and "0 = (3.0, 2.0)" in text
    assert {"basins.png", "basins.svg", "basins.csv"} <= _files(tmp_path)
    table = pd.read_csv(tmp_path / "basins.csv")
    assert len(table) == 2 * 100
    assert set(table["label"]) <= {-3, -2, -1, 0, 1, 2, 3}


def test_sweep_marks_invalid_points(tmp_path: Path, capsys) -> None:
    argv = ["sweep", "ravine", "--optimizer", "momentum", "--lr", "1e-3:1:log6"]
    argv += ["--momentum", "0:1:3", "--start", "1,1", "--steps", "60", "--out", str(tmp_path)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "18 grid points" in text and "6 invalid" in text and "theory" in text
    assert {
        "sweep.csv",
        "hyperparameters.png",
        "hyperparameters.svg",
        "lr_sensitivity.png",
        "lr_sensitivity.svg",
    } <= _files(tmp_path)
    table = pd.read_csv(tmp_path / "sweep.csv")
    assert (table.loc[table["momentum"] == 1.0, "status"] == "invalid").all()
    assert table["diverged"].any()


def test_sweep_one_key(tmp_path: Path) -> None:
    argv = ["sweep", "booth", "--optimizer", "adam:beta2=0.99", "--lr", "0.01,0.1,1"]
    assert main(argv + ["--steps", "30", "--out", str(tmp_path)]) == 0
    assert "lr_sensitivity.png" in _files(tmp_path)
    assert "hyperparameters.png" not in _files(tmp_path)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["landscape", "rosenbrok", "--optimizers", "adam"], "Valid names: ravine, bowl"),
        (["landscape", "rosenbrock", "--optimizers", "adamm"], "available: sgd, momentum"),
        (["landscape", "rosenbrock", "--optimizers", "adam:lrr=1"], "valid keys: lr"),
        (["landscape", "rosenbrock", "--optimizers", "adam", "--start", "1,2,3"], "needs 2"),
        (["sweep", "ravine", "--optimizer", "momentum", "--lr", "1e-4:1e-1:lg30"], "START:STOP:N"),
        (["sweep", "ravine", "--optimizer", "momentum", "--lr", "0:1:log5"], "START > 0"),
        (
            [
                "sweep",
                "ravine",
                "--optimizer",
                "momentum",
                "--lr",
                "0.1",
                "--momentum",
                "0.5",
                "--beta1",
                "0.9",
            ],
            "at most one more key",
        ),
        (["basins", "himmelblau", "--optimizers", "sgd", "--grid", "1"], "--grid"),
        (
            ["basins", "rosenbrock", "--optimizers", "sgd", "--grid", "5", "--noise-batch", "0"],
            "--noise-batch",
        ),
    ],
)
def test_errors_say_what_is_valid(tmp_path: Path, capsys, argv, message) -> None:
    assert main(argv + ["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith(f"descend {argv[0]}: error:")


def test_range_syntax() -> None:
    assert parse_range("0:1:5") == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert parse_range("1e-4:1e-1:log4") == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1], rel=1e-12)
    values = parse_range("1e-4:1e-1:log30")
    assert len(values) == 30 and values[0] == 1e-4 and values[-1] == 1e-1
    assert parse_range("0.1,0.2") == [0.1, 0.2] == parse_list("0.1, 0.2")
    assert parse_range("3") == [3.0]
    assert parse_point("-1.2,1", 2) == (-1.2, 1.0)
    for bad in ["0:1", "0:1:1", "a:1:3", "1:2:3:4", "0:1:logx", "", "1,,2"]:
        with pytest.raises(ValueError, match="range|list"):
            parse_range(bad, "--lr")
