"""Training benchmark on hymenoptera.zip: every strategy against a plain reference recipe, one run.

For each strategy and seed: a fresh workspace, `python -m imgcls import` then `python -m imgcls train`,
timed from the start of the import to the end of the run (nothing cached). The reference is the PyTorch
transfer-learning tutorial's recipe on the same backbone and weights: torchvision ImageFolder,
RandomResizedCrop + flip, SGD(lr=0.001, momentum=0.9), StepLR(7, 0.1), batch 4, every JPEG decoded
every epoch; it records when validation accuracy first reaches the target.
Usage: python benchmarks/bench_train.py [--strategies linear finetune] [--seeds 0 1 2]
       [--reference-epochs 10] [--target 0.93]

With --health-sizes, a health check (embedding at each size given) and then a default linear run in one
fresh workspace instead, each timed: whether the run finds the check's decoded images and features.
       python benchmarks/bench_train.py --health-sizes 224 256 [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_ZIP = ROOT.parent / "shared" / "datasets" / "hymenoptera.zip"


def ours(zip_path: Path, strategy: str, seed: int, extra: list[str]) -> dict:
    """Import + train in a fresh workspace with the CLI; wall time of both."""
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, IMGCLS_HOME=home)
        cli = [sys.executable, "-m", "imgcls"]
        start = time.perf_counter()
        subprocess.run(cli + ["import", str(zip_path), "--name", "hym", "--json"], env=env, cwd=ROOT,
                       check=True, capture_output=True)
        out = subprocess.run(cli + ["train", "--dataset", "hym", "--strategy", strategy, "--seed", str(seed),
                                    "--json", *extra], env=env, cwd=ROOT, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - start
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {"strategy": strategy, "seed": seed, "val_accuracy": result["val_accuracy"], "wall_s": wall,
            "epochs": result["epochs"]}


def health_then_train(zip_path: Path, size: int, seed: int) -> dict:
    """Import, a health check embedding at `size`, then a default linear run, in one fresh workspace."""
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, IMGCLS_HOME=home)
        cli = [sys.executable, "-m", "imgcls"]
        subprocess.run(cli + ["import", str(zip_path), "--name", "hym", "--json"], env=env, cwd=ROOT,
                       check=True, capture_output=True)
        check = f"from imgcls.health import check as health; health.check('hym', img_size={size})"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", check], env=env, cwd=ROOT, check=True, capture_output=True)
        health_s = time.perf_counter() - start
        out = subprocess.run(cli + ["train", "--dataset", "hym", "--strategy", "linear", "--seed", str(seed),
                                    "--json"], env=env, cwd=ROOT, check=True, capture_output=True, text=True)
        train_s = time.perf_counter() - start - health_s
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {"health_size": size, "seed": seed, "health_s": health_s, "train_s": train_s,
            "total_s": health_s + train_s, "val_accuracy": result["val_accuracy"]}


def print_health_then_train(rows: list[dict]) -> None:
    med = statistics.median
    print("\n| health check at | health (median) | then linear run (median) | together (median) | runs |")
    print("|---|---|---|---|---|")
    for size in dict.fromkeys(r["health_size"] for r in rows):
        mine = [r for r in rows if r["health_size"] == size]
        print(f"| {size} px | {med(r['health_s'] for r in mine):.1f} s | {med(r['train_s'] for r in mine):.1f} s | "
              f"{med(r['total_s'] for r in mine):.1f} s | "
              + ", ".join(f"{r['health_s']:.0f}+{r['train_s']:.0f}s" for r in mine) + " |")


def reference(zip_path: Path, seed: int, epochs: int, target: float, stop_at_target: bool = True) -> dict:
    """The tutorial's fine-tuning recipe on the same backbone; time until validation reaches target (then it
    stops, unless told to train every epoch, as the tutorial does, keeping the best)."""
    import torch
    from torchvision import datasets, transforms

    from imgcls.vision.models import create_model

    torch.manual_seed(seed)
    norm = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    tfm = {"train": transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(),
                                        transforms.ToTensor(), norm]),
           "val": transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), norm])}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        zipfile.ZipFile(zip_path).extractall(tmp)
        base = next(p for p in Path(tmp).rglob("train") if p.is_dir()).parent
        sets = {s: datasets.ImageFolder(base / s, tfm[s]) for s in ("train", "val")}
        loaders = {s: torch.utils.data.DataLoader(sets[s], batch_size=4, shuffle=s == "train", num_workers=2)
                   for s in sets}
        model = create_model("efficientnet_lite0", len(sets["train"].classes))
        opt = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.1)
        loss_fn = torch.nn.CrossEntropyLoss()
        history, reached = [], None
        for epoch in range(1, epochs + 1):
            model.train()
            for x, y in loaders["train"]:
                opt.zero_grad()
                loss_fn(model(x), y).backward()
                opt.step()
            sched.step()
            model.eval()
            correct = 0
            with torch.no_grad():
                for x, y in loaders["val"]:
                    correct += (model(x).argmax(1) == y).sum().item()
            acc = correct / len(sets["val"])
            history.append({"epoch": epoch, "val_accuracy": acc, "wall_s": time.perf_counter() - start,
                            "time": time.time()})  # the clock another process can compare with
            print(f"  reference epoch {epoch}: {acc:.3f} at {history[-1]['wall_s']:.0f} s", flush=True)
            if acc >= target and reached is None:
                reached = history[-1]["wall_s"]
                if stop_at_target:
                    break
    return {"seed": seed, "best_val_accuracy": max(h["val_accuracy"] for h in history),
            "time_to_target_s": reached, "history": history}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("zip", nargs="?", default=str(DEFAULT_ZIP))
    parser.add_argument("--strategies", nargs="+", default=["linear", "finetune", "full", "scratch"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--scratch-epochs", type=int, default=10)
    parser.add_argument("--reference-epochs", type=int, default=10)
    parser.add_argument("--reference-seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--target", type=float, default=0.93)
    parser.add_argument("--health-sizes", nargs="+", type=int,
                        help="time a health check at each size followed by a default linear run")
    args = parser.parse_args()
    zip_path = Path(args.zip)
    if args.health_sizes:
        rows = []
        for seed in args.seeds:  # sizes in turn within each seed: a busy machine slows them alike
            for size in args.health_sizes if seed % 2 == 0 else args.health_sizes[::-1]:
                rows.append(health_then_train(zip_path, size, seed))
                print(json.dumps(rows[-1]), flush=True)
        print_health_then_train(rows)
        return
    # the reference first: the ratio needs it even if a long strategy is cut short (--reference-epochs 0: none)
    refs = [reference(zip_path, s, args.reference_epochs, args.target) for s in args.reference_seeds
            if args.reference_epochs > 0]
    rows = []
    for strategy in args.strategies:
        extra = ["--epochs", str(args.scratch_epochs)] if strategy == "scratch" else []
        for seed in args.seeds:
            rows.append(ours(zip_path, strategy, seed, extra))
            print(json.dumps(rows[-1]), flush=True)
    print("\n| strategy | val accuracy (median of seeds) | wall time import→done (median) | runs |")
    print("|---|---|---|---|")
    for strategy in args.strategies:
        mine = [r for r in rows if r["strategy"] == strategy]
        print(f"| {strategy} | {statistics.median(r['val_accuracy'] for r in mine):.3f} | "
              f"{statistics.median(r['wall_s'] for r in mine):.0f} s | "
              + ", ".join(f"{r['val_accuracy']:.3f}/{r['wall_s']:.0f}s" for r in mine) + " |")
    for ref in refs:
        when = f"{ref['time_to_target_s']:.0f} s" if ref["time_to_target_s"] else f"not within {args.reference_epochs} epochs"
        print(f"| reference recipe (seed {ref['seed']}) | best {ref['best_val_accuracy']:.3f} | "
              f"to {args.target}: {when} | {len(ref['history'])} epochs |")
    ours_to_target = [r["wall_s"] for r in rows if r["val_accuracy"] >= args.target]
    ref_times = [r["time_to_target_s"] for r in refs if r["time_to_target_s"]]
    if ours_to_target and ref_times:
        ratio = statistics.median(ref_times) / min(ours_to_target)
        print(f"\nTime to {args.target}: ours {min(ours_to_target):.0f} s (fastest run reaching it), "
              f"reference {statistics.median(ref_times):.0f} s: {ratio:.1f}x faster")


if __name__ == "__main__":
    main()
