"""Export time on this CPU: a linear EfficientNet-Lite0 run on a tiny generated dataset, exported with every
format whose converter is installed, in one process, then once more (the first export also pays for
importing the converters). Prints each format's seconds and its largest difference from the app.

Usage: python benchmarks/bench_export.py [--img-size 224] [--formats tflite,coreml|none]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _png(colour, rng) -> bytes:
    arr = np.clip(np.array(colour) + rng.integers(-40, 40, (96, 96, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--formats", default=None, help="optional formats, comma-separated, or none")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-export-"))
    os.environ["IMGCLS_HOME"] = str(root / "home")
    from imgcls.evaluate.export import export_run
    from imgcls.evaluate.predict import Predictor
    from imgcls.ingest.imports import import_files
    from imgcls.train.run import TrainConfig, prepare_run, run

    rng = np.random.default_rng(0)
    for label, colour in (("red", (220, 40, 40)), ("blue", (40, 40, 220))):
        import_files([(f"{label}{i}.png", _png(colour, rng)) for i in range(10)], "toy", label)
    run_id = prepare_run(TrainConfig(dataset="toy", strategy="linear", epochs=2, img_size=args.img_size))
    run(run_id, echo=lambda _: None)
    predictor = Predictor(run_id, check_familiar=False)
    only = None if args.formats is None else {f for f in args.formats.split(",") if f and f != "none"}
    for attempt in ("first", "second"):
        start = time.perf_counter()
        out = export_run(run_id, root / attempt, predictor, only=only)
        total = time.perf_counter() - start
        rows = json.loads((out / "formats.json").read_text())
        parts = ", ".join(f"{r['format']} {r['seconds']:.1f} s" + (f" (Δ {r['parity']:.1e})" if r["parity"] is not None
                                                                    else "") for r in rows if r["shipped"])
        print(f"{attempt} export at {args.img_size} px: {total:.1f} s in all; {parts}")


if __name__ == "__main__":
    main()
