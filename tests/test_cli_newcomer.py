"""Issue #17, a newcomer's first hour: bad input refused up front (exit 2, one line naming the
flag and the accepted range or form, no traceback, nothing written), Ctrl-C → "interrupted"
with partial outputs removed, help/--version, tables that fit 80 columns with
--format markdown|csv, and the tuple form of betas in specs.

Every command runs in a real ``descend`` process (``python -m descend``) as a user runs it.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ENV = {**os.environ, "COLUMNS": "80", "PYTHONUNBUFFERED": "1"}
ENV.pop("FORCE_COLOR", None)


def descend(
    *argv: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "descend", *argv],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=cwd,
        timeout=timeout,
    )


def assert_refused(proc: subprocess.CompletedProcess, command: str, *needles: str) -> str:
    """Exit 2, one line on stderr naming what was wrong, no traceback, nothing on stdout."""
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "\n" not in err, proc.stderr
    assert err.startswith(f"descend {command}: error: "), err
    for needle in needles:
        assert needle in err, (needle, err)
    assert proc.stdout == ""
    return err


# Refusals that must come before torch is even imported (the size limits: a check, not an
# allocation): the child reports whether torch was loaded when the command returned.
SIZE_CASES = [
    (
        ["landscape", "rosenbrock", "--optimizers", "adam", "--steps", "100000000"],
        "landscape",
        ["--steps", "[1, 1,000,000]", "100,000,000"],
    ),
    (
        ["landscape", "rosenbrock", "--optimizers", *["sgd"] * 25, "--steps", "500000"],
        "landscape",
        ["recorded positions", "25 specs × 500,000 steps", "lower --steps"],
    ),
    (
        ["basins", "himmelblau", "--optimizers", "sgd", "--grid", "2000"],
        "basins",
        ["--grid", "[2, 1,000]", "2,000"],
    ),
    (
        ["basins", "himmelblau", "--optimizers", "sgd", "adam", "--grid", "1000"],
        "basins",
        ["runs: 1000² starts × 2 specs", "lower --grid"],
    ),
    (
        ["sweep", "ravine", "--optimizer", "sgd", "--lr", "1e-4:1:log1000000"],
        "sweep",
        ["grid points", "--lr", "20,000"],
    ),
    (
        [
            "sweep",
            "ravine",
            "--optimizer",
            "momentum",
            "--lr",
            "1e-4:1:log1000",
            "--momentum",
            "0:0.99:1000",
        ],
        "sweep",
        ["grid points", "--momentum", "use fewer values"],
    ),
    (
        ["schedule", "cosine", "--steps", "100000000", "--plot", "s.png"],
        "schedule",
        ["--steps", "[1, 1,000,000]"],
    ),
    (
        ["explain", "adam", "--function", "quadratic", "--steps", "10000000"],
        "explain",
        ["--steps", "[1, 10,000]"],
    ),
    (["lr-find", "--steps", "10000000"], "lr-find", ["--steps", "[2, 100,000]"]),
    (
        ["lr-find", "--start", "10", "--end", "1e-7"],
        "lr-find",
        ["--end must be above --start", "--start=10", "--end=1e-07"],
    ),
    (["lr-find", "--seeds", "0"], "lr-find", ["--seeds", "[1, 100]", "got 0"]),
    (["compare", "--seeds", "100000"], "compare", ["--seeds", "[1, 100]", "100,000"]),
    (["compare", "--seeds", "0"], "compare", ["--seeds", "[1, 100]", "got 0"]),
    (["compare", "--epochs", "0"], "compare", ["--epochs", "got 0"]),
]

CHILD = """
import contextlib, io, json, sys
from descend.cli import main
out, err = io.StringIO(), io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "out": out.getvalue(), "err": err.getvalue(),
                  "torch": "torch" in sys.modules}))
"""


@pytest.mark.parametrize("argv, command, needles", SIZE_CASES)
def test_sizes_and_ranges_are_refused_before_any_heavy_import(
    argv, command, needles, tmp_path: Path
) -> None:
    import json

    out = tmp_path / "out"
    if command in ("landscape", "basins", "sweep", "lr-find", "compare"):
        argv = [*argv, "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *argv],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    as_process = subprocess.CompletedProcess(argv, report["rc"], report["out"], report["err"])
    assert_refused(as_process, command, *needles)
    assert not report["torch"], "refused only after importing torch"
    assert list(tmp_path.iterdir()) == [], "something was written"


def test_a_refusal_through_the_real_entry_point(tmp_path: Path) -> None:
    """The same refusal as a user sees it from the shell: ``descend`` itself, exit status 2."""
    proc = descend(
        "basins",
        "himmelblau",
        "--optimizers",
        "sgd",
        "--grid",
        "2000",
        "--out",
        str(tmp_path / "b"),
    )
    assert_refused(proc, "basins", "--grid must be an integer in [2, 1,000], got 2,000")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    "spec, needles",
    [
        ("adam:lr=abc", ["--optimizers", "adam:lr=abc", "lr must be a number, got 'abc'"]),
        ("adam:lr=nan", ["--optimizers", "adam:lr=nan", "lr must be a number, got NaN"]),
    ],
)
def test_landscape_refuses_bad_optimizer_values_once_and_writes_nothing(
    spec, needles, tmp_path: Path
) -> None:
    out = tmp_path / "land"
    proc = descend("landscape", "rosenbrock", "--optimizers", "sgd", spec, "--out", str(out))
    assert_refused(proc, "landscape", *needles)
    assert not out.exists()


def test_basins_refuses_a_bad_optimizer_value(tmp_path: Path) -> None:
    proc = descend(
        "basins",
        "himmelblau",
        "--optimizers",
        "adam:lr=abc",
        "--grid",
        "10",
        "--out",
        str(tmp_path / "b"),
    )
    assert_refused(proc, "basins", "--optimizers", "lr must be a number, got 'abc'")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("command", ["compare", "lr-find"])
def test_unknown_task_option_names_the_valid_ones(command: str, tmp_path: Path) -> None:
    proc = descend(command, "--task-option", "foo=1", "--out", str(tmp_path / "o"))
    assert_refused(proc, command, "--task-option", "no option 'foo'", "valid options: n_samples")
    assert not (tmp_path / "o").exists()


def _read_only_folder(tmp_path: Path) -> Path:
    """A folder nobody may write in: chmod for a user; root writes anywhere on a normal file
    system, so as root a path under /sys (no new entries for anyone) stands in."""
    if os.geteuid() == 0:
        return Path("/sys/descend-test-no-write")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return ro / "sub"


def test_output_folders_are_checked_before_the_computation(tmp_path: Path) -> None:
    a_file = tmp_path / "report.txt"
    a_file.write_text("keep me")
    proc = descend("demo", "--quick", "--out", str(a_file))
    assert_refused(proc, "demo", "--out", "exists and is not a folder")
    assert a_file.read_text() == "keep me"

    ro = _read_only_folder(tmp_path)
    proc = descend("demo", "--quick", "--out", str(ro))
    assert_refused(proc, "demo", "--out", f"{ro}")
    proc = descend(
        "landscape", "rosenbrock", "--optimizers", "sgd", "--steps", "5", "--out", str(ro)
    )
    assert_refused(proc, "landscape", "--out", f"{ro}")
    assert not ro.exists()


def test_ewa_checks_every_output_before_writing_any(tmp_path: Path) -> None:
    data = tmp_path / "series.csv"
    data.write_text("x\n1\n2\n3\n")
    plot = tmp_path / "plot.png"
    proc = descend(
        "ewa",
        str(data),
        "--column",
        "x",
        "--plot",
        str(plot),
        "--out",
        str(tmp_path / "missing" / "x.csv"),
    )
    assert_refused(proc, "ewa", "--out", "folder", "does not exist")
    assert not plot.exists()  # the PNG is not left behind
    proc = descend("ewa", str(tmp_path), "--column", "x", "--plot", str(plot))
    assert_refused(proc, "ewa", f"{tmp_path} is a folder; give a CSV file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series.csv"]


def test_serve_on_a_busy_port_is_one_line_without_a_banner() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    try:
        port = sock.getsockname()[1]
        proc = descend("serve", "--port", str(port), timeout=60)
    finally:
        sock.close()
    assert_refused(proc, "serve", "--port", f"127.0.0.1:{port}", "pick another port")


def _interrupt(argv: list[str], ready, cwd: Path, settle: float = 0.5) -> tuple[int, str]:
    """Start ``descend argv``, wait until ``ready()`` holds (the work has started), send
    SIGINT as Ctrl-C does, and return (exit status, stderr)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "descend", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=cwd,
    )
    try:
        deadline = time.monotonic() + 120
        while not ready() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the command ended before it could be interrupted"
        time.sleep(settle)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


def test_ctrl_c_says_interrupted_and_removes_partial_outputs(tmp_path: Path) -> None:
    # Interrupted while drawing, into a folder that held a file of the user's: what the
    # command wrote (metrics.csv, any picture) goes, the user's file stays.
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    argv = [
        "landscape",
        "rosenbrock",
        "--optimizers",
        "sgd",
        "--steps",
        "300000",
        "--out",
        str(keep),
    ]
    rc, err = _interrupt(argv, (keep / "metrics.csv").exists, tmp_path, settle=0.0)
    assert rc == 130, err
    assert "descend landscape: interrupted" in err and "Traceback" not in err
    assert sorted(p.name for p in keep.iterdir()) == ["notes.txt"]

    # Interrupted while computing into a new folder: the folder goes.
    out = tmp_path / "land"
    argv = [
        "landscape",
        "rosenbrock",
        "--optimizers",
        "sgd",
        "--steps",
        "1000000",
        "--out",
        str(out),
    ]
    rc, err = _interrupt(argv, out.exists, tmp_path)
    assert rc == 130, err
    assert "descend landscape: interrupted" in err and "Traceback" not in err
    assert not out.exists()

    # demo used to leave an empty report folder behind.
    report = tmp_path / "report"
    rc, err = _interrupt(["demo", "--quick", "--out", str(report)], report.exists, tmp_path)
    assert rc == 130, err
    assert "descend demo: interrupted" in err and "Traceback" not in err
    assert not report.exists()


def test_no_arguments_prints_help_and_version_is_there() -> None:
    proc = descend()
    assert proc.returncode == 0 and "usage: descend" in proc.stdout
    assert "overshoots" in proc.stdout and "effective_lr" in proc.stdout  # the glossary
    proc = descend("--version")
    assert proc.returncode == 0 and proc.stdout.strip().startswith("descend ")
    from descend import __version__

    assert proc.stdout.strip() == f"descend {__version__}"


def test_help_lists_schedules_and_tasks() -> None:
    from descend.schedules import available
    from descend.train import data

    text = descend("schedule", "--help").stdout
    for name in available():
        assert f"  {name} " in text, name
    text = descend("lr-find", "--help").stdout.replace("\n", " ")
    for name in data.available():
        assert name in text, name
    from descend.cli.lr_find import TASKS

    assert list(TASKS) == data.available()


def _widest(text: str) -> int:
    return max(len(line) for line in text.splitlines())


def test_tables_fit_80_columns_and_have_markdown_and_csv(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """In-process (the refusals above run as real processes; here only the output matters)."""
    from descend.cli import main

    monkeypatch.setenv("COLUMNS", "80")

    def descend(*argv: str) -> subprocess.CompletedProcess:
        rc = main(list(argv))
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(argv, rc, captured.out, captured.err)

    common = ["--steps", "30", "--out", str(tmp_path / "l")]
    rich = descend("landscape", "rosenbrock", "--optimizers", "adam:lr=0.02", "momentum", *common)
    assert rich.returncode == 0, rich.stderr
    # progress of the long steps on stderr (a line per stage when it is not a terminal)
    assert "descend: 6 runs × 30 steps on rosenbrock…" in rich.stderr
    assert "descend: drawing the contour map…" in rich.stderr
    table = rich.stdout.split("wrote ")[0]  # the list of files written may be long
    assert _widest(table) <= 80, table
    assert "momentum:lr=0.001" in table  # names are not broken mid-word

    text = descend(
        "landscape",
        "rosenbrock",
        "--optimizers",
        "adam:lr=0.02",
        "momentum",
        "--format",
        "csv",
        *common,
    ).stdout
    rows = list(csv.DictReader(io.StringIO(text)))
    metrics = list(csv.DictReader((tmp_path / "l" / "metrics.csv").open()))
    assert len(rows) == len(metrics) == 6
    assert [r["spec"] for r in rows] == [m["spec"] for m in metrics]
    assert {"path_length", "overshoots", "basin", "distance"} <= set(rows[0])

    md = descend(
        "landscape", "rosenbrock", "--optimizers", "adam:lr=0.02", "--format", "markdown", *common
    ).stdout
    lines = md.strip().splitlines()
    assert lines[2].startswith("| spec | start | seed | final_loss")
    assert all(line.startswith("|") for line in lines[2:]) and len(lines) == 2 + 2 + 3

    opt = descend("optimizers", "--convention", "keras")
    assert opt.returncode == 0 and _widest(opt.stdout) <= 80
    from descend.optim.spec import REGISTRY

    for name in REGISTRY:  # whole names, never broken mid-word
        assert f" {name} " in opt.stdout, name
    keras = descend("optimizers", "--convention", "keras", "--format", "csv").stdout
    rows = {r["spec name"]: r for r in csv.DictReader(io.StringIO(keras))}
    assert list(rows) == list(REGISTRY)
    assert rows["momentum"]["what it is"] == (
        "heavy ball, lr-inside form v = βv − γg, θ ← θ + v (keras)"
    )
    assert "momentum_form=lr_inside" in rows["momentum"]["defaults"]
    torch_rows = descend("optimizers", "--format", "csv").stdout
    torch_rows = {r["spec name"]: r for r in csv.DictReader(io.StringIO(torch_rows))}
    assert torch_rows["momentum"]["what it is"].startswith("heavy ball, modern form v = βv + g")

    ex = descend("explain", "adam", "--grads", "0.02,0.01,-0.03", "--lr", "0.001")
    assert ex.returncode == 0 and _widest(ex.stdout) <= 80
    for column in ("second_moment_hat", "effective_lr", "new_param"):
        assert column in ex.stdout


def test_betas_tuple_forms_equal_beta1_beta2(capsys) -> None:
    from descend.cli import main
    from descend.explain import explain, render
    from descend.optim.spec import parse_spec

    assert parse_spec("adam:betas=(0.9,0.95)") == ("adam", {"betas": (0.9, 0.95)})
    assert parse_spec("adam:lr=0.1,betas=0.9,0.95,eps=1e-8") == (
        "adam",
        {"lr": 0.1, "betas": (0.9, 0.95), "eps": 1e-8},
    )
    expected = render(explain("adam:beta1=0.9,beta2=0.95", gradients=[0.1, -0.2, 0.3]), "csv")
    for spec in ("adam:betas=(0.9,0.95)", "adam:betas=0.9,0.95", "adam:betas=(0.9, 0.95)"):
        assert main(["explain", spec, "--grads", "0.1,-0.2,0.3", "--format", "csv"]) == 0
        assert capsys.readouterr().out == expected
    proc = descend("explain", "adam:betas=(0.9,x)", "--grads", "0.1")
    assert_refused(proc, "explain", "write a tuple as (0.9,0.95) or 0.9,0.95")


def test_rollback_keeps_a_studys_finished_trials(tmp_path: Path) -> None:
    """Ctrl-C (or an error) removes what a command wrote, except the store of finished trials
    that a rerun resumes from (compare, lr-find --seeds): it stays, with its folder."""
    from descend.cli import outputs

    outputs.reset()
    new = outputs.output_dir(tmp_path / "fresh" / "out")
    store = outputs.keep(new / "compare_trials.jsonl")
    store.write_text('{"trial": 0}\n')
    (new / "compare_runs.csv").write_text("half-written")
    (new / "figures").mkdir()
    (new / "figures" / "a.png").write_bytes(b"x")
    old = tmp_path / "old"
    old.mkdir()
    (old / "earlier.txt").write_text("keep me")
    outputs.output_dir(old)
    (old / "partial.csv").write_text("half")
    outputs.rollback()
    assert store.read_text() == '{"trial": 0}\n'
    assert sorted(p.name for p in new.iterdir()) == ["compare_trials.jsonl"]
    assert sorted(p.name for p in old.iterdir()) == ["earlier.txt"]
    # without a kept file the new folder goes entirely, as before
    outputs.reset()
    gone = outputs.output_dir(tmp_path / "gone")
    (gone / "x.csv").write_text("x")
    outputs.rollback()
    assert not gone.exists()


def test_ctrl_c_swallowed_by_python_still_interrupts(monkeypatch, capsys) -> None:
    """A KeyboardInterrupt raised inside a ``__del__`` (garbage collection) is printed and
    dropped by Python; the command must still stop as interrupted (exit status 130), not run on
    to exit 0. The SIGINT is real, delivered to this process by ``signal.raise_signal``."""
    import descend.cli.optimizers as command
    from descend.cli import main

    class Collected:
        def __del__(self):
            signal.raise_signal(signal.SIGINT)

    def run(args):
        Collected()  # dropped at once: its __del__ takes the Ctrl-C
        return 0

    monkeypatch.setattr(command, "run", run)
    before = signal.getsignal(signal.SIGINT)
    assert main(["optimizers"]) == 130
    assert "descend optimizers: interrupted" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is before  # the command's handler is gone again
