"""Health-check benchmark: the CLI on hymenoptera.zip from a cold and a warm cache, and near-duplicate
search on 10,000 random embeddings; medians of several runs.

Usage: python benchmarks/bench_health.py [ZIP] [--runs N] [--search-n 10000]
"""

from __future__ import annotations

import argparse
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
    from imgcls import similarity

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("zip", nargs="?", default=str(DEFAULT_ZIP))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--search-n", type=int, default=10_000)
    args = parser.parse_args()
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
