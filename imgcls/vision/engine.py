"""The fastest correct way to run a frozen network forward on this machine's CPU.

Side by side on 2 CPU cores (benchmarks/bench_roofline.py, README "How close to the hardware"), EfficientNet-Lite0
features at 256 px: OpenVINO in fp32 ran several times faster than PyTorch eager, with the same answers to about
1e-5 (PyTorch's depthwise convolutions are far from what the cores can do; OpenVINO fuses them). bf16 would be
faster again but moves features by a few per cent, so every path here stays fp32 and agrees with the exported
models. Where OpenVINO is missing, cannot convert a network, or the device is a GPU, PyTorch runs it in
channels-last, which is what its CPU kernels are fastest with.

Converting costs seconds, so a network is converted only for enough images to pay for it, once: the result is
kept on disk in the workspace's cache under a digest of the weights and input size, and in memory.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from imgcls.store import workspace

# Converting EfficientNet-Lite0 takes 4-9 s here and saves about 25 ms an image: worth it from a few hundred
# images, and always once the converted network is on disk.
MIN_IMAGES = 256
ENV = "IMGCLS_ENGINE"  # "torch" keeps every forward pass in PyTorch (a comparison, or a machine where OpenVINO misbehaves)
_KEEP = 4  # converted networks held in memory at once
_loaded: OrderedDict[str, Callable] = OrderedDict()
_lock = threading.Lock()
_public: set[str] = set()  # digests of features networks with published weights (mark_public)


class _Pooled(torch.nn.Module):
    """A timm classifier's pooled features before its last layer (pre-logits), as one module to convert
    (vision.features.embed, as a module)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


def plain_torch() -> bool:
    """Whether this process is told to run everything in plain PyTorch fp32 (IMGCLS_ENGINE=torch)."""
    return os.environ.get(ENV, "").lower() == "torch"


def cpu_bf16() -> bool:
    """Whether training on this CPU may run in bf16 mixed precision: it has the instructions (AVX512-BF16 or
    AMX), so bf16 is faster rather than emulated, and plain PyTorch is not asked for."""
    return not plain_torch() and _bf16_instructions()


@functools.lru_cache(maxsize=1)
def _bf16_instructions() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """Whether OpenVINO is installed and runs on this CPU."""
    if plain_torch():
        return False
    try:
        importlib.import_module("openvino")
    except Exception:  # not installed, or built for an instruction set this CPU lacks
        return False
    return True


def digest(module: torch.nn.Module, kind: str) -> str:
    """A name for the network's weights and what it outputs; pooled features do not depend on the last layer,
    so its weights are left out of theirs."""
    h = hashlib.sha1(f"{type(module).__name__}|{kind}".encode())
    head = {id(t) for t in module.get_classifier().parameters()} if kind == "features" else set()
    for name, tensor in module.state_dict(keep_vars=True).items():
        if id(tensor) not in head:
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


def machine_cache() -> Path:
    """Where converted networks with published weights are kept for every workspace and server of this
    machine, as downloaded weights are: IMGCLS_CACHE_HOME, else imgcls/compiled in the user's cache folder."""
    named = os.environ.get("IMGCLS_CACHE_HOME", "").strip()
    base = Path(named) if named else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "imgcls"
    path = base / "compiled"
    path.mkdir(parents=True, exist_ok=True)
    return path


def mark_public(module: torch.nn.Module) -> None:
    """Note that the network's weights (but for its last layer) are published ones, ImageNet's or drawn from a
    seed: their converted features network is kept where every workspace of the server finds it, as it holds
    nothing of anyone's (vision.engine.machine_cache). Training changes the weights and so their digest, so a trained network is never
    taken for a public one."""
    _public.add(digest(module, "features"))


def _convert(module: torch.nn.Module, size: int, path) -> None:
    """The network exported (batch of any size, fixed input side) and saved as OpenVINO IR, atomically."""
    import openvino as ov

    example = torch.zeros(2, 3, size, size)
    with torch.inference_mode(False), torch.no_grad():  # a caller's inference mode would reach the export
        program = torch.export.export(module, (example,), dynamic_shapes=({0: torch.export.Dim("batch", max=4096)},))
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.xml")
    ov.save_model(ov.convert_model(program), str(tmp), compress_to_fp16=False)
    tmp.with_suffix(".bin").replace(path.with_suffix(".bin"))
    tmp.replace(path)  # the .xml last: it names a complete pair


CHUNK = 8  # images per inference request: one request per core in flight beat one request over both by 1.5×


def _compile(path) -> Callable[[np.ndarray], np.ndarray]:
    """The converted network compiled for throughput: one stream per thread PyTorch is allowed, a batch cut
    into requests of CHUNK images that run side by side. Each request computes its images alone, so the
    answers are those of one request over the whole batch."""
    import openvino as ov

    streams = max(1, torch.get_num_threads())
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                          "PERFORMANCE_HINT": "THROUGHPUT",
                                                          "NUM_STREAMS": streams, "INFERENCE_NUM_THREADS": streams})
    queue, results, busy = ov.AsyncInferQueue(compiled, streams), {}, threading.Lock()
    queue.set_callback(lambda request, i: results.__setitem__(i, request.get_output_tensor(0).data.copy()))

    def run(x: np.ndarray) -> np.ndarray:
        with busy:  # one batch at a time through the queue: the server shares a network between sessions
            results.clear()
            chunks = [x[i:i + CHUNK] for i in range(0, len(x), CHUNK)]
            for i, chunk in enumerate(chunks):
                queue.start_async({0: np.ascontiguousarray(chunk)}, i)
            queue.wait_all()
            return np.concatenate([results[i] for i in range(len(chunks))])
    return run


def _openvino(module: torch.nn.Module, kind: str, size: int, images: int) -> Callable | None:
    weights = digest(module, kind)
    key = f"{weights}-{size}"
    with _lock:
        if key in _loaded:
            _loaded.move_to_end(key)
            return _loaded[key]
        path = (machine_cache() if weights in _public else workspace.cache_dir("compiled")) / f"{key}.xml"
        if not path.exists():
            if images < MIN_IMAGES:
                return None
            try:
                _convert(_Pooled(module) if kind == "features" else module, size, path)
            except Exception:  # a layer the converter does not know: PyTorch runs it instead
                return None
        run = _compile(path)
        _loaded[key] = run
        while len(_loaded) > _KEEP:
            _loaded.popitem(last=False)
        return run


def compiled(module: torch.nn.Module, kind: str, size: int, images: int,
             device: torch.device | str = "cpu") -> Callable[[torch.Tensor], torch.Tensor] | None:
    """A function from a normalised N×3×size×size batch to the module's output (`kind` "logits") or its pooled
    pre-logits features ("features") through OpenVINO, when that is the fastest correct path for `images`
    images on `device`; None when PyTorch should run it (then in channels-last: `channels_last`)."""
    module.eval()
    if torch.device(device).type != "cpu" or not available():
        return None
    run = _openvino(module, kind, size, images)
    return None if run is None else (lambda x: torch.from_numpy(run(x.contiguous().numpy())))


def channels_last(module: torch.nn.Module) -> bool:
    """Put the module in channels-last for PyTorch's fastest CPU and GPU convolutions, unless told to run
    plain PyTorch; whether the inputs should be channels-last too."""
    if plain_torch():
        return False
    with torch.inference_mode(False):  # called under inference mode, the weights would become inference
        module.to(memory_format=torch.channels_last)  # tensors, which no later gradient (Grad-CAM) may touch
    return True
