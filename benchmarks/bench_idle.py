"""Server CPU while idle: `streamlit run app.py` with one tab open in headless Chromium and nothing happening.

For each setting: a fresh server in a temporary workspace holding the shapes sample, one tab opened on
the Data page and left to settle (the page idle, then the server's one-time work after it, such as the
background import of the machine-learning libraries, over: a 2-s window under 5% of a core, or 30 s at
most), then the server's CPU time (user + system, its child processes included, from /proc) over the
idle window, as a share of one core. `--compare-auto` also measures the
same checkout started with `--server.fileWatcherType auto` (Streamlit's default watcher), one after the
other in the same run. Target: under 2% of a core.
Usage: python benchmarks/bench_idle.py [--seconds 60] [--runs 1] [--compare-auto] [--app-dir PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import appserver  # noqa: E402  (a sibling file, found through the line above)

TARGET = 2.0  # % of one core


def wait_quiet(pid: int, longest_s: float, window_s: float = 2.0, share: float = 0.05) -> float:
    """Wait until the server's one-time work after the first page (thumbnails, the background import of the
    machine-learning libraries) is over: a window using under `share` of a core. Seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < longest_s:
        before = appserver.tree_cpu_seconds(pid)
        time.sleep(window_s)
        if appserver.tree_cpu_seconds(pid) - before < share * window_s:
            break
    return time.monotonic() - t0


def idle_share(app_dir: Path, flags: list[str], seconds: float, settle_s: float) -> dict:
    """One measurement: a fresh server and tab, idle CPU over `seconds`, as % of a core."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        home, log = Path(tmp) / "ws", Path(tmp) / "server.log"
        subprocess.run([appserver.python_of(app_dir), "-m", "imgcls", "import", "sample:shapes", "--name", "shapes"],
                       cwd=app_dir, env=appserver.env_for(app_dir, home), check=True, capture_output=True)
        proc, url = appserver.start_app(app_dir, home, *flags, log=log)
        try:
            with sync_playwright() as pw:
                browser = appserver.launch(pw)
                page = appserver.new_page(browser)
                page.goto(url + "/data", wait_until="domcontentloaded")
                page.get_by_text("Overview of shapes").first.wait_for(timeout=120_000)
                appserver.wait_idle(page)
                settled_after = wait_quiet(proc.pid, settle_s)
                before, t0 = appserver.tree_cpu_seconds(proc.pid), time.monotonic()
                time.sleep(seconds)
                used, wall = appserver.tree_cpu_seconds(proc.pid) - before, time.monotonic() - t0
                browser.close()
        finally:
            appserver.stop_app(proc)
        overflow = log.read_text(errors="replace").count("Inotify queue overflowed")
    return {"percent": 100 * used / wall, "cpu_s": used, "wall_s": wall, "overflow_lines": overflow,
            "settled_after_s": settled_after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the idle window")
    parser.add_argument("--runs", type=int, default=1, help="measurements per setting (median shown)")
    parser.add_argument("--settle", type=float, default=30.0,
                        help="at most this long to wait for the one-time work after the first page to end")
    parser.add_argument("--compare-auto", action="store_true",
                        help="also measure with --server.fileWatcherType auto (Streamlit's default)")
    parser.add_argument("--app-dir", type=Path, default=appserver.ROOT, help="checkout whose app.py runs")
    args = parser.parse_args()
    settings = {"as configured (.streamlit/config.toml)": []}
    if args.compare_auto:
        settings["--server.fileWatcherType auto"] = ["--server.fileWatcherType", "auto"]
    results: dict[str, list[dict]] = {name: [] for name in settings}
    for _ in range(args.runs):
        for name, flags in settings.items():  # alternated, so a change in machine load touches both
            results[name].append(idle_share(args.app_dir.resolve(), flags, args.seconds, args.settle))
            print(f"{name}: {results[name][-1]['percent']:.2f}% of a core", file=sys.stderr)
    print(f"Server CPU over {args.seconds:.0f} s idle, one tab open ({args.app_dir.resolve()}), "
          f"{os.cpu_count()} cores, median of {args.runs}:\n")
    print("| server started | CPU, % of one core | CPU seconds | 'Inotify queue overflowed' lines | quiet after | "
          "target |")
    print("|---|---:|---:|---:|---:|---|")
    for name, rows in results.items():
        share = statistics.median(r["percent"] for r in rows)
        print(f"| {name} | {share:.2f} | {statistics.median(r['cpu_s'] for r in rows):.2f} | "
              f"{max(r['overflow_lines'] for r in rows)} | {max(r['settled_after_s'] for r in rows):.0f} s | "
              f"< {TARGET:g}%: {'met' if share < TARGET else 'missed'} |")


if __name__ == "__main__":
    main()
