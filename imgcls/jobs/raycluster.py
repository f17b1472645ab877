"""Background jobs on a Ray cluster, when the operator names one (`IMGCLS_RAY_ADDRESS`, else `ray_address`
in imgcls.toml); without one, jobs run on this machine and `ray` is never imported.

Each job is a detached, named Ray actor (namespace "imgcls", its name made from the status file's path)
that asks for what the job needs: one GPU for a CUDA job (N GPUs of one node with `gpus=N`), else
`IMGCLS_RAY_CPUS` cores (default 1). Ray keeps the line: an actor waiting for a free GPU is a queued job.
Once placed, the actor runs the job's command as a process on its node, with the workspace's variables
(IMGCLS_HOME, IMGCLS_SERVER_HOME, IMGCLS_CONFIG), the GPUs Ray gave it as CUDA_VISIBLE_DEVICES (the job sees
them as cuda:0…) or its cores as the thread count, and several GPUs under `torchrun --standalone`. The job
runs through `python -m imgcls.jobs.placed`, which tells it that its device is its own already: the
server's slot queue tells its holders apart by pid, which means nothing across machines.

The workspace is on storage every node mounts at the same path, so the run folder, the log and the status
file are the same as for a job run here; the job writes its status through `imgcls.jobs.running` as
always. The status file adds `backend` ("ray"), `ray_actor` and `host` (the node that runs it):

- liveness: on the job's own node its pid (with its start time) answers; elsewhere Ray does: the job is
  there while its actor is (waiting to be placed, or watching the process). An actor whose process ended
  without saying how marks the job interrupted, as a vanished local job reads, then exits.
- Stop: the actor sends the process SIGTERM (the job stops at its next step and keeps its best model) and
  kills it with its children after the grace period; an actor not yet placed is simply killed.

This process never joins the cluster itself: Ray ends a driver process that has lost the cluster's head
for a minute, and that must not be the app's server. A helper process (`serve`, a child of this one that
ends with it) is the driver, asked one line of JSON at a time; if it dies or stops answering it is ended,
and the next question starts a new one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from imgcls.jobs import procs, statusfile
from imgcls.jobs.statusfile import STARTING, VANISHED, State, write
from imgcls.store import access, workspace

NAMESPACE = "imgcls"
BACKEND = "ray"
ENV_KEYS = ("IMGCLS_HOME", "IMGCLS_SERVER_HOME", "IMGCLS_CONFIG")  # what a job on another node must be told
RETRY_S = 30.0  # after the cluster did not answer, status reads do not ask again for this long
_helper: dict = {"proc": None, "where": None, "answers": None, "failed": None}  # failed: (address, when)
_helper_lock = threading.Lock()


class ClusterError(workspace.WorkspaceError):
    """The Ray cluster cannot be used; the message says which and why (shown as a plain error by the pages)."""


def address() -> str:
    """The Ray cluster jobs run on ("" for this machine): IMGCLS_RAY_ADDRESS, else ray_address in imgcls.toml."""
    return os.environ.get("IMGCLS_RAY_ADDRESS", "").strip() or access.load_config().ray_address


def actor_name(path: Path) -> str:
    """The name of the actor of the job whose status file is `path`."""
    return "job-" + hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:24]


def resources(device: str, gpus: int = 1) -> dict:
    """What the job asks Ray for: GPUs for a CUDA job, else cores."""
    if str(device).startswith("cuda"):
        return {"num_gpus": max(1, int(gpus)), "num_cpus": 1}
    return {"num_gpus": 0, "num_cpus": max(1, int(os.environ.get("IMGCLS_RAY_CPUS", "1") or 1))}


def submit(path: Path, command: list[str], device: str, log: Path, gpus: int = 1) -> int:
    """Start the queued job whose status file is `path` as a Ray actor that runs `python COMMAND` on a node
    with the resources the job needs; 0 (its pid is known once Ray places it)."""
    name = actor_name(path)
    env = {k: v for k, v in workspace.job_env().items() if k in ENV_KEYS and v}  # the caller's own workspace
    write(path, backend=BACKEND, ray_actor=name, host=None)
    try:
        Path(log).touch()  # there from the start, as for a job run here
        _ask("submit", 60.0, name=name, path=str(path), command=list(command), log=str(log), env=env,
             resources=resources(device, gpus), gpus=int(gpus) if str(device).startswith("cuda") else 1)
    except (ClusterError, OSError) as exc:
        write(path, state=State.FAILED, finished=time.time(), message=f"The job could not start: {exc}")
        raise
    return 0


def exists(name: str | None) -> bool | None:
    """Whether Ray knows the job actor `name` (waiting or running); None when the cluster cannot be asked."""
    failed = _helper["failed"]
    if not name or failed and failed[0] == (address() or "auto") and time.monotonic() - failed[1] < RETRY_S:
        return None
    try:
        return bool(_ask("exists", 15.0, name=name))
    except ClusterError:
        return None


def vanished(status: dict) -> bool:
    """Whether the Ray job's process has gone: asked of its pid on its own node, else of Ray."""
    if status.get("host") == socket.gethostname() and status.get("pid"):
        return not procs.alive(status.get("pid"), status.get("pid_started"))
    found = exists(status.get("ray_actor"))
    if found is None or found:
        return False  # there, or the cluster cannot be asked now (no news is not news of an end)
    return status.get("pid") is not None or time.time() - float(status.get("created") or 0) >= statusfile.GRACE_S


def end(status: dict, grace_s: float) -> bool:
    """Stop the Ray job: its actor ends the process (SIGTERM, then the kill after `grace_s`), or, not placed
    yet, is killed; False when the cluster could not be asked."""
    try:
        _ask("stop", grace_s + 30.0, name=status.get("ray_actor"), placed=status.get("pid") is not None,
             grace_s=grace_s)
        return True
    except ClusterError:
        return False


def close() -> None:
    """End the helper process (it also ends by itself with this process) and forget any failure."""
    with _helper_lock:
        _drop()
        _helper["failed"] = None


# --- talking to the helper -----------------------------------------------------------------------


def _ask(op: str, timeout: float, **args):
    """The helper's answer to one request; a ClusterError with its reason when there is none."""
    where = address() or "auto"
    with _helper_lock:
        if _helper["proc"] is None or _helper["where"] != where or _helper["proc"].poll() is not None:
            _start(where)
        try:
            _helper["proc"].stdin.write(json.dumps({"op": op, **args}) + "\n")
            _helper["proc"].stdin.flush()
            line = _helper["answers"].get(timeout=timeout)
        except (OSError, ValueError, queue.Empty):
            line = None
        if line is None:  # it died (Ray ends a driver that lost the cluster) or hangs: a new one next time
            _drop()
            _helper["failed"] = (where, time.monotonic())
            raise ClusterError(f"The Ray cluster at {where} does not answer.")
        answer = json.loads(line)
        _helper["failed"] = (where, time.monotonic()) if answer.get("unreachable") else None
    if "error" in answer:
        raise ClusterError(answer["error"])
    return answer.get("value")


def _start(where: str) -> None:
    _drop()
    code = f"from imgcls.jobs import raycluster; raycluster.serve({where!r})"
    from imgcls.jobs import ROOT

    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, bufsize=1)
    answers: queue.Queue = queue.Queue()

    def read() -> None:
        for line in proc.stdout:
            answers.put(line)
        answers.put(None)
    threading.Thread(target=read, daemon=True, name="imgcls-ray-answers").start()
    _helper.update(proc=proc, where=where, answers=answers)


def _drop() -> None:
    proc = _helper["proc"]
    _helper.update(proc=None, where=None, answers=None)
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()


# --- inside the helper: the one process here that is a Ray driver ------------------------------


def serve(where: str) -> None:
    """Answer requests (one JSON line each, on stdin) about the cluster at `where`, until stdin closes."""
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever Ray prints cannot mix with the answers
    ray = None
    for line in sys.stdin:
        request = json.loads(line)
        try:
            ray = ray or _connect(where)
            answer = {"value": _OPS[request.pop("op")](ray, **request)}
        except ClusterError as exc:
            answer = {"error": str(exc), "unreachable": True}
        except Exception as exc:  # noqa: BLE001 - told to the asking side, in one line
            answer = {"error": (str(exc).splitlines() or [type(exc).__name__])[0]}
        answers.write(json.dumps(answer) + "\n")


def _connect(where: str):
    try:
        import ray
    except ImportError:
        raise ClusterError(f"Jobs are set to run on the Ray cluster at {where}, but the ray package is not "
                           "installed on this machine (pip install ray).") from None
    host, _, port = where.split("://", 1)[-1].rpartition(":")
    if host and port.isdigit():  # nothing listening: ray.init would retry for minutes
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError as exc:
            raise ClusterError(f"The Ray cluster at {where} cannot be reached: {exc.strerror or exc}.") from None
    try:
        ray.init(address=where, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.WARNING)
    except Exception as exc:  # ConnectionError, a bad address: no cluster to use
        raise ClusterError(f"The Ray cluster at {where} cannot be reached: {str(exc).splitlines()[0]}") from None
    return ray


def _submit(ray, name: str, path: str, command: list[str], log: str, env: dict, resources: dict, gpus: int):
    for _ in range(50):  # an actor left from an earlier job of this status file (ending now) gives way
        try:
            ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
            time.sleep(0.1)
        except ValueError:
            break
    job = ray.remote(_Job).options(name=name, namespace=NAMESPACE, lifetime="detached", max_concurrency=4,
                                   max_restarts=0, **resources)
    job.remote(path, command, log, env, gpus).run.remote()
    return True


def _exists(ray, name: str) -> bool:
    try:
        ray.get_actor(name, namespace=NAMESPACE)
        return True
    except ValueError:
        return False


def _stop(ray, name: str, placed: bool, grace_s: float) -> bool:
    try:
        handle = ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return True  # ended already
    try:
        if not placed:  # perhaps still waiting for resources: then it cannot answer
            ray.get(handle.ping.remote(), timeout=2.0)
        ray.get(handle.stop.remote(grace_s), timeout=grace_s + 15)
    except ray.exceptions.GetTimeoutError:
        pass  # not placed, or not answering: killed below
    except ray.exceptions.RayActorError:
        return True  # it ended meanwhile
    try:
        ray.kill(handle, no_restart=True)
    except ValueError:
        pass
    return True


_OPS = {"submit": _submit, "exists": _exists, "stop": _stop}


class _Job:
    """The actor of one job: runs its process on this node, watches it, stops it on request."""

    def __init__(self, path: str, command: list[str], log: str, env: dict, gpus: int) -> None:
        self.path, self.command, self.log, self.env, self.gpus = Path(path), command, Path(log), env, gpus
        self.proc: subprocess.Popen | None = None
        self.started: float | None = None  # the process's start time: its pid alone could be another's later
        self.stopping = False
        self.lock = threading.Lock()

    def ping(self) -> bool:
        return True

    def run(self) -> None:
        """Start the job's process, wait for it, and write down a vanished end."""
        import ray

        with self.lock:
            if self.stopping or statusfile.read_raw(self.path).get("state") != State.QUEUED.value:
                ray.actor.exit_actor()  # stopped (or given up) before it was placed
            env, slot = self._placement(ray)
            write(self.path, state=State.RUNNING, slot=slot, host=socket.gethostname(), pid=None, pid_started=None,
                  queue=None, wait=None, started=time.time(), message=STARTING)
            try:
                self.proc = self._spawn(env)
            except OSError as exc:
                write(self.path, state=State.FAILED, finished=time.time(), message=f"The job could not start: {exc}")
                ray.actor.exit_actor()
        self.started = procs.started_at(self.proc.pid)
        write(self.path, pid=self.proc.pid, pid_started=self.started)
        self.proc.wait()
        if not self.stopping and statusfile.read_raw(self.path).get("state") in statusfile.ACTIVE:
            write(self.path, state=State.INTERRUPTED, message=VANISHED, queue=None)
        ray.actor.exit_actor()

    def stop(self, grace_s: float) -> bool:
        """End the job's process: SIGTERM, then the kill after `grace_s`; True when it is gone."""
        with self.lock:
            self.stopping = True
            proc = self.proc
        return proc is None or procs.end(proc.pid, self.started, grace_s)

    def _placement(self, ray) -> tuple[dict, str]:
        env = {**os.environ, **self.env}
        devices = ",".join(str(g) for g in ray.get_gpu_ids())
        if devices:
            env.update(CUDA_VISIBLE_DEVICES=devices, IMGCLS_JOB_SLOT=f"cuda:{devices}")
            return env, f"cuda:{devices}"
        cores = str(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
        env.update(IMGCLS_JOB_SLOT="cpu", IMGCLS_JOB_THREADS=cores, OMP_NUM_THREADS=cores)
        return env, "cpu"

    def _spawn(self, env: dict) -> subprocess.Popen:
        from imgcls.jobs import ROOT

        inner = ["-m", "imgcls.jobs.placed", *self.command]
        argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={self.gpus}",
                *inner] if self.gpus > 1 else [sys.executable, *inner]
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
