"""Time the C++ runtime against the Python runtime on the same ONNX, image size and threads.

    python cpp/tools/bench_compare.py --size 500x500 --threads 2 --runs 30
    python cpp/tools/bench_compare.py --model fcn8s.onnx --size 500x500 --threads 2

Both sides time ``predict()`` on one image (preprocessing + network + argmax) after warm-up:
``fcn-segment-cpp --bench`` and ``fcn_deploy.runtime.Segmenter.predict``. Without ``--model`` a
small FCN-8s (width 1/16, random score layers) is exported to a temporary folder. The C++ side
runs twice, before and after Python, so drift on a shared machine shows.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    return {"min_ms": float(a.min()), "median_ms": float(p50), "mean_ms": float(a.mean()),
            "p90_ms": float(p90), "p99_ms": float(p99), "cv": std / float(a.mean())}


def export_small(folder: Path, arch: str, width: float) -> Path:
    import torch

    from fcn_deploy.export.api import export_model
    from fcn_deploy.models import create_model

    torch.manual_seed(0)
    model = create_model(arch, num_classes=21, width=width).eval()
    with torch.no_grad():
        for name in model.score_layers:
            layer = model.get_submodule(name)
            layer.weight.normal_(0.0, 0.1)
            layer.bias.normal_(0.0, 0.1)
    path = folder / f"{arch}_w{width:g}.onnx"
    export_model(model, None, path, outputs="scores", verify=False)
    return path


def bench_cpp(exe: Path, model: Path, h: int, w: int, threads: int, warmup: int, runs: int,
              folder: Path) -> dict[str, float]:
    out = folder / "cpp.json"
    subprocess.run([str(exe), "--model", str(model), "--bench", str(runs), "--warmup", str(warmup),
                    "--size", f"{h}x{w}", "--threads", str(threads), "--json", str(out)],
                   check=True, capture_output=True, text=True)
    return json.loads(out.read_text())


def bench_python(model: Path, h: int, w: int, threads: int, warmup: int, runs: int) -> dict[str, float]:
    from fcn_deploy.runtime import Segmenter

    seg = Segmenter.open(model, backend="onnxruntime", device="cpu", intra_op_threads=threads)
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    for _ in range(warmup):
        seg.predict(image)
    ms = []
    for _ in range(runs):
        t0 = time.perf_counter()
        seg.predict(image)
        ms.append((time.perf_counter() - t0) * 1e3)
    return stats(ms)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, help="ONNX model (default: export a small FCN-8s)")
    p.add_argument("--arch", default="fcn8s_vgg16")
    p.add_argument("--width", type=float, default=1 / 16)
    p.add_argument("--size", default="500x500", help="HxW")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--exe", type=Path, default=ROOT / "cpp" / "build" / "fcn-segment-cpp")
    args = p.parse_args()
    h, w = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = args.model or export_small(folder, args.arch, args.width)
        rows = [("C++", bench_cpp(args.exe, model, h, w, args.threads, args.warmup, args.runs, folder)),
                ("Python", bench_python(model, h, w, args.threads, args.warmup, args.runs)),
                ("C++ again", bench_cpp(args.exe, model, h, w, args.threads, args.warmup, args.runs, folder))]
    print(f"model {model.name}, image {h}x{w}, {args.threads} intra-op threads, "
          f"{args.warmup} warm-up + {args.runs} runs of predict()")
    print("| runtime | min ms | median ms | mean ms | p90 ms | p99 ms | cv |")
    print("|---|---|---|---|---|---|---|")
    for name, s in rows:
        print(f"| {name} | {s['min_ms']:.2f} | {s['median_ms']:.2f} | {s['mean_ms']:.2f} | "
              f"{s['p90_ms']:.2f} | {s['p99_ms']:.2f} | {100 * s['cv']:.1f}% |")
    cpp = min(rows[0][1]["median_ms"], rows[2][1]["median_ms"])
    print(f"median ratio Python / C++: {rows[1][1]['median_ms'] / cpp:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
