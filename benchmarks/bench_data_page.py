"""Data page re-render time with a 3,000-image dataset, once thumbnails are cached.

Builds a dataset of 3,000 generated photos-like JPEGs (6 classes), renders the Data page once with
AppTest (which makes the thumbnails of the page shown), then times further reruns.
Usage: python benchmarks/bench_data_page.py [--images 3000] [--runs 15]
"""

from __future__ import annotations

import argparse
import io
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


def make_files(n: int, classes: int = 6, seed: int = 0):
    """n small JPEGs of smooth random colour fields, spread over `classes` folders."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        size = (int(rng.integers(240, 400)), int(rng.integers(180, 300)))
        img = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=85)
        yield f"class_{i % classes}/img_{i:05d}.jpg", buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ["IMGCLS_HOME"] = home
        from streamlit.testing.v1 import AppTest

        from imgcls.ingest.imports import import_listing
        from imgcls.ingest.sources import list_memory
        from imgcls.store.workspace import save_setting
        from imgcls.ui.common import nav

        start = time.perf_counter()
        import_listing(list_memory(make_files(args.images)), "big", "generated")
        print(f"import of {args.images} generated images: {time.perf_counter() - start:.1f} s")
        save_setting("active_dataset", "big")
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
        at.switch_page(nav.DATA.path)
        start = time.perf_counter()
        at.run()
        first = time.perf_counter() - start
        assert not at.exception, at.exception
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - start)
        assert not at.exception, at.exception
        images = [m.value for m in at.metric if m.label == "Images"]
        print(f"Data page, {images[0] if images else '?'} images: first render (makes thumbnails) "
              f"{first:.2f} s; rerun median {statistics.median(times) * 1000:.0f} ms, "
              f"max {max(times) * 1000:.0f} ms over {args.runs} runs")


if __name__ == "__main__":
    main()
