"""fcn-bench: time a model artifact, or reproduce the paper's timings.

    fcn-bench --engine fcn8s.onnx --shape 1x3x500x500 --runs 20 --threads 2
    fcn-bench --engine model.pt --shape 1x3x250x250 --shape 1x3x500x500 --peak
    fcn-bench --engine fcn8s.onnx --memory --shape 1x3x4000x4000 --tile 1024
    fcn-bench --paper --output-dir paper_bench               # the full run (a while)
    fcn-bench --paper --quick --output-dir /tmp/quick        # structure check, seconds
    fcn-bench --paper --models fcn_alexnet fcn8s_vgg16 --sections table1 backends --runs 5

One artifact: min, median, mean, p90, p99, max, CV and throughput, end to end and compute alone,
GFLOP/s, written to <output-dir>/<name>.json (flat records) and <name>.md. The paper run writes
paper.json, paper.csv, paper.md and two PNG plots.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Sequence

from fcn_deploy.bench.artifact import BenchConfig, bench_artifact
from fcn_deploy.bench.concurrent import bench_concurrent
from fcn_deploy.bench.memory import measure_memory, memory_markdown
from fcn_deploy.bench.report import prepare_output_dir, write_json, write_text
from fcn_deploy.cli.common import (add_device_option, add_int8_kernels_option, add_threads_option,
                                   model_location, parse_shape, run_main)
from fcn_deploy.errors import FCNError
from fcn_deploy.fileio import RunFiles
from fcn_deploy.runtime.registry import default_backend, list_backends, thread_options, url_scheme


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fcn-bench", allow_abbrev=False,
        description="Benchmark an FCN artifact (model.pt, .onnx, .plan), or reproduce the "
                    "paper's timing results with --paper.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--engine", "-m", "--model", dest="engine", type=model_location,
                      help="artifact to time: .plan (TensorRT), .onnx or model.pt; or a served "
                           "model's URL (triton://host:8000/name), timed as its clients see it")
    what.add_argument("--paper", action="store_true",
                      help="run the paper reproduction (Table 1, section 3.1, backends, export "
                           "optimizations, latency curve, targets)")
    p.add_argument("--output-dir", "-o", type=Path, default=None,
                   help="folder for the reports (created if its parent exists; default: . for "
                        "--engine, ./paper_bench for --paper)")
    p.add_argument("--runs", type=int, default=None,
                   help="timed runs (default 20, as the paper averaged 20 trials; 3 with --quick)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed warm-up runs first (default 2; 1 with --quick)")
    add_threads_option(p)
    one = p.add_argument_group("one artifact (--engine)")
    one.add_argument("--backend", choices=list_backends(), default=None,
                     help="runtime backend (default: from the file: .onnx -> onnxruntime, "
                          ".plan -> tensorrt, .pt -> torch)")
    one.add_argument("--shape", type=parse_shape, action="append", default=None,
                     help="input shape NxCxHxW; repeat for several (default 1x3x500x500)")
    one.add_argument("--output", choices=("labels", "scores"), default=None,
                     help="network output to fetch (default: labels when the graph has them, "
                          "else scores + argmax on the host)")
    one.add_argument("--peak", action="store_true",
                     help="also measure the machine's FP32 matrix-product peak at --threads and "
                          "report the fraction of it reached")
    one.add_argument("--concurrency", type=int, default=None,
                     help="N clients sending requests at once (one Segmenter each): client-side "
                          "latency and total throughput over --runs requests in all "
                          "(default 1 for a URL)")
    one.add_argument("--memory", action="store_true",
                     help="instead of timing, measure the peak resident memory (and time) of one "
                          "image of each --shape segmented whole and in tiles, each in a fresh "
                          "process")
    one.add_argument("--tile", type=int, default=None, metavar="N",
                     help="tile size of the --memory tiled run (default 1024)")
    one.add_argument("--name", default=None,
                     help="report file name without extension (default bench_<artifact stem>)")
    add_device_option(one)
    add_int8_kernels_option(one)
    paper = p.add_argument_group("paper reproduction (--paper)")
    paper.add_argument("--quick", action="store_true",
                       help="tiny widths, small inputs, few runs: checks the harness (CI), "
                            "not speed")
    paper.add_argument("--models", nargs="+", default=None,
                       help="models to run (default: fcn_alexnet fcn32s_vgg16 fcn16s_vgg16 "
                            "fcn8s_vgg16 fcn_googlenet)")
    paper.add_argument("--sections", nargs="+", default=None,
                       help="sections to run: table1 patchwise backends export scaling "
                            "(default all)")
    paper.add_argument("--width", type=float, default=None,
                       help="channel width multiplier (default 1 = the reference nets; 1/16 quick)")
    paper.add_argument("--size", type=int, default=None,
                       help="square input size (default 500; 96 quick)")
    paper.add_argument("--scaling-sizes", type=int, nargs="+", default=None,
                       help="sizes of the latency curve (default 250 375 500 750 1000)")
    paper.add_argument("--scaling-runs", type=int, default=None,
                       help="timed runs per latency-curve point (default 3)")
    paper.add_argument("--paper-backend", choices=("onnxruntime", "torch"), default="onnxruntime",
                       help="backend of Table 1, section 3.1 and the curve (default onnxruntime)")
    paper.add_argument("--calibration-images", type=int, default=None,
                       help="random images to calibrate the INT8 graphs on (default 2)")
    paper.add_argument("--work-dir", type=Path, default=None,
                       help="keep exported graphs here and reuse them in later runs (default: a "
                            "hidden folder in --output-dir, removed at the end)")
    paper.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    return p


def _check_paper_only(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.engine is not None:
        paper_only = {"quick": False, "models": None, "sections": None, "width": None,
                      "size": None, "scaling_sizes": None, "scaling_runs": None,
                      "calibration_images": None, "work_dir": None}
        used = [k for k, v in paper_only.items() if getattr(args, k) != v]
        if used:
            parser.error(f"--{used[0].replace('_', '-')} applies to --paper only")
    else:
        engine_only = {"backend": None, "shape": None, "output": None, "peak": False,
                       "name": None, "device": None, "concurrency": None, "int8_kernels": None,
                       "memory": False, "tile": None}
        used = [k for k, v in engine_only.items() if getattr(args, k) != v]
        if used:
            parser.error(f"--{used[0].replace('_', '-')} applies to --engine only")


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_paper_only(args, parser)
    if args.paper:
        return _paper(args, argv)
    return _one(args)


def _output_dir(args: argparse.Namespace, name: str) -> Path:
    """The report folder, after checking that ``<name>.json``/``.md`` overwrite no input (the
    model file, or its external weights) before any work or folder is made."""
    out_dir = args.output_dir or Path(".")
    plan = RunFiles("fcn-bench")
    if not url_scheme(args.engine):
        plan.read_model("model", Path(args.engine))
    plan.write("JSON report", out_dir / f"{name}.json")
    plan.write("Markdown report", out_dir / f"{name}.md")
    if plan.conflicts():
        plan.check()  # raises with the reason
    out_dir = prepare_output_dir(out_dir)
    plan.check()  # the reports' own folder (a --name with a '/') is writable, before the work
    return out_dir


def _concurrent(args: argparse.Namespace) -> int:
    concurrency = 1 if args.concurrency is None else args.concurrency
    if concurrency < 1:
        raise FCNError(f"--concurrency must be >= 1, got {concurrency}")
    if args.peak or args.output or (args.shape and len(args.shape) > 1):
        raise FCNError("--concurrency and URLs take one --shape and no --peak/--output")
    backend = args.backend or default_backend(args.engine)
    options = thread_options(backend, args.threads)
    if args.device is not None:
        options["device"] = args.device
    shape = args.shape[0] if args.shape else (1, 3, 500, 500)
    stem = str(args.engine).rstrip("/").rsplit("/", 1)[-1] if url_scheme(args.engine) \
        else Path(args.engine).stem
    name = args.name or f"bench_{stem}_c{concurrency}"
    out = _output_dir(args, name)
    if not args.quiet:
        print(f"fcn-bench: {args.engine} with {concurrency} concurrent clients",
              file=sys.stderr)
    result = bench_concurrent(args.engine, shape=shape, concurrency=concurrency,
                              requests=20 if args.runs is None else args.runs,
                              warmup=2 if args.warmup is None else args.warmup,
                              backend=backend, options=options)
    return _report(result, out, name)


def _report(result, out: Path, name: str) -> int:
    """Write ``<name>.json`` (flat records) and ``<name>.md``; print the table."""
    markdown = result.markdown()
    json_path = write_json(out / f"{name}.json", result.records())
    md_path = write_text(out / f"{name}.md", markdown)
    print(markdown)
    print(f"wrote {json_path} and {md_path}")
    return 0


def _one(args: argparse.Namespace) -> int:
    if args.memory or args.tile is not None:
        return _memory(args)
    if args.concurrency is not None or url_scheme(args.engine):
        return _concurrent(args)
    config = BenchConfig(shapes=args.shape, warmup=2 if args.warmup is None else args.warmup,
                         runs=20 if args.runs is None else args.runs, threads=args.threads,
                         backend=args.backend, device=args.device, output=args.output,
                         peak=args.peak, progress=not args.quiet,
                         int8_kernels=args.int8_kernels)
    name = args.name or f"bench_{Path(args.engine).stem}"
    out = _output_dir(args, name)
    if not args.quiet:
        print(f"fcn-bench: {args.engine} ({len(config.shapes)} shape(s), {config.warmup} "
              f"warm-up + {config.runs} runs each)", file=sys.stderr)
    result = bench_artifact(args.engine, config)
    return _report(result, out, name)


def _memory(args: argparse.Namespace) -> int:
    if not args.memory:
        raise FCNError("--tile sets the tile size of --memory; add --memory")
    tile = 1024 if args.tile is None else args.tile
    if tile < 1:
        raise FCNError(f"--tile must be a positive number of pixels, got {tile}")
    if not Path(args.engine).is_file():
        raise FCNError(f"model {args.engine} does not exist (--memory measures a local file)")
    shapes = args.shape or [(1, 3, 4000, 4000)]
    if any(s[0] != 1 or s[1] != 3 for s in shapes):
        raise FCNError("--memory measures one image: give shapes 1x3xHxW")
    name = args.name or f"memory_{Path(args.engine).stem}"
    out = _output_dir(args, name)
    records = []
    for _, _, height, width in shapes:
        if not args.quiet:
            print(f"fcn-bench: peak memory of {args.engine} on one {height}x{width} image, whole "
                  f"and in {tile} px tiles", file=sys.stderr)
        records += measure_memory(args.engine, height=height, width=width, tile=tile,
                                  backend=args.backend, threads=args.threads, device=args.device)
    markdown = memory_markdown(records)
    from dataclasses import asdict

    json_path = write_json(out / f"{name}.json", [asdict(r) for r in records])
    md_path = write_text(out / f"{name}.md", markdown + "\n")
    print(markdown)
    print(f"wrote {json_path} and {md_path}")
    return 0


def _paper(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    try:
        from fcn_deploy.bench.paper import PaperConfig, run_paper
        from fcn_deploy.bench.paper.targets import format_measured
    except ImportError as exc:
        raise FCNError(f"the paper reproduction needs PyTorch to build the models ({exc}); "
                       "install fcn-deploy[torch]") from None
    command = "fcn-bench " + " ".join(shlex.quote(a) for a in
                                      (argv if argv is not None else sys.argv[1:]))
    config = PaperConfig(quick=args.quick, models=args.models, sections=args.sections,
                         width=args.width, size=args.size, runs=args.runs, warmup=args.warmup,
                         scaling_sizes=args.scaling_sizes, scaling_runs=args.scaling_runs,
                         backend=args.paper_backend, threads=args.threads,
                         calibration_images=args.calibration_images, work_dir=args.work_dir,
                         progress=not args.quiet, plots=not args.no_plots, command=command)
    report = run_paper(config, args.output_dir or Path("paper_bench"))
    targets = [r for r in report.records if r["kind"] == "target"]
    for t in targets:
        verdict = {True: "holds", False: "DOES NOT HOLD", None: "n/a"}[t["holds"]]
        print(f"target: {t['description']}: {format_measured(t)} -> {verdict}. {t['note']}")
    for key in ("markdown", "json", "csv", "scaling_png", "table1_png"):
        if key in report.files:
            print(f"wrote {report.files[key]}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
