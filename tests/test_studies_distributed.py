"""Studies through a real Dask cluster on 127.0.0.1: the same numbers as the serial run, a
failing trial kept with its error, and a killed study resumed from what finished."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from descend.cli import main
from descend.executor import run_trials
from descend.train.compare import compare

ARGS = ["compare", "--task", "digits", "--optimizers", "sgd:lr=0.1;adam", "--seeds", "4"]
ARGS += ["--epochs", "1", "--quiet", "--threads", "1"]  # 34 updates a trial: keeps it short
TIMING = ["wall_time", "time_to_target"]
CLI = [sys.executable, "-c", "import sys; from descend.cli import main; sys.exit(main())"]


@pytest.fixture(scope="module")
def cluster():
    """One local cluster for the module's --address tests (2 processes, 127.0.0.1, closed)."""
    from dask.distributed import LocalCluster

    c = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=40,
    )
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    assert main([*ARGS, "--out", str(out)]) == 0
    return out


def _same(a: Path, b: Path) -> None:
    for name, drop in (("compare_runs.csv", TIMING), ("compare_curves.csv", ["time"])):
        x = pd.read_csv(a / name).drop(columns=drop)
        y = pd.read_csv(b / name).drop(columns=drop)
        pd.testing.assert_frame_equal(x, y, check_exact=True)  # bit for bit


def test_local_cluster_equals_serial_bit_for_bit(serial, tmp_path, capsys):
    assert main([*ARGS, "--workers", "2", "--out", str(tmp_path)]) == 0
    assert "dask local cluster, 2 processes; 0 of 8" in capsys.readouterr().out
    _same(serial, tmp_path)
    assert len((tmp_path / "compare_trials.jsonl").read_text().splitlines()) == 8


def test_killed_study_resumes_with_only_the_rest(serial, cluster, tmp_path, capsys):
    """Kill the study's process (SIGKILL, as a crash or an OOM kill would) once 2 trials are
    stored; the rerun runs only the missing trials and the result equals the serial one. The
    study runs on the module's cluster (--address) so that no second cluster has to start;
    the --workers path is the same code after the cluster is made."""
    store = tmp_path / "compare_trials.jsonl"
    address = ["--address", cluster.scheduler_address, "--out", str(tmp_path)]
    proc = subprocess.Popen([*CLI, *ARGS, *address], start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if store.exists() and len(store.read_text().splitlines()) >= 2:
                break
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    lines = store.read_text().splitlines() if store.exists() else []
    finished = len([line for line in lines if line.endswith("}")])
    assert 2 <= finished < 8, f"{finished} trials stored before the kill"
    capsys.readouterr()
    assert main([*ARGS, *address]) == 0
    assert f"{finished} of 8 trials resumed" in capsys.readouterr().out
    assert len(store.read_text().splitlines()) == len(lines) + (8 - finished)
    _same(serial, tmp_path)


def _fails_on_seed_1():
    import torch

    if torch.initial_seed() == 1:
        raise RuntimeError("planted failure for seed 1")
    return torch.nn.Sequential(torch.nn.Linear(64, 10))


def test_failing_trial_is_reported_and_the_others_kept(cluster, tmp_path):
    kw = dict(seeds=3, updates=20, model=_fails_on_seed_1, store=tmp_path / "t.jsonl")
    cmp = compare("digits", ["sgd:lr=0.1"], address=cluster.scheduler_address, **kw)
    runs = cmp.runs
    bad = runs[runs["error"].notna()]
    assert list(bad["seed"]) == [1] and "planted failure for seed 1" in bad["error"].iloc[0]
    good = runs[runs["error"].isna()]
    assert list(good["seed"]) == [0, 2] and good["final_val_acc"].notna().all()
    assert cmp.config["n_failed"] == 1
    # the failed trial is stored with its error and tried again on a rerun, the others resumed
    again = compare("digits", ["sgd:lr=0.1"], **kw)
    assert again.config["n_resumed"] == 2 and again.config["n_failed"] == 1


def test_compare_with_a_failed_trial_exits_1_and_a_rerun_runs_only_it(
    tmp_path, monkeypatch, capsys
):
    """descend compare (serial): a trial that raises is reported with its error, the table and
    files are still written, the command exits 1; the same command again runs only that trial
    (the other is resumed) and exits 0."""
    module = importlib.import_module("descend.train.compare")  # (the package exports a function)
    trial = module._compare_trial

    def fails_on_seed_1(common, item):
        if item[1] == 1:
            raise RuntimeError("planted failure for seed 1")
        return trial(common, item)

    monkeypatch.setattr(module, "_compare_trial", fails_on_seed_1)
    args = ["compare", "--task", "digits", "--optimizers", "sgd:lr=0.1", "--seeds", "2"]
    args += ["--epochs", "1", "--quiet", "--threads", "1", "--out", str(tmp_path)]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "planted failure for seed 1" in out and "1 of 2 trials failed" in out
    runs = pd.read_csv(tmp_path / "compare_runs.csv")
    assert runs["error"].notna().tolist() == [False, True]
    monkeypatch.setattr(module, "_compare_trial", trial)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "1 of 2 trials resumed" in out and "failed:" not in out and "trials failed" not in out


def _square(common, x):
    return {"x": x, "y": x * x + common}


def test_run_trials_keeps_order_and_validates(tmp_path):
    trials = [(f"k{i}", i) for i in range(5)]
    out = run_trials(_square, 1, trials, store=tmp_path / "s.jsonl")
    assert [o.result["y"] for o in out] == [1, 2, 5, 10, 17]
    again = run_trials(_square, 1, trials, store=tmp_path / "s.jsonl")
    assert all(o.resumed for o in again) and [o.result for o in again] == [o.result for o in out]
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        run_trials(_square, 1, trials, workers=0)
    with pytest.raises(ValueError, match="not both"):
        run_trials(_square, 1, trials, workers=2, address="tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="address must be a Dask scheduler address"):
        run_trials(_square, 1, trials, address="127.0.0.1")
    assert main([*ARGS, "--workers", "0", "--out", str(tmp_path)]) == 2


def test_lr_find_seeds_on_the_cluster_equal_serial_and_resume(cluster, tmp_path, capsys):
    args = ["lr-find", "--task", "digits", "--optimizer", "sgd:momentum=0.9", "--seeds", "3"]
    args += ["--steps", "40", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "serial")]) == 0
    assert main([*args, "--address", cluster.scheduler_address, "--out", str(tmp_path / "d")]) == 0
    for name in ("lr_find_digits.csv", "lr_find_digits.json"):
        assert (tmp_path / "serial" / name).read_text() == (tmp_path / "d" / name).read_text()
    store = tmp_path / "d" / "lr_find_digits_trials.jsonl"
    assert len(store.read_text().splitlines()) == 3
    # a rerun takes the three seeds back from the store and runs none
    assert main([*args, "--address", cluster.scheduler_address, "--out", str(tmp_path / "d")]) == 0
    assert len(store.read_text().splitlines()) == 3
    assert (tmp_path / "serial" / "lr_find_digits.csv").read_text() == (
        tmp_path / "d" / "lr_find_digits.csv"
    ).read_text()
    assert main([*args, "--landscape", "ravine", "--workers", "2"]) == 2
    capsys.readouterr()


@pytest.mark.parametrize("noise_batch", [4])  # with noise: a function of (seed, step)
def test_landscape_sweep_split_over_the_cluster_equals_one_process(cluster, noise_batch):
    from descend import lab

    values = {"lr": list(np.geomspace(1e-3, 0.2, 9)), "momentum": [0.0, 0.5, 0.9, 0.99]}
    kw = dict(steps=150, seed=3, noise_batch=noise_batch)
    one = lab.sweep("ravine", "momentum", values, **kw)
    split = lab.sweep("ravine", "momentum", values, address=cluster.scheduler_address, **kw)
    pd.testing.assert_frame_equal(one.result.metrics, split.result.metrics, check_exact=True)
    np.testing.assert_array_equal(one.steps_to_tol, split.steps_to_tol)
    np.testing.assert_array_equal(one.result.trajectories, split.result.trajectories)


def _offset(common, x):
    return x + common["offset"]


def test_each_run_uses_keys_of_its_own_on_the_cluster(cluster, monkeypatch):
    """Two runs of the same study on one cluster share no key: the common arguments go out as
    one object under a fresh key (not each value under its name, "model", "updates", …) and
    every trial's key carries the run's token. With shared names, a rerun next to a killed
    study whose keys the scheduler was releasing lost its data ("Key lost during
    replication") and its trials failed."""
    from dask.distributed import Client

    calls = []
    scatter, submit = Client.scatter, Client.submit

    def scattering(self, data, **kw):
        calls.append(("scatter", data, kw))
        return scatter(self, data, **kw)

    def submitting(self, *args, **kw):
        calls.append(("submit", kw.get("key"), None))
        return submit(self, *args, **kw)

    monkeypatch.setattr(Client, "scatter", scattering)
    monkeypatch.setattr(Client, "submit", submitting)
    trials = [(f"k{i}", i) for i in range(3)]
    common = {"offset": 10}
    runs = [run_trials(_offset, common, trials, address=cluster.scheduler_address) for _ in "ab"]
    assert [[o.result for o in run] for run in runs] == [[10, 11, 12]] * 2
    scattered = [(data, kw) for kind, data, kw in calls if kind == "scatter"]
    assert [data for data, _ in scattered] == [[common], [common]]  # one object, not by name
    assert all(kw.get("hash") is False and kw.get("broadcast") for _, kw in scattered)
    keys = [key for kind, key, _ in calls if kind == "submit"]
    assert len(keys) == 6 and len(set(keys)) == 6
    assert all(key.startswith(f"trial-k{i % 3}-") for i, key in enumerate(keys))
