"""Training the network itself: `finetune` (top layers), `full` (every layer) and `scratch`."""

from __future__ import annotations

import copy
import os

import numpy as np
import torch
from timm.optim import param_groups_layer_decay

from imgcls.augment.pipeline import build_pipeline
from imgcls.jobs import dist
from imgcls.store import runs, workspace
from imgcls.train.config import RunConfig
from imgcls.train.heads import class_weights
from imgcls.train.loops import (ArrayDataset, freeze_batchnorm, lr_find, score, seed_worker, train_one_epoch,
                                warmup_cosine)
from imgcls.vision.cachestore import subset
from imgcls.vision.checkpoint import save_model
from imgcls.vision.engine import cpu_bf16, plain_torch
from imgcls.vision.imgcache import to_tensor
from imgcls.vision.infer import predict_arrays


def param_groups(model, config: RunConfig) -> list[dict]:
    """Optimizer groups with per-layer learning-rate scales; for finetune, only the top layers learn."""
    plan = config.strategy
    decay = plan.decay(config)
    groups = param_groups_layer_decay(model, weight_decay=config.weight_decay, layer_decay=decay)
    if plan.top_layers_only:
        scales = sorted({g["lr_scale"] for g in groups}, reverse=True)
        keep = set(scales[:config.unfreeze])
        for g in groups:
            for p in g["params"]:
                p.requires_grad_(g["lr_scale"] in keep)
        groups = [g for g in groups if g["lr_scale"] in keep]
    return groups


def _accel(config: RunConfig):
    """Autocast and grad scaler: on CUDA bf16 where supported, else fp16 with scaling; on a CPU with bf16
    instructions bf16 when every layer learns (2.0-2.3× the plain fp32 step here, README "How close to the
    hardware"); a finetune step, which trains the top layers only, measured no faster in bf16, so it stays fp32."""
    if not config.device.startswith("cuda"):
        every_layer = not config.strategy.top_layers_only
        return ((lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if every_layer and cpu_bf16() else None), None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return (lambda: torch.autocast("cuda", dtype=dtype)), scaler


def _loader(data: dict, config: RunConfig, train_mask) -> torch.utils.data.DataLoader:
    pipeline = build_pipeline(config.augment_pipeline, config.img_size, seed=config.seed)
    # a view of the training rows, not a copy: each worker reads its images from the store's shard files
    ds = ArrayDataset(subset(data["images"], train_mask), data["labels"][train_mask], config.img_size, pipeline)
    cuda = config.device.startswith("cuda")
    workers = config.workers
    if workers is None:
        workers = min(8, os.cpu_count() or 1) if cuda else 0  # on a small CPU, workers steal the model's cores
    # several processes: each trains on its own shard of every epoch
    sampler = torch.utils.data.DistributedSampler(ds, shuffle=True, seed=config.seed) if dist.active() else None
    return torch.utils.data.DataLoader(
        ds, batch_size=config.batch_size, shuffle=sampler is None, sampler=sampler,
        drop_last=len(ds) > config.batch_size,
        num_workers=workers, pin_memory=cuda, worker_init_fn=seed_worker if workers else None,
        persistent_workers=bool(workers), generator=torch.Generator().manual_seed(config.seed),
    )


def network_lr_find_run(model, data: dict, config: RunConfig, run_id: str) -> dict:
    """Learning-rate sweep of the network's trainable layers on augmented training batches."""
    device = torch.device(config.device)
    model.to(device)
    tr = data["split"] == "train"
    loader = _loader(data, config, tr)
    optimizer = torch.optim.AdamW(param_groups(model, config), lr=1e-6)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    _network_lr_find(model, loader, optimizer, loss_fn, _Prep(config, False), run_id, config.strategy.batchnorm_stats)
    return workspace.read_json(runs.run_dir(run_id) / "lr_find.json")


def _network_lr_find(model, loader, optimizer, loss_fn, prep, run_id: str, batchnorm_stats: bool = True) -> float:
    saved = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    batches = iter(())
    model.train()
    if not batchnorm_stats:  # as the training epochs will run
        freeze_batchnorm(model, every_layer=True)

    def step_at(lr: float) -> float:
        nonlocal batches
        try:
            xb, yb = next(batches)
        except StopIteration:
            batches = iter(loader)
            xb, yb = next(batches)
        for g in optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        loss = loss_fn(model(prep(xb)), yb.to(prep.device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    found = lr_find(step_at, start=1e-6, end=1.0, steps=40)
    model.load_state_dict(saved[0])
    optimizer.load_state_dict(saved[1])
    workspace.atomic_write_json(runs.run_dir(run_id) / "lr_find.json", found)
    return found["suggestion"]


class _Prep:
    """uint8 batches → normalised tensors on the device."""

    def __init__(self, config: RunConfig, channels_last: bool):
        self.device, self.cfg, self.cl = torch.device(config.device), config.data_config, channels_last

    def __call__(self, xb) -> torch.Tensor:
        return to_tensor(xb.numpy(), self.cfg["mean"], self.cfg["std"], self.device, self.cl)


def fit_network(model, data: dict, config: RunConfig, run_id: str, rep, resume: bool = False,
                start_from: dict | None = None) -> dict:
    """Train the network with AdamW, warm-up + cosine, early stopping; keep the best checkpoint."""
    device, folder = torch.device(config.device), runs.run_dir(run_id)
    channels_last = device.type == "cuda" or not plain_torch()  # the CPU's convolutions too are fastest so
    model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    tr, va = data["split"] == "train", data["split"] == "val"
    loader = _loader(data, config, tr)
    groups = param_groups(model, config)
    optimizer = torch.optim.AdamW(groups, lr=1e-3)
    weights = class_weights(data["labels"][tr], len(config.classes))
    loss_fn = torch.nn.CrossEntropyLoss(weight=None if weights is None else weights.to(device),
                                        label_smoothing=config.label_smoothing)
    prep = _Prep(config, channels_last)
    lr = config.lr if config.lr != "auto" else _network_lr_find(model, loader, optimizer, loss_fn, prep, run_id,
                                                                config.strategy.batchnorm_stats)
    for g in optimizer.param_groups:
        g["lr"] = g["initial_lr"] = lr * g.get("lr_scale", 1.0)
    steps = len(loader)
    scheduler = warmup_cosine(optimizer, steps * config.epochs, int(steps * config.warmup_epochs))
    autocast, scaler = _accel(config)
    net = model
    if dist.active():  # gradients are averaged across processes, so every copy stays identical
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    net = torch.compile(net) if config.compile and device.type == "cuda" else net
    state = {"epoch": 0, "best_val_loss": float("inf"), "best": {}, "bad": 0}
    if start_from:  # finetune: the head-only model is the one to beat
        state.update(best_val_loss=start_from["val_loss"],
                     best={"val_loss": start_from["val_loss"], "val_accuracy": start_from["val_accuracy"], "epoch": 0})
    if resume and (folder / "last.pt").exists():
        ckpt = torch.load(folder / "last.pt", map_location=device, weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        state = ckpt["state"]
        _reemit_last_record(run_id, state, rep)
        rep.advance(len(data["labels"][tr]) * 3 * state["epoch"], "Resumed", force=True)
    ips = []
    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        if isinstance(loader.sampler, torch.utils.data.DistributedSampler):
            loader.sampler.set_epoch(epoch)
        per_img = 3
        stats = train_one_epoch(
            net, loader, optimizer, scheduler, loss_fn, prep, should_stop=rep.should_stop, autocast=autocast,
            scaler=scaler, on_step=lambda s: _on_step(rep, s, epoch, config.epochs, per_img, config.batch_size),
            batchnorm_stats=config.strategy.batchnorm_stats)
        pre = config.preprocess
        # validation in fp32 on a CPU, as evaluation and prediction run: the scores agree with theirs; never
        # converted (vision.engine), as the weights change every epoch
        probs = predict_arrays(net, subset(data["images"], va), pre.img_size, pre.mean, pre.std, device,
                               autocast=autocast if device.type == "cuda" else None, channels_last=channels_last,
                               expected=0)
        val = score(probs, data["labels"][va])
        ips.append(stats["images_per_second"])
        state["epoch"] = epoch
        if val["val_loss"] < state["best_val_loss"] - 1e-4:
            state.update(best_val_loss=val["val_loss"], best={**val, "epoch": epoch}, bad=0)
            save_model(model, folder / "model.safetensors", {"run": run_id, "epoch": str(epoch)})
        else:
            state["bad"] += 1
        record = {"kind": "epoch", "stage": config.strategy.last_stage, "epoch": epoch, **stats, **val,
                  "lr": optimizer.param_groups[-1]["lr"]}
        state["last_record"] = record
        _save_last(folder, model, optimizer, scheduler, state)
        rep.metric(record)  # after the checkpoint: a kill in between is mended on resume
        rep.advance(0, f"Epoch {epoch}/{config.epochs} done", force=True, epoch=epoch,
                    epochs=config.epochs, val_accuracy=val["val_accuracy"],
                    images_per_second=stats["images_per_second"])
        if state["bad"] >= config.patience:
            rep.metric({"kind": "early_stop", "epoch": epoch})
            break
    best = state["best"] or {"val_accuracy": float("nan"), "val_loss": float("nan"), "epoch": 0}
    return {"val_accuracy": best["val_accuracy"], "val_loss": best["val_loss"], "best_epoch": best["epoch"],
            "epochs": state["epoch"], "images_per_second": float(np.median(ips)) if ips else 0.0, "lr": lr,
            "imbalance_weighting": weights is not None}


def _reemit_last_record(run_id: str, state: dict, rep) -> None:
    """Log the checkpoint's last epoch if a kill came between saving it and logging it."""
    record = state.get("last_record")
    logged = {(m.get("stage"), m.get("epoch")) for m in runs.read_metrics(run_id) if m.get("kind") == "epoch"}
    if record and (record["stage"], record["epoch"]) not in logged:
        rep.metric(record)


def _on_step(rep, s: dict, epoch: int, epochs: int, per_img: int, batch: int) -> None:
    rep.advance(batch * per_img, f"Epoch {epoch}/{epochs}: {s['images']} images",
                images_per_second=s["images"] / max(s["seconds"], 1e-9), epoch=epoch, epochs=epochs)
    if s["step"] % 5 == 0:
        rep.metric({"kind": "step", "epoch": epoch, "step": s["step"], "loss": s["loss"], "lr": s["lr"]})


def _save_last(folder, model, optimizer, scheduler, state: dict) -> None:
    """The resume checkpoint, written whole or not at all (loaded back only with weights_only=True)."""
    if not dist.is_main():
        return
    tmp = folder / ".last.pt.tmp"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "state": state}, tmp)
    os.replace(tmp, folder / "last.pt")
