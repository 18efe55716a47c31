"""The benchmarks' smoke mode, as CI runs it: tiny sizes, a few steps, correctness only.

``bench_optim --smoke`` builds every implementation of every row (descend fast per
convention, descend default, torch for-loop/foreach/fused, the axpy probe), steps them in
interleaved rounds, checks the fast path against the default path and renders the report; no
timing is asserted. ``run.py`` must find every ``bench_*.py`` and pass ``--smoke`` through.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

from conftest import require_kernels

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_smoke_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_bench_optim_smoke_writes_only_its_section(tmp_path, capsys):
    require_kernels()
    bench = _load("bench_optim")
    results = tmp_path / "RESULTS.md"
    other = "<!-- section: lab -->\nlab numbers stay\n<!-- /section: lab -->\n"
    results.write_text("# Benchmark results\n\n" + other)
    assert bench.main(["--smoke", "--results", str(results)]) == 0
    text = results.read_text()
    assert other.strip() in text  # the other section is left as it was
    assert text.count("<!-- section: optim -->") == text.count("<!-- /section: optim -->") == 1
    section = text.split("<!-- section: optim -->")[1].split("<!-- /section: optim -->")[0]
    for case in bench.CASES:
        for conv in case.conventions:
            path = "default" if case.chain_only else "fast"
            assert f"| {case.name} | {conv} | {path} |" in section, (case.name, conv)
    assert "### Targets" in section and "### 1 thread" in section
    # running again replaces the section instead of appending a second one
    assert bench.main(["--smoke", "--results", str(results), "--only", "adam"]) == 0
    again = results.read_text()
    assert again.count("<!-- section: optim -->") == 1 and other.strip() in again
    assert "| one | momentum |" not in again and "| one | adam |" in again


def test_resnet18_shapes_are_resnet18():
    bench = _load("bench_optim")
    assert len(bench.RESNET18) == 62
    assert sum(_numel(s) for s in bench.RESNET18) == 11_689_512  # torchvision's resnet18


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def test_run_finds_every_benchmark_and_passes_smoke_through(monkeypatch, tmp_path):
    run = _load("run")
    found = run.discover()
    assert "optim" in found and all(p.name == f"bench_{n}.py" for n, p in found.items())
    probe = tmp_path / "bench_probe.py"
    probe.write_text("CALLS = []\n\ndef main(argv):\n    CALLS.append(list(argv))\n    return 0\n")
    failing = tmp_path / "bench_zfail.py"
    failing.write_text("def main(argv):\n    return 3\n")
    monkeypatch.setattr(run, "discover", lambda: {"probe": probe, "zfail": failing})
    loaded = {}
    real_load = run.load

    def load(path):
        loaded[path.stem] = module = real_load(path)
        return module

    monkeypatch.setattr(run, "load", load)
    assert run.main(["--smoke", "--only", "probe"]) == 0
    assert loaded["bench_probe"].CALLS == [["--smoke"]]
    assert run.main([]) == 3  # every benchmark runs; the first failure is the exit status
    assert loaded["bench_probe"].CALLS == [[]]
    with pytest.raises(SystemExit):
        run.main(["--only", "nope"])


def test_bench_matrix_smoke_checks_agreement_and_writes_nothing(tmp_path, capsys):
    bench = _load("bench_matrix")
    results = tmp_path / "RESULTS.md"
    assert bench.main(["--smoke", "--results", str(results)]) == 0
    assert not results.exists()
    assert "parameters agree" in capsys.readouterr().out
    shapes = bench.resnet18_matrices()  # torchvision's resnet18: 20 convolutions + fc
    # its 11,689,512 parameters less the batch norms' 2 × 4,800 and the classifier's bias
    assert len(shapes) == 21 and sum(a * b for a, b in shapes) == 11_689_512 - 9_600 - 1_000


def test_bench_monitor_floor_variants_run(capsys):
    """bench_monitor_floor's variants (each patches the monitor; restored here, where the
    script runs each in its own process): every one measures, at tiny sizes. The variant that
    never samples has no sampled step; the others have one."""
    require_kernels()
    from descend.monitor import core, fused

    floor = _load("bench_monitor_floor")
    saved = [
        (core.Monitor, "__init__"),
        (core._GradHook, "arm"),
        (fused.Snapshot, "__call__"),
        (fused.Reader, "run"),
        (fused.Reader, "__call__"),
    ]
    saved = [(owner, name, owner.__dict__[name]) for owner, name in saved]
    try:
        for name, kind in floor.VARIANTS.items():
            got = floor.one(kind, 1, 10)
            for owner, attr, value in saved:
                setattr(owner, attr, value)
            assert math.isfinite(got["cpu_overhead"]) and got["plain_cpu_ms"] > 0, name
            assert math.isnan(got["parts_us"]["sampled"]) == (kind == "never"), name
    finally:
        for owner, attr, value in saved:
            setattr(owner, attr, value)
