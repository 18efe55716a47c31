"""`descend ewa` and `descend schedule` run end to end through descend.cli.main."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from descend.cli import main
from descend.ewa import ewa


def _png_is_a_real_figure(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 5_000
    with Image.open(path) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("L"))
    assert pixels.shape[0] > 200 and pixels.shape[1] > 300
    assert len(np.unique(pixels)) > 20  # lines, text and anti-aliasing, not a blank canvas


@pytest.fixture
def temperatures(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    days = pd.date_range("2023-01-01", periods=120)
    temp = 15 + 8 * np.sin(np.arange(120) / 20) + rng.normal(0, 2, 120)
    frame = pd.DataFrame({"date": days.strftime("%Y-%m-%d"), "temp": temp.round(3)})
    frame.loc[[30, 31, 77], "temp"] = np.nan  # empty cells in the file
    path = tmp_path / "temps.csv"
    frame.to_csv(path, index=False)
    return path


def test_ewa_writes_plot_and_csv_equal_to_the_library(temperatures: Path, tmp_path: Path) -> None:
    png, out = tmp_path / "ewa.png", tmp_path / "smoothed.csv"
    argv = ["ewa", str(temperatures), "--column", "temp", "--date-column", "date"]
    argv += ["--beta", "0.5,0.9,0.98", "--plot", str(png), "--out", str(out)]
    assert main(argv) == 0
    _png_is_a_real_figure(png)

    written = pd.read_csv(out, index_col="date", parse_dates=True)
    raw = pd.read_csv(temperatures)["temp"]
    np.testing.assert_array_equal(written["temp"].to_numpy(), raw.to_numpy())
    for beta in (0.5, 0.9, 0.98):
        want = ewa(raw.to_numpy(), beta)
        np.testing.assert_allclose(written[f"temp_ewa_{beta!r}"], want, rtol=1e-14)
    assert written.index[0] == pd.Timestamp("2023-01-01")


def test_ewa_bias_correction_is_pandas_default_ewm(temperatures: Path, tmp_path: Path) -> None:
    out = tmp_path / "smoothed.csv"
    argv = ["ewa", str(temperatures), "--column", "temp", "--beta", "0.9", "--bias-correction"]
    assert main(argv + ["--plot", str(tmp_path / "p.png"), "--out", str(out)]) == 0
    written = pd.read_csv(out)
    want = pd.read_csv(temperatures)["temp"].ewm(alpha=0.1).mean()  # the notes' pandas line
    np.testing.assert_allclose(written["temp_ewa_0.9"], want, rtol=1e-12)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--column", "tmp"], "column 'tmp' not in"),
        (["--column", "date"], "non-numeric values, e.g. '2023-01-01'"),
        (["--column", "temp", "--beta", "0.9,1.0"], "[0, 1), got 1.0"),
        (["--column", "temp", "--beta", "0.9,x"], "'x' is not a number"),
        (["--column", "temp", "--date-column", "temp"], "dates"),
    ],
)
def test_ewa_user_errors_are_one_line(
    temperatures: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra, message
) -> None:
    assert main(["ewa", str(temperatures), *extra, "--plot", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("descend ewa: error:") and message in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_ewa_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.csv"
    assert main(["ewa", str(missing), "--column", "a", "--plot", str(tmp_path / "x.png")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_schedule_writes_plot_csv_and_table(tmp_path: Path, capsys) -> None:
    from descend.schedules import from_spec

    specs = ["cosine:final=0.1", "linear_warmup:warmup=20>cosine", "step:step_size=30,gamma=0.5"]
    png, out = tmp_path / "s.png", tmp_path / "s.csv"
    assert main(["schedule", *specs, "--steps", "120", "--plot", str(png), "--out", str(out)]) == 0
    _png_is_a_real_figure(png)

    written = pd.read_csv(out)
    assert list(written.columns) == ["step", *specs]
    np.testing.assert_array_equal(written["step"], np.arange(120))
    for spec in specs:
        want = from_spec(spec, total_steps=120).values(120)
        np.testing.assert_array_equal(written[spec].to_numpy(), want)  # repr round-trips
    # the table samples t = 0, 30, 60, 90, 119
    table = capsys.readouterr().out.splitlines()
    row60 = next(line.split() for line in table if line.split()[:1] == ["60"])
    assert float(row60[1]) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * 60 / 120)))
    assert float(row60[3]) == 0.25


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("cosin", "unknown schedule 'cosin'; valid: constant, step, multistep, exponential"),
        ("cosine:stps=3", "unknown key 'stps' for cosine; valid: steps, final"),
        ("step:gamma=0.5", "step needs step_size="),
        ("cosine:final=1.5", "final must be in [0, 1], got 1.5"),
    ],
)
def test_schedule_user_errors_are_one_line(tmp_path: Path, capsys, spec: str, message: str):
    png = tmp_path / "x.png"
    assert main(["schedule", "constant", spec, "--steps", "10", "--plot", str(png)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"descend schedule: error: {spec}: ") and message in err
    assert len(err.splitlines()) == 1 and not png.exists()
