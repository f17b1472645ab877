"""Linear heads on cached backbone features: the `linear` strategy, and the first stage of `finetune`."""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
import torch.nn.functional as F

from imgcls.store import runs, workspace
from imgcls.train.config import RunConfig
from imgcls.train.loops import Cancelled, lr_find, score, warmup_cosine
from imgcls.train.strategies import HEAD_LR  # noqa: F401 (read from here too)
from imgcls.vision.checkpoint import save_model

HEAD_BATCH = 64
# Progress weight of one image in one last-layer epoch, against 1 for embedding an image: measured on 2 CPU cores,
# 3,000 images embedded in 95 s and 25 epochs over 2,100 of their features in 3 s (about 1/500). The ETA divides
# the work left by the current stage's rate, so a wrong weight here is a wrong ETA in every other stage.
HEAD_UNIT = 0.002


def class_weights(labels: np.ndarray, num_classes: int, limit: float = 3.0) -> torch.Tensor | None:
    """Inverse-frequency loss weights when classes are imbalanced past `limit`:1, else None."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    if counts.min() == 0 or counts.max() / counts.min() <= limit:
        return None
    return torch.tensor(counts.sum() / (num_classes * counts), dtype=torch.float32)


def _features(model, data: dict, config: RunConfig, rep) -> np.ndarray:
    pre = config.preprocess  # the run's own weights and preprocessing name its feature cache
    key, started, n = pre.feature_key(), time.time(), len(data["hashes"])
    feats = pre.extract(model.to(config.device), data["images"], data["hashes"], config.device,
                        progress=rep.track(n))
    rep.advance(0, "Backbone features ready", force=True)
    rep.metric({"kind": "features", "images": n, "seconds": round(time.time() - started, 3), "key": key})
    return feats


def head_lr_find(head: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor, loss_fn) -> dict:
    """Learning-rate sweep for a linear head on features (restores the head afterwards)."""
    saved = copy.deepcopy(head.state_dict())
    opt = torch.optim.AdamW(head.parameters(), lr=1e-6)
    gen = torch.Generator().manual_seed(0)

    def step_at(lr: float) -> float:
        idx = torch.randint(0, len(y), (min(HEAD_BATCH, len(y)),), generator=gen)
        for group in opt.param_groups:
            group["lr"] = lr
        loss = loss_fn(head(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    found = lr_find(step_at, start=1e-5, end=10.0, steps=80)
    head.load_state_dict(saved)
    return found


def _head_data(model, data: dict, config: RunConfig, rep):
    feats = _features(model, data, config, rep)
    tr = data["split"] == "train"
    x_tr, y_tr = torch.from_numpy(feats[tr]), torch.from_numpy(data["labels"][tr]).long()
    weights = class_weights(y_tr.numpy(), len(config.classes))
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights, label_smoothing=config.label_smoothing)
    return feats, x_tr, y_tr, weights, loss_fn


def head_lr_find_run(model, data: dict, config: RunConfig, rep) -> dict:
    """Learning-rate sweep of a fresh linear head on the cached features."""
    _, x_tr, y_tr, _, loss_fn = _head_data(model, data, config, rep)
    head = copy.deepcopy(model.get_classifier()).cpu().float()
    return head_lr_find(head, x_tr, y_tr, loss_fn)


def fit_head(model, data: dict, config: RunConfig, run_id: str, rep) -> dict:
    """Train the classifier layer on frozen features; put the best one into the model."""
    feats, x_tr, y_tr, weights, loss_fn = _head_data(model, data, config, rep)
    va = data["split"] == "val"
    x_va, y_va = torch.from_numpy(feats[va]), data["labels"][va]
    head = copy.deepcopy(model.get_classifier()).cpu().float()
    plan = config.strategy
    lr = plan.head_stage_lr(config)
    if lr == "auto":
        found = head_lr_find(head, x_tr, y_tr, loss_fn)
        workspace.atomic_write_json(runs.run_dir(run_id) / "lr_find_head.json", found)
        lr = found["suggestion"]
        rep.metric({"kind": "lr_find", "stage": "head", "suggestion": lr})
    epochs = plan.head_epochs(config)
    best = _train_head(head, x_tr, y_tr, x_va, y_va, loss_fn, lr, epochs, config, rep)
    head.load_state_dict(best["state"])
    model.get_classifier().load_state_dict({k: v.to(next(model.parameters()).device) for k, v in best["state"].items()})
    result = {"val_accuracy": best["val_accuracy"], "val_loss": best["val_loss"], "epochs": best["epochs"],
              "best_epoch": best["epoch"], "images_per_second": best["images_per_second"], "lr": lr,
              "imbalance_weighting": weights is not None}
    # finetune keeps this model too: if the network stage never beats it, or is stopped, it is the best
    save_model(model, runs.run_dir(run_id) / "model.safetensors", {"run": run_id, "stage": "head"})
    return result


def head_epoch(head, x: torch.Tensor, y: torch.Tensor, opt, sched, loss_fn, gen: torch.Generator) -> tuple:
    """One epoch of a linear head on features, in an order drawn from `gen`: the summed loss, the number right."""
    order = torch.randperm(len(y), generator=gen)
    total = correct = 0.0
    for start in range(0, len(order), HEAD_BATCH):
        idx = order[start:start + HEAD_BATCH]
        logits = head(x[idx])
        loss = loss_fn(logits, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        total += loss.item() * len(idx)
        correct += (logits.argmax(1) == y[idx]).sum().item()
    return total, correct


def _train_head(head, x_tr, y_tr, x_va, y_va, loss_fn, lr, epochs, config, rep) -> dict:
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=config.weight_decay)
    steps = max(1, -(-len(y_tr) // HEAD_BATCH))
    sched = warmup_cosine(opt, steps * epochs, steps)
    best = {"val_loss": float("inf"), "epoch": 0, "state": copy.deepcopy(head.state_dict())}
    patience = config.strategy.head_stage_patience(config)
    bad, seen, started = 0, 0, time.time()
    for epoch in range(1, epochs + 1):
        if rep.should_stop():
            raise Cancelled()
        head.train()
        total, correct = head_epoch(head, x_tr, y_tr, opt, sched, loss_fn, gen)
        seen += len(y_tr)
        head.eval()
        with torch.no_grad():
            probs = F.softmax(head(x_va), 1).numpy()
        val = score(probs, y_va)
        rec = {"kind": "epoch", "stage": "head", "epoch": epoch, "train_loss": total / len(y_tr),
               "train_accuracy": correct / len(y_tr), **val, "lr": opt.param_groups[0]["lr"]}
        rep.metric(rec)
        rep.advance(len(y_tr) * HEAD_UNIT, f"Training the last layer: epoch {epoch}/{epochs}", epoch=epoch, epochs=epochs,
                    val_accuracy=val["val_accuracy"])
        if val["val_loss"] < best["val_loss"] - 1e-4:
            best = {**val, "epoch": epoch, "state": copy.deepcopy(head.state_dict())}
            bad = 0
        else:
            bad += 1
            if bad >= patience:
                break
    best["epochs"] = epoch
    best["images_per_second"] = seen / max(time.time() - started, 1e-9)
    return best
