"""benchmarks/bench_lab.py --smoke runs end to end (tiny sizes; no timing is asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_lab.py"


def test_bench_lab_smoke(capsys, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_lab", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = tmp_path / "RESULTS.md"
    module.RESULTS = results
    assert module.main(["--smoke"]) == 0
    text = capsys.readouterr().out
    assert "lab (metrics on)" in text and "lab vs (c) = 0.00e+00" in text
    assert not results.exists()  # --smoke never writes results
    # the section writer keeps other benchmarks' sections
    results.write_text(
        "# Benchmark results\n\n<!-- section: fast -->\nfast\n<!-- /section: fast -->\n"
    )
    module.write_section("first", results)
    module.write_section("second", results)
    body = results.read_text()
    assert "fast\n" in body and "second" in body and "first" not in body
    assert body.count("<!-- section: lab -->") == 1
