"""The slots jobs run in: one per GPU (and Apple GPU), and `IMGCLS_CPU_JOBS` for the CPU; what a job in
one is told (the GPU it may see, or its share of the cores). Found without loading torch.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

CPU = "cpu"


def devices() -> list[str]:
    """The devices jobs can run on: cpu, then one entry per GPU (cuda:0, cuda:1, …) and mps on a Mac.
    `IMGCLS_DEVICES` (such as "cpu,cuda:0,cuda:1") overrides what is found."""
    named = os.environ.get("IMGCLS_DEVICES", "").strip()
    if named:
        return [d.strip() for d in named.split(",") if d.strip()]
    found = [CPU, *(f"cuda:{i}" for i in range(_gpu_count()))]
    return found + (["mps"] if sys.platform == "darwin" else [])


def _gpu_count() -> int:
    """NVIDIA GPUs this process may use, found without loading torch (which takes seconds)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([v for v in visible.split(",") if v.strip() and not v.strip().startswith("-")])
    with contextlib.suppress(OSError):
        return len(list(Path("/proc/driver/nvidia/gpus").iterdir()))
    torch = sys.modules.get("torch")  # elsewhere, only if it is loaded already
    return int(torch.cuda.device_count()) if torch is not None and torch.cuda.is_available() else 0


def cpu_slots() -> int:
    """How many CPU jobs run at once (each gets an equal share of the cores)."""
    try:
        return max(1, int(os.environ.get("IMGCLS_CPU_JOBS", "1")))
    except ValueError:
        return 1


def slot_names() -> list[str]:
    """Every slot: cpu#0 … for the CPU, then one per other device."""
    return [f"{CPU}#{i}" for i in range(cpu_slots())] + [d for d in devices() if d != CPU]


def candidates(device: str) -> list[str]:
    """The slots a job asking for `device` may take: 'cuda' takes any GPU, 'cuda:1' only that one."""
    device = (device or CPU).strip()
    names = slot_names()
    if device.startswith(CPU):
        return [s for s in names if s.startswith(f"{CPU}#")]
    if device == "cuda":
        return [s for s in names if s.startswith("cuda:")] or ["cuda:0"]
    return [s for s in names if s == device] or [device]  # not seen here: one slot of its own


def slot_env(slot: str) -> dict:
    """What a job's process is told about its slot: the GPU it may see, or its share of the cores."""
    env = {"IMGCLS_JOB_SLOT": slot}
    if slot.startswith("cuda:"):
        env["CUDA_VISIBLE_DEVICES"] = slot.split(":", 1)[1]  # the job then sees its GPU as cuda:0
    elif slot.startswith(f"{CPU}#"):
        share = max(1, cores() // cpu_slots())
        env.update(IMGCLS_JOB_THREADS=str(share), OMP_NUM_THREADS=str(share))
    return env


def cores() -> int:
    """Every core this process may use (a container or taskset may allow fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
