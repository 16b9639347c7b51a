"""fcn-eval: score ONNX graphs or model.pt checkpoints on a labelled dataset and compare them."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from fcn_deploy.cli.common import (add_device_option, add_int8_kernels_option, add_quiet_option,
                                   add_seed_option, add_threads_option, run_main)
from fcn_deploy.evaluate import compare_models, report_paths
from fcn_deploy.fileio import RunFiles


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fcn-eval",
        description="Evaluate models on a labelled dataset with the four FCN metrics (mean IU, "
                    "pixel accuracy, mean accuracy, frequency weighted IU). With several models "
                    "the first is the reference: the table adds the label-map agreement with it "
                    "and the per-class IU change (e.g. FP32 vs FP16 vs INT8). Multi-input nets "
                    "get every input from the dataset (synthetic-rgbd, nyud:); multi-head nets "
                    "are scored per head (the first head's figures are the headline).")
    p.add_argument("models", nargs="+", help=".onnx graphs (any precision) or model.pt checkpoints")
    p.add_argument("--dataset", required=True,
                   help="dataset spec, e.g. synthetic:50, voc:/data/VOCdevkit:val, "
                        "folder:images,masks, siftflow:DIR:test, nyud:DIR:val, synthetic-rgbd:20")
    p.add_argument("-o", "--output", default=None,
                   help="write the Markdown report here and its JSON next to it (.json); "
                        "a .json path gets the JSON, the Markdown beside it (.md)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    p.add_argument("--backend", default=None,
                   help="runtime backend (default: chosen from the file: onnxruntime, torch, "
                        "tensorrt)")
    add_quiet_option(p)
    add_threads_option(p)
    add_device_option(p)
    add_int8_kernels_option(p)
    add_seed_option(p)
    return p


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.output:  # checked before the (long) evaluation, not after it
        plan = RunFiles("fcn-eval")
        for model in args.models:
            plan.read_model("model", model)
        md, js = report_paths(args.output)
        plan.write("report", md)
        plan.write("JSON report", js)
        plan.check()
    report = compare_models(args.models, args.dataset, backend=args.backend,
                            max_images=args.limit, threads=args.threads,
                            progress=not args.quiet, seed=args.seed,
                            device=args.device, int8_kernels=args.int8_kernels)
    print(report.to_markdown())
    if args.output:
        md, js = report.write(args.output)
        print(f"wrote {md} and {js}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
