"""``python -m fcn_deploy.cli.sensitivity``: accuracy of INT8 variants against the FP32 graph.

The measurement is :func:`fcn_deploy.quantize.sensitivity.measure_sensitivity`; this module only
parses the command line (docs/quantize.md, "Which layers to keep in float").
"""
from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any, Sequence

from fcn_deploy.cli.common import run_main
from fcn_deploy.datasets import create_dataset
from fcn_deploy.quantize.calibration import open_calibration_source
from fcn_deploy.quantize.ptq import METHODS, load_fp32_graph, model_meta
from fcn_deploy.quantize.sensitivity import format_table, measure_sensitivity


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fcn_deploy.cli.sensitivity",
                                description="accuracy of INT8 variants (layers kept in float, "
                                            "calibration methods) against the FP32 graph")
    p.add_argument("model", help="FP32 ONNX graph")
    p.add_argument("--calib", required=True, help="calibration source (as fcn-quantize --calib)")
    p.add_argument("--dataset", required=True, help="labelled evaluation dataset spec")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--percentile", type=float, default=99.99, help="for --methods percentile")
    p.add_argument("--limit", type=int, default=None, help="evaluate on the first N images")
    p.add_argument("--seed", type=int, default=None, help="seed of a synthetic --dataset")
    p.add_argument("--calib-seed", type=int, default=None, help="seed of a synthetic --calib")
    args = p.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta = model_meta(load_fp32_graph(args.model), args.model)
    reader = open_calibration_source(args.calib, mean=meta.mean, channel_order=meta.channel_order,
                                     seed=args.calib_seed, progress=False)
    data: Any = args.dataset
    if args.seed is not None:
        data = create_dataset(args.dataset, seed=args.seed)
    miou, rows = measure_sensitivity(args.model, reader, data, methods=args.methods,
                                     percentile=args.percentile, max_images=args.limit,
                                     progress=False)
    print(format_table(miou, rows))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
