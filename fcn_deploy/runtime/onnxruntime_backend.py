"""ONNX Runtime backend: runs a ``.onnx`` on the CPU, or on the GPU with onnxruntime-gpu.

Provider choice (``device=None``): TensorRT and CUDA execution providers when onnxruntime-gpu is
installed and a GPU is present, else the CPU provider. ``device="cpu"`` forces the CPU;
``device="cuda[:N]"`` requires the CUDA provider. ``providers=[...]`` overrides all of this.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from fcn_deploy.cpu import Int8Kernels, int8_kernels as resolve_int8_kernels
from fcn_deploy.devices import parse_device
from fcn_deploy.errors import FCNError
from fcn_deploy.meta import ModelMeta
from fcn_deploy.ortsession import session_options  # also importable from here, its old home
from fcn_deploy.runtime.base import Runner, TensorInfo
from fcn_deploy.runtime.memory import estimate_onnx_activation_bytes


_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(int32)": np.int32,
    "tensor(int64)": np.int64, "tensor(bool)": np.bool_,
}


def _gpu_providers_wanted(available: Sequence[str]) -> list[Any]:
    """GPU providers to try, best first, when onnxruntime-gpu and a GPU are present."""
    gpu_eps = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
    if not gpu_eps:  # CPU-only onnxruntime: no need to load the engine package to count GPUs
        return []
    from fcn_deploy.engine.cuda import gpu_count

    if gpu_count() == 0:
        return []
    import importlib.util

    if "TensorrtExecutionProvider" in gpu_eps and importlib.util.find_spec("tensorrt") is None:
        gpu_eps.remove("TensorrtExecutionProvider")  # the EP needs TensorRT's libraries
    return gpu_eps


def choose_providers(device: str | None, available: Sequence[str]) -> list[Any]:
    """Execution providers for ``device`` (None = best available), CPU always last."""
    if device is None:
        return _gpu_providers_wanted(available) + ["CPUExecutionProvider"]
    parsed = parse_device(device)
    if parsed.kind == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in available:  # parse_device allows only cpu or a GPU
        raise FCNError(f"device {device!r} needs onnxruntime-gpu (the CUDA execution provider); "
                       f"this onnxruntime has {', '.join(available)}. Install onnxruntime-gpu "
                       "instead of onnxruntime, or use device='cpu'")
    return [("CUDAExecutionProvider", {"device_id": parsed.index}), "CPUExecutionProvider"]


def _exact_kernels_hint(error: str, kernels: Int8Kernels) -> str:
    """What to do when ONNX Runtime's exact U8U8 mode refuses a graph whose layers share one
    quantized weight (graphs from fcn-quantize before it gave each layer its own weights)."""
    if kernels.choice != "exact" or "replace the existing tensor" not in error:
        return ""
    return (". Its exact int8 kernels (session.x64quantprecision) cannot load a graph whose layers "
            "share a quantized weight: quantize the FP32 graph again with this fcn-quantize, or "
            "use --int8-kernels fast (int8_kernels='fast'), whose results may saturate on this "
            f"CPU ({kernels.cpu.describe_int8()})")


class OnnxRuntimeRunner(Runner):
    """An ``onnxruntime.InferenceSession`` behind the runner contract.

    Options: ``device``; ``providers`` (list passed to ONNX Runtime as is); ``intra_op_threads``
    (CPU threads per operator, default ONNX Runtime's); ``graph_optimization_level`` (one of
    "disable", "basic", "extended", "layout", "all"; default "all"); ``session_config`` (ONNX
    Runtime session config entries, e.g. ``{"session.force_spinning_stop": "1"}`` when several
    sessions share the cores in one process: otherwise their idle threads keep spinning after a
    run and slow the next session down); ``int8_kernels`` ("auto", "fast" or "exact"; see
    :func:`session_options`). ``self.int8_kernels`` records the choice made
    (:class:`~fcn_deploy.cpu.Int8Kernels`; ``describe()`` gives the line reports print).

    Thread-safety: an ONNX Runtime session may run from several threads at once, so ``infer`` is
    not serialized (``concurrent = True``).
    """

    backend = "onnxruntime"
    concurrent = True

    def __init__(self, path: str | os.PathLike, *, device: str | None = None,
                 providers: Sequence[Any] | None = None, intra_op_threads: int | None = None,
                 graph_optimization_level: str | None = None,
                 session_config: Mapping[str, str] | None = None,
                 int8_kernels: str | None = None) -> None:
        super().__init__()
        import onnxruntime as ort

        self.path = Path(path)
        self.int8_kernels = resolve_int8_kernels(int8_kernels)
        options = session_options(intra_op_threads=intra_op_threads,
                                  graph_optimization_level=graph_optimization_level,
                                  session_config=session_config, int8_kernels=self.int8_kernels,
                                  dynamic_shapes=True)

        available = ort.get_available_providers()
        chosen = list(providers) if providers is not None else choose_providers(device, available)
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options,
                                                providers=chosen)
        except Exception as exc:
            if providers is None and device is None and chosen != ["CPUExecutionProvider"]:
                warnings.warn(f"GPU providers failed for {self.path} ({exc}); using the CPU",
                              stacklevel=2)
                self.session = ort.InferenceSession(str(self.path), sess_options=options,
                                                    providers=["CPUExecutionProvider"])
            else:
                raise FCNError(f"ONNX Runtime could not load {self.path}: {exc}"
                               + _exact_kernels_hint(str(exc), self.int8_kernels)) from None
        # The metadata_props come from the session ORT already parsed: no second load of the
        # file (hundreds of MB for VGG-based FCNs) and no onnx import on the runtime path.
        try:
            self.meta = ModelMeta.from_onnx_props(self.session.get_modelmeta().custom_metadata_map)
        except FCNError as exc:
            raise FCNError(f"{self.path}: {exc}") from None
        self.providers = self.session.get_providers()
        self.inputs = [self._info(i) for i in self.session.get_inputs()]
        self.outputs = [self._info(o) for o in self.session.get_outputs()]

    @staticmethod
    def _info(node) -> TensorInfo:
        shape, names = [], []
        for d in node.shape:
            if isinstance(d, int) and d >= 0:
                shape.append(d)
                names.append(None)
            else:
                shape.append(None)
                names.append(d if isinstance(d, str) else None)
        dtype = _ORT_TYPES.get(node.type)
        if dtype is None:
            raise FCNError(f"tensor {node.name!r} has type {node.type}, which the runtime does not "
                           "handle")
        return TensorInfo(name=node.name, shape=tuple(shape), dtype=np.dtype(dtype),
                          dim_names=tuple(names))

    def _infer(self, feeds: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        try:
            values = self.session.run(outputs, feeds)
        except Exception as exc:  # ORT raises its own exception types on bad shapes
            raise FCNError(f"ONNX Runtime failed on {self.path} with input shape "
                           f"{tuple(next(iter(feeds.values())).shape)}: {exc}") from None
        return dict(zip(outputs, values))

    def activation_bytes(self, shape: Sequence[int]) -> int | None:
        return estimate_onnx_activation_bytes(self.path, shape, input_name=self.inputs[0].name)

    def close(self) -> None:
        super().close()
        self.session = None
