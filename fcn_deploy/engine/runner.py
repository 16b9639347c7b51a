"""Native TensorRT runner (TensorRT 10/11 API, cuda-python for memory and streams).

I/O by tensor name: ``set_input_shape`` for every input (a multi-input net's inputs share N, H,
W), ``set_tensor_address`` for every input and output, ``execute_async_v3`` on a non-blocking
stream. Device buffers and pinned host buffers are kept across calls and reallocated
only when a larger shape arrives. An input shape picks the optimization profile that covers it
(``set_optimization_profile_async``); a shape no profile covers is an FCNError listing what the
engine accepts. Plans are checked against their sidecar (TensorRT version, GPU) before loading.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from fcn_deploy.contract import Runner, TensorInfo
from fcn_deploy.engine import cuda
from fcn_deploy.engine.profiles import (Profile, describe_profiles, first_input_shape, format_shape,
                                        max_batch, select_profile)
from fcn_deploy.engine.sidecar import check_compatible, read_sidecar
from fcn_deploy.errors import FCNError


class TensorRTRunner(Runner):
    """Runs a ``.plan`` on one GPU.

    Options: ``device`` ("cuda", "cuda:N" or N), ``allow_other_gpu`` (accept a plan built on
    another GPU model of the same compute capability, with a warning).

    Thread-safety: one execution context, one stream and one set of buffers per runner, so
    ``infer`` calls are serialized by the runner's lock; open one runner per thread (each gets its
    own context) for concurrent inference on the GPU.
    """

    backend = "tensorrt"

    def __init__(self, path: str | os.PathLike, *, device: str | int | None = None,
                 allow_other_gpu: bool = False) -> None:
        super().__init__()
        self._stream = None
        self._context = self._engine = self._runtime = None
        self._device_buffers: dict[str, cuda.DeviceBuffer] = {}
        self._host_buffers: dict[str, cuda.PinnedBuffer] = {}
        self.path = Path(path)
        if not self.path.is_file():
            raise FCNError(f"engine {self.path} does not exist")
        self.info = read_sidecar(self.path)
        self.meta = self.info.model_meta()
        cuda.import_tensorrt()  # FCNError saying what to install when it is missing
        cuda.import_cudart()
        import tensorrt as trt

        self.device = cuda.parse_device(device)
        gpu = cuda.gpu_info(self.device)
        for text in check_compatible(self.info, trt_version=cuda.trt_version(trt), gpu=gpu,
                                     plan_path=self.path, allow_other_gpu=allow_other_gpu):
            warnings.warn(text, stacklevel=2)
        cuda.set_device(self.device)

        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        if self.info.version_compatible:
            self._runtime.engine_host_code_allowed = True
        self._engine = cuda.trt_call(f"deserializing {self.path}",
                                     self._runtime.deserialize_cuda_engine, self.path.read_bytes())
        if self._engine is None:
            raise FCNError(f"TensorRT {cuda.trt_version(trt)} could not deserialize {self.path} "
                           f"(built with TensorRT {self.info.trt_version} on "
                           f"{self.info.gpu.describe()}); rebuild it with fcn-build")
        self._context = cuda.trt_call(f"creating an execution context for {self.path}",
                                      self._engine.create_execution_context)
        if self._context is None:
            raise FCNError(f"could not create an execution context for {self.path} "
                           "(out of GPU memory?)")
        self._stream = cuda.Stream()

        self.inputs, self.outputs = [], []
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            dims = tuple(int(d) for d in self._engine.get_tensor_shape(name))
            info = TensorInfo(name=name, shape=tuple(None if d < 0 else d for d in dims),
                              dtype=np.dtype(trt.nptype(self._engine.get_tensor_dtype(name))),
                              dim_names=_dim_names(len(dims)))
            if self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.inputs.append(info)
            else:
                self.outputs.append(info)
        names = [t.name for t in self.inputs]
        if names != self.meta.input_names:
            raise FCNError(f"{self.path}: the engine's inputs are {names}; its metadata "
                           f"describes {self.meta.input_names} (rebuild it with fcn-build)")
        self.input_name = self.inputs[0].name  # the profiles are given for the first input
        self.profiles = self._read_profiles()
        self._active_profile = 0

    def _read_profiles(self) -> list[Profile]:
        profiles = []
        for p in range(self._engine.num_optimization_profiles):
            lo, opt, hi = self._engine.get_tensor_profile_shape(self.input_name, p)
            profiles.append(Profile(tuple(lo), tuple(opt), tuple(hi)))
        return profiles

    # -- contract ---------------------------------------------------------------------------
    def batch_limit(self, shape: Sequence[int]) -> int | None:
        return max_batch(self.profiles, shape)

    def describe_accepted(self) -> str:
        others = "".join(f", {t.describe()}" for t in self.inputs[1:])
        return (f"{self.inputs[0].describe()} within profiles {describe_profiles(self.profiles)}"
                + (f" (with {others[2:]} at the same batch, height and width)" if others else ""))

    def _buffers(self, name: str, nbytes: int):
        dev = self._device_buffers.setdefault(name, cuda.DeviceBuffer())
        host = self._host_buffers.setdefault(name, cuda.PinnedBuffer())
        dev.ensure(max(nbytes, 1))
        host.ensure(max(nbytes, 1))
        return dev, host

    def _infer(self, feeds: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        shape = first_input_shape({t.name: feeds[t.name].shape for t in self.inputs},
                                  what=f"engine {self.path}")
        # The current CUDA device is per host thread: select ours on every call, since infer may
        # run on another thread than the one that opened the runner.
        cuda.set_device(self.device)
        profile = select_profile(self.profiles, shape, what=f"engine {self.path}")
        where = f"engine {self.path}, input {format_shape(shape)}"
        if profile != self._active_profile:
            cuda.trt_call(f"{where}: selecting optimization profile #{profile}",
                          self._context.set_optimization_profile_async, profile,
                          self._stream.handle)
            self._active_profile = profile
        for info in self.inputs:  # every input by name: shape, host -> device copy, address
            array = feeds[info.name]
            try:
                cuda.trt_call(f"{where}: setting the shape of {info.name!r}",
                              self._context.set_input_shape, info.name, tuple(array.shape))
            except FCNError as exc:
                raise FCNError(f"{exc}; the engine accepts "
                               f"{describe_profiles(self.profiles)}") from None
            dev_in, host_in = self._buffers(info.name, array.nbytes)
            np.copyto(host_in.view(array.shape, array.dtype), array)
            cuda.memcpy_htod_async(dev_in.ptr, host_in.ptr, array.nbytes, self._stream)
            cuda.trt_call(f"{where}: binding the address of {info.name!r}",
                          self._context.set_tensor_address, info.name, dev_in.ptr)

        out_shapes = {}
        for info in self.outputs:
            out_shape = tuple(int(d) for d in cuda.trt_call(
                f"{where}: reading the shape of output {info.name!r}",
                self._context.get_tensor_shape, info.name))
            if any(d < 0 for d in out_shape):
                raise FCNError(f"{self.path}: TensorRT could not resolve the shape of output "
                               f"{info.name!r} for input {format_shape(shape)}")
            nbytes = int(np.prod(out_shape, dtype=np.int64)) * info.dtype.itemsize
            dev, _ = self._buffers(info.name, nbytes)
            cuda.trt_call(f"{where}: binding the address of output {info.name!r}",
                          self._context.set_tensor_address, info.name, dev.ptr)
            out_shapes[info.name] = (out_shape, nbytes)

        cuda.trt_call(f"{where}: execute_async_v3", self._context.execute_async_v3,
                      self._stream.handle)
        for name in outputs:
            out_shape, nbytes = out_shapes[name]
            cuda.memcpy_dtoh_async(self._host_buffers[name].ptr, self._device_buffers[name].ptr,
                                   nbytes, self._stream)
        self._stream.synchronize()
        dtypes = {t.name: t.dtype for t in self.outputs}
        return {name: self._host_buffers[name].view(out_shapes[name][0], dtypes[name]).copy()
                for name in outputs}

    def close(self) -> None:
        if self._closed:
            return
        super().close()
        if self._stream is not None or self._device_buffers:
            cuda.set_device(self.device)  # free on the device that allocated
        for buf in list(self._device_buffers.values()) + list(self._host_buffers.values()):
            buf.free()
        self._device_buffers.clear()
        self._host_buffers.clear()
        if self._stream is not None:
            self._stream.destroy()
            self._stream = None
        self._context = None
        self._engine = None
        self._runtime = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def _dim_names(rank: int) -> tuple[str | None, ...]:
    """Axis names of the project's tensors: image NCHW, scores NCHW, labels NHW."""
    if rank == 4:
        return ("batch", None, "height", "width")
    if rank == 3:
        return ("batch", "height", "width")
    return (None,) * rank
