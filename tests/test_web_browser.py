"""End-to-end tests of the web lab in a real browser: Playwright for Python driving Debian's
Chromium (/usr/bin/chromium; `.ci/run` installs it: browser downloads are impossible here).

The server runs in a background thread (uvicorn on 127.0.0.1, a free port). The page keeps its
Content-Security-Policy (no eval), so waits use CSS selectors on ``<body data-status>``.
Without Chromium or Playwright these tests skip with the reason, except under CI (CI=true),
where they fail. A screenshot of each view is saved under test-artifacts/.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from conftest import require

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
WAIT_MS = 60_000


def _missing() -> str | None:
    for module in ("playwright", "uvicorn", "fastapi"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install -e '.[test]')"
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    reason = _missing()
    if reason:
        require(False, reason)
    import uvicorn

    from descend.web import create_app

    port = _free_port()
    config = uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the web lab server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    executable = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    with sync_playwright() as p:
        try:
            chromium = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        except Exception as exc:  # noqa: BLE001 - any launch failure means: no browser here
            require(False, f"Chromium did not start: {exc}")
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1500, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))

    def console(message) -> None:
        # a 422 is an answer the page shows (tests provoke some); anything else is a problem
        if message.type == "error" and "status of 422" not in message.text:
            problems.append(f"console: {message.text}")

    page.on("console", console)
    page.problems = problems
    yield page
    context.close()
    assert not problems, problems


def wait_status(page, status: str) -> None:
    page.locator(f"body[data-status={status}]").wait_for(state="attached", timeout=WAIT_MS)


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


COLOURS = ["#e6194b", "#0b5ed7", "#f58231", "#111111"]  # plot.js COLOURS[0:4]


def colour_counts(page, canvas: str) -> list[int]:
    """How many pixels of the canvas have exactly each optimizer colour."""
    return page.evaluate(
        """([id, colours]) => {
            const canvas = document.getElementById(id);
            const context = canvas.getContext("2d");
            const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
            const rgb = colours.map((c) => [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16)));
            const counts = rgb.map(() => 0);
            for (let k = 0; k < data.length; k += 4) {
              rgb.forEach((c, i) => {
                if (data[k] === c[0] && data[k + 1] === c[1] && data[k + 2] === c[2]) counts[i]++;
              });
            }
            return counts;
        }""",
        [canvas, COLOURS],
    )


def canvas_digest(page, canvas: str) -> str:
    url = page.evaluate("(id) => document.getElementById(id).toDataURL()", canvas)
    return hashlib.sha256(url.encode()).hexdigest()


def view_of(page) -> dict:
    """What a shared link must bring back."""
    return {
        "function": page.input_value("#function"),
        "start": (page.input_value("#start-x"), page.input_value("#start-y")),
        "ticked": page.eval_on_selector_all(
            "#optimizers input[type=checkbox]:checked", "boxes => boxes.map(b => b.dataset.name)"
        ),
        "steps": page.input_value("#steps"),
        "metrics": page.inner_text("#metrics tbody"),
        "map": canvas_digest(page, "contour"),
        "loss": canvas_digest(page, "loss"),
    }


def test_click_a_start_run_and_reload_the_shared_link(server, page, browser):
    specs = "o=sgd&o=momentum&o=nesterov&o=adam:lr%3D0.05"
    page.goto(f"{server}/?f=rosenbrock&{specs}&steps=300")
    wait_status(page, "ready")
    assert colour_counts(page, "contour") == [0, 0, 0, 0]

    # click the map where (x, y) = (−1.5, 2): the start moves there
    px, py = page.evaluate("() => window.descendLab.view.frame.px(-1.5, 2.0)")
    box = page.locator("#contour").bounding_box()
    page.mouse.click(box["x"] + px, box["y"] + py)
    assert float(page.input_value("#start-x")) == pytest.approx(-1.5, abs=0.02)
    assert float(page.input_value("#start-y")) == pytest.approx(2.0, abs=0.02)

    page.click("#run")
    wait_status(page, "done")
    # trajectories drawn: each optimizer's colour now covers many pixels of the map
    counts = colour_counts(page, "contour")
    assert all(c > 0 for c in counts) and sum(counts) > 500, counts  # later lines cover earlier
    assert all(c > 20 for c in colour_counts(page, "loss"))
    # the metrics table: one row per optimizer, every column filled
    rows = page.locator("#metrics tbody tr")
    assert rows.count() == 4
    for i in range(4):
        cells = rows.nth(i).locator("td").all_inner_texts()
        assert len(cells) == 11 and cells[3] in ("ok", "diverged")
        assert cells[4] and cells[5]  # steps to converge, final loss
        assert cells[10] == "no" or cells[10].startswith("step")
    assert "adam:lr=0.05" in page.inner_text("#metrics tbody")
    screenshot(page, "web-lab-run.png")

    with page.expect_download() as download:
        page.click("#export-csv")
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0] == "run,spec,seed,start_x,start_y,step,x,y,loss"
    assert lines[1].startswith("0,sgd:lr=0.001,0,-1.5")

    url = page.url
    assert "run=1" in url and "start=-1.5" in url
    before = view_of(page)
    again = browser.new_context(viewport={"width": 1500, "height": 1000}).new_page()
    try:
        again.goto(url)
        wait_status(again, "done")
        assert view_of(again) == before
        screenshot(again, "web-lab-reloaded.png")
    finally:
        again.context.close()


def test_expression_theory_panel_and_parser_errors(server, page):
    page.goto(f"{server}/?o=sgd:lr%3D0.05&o=momentum&steps=200")
    wait_status(page, "ready")
    page.select_option("#function", "expr")
    page.fill("#expression", "x**2 + 10*y**2")
    page.click("#apply-expression")
    wait_status(page, "ready")
    assert page.inner_text("#formula") == "x**2 + 10*y**2"
    page.click("#run")
    wait_status(page, "done")
    theory = page.locator("#theory[data-quadratic='1']")
    assert theory.is_visible()
    text = page.inner_text("#theory-body")
    assert "10" in text and "gradient descent" in text and "heavy ball" in text
    # adopt the optimal heavy ball: α* = (2/(√2+√20))², β* = ((√10−1)/(√10+1))²
    page.click("text=use heavy-ball optimum")
    wait_status(page, "done")
    ticked = page.locator("#optimizers li", has_text="momentum").first
    assert ticked.locator("input[data-key=momentum]").input_value() == "0.2699"
    screenshot(page, "web-lab-theory.png")

    page.fill("#expression", "x**2 + __import__('os')")
    page.click("#apply-expression")
    wait_status(page, "error")
    # the parser's message (with its caret) at the expression field, not in the status line
    message = page.inner_text(".field-error[data-for=expression]")
    assert "unknown function '__import__'" in message and "^" in message
    assert "fix the marked field" in page.inner_text("#status")
    assert "expr%3Ax**2" in page.url or "expr:x**2" in page.url


def test_basins_button_draws_one_map_per_optimizer(server, page):
    page.goto(f"{server}/?f=himmelblau&o=sgd&o=adam&steps=150&bgrid=16")
    wait_status(page, "ready")
    page.click("#basins")
    page.locator("#basin-maps canvas").nth(1).wait_for(timeout=WAIT_MS)
    wait_status(page, "done")
    assert page.locator("#basin-maps canvas").count() == 2
    # each map has axes and a colour bar: himmelblau's 4 minima + none, diverged, invalid
    bars = page.eval_on_selector_all("#basin-maps canvas", "cs => cs.map(c => c.dataset.colourbar)")
    assert bars == ["7", "7"]
    legend = page.inner_text("#basin-legend")
    assert "(3, 2)" in legend and "diverged" in legend
    assert "basins=1" in page.url
    screenshot(page, "web-lab-basins.png")


# ------------------------------------------------------------------------- issue #17
LAYOUT_CHECK = """() => {
  const vw = document.documentElement.clientWidth;
  const bad = [];
  for (const n of document.querySelectorAll('main *, .controls *')) {
    if (n.offsetParent === null) continue;
    const r = n.getBoundingClientRect();
    if (r.width === 0) continue;
    if (r.right > vw + 0.5 || r.left < -0.5) bad.push(n.tagName + '#' + n.id + ' right ' + r.right);
    const box = n.parentElement && n.parentElement.closest('.panel, figure, section, aside');
    if (box) {
      const q = box.getBoundingClientRect();
      if (r.right > q.right + 0.5) bad.push(n.tagName + '#' + n.id + ' leaves its panel ' + box.id);
    }
  }
  return { scroll: document.documentElement.scrollWidth, vw, bad: bad.slice(0, 10) };
}"""


def everything(page) -> dict:
    """Every field, every canvas and every table cell of the page."""
    fields = page.eval_on_selector_all(
        ".controls input, .controls select, #explain input, #explain select",
        "ns => ns.map(n => [n.id || n.dataset.key || n.dataset.param || n.dataset.lr"
        " || n.dataset.name, n.type === 'checkbox' ? n.checked : n.value])",
    )
    canvases = page.eval_on_selector_all(
        "canvas", "cs => cs.map(c => [c.id || c.dataset.spec, c.toDataURL()])"
    )
    cells = page.eval_on_selector_all(
        "main table", "ts => ts.map(t => [...t.querySelectorAll('th, td')].map(c => c.innerText))"
    )
    return {
        "fields": fields,
        "canvases": [(name, hashlib.sha256(url.encode()).hexdigest()) for name, url in canvases],
        "cells": cells,
        "frame": page.input_value("#frame"),
    }


def test_the_link_reproduces_every_field_canvas_and_cell(server, page, browser):
    # a 500-step run used to come back as 300 steps with another final loss
    page.goto(f"{server}/?f=ravine&o=sgd&o=momentum:momentum%3D0.8&o=adam:lr%3D0.1")
    wait_status(page, "ready")
    page.fill("#params input[data-param=kappa]", "20")
    page.dispatch_event("#params input[data-param=kappa]", "change")
    wait_status(page, "ready")
    page.select_option("#scale", "log")
    wait_status(page, "ready")
    for field, value in [
        ("#steps", "500"),
        ("#tol", "1e-8"),
        ("#noise-batch", "16"),
        ("#noise-scale", "0.5"),
        ("#seeds", "2"),
        ("#schedule", "cosine"),
        ("#basin-grid", "10"),
        ("#start-x", "1.25"),
        ("#start-y", "-0.75"),
    ]:
        page.fill(field, value)
        page.dispatch_event(field, "change")
    page.fill("input[data-lr=sgd]", "0.04")
    page.dispatch_event("input[data-lr=sgd]", "change")
    page.click("#run")
    wait_status(page, "done")
    page.click("#basins")
    wait_status(page, "done")
    page.locator("#basin-maps canvas").nth(2).wait_for(timeout=WAIT_MS)
    # scrub to a step and explain another optimizer there
    page.fill("#frame", "37")
    page.dispatch_event("#frame", "input")
    page.dispatch_event("#frame", "change")
    page.select_option("#explain-optimizer", "2")
    page.locator("#explain[data-state=ready]").wait_for(state="attached", timeout=WAIT_MS)
    page.click("#copy-link")
    url = page.url
    for key in (
        "steps=500",
        "tol=1e-8",
        "batch=16",
        "sigma=0.5",
        "seeds=2",
        "sched=cosine",
        "bgrid=10",
        "p.kappa=20",
        "scale=log",
        "t=37",
        "ex=2",
        "basins=1",
        "run=1",
    ):
        assert key in url, (key, url)
    before = everything(page)
    assert len(before["canvases"]) == 2 + 3  # map, loss, one basin map per optimizer
    again = browser.new_context(viewport={"width": 1500, "height": 1000}).new_page()
    try:
        again.goto(url)
        wait_status(again, "done")
        again.locator("#basin-maps canvas").nth(2).wait_for(timeout=WAIT_MS)
        again.locator("#explain[data-state=ready]").wait_for(state="attached", timeout=WAIT_MS)
        wait_status(again, "done")
        assert everything(again) == before
    finally:
        again.context.close()


def test_a_stale_landscape_answer_never_overwrites_a_newer_one(server, page):
    # Choosing "expression…" draws the default expression; applying a bad one before that
    # answer arrives must leave the bad one's error on screen when the first answer comes late.
    page.goto(f"{server}/?f=ravine&o=sgd&steps=50")
    wait_status(page, "ready")
    held = []

    def hold_the_first(route) -> None:
        if held:
            route.continue_()
        else:
            held.append(route)

    page.route("**/api/contour", hold_the_first)
    page.select_option("#function", "expr")
    page.fill("#expression", "x**2 +")
    page.click("#apply-expression")
    wait_status(page, "error")
    assert len(held) == 1
    with page.expect_response("**/api/contour"):
        held[0].continue_()
    page.evaluate("() => new Promise((done) => setTimeout(done, 200))")
    assert page.get_attribute("body", "data-status") == "error"
    assert "x**2 +" in page.input_value("#expression")
    assert page.inner_text("#status").strip()


def test_edit_then_run_at_once_and_bad_starts_are_refused_at_their_field(server, page):
    page.goto(f"{server}/?f=ravine&o=sgd&steps=50")
    wait_status(page, "ready")
    requests = []
    page.on(
        "request",
        lambda r: requests.append(r.post_data_json) if r.url.endswith("/api/run") else None,
    )
    # a landscape edit and Run in the same instant: the run waits for the new landscape
    page.fill("#params input[data-param=angle]", "30")
    page.dispatch_event("#params input[data-param=angle]", "change")
    page.click("#run")
    wait_status(page, "done")
    assert requests and all(None not in body["starts"] for body in requests), requests
    assert requests[-1]["function"]["params"] == {"angle": 30}

    # a start of "foo": marked at the field, Run refused with the reason, nothing sent
    sent = len(requests)
    page.fill("#start-x", "foo")
    page.dispatch_event("#start-x", "change")
    assert "is not a number" in page.inner_text(".field-error[data-for=start-x]")
    page.click("#run")
    wait_status(page, "error")
    assert '"foo" is not a number' in page.inner_text("#status")
    assert len(requests) == sent

    # a value the server refuses: its message under the field, not raw pydantic text
    page.fill("#start-x", "1")
    page.dispatch_event("#start-x", "change")
    wait_status(page, "done")
    page.fill("#steps", "999999")
    page.click("#run")
    wait_status(page, "error")
    assert "less than or equal to 5000" in page.inner_text(".field-error[data-for=steps]")
    assert "steps:" not in page.inner_text("#status")
    # a rejected expression, then Run: the reason, not "starts.0: Input should be a valid list"
    page.select_option("#function", "expr")
    page.fill("#expression", "x**2 +")
    page.click("#apply-expression")
    wait_status(page, "error")
    page.fill("#steps", "50")
    page.click("#run")
    wait_status(page, "error")
    assert "starts" not in page.inner_text("#status")
    assert "function is not drawn" in page.inner_text("#status")


def test_each_optimizer_shows_its_lr_and_one_lr_for_all(server, page):
    page.goto(f"{server}/?f=himmelblau&o=sgd&o=momentum&steps=40")
    wait_status(page, "ready")
    # the landscape's default lrs, in each row
    defaults = page.evaluate("() => window.descendLab.grid.landscape.default_lrs")
    for name in ("sgd", "momentum", "adam"):
        assert float(page.get_attribute(f"input[data-lr={name}]", "placeholder")) == defaults[name]
    page.fill("#lr-all", "0.005")
    page.dispatch_event("#lr-all", "change")
    assert page.is_disabled("input[data-lr=sgd]")
    page.click("#run")
    wait_status(page, "done")
    lrs = page.eval_on_selector_all(
        "#metrics tbody tr", "rows => rows.map(r => r.children[2].innerText)"
    )
    assert lrs == ["0.005", "0.005"]
    assert "lr=0.005" in page.url
    # the default view teaches something: every optimizer converges, at different speeds
    page.goto(server)
    wait_status(page, "ready")
    page.click("#run")
    wait_status(page, "done")
    steps = page.eval_on_selector_all(
        "#metrics tbody tr", "rows => rows.map(r => r.children[4].innerText)"
    )
    assert len(steps) == 4 and all(s.isdigit() for s in steps), steps
    assert len(set(steps)) == 4
    assert page.input_value("#params input[data-param=lam2]") == ""
    assert page.get_attribute("#params input[data-param=lam2]", "placeholder") == "10"
    assert page.get_attribute("#params input[data-param=kappa]", "placeholder") == "10"


def test_explain_panel_equals_the_descend_explain_command(server, page):
    import csv
    import shlex
    import subprocess
    import sys

    page.goto(f"{server}/?f=ravine&o=momentum&o=adam&steps=100")
    wait_status(page, "ready")
    page.click("#run")
    wait_status(page, "done")
    page.select_option("#explain-optimizer", "1")  # adam
    page.fill("#explain-step", "7")
    page.dispatch_event("#explain-step", "change")
    page.locator("#explain-table[data-step='7'][data-spec=adam]").wait_for(timeout=WAIT_MS)
    page.locator("#explain[data-state=ready]").wait_for(state="attached", timeout=WAIT_MS)
    shown = page.eval_on_selector_all(
        "#explain-table tbody tr",
        "rows => rows.map(r => [r.dataset.quantity,"
        " [...r.querySelectorAll('td[data-value]')].map(c => Number(c.dataset.value))])",
    )
    names = [name for name, _ in shown]
    for quantity in (
        "gradient",
        "first_moment",
        "second_moment",
        "first_moment_hat",
        "second_moment_hat",
        "denominator",
        "effective_lr",
        "update",
        "new_param",
    ):
        assert quantity in names
    command = page.inner_text("#explain-command")
    assert command.startswith("descend explain adam --function ravine")
    argv = shlex.split(command)[1:] + ["--format", "csv"]
    out = subprocess.run(
        [sys.executable, "-m", "descend", *argv], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    rows = [r for r in csv.DictReader(out.stdout.splitlines()) if r["step"] == "7"]
    assert [r["element"] for r in rows] == ["0", "1"]
    for name, values in shown:
        assert values == [float(r[name]) for r in rows], name
    # θ after step 7 is where the run on the map is after 7 steps
    theta = dict(shown)["new_param"]
    path = page.evaluate("() => window.descendLab.run.runs[1]")
    recorded = page.evaluate("() => window.descendLab.run.recorded_steps")
    k = recorded.index(7)
    # (the lab's batched run and explain's single optimizer agree to rounding)
    assert theta == pytest.approx(path["trajectory"][k], rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("width", [800, 1300])
def test_layout_has_nothing_clipped(server, browser, width):
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    try:
        page.goto(f"{server}/?run=1&bgrid=8&basins=1")
        page.locator("#basin-maps canvas").nth(3).wait_for(timeout=WAIT_MS)
        wait_status(page, "done")
        assert page.locator("#theory").is_visible() and page.locator("#explain").is_visible()
        report = page.evaluate(LAYOUT_CHECK)
        assert report["scroll"] <= width and report["bad"] == [], report
        screenshot(page, f"web-lab-{width}.png")
    finally:
        context.close()
