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
    message = page.inner_text("#status")
    assert "unknown function '__import__'" in message and "^" in message
    assert "expr%3Ax**2" in page.url or "expr:x**2" in page.url


def test_basins_button_draws_one_map_per_optimizer(server, page):
    page.goto(f"{server}/?f=himmelblau&o=sgd&o=adam&steps=150&bgrid=16")
    wait_status(page, "ready")
    page.click("#basins")
    page.locator("#basin-maps canvas").nth(1).wait_for(timeout=WAIT_MS)
    wait_status(page, "done")
    assert page.locator("#basin-maps canvas").count() == 2
    legend = page.inner_text("#basin-legend")
    assert "(3, 2)" in legend and "diverged" in legend
    assert "basins=1" in page.url
    screenshot(page, "web-lab-basins.png")
