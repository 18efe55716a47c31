"""The landscape pictures are real files: valid PNG/SVG/GIF of non-trivial size and content."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import require
from descend import lab, plots
from descend.plots.animate import frame_indices


def check_png(path: Path) -> None:
    assert path.suffix == ".png" and path.stat().st_size > 10_000
    with Image.open(path) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("L"))
    assert pixels.shape[0] > 300 and pixels.shape[1] > 400
    assert len(np.unique(pixels)) > 30  # lines, text, colour maps: not a blank canvas


def check_svg(path: Path) -> None:
    assert path.suffix == ".svg" and path.stat().st_size > 10_000
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    assert len(root.findall(".//{http://www.w3.org/2000/svg}path")) > 10


def check_pair(files: list[Path]) -> None:
    assert sorted(p.suffix for p in files) == [".png", ".svg"]
    for p in files:
        (check_png if p.suffix == ".png" else check_svg)(p)


@pytest.fixture(scope="module")
def rosen_runs():
    return lab.run("rosenbrock", ["adam:lr=0.05", "momentum", "sgd:lr=0.01"], steps=60)


def test_contour_surface_and_loss(rosen_runs, tmp_path: Path) -> None:
    check_pair(plots.contour(rosen_runs, tmp_path / "contour"))
    check_pair(plots.surface(rosen_runs, tmp_path / "surface.png"))  # suffix is replaced
    check_pair(plots.loss_curves(rosen_runs, tmp_path / "loss"))


def test_curve_1d_and_dimension_checks(rosen_runs, tmp_path: Path) -> None:
    one_d = lab.run("double-well", ["sgd", "newton"], steps=15)
    check_pair(plots.curve_1d(one_d, tmp_path / "curve"))
    with pytest.raises(ValueError, match="2-D"):
        plots.contour(one_d, tmp_path / "x")
    with pytest.raises(ValueError, match="1-D"):
        plots.curve_1d(rosen_runs, tmp_path / "x")


def test_animation_gif_respects_the_frame_cap(rosen_runs, tmp_path: Path) -> None:
    files = plots.animate(rosen_runs, tmp_path / "anim", max_frames=7)
    gif = tmp_path / "anim.gif"
    assert gif in files and gif.stat().st_size > 10_000
    with Image.open(gif) as image:
        assert image.format == "GIF" and image.n_frames == 7
    assert (tmp_path / "anim.mp4" in files) == plots.ffmpeg_available()
    assert frame_indices(61, 7).tolist() == [0, 10, 20, 30, 40, 50, 60]
    assert frame_indices(5, 80).tolist() == [0, 1, 2, 3, 4]


def test_animation_mp4_where_ffmpeg_exists(rosen_runs, tmp_path: Path) -> None:
    """The MP4 is a real video with the capped number of frames (ffprobe counts them)."""
    require(plots.ffmpeg_available(), "ffmpeg is not installed (apt-get install ffmpeg)")
    files = plots.animate(rosen_runs, tmp_path / "anim", max_frames=9, formats=("mp4",))
    mp4 = tmp_path / "anim.mp4"
    assert files == [mp4] and mp4.read_bytes()[4:8] == b"ftyp"
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=nb_read_frames,codec_type", "-of", "csv=p=0", str(mp4)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert probe.stdout.strip().split(",") == ["video", "9"]


def test_basin_map(tmp_path: Path) -> None:
    basins = lab.basins("himmelblau", ["sgd:lr=0.01", "adam:lr=0.1"], grid=15, steps=100)
    check_pair(plots.basin_map(basins, tmp_path / "basins"))


def test_hyperparameter_map_and_lr_sensitivity(tmp_path: Path) -> None:
    sweep = lab.sweep(
        "ravine",
        "momentum",
        {"lr": lab.parse_range("1e-3:1:log8"), "momentum": lab.parse_range("0:1:5")},
        steps=80,
    )
    assert sweep.edge is not None and sweep.invalid[:, -1].all() and sweep.diverged.any()
    check_pair(plots.hyperparameter_map(sweep, tmp_path / "map"))
    check_pair(plots.lr_sensitivity(sweep, tmp_path / "sens"))
    one = lab.sweep("ravine", "sgd", {"lr": [0.01, 0.1, 0.3]}, steps=40)
    check_pair(plots.lr_sensitivity(one, tmp_path / "sens1"))
    with pytest.raises(ValueError, match="two swept keys"):
        plots.hyperparameter_map(one, tmp_path / "x")
