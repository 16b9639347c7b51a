"""TensorRT and CUDA, imported lazily, with every CUDA error code checked.

Nothing here is imported by ``import fcn_deploy`` or by the CPU runtime. Without TensorRT or
cuda-python the functions raise :class:`FCNError` saying what to install. CUDA calls go through
cuda-python's runtime bindings (``from cuda.bindings import runtime as cudart``); each returns a
tuple whose first item is the error code, which :func:`check` turns into an FCNError naming the
call.
"""
from __future__ import annotations

import ctypes
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fcn_deploy.errors import FCNError

INSTALL_HINT = ("install TensorRT 10 or 11 and cuda-python on a machine with an NVIDIA GPU: "
                "`pip install 'fcn-deploy[tensorrt]'` (tensorrt>=10.13 from NVIDIA's index, "
                "cuda-python>=12.6), or use an NVIDIA TensorRT container")


def import_tensorrt():
    """Return the ``tensorrt`` module or raise FCNError saying what to install."""
    try:
        import tensorrt as trt
    except (ImportError, OSError) as exc:  # OSError: wheel present, libnvinfer missing
        raise FCNError(f"TensorRT is not available ({type(exc).__name__}: {exc}); "
                       f"{INSTALL_HINT}") from None
    return trt


def import_cudart():
    """Return cuda-python's runtime module or raise FCNError saying what to install."""
    try:
        from cuda.bindings import runtime as cudart
    except (ImportError, OSError) as exc:
        raise FCNError(f"cuda-python is not available ({type(exc).__name__}: {exc}); "
                       f"{INSTALL_HINT}") from None
    return cudart


def trt_version(trt=None) -> str:
    trt = trt or import_tensorrt()
    return str(trt.__version__)


def trt_major(trt=None) -> int:
    """TensorRT's major version as an int (10, 11, ...)."""
    return int(trt_version(trt).split(".")[0])


def check(result: Any, what: str) -> Any:
    """Unpack a cuda-python ``(err, *values)`` result; raise FCNError naming ``what`` on error.

    Returns None, the single value, or a tuple of values.
    """
    cudart = import_cudart()
    if isinstance(result, tuple):
        err, values = result[0], result[1:]
    else:
        err, values = result, ()
    if err != cudart.cudaError_t.cudaSuccess:
        _, name = cudart.cudaGetErrorName(err)
        _, text = cudart.cudaGetErrorString(err)
        name = name.decode() if isinstance(name, bytes) else str(name)
        text = text.decode() if isinstance(text, bytes) else str(text)
        raise FCNError(f"CUDA call {what} failed: {name} ({text})")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def gpu_count() -> int:
    """How many CUDA GPUs this process can use (0 when cuda-python or the driver is missing)."""
    try:
        cudart = import_cudart()
    except FCNError:
        gpus = Path("/proc/driver/nvidia/gpus")
        return len(list(gpus.iterdir())) if gpus.is_dir() else 0
    err, count = cudart.cudaGetDeviceCount()
    return int(count) if err == cudart.cudaError_t.cudaSuccess else 0


def parse_device(device: str | int | None) -> int:
    """``None``/``"cuda"``/``"cuda:1"``/``1`` -> GPU index; ``"cpu"`` is refused by GPU backends."""
    if device is None or device == "cuda":
        return 0
    if isinstance(device, int):
        return device
    text = str(device).lower()
    if text.startswith("cuda:") and text[5:].isdigit():
        return int(text[5:])
    raise FCNError(f"device {device!r} is not a GPU; TensorRT runs on 'cuda' or 'cuda:N'")


@dataclass(frozen=True)
class GpuInfo:
    """The GPU an engine is built for or run on (engines are specific to it)."""

    name: str
    compute_capability: str  # "8.6"
    index: int = 0
    total_memory_mb: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return f"{self.name} (compute capability {self.compute_capability})"


def gpu_info(index: int = 0) -> GpuInfo:
    """Name and compute capability of GPU ``index``; FCNError when there is none."""
    cudart = import_cudart()
    count = check(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount (is an NVIDIA GPU and driver present?)")
    if index >= count:
        raise FCNError(f"GPU {index} does not exist; this machine has {count} CUDA GPU(s)")
    prop = check(cudart.cudaGetDeviceProperties(index), f"cudaGetDeviceProperties({index})")
    name = prop.name.split(b"\0", 1)[0].decode() if isinstance(prop.name, bytes) else str(prop.name)
    return GpuInfo(name=name, compute_capability=f"{prop.major}.{prop.minor}", index=index,
                   total_memory_mb=int(prop.totalGlobalMem) // (1 << 20))


class Stream:
    """A non-blocking CUDA stream (TensorRT must not run on the default stream)."""

    def __init__(self) -> None:
        self._cudart = import_cudart()
        self.stream = check(self._cudart.cudaStreamCreateWithFlags(self._cudart.cudaStreamNonBlocking),
                            "cudaStreamCreateWithFlags")

    @property
    def handle(self) -> int:
        return int(self.stream)

    def synchronize(self) -> None:
        check(self._cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def destroy(self) -> None:
        if self.stream is not None:
            check(self._cudart.cudaStreamDestroy(self.stream), "cudaStreamDestroy")
            self.stream = None


class _GrowingBuffer:
    """Memory that grows on demand: reallocated only when a larger size is asked for.

    Subclasses name the cudart allocator and its matching free function.
    """

    _malloc = ""
    _free = ""

    def __init__(self) -> None:
        self._cudart = import_cudart()
        self.ptr = 0
        self.nbytes = 0

    def ensure(self, nbytes: int) -> int:
        if nbytes > self.nbytes:
            self.free()
            malloc = getattr(self._cudart, self._malloc)
            self.ptr = int(check(malloc(nbytes), f"{self._malloc}({nbytes} bytes)"))
            self.nbytes = nbytes
        return self.ptr

    def free(self) -> None:
        if self.ptr:
            check(getattr(self._cudart, self._free)(self.ptr), self._free)
        self.ptr, self.nbytes = 0, 0


class DeviceBuffer(_GrowingBuffer):
    """GPU memory, grown on demand."""

    _malloc, _free = "cudaMalloc", "cudaFree"


class PinnedBuffer(_GrowingBuffer):
    """Page-locked host memory (needed for truly asynchronous copies), grown on demand."""

    _malloc, _free = "cudaMallocHost", "cudaFreeHost"

    def view(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A numpy view of the first ``prod(shape)`` elements (valid until the next ensure/free)."""
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        if count * dtype.itemsize > self.nbytes:
            raise ValueError("pinned buffer is smaller than the requested view")
        raw = (ctypes.c_uint8 * (count * dtype.itemsize)).from_address(self.ptr)
        return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)


def memcpy_htod_async(dst: int, src: int, nbytes: int, stream: Stream) -> None:
    cudart = import_cudart()
    check(cudart.cudaMemcpyAsync(dst, src, nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
                                 stream.stream), "cudaMemcpyAsync(host to device)")


def memcpy_dtoh_async(dst: int, src: int, nbytes: int, stream: Stream) -> None:
    cudart = import_cudart()
    check(cudart.cudaMemcpyAsync(dst, src, nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                                 stream.stream), "cudaMemcpyAsync(device to host)")


def set_device(index: int) -> None:
    cudart = import_cudart()
    check(cudart.cudaSetDevice(index), f"cudaSetDevice({index})")

