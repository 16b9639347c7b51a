"""ONNX Runtime session options and the CPU thread cap, on the ground floor.

Every ONNX Runtime session the project opens (the runtime's runner, export verification, the
benchmarks, the INT8 speed measurement) builds its ``SessionOptions`` with :func:`session_options`,
so that thread counts, graph optimization levels and the int8-kernel choice of
:mod:`fcn_deploy.cpu` mean the same everywhere. It lives here, below export/ and quantize/, so
that those stages need not import the runtime (docs/architecture.md). ``onnxruntime`` is imported
only when options are built. ``fcn_deploy.runtime.onnxruntime_backend.session_options`` and
``fcn_deploy.runtime.registry.cap_threads`` / ``available_cores`` re-export these names.
"""
from __future__ import annotations

import os
import warnings
from typing import Mapping

from fcn_deploy.cpu import X64_QUANT_PRECISION, Int8Kernels, int8_kernels as resolve_int8_kernels
from fcn_deploy.errors import FCNError, require_int


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


_WARNED_THREADS: set[tuple[int, int]] = set()


def cap_threads(threads: int | None) -> int | None:
    """``threads`` capped at the cores available, with one warning naming the core count.

    More compute threads than cores only makes them wait for each other, and inference slows
    down by orders of magnitude. None and 0 (the library's default) pass through.
    """
    if not threads:
        return threads
    cores = available_cores()
    if threads <= cores:
        return threads
    if (threads, cores) not in _WARNED_THREADS:
        _WARNED_THREADS.add((threads, cores))
        warnings.warn(f"--threads {threads} is more than the {cores} CPU cores available here; "
                      f"using {cores} threads", stacklevel=2)
    return cores


def session_options(*, intra_op_threads: int | None = None,
                    graph_optimization_level: str | None = None,
                    session_config: Mapping[str, str] | None = None,
                    int8_kernels: str | Int8Kernels | None = None,
                    dynamic_shapes: bool = False):
    """``onnxruntime.SessionOptions`` from a runner's options (every ONNX Runtime session uses it).

    ``dynamic_shapes``: the session's input shape changes between calls (the runtime's runner:
    images of any size, tiles of one size per image). ONNX Runtime's memory pattern is then
    turned off: it plans one block for all of a run's intermediates and caches a plan per input
    shape, which only pays off for one fixed shape and raises the peak memory tiled inference
    exists to bound (docs/runtime.md). Fixed-shape sessions (benchmarks, export checks) keep
    ONNX Runtime's default.

    ``int8_kernels`` ("auto" when None, "fast", "exact", or a resolved
    :class:`~fcn_deploy.cpu.Int8Kernels`): on x86 CPUs without VNNI "auto" adds
    ``session.x64quantprecision=1`` so that INT8 (Q/DQ) graphs run on exact U8U8 kernels instead
    of saturating ones (see :mod:`fcn_deploy.cpu`); float graphs are unaffected by the entry.
    """
    import onnxruntime as ort

    kernels = (int8_kernels if isinstance(int8_kernels, Int8Kernels)
               else resolve_int8_kernels(int8_kernels))
    if X64_QUANT_PRECISION in (session_config or {}):
        raise FCNError(f"set the int8 kernels with int8_kernels='fast'|'exact' (--int8-kernels), "
                       f"not the session config entry {X64_QUANT_PRECISION}")

    options = ort.SessionOptions()
    if intra_op_threads is not None:
        threads = require_int(intra_op_threads, what="intra_op_threads",
                              expected="an integer >= 0 (0 = ONNX Runtime's default)", minimum=0)
        options.intra_op_num_threads = int(cap_threads(threads))
    level = graph_optimization_level or "all"
    levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    if hasattr(ort.GraphOptimizationLevel, "ORT_ENABLE_LAYOUT"):
        levels["layout"] = ort.GraphOptimizationLevel.ORT_ENABLE_LAYOUT
    if level not in levels:
        raise FCNError(f"graph_optimization_level {level!r} is not one of "
                       f"{', '.join(levels)}")
    options.graph_optimization_level = levels[level]
    options.log_severity_level = 3  # errors only; our own messages say what went wrong
    if dynamic_shapes:
        options.enable_mem_pattern = False
    for key, value in {**kernels.session_config(), **(session_config or {})}.items():
        try:
            options.add_session_config_entry(str(key), str(value))
        except Exception as exc:  # ORT raises its own error types for bad entries
            raise FCNError(f"ONNX Runtime session config {key}={value} was refused: {exc}") from None
    return options
