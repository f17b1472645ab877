"""Prediction speed on this CPU: one image at a time (decode → preprocess → model), and batches.

Uses EfficientNet-Lite0 with a 2-class head (speed does not depend on the trained weights) at 224 px.
Usage: python benchmarks/bench_predict.py [--repeats 50] [--batch 32]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imgcls.images import decode  # noqa: E402
from imgcls.imgcache import cache_size, center_crop, fit_square, to_tensor  # noqa: E402
from imgcls.models import create_model, data_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--img-size", type=int, default=224)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = create_model("efficientnet_lite0", 2).eval()
    cfg = data_config("efficientnet_lite0")
    side = cache_size(args.img_size, cfg["crop_pct"])
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=90)
    photo = buf.getvalue()

    def one() -> None:
        arr = center_crop(fit_square(decode(photo), side, cfg["interpolation"]), args.img_size)
        with torch.inference_mode():
            model(to_tensor(arr[None], cfg["mean"], cfg["std"])).softmax(1)

    for _ in range(5):
        one()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        one()
        times.append(time.perf_counter() - start)
    batch = np.stack([center_crop(fit_square(decode(photo), side, cfg["interpolation"]), args.img_size)] * args.batch)
    rates = []
    for _ in range(5):
        start = time.perf_counter()
        with torch.inference_mode():
            model(to_tensor(batch, cfg["mean"], cfg["std"])).softmax(1)
        rates.append(args.batch / (time.perf_counter() - start))
    print(f"single image at {args.img_size} px (500×375 JPEG decoded, resized, cropped, model): "
          f"median {statistics.median(times) * 1000:.1f} ms over {args.repeats}, "
          f"p90 {np.percentile(times, 90) * 1000:.1f} ms")
    print(f"batches of {args.batch}, model only: median {statistics.median(rates):.0f} images/s")


if __name__ == "__main__":
    main()
