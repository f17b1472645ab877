"""The training steps: datasets over the decoded cache, one epoch, evaluation, the LR finder."""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from typing import Callable, Iterable

import numpy as np
import torch

from imgcls.augment.pipeline import reseed
from imgcls.jobs import Cancelled, slots  # noqa: F401 - Cancelled: raised by the loops, caught by the job system
from imgcls.vision.infer import fit_size


def default_threads() -> int:
    """Every core this process may use (a container or taskset may allow fewer than the machine has), or
    the share of them its job slot gives it when several CPU jobs run at once."""
    cores = max(slots.cores(), 1)
    share = os.environ.get("IMGCLS_JOB_THREADS", "")
    return min(cores, int(share)) if share.isdigit() and int(share) > 0 else cores


@contextlib.contextmanager
def reproducible(seed: int, device: str, threads: int | None = None):
    """Seed every generator and, on the CPU, fix the thread count and ask for deterministic kernels, so the
    same run on the same machine gives the same model to the last bit; the previous settings come back after.

    Where this cannot be promised: on a GPU (cuDNN and cuBLAS pick kernels whose sums run in varying order;
    deterministic ones need CUBLAS_WORKSPACE_CONFIG set before CUDA starts, and some layers have none), and
    across thread counts or machines (a matrix product split over other threads or another instruction set
    rounds differently)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled())
    if device == "cpu":
        torch.set_num_threads(min(threads or default_threads(), default_threads()))  # never past its share
        torch.use_deterministic_algorithms(True, warn_only=True)  # warn, never fail, where one has no such kernel
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        torch.use_deterministic_algorithms(before[1], warn_only=before[2])


class ArrayDataset(torch.utils.data.Dataset):
    """Images from the decoded cache (an array or a view over the store, read one image per item), augmented
    on the fly, as uint8 H×W×3 and a class index."""

    def __init__(self, images, labels: np.ndarray, img_size: int, pipeline=None):
        self.images, self.labels, self.img_size, self.pipeline = images, labels, img_size, pipeline

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = self.images[i]
        if self.pipeline is not None:
            img = self.pipeline(image=img)["image"]
        return fit_size(img, self.img_size), int(self.labels[i])


def seed_worker(_worker_id: int) -> None:
    """Give each DataLoader worker its own, reproducible augmentation stream."""
    info = torch.utils.data.get_worker_info()
    seed = info.seed % 2**32
    np.random.seed(seed)
    if getattr(info.dataset, "pipeline", None) is not None:
        reseed(info.dataset.pipeline, seed)


def warmup_cosine(optimizer, total_steps: int, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine decay to 1% of the peak learning rate."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(warmup_steps, 1)
        progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_one_epoch(model, loader: Iterable, optimizer, scheduler, loss_fn, prep: Callable, *,
                    should_stop: Callable[[], bool], on_step: Callable[[dict], None] | None = None,
                    autocast=None, scaler=None, batchnorm_stats: bool = True) -> dict:
    """One pass over the training data; returns mean loss, accuracy and images per second. With
    `batchnorm_stats` False, no BatchNorm layer updates its running statistics (see freeze_batchnorm)."""
    model.train()
    freeze_batchnorm(model, every_layer=not batchnorm_stats)
    total_loss = correct = seen = 0
    start = time.perf_counter()
    for step, (xb, yb) in enumerate(loader):
        if should_stop():
            raise Cancelled()
        x, y = prep(xb), yb.to(next(model.parameters()).device, non_blocking=True)
        with autocast() if autocast else torch.autocast("cpu", enabled=False):
            logits = model(x)
            loss = loss_fn(logits.float(), y)
        if not torch.isfinite(loss):
            raise FloatingPointError("The loss became NaN or infinite: lower the learning rate and try again.")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        n = len(y)
        total_loss += loss.item() * n
        correct += (logits.argmax(1) == y).sum().item()
        seen += n
        if on_step:
            on_step({"step": step, "loss": loss.item(), "lr": optimizer.param_groups[-1]["lr"], "images": seen,
                     "seconds": time.perf_counter() - start})
    seconds = time.perf_counter() - start
    return {"train_loss": total_loss / max(seen, 1), "train_accuracy": correct / max(seen, 1),
            "images_per_second": seen / max(seconds, 1e-9), "seconds": seconds}


def freeze_batchnorm(model: torch.nn.Module, every_layer: bool = False) -> None:
    """BatchNorm layers whose weights are frozen keep their running statistics frozen; with `every_layer`, the
    layers that learn keep them too (their scale and shift still learn), normalising with the statistics the
    pretrained weights were made with."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            if every_layer or not any(p.requires_grad for p in module.parameters(recurse=False)):
                module.eval()


def score(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Validation loss (plain cross-entropy) and accuracy from probabilities."""
    if len(labels) == 0:
        return {"val_loss": float("nan"), "val_accuracy": float("nan")}
    p = np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)
    return {"val_loss": float(-np.log(p).mean()), "val_accuracy": float((probs.argmax(1) == labels).mean())}


def lr_find(step_at: Callable[[float], float], start: float = 1e-6, end: float = 1.0, steps: int = 60) -> dict:
    """Sweep the learning rate exponentially, one step each, and suggest the steepest descent point."""
    lrs, losses, smooth = [], [], None
    for i in range(steps):
        lr = start * (end / start) ** (i / max(steps - 1, 1))
        loss = step_at(lr)
        if not math.isfinite(loss):
            break
        smooth = loss if smooth is None else 0.8 * smooth + 0.2 * loss
        lrs.append(lr)
        losses.append(smooth)
        if smooth > 4 * min(losses) and i > 5:
            break
    return {"lrs": lrs, "losses": losses, "suggestion": suggest_lr(lrs, losses)}


def suggest_lr(lrs: list[float], losses: list[float]) -> float:
    """The learning rate where the smoothed loss falls fastest, before its minimum."""
    if len(lrs) < 4:
        return 1e-3
    stop = int(np.argmin(losses))
    if stop < 3:
        return lrs[stop] / 10
    slopes = np.gradient(np.asarray(losses[:stop + 1]), np.log(np.asarray(lrs[:stop + 1])))
    return float(lrs[int(np.argmin(slopes))])
