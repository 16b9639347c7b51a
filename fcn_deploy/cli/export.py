"""fcn-export: checkpoint -> verified ONNX graph (dynamic batch/height/width), FP32 or FP16."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from fcn_deploy.cli.common import add_quiet_option, add_threads_option, parse_shape, run_main
from fcn_deploy.evaluate import export_compared
from fcn_deploy.export import (DEFAULT_EXPORTER, DEFAULT_OPSET, MAX_OPSET, MIN_OPSET,
                               ExportOptions, export_checkpoint)
from fcn_deploy.export.torch_export import EXPORTERS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fcn-export",
        description="Export an fcn-deploy checkpoint to ONNX with dynamic batch/height/width, "
                    "optimize it for deployment and verify it against PyTorch with ONNX Runtime. "
                    "Verification failure exits non-zero and leaves no file.")
    p.add_argument("checkpoint", help="checkpoint written by fcn-train / save_checkpoint (.pt)")
    p.add_argument("-o", "--output", required=True, help="output .onnx path (folder must exist)")
    p.add_argument("--outputs", choices=("scores", "labels", "both"), default="scores",
                   help="graph outputs: float32 class scores NxCxHxW, a uint8 label map NxHxW "
                        "(argmax in the graph, 4*C times less to copy off the device), or both "
                        "(default: scores)")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp32",
                   help="fp16: FP16 weights and arithmetic, FP32 input/outputs (for TensorRT FP16 "
                        "engines); default fp32")
    p.add_argument("--opset", type=int, default=None,
                   help=f"ONNX opset, {MIN_OPSET}..{MAX_OPSET} (default {DEFAULT_OPSET})")
    p.add_argument("--exporter", choices=tuple(EXPORTERS), default=None,
                   help=f"PyTorch exporter (default {DEFAULT_EXPORTER}; dynamo cannot export "
                        "FCN-AlexNet with dynamic sizes in torch 2.13)")
    p.add_argument("--sample-shape", type=parse_shape, default=None, metavar="NxCxHxW",
                   help="input used for tracing (default 1x3x96x128); sizes stay dynamic")
    p.add_argument("--verify-shape", type=parse_shape, action="append", default=None,
                   metavar="NxCxHxW", help="input shape to verify (repeatable; default: the sample "
                   "shape, an odd smaller batch of 2 and an odd larger size)")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip the checker and the ONNX Runtime vs PyTorch comparison")
    p.add_argument("--atol", type=float, default=None, help="absolute score tolerance "
                   "(default 1e-5 fp32, 1e-3 fp16)")
    p.add_argument("--rtol", type=float, default=None, help="tolerance relative to max|scores| "
                   "(default 1e-4 fp32, 1e-2 fp16)")
    p.add_argument("--no-simplify", dest="simplify", action="store_false",
                   help="skip onnxslim (constant folding, shape-subgraph cleanup)")
    p.add_argument("--no-depthwise-upsampling", dest="depthwise_upsampling",
                   action="store_false", help="keep channel-diagonal ConvTranspose layers full "
                   "C x C instead of grouped (group=C)")
    p.add_argument("--no-crop-folding", dest="fold_crops", action="store_false",
                   help="compute the whole upsampled map instead of starting at the crop offset")
    p.add_argument("--external-data", choices=("auto", "yes", "no"), default="auto",
                   help="weights in <output>.data next to the graph: auto = only above 2 GiB")
    p.add_argument("--eval-dataset", default=None, metavar="SPEC",
                   help="with --precision fp16: measure label agreement with FP32 and the change "
                        "in mean IU on this labelled dataset (e.g. synthetic:20)")
    p.add_argument("--eval-limit", type=int, default=None, help="use at most N images")
    add_threads_option(p)
    add_quiet_option(p)
    return p


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    external = {"auto": None, "yes": True, "no": False}[args.external_data]
    options = ExportOptions(
        opset=args.opset, outputs=args.outputs, precision=args.precision, exporter=args.exporter,
        sample_shape=args.sample_shape, verify=args.verify, verify_sizes=args.verify_shape,
        atol=args.atol, rtol=args.rtol, simplify=args.simplify,
        depthwise_upsampling=args.depthwise_upsampling, fold_crops=args.fold_crops,
        external_data=external, threads=args.threads, progress=not args.quiet)
    if args.eval_dataset is None:
        report = export_checkpoint(args.checkpoint, args.output, options=options)
    else:  # the comparison runs the graphs through the runtime: one floor above the export
        report = export_compared(args.checkpoint, args.output, options=options,
                                 eval_dataset=args.eval_dataset, eval_limit=args.eval_limit)
    print(report.summary())
    sys.stdout.flush()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
