"""The rendered leaderboard page in headless Chromium: sorting, filtering, no script from data, a screenshot.

Needs Debian's chromium (/usr/bin/chromium) and Playwright for Python (its own browser download is
not used). Skipped when either is missing, unless ACKD_BENCH_REQUIRE_BROWSER=1 (set by .ci/run).
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from ackd_bench.leaderboard.render import render_board
from leaderboard_board import write_board

REQUIRE_ENV = "ACKD_BENCH_REQUIRE_BROWSER"
CHROMIUM = os.environ.get("ACKD_BENCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu", "--disable-dev-shm-usage"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"{CHROMIUM} not found (apt-get install chromium)"
    return None


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass  # keep the test output clean; requests are checked in the test itself


@pytest.fixture
def site_url(tmp_path: Path):
    """The rendered board's site/ served by a loopback HTTP server; yields the page's URL."""
    board = write_board(tmp_path / "board")
    render_board(board)
    handler = functools.partial(_QuietHandler, directory=str(board / "site"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def page():
    missing = _browser_missing()
    if missing:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 900})
        finally:
            browser.close()


def _ids(page, table: int = 0) -> list[str]:
    return page.eval_on_selector_all(
        f"#dataset-{table} tbody tr", "rows => rows.map(r => r.getAttribute('data-id'))")


def _visible_ids(page) -> list[str]:
    return page.eval_on_selector_all("table.board tbody tr", "rows => rows.filter(r => !r.hidden)"
                                     ".map(r => r.getAttribute('data-id'))")


def test_page_sorts_filters_and_runs_no_data_script(page, site_url: str, tmp_path: Path) -> None:
    dialogs, console_errors, requests = [], [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: requests.append(r.url))
    page.goto(site_url)
    page.wait_for_load_state("load")

    # Board order, best mean OA first.
    assert _ids(page) == ["sub-sembridge", "sub-dkd", "sub-xss"]
    header = "#dataset-0 thead th"
    oa, ci = page.locator(header).nth(3), page.locator(header).nth(4)
    assert oa.inner_text().startswith("OA") and ci.inner_text().startswith("95 % CI")

    oa.locator("button").click()  # numbers sort best first: the board order
    assert oa.get_attribute("aria-sort") == "descending"
    assert _ids(page) == ["sub-sembridge", "sub-dkd", "sub-xss"]
    oa.locator("button").click()  # again: reversed
    assert oa.get_attribute("aria-sort") == "ascending"
    assert _ids(page) == ["sub-xss", "sub-dkd", "sub-sembridge"]
    # CI sorts by its lower bound: 86.0 (SemBridge) > 84.0 (hostile kd) > 82.0 (DKD).
    ci.locator("button").click()
    assert ci.get_attribute("aria-sort") == "descending" and oa.get_attribute("aria-sort") is None
    assert _ids(page) == ["sub-sembridge", "sub-xss", "sub-dkd"]
    ci.locator("button").click()
    assert _ids(page) == ["sub-dkd", "sub-xss", "sub-sembridge"]
    page.locator(header).nth(1).locator("button").click()  # method label, A→Z
    assert _ids(page)[0] == "sub-xss"  # "<img …" sorts before letters
    # The other dataset's table is untouched by sorting this one.
    assert _ids(page, 1) == ["sub-big"]

    assert _visible_ids(page) == ["sub-xss", "sub-dkd", "sub-sembridge", "sub-big"]
    page.fill("#filter", "vanilla")
    assert _visible_ids(page) == ["sub-big"]
    assert page.inner_text("#shown") == "1"
    page.fill("#filter", "RESNET18")  # case-insensitive, matches the teacher → student cell
    assert sorted(_visible_ids(page)) == ["sub-big", "sub-dkd", "sub-sembridge"]
    page.fill("#filter", "onerror")  # the hostile name is text, so it can be searched for
    assert _visible_ids(page) == ["sub-xss"]
    page.fill("#filter", "")
    assert len(_visible_ids(page)) == 4

    # The hostile fields are shown as text and ran nothing.
    cell = page.locator('tr[data-id="sub-xss"] td').nth(1)
    assert cell.inner_text() == "<img src=x onerror=alert(1)>"
    assert page.locator("table.board img, table.board script, table.board svg").count() == 0
    assert dialogs == []
    assert page.evaluate("document.querySelector('img.plot').naturalWidth") > 0
    # Only the page and its plot were requested, from the loopback server; no CSP violations.
    base = site_url.rsplit("/", 1)[0] + "/"
    assert requests and all(u.startswith(base) for u in requests), requests
    assert not [e for e in console_errors if "Content Security Policy" in e], console_errors

    shot = tmp_path / "leaderboard.png"
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    keep = os.environ.get("ACKD_BENCH_SCREENSHOT_DIR")  # to look at it after the run
    if keep:
        shutil.copy(shot, Path(keep) / shot.name)
