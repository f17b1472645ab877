"""The peers benchmark's bookkeeping on made-up runs: time to target, medians, ratios against fastai, the goal."""

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_peers  # noqa: E402
from bench_scale import _sample_tree  # noqa: E402


def step(rss: int, once: int, own: int = 100, seconds: float = 1.0) -> dict:
    return {"tree_rss_mb": rss, "tree_shared_once_mb": once, "rss_mb": own, "seconds": seconds}


def fake(system: str, seed: int, acc: float, wall: float, rss: int, reached: float | None = None) -> dict:
    return {"system": system, "seed": seed, "val_accuracy": acc, "wall_s": wall, "time_to_target_s": reached,
            "tree_rss_mb": rss, "tree_shared_once_mb": rss // 2, "main_rss_mb": rss, "history": []}


def test_record_times_epochs_from_the_start_and_finds_the_first_epoch_at_target():
    start = time.time() - 50
    history = [{"epoch": 1, "val_accuracy": 0.90, "time": start + 10},
               {"epoch": 2, "val_accuracy": 0.93, "time": start + 20},  # at the target counts
               {"epoch": 3, "val_accuracy": 0.95, "time": start + 30}]
    rec = bench_peers.record("x", 0, start, [step(800, 500, seconds=4), step(1200, 700, 900, 45.5)], 0.95, history,
                             0.93)
    assert rec["history"][1] == {"epoch": 2, "val_accuracy": 0.93, "t_s": 20}
    assert rec["time_to_target_s"] == 20
    assert rec["tree_rss_mb"] == 1200 and rec["tree_shared_once_mb"] == 700 and rec["main_rss_mb"] == 900
    assert rec["wall_s"] == 49.5  # the processes' own time, import and training together
    assert "time" in history[0]  # the caller's records are left as they were
    missed = bench_peers.record("x", 0, start, [step(1, 1)], 0.9, history[:1], 0.93)
    assert missed["time_to_target_s"] is None


def test_summary_takes_medians_and_time_to_target_over_the_runs_that_reached_it():
    runs = [fake("a", 0, 0.90, 10, 100, None), fake("a", 1, 0.94, 30, 300, 25), fake("a", 2, 0.92, 20, 200, 15)]
    s = bench_peers.summary(runs)["a"]
    assert (s["val_accuracy"], s["wall_s"], s["tree_rss_mb"]) == (0.92, 20, 200)
    assert (s["reached"], s["runs"], s["time_to_target_s"]) == (2, 3, 20)
    out = bench_peers.table(runs, 0.93)
    assert "| a | 0.920 (0.900–0.940) | 20 s (10–30 s) | 20 s (15–25 s) (2 of 3 runs) |" in out


def test_ratios_are_against_the_most_accurate_fastai_and_say_which_goal_is_missed():
    runs = [fake("fastai-1", 0, 0.93, 300, 6000, 280), fake("fastai-3", 0, 0.95, 600, 6200, 280),
            fake("imgcls-linear", 0, 0.95, 60, 1000, 20), fake("imgcls-finetune", 0, 0.96, 300, 2000, 20)]
    out = bench_peers.ratios(runs, 0.93)
    assert "Against fastai-3" in out
    rows = {line.split(" | ")[0].strip("| "): line for line in out.splitlines() if line.startswith("| imgcls-")}
    assert rows["imgcls-linear"].startswith(f"| imgcls-linear | +0.000 | 0.10 | {20 / 280:.2f} | {1000 / 6200:.2f} |")
    assert rows["imgcls-linear"].endswith("| met |")
    assert rows["imgcls-finetune"].endswith("| not met: time |")  # 300/600 is more than a third
    worse = bench_peers.ratios([runs[1], fake("imgcls-linear", 0, 0.94, 600, 6200)], 0.93)
    assert worse.rstrip().endswith("| not met: accuracy, time, memory |")
    assert bench_peers.ratios(runs[2:], 0.93) == "No fastai runs: no ratios."


def test_epoch_watch_times_epoch_records_as_they_appear(tmp_path):
    folder = tmp_path / "runs" / "r1"
    folder.mkdir(parents=True)
    lines = [{"kind": "features", "images": 3}, {"kind": "epoch", "stage": "head", "epoch": 1, "val_accuracy": 0.5}]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"kind": "ep')
    watch = bench_peers.EpochWatch(tmp_path)
    before = time.time()
    watch.start()
    watch.poll()
    with open(folder / "metrics.jsonl", "a") as fh:  # the torn line completed, and one more epoch
        fh.write('och", "stage": "head", "epoch": 2, "val_accuracy": 0.75}\n')
    seen = watch.stop()
    assert [(r["epoch"], r["val_accuracy"]) for r in seen] == [(1, 0.5), (2, 0.75)]
    assert before <= seen[0]["time"] <= seen[1]["time"]


def test_unknown_systems_are_refused_and_quick_keeps_one_seed():
    with pytest.raises(SystemExit):
        bench_peers.parse_args(["--systems", "keras"])
    quick = bench_peers.parse_args(["--quick"])
    assert quick.seeds == [0] and "fastai-3" not in quick.systems and quick.reference_epochs == 1


FORKS = ("import os, time; x = b'\\1' * (200 * 2**20); pid = os.fork(); time.sleep(1.5); "
         "os._exit(0) if pid == 0 else os.waitpid(pid, 0); print('{}')")  # 200 MB written, then shared by a fork


def test_tree_memory_counts_a_forked_childs_shared_pages_twice_in_rss_and_once_otherwise():
    proc = subprocess.Popen([sys.executable, "-c", FORKS])
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.time() + 10
        while not parent.children() and time.time() < deadline:
            time.sleep(0.05)
        tree = {}
        _sample_tree([parent, *parent.children()], tree)
    finally:
        proc.wait()
    assert tree["rss"] >= 400 * 2**20
    assert 200 * 2**20 <= tree["once"] < 260 * 2**20


def test_run_step_reports_the_tree_beside_its_own_peak(tmp_path):
    # measured from a fresh interpreter: Linux hands a child its parent's peak RSS at fork (ru_maxrss survives
    # exec), so from a test process grown large the step's own peak would read as the test's
    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    script = (f"import json, sys; sys.path.insert(0, {str(bench)!r}); from bench_scale import run_step; "
              f"from pathlib import Path; t = Path({str(tmp_path)!r}); "
              f"print(json.dumps(run_step([sys.executable, '-c', {FORKS!r}], t, t / 'fork.log', tree=True)))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["rss_mb"] < 300 <= 400 <= got["tree_rss_mb"]
    assert got["rss_mb"] <= got["tree_shared_once_mb"] < got["rss_mb"] + 60
