"""Prediction speed on this CPU: one image at a time (decode → preprocess → model), and batches; with and
without the out-of-distribution check (pre-logit features, then the k-th nearest of the largest reference
imgcls.evaluate.ood keeps, 5000 training images).

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

from imgcls.evaluate import ood  # noqa: E402
from imgcls.ingest.images import decode  # noqa: E402
from imgcls.vision.imgcache import cache_size, center_crop, fit_square, to_tensor  # noqa: E402
from imgcls.vision.models import create_model, data_config  # noqa: E402


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

    with torch.inference_mode():
        width = model.forward_head(model.forward_features(torch.zeros(1, 3, 64, 64)), pre_logits=True).shape[1]
    reference = ood.Reference(ood.normalise(rng.normal(size=(ood.MAX_REFERENCE, width))), 0.3, ood.K)

    def one() -> None:
        arr = center_crop(fit_square(decode(photo), side, cfg["interpolation"]), args.img_size)
        with torch.inference_mode():
            model(to_tensor(arr[None], cfg["mean"], cfg["std"])).softmax(1)

    def one_checked() -> None:  # what Predictor.predict does with a reference: one backbone pass, two heads
        arr = center_crop(fit_square(decode(photo), side, cfg["interpolation"]), args.img_size)
        with torch.inference_mode():
            feats = model.forward_features(to_tensor(arr[None], cfg["mean"], cfg["std"]))
            model.forward_head(feats).softmax(1)
            reference.distances(model.forward_head(feats, pre_logits=True).numpy())

    for _ in range(5):
        one(), one_checked()
    times, checked = [], []
    for _ in range(args.repeats):  # alternated, so a busy moment on a shared machine hits both alike
        for fn, out in ((one, times), (one_checked, checked)):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    query = ood.normalise(rng.normal(size=(1, width)))
    start = time.perf_counter()
    for _ in range(200):
        reference.distances(query)
    knn_ms = (time.perf_counter() - start) / 200 * 1000
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
    print(f"the same with the out-of-distribution check: median {statistics.median(checked) * 1000:.1f} ms, "
          f"p90 {np.percentile(checked, 90) * 1000:.1f} ms (the nearest-neighbour search alone: {knn_ms:.2f} ms "
          f"against {ood.MAX_REFERENCE} training images)")
    print(f"batches of {args.batch}, model only: median {statistics.median(rates):.0f} images/s")


if __name__ == "__main__":
    main()
