"""What keeps the Review page's reruns short: the saved report is read once per change, closed expanders draw
nothing, and in a real browser an edit made inside a fragment (the gallery, the copies side by side) still
redraws everything it changes (the stale-check warning, Undo)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from imgcls.health import check as health
from imgcls.store import versions, workspace
from imgcls.ingest.imports import import_zip
from imgcls.ui.common import nav

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _report(name: str, leak: bool = False) -> dict:
    """A current report (its version is the dataset's now) naming one blurry image, and a leak if asked."""
    df = workspace.read_manifest(name)
    train = df[df["split"] == "train"]["path"].tolist()
    held = df[df["split"] != "train"]["path"].tolist()
    findings = [{"kind": "blurry", "severity": "low", "title": "Blurry images", "message": "1 image is blurry.",
                 "images": [train[1]], "scores": [4.0], "groups": [], "suggested": {}, "details": {}}]
    if leak:
        findings.insert(0, {"kind": "leakage", "severity": "high", "title": "Copies across training and test",
                            "message": "1 image leaks.", "images": [held[0]], "scores": [1.0],
                            "groups": [[train[0], held[0]]], "suggested": {}, "details": {}})
    report = {"dataset": name, "format": health.FORMAT, "score": 90, "created": "2025-01-02T03:04:05",
              "seconds": 1.0, "images_checked": len(df), "version": versions.dataset_version(name, df),
              "findings": findings, "images": health.per_image(findings, list(df["path"]))}
    workspace.atomic_write_json(workspace.dataset_dir(name) / "health.json", report)
    return report


def test_the_saved_report_is_read_once_per_change(app_home, mk, monkeypatch):
    import_zip(mk.zip(mk.class_members({"a": 4, "b": 4})), "d")
    workspace.save_setting("active_dataset", "d")
    _report("d")
    reads = []
    real = health.load
    monkeypatch.setattr(health, "load", lambda name: reads.append(name) or real(name))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(nav.REVIEW.path).run()
    at.run()
    at.run()
    assert reads == ["d"] and not at.exception
    time.sleep(0.01)
    report = _report("d")
    report["score"] = 55
    workspace.atomic_write_json(workspace.dataset_dir("d") / "health.json", report)
    at.run()
    assert reads == ["d", "d"]
    assert [m.value for m in at.metric if m.label == "Health score"] == ["55/100"]
    assert not at.exception


# --- in a real browser -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served(tmp_path, mk):
    """`streamlit run app.py` over a workspace with dataset 'd' and a current report naming a leak."""
    if not CHROMIUM:
        pytest.skip("no Chromium installed (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api")
    home = tmp_path / "ws"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMGCLS_HOME", str(home))
        import_zip(mk.zip(mk.class_members({"a": 6, "b": 6})), "d")
        workspace.save_setting("active_dataset", "d")
        held = _report("d", leak=True)["findings"][0]["images"][0]
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", APP, "--server.port", str(port),
                             "--server.headless", "true"], cwd=ROOT, env=dict(os.environ, IMGCLS_HOME=str(home)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.3)
        yield url, home, held
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_edits_made_in_fragments_redraw_the_whole_page(served):
    from playwright.sync_api import expect, sync_playwright

    url, home, held = served
    stale = "You have edited the dataset since this check"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url + "/review", wait_until="domcontentloaded")
        main = page.locator("[data-testid='stMain']")
        main.get_by_text("Health score").first.wait_for(timeout=90_000)
        # the first draw done (a click during it can be lost with the elements it redraws)
        page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for(timeout=60_000)
        # the gallery: tick, choose Exclude, apply; the warning above the gallery and Undo follow
        main.get_by_text("Select", exact=True).first.click()
        main.get_by_text("1 selected").wait_for(timeout=30_000)
        main.locator("[data-testid='stRadio']").get_by_text("Exclude", exact=True).click()
        main.get_by_role("button", name="Exclude 1 images").click()
        expect(main.get_by_text(stale)).to_be_visible(timeout=30_000)
        expect(main.get_by_role("button", name="Undo: exclude 1 image")).to_be_visible(timeout=30_000)
        main.get_by_role("button", name="Undo: exclude 1 image").click()
        expect(main.get_by_text(stale)).to_have_count(0, timeout=30_000)  # the same data as checked again
        # the copies side by side: moving the held-out copy to train settles the group, page-wide
        main.get_by_role("button", name="Compare the copies side by side").click()
        main.get_by_role("button", name="Move to train").first.click()
        expect(main.get_by_text("settled")).to_be_visible(timeout=30_000)
        expect(main.get_by_text(stale)).to_be_visible(timeout=30_000)
        expect(main.get_by_role("button", name="Undo: move 1 image to train")).to_be_visible(timeout=30_000)
        browser.close()
    with workspace.use(home):  # through the dataset's store: manifest.csv is exported when it is next read whole
        assert workspace.read_manifest("d").set_index("path").at[held, "split"] == "train"
