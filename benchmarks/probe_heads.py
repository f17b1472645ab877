"""What a `linear` run's accuracy depends on: the feature resolution, flip-averaged features, the head.

For each image size: the backbone features of every image through the app's own path (decoded squares, the
feature cache), then the app's last-layer training (`heads._train_head`: AdamW, label smoothing, early stopping
on validation loss) over seeds, scored on the validation images; beside it the same head on features averaged
over the image and its mirror image (which a predictor would have to repeat); a logistic probe's 5-fold
accuracy on the training images alone, which never sees the validation split; and a logistic regression whose
strength is chosen by that 5-fold accuracy, scored on validation (a tuned head, deterministic).
With --headroom, the Train page's check before a finetune run (imgcls.train.headroom) on each dataset.

Usage: python benchmarks/probe_heads.py [--zip ../shared/datasets/hymenoptera.zip] [--sizes 224 256 288 320]
       [--seeds 0 1 2] [--headroom sample:digits]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_ZIP = ROOT.parent / "shared" / "datasets" / "hymenoptera.zip"


class _Quiet:
    """The run reporter's interface, recording nothing."""

    def should_stop(self):
        return False

    def metric(self, record):
        pass

    def advance(self, *args, **kwargs):
        pass


class _Mirrored:
    """A view of decoded squares, each mirrored left to right."""

    def __init__(self, view):
        self.view = view

    def __len__(self):
        return len(self.view)

    def __getitem__(self, index):
        return np.ascontiguousarray(np.asarray(self.view[index])[:, :, ::-1])


def import_into(home: str, source: str, name: str) -> None:
    subprocess.run([sys.executable, "-m", "imgcls", "import", source, "--name", name, "--json"], check=True,
                   capture_output=True, cwd=ROOT, env=dict(os.environ, IMGCLS_HOME=home))


def head_accuracy(x_tr, y_tr, x_va, y_va, classes: int, seed: int) -> float:
    import torch

    from imgcls.train.config import RunConfig
    from imgcls.train.heads import _train_head, class_weights
    from imgcls.train.strategies import LINEAR

    config = RunConfig(seed=seed, strategy_name="linear", patience=LINEAR.defaults.patience)
    torch.manual_seed(seed)
    head = torch.nn.Linear(x_tr.shape[1], classes)
    loss_fn = torch.nn.CrossEntropyLoss(weight=class_weights(y_tr.numpy(), classes),
                                        label_smoothing=config.label_smoothing)
    best = _train_head(head, x_tr, y_tr, x_va, y_va, loss_fn, LINEAR.defaults.lr, LINEAR.defaults.epochs, config,
                       _Quiet())
    head.load_state_dict(best["state"])
    with torch.no_grad():
        return float((head(x_va).argmax(1).numpy() == y_va).mean())


def tuned_logistic(x_tr, y_tr, x_va, y_va) -> tuple[float, float]:
    """A logistic regression whose strength is chosen by 5-fold accuracy on the training images: (C, val accuracy)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    scores = {c: cross_val_score(LogisticRegression(C=c, max_iter=3000), x_tr, y_tr, cv=folds).mean()
              for c in (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)}
    best = max(scores, key=scores.get)
    return best, float((LogisticRegression(C=best, max_iter=3000).fit(x_tr, y_tr).predict(x_va) == y_va).mean())


def sizes_table(name: str, sizes: list[int], seeds: list[int]) -> list[dict]:
    import torch

    from imgcls.store import workspace
    from imgcls.train.headroom import probe_accuracy
    from imgcls.vision.models import create_model
    from imgcls.vision.preprocess import Preprocess

    df = workspace.read_manifest(name)
    df = df[df["split"].isin(["train", "val"]) & ~df["excluded"]].sort_values("path").reset_index(drop=True)
    classes = sorted(df["label"].unique())
    labels = df["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    tr, va = (df["split"] == "train").to_numpy(), (df["split"] == "val").to_numpy()
    model = create_model("efficientnet_lite0", len(classes), pretrained=True)
    rows = []
    for size in sizes:
        pre = Preprocess.for_backbone("efficientnet_lite0", size)
        started = time.perf_counter()
        images = pre.load_images(workspace.dataset_dir(name), df["path"].tolist(), df["hash"].tolist())
        plain = pre.extract(model, images, df["hash"].tolist())
        seconds = time.perf_counter() - started
        mirrored = pre.extract(model, _Mirrored(images), df["hash"].tolist(), extra={"mirrored": True})
        y = torch.from_numpy(labels.copy()).long()
        for kind, feats in (("plain", plain), ("flip-averaged", (plain + mirrored) / 2)):
            x = torch.from_numpy(np.ascontiguousarray(feats))
            accs = [head_accuracy(x[tr], y[tr], x[va], labels[va], len(classes), s) for s in seeds]
            c, logistic = tuned_logistic(feats[tr], labels[tr], feats[va], labels[va])
            rows.append({"size": size, "features": kind, "val": accs, "median": statistics.median(accs),
                         "cv_train": probe_accuracy(feats[tr], labels[tr]), "logistic": logistic, "C": c,
                         "features_s": seconds})
            print(f"{size} px {kind:>13}: val {[round(a, 4) for a in accs]} median {rows[-1]['median']:.4f}, "
                  f"5-fold on train {rows[-1]['cv_train']:.4f}, tuned logistic {logistic:.4f} (C {c}); "
                  f"features {seconds:.1f} s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zip", type=Path, default=DEFAULT_ZIP)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 256, 288, 320])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--headroom", nargs="*", default=None, metavar="SOURCE",
                        help="also run the finetune check on the zip's dataset and on these sources")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ["IMGCLS_HOME"] = home
        import_into(home, str(args.zip), "bench")
        rows = sizes_table("bench", args.sizes, args.seeds)
        print("\n| size | features | val accuracy, seeds | median | logistic probe, 5-fold on train | "
              "tuned logistic, val |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['size']} | {r['features']} | {', '.join(f'{a:.3f}' for a in r['val'])} | "
                  f"{r['median']:.3f} | {r['cv_train']:.3f} | {r['logistic']:.3f} (C {r['C']:g}) |")
        if args.headroom is not None:
            from imgcls.train import headroom
            from imgcls.train.strategies import FINETUNE

            sources = [("bench", None)] + [(f"h{i}", s) for i, s in enumerate(args.headroom)]
            print("\n| dataset | top | stages below, nearest first | expects | seconds |\n|---|---|---|---|---|")
            for name, source in sources:
                if source:
                    import_into(home, source, name)
                found = headroom.measure(name, "efficientnet_lite0", FINETUNE.defaults.img_size)
                print(f"| {source or args.zip.name} | {found['top']:.3f} | "
                      f"{', '.join(f'{b:.3f}' for b in found['below'])} | {found['verdict']} | {found['seconds']:.1f} |")


if __name__ == "__main__":
    main()
