"""fcn-import: a published model (Caffe .caffemodel, pytorch-fcn .pth) -> verified checkpoint."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from fcn_deploy.cli.common import run_main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fcn-import",
        description="Import the weights of a published FCN (the reference's Caffe .caffemodel "
                    "files, pytorch-fcn's *_from_caffe.pth state_dicts) into an fcn-deploy "
                    "checkpoint that fcn-export, fcn-eval and fcn-segment take. The architecture, "
                    "class count and width are read from the layer names and blob shapes; every "
                    "parameter must be filled from one source blob of the right shape and a "
                    "forward pass must give finite scores, or nothing is written.")
    p.add_argument("source", help="weights: .caffemodel (binary), .pth state_dict, or a checkpoint "
                                  "of this toolkit (then nothing is done)")
    p.add_argument("-o", "--output", required=True, help="checkpoint to write (.pt; folder must "
                                                         "exist)")
    p.add_argument("--arch", default=None, help="model name instead of the inferred one "
                                                "(see fcn_deploy.models.list_models())")
    p.add_argument("--classes", default=None, metavar="voc|pascal-context-59|FILE",
                   help="class names: a built-in set or a file with one name per line (the "
                        "reference's classes.txt; '0: background' prefixes allowed). Default: the "
                        "built-in set with the model's class count, else generic names")
    p.add_argument("--prototxt", default=None, help="the net's deploy/train/val .prototxt: its "
                   "geometry (pads, kernels, strides, groups, crop offsets, scales, classes) must "
                   "match the model's")
    p.add_argument("--allow-unused", action="store_true", help="drop source weights the model "
                   "does not use instead of failing")
    p.add_argument("--check-size", type=int, default=None, metavar="PIXELS",
                   help="side of the square input of the verification forward pass (default 32)")
    return p


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    # lazy: imports torch, after the arguments are checked
    from fcn_deploy.models.importing import import_weights

    report = import_weights(args.source, args.output, arch=args.arch, classes=args.classes,
                            prototxt=args.prototxt, allow_unused=args.allow_unused,
                            check_size=args.check_size)
    print(report.summary())
    sys.stdout.flush()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
