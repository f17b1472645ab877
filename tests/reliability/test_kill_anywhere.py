"""Kill -9 anywhere: a worker is killed at random moments during imports, edits, undo/redo and training,
and after each kill the workspace must open consistent, with nothing acknowledged lost.

Trials are cheap: imgcls and pandas are imported once here and each trial forks a worker (torch is never
imported in this process). The worker's seeded operations and the kill delays come from one fixed seed;
a failure prints the seed, the invariants broken and the schedule of the trials that broke them.
Replay with KILL_SEED=<seed> (and KILL_TRIALS=<n>); KILL_REPORT=<file> writes the counts as JSON.
Training is killed in a few real `python -m imgcls train` processes, each resumed after its kill.
"""

from __future__ import annotations

import collections
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imgcls.ingest import imports as data
from imgcls.store import journal, runs, workspace
from imgcls.ingest.sources import list_memory

try:
    from . import kill_helpers as kh
except ImportError:  # collected as a plain folder of tests, not as a package
    import kill_helpers as kh

SEED = int(os.environ.get("KILL_SEED", "1301"))
TRIALS = int(os.environ.get("KILL_TRIALS", "200"))
MAX_DELAY_MS = 300
EPOCH = 10  # trials on one workspace (each going on from the last one's state) before a fresh copy
TRAIN_KILLS = int(os.environ.get("KILL_TRAIN_KILLS", "3"))
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pool():
    """A few hundred distinct tiny PNGs, made once for the module."""
    return kh.make_pool()


@pytest.fixture(scope="module")
def template(pool, tmp_path_factory):
    """A workspace holding the main dataset of 150 pool images, copied afresh for each run of trials."""
    home = tmp_path_factory.mktemp("kill-template")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMGCLS_HOME", str(home))
        kh.import_pictures(pool, range(kh.TEMPLATE_SIZE), kh.MAIN, "template", add=False)
    return home


def open_workspace() -> str | None:
    """Open the workspace as the app does after a restart (remove what interrupted imports left, bring each
    manifest up to its journal); a sentence when that fails."""
    try:
        data.clean_leftovers()
        for name in workspace.list_datasets():
            journal.recover(name)
            journal.pending(name)
    except Exception as exc:  # noqa: BLE001 - whatever stops the workspace opening is the finding
        return f"{type(exc).__name__}: {exc}"
    return None


def fresh(template: Path, home: Path, pool) -> kh.Known:
    """Replace the trial workspace by a copy of the template; what it holds."""
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(template, home)
    return kh.Known(rows={kh.MAIN: kh.imported_rows(pool, range(kh.TEMPLATE_SIZE), {})}, history=[])


def one_trial(trial: int, delay: float, known: kh.Known, pool, logs: Path) -> dict:
    """Fork a worker, SIGKILL it after `delay` seconds, open the workspace and check every invariant."""
    log = logs / f"trial-{trial}.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    unused = known.unused(pool)
    pid = os.fork()
    if pid == 0:
        kh.child_main(fd, SEED, trial, pool, unused)  # never returns
    os.close(fd)
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    acked, cut, errors = kh.read_log(log)
    violations = [("worker failed", e[-400:]) for e in errors]
    failed_open = open_workspace()
    if failed_open:
        violations.append(("workspace does not open", failed_open))
    checker = kh.Checker(known, pool, acked, cut).run()
    violations += checker.violations
    if kh.MAIN in workspace.list_datasets():
        try:
            broken = kh.undo_redo_roundtrip(kh.MAIN)
        except Exception as exc:  # noqa: BLE001
            broken = f"{type(exc).__name__}: {exc}"
        if broken:
            violations.append(("undo then redo changes the manifest", broken))
    return {"trial": trial, "delay_ms": round(delay * 1000, 1), "killed": killed, "acked": len(acked),
            "ops": [op.kind for op in acked] + ([f"*{cut.kind}"] if cut else []),
            "cut": cut and {"op": cut.index, "kind": cut.kind, "params": cut.params},
            "violations": violations, "accepted": checker.accepted, "temp_files": kh.temp_files()}


def temp_kind(path: str) -> str:
    """What a leftover temporary file was to become ('manifest.csv', 'cache/thumbs', …)."""
    parts, name = Path(path).parts, Path(path).name
    if parts[0] == "cache":
        return "/".join(parts[:2])
    return ".claim (import lock draft)" if name.startswith(".claim-") else ".".join(name.split(".")[1:3])


def describe(record: dict) -> str:
    """One trial of the schedule, as the failure message prints it."""
    cut = record["cut"]
    where = f"killed in op {cut['op']} {cut['kind']} {json.dumps(cut['params'])[:160]}" if cut else \
        "killed between operations"
    broken = "; ".join(f"{inv}: {detail}"[:300] for inv, detail in record["violations"])
    return (f"trial {record['trial']} delay {record['delay_ms']} ms, {record['acked']} acknowledged "
            f"({' '.join(record['ops'][-8:])}), {where}\n    → {broken}")


def test_killed_anywhere_the_workspace_opens_consistent_and_keeps_what_was_acknowledged(
        pool, template, tmp_path, monkeypatch):
    home, logs = tmp_path / "ws", tmp_path / "logs"
    logs.mkdir()
    monkeypatch.setenv("IMGCLS_HOME", str(home))
    rng = random.Random(SEED)
    delays = [rng.uniform(0, MAX_DELAY_MS) / 1000 for _ in range(TRIALS)]
    records, counts, known, since_fresh = [], collections.Counter(), None, 0
    started = time.perf_counter()
    for trial in range(TRIALS):
        if known is None or since_fresh >= EPOCH or len(known.unused(pool)) < 40:
            known, since_fresh = fresh(template, home, pool), 0
        record = one_trial(trial, delays[trial], known, pool, logs)
        records.append(record)
        accepted, since_fresh = record.pop("accepted"), since_fresh + 1
        for invariant in {inv for inv, _ in record["violations"]}:
            counts[invariant] += 1
        if record["violations"]:
            known = None  # a broken workspace would break every later trial: start again from the template
        else:  # the new datasets are verified: drop them, so each trial checks a workspace of about one size
            for name in set(workspace.list_datasets()) - {kh.MAIN}:
                workspace.delete_dataset(name)
            known = kh.Known(rows={kh.MAIN: accepted[kh.MAIN]}, history=journal.history(kh.MAIN))
    seconds = time.perf_counter() - started
    kills = sum(r["killed"] for r in records)
    cut_kinds = collections.Counter(r["cut"]["kind"] if r["cut"] else "between" for r in records)
    summary = {"seed": SEED, "trials": TRIALS, "kills": kills, "seconds": round(seconds, 1),
               "acknowledged_ops": sum(r["acked"] for r in records), "killed_in": dict(cut_kinds),
               "trials_failing": sum(bool(r["violations"]) for r in records), "failing_by_invariant": dict(counts),
               "trials_leaving_temp_files": sum(bool(r["temp_files"]) for r in records),
               "temp_files_by_kind": dict(collections.Counter(temp_kind(p) for r in records for p in r["temp_files"]))}
    print("kill-anywhere:", json.dumps(summary))
    if os.environ.get("KILL_REPORT"):
        failing = [{k: r[k] for k in ("trial", "delay_ms", "cut", "violations")} for r in records if r["violations"]]
        Path(os.environ["KILL_REPORT"]).write_text(json.dumps({**summary, "failing": failing}, indent=1))
    assert kills >= 0.95 * TRIALS, f"only {kills} of {TRIALS} workers were still alive to be killed"
    bad = [r for r in records if r["violations"]]
    assert not bad, (
        f"seed {SEED}: {len(bad)} of {TRIALS} kills left the workspace inconsistent: {dict(counts)}\n"
        + "\n".join(describe(r) for r in bad[:12])
        + f"\nreplay: KILL_SEED={SEED} KILL_TRIALS={TRIALS} python -m pytest -q "
          f"{Path(__file__).relative_to(REPO)} -k killed_anywhere")


# --- training -------------------------------------------------------------------------------------------


def make_toy(pool) -> None:
    """Two classes of 12 tiny images each, in train and val folders, for a linear probe."""
    indices = [i for i in range(kh.POOL_SIZE) if kh.CLASSES[i % 3] in ("cat", "dog")][:24]
    files = [(f"{'val' if k % 3 == 2 else 'train'}/{kh.CLASSES[i % 3]}/img{i:04d}.png", pool[i].data)
             for k, i in enumerate(indices)]
    data.import_listing(list_memory(files), "toy", "toy images")


def start_training(args: list[str], folder: Path) -> subprocess.Popen:
    """A real training command in its own process group, as the app starts it."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    with open(folder / "out.txt", "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "imgcls", "train", *args, "--json"], cwd=folder, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_running(proc: subprocess.Popen, run_id: str | None, seconds: float = 120) -> str | None:
    """The run id once its status says running in this process (None if the process ended first)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        for candidate in ([run_id] if run_id else runs.list_runs()):
            status = workspace.read_json(runs.run_dir(candidate) / "status.json", {}) or {}
            if status.get("state") == "running" and status.get("pid") == proc.pid:
                return candidate
        time.sleep(0.02)
    return None


def run_folder_problems(run_id: str, finished: bool) -> list[str]:
    """What in a run folder does not read back: status, JSON files, models, metrics, CSVs, caches."""
    from safetensors.numpy import load_file  # numpy only: this process never imports torch

    folder, problems = runs.run_dir(run_id), []
    for path in sorted(folder.iterdir()):
        try:
            if path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
            elif path.suffix == ".safetensors" and not load_file(str(path)):
                problems.append(f"{path.name} holds no tensors")
            elif path.suffix == ".csv":
                import pandas as pd
                pd.read_csv(path)
        except Exception as exc:  # noqa: BLE001 - whatever stops it loading is the finding
            problems.append(f"{path.name}: {type(exc).__name__}: {exc}")
    metrics = (folder / "metrics.jsonl").read_bytes() if (folder / "metrics.jsonl").exists() else b""
    lines = metrics.split(b"\n")  # after the last newline: nothing, or a line torn by the kill
    if finished and lines[-1]:
        problems.append(f"metrics.jsonl of the finished run ends in a torn line: {lines[-1][:80]!r}")
    for number, line in enumerate(lines[:-1], start=1):
        try:
            json.loads(line)
        except ValueError:
            problems.append(f"metrics.jsonl line {number} does not parse: {line[:80]!r}")
    try:
        state = runs.read_status(run_id).get("state")
        if state not in runs.FINAL_STATES:
            problems.append(f"status reads '{state}' though its process is gone")
    except Exception as exc:  # noqa: BLE001
        problems.append(f"the status does not read: {type(exc).__name__}: {exc}")
    return problems + [f"cache {p}" for p in kh.unreadable_cache_files()]


def test_training_killed_at_random_moments_leaves_a_readable_run_that_resumes(pool, tmp_path, monkeypatch):
    monkeypatch.setenv("IMGCLS_HOME", str(tmp_path / "ws"))
    make_toy(pool)
    rng, run_id, schedule, problems = random.Random(SEED + 1), None, [], []
    train = ["--dataset", "toy", "--strategy", "linear", "--img-size", "32", "--batch-size", "8", "--epochs", "20",
             "--workers", "0"]
    for attempt in range(TRAIN_KILLS + 1):
        proc = start_training(["--resume", run_id] if run_id else train, tmp_path)
        try:
            if attempt < TRAIN_KILLS:
                run_id = wait_running(proc, run_id) or run_id
                delay = rng.uniform(0, 1.5)  # a tiny linear run ends about 1-2 s after it starts running
                time.sleep(delay)
                alive = proc.poll() is None
                phase = (workspace.read_json(runs.run_dir(run_id) / "status.json", {}) or {}).get("message") \
                    if run_id else None
                os.killpg(proc.pid, signal.SIGKILL)
                schedule.append(f"attempt {attempt}: killed {delay * 1000:.0f} ms after 'running', at '{phase}'"
                                + ("" if alive else " (it had already ended)"))
            proc.wait(timeout=180)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        assert run_id, (tmp_path / "out.txt").read_text()
        runs.mark_interrupted()  # what the app does when it starts again
        found = run_folder_problems(run_id, finished=attempt == TRAIN_KILLS)
        problems += [f"attempt {attempt}: {p}" for p in found]
        leftovers = kh.temp_files()
        schedule.append(f"  then: {len(found)} problems, {len(leftovers)} temporary files left {leftovers[:3]}")
    print("training kills:", json.dumps({"seed": SEED + 1, "schedule": schedule}))
    status = runs.read_status(run_id)
    assert not problems, f"seed {SEED + 1}: " + "; ".join(problems) + "\n" + "\n".join(schedule)
    assert status["state"] == "done", (status, (tmp_path / "out.txt").read_text()[-2000:], schedule)
    assert runs.usable(run_id, runs.read_config(run_id), status)
