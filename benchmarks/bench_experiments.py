"""Wall time of each quick Learn-lab experiment on the shapes sample, from a cold feature cache and warm.

Each kind runs in a fresh process (as the page's background job does: imports and model loading
count) twice: first with the feature cache emptied ("cold", decoded images kept), then again ("warm").
The target is under 2 minutes each, cold, on a 2-core CPU. On a shared machine the wall time depends on
the other load, so the CPU seconds the process used are printed too: on two idle cores the wall time
lies between half of them (all work on both cores) and all of them. Prints a markdown table.
Usage: python benchmarks/bench_experiments.py [--kinds transfer,augmentation,…] [--home DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KINDS = ("transfer", "augmentation", "data-size", "variability", "label-noise")


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_run(kind: str, home: Path) -> tuple[float, float]:
    """(wall seconds of the whole command, CPU seconds it used)."""
    env = dict(os.environ, IMGCLS_HOME=str(home), PYTHONPATH=str(ROOT))
    start, cpu = time.perf_counter(), _child_cpu()
    proc = subprocess.run([sys.executable, "-m", "imgcls", "experiment", kind, "--dataset", "shapes", "--json"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed: {proc.stderr.strip()[-500:]}")
    json.loads(proc.stdout.strip().splitlines()[-1])  # a result came back
    return wall, _child_cpu() - cpu


def main() -> None:
    """Time every kind cold and warm; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--home", help="workspace to use (default: a temporary one)")
    args = parser.parse_args()
    home = Path(args.home or tempfile.mkdtemp(prefix="bench-exp-"))
    os.environ["IMGCLS_HOME"] = str(home)
    from imgcls.ingest import imports as data
    from imgcls.store import workspace

    if "shapes" not in workspace.list_datasets():
        data.import_sample("shapes", "shapes")
    rows = []
    for kind in args.kinds.split(","):
        shutil.rmtree(home / "cache" / "features", ignore_errors=True)
        cold = timed_run(kind, home)
        warm = timed_run(kind, home)
        rows.append((kind, *cold, *warm))
        print(f"{kind}: cold {cold[0]:.1f} s, warm {warm[0]:.1f} s", file=sys.stderr, flush=True)
    print(f"\nshapes, quick mode, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n")
    print("| experiment | cold: wall (s) | cold: CPU (s) | warm: wall (s) | warm: CPU (s) |")
    print("|---|---:|---:|---:|---:|")
    for kind, cw, ce, ww, we in rows:
        print(f"| {kind} | {cw:.1f} | {ce:.1f} | {ww:.1f} | {we:.1f} |")


if __name__ == "__main__":
    main()
