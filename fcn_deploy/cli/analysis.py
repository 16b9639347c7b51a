"""``python -m fcn_deploy.cli.analysis [ARCH ...]``: Table 1 of the paper, computed from the models.

Parameters, conv layers, GMACs at 500x500, receptive field and stride of each registered FCN at
width 1 (PyTorch's meta device: no weights allocated); the table in README and docs/models.md.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from fcn_deploy.cli.common import run_main
from fcn_deploy.models.analysis import summary_table


def _main(argv: Sequence[str] | None) -> int:
    p = argparse.ArgumentParser(prog="python -m fcn_deploy.cli.analysis",
                                description="Table 1-style figures of the registered FCNs")
    p.add_argument("archs", nargs="*", help="architectures (default: every registered one)")
    args = p.parse_args(argv)
    print(summary_table(args.archs or None))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
