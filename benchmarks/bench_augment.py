"""Augmentation throughput per preset, and the Augment page's 16-tile preview time.

Throughput: each preset on 256-px cached squares (what 224-px training reads), followed by the crop to
224 that training applies, in one process: images per second, median of several runs. Preview: the
engine's preview() of 4 images × (1 + 3) tiles, and a full rerun of the Augment page with new draws
(AppTest, uncached tiles), medians. Prints markdown tables.
Usage: python benchmarks/bench_augment.py [--images 256] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZE, SIDE = 224, 256


def photos(n: int, seed: int = 0) -> np.ndarray:
    """n smooth colour fields with some grain: closer to photos than pure noise."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, SIDE, SIDE, 3), dtype=np.uint8)
    for i in range(n):
        small = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
        big = np.asarray(small.resize((SIDE, SIDE), Image.Resampling.BICUBIC), dtype=np.int16)
        out[i] = np.clip(big + rng.integers(-8, 9, big.shape), 0, 255)
    return out


def throughput(preset: str, images: np.ndarray, runs: int) -> tuple[float, float]:
    """Median and best images/s of one preset over `runs` passes, as a training DataLoader worker does it."""
    from imgcls.augment.pipeline import build_pipeline
    from imgcls.train.loops import fit_size

    pipeline = build_pipeline(preset, SIZE, seed=0)
    rates = []
    for _ in range(runs + 1):  # the first pass warms caches (OpenCV, numpy) and is dropped
        start = time.perf_counter()
        for img in images:
            out = pipeline(image=img)["image"]
            fit_size(out, SIZE)
        rates.append(len(images) / (time.perf_counter() - start))
    return statistics.median(rates[1:]), max(rates[1:])


def preview_times(runs: int) -> tuple[float, float]:
    """(engine preview of 16 tiles, full Augment page rerun with new draws), medians in seconds."""
    from streamlit.testing.v1 import AppTest

    from imgcls.augment import preview as augpreview
    from imgcls.ingest import imports as data
    from imgcls.store import workspace
    from imgcls.ui.common import nav

    images = list(photos(4, seed=1))
    engine = []
    for seed in range(runs + 1):
        start = time.perf_counter()
        augpreview.preview(images, "medium", SIZE, k=3, seed=seed)
        engine.append(time.perf_counter() - start)
    data.import_sample("shapes", "shapes")
    workspace.save_setting("active_dataset", "shapes")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.switch_page(nav.AUGMENT.path).run()
    at.button(key="augment.preset.medium").click().run()
    page = []
    for _ in range(runs):
        start = time.perf_counter()
        at.button(key="augment.resample").click().run()
        page.append(time.perf_counter() - start)
        assert not at.exception and len(at.image) == 16, "the page did not show 16 tiles"
    return statistics.median(engine[1:]), statistics.median(page)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    import cv2
    import torch

    from imgcls.augment.pipeline import PRESETS

    torch.set_num_threads(1)  # one process, one core: what each DataLoader worker gets
    cv2.setNumThreads(1)
    images = photos(args.images)
    print(f"{args.images} images of {SIDE}×{SIDE} px → {SIZE} px, median of {args.runs} runs, single process, "
          f"{os.cpu_count()} CPU cores on the machine\n")
    print("| preset | images/s (median) | images/s (best) | ms per image |")
    print("|---|---:|---:|---:|")
    for preset in PRESETS:
        median, best = throughput(preset, images, args.runs)
        print(f"| {preset} | {median:,.0f} | {best:,.0f} | {1000 / median:.2f} |")
    with tempfile.TemporaryDirectory() as home:
        os.environ["IMGCLS_HOME"] = home
        engine, page = preview_times(args.runs)
    print("\n| 16-tile preview (4 images × original + 3 versions, medium) | seconds (median) |")
    print("|---|---:|")
    print(f"| engine: augpreview.preview() | {engine:.3f} |")
    print(f"| Augment page rerun after Re-sample (AppTest, whole script) | {page:.3f} |")


if __name__ == "__main__":
    main()
