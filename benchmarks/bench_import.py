"""Import benchmark: the CLI on hymenoptera.zip, end to end, median of several runs.

Usage: python benchmarks/bench_import.py [ZIP] [--runs N]
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ZIP = ROOT.parent / "shared" / "datasets" / "hymenoptera.zip"


def run_once(zip_path: Path) -> tuple[float, dict]:
    """Time one `python -m imgcls import … --json` in a fresh workspace."""
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, IMGCLS_HOME=home)
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "imgcls", "import", str(zip_path), "--name", "hym", "--json"],
                             cwd=ROOT, env=env, capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - start
    return seconds, json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("zip", nargs="?", default=str(DEFAULT_ZIP))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    times, report = [], {}
    for _ in range(args.runs):
        seconds, report = run_once(Path(args.zip))
        times.append(seconds)
    print(f"images={report['images']} classes={report['classes']} splits={report['splits']} "
          f"skipped={report['skipped']}")
    print(f"CLI wall time over {args.runs} runs: median {statistics.median(times):.2f} s, "
          f"min {min(times):.2f} s, max {max(times):.2f} s; engine time (last run) {report['seconds']:.2f} s")


if __name__ == "__main__":
    main()
