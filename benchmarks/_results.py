"""What every benchmark shares: the machine line and the RESULTS.md section writer."""

from __future__ import annotations

import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_section(section: str, body: str, path: Path = RESULTS) -> None:
    """Replace (or append) one benchmark's section of RESULTS.md, leaving the others.

    Sections are delimited by ``<!-- section: NAME -->`` and ``<!-- /section: NAME -->``."""
    begin, end = f"<!-- section: {section} -->", f"<!-- /section: {section} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


__all__ = ["RESULTS", "cpu_name", "write_section"]
