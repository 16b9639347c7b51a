"""fcn-quantize: calibrate an FP32 ONNX graph into an INT8 Q/DQ graph that TensorRT accepts."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from fcn_deploy.cli.common import add_quiet_option, add_seed_option, run_main


def build_parser() -> argparse.ArgumentParser:
    # lazy: fcn_deploy.quantize imports onnx (importing the command module stays light)
    from fcn_deploy.quantize.calibration import SOURCE_HELP
    from fcn_deploy.quantize.ptq import DEFAULT_EXCLUDE, KINDS, METHODS

    p = argparse.ArgumentParser(
        prog="fcn-quantize",
        description="INT8 post-training quantization (explicit Q/DQ for TensorRT): symmetric "
                    "int8, per-channel Conv weights, per-tensor activations, float biases. The "
                    "result is checked against TensorRT's Q/DQ rules and written atomically.")
    p.add_argument("model", help="FP32 ONNX graph (from fcn-export)")
    p.add_argument("-o", "--output", required=True, help="INT8 ONNX file to write")
    p.add_argument("--calib", required=True, metavar="SOURCE", help=f"calibration images: {SOURCE_HELP}")
    p.add_argument("--method", choices=METHODS, default="percentile",
                   help="calibration statistics (default: percentile)")
    p.add_argument("--percentile", type=float, default=99.99,
                   help="percentile of |activation| for --method percentile (default: 99.99)")
    p.add_argument("--num-images", type=int, default=None,
                   help="use at most this many calibration images (default: all; 32 for 'synthetic')")
    p.add_argument("--keep-float", nargs="*", choices=KINDS, default=None, metavar="KIND",
                   help=f"layer kinds kept in float, any of {', '.join(KINDS)} (default: "
                        f"{' '.join(DEFAULT_EXCLUDE)}); give it with no kind to quantize all")
    p.add_argument("--exclude", action="append", default=[], metavar="NAME",
                   help="keep this node or layer in float (node name or layer name such as "
                        "score_fr; shell patterns allowed); repeatable")
    p.add_argument("--calibration-cache", default=None, metavar="JSON",
                   help="reuse (or write) calibration ranges in this file")
    add_quiet_option(p)
    add_seed_option(p)
    return p


def _main(argv: Sequence[str] | None) -> int:
    import warnings

    # lazy: fcn_deploy.quantize imports onnx
    from fcn_deploy.quantize.ptq import QuantizeConfig, quantize_onnx

    args = build_parser().parse_args(argv)
    config = QuantizeConfig(method=args.method, percentile=args.percentile,
                            num_images=args.num_images, exclude_kinds=args.keep_float,
                            exclude_names=args.exclude, progress=not args.quiet,
                            calibration_cache=args.calibration_cache)
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # shown as "warning: ..." by run_main
        result = quantize_onnx(args.model, args.output, args.calib, config=config, seed=args.seed)
    kept = ", ".join(result.excluded_nodes) or "none"
    if result.cache_used is not None:
        source = (f"{result.method} ranges from the calibration cache {result.cache_used} "
                  f"(made on the same {result.num_images} --calib images; no calibration run)")
    else:
        source = (f"{result.method} calibration on {result.num_images} images"
                  + (f" ({len(result.skipped_images)} skipped)" if result.skipped_images else ""))
    print(f"wrote {result.output}: {len(result.quantized_nodes)} conv layers in INT8, float: "
          f"{kept}; {source} in {result.seconds:.1f} s; TensorRT Q/DQ rules: ok")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
