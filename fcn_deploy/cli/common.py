"""What every command shares: the user-error wrapper and options defined once."""
from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Callable, Sequence

from fcn_deploy.errors import FCNError
from fcn_deploy.fileio import defer_interrupt, os_error_reason, url_scheme
from fcn_deploy.tiling import DEFAULT_MAX_PIXELS


class Terminated(KeyboardInterrupt):
    """SIGTERM turned into an exception, so every ``finally`` and ``atomic_path`` cleans up."""


#: Set when SIGTERM arrives during a command. The exception it raises can be turned into
#: another by the code it lands in (an ImportError when it hits a module being imported), and
#: the command must still end as terminated, not with that error's message.
_term_received = threading.Event()


def _terminate() -> None:
    raise Terminated()


def _interrupt() -> None:
    raise KeyboardInterrupt()


def _raise_terminated(signum, frame) -> None:
    _term_received.set()
    if not defer_interrupt(_terminate):  # inside a temp file's creation: raised right after it
        _terminate()


def _raise_interrupted(signum, frame) -> None:
    if not defer_interrupt(_interrupt):
        _interrupt()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


@contextlib.contextmanager
def _command_environment():
    """SIGTERM handled like Ctrl-C, warnings as one ``warning:`` line; restored afterwards."""
    previous = previous_int = None
    _term_received.clear()
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            previous_int = signal.signal(signal.SIGINT, _raise_interrupted)
    show = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        yield
    finally:
        warnings.showwarning = show
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if previous_int is not None:
            signal.signal(signal.SIGINT, previous_int)


def run_main(main: Callable[[Sequence[str] | None], int | None],
             argv: Sequence[str] | None = None) -> int:
    """Run a command's ``main``; a user error is printed as one line (no traceback), exit 2.

    Ctrl-C exits 130 and SIGTERM 143 with a short message: both raise inside the command, so
    temporary files and folders are removed on the way out and artifacts (written atomically)
    are either complete or absent. Running out of memory, or an OS error no stage turned into
    an FCNError, is also one ``error:`` line (exit 2), not a traceback.
    """
    try:
        try:
            with _command_environment():
                rc = main(argv)
        except Exception:
            if _term_received.is_set():  # SIGTERM, turned into another error on its way up
                raise Terminated() from None
            raise
    except FCNError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("error: out of memory; use smaller inputs or batches, or a machine with more "
              "memory", file=sys.stderr)
        return 2
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"error: {where}{os_error_reason(exc)}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        if not _out_of_memory(exc):
            raise  # a bug: keep the traceback
        print(f"error: out of memory ({str(exc).strip().splitlines()[0][:200]}); use smaller "
              "inputs or batches, or a machine with more memory", file=sys.stderr)
        return 2
    return int(rc or 0)


def _out_of_memory(exc: RuntimeError) -> bool:
    """PyTorch's allocation failures (torch.OutOfMemoryError for CUDA, a RuntimeError from the
    CPU allocator) and ONNX Runtime's, which no stage turned into an FCNError."""
    text = str(exc)
    return (type(exc).__name__ == "OutOfMemoryError" or "DefaultCPUAllocator" in text
            or "out of memory" in text.lower() or "Failed to allocate memory" in text)


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for inference (default: the library's default)")


def add_int8_kernels_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--int8-kernels", choices=("auto", "fast", "exact"), default=None,
        help="ONNX Runtime's CPU kernels for INT8 (Q/DQ) graphs. auto (default): exact where the "
             "fast ones saturate (x86 without VNNI), else fast. exact: U8U8 kernels, the INT8 "
             "graph's own results on any CPU; about 1.4x slower than fast on a CPU without VNNI "
             "(FCN-8s 500x500: 2.79 vs 1.95 s), and slower for nothing with VNNI, where fast is "
             "exact too. fast: U8S8 kernels; on x86 without VNNI their 16-bit sums saturate and "
             "results drift (FCN-8s scores' relative RMS error vs FP32 0.042 instead of 0.023; "
             "demo mean IU -1.54 instead of -0.66)")


def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None,
                        help="cpu or cuda[:N] (default: cuda when available, else cpu)")


def model_location(text: str) -> Path | str:
    """argparse type of --engine: a model file, or a served model's URL (triton://host/name)
    kept as text (a Path would fold its '//')."""
    return text if url_scheme(text) else Path(text)


def add_tile_options(parser: argparse.ArgumentParser) -> None:
    """--tile / --max-pixels: exact tiled inference for large images (fcn_deploy/tiling.py)."""
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
