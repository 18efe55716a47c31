"""``descend diagnose RUN``: findings from a monitored run (a ``descend.monitor`` log or a
TensorBoard run directory), printed and written as an HTML page in the report's style."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "diagnose",
        help="findings from a monitored run (monitor log or TensorBoard run) as an HTML page",
        description=(
            "Read a run written by descend.monitor (a .jsonl or .csv log, or a TensorBoard run "
            "directory), check it for layers with update/weight ratios far from 1e-3, a "
            "collapsing effective learning rate, skipped or clipped steps, momentum against "
            "the gradient, a warm-up too short for Adam's second moment and a learning rate "
            "past the stability edge; print the findings and write OUT/diagnosis.html."
        ),
    )
    p.add_argument("run", help="monitor log (*.jsonl, *.csv) or TensorBoard run directory")
    p.add_argument("--out", default="diagnosis", help="output folder (default %(default)s)")
    p.add_argument(
        "--strict", action="store_true", help="exit with status 1 when anything is flagged"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from descend.report.diagnose_page import write_diagnosis

    path, findings = write_diagnosis(args.run, args.out)
    if not findings:
        print("nothing flagged: every check passed")
    for f in findings:
        print(f"- [{f.kind}] {f.title}")
    print(f"wrote {path}")
    return 1 if findings and args.strict else 0
