"""GPU training throughput: imgcls's engine against a bare timm-style train step, same model, batch, GPU.

The bare step follows the method of timm's benchmark.py in train mode: a fixed synthetic batch,
SGD from timm's optimizer factory, autocast, channels_last, 10 warm-up steps then 40 timed steps.
Our figure is the steady-state images/s of real epochs (augmentation in DataLoader workers, loss,
optimizer, scheduler included). Usage: python benchmarks/bench_gpu.py [--batch 128] [--images 4096]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time

import numpy as np
import torch
from PIL import Image


def bare_train_step_rate(model_name: str, batch: int, img_size: int, dtype, steps: int = 40) -> float:
    """Samples/s of forward + backward + SGD step on one fixed batch (timm benchmark.py's method)."""
    import timm
    from timm.optim import create_optimizer_v2

    model = timm.create_model(model_name, num_classes=1000, global_pool="fast", drop_rate=0.0)
    model.to("cuda", memory_format=torch.channels_last).train()
    opt = create_optimizer_v2(model, opt="sgd", lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss().cuda()
    x = torch.randn(batch, 3, img_size, img_size, device="cuda").contiguous(memory_format=torch.channels_last)

    def step():
        opt.zero_grad()
        with torch.autocast("cuda", dtype=dtype):
            out = model(x)
            target = torch.empty(batch, dtype=torch.long, device="cuda").random_(1000)
            loss_fn(out, target).backward()
        opt.step()

    for _ in range(10):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


def make_files(n: int, classes: int = 8, seed: int = 0):
    """n JPEGs of smooth random colour fields in `classes` folders (content does not matter for speed)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((320, 256))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=85)
        yield f"c{i % classes}/{i:05d}.jpg", buf.getvalue()


def engine_rate(strategy: str, batch: int, epochs: int, compile_: bool) -> dict:
    """Steady images/s of our engine (median over epochs after the first)."""
    from imgcls.store import runs
    from imgcls.train.run import TrainConfig, prepare_run, run

    run_id = prepare_run(TrainConfig(dataset="bench", strategy=strategy, epochs=epochs, batch_size=batch,
                                     device="cuda", augment="light", patience=epochs, head_epochs=2,
                                     compile=compile_, img_size=224))
    result = run(run_id, echo=lambda _: None)
    ips = [m["images_per_second"] for m in runs.read_metrics(run_id) if m.get("kind") == "epoch"
           and m.get("stage") == strategy]
    return {"strategy": strategy, "compile": compile_, "images_per_second": statistics.median(ips[1:] or ips),
            "epochs": len(ips), "seconds": result["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("IMGCLS_HOME", tempfile.mkdtemp())
    from imgcls.ingest.imports import import_listing
    from imgcls.ingest.sources import list_memory

    import_listing(list_memory(make_files(args.images)), "bench", "generated")
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    out = {"gpu": torch.cuda.get_device_name(0), "batch": args.batch, "torch": torch.__version__,
           "bare_step_bf16": bare_train_step_rate("efficientnet_lite0", args.batch, 224, dtype),
           "bare_step_fp16": bare_train_step_rate("efficientnet_lite0", args.batch, 224, torch.float16),
           "engine": [engine_rate(s, args.batch, args.epochs, False) for s in ("finetune", "full")]}
    if args.compile:
        out["engine"].append(engine_rate("full", args.batch, args.epochs, True))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
