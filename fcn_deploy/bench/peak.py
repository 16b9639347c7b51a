"""The machine's measured FP32 peak: large single-precision matrix products at a thread count.

A convolution's FLOP rate only means something next to what the machine can do, measured the
same way in the same run. Three matrix-product libraries are timed at the same thread count and
the best rate is the peak:

- ``onnxruntime``: a one-node MatMul graph (MLAS, the library ONNX Runtime's convolutions use);
- ``torch``: ``torch.mm`` (MKL / oneDNN) after ``torch.set_num_threads``;
- ``numpy``: ``numpy.matmul`` (OpenBLAS); its thread count is fixed when numpy loads, so it is
  reported but counts toward the peak only when ``threadpoolctl`` can pin it or the process
  already runs with that many BLAS threads (``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS``).

Each library runs ``repeats`` products per size after one warm-up; the best (shortest) product
gives its rate, since the peak is what the hardware can reach, not a typical value.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from fcn_deploy.errors import FCNError

PEAK_METHODS = ("onnxruntime", "torch", "numpy")
DEFAULT_SIZES = (2048, 3072)


@dataclass
class PeakResult:
    """Best FP32 rate per library and size (GFLOP/s) and the overall peak."""

    threads: int | None
    gflops: dict[str, float] = field(default_factory=dict)  # "<method>@<n>" -> GFLOP/s
    skipped: dict[str, str] = field(default_factory=dict)  # method -> reason
    peak_gflops: float = 0.0
    peak_method: str = ""

    def flat(self) -> dict[str, float | int | str | None]:
        out: dict[str, float | int | str | None] = {"peak_gflops": self.peak_gflops,
                                                    "peak_method": self.peak_method,
                                                    "peak_threads": self.threads}
        for key, value in self.gflops.items():
            out[f"peak_{key.replace('@', '_n')}_gflops"] = value
        return out

    def merge(self, other: "PeakResult") -> "PeakResult":
        """The better of two measurements (peak measured before and after a long run)."""
        merged = PeakResult(threads=self.threads, skipped={**other.skipped, **self.skipped})
        for key in set(self.gflops) | set(other.gflops):
            merged.gflops[key] = max(self.gflops.get(key, 0.0), other.gflops.get(key, 0.0))
        merged._finish()
        return merged

    def _finish(self) -> None:
        if self.gflops:
            best = max(self.gflops, key=self.gflops.get)
            self.peak_gflops, self.peak_method = self.gflops[best], best


def _best_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _ort_matmul(n: int, threads: int | None) -> Callable[[], object]:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["A", "B"], ["C"])], "peak",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("C", TensorProto.FLOAT, [n, n])],
        [numpy_helper.from_array(b, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"A": a})


def _torch_mm(n: int, threads: int | None) -> Callable[[], object]:
    import torch

    if threads:
        torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen)
    b = torch.randn(n, n, generator=gen)
    return lambda: torch.mm(a, b)


def _numpy_threads_ok(threads: int | None) -> tuple[bool, str]:
    """Whether numpy's BLAS runs at ``threads`` threads (or can be pinned to it)."""
    if not threads:
        return True, ""
    try:
        import threadpoolctl  # noqa: F401
        return True, ""
    except ImportError:
        pass
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var) == str(threads):
            return True, ""
    if threads == (os.cpu_count() or 1):
        return True, ""  # OpenBLAS uses every core by default
    return False, (f"numpy's BLAS thread count cannot be set to {threads} in-process "
                   "(install threadpoolctl or set OPENBLAS_NUM_THREADS)")


def _numpy_mm(n: int, threads: int | None) -> Callable[[], object]:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return lambda: np.matmul(a, b)

    def run():
        with threadpool_limits(limits=threads, user_api="blas"):
            return np.matmul(a, b)

    return run if threads else (lambda: np.matmul(a, b))


_MAKERS = {"onnxruntime": _ort_matmul, "torch": _torch_mm, "numpy": _numpy_mm}


def measure_peak(*, threads: int | None = None, sizes: Sequence[int] | None = None,
                 methods: Sequence[str] | None = None, repeats: int = 3) -> PeakResult:
    """Measure the FP32 matrix-product peak at ``threads`` (None = each library's default).

    A library that is not installed is skipped with the reason; at least one must run.
    """
    sizes = tuple(sizes or DEFAULT_SIZES)
    methods = tuple(methods or PEAK_METHODS)
    bad = [m for m in methods if m not in PEAK_METHODS]
    if bad:
        raise FCNError(f"unknown peak method(s) {bad}; choose from {', '.join(PEAK_METHODS)}")
    if any(n < 16 for n in sizes) or repeats < 1:
        raise FCNError(f"peak sizes must be >= 16 and repeats >= 1, got {sizes}, {repeats}")
    result = PeakResult(threads=threads)
    for method in methods:
        if method == "numpy":
            ok, why = _numpy_threads_ok(threads)
            if not ok:
                result.skipped[method] = why
                continue
        for n in sizes:
            try:
                fn = _MAKERS[method](n, threads)
            except ImportError as exc:
                result.skipped[method] = f"not installed ({exc})"
                break
            seconds = _best_seconds(fn, repeats)
            result.gflops[f"{method}@{n}"] = 2.0 * n ** 3 / seconds / 1e9
    if not result.gflops:
        raise FCNError(f"no matrix-product library could run to measure the peak: {result.skipped}")
    result._finish()
    return result
