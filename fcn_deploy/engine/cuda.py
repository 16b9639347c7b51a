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
from typing import Any

import numpy as np

from fcn_deploy import devices
from fcn_deploy.errors import FCNError

INSTALL_HINT = ("install TensorRT 10 or 11 and cuda-python on a machine with an NVIDIA GPU: "
                "`pip install 'fcn-deploy[tensorrt]'` (CUDA 12 driver: tensorrt-cu12 with "
                "cuda-python 12.x) or `pip install 'fcn-deploy[tensorrt-cu13]'` (CUDA 13 driver), "
                "or use an NVIDIA TensorRT container")


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
        raise FCNError(f"CUDA call {what} failed: {_error_text(cudart, err)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def trt_call(what: str, fn: Any, *args: Any) -> Any:
    """Call a TensorRT binding and turn its failure into an FCNError naming ``what``.

    The Python bindings report most failures by raising RuntimeError (or ValueError), not by
    returning False (e.g. ``set_optimization_profile_async``), while others return False
    (``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``): both become FCNError,
    so none escapes a command as a traceback. ``what`` names the engine and the tensor/profile.
    """
    try:
        result = fn(*args)
    except (RuntimeError, ValueError) as exc:
        raise FCNError(f"{what}: TensorRT raised {type(exc).__name__}: {exc}") from None
    if result is False:
        raise FCNError(f"{what}: TensorRT refused it (see the TensorRT messages above)")
    return result


def _error_text(cudart, err) -> str:
    """``cudaErrorInsufficientDriver (CUDA driver version is insufficient ...)`` for an error code."""
    _, name = cudart.cudaGetErrorName(err)
    _, text = cudart.cudaGetErrorString(err)
    name = name.decode() if isinstance(name, bytes) else str(name)
    text = text.decode() if isinstance(text, bytes) else str(text)
    return f"{name} ({text})"


def cuda_device_count() -> tuple[int, str | None]:
    """(CUDA GPUs this process can use, why there are none) through cuda-python.

    The reason names the CUDA error, so an old driver (cudaErrorInsufficientDriver: cuda-python
    13 needs a CUDA 13 driver) is told apart from a machine without a GPU.
    """
    try:
        cudart = import_cudart()
    except FCNError as exc:
        return 0, str(exc)
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess:
        reason = f"cudaGetDeviceCount returned {_error_text(cudart, err)}"
        if "InsufficientDriver" in reason:
            reason += ("; there is no NVIDIA driver, or it is older than the CUDA major of "
                       f"cuda-python {_cuda_python_version()}: install the extra matching the "
                       "driver (fcn-deploy[tensorrt] for CUDA 12, fcn-deploy[tensorrt-cu13] "
                       "for CUDA 13)")
        return 0, reason
    if int(count) == 0:
        return 0, "cudaGetDeviceCount found no CUDA GPU"
    return int(count), None


def _cuda_python_version() -> str:
    from importlib import metadata

    for name in ("cuda-bindings", "cuda-python"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "(version unknown)"


def gpu_count() -> int:
    """How many CUDA GPUs this process can use (0 when cuda-python or the driver is missing)."""
    return cuda_device_count()[0]


def nvidia_smi_gpus() -> int | None:
    """GPUs that ``nvidia-smi -L`` lists; None when nvidia-smi is absent or fails.

    This asks the driver, not our Python stack: when it sees a GPU that cuda-python or TensorRT
    cannot use, the stack is broken (a test must fail), not absent (a test may skip).
    """
    import shutil
    import subprocess

    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        listing = subprocess.check_output([exe, "-L"], text=True, timeout=60,
                                          stderr=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):  # failed, timed out: the driver cannot tell
        return None
    return sum(1 for line in listing.splitlines() if line.startswith("GPU "))


def tensorrt_stack_problem() -> str | None:
    """Why TensorRT cannot run here (None: tensorrt and cuda-python import and see a GPU)."""
    try:
        import_tensorrt()
        import_cudart()
    except FCNError as exc:
        return str(exc)
    count, reason = cuda_device_count()
    return None if count else reason


def gpu_test_decision(*, smi_gpus: int | None, problem: str | None) -> tuple[str, str]:
    """What a GPU test does: ("run", ""), ("skip", why) or ("fail", why).

    Skipping is right only where there is no GPU; when ``nvidia-smi`` lists one and the stack
    still cannot use it (old driver for cuda-python's CUDA, missing libnvinfer, ...), skipping
    would hide a broken installation, so the test fails naming the problem.
    """
    if problem is None:
        return "run", ""
    if not smi_gpus:
        seen = "nvidia-smi is not available" if smi_gpus is None else "nvidia-smi lists no GPU"
        return "skip", f"no NVIDIA GPU here ({seen}): {problem}"
    return "fail", (f"nvidia-smi lists {smi_gpus} GPU(s) but the TensorRT stack cannot use "
                    f"them: {problem}")


def parse_device(device: str | int | None) -> int:
    """``None``/``"cuda"``/``"cuda:1"``/``1`` -> GPU index; ``"cpu"`` is refused by GPU backends."""
    parsed = devices.parse_device(device)
    if parsed is None:
        return 0
    if not parsed.is_gpu:
        raise FCNError(f"device {device!r} is not a GPU; TensorRT runs on 'cuda' or 'cuda:N'")
    return parsed.index


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

