"""The demo-only server in a real browser: a visitor with a link predicts, and reaches nothing else."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from test_browser import CHROMIUM, CHROMIUM_FLAGS, _free_port, _idle, _wait_healthy, playwright

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A workspace with a trained run whose demo is published, and a demo server for it."""
    from test_demo import published_tiny_run

    home = tmp_path_factory.mktemp("demo-home")
    run_id, token = published_tiny_run(home, dataset="secret-holiday", epochs=5)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "imgcls", "serve-demo", "--port", str(port), "--address",
                             "127.0.0.1"], cwd=ROOT, env=dict(os.environ, IMGCLS_HOME=str(home)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield {"url": url, "token": token, "run": run_id, "home": home}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _visit(page, url: str) -> str:
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_role("heading", level=1).first.wait_for(timeout=60_000)
    _idle(page)
    return page.inner_text("body")


def test_a_visitor_predicts_with_the_link_and_reaches_nothing_else(published, tmp_path):
    from test_train import _png

    url, token, run_id = published["url"], published["token"], published["run"]
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_context().new_page()
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        body = _visit(page, f"{url}/?demo={token}")
        assert "Try the classifier" in body and "Page not found" not in body
        assert errors == []  # the link itself: no dialog, no failed request
        photo = tmp_path / "red.png"
        photo.write_bytes(_png((220, 40, 40), 99))
        page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(photo))
        page.get_by_role("heading", name="red.png").wait_for(timeout=90_000)
        # the answer in bold, then its bar ("red: 91.8%"): drawn one after the other
        page.locator("[data-testid='stMarkdownContainer'] strong").filter(has_text="red").last.wait_for()
        page.get_by_text(re.compile(r"^red: \d+\.\d%$")).wait_for(timeout=30_000)
        _idle(page, 90)
        assert page.locator("[data-testid='stImage'] img").count() == 1  # the visitor's photo, shown back
        page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
        for path in ("/", "/data", "/review", "/train", f"/evaluate?run={run_id}", f"/?run={run_id}",
                     "/learn?dataset=secret-holiday", "/?demo=not-a-token", f"/review?demo={token}x"):
            body = _visit(page, url + path)
            assert "Demo not available" in body, path
            assert "secret-holiday" not in body and run_id not in body and "Page not found" not in body, path
            assert page.locator("[data-testid='stSidebarNav']").count() == 0, path
        browser.close()
