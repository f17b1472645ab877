"""Several processes on one job (`torchrun --nproc_per_node=N -m imgcls train …`): rank 0 writes the run."""

from __future__ import annotations

import hashlib
import os
import sys

# torch is imported only where a process group is made or used: the app reads and writes runs through this
# module on every page, and importing torch there costs the server seconds on a page that needs no model.


def _td():
    """torch.distributed when already loaded in this process, else None (then no process group can be up)."""
    return sys.modules.get("torch.distributed")


def world_size() -> int:
    """Number of processes torchrun started (1 when run plainly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank (0 when run plainly)."""
    return _td().get_rank() if active() else int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Only the main process writes status, metrics and checkpoints."""
    return rank() == 0


def active() -> bool:
    """Whether a process group is up."""
    td = _td()
    return td is not None and td.is_available() and td.is_initialized()


def setup(device: str) -> None:
    """Join the process group torchrun describes in the environment (gloo on CPU, nccl on CUDA)."""
    if world_size() > 1 and not active():
        import torch
        import torch.distributed as td

        backend = "nccl" if device.startswith("cuda") and torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        td.init_process_group(backend=backend)


def share(value):
    """Rank 0's value, on every rank (such as the id of the run it created)."""
    if not active():
        return value
    box = [value if is_main() else None]
    _td().broadcast_object_list(box, src=0)
    return box[0]


def local_device(device: str) -> str:
    """On CUDA each process uses the GPU of its local rank; a job given one GPU by its slot sees it as cuda:0."""
    if device.startswith("cuda") and active():
        return f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    if device.startswith("cuda") and os.environ.get("IMGCLS_JOB_SLOT", "").startswith("cuda:"):
        return "cuda:0"  # CUDA_VISIBLE_DEVICES names only that GPU
    return device


def weights_digest(model) -> str:
    """A checksum of the weights, to show that every process ended with the same model."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()


def cleanup() -> None:
    """Leave the process group."""
    if active():
        _td().destroy_process_group()
