"""What bench_browser.py does in the browser, step by step, as a user would: each function clicks through
one part of the app and returns {measurement name: [seconds, …]}. Elements are found by what the user
reads (link, button and option names) or by Streamlit's data-testid and widget-key classes."""

from __future__ import annotations

import re
import sys
import time
from collections import defaultdict

from appserver import settled, wait_idle

PAGES = ["Data", "Review", "Augment", "Train", "Evaluate", "Learn"]
THINK_S = 0.0  # pause before each timed click, as a user reads the page first (bench_browser.py --think)
WAITING = ("Waiting to start", "Starting the training process")


def _nav(page, title: str):
    return page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title, exact=False).first


def _keyed(page, key: str, fallback):
    """The element of a widget key (Streamlit gives it the class st-key-<key>), else what the user reads."""
    found = page.locator(f".st-key-{re.sub(r'[^a-zA-Z0-9_-]', '-', key)} button")
    return found.first if found.count() else fallback


def _button(page, name: str):
    return page.get_by_role("button", name=re.compile(name)).first


def page_loads(page, out: dict, label: str) -> None:
    """Each page opened from the sidebar, in the order of the steps."""
    for title in PAGES:
        _time(out, f"{label}: {title}", page, _nav(page, title).click)


def _option(page, box_label: str, typed: str, option):
    """Open the selectbox whose label is box_label and type to filter it; its option matching a regex."""
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text=box_label).first
    box.click()
    page.keyboard.type(typed)  # long option lists are drawn only in part: filtering brings the one wanted
    return page.get_by_role("option", name=option).first


def _do(page, action) -> None:
    """An untimed step: act, and wait for the rerun it starts, if it starts one (choosing the value already
    chosen does not)."""
    try:
        settled(page, action)
    except RuntimeError:
        pass


def _time(out: dict, name: str, page, action) -> None:
    """Time one action into out[name]; a failure names the measurement."""
    time.sleep(THINK_S)
    try:
        out[name].append(settled(page, action))
    except Exception as exc:
        raise RuntimeError(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}") from exc


def review(page, out: dict) -> None:
    """Filters, paging, then one image at a time: relabel, undo, redo, undo, exclude, undo."""
    _do(page, _nav(page, "Review").click)
    for typed, option in (("class_1", re.compile(r"^class_1\b")), ("All", re.compile("All classes"))):
        _time(out, "Review: filter by class", page, _option(page, "Class", typed, option).click)
    for _ in range(2):
        _time(out, "Review: next page", page, page.locator('[data-testid="stPaginationNext"]').first.click)
    _time(out, "Review: next page", page, page.get_by_role("button", name="Page 1", exact=True).click)
    _do(page, page.get_by_role("radio", name="One at a time").first.click)
    # a class button other than the image's own label (that one is drawn as the primary button)
    other = page.locator('[class*="st-key-review-one-assign-"] [data-testid="stBaseButton-secondary"]').first
    _time(out, "Review: relabel", page, other.click)
    for kind in ("undo", "redo", "undo"):
        _time(out, "Review: undo / redo", page, _keyed(page, f"review.{kind}", _button(page, kind.capitalize())).click)
    _time(out, "Review: exclude", page, _keyed(page, "review.one.exclude", _button(page, "Exclude it")).click)
    _time(out, "Review: undo / redo", page, _keyed(page, "review.undo", _button(page, "Undo")).click)
    _do(page, page.get_by_role("radio", name="Gallery").first.click)


def _cell(page, col: int, row: int):
    """A click at the centre of one cell of the confusion matrix (a plotly heatmap), in screen order."""
    chart = page.locator('[class*="st-key-evaluate-confusion"]').first
    area = chart.locator(".nsewdrag").first
    area.scroll_into_view_if_needed()
    box = area.bounding_box()
    n = max(2, chart.locator(".xaxislayer-above .xtick").count())
    return lambda: page.mouse.click(box["x"] + (col + 0.5) * box["width"] / n,
                                    box["y"] + (row + 0.5) * box["height"] / n)


def evaluate(page, out: dict, photo: str) -> None:
    """Confusion cells, Grad-CAM over a cell of 24, Fix → Exclude and its undo, predict, export."""
    _do(page, _nav(page, "Evaluate").click)
    for col, row in ((1, 0), (0, 1)):
        _time(out, "Evaluate: confusion cell click", page, _cell(page, col, row))
    # a cell on the diagonal holds enough images for a full page of 24
    _do(page, _option(page, "Images in a cell", "class_0 that are really class_0", re.compile("really class_0$")).click)
    toggle = page.get_by_text("Show where the model looked").first
    _time(out, "Evaluate: Grad-CAM on (24 + mistakes)", page, toggle.click)
    _do(page, toggle.click)
    page.get_by_role("button", name=re.compile("Fix")).first.click()
    _time(out, "Evaluate: Fix → Exclude", page, page.get_by_role("button", name="Exclude from the dataset").first.click)
    _time(out, "Evaluate: undo the fix", page, _button(page, "^(undo)?Undo").click)
    page.get_by_role("tab", name="Predict new images").click()
    upload = page.locator('[data-testid="stFileUploaderDropzoneInput"]').first
    _time(out, "Evaluate: predict one image", page, lambda: upload.set_input_files(photo))
    page.get_by_role("tab", name="Export and share").click()
    _time(out, "Evaluate: Prepare export", page, _button(page, "Prepare the export").click)
    page.get_by_text("Download the ZIP").first.wait_for(timeout=60_000)


def _train_view(page) -> tuple[bool, bool]:
    text = page.locator('[data-testid="stMain"]').inner_text()
    return any(w in text for w in WAITING), "Stop training" in text or "Cancel this run" in text


def waiting_to_start(page, out: dict, timeout_s: float = 120) -> None:
    """Seconds from Start training until the page no longer says the run waits to start; then Stop."""
    _do(page, _nav(page, "Train").click)
    start = _button(page, "Start training")
    t0 = time.monotonic()
    start.click()
    seen = False
    while time.monotonic() - t0 < timeout_s:
        waiting, active = _train_view(page)
        seen = seen or waiting or active
        if seen and not waiting:
            out["Train: run leaves 'Waiting to start'"].append(time.monotonic() - t0)
            break
        time.sleep(0.05)
    else:
        raise TimeoutError(f"the run still waited to start after {timeout_s:.0f} s")
    stop = page.get_by_role("button", name=re.compile("Stop training|Cancel this run"))
    if stop.count():
        stop.first.click()
    wait_idle(page)


def session(page, url: str, photo: str, steps: list[str], errors: list[str], shots=None) -> dict:
    """One fresh browser tab through every step asked for; failures are noted (with a screenshot in the
    folder `shots`, if given), not fatal."""
    out: dict[str, list[float]] = defaultdict(list)
    page.goto(url, wait_until="domcontentloaded")
    wait_idle(page)
    jobs = {"first": lambda: page_loads(page, out, "First load"),
            "again": lambda: page_loads(page, out, "Second visit"),
            "review": lambda: review(page, out), "evaluate": lambda: evaluate(page, out, photo),
            "train": lambda: waiting_to_start(page, out)}
    for step in steps:
        t0 = time.monotonic()
        try:
            jobs[step]()
            print(f"  {step}: {time.monotonic() - t0:.0f} s", file=sys.stderr)
        except Exception as exc:  # a changed page: note it, go on with the next step
            errors.append(f"{step}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            if shots is not None:
                page.screenshot(path=str(shots / f"failed-{step}.png"), full_page=True)
            page.goto(url, wait_until="domcontentloaded")
            wait_idle(page)
    return out
