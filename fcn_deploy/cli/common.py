"""What every command shares: the user-error wrapper and options defined once."""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from fcn_deploy.errors import FCNError


def run_main(main: Callable[[Sequence[str] | None], int | None],
             argv: Sequence[str] | None = None) -> int:
    """Run a command's ``main``; a user error is printed as one line (no traceback), exit 2.

    Ctrl-C exits 130 with a short message; artifacts are written atomically so nothing is lost.
    """
    try:
        rc = main(argv)
    except FCNError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for inference (default: the library's default)")


def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None,
                        help="cpu or cuda[:N] (default: cuda when available, else cpu)")


def add_tile_options(parser: argparse.ArgumentParser) -> None:
    """--tile / --max-pixels: exact tiled inference for large images (fcn_deploy/tiling.py)."""
    from fcn_deploy.tiling import DEFAULT_MAX_PIXELS

    parser.add_argument("--tile", type=int, default=None, metavar="N",
                        help="segment in tiles of N x N output pixels (rounded down to the "
                             "network's stride; same result as one pass, in bounded memory); 0 "
                             "never tiles (default: tile images above --max-pixels or above "
                             "the memory available)")
    parser.add_argument("--max-pixels", type=int, default=None, metavar="N",
                        help=f"largest image run in one pass when --tile is not given "
                             f"(default {DEFAULT_MAX_PIXELS} = 4096x4096)")


def check_tile_options(args: argparse.Namespace) -> None:
    """Refuse a negative --tile or a --max-pixels below 1 before any work is done."""
    if args.tile is not None and args.tile < 0:
        raise FCNError(f"--tile must be a tile size in pixels or 0 (never tile), got {args.tile}")
    if args.max_pixels is not None and args.max_pixels < 1:
        raise FCNError(f"--max-pixels must be a positive number of pixels, got {args.max_pixels}")


def add_seed_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: 0)")


def add_quiet_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def parse_shape(text: str) -> tuple[int, ...]:
    """Parse ``1x3x500x500`` into a tuple; used by every command that takes shapes."""
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"shape {text!r} is not of the form NxCxHxW (e.g. 1x3x500x500)") from None
    if len(dims) != 4 or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(
            f"shape {text!r} must have 4 positive dimensions NxCxHxW (e.g. 1x3x500x500)")
    return dims
