"""Jobs on a real Ray cluster started here (one head node with two CPUs and two declared GPUs, its own
temporary folder): a training run and a health check through it, Stop of a running and of a waiting job,
liveness asked of Ray, a two-GPU job under torchrun, and the run folder the same as the one the local job
system leaves. The declared GPUs are Ray resources only: the job given them does not touch CUDA."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

pytest.importorskip("ray")

from imgcls import jobs  # noqa: E402
from imgcls.health import check as health, job as healthjob  # noqa: E402
from imgcls.ingest.imports import import_files, import_sample  # noqa: E402
from imgcls.jobs import procs, raycluster, statusfile  # noqa: E402
from imgcls.store import runs, workspace  # noqa: E402
from imgcls.train import runjobs  # noqa: E402
from imgcls.train.run import TrainConfig, prepare_run  # noqa: E402
from waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]
TINY = {"strategy": "linear", "epochs": 1, "img_size": 64, "batch_size": 8}
RAY_FIELDS = {"backend", "ray_actor", "host"}  # what a status file on the cluster adds, and nothing else
# a stand-in job: takes its slot as every job does, says so, then waits to be stopped
HOLDER = ("import os, time\nfrom imgcls.jobs import slots\nwith slots.hold('cpu') as slot:\n"
          "    print('holds', slot, 'threads', os.environ.get('OMP_NUM_THREADS'), flush=True)\n    time.sleep(120)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_cluster(temp_dir: str) -> None:
    """End this cluster's processes only (`ray stop` would end every Ray cluster of the machine): those whose
    command line names its temporary folder, with everything they started."""
    me = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    roots = [p for p in psutil.process_iter(["cmdline"])
             if p.pid not in me and any(temp_dir in arg for arg in (p.info["cmdline"] or []))]
    family = {}
    for root in roots:
        try:
            family.update({p.pid: p for p in [root, *root.children(recursive=True)]})
        except psutil.Error:
            continue
    for signal_them, wait_s in ((psutil.Process.terminate, 2.0), (psutil.Process.kill, 10.0)):
        for proc in family.values():
            try:
                signal_them(proc)
            except psutil.Error:
                pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and any(_running(p) for p in family.values()):
            time.sleep(0.1)


def _running(proc: psutil.Process) -> bool:
    try:  # a zombie has ended: Ray's daemons belong to init, which may be slow to reap them
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.fixture(scope="module")
def cluster():
    """The address of a Ray head node of this module's own; stopped (only it) afterwards."""
    import ray

    temp_dir = tempfile.mkdtemp(prefix="imgcls-ray-", dir="/tmp")  # short: Ray's socket paths must fit
    port = _free_port()
    address = f"127.0.0.1:{port}"
    before = os.environ.get("RAY_ADDRESS")
    os.environ["RAY_ADDRESS"] = address  # any Ray client of these tests finds this cluster, no other
    command = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--node-ip-address=127.0.0.1",
               "--num-cpus=2", "--num-gpus=2", f"--port={port}", "--include-dashboard=false", "--disable-usage-stats",
               f"--temp-dir={temp_dir}"]
    try:
        # the node's jobs see one CPU slot, as a server does by default: a queue through it would hold one
        subprocess.run(command, check=True, capture_output=True, timeout=120, env=dict(os.environ, IMGCLS_CPU_JOBS="1"))
        yield address
    finally:
        raycluster.close()
        if ray.is_initialized():
            ray.shutdown()
        _stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
        if before is None:
            os.environ.pop("RAY_ADDRESS", None)
        else:
            os.environ["RAY_ADDRESS"] = before


@pytest.fixture
def on_ray(cluster, imgcls_home, monkeypatch):
    """A fresh workspace whose jobs go to the cluster; every job a test leaves running is stopped."""
    monkeypatch.setenv("IMGCLS_RAY_ADDRESS", cluster)
    started: list[Path] = []
    yield started
    for path in started:
        jobs.stop(path, grace_s=0.5)
    for run_id in runjobs.active_runs():
        runjobs.stop(run_id)


def _wait(what: str, check, timeout: float = 120.0):
    return wait_for(what, check, timeout)


def _ray(address: str):
    """This test's own connection to the cluster, to check on actors without the code under test."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, namespace=raycluster.NAMESPACE, log_to_driver=False, logging_level="WARNING")
    return ray


def _actor_exists(path: Path) -> bool:
    ray = _ray(os.environ["IMGCLS_RAY_ADDRESS"])
    try:
        ray.get_actor(raycluster.actor_name(path), namespace=raycluster.NAMESPACE)
        return True
    except ValueError:
        return False


def _submit_holder(started: list[Path], name: str, device: str = "cpu", script: str = HOLDER, **fields) -> Path:
    path = workspace.home() / "jobs-under-test" / name / "status.json"
    path.parent.mkdir(parents=True)
    jobs.submit(path, [], device, python_args=["-c", script], **fields)
    started.append(path)
    return path


def _holds(path: Path) -> bool:
    return "holds " in (path.parent / "log.txt").read_text()


def _train_to_the_end(run_id: str) -> dict:
    runjobs.start(run_id)
    status = _wait(f"run {run_id} to end", lambda: (lambda s: s if s["state"] in runs.FINAL_STATES else None)(
        runs.read_status(run_id)), timeout=240)
    assert status["state"] == "done", (status, (runs.run_dir(run_id) / "log.txt").read_text())
    return status


def _small_dataset(mk, name: str, per_class: int) -> None:
    members = mk.class_members({"a": per_class, "b": per_class})
    for label in ("a", "b"):
        import_files([(n.split("/")[1], data) for n, data in members if n.startswith(f"{label}/")], name, label)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# --- without a cluster ---------------------------------------------------------------------------


def test_without_an_address_jobs_run_here_and_ray_is_never_imported(tmp_path):
    code = ("import sys, time\nfrom pathlib import Path\nfrom imgcls import jobs\n"
            f"path = Path({str(tmp_path / 'job' / 'status.json')!r}); path.parent.mkdir()\n"
            "job = f'from imgcls import jobs\\nwith jobs.running({str(path)!r}): print(42)'\n"
            "jobs.submit(path, [], 'cpu', python_args=['-c', job])\n"
            "while jobs.status(path)['state'] in jobs.ACTIVE: time.sleep(0.1)\n"
            "print(jobs.status(path)['state'], jobs.status(path).get('backend'), 'ray' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k not in ("IMGCLS_RAY_ADDRESS", "RAY_ADDRESS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env=dict(env, IMGCLS_HOME=str(tmp_path / "home")))
    assert out.stdout.split() == ["done", "None", "False"], out.stderr
    assert (tmp_path / "job" / "log.txt").read_text().strip() == "42"


def test_the_address_comes_from_the_environment_before_the_config(imgcls_home, monkeypatch):
    monkeypatch.delenv("IMGCLS_RAY_ADDRESS", raising=False)
    assert raycluster.address() == ""
    imgcls_home.mkdir(parents=True, exist_ok=True)
    (imgcls_home / "imgcls.toml").write_text('ray_address = "10.0.0.5:6379"\n')
    assert raycluster.address() == "10.0.0.5:6379"
    monkeypatch.setenv("IMGCLS_RAY_ADDRESS", "auto")
    assert raycluster.address() == "auto"
    assert raycluster.resources("cuda") == {"num_gpus": 1, "num_cpus": 1}
    assert raycluster.resources("cuda:1", gpus=4)["num_gpus"] == 4  # one run over four GPUs of one node
    monkeypatch.setenv("IMGCLS_RAY_CPUS", "6")
    assert raycluster.resources("cpu") == {"num_gpus": 0, "num_cpus": 6}


def test_a_cluster_that_cannot_be_reached_fails_the_job_at_once_saying_so(imgcls_home, monkeypatch):
    where = f"127.0.0.1:{_free_port()}"  # nothing listens there
    monkeypatch.setenv("IMGCLS_RAY_ADDRESS", where)
    path = imgcls_home / "job" / "status.json"
    path.parent.mkdir(parents=True)
    t0 = time.monotonic()
    try:
        with pytest.raises(raycluster.ClusterError, match=f"The Ray cluster at {where} cannot be reached"):
            jobs.submit(path, [], "cpu", python_args=["-c", "print('ran')"])
        assert time.monotonic() - t0 < 30, "ray.init alone would retry for minutes"
        status = jobs.status(path)
        assert status["state"] == "failed" and status["message"].startswith("The job could not start: The Ray")
    finally:
        raycluster.close()


# --- on the cluster ------------------------------------------------------------------------------


def test_a_run_on_the_cluster_leaves_the_same_run_folder_as_one_run_here(cluster, on_ray, monkeypatch):
    import_sample("shapes", "shapes")
    monkeypatch.delenv("IMGCLS_RAY_ADDRESS")
    here = prepare_run(TrainConfig(dataset="shapes", **TINY))
    local = _train_to_the_end(here)
    monkeypatch.setenv("IMGCLS_RAY_ADDRESS", cluster)
    there = prepare_run(TrainConfig(dataset="shapes", **TINY))
    t0 = time.monotonic()
    remote = _train_to_the_end(there)
    print(f"run on the cluster: {time.monotonic() - t0:.1f} s")
    assert _files(runs.run_dir(there)) == _files(runs.run_dir(here))
    assert set(remote) - set(local) == RAY_FIELDS and set(local) <= set(remote)
    assert remote["backend"] == "ray" and remote["host"] == socket.gethostname() and remote["slot"] == "cpu"
    assert "backend" not in local and local["slot"] == "cpu#0"
    assert remote["result"]["val_accuracy"] == pytest.approx(local["result"]["val_accuracy"], abs=0.05)
    _wait("the actor to leave once its job has ended", lambda: not _actor_exists(runs.status_path(there)), 30)


def test_a_health_check_runs_on_the_cluster(on_ray, mk):
    _small_dataset(mk, "d", 6)
    healthjob.start("d")
    status = _wait("the check to end", lambda: (lambda s: s if s.get("state") not in jobs.ACTIVE else None)(
        healthjob.job_status("d")))
    log = (workspace.dataset_dir("d") / healthjob.LOG_FILE).read_text()
    assert status["state"] == "done" and status["backend"] == "ray", (status, log)
    assert health.load("d")["images_checked"] == 12


def test_stop_ends_a_training_on_the_cluster_cleanly_and_keeps_its_model(on_ray, mk):
    _small_dataset(mk, "toy", 8)
    run_id = prepare_run(TrainConfig(dataset="toy", strategy="full", epochs=200, patience=200, img_size=64,
                                     batch_size=8))
    runjobs.start(run_id)
    _wait("a first saved model", lambda: (runs.run_dir(run_id) / "model.safetensors").exists(), timeout=240)
    running = runs.read_status(run_id)
    assert running["state"] == "running" and running["host"] == socket.gethostname()
    t0 = time.monotonic()
    after = runjobs.stop(run_id)
    print(f"stop on the cluster: {time.monotonic() - t0:.1f} s")
    assert after["state"] == "cancelled" and after["message"] == "Stopped by the user; the best model so far is kept."
    assert not procs.alive(running["pid"], running["pid_started"])
    assert not _actor_exists(runs.status_path(run_id))
    assert runs.kept_model(run_id) is not None


def test_a_job_waiting_for_gpus_the_cluster_lacks_stays_queued_until_stopped(on_ray, monkeypatch):
    monkeypatch.setattr(statusfile, "GRACE_S", 0.5)  # long past it, the job still reads as waiting: Ray says so
    path = _submit_holder(on_ray, "gpus", device="cuda", gpus=3)  # the cluster has two
    time.sleep(3)
    status = jobs.status(path)
    assert status["state"] == "queued" and status["pid"] is None and _actor_exists(path)
    after = jobs.stop(path, grace_s=0.5)
    assert after["state"] == "cancelled" and after["message"] == jobs.STOPPED
    assert not _actor_exists(path) and not _holds(path)


def test_two_cpu_jobs_run_at_once_although_the_node_has_one_cpu_slot(on_ray):
    first, second = _submit_holder(on_ray, "first"), _submit_holder(on_ray, "second")
    _wait("both to hold their cores", lambda: _holds(first) and _holds(second), timeout=60)
    assert [jobs.status(p)["state"] for p in (first, second)] == ["running", "running"]
    assert "threads 1" in (first.parent / "log.txt").read_text()  # told its share: the one core Ray gave it


def test_liveness_is_asked_of_ray_for_a_job_on_another_node(on_ray):
    ray = _ray(os.environ["IMGCLS_RAY_ADDRESS"])
    path = _submit_holder(on_ray, "elsewhere")
    _wait("it to hold its cores", lambda: _holds(path) and jobs.status(path).get("pid"), timeout=60)
    pid = jobs.status(path)["pid"]
    jobs.write_status(path, host="another-node")  # its pid cannot be asked from here: Ray must answer
    assert jobs.status(path)["state"] == "running"
    ray.kill(ray.get_actor(raycluster.actor_name(path), namespace=raycluster.NAMESPACE), no_restart=True)
    _wait("the lost actor to read as interrupted", lambda: jobs.status(path)["state"] == "interrupted", timeout=30)
    assert jobs.status(path)["message"] == jobs.VANISHED
    _wait("its process to go with its actor", lambda: not procs.alive(pid), timeout=30)


def test_a_job_killed_on_its_node_is_written_down_as_interrupted(on_ray):
    path = _submit_holder(on_ray, "killed")
    _wait("it to hold its cores", lambda: _holds(path) and jobs.status(path).get("pid"), timeout=60)
    os.kill(jobs.status(path)["pid"], signal.SIGKILL)  # kill -9: the job writes nothing
    _wait("its actor to write the end down", lambda: statusfile.read_raw(path)["state"] == "interrupted", timeout=30)
    assert statusfile.read_raw(path)["message"] == jobs.VANISHED
    _wait("its actor to leave", lambda: not _actor_exists(path), timeout=30)


def test_a_job_asking_for_two_gpus_runs_under_torchrun_on_the_two_ray_gave(on_ray):
    script = ("import os, time\nfrom imgcls.jobs import slots\nwith slots.hold('cuda'):\n"
              "    print('rank', os.environ['LOCAL_RANK'], 'of', os.environ['WORLD_SIZE'], 'sees',"
              " os.environ['CUDA_VISIBLE_DEVICES'], 'pid', os.getpid(), flush=True)\n    time.sleep(120)")
    path = _submit_holder(on_ray, "two-gpus", device="cuda", script=script, gpus=2)
    log = path.parent / "log.txt"
    _wait("both processes", lambda: log.read_text().count("rank ") == 2, timeout=90)
    lines = sorted(line for line in log.read_text().splitlines() if line.startswith("rank "))
    assert [line.split(" pid ")[0] for line in lines] == ["rank 0 of 2 sees 0,1", "rank 1 of 2 sees 0,1"]
    status = jobs.status(path)
    assert status["state"] == "running" and status["slot"] == "cuda:0,1"
    workers = [int(line.split(" pid ")[1]) for line in lines]
    assert jobs.stop(path, grace_s=2.0)["state"] == "cancelled"
    _wait("every process of it to end", lambda: not any(procs.alive(pid) for pid in workers), timeout=30)
