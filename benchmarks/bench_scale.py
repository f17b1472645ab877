"""Growth benchmark: the same steps on generated datasets of 1k, 10k, 30k and 100k distinct images, each step
in processes of its own, with its wall time and the peak RSS of every process it starts.

The images: 128×96 JPEGs of about 4 KB in 10 classes, cheap to make (about 0.3 ms each) and distinct by
content. Each is a smooth random colour field grown from a 12×16 grid drawn from the image's own seed (its
index), so no two share their low frequencies, under stripes at the class's angle (18° apart, random
phase): a model can learn the class, and the near-duplicate search finds no copies where there are none.

Steps for each size, in this order, each a fresh process on the same workspace:
  import         `python -m imgcls import ZIP` (hashes, checks and records every image)
  health cold    `python -m imgcls health` with the decoded and feature caches removed first
  health cached  the same again (decoded images and features cached)
  linear         `python -m imgcls train --strategy linear`, the decoded and feature caches removed first
  finetune       `train --strategy finetune --epochs 1` (one epoch of the network stage) at --finetune-at
  pages          the Data and Review pages in Streamlit's AppTest: first draw, reruns, one relabel
  browser        `streamlit run app.py` and headless Chromium: each page twice, then Review's paging and
                 edits (relabel, undo, redo, exclude), click to settled as in bench_browser.py

Everything embeds at --img-size (64 px by default, so 100k images take minutes here and not hours; the time
of the network grows with the square of the size, the data path's does not). Peak RSS: the step's own
process from the kernel's accounting (wait4), its child processes (loader workers, the browser's server) by
sampling every 0.2 s. Results are kept in DIR/results.json as each step ends; --table prints them again.

Usage: python benchmarks/bench_scale.py [--sizes 1000 10000 30000 100000] [--img-size 64]
       [--finetune-at 10000] [--steps import health linear finetune pages browser] [--keep DIR]
       [--app-dir OTHER_CHECKOUT]
       python benchmarks/bench_scale.py --table DIR
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
STEPS = ["import", "health", "linear", "finetune", "pages", "browser"]
CLASSES = 10
W, H = 128, 96
NAME = "scale"


# --- the images ------------------------------------------------------------------------------------

def image_bytes(i: int) -> tuple[str, bytes]:
    """Image number i: (path in the ZIP, JPEG bytes); the same i gives the same bytes."""
    rng = np.random.default_rng(i)
    c = i % CLASSES
    field = Image.fromarray(rng.integers(25, 231, (12, 16, 3), dtype=np.uint8)).resize((W, H), Image.Resampling.BICUBIC)
    yy, xx = np.mgrid[0:H, 0:W]
    angle = math.pi * c / CLASSES
    stripes = 45 * np.sin((xx * math.cos(angle) + yy * math.sin(angle)) / 3.0 + rng.uniform(0, 2 * math.pi))
    pixels = np.clip(np.asarray(field, dtype=np.float32) + stripes[..., None], 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=85)
    return f"class_{c}/img_{i:06d}.jpg", buf.getvalue()


def make_zip(path: Path, n: int) -> float:
    """Write n images to a ZIP (stored, not compressed: JPEGs do not shrink); seconds taken."""
    if path.exists():
        return 0.0
    start = time.perf_counter()
    part = path.with_suffix(".part")
    with zipfile.ZipFile(part, "w", zipfile.ZIP_STORED) as zf:
        for i in range(n):
            name, data = image_bytes(i)
            zf.writestr(name, data)
    part.replace(path)
    return time.perf_counter() - start


# --- one step in its own process, with its peak memory ---------------------------------------------

def _sample_children(pid: int, peaks: dict[int, int], done: threading.Event, tree: dict | None = None) -> None:
    import psutil

    try:
        parent = psutil.Process(pid)
    except psutil.Error:
        return
    while not done.wait(0.2):
        try:
            procs = parent.children(recursive=True)
        except psutil.Error:
            return
        for proc in procs:
            try:
                peaks[proc.pid] = max(peaks.get(proc.pid, 0), proc.memory_info().rss)
            except psutil.Error:
                pass
        if tree is not None:
            _sample_tree([parent, *procs], tree)


def _anon_pss(pid: int) -> int:
    """A process's anonymous memory, each page it shares with a forked relative split between them (bytes)."""
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            if line.startswith("Pss_Anon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/{pid}/smaps_rollup has no Pss_Anon line: this kernel is too old for it")


def _sample_tree(procs: list, tree: dict) -> None:
    """Peak memory of the processes together: RSS summed, which counts a page every process maps (a forked
    worker's copy-on-write pages, the libraries) once per process; and with such pages counted once: the
    anonymous pages split among the processes sharing them, summed, plus the largest file-backed share (the
    libraries, counted whole). The second costs about 10 ms a process, so it is read when the RSS sum could
    pass its peak, at most once a second, and whenever the RSS sum rises 2% above its last reading."""
    import psutil

    infos = {}
    for proc in procs:
        try:
            infos[proc.pid] = proc.memory_info()
        except psutil.Error:
            pass
    rss, now = sum(m.rss for m in infos.values()), time.monotonic()
    tree["rss"] = max(tree.get("rss", 0), rss)
    rising = rss > tree.get("rss_read", 0) * 1.02
    if not rising and (rss <= tree.get("once", 0) or now - tree.get("read_at", 0.0) < 1.0):
        return
    anon = 0
    for pid in infos:
        try:
            anon += _anon_pss(pid)
        except (FileNotFoundError, ProcessLookupError):  # it ended since
            pass
    tree["rss_read"], tree["read_at"] = max(tree.get("rss_read", 0), rss), now
    tree["once"] = max(tree.get("once", 0), anon + max((m.shared for m in infos.values()), default=0))


def run_step(cmd: list[str], home: Path, log: Path, root: Path = ROOT, tree: bool = False) -> dict:
    """Run cmd in checkout `root` with IMGCLS_HOME=home; wall seconds, peak RSS (MB) of it and of its largest
    child (with `tree`, also of all its processes at once: _sample_tree), its last JSON line."""
    env = dict(os.environ, IMGCLS_HOME=str(home), PYTHONPATH=str(root), PYTHONUNBUFFERED="1")
    out_path = log.with_suffix(".out")
    with open(out_path, "w") as out, open(log, "w") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=err)
        peaks: dict[int, int] = {}
        together: dict[str, int] | None = {} if tree else None
        done = threading.Event()
        sampler = threading.Thread(target=_sample_children, args=(proc.pid, peaks, done, together), daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[:5])} … failed ({proc.returncode}); see {log}")
    lines = out_path.read_text().strip().splitlines()
    result = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    step = {"seconds": round(seconds, 2), "rss_mb": round(usage.ru_maxrss / 1024),
            "child_rss_mb": round(max(peaks.values(), default=0) / 2**20), "children": len(peaks), "result": result}
    if together is not None:
        own = usage.ru_maxrss * 1024  # exact, where the 0.2 s samples of the whole tree may miss a spike
        step.update(tree_rss_mb=round(max(together.get("rss", 0), own) / 2**20),
                    tree_shared_once_mb=round(max(together.get("once", 0), own) / 2**20))
    return step


def imgcls(*args: str) -> list[str]:
    return [sys.executable, "-m", "imgcls", *args, "--json"]


def drop_caches(home: Path) -> None:
    """Forget decoded images and features (thumbnails stay: they are the pages', not the model's)."""
    for kind in ("decoded", "features"):
        shutil.rmtree(home / "cache" / kind, ignore_errors=True)


# --- the pages, in AppTest (run as a child: python bench_scale.py --pages-child) ----------------------

def pages_child(reruns: int, root: Path) -> dict:
    from streamlit.testing.v1 import AppTest

    from imgcls.store import workspace
    from imgcls.ui.common import nav
    from imgcls.ui.review import reviewing

    workspace.save_setting("active_dataset", NAME)
    at = AppTest.from_file(str(root / "app.py"), default_timeout=600).run()
    out = {}

    def timed(action) -> float:
        start = time.perf_counter()
        action()
        assert not at.exception, at.exception
        return time.perf_counter() - start

    for label, page in (("Data", nav.DATA), ("Review", nav.REVIEW)):
        at.switch_page(page.path)
        out[f"{label} first draw"] = timed(at.run)
        out[f"{label} rerun"] = statistics.median(timed(at.run) for _ in range(reruns))
    at.session_state[reviewing.MODE] = "one"
    at.run()
    edits = []
    for _ in range(reruns):  # relabel the image shown, then put it back: the dataset ends as it began
        other = next(b for b in at.button if b.key and b.key.startswith("review.one.assign.")
                     and b.proto.type != "primary")
        edits.append(timed(other.click().run))
    out["Review one edit (relabel, rerun)"] = statistics.median(edits)
    out["Review rerun after edits"] = statistics.median(timed(at.run) for _ in range(reruns))
    return {k: round(v, 3) for k, v in out.items()}


def pages_step(home: Path, log: Path, reruns: int, root: Path) -> dict:
    step = run_step([sys.executable, str(Path(__file__).resolve()), "--pages-child", "--reruns", str(reruns),
                     "--app-dir", str(root)], home, log, root)
    step.update(step.pop("result"))
    return step


# --- the browser ------------------------------------------------------------------------------------

def browser_step(home: Path, log: Path, root: Path) -> dict:
    import appserver
    import browser_flows
    import psutil
    from playwright.sync_api import sync_playwright

    photo = str(next(p for p in (home / "datasets" / NAME / "images").rglob("*.jpg")))
    errors: list[str] = []
    proc, url = appserver.start_app(root, home, log=log)
    peaks: dict[int, int] = {}
    done = threading.Event()

    def sample() -> None:  # the server and whatever it starts
        server = psutil.Process(proc.pid)
        while not done.wait(0.2):
            try:
                for p in [server, *server.children(recursive=True)]:
                    peaks[p.pid] = max(peaks.get(p.pid, 0), p.memory_info().rss)
            except psutil.Error:
                pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with sync_playwright() as pw:
            browser = appserver.launch(pw)
            found = browser_flows.session(appserver.new_page(browser), url, photo, ["first", "again", "review"],
                                          errors, log.parent)
            browser.close()
    finally:
        done.set()
        sampler.join()
        server_rss = peaks.get(proc.pid, 0)
        appserver.stop_app(proc)
    out = {name: round(statistics.median(xs), 3) for name, xs in found.items() if xs}
    out.update(rss_mb=round(server_rss / 2**20), child_rss_mb=round(max((v for k, v in peaks.items() if k != proc.pid),
                                                                         default=0) / 2**20))
    if errors:
        out["errors"] = errors
    return out


# --- the table --------------------------------------------------------------------------------------

ROWS = [  # (label, step, key in the step's result, per image?)
    ("import", "import", "seconds", True),
    ("health check, cold (decode + embed + checks)", "health cold", "seconds", True),
    ("health check, cached", "health cached", "seconds", True),
    ("linear training, cold (decode + embed + head)", "linear", "seconds", True),
    ("one finetune epoch (+ head stage on cached features)", "finetune", "seconds", True),
    ("AppTest: Data page first draw", "pages", "Data first draw", False),
    ("AppTest: Data page rerun (median)", "pages", "Data rerun", False),
    ("AppTest: Review page first draw", "pages", "Review first draw", False),
    ("AppTest: Review page rerun (median)", "pages", "Review rerun", False),
    ("AppTest: one relabel and its rerun (median)", "pages", "Review one edit (relabel, rerun)", False),
    ("browser: Data, second visit", "browser", "Second visit: Data", False),
    ("browser: Review, second visit", "browser", "Second visit: Review", False),
    ("browser: Review, next page", "browser", "Review: next page", False),
    ("browser: Review, relabel", "browser", "Review: relabel", False),
    ("browser: Review, undo / redo", "browser", "Review: undo / redo", False),
]
RSS_STEPS = ["import", "health cold", "health cached", "linear", "finetune", "pages", "browser"]


def _fmt_s(x: float) -> str:
    return f"{x:.0f} s" if x >= 100 else f"{x:.1f} s" if x >= 1 else f"{x * 1000:.0f} ms"


def table(results: dict) -> str:
    sizes = sorted(int(n) for n in results)
    head = "| step | " + " | ".join(f"{n:,}" for n in sizes) + " |"
    lines = [head, "|---|" + "---:|" * len(sizes)]
    for label, step, key, per_image in ROWS:
        cells = []
        for n in sizes:
            value = results[str(n)].get(step, {}).get(key)
            if value is None:
                cells.append("–")
            else:
                cells.append(_fmt_s(value) + (f" ({value / n * 1000:.2f} ms/img)" if per_image else ""))
        if any(c != "–" for c in cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for step in RSS_STEPS:
        cells = []
        for n in sizes:
            r = results[str(n)].get(step)
            cells.append("–" if not r else f"{r['rss_mb']:,} MB" + (f" ({r['child_rss_mb']:,} MB)" if r.get("child_rss_mb")
                                                                      else ""))
        if any(c != "–" for c in cells):
            lines.append(f"| peak RSS: {step} (largest child) | " + " | ".join(cells) + " |")
    ratios = []
    for label, step, key, per_image in ROWS:
        have = [n for n in sizes if n >= 10_000 and results[str(n)].get(step, {}).get(key) is not None]
        if per_image and len(have) >= 2:
            lo, hi = have[0], have[-1]
            r = (results[str(hi)][step][key] / hi) / (results[str(lo)][step][key] / lo)
            ratios.append(f"{label}: {r:.2f}× per image from {lo:,} to {hi:,}")
    return "\n".join(lines + ([""] + ratios if ratios else []))


def _by_checkout(saved: dict) -> dict:
    """Results by checkout label (an older results.json holds one checkout's results by size)."""
    return {"this checkout": saved} if saved and all(k.isdigit() for k in saved) else saved


def print_tables(results: dict) -> None:
    for label, by_size in results.items():
        if len(results) > 1:
            print(f"\n{label}\n")
        print(table(by_size))


# --- main -------------------------------------------------------------------------------------------

def measure(n: int, base: Path, args, mine: dict, save, root: Path, index: int) -> None:
    """Every step asked for at size n, with the checkout `root` (the index-th measured), into `mine`."""
    zip_path = base / f"images-{n}.zip"
    made = make_zip(zip_path, n)
    if made:
        print(f"{n:,} images generated in {made:.0f} s ({zip_path.stat().st_size / 2**20:.0f} MB)", file=sys.stderr)
    home = base / (f"ws-{n}" if index == 0 else f"ws-{n}-{index}")
    logs = base / (f"logs-{n}" if index == 0 else f"logs-{n}-{index}")
    logs.mkdir(parents=True, exist_ok=True)
    mine = mine.setdefault(str(n), {})
    size = ["--img-size", str(args.img_size)] if args.img_size else []

    def cli(log: str, *words: str) -> dict:
        return run_step(imgcls(*words), home, logs / log, root)

    def step(name: str, fn) -> None:
        t0 = time.perf_counter()
        mine[name] = fn()
        save()
        print(f"  {n:,} {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    if "import" in args.steps:
        shutil.rmtree(home, ignore_errors=True)
        step("import", lambda: cli("import.log", "import", str(zip_path), "--name", NAME))
    if "health" in args.steps:
        drop_caches(home)
        step("health cold", lambda: cli("health-cold.log", "health", NAME, *size))
        step("health cached", lambda: cli("health-cached.log", "health", NAME, *size))
        for r in ("health cold", "health cached"):
            report = mine[r].pop("result", {})
            mine[r]["findings"] = {f["kind"]: len(f["images"]) for f in report.get("findings", [])}
        save()
    train = ["train", "--dataset", NAME, "--augment", "none", *size]
    if "linear" in args.steps:
        drop_caches(home)
        step("linear", lambda: cli("linear.log", *train, "--strategy", "linear"))
        mine["linear"]["accuracy"] = mine["linear"].pop("result", {}).get("val_accuracy")
        save()
    if "finetune" in args.steps and n == args.finetune_at:
        step("finetune", lambda: cli("finetune.log", *train, "--strategy", "finetune", "--epochs", "1"))
        mine["finetune"]["accuracy"] = mine["finetune"].pop("result", {}).get("val_accuracy")
        save()
    if "pages" in args.steps:
        step("pages", lambda: pages_step(home, logs / "pages.log", args.reruns, root))
    if "browser" in args.steps:
        step("browser", lambda: browser_step(home, logs / "server.log", root))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 30_000, 100_000])
    parser.add_argument("--img-size", type=int, default=64, help="0: each command's own default")
    parser.add_argument("--app-dir", type=Path, action="append", default=[],
                        help="another checkout to measure beside this one (e.g. a git worktree of older code)")
    parser.add_argument("--finetune-at", type=int, default=10_000)
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=STEPS)
    parser.add_argument("--reruns", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="keep images, workspaces and results here")
    parser.add_argument("--table", type=Path, metavar="DIR", help="print the table of the results kept in DIR")
    parser.add_argument("--pages-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pages_child:
        print(json.dumps(pages_child(args.reruns, args.app_dir[0] if args.app_dir else ROOT)))
        return
    if args.table:
        print_tables(_by_checkout(json.loads((args.table / "results.json").read_text())))
        return
    base = args.keep or Path(tempfile.mkdtemp(prefix="imgcls-bench-scale-"))
    base.mkdir(parents=True, exist_ok=True)
    path = base / "results.json"
    results = _by_checkout(json.loads(path.read_text())) if path.exists() else {}
    checkouts = {"this checkout": ROOT, **{str(p): p.resolve() for p in args.app_dir}}

    def save() -> None:
        path.write_text(json.dumps(results, indent=1))

    for n in args.sizes:
        for index, (label, root) in enumerate(checkouts.items()):  # alternated: a change in load touches each
            measure(n, base, args, results.setdefault(label, {}), save, root, index)
    size = f"{args.img_size} px" if args.img_size else "each command's default size"
    print(f"\n{os.cpu_count()} cores, embedding at {size}; wall time (per image), peak RSS\n")
    print_tables(results)
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
