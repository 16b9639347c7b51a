"""Images/s of the scale-out paths on this machine: Ray actors and a local tritonserver.

    python -m benchmarks.scale_out [--images 144] [--size 250] [--width 0.0625] [--out DIR]

One narrow FCN-8s (seeded random weights, exported to ONNX with a labels output) segments the
same JPEG files (a) in-process, the way fcn-segment does (one Segmenter, 1 and 2 threads), (b)
with ``ray_segment`` on a local Ray of 2 CPUs with 1 and 2 actors (1 CPU and 1 thread each), and
(c) if .venv-triton exists, through a local tritonserver (Python backend, ONNX Runtime with 1
thread per instance, 1 or 2 instances) with 1 and 2 concurrent clients. Images/s counts
reading, preprocessing, inference and writing the label PNGs for (a) and (b); (c) times the
requests as a client sees them (fcn-bench --concurrency). Ray's time includes starting the actors
(Ray itself is started before). Writes scale_out.json and scale_out.md into --out.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_model(work: Path, width: float) -> Path:
    from fcn_deploy.bench.paper.artifacts import build_model
    from fcn_deploy.export import export_model
    from fcn_deploy.meta import ModelMeta

    path = work / f"fcn8s_w{width:g}.onnx"
    model = build_model("fcn8s_vgg16", width=width, seed=0)
    meta = ModelMeta.default("fcn8s_vgg16", 21, arch_kwargs=dict(model.arch_kwargs))
    export_model(model, meta, path, outputs="labels", verify=False)
    return path


def make_images(folder: Path, count: int, size: int) -> None:
    import cv2

    from fcn_deploy.bench.artifact import random_images

    folder.mkdir(parents=True)
    for i, image in enumerate(random_images((count, 3, size, size), seed=1)):
        cv2.imwrite(str(folder / f"img{i:03d}.jpg"), image)


def local_rate(model: Path, images: Path, out: Path, threads: int) -> float:
    from fcn_deploy.imageio import collect_images, read_image
    from fcn_deploy.runtime import Segmenter
    from fcn_deploy.runtime.outputs import SegmentOutputs

    jobs, _ = collect_images([images])
    writer = SegmentOutputs()
    out.mkdir()
    with Segmenter.open(model, intra_op_threads=threads) as seg:
        seg.predict(read_image(jobs[0][0]))  # warm-up, as Ray's actors warm up on their first
        start = time.perf_counter()
        for path, stem in jobs:
            image = read_image(path)
            writer.write(seg, image, seg.predict(image), None, out, stem)
        return len(jobs) / (time.perf_counter() - start)


def ray_rate(model: Path, images: Path, out: Path, actors: int) -> float:
    from fcn_deploy.serve.ray_segment import RaySegmentOptions, ray_segment

    report = ray_segment([images], out, RaySegmentOptions(model=model, actors=actors,
                                                          resume=False, progress=False))
    assert not report.failed, report.failed
    return report.images_per_s


def triton_rates(model: Path, work: Path, size: int, requests: int) -> list[dict]:
    from fcn_deploy.bench.concurrent import bench_concurrent
    from fcn_deploy.serve.local_server import LocalTritonServer
    from fcn_deploy.serve.repository import TritonRepoOptions, write_triton_repository

    env = ROOT / ".venv-triton"
    if not (env / ".fcn-triton-installed").is_file():
        return []
    rows = []
    for instances in (1, 2):
        repo = work / f"repo{instances}"
        write_triton_repository(model, repo, TritonRepoOptions(
            name="fcn", backend="python", intra_op_threads=1, instance_count=instances))
        with LocalTritonServer(repository=repo, python_env=env) as server:
            for clients in (1, 2):
                r = bench_concurrent(f"triton://{server.http_url}/fcn", shape=(1, 3, size, size),
                                     concurrency=clients, requests=requests, warmup=2)
                rows.append({"path": f"triton, {instances} instance(s), {clients} client(s)",
                             "images_per_s": r.throughput,
                             "latency_median_ms": r.latency.median})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=144)
    p.add_argument("--size", type=int, default=250)
    p.add_argument("--width", type=float, default=0.0625)
    p.add_argument("--out", type=Path, default=Path("scale_out_bench"))
    args = p.parse_args()

    import ray

    from fcn_deploy.bench.report import cpu_name, load_avg_1min

    work = Path(tempfile.mkdtemp(prefix="fcn-scale-out-"))
    try:
        model = make_model(work, args.width)
        images = work / "images"
        make_images(images, args.images, args.size)
        rows = [{"path": f"in-process Segmenter, {t} thread(s)",
                 "images_per_s": local_rate(model, images, work / f"local{t}", t)}
                for t in (1, 2)]
        ray.init(num_cpus=2, object_store_memory=100 * 1024 * 1024, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
        try:
            rows += [{"path": f"Ray, {a} actor(s) x 1 CPU", "images_per_s":
                      ray_rate(model, images, work / f"ray{a}", a)} for a in (1, 2)]
        finally:
            ray.shutdown()
        rows += triton_rates(model, work, args.size, requests=args.images)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cpu = cpu_name()
    load = load_avg_1min()
    lines = [f"FCN-8s width {args.width:g}, {args.images} images {args.size}x{args.size}, "
             f"CPU: {cpu}, load average at the end {load}", "", "| path | images/s |",
             "|---|---|"]
    lines += [f"| {r['path']} | {r['images_per_s']:.1f} |" for r in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale_out.json").write_text(json.dumps({"cpu": cpu, "load_avg_1min": load, "rows": rows}, indent=2))
    (args.out / "scale_out.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
