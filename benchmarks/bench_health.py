"""Health-check benchmark: the CLI on hymenoptera.zip from a cold and a warm cache, and near-duplicate
search on 10,000 random embeddings; medians of several runs.

With --sizes, the check's findings at each embedding size instead, on hymenoptera with planted faults whose
truth is known (one planting per seed): label flips, exact and near copies, leaks across splits, copies under
a second label, and photos of other things filed as ants or bees; recall and precision of each, and time.

Usage: python benchmarks/bench_health.py [ZIP] [--runs N] [--search-n 10000]
       python benchmarks/bench_health.py [ZIP] --sizes 224 256 [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ZIP = ROOT.parent / "shared" / "datasets" / "hymenoptera.zip"
sys.path.insert(0, str(ROOT))


def cli(home: str, *args) -> tuple[float, dict]:
    """Time one `python -m imgcls … --json`; returns (seconds, its JSON)."""
    env = dict(os.environ, IMGCLS_HOME=home)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "imgcls", *args, "--json"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True)
    return time.perf_counter() - start, json.loads(out.stdout.strip().splitlines()[-1])


def health_runs(zip_path: Path, runs: int) -> dict:
    """CLI wall time and engine time of `health`, cold (no cache) and warm (features cached)."""
    out = {"cold": [], "cold_engine": [], "warm": [], "warm_engine": []}
    with tempfile.TemporaryDirectory() as home:
        cli(home, "import", str(zip_path), "--name", "hym")
        report = {}
        for _ in range(runs):
            shutil.rmtree(Path(home) / "cache", ignore_errors=True)  # decoded images and features
            seconds, report = cli(home, "health", "hym")
            out["cold"].append(seconds)
            out["cold_engine"].append(report["seconds"])
        for _ in range(runs):
            seconds, report = cli(home, "health", "hym")
            out["warm"].append(seconds)
            out["warm_engine"].append(report["seconds"])
    out["report"] = report
    return out


def search_runs(n: int, runs: int, dim: int = 1280) -> tuple[list[float], int]:
    """Near-duplicate search on n random embeddings (with 50 planted near copies)."""
    from imgcls.health import similarity

    rng = np.random.default_rng(0)
    emb = rng.normal(size=(n, dim)).astype(np.float32)
    hashes = rng.integers(0, 2**63, size=(n, 4), dtype=np.int64).astype(np.uint64)
    emb[-50:] = emb[:50] + 0.1 * rng.normal(size=(50, dim)).astype(np.float32)  # cosine about 0.995
    hashes[-50:] = hashes[:50]
    times, found = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        found = len(similarity.near_pairs(emb, hashes))
        times.append(time.perf_counter() - start)
    return times, found


# --- findings at several embedding sizes, on planted faults -------------------------------------------

FLIP_SHARE = 0.10
FOREIGN = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
           "colorwheel")  # scikit-image's sample photos: nothing like an ant or a bee


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from faults import NEAR_COPIES, encode as _encode  # noqa: E402 - the planted faults the health tests use too


def plant(name: str, seed: int) -> dict:
    """Plant faults in an imported dataset's manifest (import would drop copies); returns the truth."""
    import pandas as pd
    from PIL import Image
    from skimage import data as skdata

    from imgcls.store import workspace

    rng = np.random.default_rng(seed)
    folder = workspace.dataset_dir(name)
    df = workspace.read_manifest(name)
    classes = sorted(df["label"].unique())
    new: list[dict] = []

    def add(blob: bytes, like, tag: str, **changes) -> str:
        digest = hashlib.sha256(blob).hexdigest()
        rel = f"images/{tag}-{len(new):03d}-{digest[:12]}.{'jpg' if blob[:2] == bytes([0xFF, 0xD8]) else 'png'}"
        (folder / rel).write_bytes(blob)
        img = Image.open(io.BytesIO(blob))
        new.append(dict(like.to_dict(), path=rel, hash=digest, width=img.width, height=img.height, bytes=len(blob),
                        source=f"planted/{tag}", format=img.format, **changes))
        return rel

    def image(path: str):
        return Image.open(folder / path).convert("RGB")

    order = rng.permutation(len(df))
    n_flip = int(FLIP_SHARE * len(df))
    flips, rest = order[:n_flip], iter(order[n_flip:])
    truth = {"flipped": set(df.loc[flips, "path"]), "exact": [], "near": [], "leak": [], "conflict": [],
             "foreign": set()}
    for i in flips:
        df.loc[i, "label"] = next(c for c in classes if c != df.loc[i, "label"])
    for _ in range(5):
        row = df.loc[next(rest)]
        truth["exact"].append((row["path"], add((folder / row["path"]).read_bytes(), row, "exact")))
    for (tag, make), _ in itertools.product(NEAR_COPIES.items(), range(4)):
        row = df.loc[next(rest)]
        truth["near"].append((row["path"], add(make(image(row["path"])), row, tag)))
    for k in range(6):  # training images copied into val, exactly or re-saved
        row = df.loc[next(i for i in rest if df.loc[i, "split"] == "train")]
        blob = (folder / row["path"]).read_bytes() if k < 3 else _encode(image(row["path"]), "JPEG", quality=95)
        truth["leak"].append((row["path"], add(blob, row, "leak", split="val")))
    for _ in range(3):
        row = df.loc[next(rest)]
        other = next(c for c in classes if c != row["label"])
        truth["conflict"].append((row["path"], add((folder / row["path"]).read_bytes(), row, "conflict", label=other)))
    like = df[df["split"] == "train"].iloc[0]
    for k, photo in enumerate(FOREIGN):
        img = Image.fromarray(getattr(skdata, photo)()[..., :3])
        truth["foreign"].add(add(_encode(img, "JPEG", quality=90), like, "foreign", label=classes[k % len(classes)]))
    workspace.write_manifest(folder, pd.concat([df, pd.DataFrame(new)], ignore_index=True))
    return truth


def _finding(report: dict, kind: str) -> dict:
    return next((f for f in report["findings"] if f["kind"] == kind), {"images": [], "groups": []})


def _pairs(groups) -> set[frozenset]:
    return {frozenset(p) for g in groups for p in itertools.combinations(g, 2)}


def quality(report: dict, truth: dict) -> dict:
    """Recall and precision of each planted fault among the report's findings."""
    out = {"score": report["score"]}
    ranked = _finding(report, "label_error")["images"]
    wrong = truth["flipped"] | {copy for _, copy in truth["conflict"]}
    hit = len(set(ranked) & wrong)
    top = set(ranked[:int(0.15 * report["images_checked"])])
    out |= {"label_flagged": len(ranked), "label_precision": hit / max(len(ranked), 1),
            "label_recall": len(set(ranked) & truth["flipped"]) / len(truth["flipped"]),
            "label_top15_recall": len(top & truth["flipped"]) / len(truth["flipped"])}
    for kind, keys in (("exact_duplicate", ("exact", "conflict")), ("near_duplicate", ("near",)),
                       ("leakage", ("leak",)), ("conflicting_labels", ("conflict",))):
        found = _pairs(_finding(report, kind)["groups"])
        wanted = {frozenset(p) for key in keys for p in truth[key]}
        out[f"{kind}_recall"] = len(found & wanted) / len(wanted)
        out[f"{kind}_extra_pairs"] = len(found - wanted)
    outliers = set(_finding(report, "outlier")["images"])
    out |= {"foreign_recall": len(outliers & truth["foreign"]) / len(truth["foreign"]),
            "outliers_flagged": len(outliers)}
    return out


def ranking(name: str, size: int | None, truth: dict) -> dict:
    """Threshold-free: how well the label check's quality score ranks the flipped images, over every image
    (recall among the lowest-quality k = number flipped, and ROC AUC), from the features the check cached."""
    from sklearn.metrics import roc_auc_score

    from imgcls.health import labelerrors, scan as healthscan
    from imgcls.store import workspace
    from imgcls.vision import features

    df = workspace.read_manifest(name)
    df = df[~df["excluded"]].reset_index(drop=True)
    emb = features.cached(healthscan.preprocess(size).feature_key(), df["hash"].tolist())
    quality = labelerrors.rank(df["label"].astype(str).tolist(), emb)["quality"]
    conflicted = {p for pair in truth["conflict"] for p in pair}  # one of each pair is wrong: left out
    keep = [i for i in sorted(quality) if df.at[i, "path"] not in conflicted]
    flipped = np.array([df.at[i, "path"] in truth["flipped"] for i in keep])
    doubt = np.array([1 - quality[i] for i in keep])
    top = np.argsort(-doubt, kind="stable")[:int(flipped.sum())]
    return {"label_rank_recall_at_k": float(flipped[top].mean()),
            "label_rank_auc": float(roc_auc_score(flipped, doubt))}


def check_at(home: str, name: str, size: int | None) -> tuple[float, dict]:
    """One health check in a fresh process, embedding at `size` (the same engine call as the CLI's)."""
    code = ("import json, sys; from imgcls.health import check as health; "
            f"r = health.check({name!r}, img_size={size!r}); print(json.dumps(r))")
    env = dict(os.environ, IMGCLS_HOME=home)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, json.loads(out.stdout.strip().splitlines()[-1])


def size_runs(zip_path: Path, sizes: list[int], seeds: list[int]) -> dict:
    """Per size: planted-fault quality (one planting per seed) and cold/warm times."""
    rows = {size: [] for size in sizes}
    for seed in seeds:
        with tempfile.TemporaryDirectory() as home:
            cli(home, "import", str(zip_path), "--name", "hym")
            os.environ["IMGCLS_HOME"] = home
            truth = plant("hym", seed)
            # each from a cold cache, then once warm; the order alternates so a busy machine favours neither
            for size in sizes if seed % 2 == 0 else sizes[::-1]:
                shutil.rmtree(Path(home) / "cache", ignore_errors=True)
                cold, report = check_at(home, "hym", size)
                warm, warm_report = check_at(home, "hym", size)
                rows[size].append(quality(report, truth) | ranking("hym", size, truth) | {
                    "seed": seed, "cold_s": cold, "cold_engine_s": report["seconds"], "warm_s": warm,
                    "warm_engine_s": warm_report["seconds"], "images": report["images_checked"]})
                print(json.dumps({"size": size, **rows[size][-1]}), flush=True)
    return rows


def _seconds(v: float) -> str:
    return f"{v:.1f} s"


def _number(v) -> str:
    return f"{v:.2f}" if isinstance(v, float) else f"{v}"


def print_sizes(rows: dict) -> None:
    med = statistics.median
    sizes = list(rows)
    metrics = [k for k in rows[sizes[0]][0] if k not in ("seed", "images")]
    print(f"\n| median of {len(rows[sizes[0]])} plantings ({os.cpu_count()} CPU cores) | "
          + " | ".join(f"{s} px" for s in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for k in metrics:
        cells = []
        for s in sizes:
            values = [r[k] for r in rows[s]]
            fmt = _seconds if k.endswith("_s") else _number
            cells.append(f"{fmt(med(values))} ({', '.join(fmt(v) for v in values)})")
        print(f"| {k} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("zip", nargs="?", default=str(DEFAULT_ZIP))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--search-n", type=int, default=10_000)
    parser.add_argument("--sizes", nargs="+", type=int, help="compare the findings at these embedding sizes")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="plantings, with --sizes")
    args = parser.parse_args()
    if args.sizes:
        print_sizes(size_runs(Path(args.zip), args.sizes, args.seeds))
        return
    h = health_runs(Path(args.zip), args.runs)
    search, found = search_runs(args.search_n, args.runs)
    report = h["report"]
    med = statistics.median
    print(f"hymenoptera: {report['images_checked']} images, score {report['score']}, findings "
          + ", ".join(f"{f['kind']} {len(f['images'])}" for f in report["findings"]))
    print(f"| step ({args.runs} runs, {os.cpu_count()} CPU cores) | median | min | max | target |")
    print("|---|---|---|---|---|")
    rows = [("`health` CLI, cold cache (decode + embed)", h["cold"], "≤ 30 s"),
            ("… engine time, cold", h["cold_engine"], ""),
            ("`health` CLI, features cached", h["warm"], "≤ 5 s"),
            ("… engine time, cached", h["warm_engine"], ""),
            (f"near-duplicate search, {args.search_n:,} × 1280 ({found} pairs)", search, "≤ 60 s")]
    for name, values, target in rows:
        print(f"| {name} | {med(values):.2f} s | {min(values):.2f} s | {max(values):.2f} s | {target} |")


if __name__ == "__main__":
    main()
