"""``python -m fcn_deploy.cli.speed``: INT8 vs FP32 speed (and score error) on the CPU.

The pieces (graph preparation, sessions, op counts, profiling, score errors) are in
:mod:`fcn_deploy.quantize.speed`; this module parses the command line and prints the table
(docs/quantize.md, "CPU speed: INT8 vs FP32 in ONNX Runtime").
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from fcn_deploy.cli.common import run_main
from fcn_deploy.quantize.speed import (
    cpu_session, int8_score_errors, optimized_op_counts, prepare_pair, profile_by_op, relative_rms,
    speed_input, time_sessions)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fcn_deploy.cli.speed",
                                description="INT8/FP32 ONNX Runtime CPU speed ratio at SxS")
    p.add_argument("--arch", nargs="+", default=["fcn8s_vgg16", "fcn_alexnet"])
    p.add_argument("--size", type=int, default=500)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--work-dir", default=None, help="where the graphs are kept (default: a temp dir)")
    p.add_argument("--profile", action="store_true",
                   help="also print where the INT8 graph spends its time, by op type")
    p.add_argument("--keep-float", nargs="*", default=None,
                   help="layer kinds kept in float (default: the quantizer's default)")
    p.add_argument("--compare", nargs=2, metavar=("FP32", "INT8"), default=None,
                   help="instead of timing: the INT8 graph's score error vs the FP32 graph's on "
                        "--dataset, with fast and exact int8 kernels and the float reference")
    p.add_argument("--dataset", default="synthetic:20:seed=2000",
                   help="images for --compare (default synthetic:20:seed=2000)")
    args = p.parse_args(argv)
    if args.compare:
        from fcn_deploy.cpu import cpu_features

        cpu = cpu_features()
        errors = int8_score_errors(*args.compare, args.dataset, threads=args.threads)
        print(f"{args.compare[1]} vs {args.compare[0]} on {args.dataset}, {cpu.name} "
              f"({cpu.describe_int8()}); relative RMS of the scores: fast kernels "
              f"{errors['int8']:.4f}, exact U8U8 kernels {errors['int8 exact']:.4f}, Q/DQ float "
              f"reference {errors['reference']:.4f}")
        return 0

    from fcn_deploy.cpu import cpu_features
    from fcn_deploy.quantize.ptq import QuantizeConfig

    # a temporary folder is removed when the run ends, on errors and SIGTERM (run_main) too
    owned = None if args.work_dir else tempfile.TemporaryDirectory(prefix="fcn-speed.")
    work = Path(args.work_dir) if args.work_dir else Path(owned.name)
    x = speed_input(args.size)
    cpu = cpu_features()
    print(f"CPU: {cpu.name} ({cpu.describe_int8()}); int8 = ONNX Runtime's fast kernels, "
          "int8 exact = session.x64quantprecision=1 (U8U8)")
    rows = []
    for arch in args.arch:
        config = QuantizeConfig(progress=False, exclude_kinds=args.keep_float)
        t0 = time.perf_counter()
        pair = prepare_pair(arch, work, width=args.width, config=config)
        prep = time.perf_counter() - t0
        ops = optimized_op_counts(pair.int8)
        sessions = {"fp32": cpu_session(pair.fp32, threads=args.threads),
                    "int8": cpu_session(pair.int8, threads=args.threads, int8_kernels="fast"),
                    "int8 exact": cpu_session(pair.int8, threads=args.threads,
                                              int8_kernels="exact")}
        outs: dict[str, np.ndarray] = {}
        stats = time_sessions(sessions, x, warmup=max(args.warmup, 1), runs=args.runs,
                              outputs=outs)
        fp, q, qx = (stats[k] for k in ("fp32", "int8", "int8 exact"))
        ratio = fp.median / q.median
        del sessions
        # the Q/DQ graph without integer kernels (evaluated in float): what exact kernels match
        reference = cpu_session(pair.int8, threads=args.threads, opt_level="disable").run(
            None, {"image": x})[0]
        rms = {k: relative_rms(outs[k], outs["fp32"]) for k in ("int8", "int8 exact")}
        rms["reference"] = relative_rms(reference, outs["fp32"])
        rows.append((arch, fp, q, ratio, qx, rms))
        print(f"{arch} (width {args.width:g}) at {args.size}x{args.size}: prepared in {prep:.0f} s;"
              f" {pair.quantized_layers} conv layers INT8, float: {pair.float_layers}")
        print(f"  ORT runs: {dict(sorted(ops.items()))}")
        print(f"  fp32 median {fp.median:.0f} ms (min {fp.min:.0f}, cv {fp.cv:.3f}); "
              f"int8 median {q.median:.0f} ms (min {q.min:.0f}, cv {q.cv:.3f}); "
              f"INT8/FP32 speed-up {ratio:.2f}x over {args.runs} interleaved runs", flush=True)
        print(f"  int8 exact median {qx.median:.0f} ms (min {qx.min:.0f}), speed-up "
              f"{fp.median / qx.median:.2f}x; relative RMS of the scores vs FP32: "
              f"int8 {rms['int8']:.4f}, int8 exact {rms['int8 exact']:.4f}, Q/DQ float reference "
              f"{rms['reference']:.4f}", flush=True)
        if args.profile:
            prof = profile_by_op(pair.int8, x, threads=args.threads)
            total = sum(prof.values())
            print("  INT8 time by op: " + ", ".join(
                f"{op} {ms:.0f} ms ({100 * ms / total:.0f}%)" for op, ms in prof.items()
                if ms >= 0.005 * total), flush=True)
    print("\n| model | FP32 median ms | INT8 median ms | speed-up | INT8 exact median ms | "
          "speed-up | rel. RMS vs FP32 (INT8 / exact / reference) |\n"
          "|---|---:|---:|---:|---:|---:|---|")
    for arch, fp, q, ratio, qx, rms in rows:
        print(f"| {arch} | {fp.median:.0f} | {q.median:.0f} | {ratio:.2f}x | "
              f"{qx.median:.0f} | {fp.median / qx.median:.2f}x | "
              f"{rms['int8']:.4f} / {rms['int8 exact']:.4f} / {rms['reference']:.4f} |")
    return 0



if __name__ == "__main__":
    sys.exit(run_main(main))  # FCNError -> one line, exit 2, as every command
