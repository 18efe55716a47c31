"""``descend diagnose``'s page: the findings of :mod:`descend.monitor.diagnose` in plain words
with their numbers, then the curves they come from, in the report's style (one self-contained
HTML file, figures embedded)."""

from __future__ import annotations

import html
import time
from pathlib import Path

import pandas as pd

from descend.monitor.diagnose import CHECKS, Finding, diagnose, read_run
from descend.report.document import Section, write_html


def _plot(
    section: Section,
    frame: pd.DataFrame,
    tags: list[str],
    title: str,
    name: str,
    log: bool = True,
    lines: tuple[float, ...] = (),
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [t for t in tags if t in frame.columns and frame[t].notna().any()]
    if not present:
        return
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    data = frame.set_index("step")
    for tag in present:
        series = data[tag].dropna()
        ax.plot(series.index, series.to_numpy(), label=tag, lw=1.2)
    if log and all((data[t].dropna() > 0).all() for t in present):
        ax.set_yscale("log")
    for y in lines:
        ax.axhline(y, color="#888", lw=0.8, ls="--")
    ax.set_xlabel("optimizer step")
    ax.set_title(title, fontsize=10)
    if len(present) <= 8:
        ax.legend(fontsize=7)
    section.figure(fig, title, name)


def _findings_section(findings: list[Finding], frame: pd.DataFrame, run: str) -> Section:
    s = Section("findings", "Findings")
    steps = int(frame["step"].max()) if len(frame) else 0
    measured = int(frame["opt/update_ratio"].notna().sum()) if "opt/update_ratio" in frame else 0
    s.paragraphs.append(
        f"Run <code>{html.escape(run)}</code>: {steps} optimizer steps, {measured} of them "
        f"measured. Checks: {', '.join(CHECKS)}."
    )
    if not findings:
        s.paragraphs.append("<b>Nothing flagged.</b> Every check passed on this run.")
    for f in findings:
        s.paragraphs.append(f"<b>{html.escape(f.title)}.</b> {f.message}")
    if findings:
        s.tables.append(
            (
                "the numbers behind each finding",
                pd.DataFrame(
                    [
                        {
                            "kind": f.kind,
                            "finding": f.title,
                            "evidence": ", ".join(
                                f"{k} = {_short(v)}" for k, v in f.evidence.items()
                            ),
                        }
                        for f in findings
                    ]
                ),
            )
        )
    s.numbers = {"findings": [{"kind": f.kind, "title": f.title, **f.evidence} for f in findings]}
    s.budget = f"{len(frame)} logged steps"
    return s


def _short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def write_diagnosis(run: str | Path, out: str | Path) -> tuple[Path, list[Finding]]:
    """Diagnose ``run`` and write ``out/diagnosis.html``; returns the path and the findings."""
    start = time.perf_counter()
    frame = read_run(run)
    findings = diagnose(frame)
    first = _findings_section(findings, frame, str(run))
    for f in findings:
        _plot(
            first,
            frame,
            f.tags,
            f.title,
            f"finding-{f.kind}",
            log=f.kind != "stability" and f.kind != "momentum",
        )
    curves = Section("curves", "The curves")
    curves.paragraphs.append(
        "What the monitor measured at each sampled step (see <code>descend.monitor.METRICS</code>)."
    )
    _plot(curves, frame, ["loss"], "training loss", "loss", log=False)
    layers = [c for c in frame.columns if c.startswith("layer/") and c.endswith("/update_ratio")]
    _plot(
        curves,
        frame,
        layers,
        "update/weight ratio per layer (dashed: 1e-5, 1e-3, 1e-1)",
        "update-ratio",
        lines=(1e-5, 1e-3, 1e-1),
    )
    _plot(
        curves,
        frame,
        ["opt/eff_lr_p10", "opt/eff_lr_p50", "opt/eff_lr_p90", "opt/group0/lr"],
        "effective learning rate (quantiles) and the scheduled lr",
        "eff-lr",
    )
    _plot(
        curves,
        frame,
        ["opt/grad_norm_preclip", "opt/grad_norm"],
        "gradient norm before and after clipping",
        "grad-norm",
    )
    _plot(
        curves,
        frame,
        ["opt/momentum_cos", "opt/opposed_frac"],
        "momentum/gradient cosine and fraction of coordinates moved uphill",
        "momentum",
        log=False,
    )
    _plot(curves, frame, ["opt/noise_scale"], "gradient noise scale B_simple", "noise-scale")
    seconds = time.perf_counter() - start
    first.seconds = curves.seconds = seconds
    curves.budget = first.budget
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "diagnosis.html"
    write_html(
        [first, curves],
        path,
        "descend diagnose",
        f"Findings from the optimizer's own numbers in <code>{html.escape(str(run))}</code>.",
    )
    return path, findings
