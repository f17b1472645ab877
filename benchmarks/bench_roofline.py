"""How close imgcls comes to what this CPU can do: a roofline, and every inference and training path beside it.

1. The roof: measured matrix-multiply and convolution throughput (GFLOP/s, fp32 and bf16) and memory
   bandwidth (GB/s) of this machine, with the threads PyTorch uses.
2. The backbone's work per image, counted operator by operator while it runs (FLOPs from PyTorch's own
   flop counter, bytes as each operator's inputs and outputs): the img/s ceiling is the batch over the sum,
   per operator, of the longer of its compute time at the roof and its memory time at the bandwidth. A
   depthwise convolution does little arithmetic per byte, so that ceiling is well under peak FLOPs / FLOPs
   per image ("compute-only ceiling", shown too).
3. Side by side in one run, alternating, median of --repeats: frozen features through eager fp32 (the path
   before vision.engine), channels-last, bf16 autocast, torch.compile, ONNX Runtime, OpenVINO fp32/bf16 and
   imgcls's own path (vision.features.extract's choice); evaluation (vision.infer.predict_arrays on cached
   squares), a prediction batch (decode JPEG bytes + prepare + predict), and training steps (finetune's top
   layers, full) as imgcls runs them against plain fp32. Each path's largest difference from eager fp32.

Usage: python benchmarks/bench_roofline.py [--size 256] [--batch 32] [--repeats 5] [--no-compile] [--json F]
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _median_rate(fn, units: float, repeats: int) -> float:
    fn()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        rates.append(units / (time.perf_counter() - start))
    return statistics.median(rates)


def roof(repeats: int) -> dict:
    """Peak GFLOP/s (matmul, dense 3×3 convolution; fp32, bf16) and copy bandwidth in GB/s."""
    out = {}
    n = 2048
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        out[f"matmul_{name}"] = _median_rate(lambda: a @ b, 2 * n ** 3 / 1e9, repeats)
        # a dense 3×3 convolution and a pointwise one (most of EfficientNet's arithmetic), channels-last
        for kernel, channels, side in ((3, 128, 56), (1, 384, 64)):
            conv = torch.nn.Conv2d(channels, channels, kernel, padding=kernel // 2, bias=False).to(
                dtype=dtype, memory_format=torch.channels_last)
            x = torch.randn(16, channels, side, side, dtype=dtype).contiguous(memory_format=torch.channels_last)
            flops = 2 * 16 * channels * channels * kernel * kernel * side * side / 1e9
            with torch.no_grad():
                rate = _median_rate(lambda: conv(x), flops, repeats)
            out[f"conv_{name}"] = max(out.get(f"conv_{name}", 0.0), rate)
    src = torch.empty(64 * 2 ** 20 // 4)  # 64 MB, far past the caches
    dst = torch.empty_like(src)
    out["copy_GBps"] = _median_rate(lambda: dst.copy_(src), 2 * src.numel() * 4 / 1e9, repeats)
    return out


class _Census(TorchDispatchMode):
    """Each operator's FLOPs (PyTorch's counter formulas) and bytes read and written, as the network runs."""

    def __init__(self):
        super().__init__()
        self.ops: list[tuple[str, float, float]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func._overloadpacket
        if packet is torch.ops.aten.convolution_backward:
            flops = _conv_backward_flops(*args)
        else:
            flops = float(flop_registry[packet](*args, **kwargs, out_val=out)) if packet in flop_registry else 0.0
        tensors = [t for t in torch.utils._pytree.tree_leaves((args, kwargs, out)) if isinstance(t, torch.Tensor)]
        moved = float(sum(t.numel() * t.element_size() for t in tensors))
        self.ops.append((str(packet), flops, moved))
        return out


def _conv_backward_flops(grad_out, _input, weight, *rest) -> float:
    """Each gradient a convolution's backward pass computes (input, weight) costs what its forward pass did:
    2 × output elements × (input channels per group × kernel area). PyTorch's counter leaves out the groups,
    which would count a depthwise convolution's backward as a dense one."""
    forward = 2.0 * grad_out.numel() * weight[0].numel()
    mask = rest[-1]
    return forward * (int(mask[0]) + int(mask[1]))


def census(step, *args) -> list[tuple[str, float, float]]:
    with _Census() as c:
        step(*args)
    return c.ops


def ceiling(ops, batch: int, gflops: float, gbps: float, byte_scale: float = 1.0) -> dict:
    """Images/s ceilings of a census at a compute roof and a bandwidth (bytes scaled for a narrower dtype).
    Only the operators that compute (convolutions, matrix products and their gradients) are timed: the
    normalisations, activations and adds between them are taken as fused into them, as a compiling engine
    does, so the ceiling is what a perfect engine could reach, not what eager PyTorch could."""
    flops = sum(f for _, f, _ in ops)
    roofline_s = sum(max(f / (gflops * 1e9), b * byte_scale / (gbps * 1e9)) for _, f, b in ops if f > 0)
    return {"gflop_per_image": flops / batch / 1e9, "compute_only": batch / (flops / (gflops * 1e9)),
            "roofline": batch / roofline_s}


def _feature_paths(model, x, compile_too: bool) -> dict:
    """Name → function of a normalised batch giving pooled features, for every way of running the backbone."""
    from imgcls.vision.engine import _Pooled

    plain = _Pooled(copy.deepcopy(model)).eval()
    cl = _Pooled(copy.deepcopy(model).to(memory_format=torch.channels_last)).eval()

    def cl_input(t):
        return t.contiguous(memory_format=torch.channels_last)

    paths = {"eager fp32 (before)": plain, "channels-last fp32": lambda t: cl(cl_input(t))}
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        def bf16(t):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return cl(cl_input(t)).float()
        paths["channels-last bf16 autocast"] = bf16
    if compile_too:
        started = time.perf_counter()
        compiled = torch.compile(cl)
        compiled(cl_input(x))
        paths[f"torch.compile fp32 (compiled in {time.perf_counter() - started:.0f} s)"] = lambda t: compiled(cl_input(t))
    paths.update(_converted_paths(plain, x))
    return paths


def _converted_paths(plain, x) -> dict:
    paths = {}
    folder = Path(tempfile.mkdtemp())
    try:
        import onnxruntime as ort
        onnx = folder / "features.onnx"
        torch.onnx.export(plain, (x[:2],), str(onnx), dynamo=True, input_names=["x"],
                          dynamic_shapes=({0: torch.export.Dim("batch")},))
        session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
        paths["ONNX Runtime fp32"] = lambda t: torch.from_numpy(session.run(None, {"x": t.numpy()})[0])
    except Exception as exc:  # noqa: BLE001 - a missing runtime is a row that says why
        print(f"ONNX Runtime skipped: {exc}", file=sys.stderr)
    try:
        import openvino as ov
        program = torch.export.export(plain, (x[:2],), dynamic_shapes=({0: torch.export.Dim("batch")},))
        model = ov.convert_model(program)
        for name, hint in (("fp32", "f32"), ("bf16", "bf16")):
            net = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                         "INFERENCE_NUM_THREADS": torch.get_num_threads()})
            paths[f"OpenVINO {name}"] = lambda t, net=net: torch.from_numpy(net(t.numpy())[0])
    except Exception as exc:  # noqa: BLE001
        print(f"OpenVINO skipped: {exc}", file=sys.stderr)
    return paths


def imgcls_features(model, images: np.ndarray, size: int):
    """imgcls's own feature path: vision.features.extract's choice of engine, without its disk store."""
    from imgcls.vision.engine import channels_last, compiled
    from imgcls.vision.features import embed

    fast = compiled(model, "features", size, 10 ** 6)
    cl = fast is None and channels_last(model)
    return lambda t: (fast or (lambda u: embed(model, u)))(t.contiguous(memory_format=torch.channels_last) if cl else t)


def _train_step(model, x, y, plain: bool, finetune: bool):
    """One optimiser step as imgcls trains (channels-last, bf16 autocast where the CPU has it) or plain fp32."""
    from imgcls.train.config import RunConfig
    from imgcls.train.loops import freeze_frozen_batchnorm
    from imgcls.train.netfit import param_groups
    from imgcls.vision.engine import cpu_bf16

    net = copy.deepcopy(model)
    config = RunConfig(strategy_name="finetune" if finetune else "full")
    opt = torch.optim.AdamW(param_groups(net, config), lr=1e-4)
    fast = not plain
    if fast:
        net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    bf16 = fast and not finetune and cpu_bf16()  # as imgcls.train.netfit._accel chooses

    def step():
        net.train()
        freeze_frozen_batchnorm(net)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def _jpegs(images: np.ndarray) -> list[bytes]:
    from PIL import Image

    out = []
    for arr in images:
        buf = io.BytesIO()
        Image.fromarray(arr).resize((500, 375)).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def _photos(n: int, side: int) -> np.ndarray:
    """Real photos where scikit-image has them (textures, not noise), tiled to n images of side×side."""
    from PIL import Image
    from skimage import data

    pics = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.hubble_deep_field()]
    squares = [np.asarray(Image.fromarray(p).convert("RGB").resize((side, side))) for p in pics]
    return np.stack([np.roll(squares[i % len(squares)], 7 * i, axis=1) for i in range(n)])


def measure(size: int, batch: int, repeats: int, compile_too: bool) -> dict:
    from imgcls.ingest.images import decode
    from imgcls.vision.imgcache import cache_size, to_tensor
    from imgcls.vision.infer import predict_arrays
    from imgcls.vision.models import create_model, data_config
    from imgcls.vision.preprocess import Preprocess

    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", 2).eval()
    dcfg = data_config(model)
    pre = Preprocess.from_data_config(dcfg, size)
    squares = _photos(batch, cache_size(size, pre.crop_pct))
    x = to_tensor(squares[:, :size, :size], pre.mean, pre.std)
    started = time.perf_counter()
    mine = imgcls_features(copy.deepcopy(model), squares, size)
    ready_s = time.perf_counter() - started
    paths = {**_feature_paths(model, x, compile_too), "imgcls (vision.engine)": mine}
    with torch.no_grad():
        reference = paths["eager fp32 (before)"](x)
        rows = {name: {"group": "features", "max_rel_diff": float((fn(x) - reference).abs().max() / reference.abs().max())}
                for name, fn in paths.items()}
    rows["imgcls (vision.engine)"]["ready_s"] = ready_s
    jpegs = _jpegs(squares)
    evaluate_model = copy.deepcopy(model)

    def eval_before():
        with torch.inference_mode():
            return model(to_tensor(squares[:, :size, :size], pre.mean, pre.std)).softmax(1)

    def predict(fn):
        return lambda: fn(np.stack([pre.prepare(decode(b)) for b in jpegs]))

    timed = {name: (lambda fn=fn: torch.no_grad()(fn)(x)) for name, fn in paths.items()}
    timed["evaluation: eager fp32 (before)"] = eval_before
    timed["evaluation: imgcls"] = lambda: predict_arrays(evaluate_model, squares, size, pre.mean, pre.std, "cpu",
                                                         expected=10 ** 6)
    timed["prediction batch: eager fp32 (before)"] = predict(
        lambda b: torch.inference_mode()(model)(to_tensor(b, pre.mean, pre.std)).softmax(1))
    timed["prediction batch: imgcls"] = predict(
        lambda b: predict_arrays(evaluate_model, b, size, pre.mean, pre.std, "cpu", expected=10 ** 6))
    y = torch.arange(batch) % 2
    for kind in ("finetune", "full"):
        for plain in (True, False):
            timed[f"{kind} step: {'fp32 (before)' if plain else 'imgcls'}"] = _train_step(
                model, x, y, plain, kind == "finetune")
    for name in timed:
        group = name.split(":")[0] if ":" in name else "features"
        rows.setdefault(name, {"group": group})
    rates = {name: [] for name in timed}
    for fn in timed.values():
        fn()  # warm: first calls pick kernels
    for _ in range(repeats):
        for name, fn in timed.items():
            start = time.perf_counter()
            fn()
            rates[name].append(batch / (time.perf_counter() - start))
    for name, r in rates.items():
        rows[name]["img_per_s"] = statistics.median(r)
    forward_ops = census(lambda t: torch.no_grad()(paths["eager fp32 (before)"])(t), x)
    train_ops = {kind: census(_train_step(model, x, y, True, kind == "finetune")) for kind in ("finetune", "full")}
    return {"rows": rows, "ops": {"forward": forward_ops, **train_ops}}


def report(roofs: dict, result: dict, batch: int, size: int) -> str:
    bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    peak32 = max(roofs["matmul_fp32"], roofs["conv_fp32"])
    peak16 = max(roofs["matmul_bf16"], roofs["conv_bf16"]) if bf16 else peak32
    # the ceiling is the compute one: the memory roof below uses the DRAM copy bandwidth, but an engine that
    # runs image by image keeps a layer's activations (2 MB at most here) in the caches, and beats it
    bw = roofs["copy_GBps"]
    lines = [f"Roof ({torch.get_num_threads()} threads): matmul fp32 {roofs['matmul_fp32']:.0f} GFLOP/s, bf16 "
             f"{roofs['matmul_bf16']:.0f}; 3×3 conv fp32 {roofs['conv_fp32']:.0f}, bf16 {roofs['conv_bf16']:.0f}; "
             f"copy {bw:.1f} GB/s.", ""]
    ceilings = {}
    for key, ops in result["ops"].items():
        c32 = ceiling(ops, batch, peak32, bw)
        c16 = ceiling(ops, batch, peak16, bw, 0.5)
        ceilings[key] = (c32, c16)
        lines.append(f"{key}: {c32['gflop_per_image']:.2f} GFLOP/image at {size} px; ceiling fp32 "
                     f"{c32['compute_only']:.0f} img/s, bf16 {c16['compute_only']:.0f} img/s (with the DRAM roof "
                     f"too: {c32['roofline']:.0f} and {c16['roofline']:.0f})")
    lines += ["", "| path | img/s | × before | of fp32 ceiling | of bf16 ceiling | max rel. diff |",
              "|---|---|---|---|---|---|"]
    before = {r["group"]: r["img_per_s"] for n, r in result["rows"].items() if "before" in n}
    for name, row in result["rows"].items():
        key = {"features": "forward", "evaluation": "forward", "prediction batch": "forward"}.get(row["group"],
                                                                                                 row["group"].split()[0])
        c32, c16 = ceilings[key]
        diff = f"{row['max_rel_diff']:.1e}" if "max_rel_diff" in row else ""
        lines.append(f"| {name} | {row['img_per_s']:.1f} | {row['img_per_s'] / before[row['group']]:.2f} | "
                     f"{row['img_per_s'] / c32['compute_only']:.0%} | {row['img_per_s'] / c16['compute_only']:.0%} | "
                     f"{diff} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true", help="leave torch.compile out (it compiles for minutes)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    roofs = roof(args.repeats)
    result = measure(args.size, args.batch, args.repeats, not args.no_compile)
    print(report(roofs, result, args.batch, args.size))
    if args.json:
        args.json.write_text(json.dumps({"roof": roofs, "rows": result["rows"]}, indent=2))


if __name__ == "__main__":
    main()
