"""The job system with real processes: slots per device, one first-come line, kill -9, stop, pid identity."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imgcls import jobs
from imgcls.store import workspace
from imgcls.jobs import procs, slots
from waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]
# a stand-in job: says which GPU its slot let it see and which slot it holds, then waits to be stopped
SLEEPER = ("import os, time; print('sees', os.environ.get('CUDA_VISIBLE_DEVICES'), 'slot', "
           "os.environ.get('IMGCLS_JOB_SLOT'), flush=True); time.sleep(120)")


def _wait(what: str, check, timeout: float = 30.0):
    return wait_for(what, check, timeout)


@pytest.fixture
def server(imgcls_home, monkeypatch):
    started: list[Path] = []

    def submit(name: str, device: str, script: str = SLEEPER) -> Path:
        path = workspace.home() / "jobs-under-test" / name / "status.json"
        path.parent.mkdir(parents=True)
        jobs.submit(path, [], device, python_args=["-c", script])
        started.append(path)
        return path
    yield submit
    for path in started:
        jobs.stop(path, grace_s=0.5)


def _state(path: Path) -> tuple:
    status = jobs.status(path)
    return status.get("state"), status.get("slot"), status.get("queue")


def test_two_gpus_run_two_jobs_and_a_third_waits_its_turn(server, monkeypatch):
    monkeypatch.setenv("IMGCLS_DEVICES", "cpu,cuda:0,cuda:1")  # a machine with two GPUs, as the slots see it
    a = server("a", "cuda")
    _wait("a to start", lambda: _state(a)[0] == "running")
    b = server("b", "cuda")
    _wait("b to start", lambda: _state(b)[0] == "running")
    c, d = server("c", "cuda"), server("d", "cuda")
    _wait("c and d in line", lambda: _state(c)[2] == 1 and _state(d)[2] == 2)
    assert {_state(a)[1], _state(b)[1]} == {"cuda:0", "cuda:1"}, "one job per GPU"
    assert _state(c)[0] == _state(d)[0] == "queued"
    for path in (a, b):  # each job was shown only its own GPU, as cuda:0 inside
        index = _state(path)[1].split(":")[1]
        _wait("its log", lambda p=path: f"sees {index} slot cuda:{index}" in (p.parent / "log.txt").read_text())

    freed = _state(a)[1]
    os.kill(jobs.status(a)["pid"], signal.SIGKILL)  # kill -9: no chance to clean up
    _wait("c to take the freed GPU", lambda: _state(c)[:2] == ("running", freed))
    assert _state(a)[0] == "interrupted" and "stopped unexpectedly" in jobs.status(a)["message"]
    _wait("d to move up", lambda: _state(d)[2] == 1)
    assert _state(d)[0] == "queued" and _state(b)[0] == "running"


def test_a_job_for_another_device_does_not_wait_behind_the_line(server, monkeypatch):
    monkeypatch.setenv("IMGCLS_DEVICES", "cpu,cuda:0")
    gpu = server("gpu", "cuda")
    _wait("the GPU job", lambda: _state(gpu)[0] == "running")
    waiting = server("waiting", "cuda")
    _wait("the second GPU job in line", lambda: _state(waiting)[2] == 1)
    cpu = server("cpu", "cpu")
    _wait("the CPU job to start at once", lambda: _state(cpu)[0] == "running")
    assert _state(cpu)[1] == "cpu#0" and _state(waiting)[0] == "queued"


def test_jobs_start_in_the_order_they_were_submitted(server, tmp_path):
    order = tmp_path / "order.txt"
    first = server("first", "cpu")
    _wait("the first job", lambda: _state(first)[0] == "running")
    names = ["n1", "n2", "n3", "n4"]
    for name in names:  # submitted back to back: their launchers race to start, the line does not
        server(name, "cpu", f"open({str(order)!r}, 'a').write('{name}\\n')")
    paths = [workspace.home() / "jobs-under-test" / n / "status.json" for n in names]
    _wait("all four in line", lambda: all(_state(p)[2] for p in paths))
    assert [_state(p)[2] for p in paths] == [1, 2, 3, 4]
    jobs.stop(first, grace_s=0.5)
    _wait("all four to run", lambda: order.exists() and len(order.read_text().split()) == 4, timeout=60)
    assert order.read_text().split() == names


def test_stop_takes_a_queued_job_out_of_the_line_and_ends_a_running_one(server):
    running = server("running", "cpu")
    _wait("it to run", lambda: _state(running)[0] == "running")
    queued = server("queued", "cpu")
    _wait("it in line", lambda: _state(queued)[2] == 1)
    launcher = jobs.status(queued)["pid"]
    assert jobs.stop(queued, grace_s=2.0)["state"] == "cancelled"
    assert not procs.alive(launcher) and not list((workspace.server_root() / "jobs" / "queue").iterdir())
    t0 = time.monotonic()
    after = jobs.stop(running, grace_s=1.0)
    assert after["state"] == "cancelled" and after["message"] == jobs.STOPPED and time.monotonic() - t0 < 8
    assert not procs.alive(after["pid"], after["pid_started"])


def test_a_reused_pid_reads_as_gone_and_stop_leaves_that_process_alone(imgcls_home):
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path = workspace.home() / "old" / "status.json"
        path.parent.mkdir()
        # written before a reboot: the pid now belongs to another program, started at another time
        workspace.atomic_write_json(path, {"state": "running", "pid": stranger.pid,
                                           "pid_started": procs.started_at(stranger.pid) - 3600, "created": 0})
        assert jobs.status(path)["state"] == "interrupted"
        assert jobs.stop(path)["state"] == "interrupted"  # nothing to stop
        assert stranger.poll() is None, "Stop must not end a process that is not the job"
        # an old status without a start time still reads by its pid alone
        workspace.atomic_write_json(path, {"state": "running", "pid": stranger.pid, "created": 0})
        assert jobs.status(path)["state"] == "running"
    finally:
        stranger.kill()
        stranger.wait()


def test_a_slot_held_in_process_passes_nested_jobs_and_frees_on_exit(imgcls_home):
    with slots.hold("cpu") as slot:
        assert slot == "cpu#0" and slots.held_by(os.getpid()) == slot
        with slots.hold("cpu") as inner:  # an experiment's training run inside its slot
            assert inner == slot
        assert slots.held_by(os.getpid()) == slot
    assert slots.held_by(os.getpid()) is None and slots.holders() == {}


def test_cpu_slots_share_the_cores(monkeypatch):
    monkeypatch.setenv("IMGCLS_CPU_JOBS", "2")
    monkeypatch.setenv("IMGCLS_DEVICES", "cpu")
    assert slots.slot_names() == ["cpu#0", "cpu#1"]
    share = int(slots.slot_env("cpu#1")["IMGCLS_JOB_THREADS"])
    assert share == max(1, len(os.sched_getaffinity(0)) // 2)
    assert slots.slot_env("cuda:1")["CUDA_VISIBLE_DEVICES"] == "1"
    assert slots.candidates("cuda") == ["cuda:0"]  # asked for a GPU the slots do not see: one slot of its own


def test_the_launcher_waits_without_torch_or_pandas():
    out = subprocess.run([sys.executable, "-c", "import sys, imgcls.jobs.launcher; "
                          "print(sorted(m for m in ('torch', 'pandas', 'numpy') if m in sys.modules))"],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_no_module_needs_fcntl_so_imgcls_imports_on_windows():
    unix_only = {"fcntl", "termios", "pwd", "grp", "resource"}
    found = []
    for path in sorted((ROOT / "imgcls").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n.split(".")[0] in unix_only]
    assert not found, found
    # and the light modules import with fcntl gone, as on Windows
    code = ("import sys; sys.modules['fcntl'] = None; import imgcls.store.workspace, imgcls.jobs, imgcls.store.leftovers, "
            "imgcls.store.runs, imgcls.train.runjobs, imgcls.health.job, imgcls.lab.experiments; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "ok", out.stderr
