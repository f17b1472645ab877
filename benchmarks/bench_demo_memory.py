"""Demo server memory while a visitor uploads large photos, and whether it comes back afterwards.

A fresh workspace with a tiny trained run, published; `python -m imgcls serve-demo` on a free port (it execs
Streamlit, so the started process is the server); one headless Chromium tab on the demo link, which uploads
N generated PNGs of about SIZE MB each at once (random pixels, so they do not compress). The server's
resident memory (VmRSS in /proc/PID/status) is sampled every 0.1 s: before the upload (page open and idle),
its peak, and AFTER s after the page has answered (the tab still open, nothing else happening). Run it twice
to compare sizes the demo accepts (under its per-file limit) and refuses. A small photo is answered first:
the first answer loads what every later one uses (the unfamiliar-image check, PyTorch's kernels), which is
no upload's memory. ROUNDS uploads follow one another in the same tab, to tell memory that comes back or
stays at a level from memory that grows with every upload.
Usage: python benchmarks/bench_demo_memory.py [--files 3] [--size-mb 100] [--after 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))
import appserver  # noqa: E402  (a sibling file, found through the line above)

# each file's name, as a heading (an answer) or inside a message that names it (a refusal by the page, or
# the uploader's own "File must be … or smaller")
ANSWERED_JS = """(names) => names.every((n) => Array.from(document.querySelectorAll('h1, h2, h3, [data-testid]'))
  .some((e) => (e.innerText || '').includes(n) && (/^H[1-3]$/.test(e.tagName)
    || (e.innerText.length < 600 && /smaller|at most|at once|could not/i.test(e.innerText)))))"""


def rss_mb(pid: int) -> float:
    """Resident memory of one process in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


class Sampler(threading.Thread):
    """Samples a process's RSS every 0.1 s until stopped; keeps (seconds, MB) pairs."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.samples, self.stopped = pid, [], threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.samples.append((time.monotonic() - self.t0, rss_mb(self.pid)))
            time.sleep(0.1)

    def peak(self) -> float:
        return max(mb for _, mb in self.samples)


def big_png(path: Path, size_mb: float, seed: int) -> Path:
    """A PNG of random pixels of about size_mb (noise barely compresses)."""
    side = int((size_mb * 1024**2 / 3) ** 0.5)
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="PNG", compress_level=1)
    return path


def published_home(home: Path) -> str:
    """Train and publish a tiny run in `home` (in this process); its demo token."""
    os.environ["IMGCLS_HOME"] = str(home)
    from test_train import SMALL, make_dataset

    from imgcls.share import demo
    from imgcls.train.run import TrainConfig, prepare_run, run

    make_dataset(name="bench", per_class=8)
    run_id = prepare_run(TrainConfig(dataset="bench", strategy="linear", epochs=3, **SMALL))
    run(run_id, echo=lambda _: None)
    return demo.publish(run_id)


def upload(page, photos: list[Path]) -> float:
    """Upload the photos at once and wait until each is answered or refused; seconds it took."""
    t0 = time.monotonic()
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files([str(p) for p in photos])
    try:
        page.wait_for_function(ANSWERED_JS, arg=[p.name for p in photos], timeout=300_000, polling=200)
    except Exception as exc:  # playwright's TimeoutError: say what the page shows instead
        raise RuntimeError(f"no answer for every file ({exc}); the page says: {page.inner_text('body')}") from None
    appserver.wait_idle(page, timeout_s=600)
    return time.monotonic() - t0


def measure(files: int, size_mb: float, after_s: float, rounds: int) -> dict:
    """One server and one tab: a small warm-up photo (the first answer loads what every later one uses),
    then `rounds` uploads of `files` images: RSS before, at the peak and after_s after each."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        token = published_home(tmp / "ws")
        warm = big_png(tmp / "warm-up.png", 0.05, 99)
        made = [big_png(tmp / f"made{i}.png", size_mb, i) for i in range(files)]
        port = appserver.free_port()
        log = open(tmp / "server.log", "w")  # noqa: SIM115 - closed below
        proc = subprocess.Popen([sys.executable, "-m", "imgcls", "serve-demo", "--port", str(port), "--address",
                                 "127.0.0.1"], cwd=ROOT, env=appserver.env_for(ROOT, tmp / "ws"), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        out = {"files": files, "file_mb": round(made[0].stat().st_size / 1024**2, 1), "rounds": []}
        try:
            appserver.wait_healthy(f"http://127.0.0.1:{port}", proc)
            with sync_playwright() as pw:
                page = appserver.new_page(appserver.launch(pw))
                page.goto(f"http://127.0.0.1:{port}/?demo={token}", wait_until="domcontentloaded")
                page.get_by_text("Try the classifier").wait_for(timeout=120_000)
                appserver.wait_idle(page)
                out["page_open_mb"] = round(rss_mb(proc.pid))
                upload(page, [warm])
                time.sleep(2)
                for r in range(rounds):
                    photos = [tmp / f"r{r}-big{i}.png" for i in range(files)]
                    for src, dst in zip(made, photos):
                        os.link(src, dst)  # a new name each round, the same bytes
                    before, sampler = rss_mb(proc.pid), Sampler(proc.pid)
                    sampler.start()
                    seconds = upload(page, photos)
                    time.sleep(after_s)
                    sampler.stopped.set()
                    sampler.join()
                    out["rounds"].append({"before_mb": round(before), "peak_mb": round(sampler.peak()),
                                          f"after_{after_s:g}s_mb": round(rss_mb(proc.pid)),
                                          "answered_s": round(seconds, 1)})
                out["answers_shown"] = page.locator("h3").count()
                out["refused_by_the_browser"] = page.get_by_text("or smaller").count()
                out["notes"] = [n for n in page.locator("[data-testid='stAlert']").all_inner_texts()
                                if "unlike anything" not in n]
        finally:
            appserver.stop_app(proc)
            log.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=3, help="images uploaded at once")
    parser.add_argument("--size-mb", type=float, default=100, help="size of each image")
    parser.add_argument("--after", type=float, default=10, help="seconds after the answer to read RSS again")
    parser.add_argument("--rounds", type=int, default=2, help="uploads of the same size, one after the other")
    args = parser.parse_args()
    print(json.dumps(measure(args.files, args.size_mb, args.after, args.rounds)))


if __name__ == "__main__":
    main()
