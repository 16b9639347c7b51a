"""What limits ONNX Runtime on this CPU: one graph timed under several session settings.

    python -m benchmarks.ort_options --onnx fcn8s.onnx --size 500 --runs 5 --threads 2
    python -m benchmarks.ort_options --arch fcn8s_vgg16 --size 500 --int8   # exports it first

Variants (each a fresh session): the default (all optimizations, which on x86 includes the
blocked NCHWc layout; pool threads stop spinning when a Run returns, as in every fcn_deploy
benchmark session), ONNX Runtime's own default of spinning on after a Run (with interleaved
sessions it takes a core from the next one), "extended" (no layout rewrite), "basic", spinning threads off, denormals
as zero, no memory arena / memory pattern, 1 thread, and the parallel executor. The variants run
**interleaved** (one run of each in turn), so a machine whose load changes during the
measurement shifts them all alike; the ratio column is what to read. Prints a Markdown table and
can write it with --markdown.

This is a harness (nothing imports it); it uses fcn_deploy's timing statistics and sessions.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fcn_deploy.bench.pipeline import make_ort_session
from fcn_deploy.cpu import int8_kernels
from fcn_deploy.bench.report import Column, markdown_table, write_text
from fcn_deploy.timing import summarize

#: name -> (graph optimization level, session config entries, threads override, options)
VARIANTS = {
    "default (all, NCHWc)": ("all", {}, None, {}),
    "keep spinning after Run": ("all", {"session.force_spinning_stop": "0"}, None, {}),
    "extended (no NCHWc)": ("extended", {}, None, {}),
    "basic": ("basic", {}, None, {}),
    "no spinning": ("all", {"session.intra_op.allow_spinning": "0"}, None, {}),
    "denormals as zero": ("all", {"session.set_denormal_as_zero": "1"}, None, {}),
    "no arena / mem pattern": ("all", {}, None, {"enable_cpu_mem_arena": False,
                                                 "enable_mem_pattern": False}),
    "1 thread": ("all", {}, 1, {}),
    "parallel executor": ("all", {}, None, {"parallel": True}),
}


def _session(path: Path, level: str, config: dict, threads: int, options: dict):
    import onnxruntime as ort

    if not options:
        return make_ort_session(path, threads=threads, level=level, session_config=config)
    so = ort.SessionOptions()
    so.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    for key, value in int8_kernels().session_config().items():  # as every fcn_deploy session
        so.add_session_config_entry(key, value)
    if options.get("parallel"):
        so.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        so.inter_op_num_threads = threads
    if "enable_cpu_mem_arena" in options:
        so.enable_cpu_mem_arena = options["enable_cpu_mem_arena"]
        so.enable_mem_pattern = options["enable_mem_pattern"]
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _export(arch: str, width: float, folder: Path, *, int8: bool) -> list[tuple[str, Path]]:
    from fcn_deploy.bench.paper.artifacts import build_model, export_variant, quantize_variant

    model = build_model(arch, width=width, seed=0)
    base = export_variant(model, folder, "base", seed=0).path
    out = [("fp32", base)]
    if int8:
        out.append(("int8", quantize_variant(base, shape=(1, 3, 96, 96), images=2, seed=0).path))
    return out


def run(graphs: list[tuple[str, Path]], *, size: int, runs: int, threads: int,
        variants: list[str]) -> list[dict]:
    x = (np.random.default_rng(0).integers(0, 256, (1, 3, size, size)) - 117.0).astype(np.float32)
    rows = []
    for tag, path in graphs:
        sessions = {}
        for name in variants:
            level, config, t, options = VARIANTS[name]
            sessions[name] = _session(path, level, config, t or threads, options)
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for s in sessions.values():  # warm-up
            s.run(None, {s.get_inputs()[0].name: x})
        for i in range(runs):
            for name, s in sessions.items():
                start = time.perf_counter()
                s.run(None, {s.get_inputs()[0].name: x})
                samples[name].append(time.perf_counter() - start)
            print(f"{tag} run {i + 1}/{runs}", file=sys.stderr, flush=True)
        base = summarize(samples[variants[0]])
        for name in variants:
            st = summarize(samples[name])
            rows.append({"graph": tag, "variant": name, **st.flat("compute"),
                         "vs_first": base.mean / st.mean})
        del sessions
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ort_options", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--onnx", type=Path, nargs="+", help="graphs to time")
    src.add_argument("--arch", help="export this registered model (random weights) first")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--int8", action="store_true", help="with --arch: also time its INT8 graph")
    p.add_argument("--work-dir", type=Path, default=None, help="keep exported graphs here")
    p.add_argument("--size", type=int, default=500)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                   metavar="VARIANT", help=f"any of: {', '.join(VARIANTS)}")
    p.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ort-options-") as tmp:
        if args.onnx:
            graphs = [(path.stem, path) for path in args.onnx]
        else:
            graphs = _export(args.arch, args.width, args.work_dir or Path(tmp), int8=args.int8)
        rows = run(graphs, size=args.size, runs=args.runs, threads=args.threads,
                   variants=args.variants)
    cols = [Column("graph", "graph"), Column("variant", "session setting"),
            Column("compute_mean_ms", "mean (ms)", "{:.1f}"),
            Column("compute_median_ms", "median (ms)", "{:.1f}"),
            Column("compute_min_ms", "min (ms)", "{:.1f}"),
            Column("compute_cv", "CV", "{:.1%}"),
            Column("vs_first", "speed vs default", "{:.2f}x")]
    table = markdown_table(rows, cols)
    print(table)
    if args.markdown:
        write_text(args.markdown, f"Input 1x3x{args.size}x{args.size}, {args.threads} threads, "
                                  f"{args.runs} interleaved runs per setting.\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
