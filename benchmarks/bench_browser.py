"""Click-to-settled times in a real browser, on a dataset of 3,000 generated photos.

Setup, once per checkout measured: a temporary workspace, `python -m imgcls import` of the generated
photos (6 classes, JPEGs of 400-640 px), a `linear` training run and its validation evaluation, all
with that checkout's own CLI. Then, for each repeat, a fresh `streamlit run app.py` and one headless
Chromium tab go through: the first load of each page from the sidebar, a second visit of each, Review
(filter, paging, relabel, exclude, undo and redo), Evaluate (confusion cells, Grad-CAM over a cell of 24
images, Fix → Exclude and its undo, predict one image, Prepare export) and Train (how long a new run
shows "Waiting to start"). A time runs from the user's click until Streamlit's script state is idle,
no element is stale, every image has loaded, and that lasts 300 ms (not counted); see appserver.py.
Checkouts given with --app-dir are measured beside this one, repeat by repeat, and printed side by side.
Usage: python benchmarks/bench_browser.py [--images 3000] [--repeats 3] [--app-dir /tmp/baseline]
       [--steps first again review evaluate train] [--think 0] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import appserver  # noqa: E402  (siblings, found through the line above)
import browser_flows  # noqa: E402

STEPS = ["first", "again", "review", "evaluate", "train"]
# first match wins; "" is every edit, cell click, undo/redo, filter and paging; predict and export have none
TARGETS = [("First load", 3.0), ("Second visit", 3.0), ("Grad-CAM", 5.0), ("Waiting to start", 3.0),
           ("predict", None), ("Prepare export", None), ("", 1.0)]


def make_photos(folder: Path, n: int, classes: int = 6, seed: int = 0) -> None:
    """n photo-sized JPEGs in `classes` folders; each class leans to its own colour, so a model learns some of it."""
    rng = np.random.default_rng(seed)
    tints = rng.uniform(-60, 60, (classes, 3))
    for i in range(n):
        c = i % classes
        small = rng.normal(128, 50, (6, 8, 3)) + tints[c] * rng.uniform(0.2, 1.5)
        size = (int(rng.integers(400, 641)), int(rng.integers(300, 481)))
        img = Image.fromarray(np.clip(small, 0, 255).astype(np.uint8)).resize(size, Image.Resampling.BICUBIC)
        grain = rng.normal(0, 6, (size[1], size[0], 3))  # camera-like noise: realistic file sizes and decode times
        img = Image.fromarray(np.clip(np.asarray(img) + grain, 0, 255).astype(np.uint8))
        (folder / f"class_{c}").mkdir(parents=True, exist_ok=True)
        img.save(folder / f"class_{c}" / f"photo_{i:05d}.jpg", quality=88)


def cli(app_dir: Path, home: Path, *args: str) -> dict:
    """One `python -m imgcls … --json` of that checkout; its last printed line as JSON."""
    env = appserver.env_for(app_dir, home)
    out = subprocess.run([appserver.python_of(app_dir), "-m", "imgcls", *args, "--json"], cwd=app_dir, env=env,
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def prepare(app_dir: Path, home: Path, photos: Path) -> None:
    """Import, train a linear run, evaluate it on the validation split (skipped when already done)."""
    if (home / "ready.json").exists():
        return
    t0 = time.perf_counter()
    cli(app_dir, home, "import", str(photos), "--name", "photos")
    run = cli(app_dir, home, "train", "--dataset", "photos", "--strategy", "linear")["run"]
    cli(app_dir, home, "evaluate", run, "--split", "val")
    (home / "ready.json").write_text(json.dumps({"run": run, "seconds": time.perf_counter() - t0}))
    print(f"{app_dir}: workspace ready in {time.perf_counter() - t0:.0f} s (run {run})", file=sys.stderr)


def measure(app_dir: Path, home: Path, photo: str, steps: list[str], errors: list[str], log: Path) -> dict:
    """One repeat: a fresh server and tab through the steps; runs it started are removed afterwards."""
    from playwright.sync_api import sync_playwright

    shutil.rmtree(home / "cache" / "gradcam", ignore_errors=True)
    before = set((home / "runs").rglob("*"))
    proc, url = appserver.start_app(app_dir, home, log=log)
    try:
        with sync_playwright() as pw:
            browser = appserver.launch(pw)
            out = browser_flows.session(appserver.new_page(browser), url, photo, steps, errors, log.parent)
            browser.close()
    finally:
        appserver.stop_app(proc)
    # the next repeat finds the same newest run, and nothing a page keeps in a run folder (an export bundle,
    # an evaluation with TTA): each repeat measures the first time, as a new user meets it
    for path in sorted(set((home / "runs").rglob("*")) - before, reverse=True):
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    # nor the Grad-CAM overlays a page saved (decoded images and features stay: the import made those)
    shutil.rmtree(home / "cache" / "gradcam", ignore_errors=True)
    return out


def target(name: str) -> float | None:
    """The target of a measurement, from its name."""
    return next(t for key, t in TARGETS if key in name)


def table(results: dict[str, dict[str, list[float]]]) -> str:
    """Markdown: one row per measurement, the median (and count) of each checkout, the target."""
    labels = list(results)
    names = list(dict.fromkeys(n for r in results.values() for n in r))
    lines = ["| what | " + " | ".join(f"{lab}: median s (n)" for lab in labels) + " | target |",
             "|---|" + "---:|" * len(labels) + "---|"]
    for name in names:
        cells, goal = [], target(name)
        for lab in labels:
            xs = results[lab].get(name) or []
            met = "" if goal is None or not xs else (" ✓" if statistics.median(xs) <= goal else " ✗")
            cells.append(f"{statistics.median(xs):.2f}{met} ({len(xs)})" if xs else "–")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'≤ %g s' % goal if goal else ''} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3, help="fresh server and tab per repeat; medians shown")
    parser.add_argument("--app-dir", type=Path, action="append", default=[],
                        help="another checkout to measure beside this one (e.g. a git worktree of older code)")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=STEPS)
    parser.add_argument("--keep", type=Path, help="keep the workspaces here and reuse them next time")
    parser.add_argument("--think", type=float, default=0.0,
                        help="seconds of reading before each timed click (0: each click as soon as the page settles)")
    args = parser.parse_args()
    browser_flows.THINK_S = args.think
    apps = [appserver.ROOT, *[p.resolve() for p in args.app_dir]]
    labels = ["this checkout"] + [str(p) for p in apps[1:]]
    base = args.keep or Path(tempfile.mkdtemp(prefix="imgcls-bench-browser-"))
    photos = base / f"photos-{args.images}"
    if not (photos / "done").exists():
        make_photos(photos, args.images)
        (photos / "done").touch()
    homes = [base / f"ws-{i}-{args.images}" for i in range(len(apps))]
    for app, home in zip(apps, homes):
        prepare(app, home, photos)
    photo = str(next((photos / "class_0").iterdir()))
    results = {lab: {} for lab in labels}
    errors: list[str] = []
    for r in range(args.repeats):
        for app, home, lab in zip(apps, homes, labels):  # alternated, so a change in load touches every checkout
            found = measure(app, home, photo, args.steps, errors, base / f"server-{labels.index(lab)}.log")
            for name, xs in found.items():
                results[lab].setdefault(name, []).extend(xs)
            print(f"repeat {r + 1}/{args.repeats} of {lab} done", file=sys.stderr)
    print(f"\n{args.images:,} images, {args.repeats} repeats, {os.cpu_count()} cores, {args.think:g} s of reading "
          "before each click; click to settled, seconds\n")
    print(table(results))
    for line in dict.fromkeys(errors):
        print(f"\nnot measured: {line}")
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
