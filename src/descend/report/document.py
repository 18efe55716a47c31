"""The report's building blocks and its two renderings: a self-contained HTML page (figures
embedded as base64 PNG, no script, no network) and a Markdown summary."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd


@dataclass
class Figure:
    caption: str
    png: bytes
    name: str


@dataclass
class Section:
    """One chapter of the tour: what it shows, the pictures, the numbers behind them."""

    key: str
    title: str
    paragraphs: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    budget: str = ""
    seconds: float = 0.0

    def figure(self, fig, caption: str, name: str) -> None:
        """Add a matplotlib figure (rendered to PNG at 110 dpi and closed)."""
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        self.figures.append(Figure(caption, buf.getvalue(), f"{self.key}-{name}.png"))

    def image(self, png_path: str | Path, caption: str, name: str) -> None:
        """Add a PNG that some other tool already wrote."""
        self.figures.append(Figure(caption, Path(png_path).read_bytes(), f"{self.key}-{name}.png"))

    def plot(self, draw, caption: str, name: str) -> None:
        """Add a picture drawn by one of :mod:`descend.plots`' functions, which write files:
        ``draw(path, formats)`` is called with a temporary path and the PNG is kept."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            written = draw(Path(tmp) / name, ("png",))
            png = next(p for p in written if str(p).endswith(".png"))
            self.figures.append(Figure(caption, Path(png).read_bytes(), f"{self.key}-{name}.png"))


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#1d232a;line-height:1.5}
h1{font-size:1.9em;margin-bottom:.2em}
h2{border-bottom:2px solid #e4e8ee;padding-bottom:.2em;margin-top:2.2em}
.budget{color:#5a6573;font-size:.9em;background:#f4f6f9;border-left:3px solid #8aa4c8;
padding:.3em .7em}
figure{margin:1em 0} figure img{max-width:100%;border:1px solid #e4e8ee}
figcaption{color:#5a6573;font-size:.9em}
table{border-collapse:collapse;margin:.8em 0;font-size:.88em}
th,td{border:1px solid #d5dbe3;padding:.25em .6em;text-align:right}
th{background:#f0f3f7} td:first-child,th:first-child{text-align:left}
nav ol{columns:2} code{background:#f4f6f9;padding:0 .2em}
"""


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        if math.isnan(x):
            return "—"
        if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
            return f"{x:.3e}"
        return f"{x:.4g}"
    return str(x)


def _table_html(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
        for row in df.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _table_md(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines)


def write_html(sections: list[Section], path: Path, title: str, intro: str) -> None:
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p>{intro}</p><nav><ol>",
    ]
    parts += [f"<li><a href='#{s.key}'>{html.escape(s.title)}</a></li>" for s in sections]
    parts.append("</ol></nav>")
    for i, s in enumerate(sections, 1):
        parts.append(f"<section id='{s.key}'><h2>{i}. {html.escape(s.title)}</h2>")
        parts += [f"<p>{p}</p>" for p in s.paragraphs]
        for fig in s.figures:
            data = base64.b64encode(fig.png).decode("ascii")
            parts.append(
                f"<figure><img alt='{html.escape(fig.caption)}' src='data:image/png;base64,{data}'>"
                f"<figcaption>{html.escape(fig.caption)}</figcaption></figure>"
            )
        for caption, df in s.tables:
            parts.append(f"<p><b>{html.escape(caption)}</b></p>{_table_html(df)}")
        parts.append(
            f"<p class='budget'>Budget: {html.escape(s.budget)} · computed in {s.seconds:.1f} s</p>"
            "</section>"
        )
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")


def write_markdown(sections: list[Section], path: Path, title: str) -> None:
    lines = [f"# {title}", ""]
    for i, s in enumerate(sections, 1):
        lines += [f"## {i}. {s.title}", ""]
        lines += [_strip_tags(p) + "\n" for p in s.paragraphs]
        for fig in s.figures:
            lines.append(f"![{fig.caption}](figures/{fig.name})\n")
        for caption, df in s.tables:
            lines += [f"**{caption}**", "", _table_md(df), ""]
        lines += [f"*Budget: {s.budget} · {s.seconds:.1f} s*", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def write_numbers(sections: list[Section], path: Path) -> None:
    """Every section's key numbers as JSON (what the report's test reads)."""
    data = {s.key: {"title": s.title, "budget": s.budget, **s.numbers} for s in sections}
    path.write_text(json.dumps(data, indent=2, default=_json_default), encoding="utf-8")


def _json_default(x):
    if hasattr(x, "item"):
        return x.item()
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


def _strip_tags(text: str) -> str:
    import re

    return re.sub(r"<[^>]+>", "", text).replace("&lt;", "<").replace("&gt;", ">")


def save_figures(sections: list[Section], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for s in sections:
        for fig in s.figures:
            (folder / fig.name).write_bytes(fig.png)
