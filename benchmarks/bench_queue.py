"""Thirty students pressing Train at once on one server: the job line against the same runs one after another.

Each mode gets a fresh server folder holding USERS user workspaces (users/<key>/, as with sign-in), each with
the shapes sample imported and one tiny linear run prepared (EPOCHS epochs at IMG_SIZE px, on the CPU). "All
at once": every run is started through the job system (`imgcls.train.runjobs.start` inside
`workspace.use(user_root)`, as the Train page does) in one burst, and the line serves them. "One after
another": the same runs, each started once the one before has ended. For each run its wait is
started − created from its status file (created: the click; started: its training code began, so process
start and loading PyTorch count); the total is from the first click to the last run's end. While they run,
the job processes are sampled every second: the peak of their resident memory together (waiting launchers,
the running job and its workers), the largest waiting launcher, and the CPU time the launchers used while
waiting. The estimate of its start each waiting job shows on its page is compared with when it did start:
the first one it was shown, and the one shown halfway through its wait. Prints a markdown table and saves every number as JSON.

Usage: python benchmarks/bench_queue.py [--users 30] [--cpu-jobs 1] [--epochs 2] [--img-size 64]
       [--modes queue,serial] [--out bench_queue.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

FINAL = ("done", "failed", "cancelled", "interrupted")
SAMPLE_S = 1.0  # often enough for memory peaks that last seconds, and little load on a 2-core machine


def prepare(server: Path, users: int, epochs: int, img_size: int) -> list[tuple[Path, str]]:
    """USERS workspaces under `server`, each with the shapes sample and one prepared run: (root, run id)."""
    from imgcls.ingest.imports import import_sample
    from imgcls.store import access, workspace
    from imgcls.train.run import TrainConfig, prepare_run

    os.environ["IMGCLS_HOME"] = str(server)
    out = []
    for i in range(users):
        root = access.users_root() / f"student-{i:02d}"
        with workspace.use(root):
            import_sample("shapes")
            out.append((root, prepare_run(TrainConfig("shapes", strategy="linear", epochs=epochs,
                                                      img_size=img_size, device="cpu", workers=0))))
    return out


def status_of(root: Path, run_id: str) -> dict:
    from imgcls.store import runs, workspace

    with workspace.use(root):
        return runs.read_status(run_id)


class Sampler(threading.Thread):
    """Every SAMPLE_S: the job processes' memory, the waiting launchers' CPU time, and each job's outlook."""

    def __init__(self, jobs: list[tuple[Path, str]]):
        super().__init__(daemon=True)
        self.jobs, self.stop_at = jobs, threading.Event()
        self.peak_total_mb = self.peak_launcher_mb = 0.0
        self.wait_cpu: dict[str, float] = {}  # run → CPU seconds its launcher used while waiting
        self.estimates: dict[str, list[tuple[float, float]]] = {}  # run → [(when seen, expected start), …]
        self.began: dict[str, float] = {}  # run → when it was first seen running

    def run(self) -> None:
        while not self.stop_at.is_set():
            total = 0.0
            for root, run_id in self.jobs:
                status = status_of(root, run_id)
                total += self._sample(run_id, status)
            self.peak_total_mb = max(self.peak_total_mb, total)
            time.sleep(SAMPLE_S)

    def _sample(self, run_id: str, status: dict) -> float:
        state, pid = status.get("state"), status.get("pid")
        if state == "running" and run_id not in self.began:
            self.began[run_id] = time.time()
        start = (status.get("wait") or {}).get("start")
        if state == "queued" and start is not None:
            self.estimates.setdefault(run_id, []).append((time.time(), float(start)))
        if state not in ("queued", "running") or not pid:
            return 0.0
        try:
            proc = psutil.Process(int(pid))  # a waiting launcher has no children: only a running job is searched
            family = [proc, *(proc.children(recursive=True) if state == "running" else [])]
            mb = sum(p.memory_info().rss for p in family) / 2**20
            if state == "queued":
                self.peak_launcher_mb = max(self.peak_launcher_mb, mb)
                times = proc.cpu_times()
                self.wait_cpu[run_id] = times.user + times.system
        except psutil.Error:
            return 0.0
        return mb


def wait_all(jobs: list[tuple[Path, str]], timeout_s: float) -> list[dict]:
    """The runs' statuses once every run has ended and its process has exited."""
    from imgcls.jobs import procs

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        statuses = [status_of(root, run_id) for root, run_id in jobs]
        if all(s.get("state") in FINAL and not procs.alive(s.get("pid"), s.get("pid_started")) for s in statuses):
            return statuses
        time.sleep(0.5)
    raise RuntimeError(f"the runs did not all end within {timeout_s:.0f} s")


def run_mode(mode: str, users: int, epochs: int, img_size: int, timeout_s: float) -> dict:
    """Prepare a fresh server, start its runs all at once ('queue') or one after another ('serial')."""
    from imgcls.store import workspace
    from imgcls.train import runjobs

    with tempfile.TemporaryDirectory(prefix=f"bench-queue-{mode}-") as server:
        jobs = prepare(Path(server), users, epochs, img_size)
        sampler = Sampler(jobs)
        sampler.start()
        t0 = time.time()
        if mode == "queue":
            for root, run_id in jobs:  # one burst, as fast as the clicks can come
                with workspace.use(root):
                    runjobs.start(run_id)
            burst_s = time.time() - t0
            statuses = wait_all(jobs, timeout_s)
        else:
            statuses, burst_s = [], 0.0
            for root, run_id in jobs:
                with workspace.use(root):
                    runjobs.start(run_id)
                statuses += wait_all([(root, run_id)], timeout_s)
        sampler.stop_at.set()
        sampler.join()
    return summarize(mode, jobs, statuses, sampler, t0, burst_s)


def summarize(mode, jobs, statuses, sampler: Sampler, t0: float, burst_s: float) -> dict:
    waits = [s["started"] - s["created"] for s in statuses if s.get("started") and s.get("created")]
    spans = [s["finished"] - s["started"] for s in statuses if s.get("finished") and s.get("started")]
    first, halfway = estimate_errors(sampler, {run_id: s for (_, run_id), s in zip(jobs, statuses)})
    return {"mode": mode, "runs": len(statuses), "done": sum(s.get("state") == "done" for s in statuses),
            "median_wait_s": statistics.median(waits) if waits else None, "worst_wait_s": max(waits, default=None),
            "median_run_s": statistics.median(spans) if spans else None,
            "total_wall_s": max(s.get("finished") or t0 for s in statuses) - t0, "burst_s": burst_s,
            "peak_rss_all_jobs_mb": round(sampler.peak_total_mb, 1),
            "peak_rss_waiting_launcher_mb": round(sampler.peak_launcher_mb, 1),
            "launchers_cpu_waiting_s": round(sum(sampler.wait_cpu.values()), 2),
            "estimates_known": len(first),
            "first_estimate_median_abs_error_s": statistics.median(abs(e) for e in first) if first else None,
            "halfway_estimate_median_abs_error_s": statistics.median(abs(e) for e in halfway) if halfway else None,
            "waits_s": waits, "first_estimate_errors_s": first, "halfway_estimate_errors_s": halfway}


def estimate_errors(sampler: Sampler, statuses: dict[str, dict]) -> tuple[list[float], list[float]]:
    """Actual start − expected start, seconds: of each job's first estimate, and of the one it was shown
    halfway through its wait."""
    first, halfway = [], []
    for run_id, seen in sampler.estimates.items():
        began, created = sampler.began.get(run_id), statuses[run_id].get("created")
        if began is None or not created:
            continue
        first.append(began - seen[0][1])
        middle = created + (began - created) / 2
        later = [start for when, start in seen if when >= middle]
        if later:
            halfway.append(began - later[0])
    return first, halfway


def _s(value) -> str:
    return "–" if value is None else f"{value:,.1f} s"


def print_table(results: list[dict], args) -> None:
    print(f"\n{args.users} users, one linear run each ({args.epochs} epochs, {args.img_size} px, shapes sample), "
          f"{args.cpu_jobs} CPU slot(s), {os.cpu_count()} cores:\n")
    print("| started | runs done | median wait | worst wait | median run | total wall | peak RSS, all job "
          "processes | largest waiting launcher | launchers' CPU while waiting | estimate's median error: first, "
          "halfway |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    names = {"queue": "all at once (the line)", "serial": "one after another"}
    for r in results:
        error = f"{_s(r['first_estimate_median_abs_error_s'])}, {_s(r['halfway_estimate_median_abs_error_s'])} " \
            f"({r['estimates_known']} jobs)" if r["estimates_known"] else "–"
        print(f"| {names[r['mode']]} | {r['done']}/{r['runs']} | {_s(r['median_wait_s'])} | {_s(r['worst_wait_s'])} | "
              f"{_s(r['median_run_s'])} | {_s(r['total_wall_s'])} | {r['peak_rss_all_jobs_mb']:,.0f} MB | "
              f"{r['peak_rss_waiting_launcher_mb']:,.0f} MB | {r['launchers_cpu_waiting_s']:.1f} s | {error} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--cpu-jobs", type=int, default=1, help="CPU slots (IMGCLS_CPU_JOBS)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--modes", default="queue,serial", help="queue, serial or both")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one mode may take at most")
    parser.add_argument("--out", type=Path, default=Path("bench_queue.json"), help="where the JSON goes")
    args = parser.parse_args()
    os.environ["IMGCLS_CPU_JOBS"] = str(args.cpu_jobs)
    os.environ["IMGCLS_DEVICES"] = "cpu"  # the line for the CPU, whatever the machine has
    results = []
    for mode in args.modes.split(","):
        results.append(run_mode(mode.strip(), args.users, args.epochs, args.img_size, args.timeout))
        print(f"{mode}: {json.dumps({k: v for k, v in results[-1].items() if not k.endswith('errors_s')})}",
              file=sys.stderr, flush=True)
    print_table(results, args)
    args.out.write_text(json.dumps({"settings": vars(args) | {"out": str(args.out), "cores": os.cpu_count()},
                                    "results": results}, indent=2))
    print(f"\nSaved to {args.out}")


if __name__ == "__main__":
    main()
