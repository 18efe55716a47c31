"""``benchmarks/bench_gpu.py`` without a GPU: the skip line, and its harness run on the CPU.

No GPU is lent to CI, so the timing claims are made on a CUDA machine only; here the
benchmark must (1) exit 0 with its "skipped: no CUDA" line and write nothing, and (2) run its
whole harness — building every implementation, compiling, the compiled-vs-eager check, the
interleaved rounds and the table — on the CPU with ``--device cpu`` (no timing is asserted).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import torch

from conftest import require_kernels

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load():
    spec = importlib.util.spec_from_file_location("bench_smoke_gpu", BENCH / "bench_gpu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_says_skipped_and_writes_nothing(tmp_path, capsys, monkeypatch):
    bench = _load()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    results = tmp_path / "RESULTS.md"
    assert bench.main(["--smoke", "--results", str(results)]) == 0
    assert bench.main(["--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [bench.SKIP, bench.SKIP]
    assert "skipped: no CUDA" in bench.SKIP
    assert not results.exists()


def test_harness_runs_on_the_cpu(tmp_path, capsys):
    require_kernels()
    bench = _load()
    results = tmp_path / "RESULTS.md"
    args = ["--device", "cpu", "--backend", "eager", "--smoke", "--results", str(results)]
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    assert not results.exists()  # only a CUDA run writes its section
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] in bench.IMPLS:
            rows[cells[0]] = cells
    assert rows.keys() == bench.IMPLS.keys()
    assert rows[bench.YARDSTICK][3] == "1.00"
    for name, cells in rows.items():
        assert float(cells[1]) > 0  # ms per step
        if name.startswith("descend"):
            assert re.fullmatch(r"[0-9.e+-]+", cells[4]) and float(cells[4]) <= bench.CHECK_TOL
