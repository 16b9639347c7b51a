"""``python -m fcn_deploy.cli.speed``: INT8 vs FP32 speed (and score error) on the CPU.

The measurement (``measure_speed``) and the score comparison (``int8_score_errors``) are in
:mod:`fcn_deploy.quantize.speed`; this module parses the command line, calls one of them and
prints the table (docs/quantize.md, "CPU speed: INT8 vs FP32 in ONNX Runtime").
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from fcn_deploy.cli.common import run_main
from fcn_deploy.cpu import cpu_features
from fcn_deploy.quantize.speed import int8_score_errors, measure_speed, speed_table


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
        cpu = cpu_features()
        errors = int8_score_errors(*args.compare, args.dataset, threads=args.threads)
        print(f"{args.compare[1]} vs {args.compare[0]} on {args.dataset}, {cpu.name} "
              f"({cpu.describe_int8()}); relative RMS of the scores: fast kernels "
              f"{errors['int8']:.4f}, exact U8U8 kernels {errors['int8 exact']:.4f}, Q/DQ float "
              f"reference {errors['reference']:.4f}")
        return 0

    # a temporary work folder is removed when the run ends, on errors and SIGTERM (run_main) too
    rows = measure_speed(args.arch, size=args.size, width=args.width, runs=args.runs,
                         warmup=args.warmup, threads=args.threads, work_dir=args.work_dir,
                         keep_float=args.keep_float, profile=args.profile,
                         log=lambda line: print(line, flush=True))
    print("\n" + speed_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))  # FCNError -> one line, exit 2, as every command
