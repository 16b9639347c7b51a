"""Which precision TensorRT chose for each layer of a plan (the engine inspector).

A strongly typed build follows the graph's types, but only the plan says what ran: an INT8 Q/DQ
graph whose convolutions came out in FP32 would still "work" and agree with ONNX Runtime.
Plans from :func:`fcn_deploy.engine.build.build_engine` are built with detailed profiling
verbosity, so ``IEngineInspector.get_engine_information(JSON)`` lists every layer with the
``Format/Datatype`` of its inputs and outputs. :func:`count_layer_precisions` reads that JSON (pure
Python, tested on the CPU); :func:`inspect_plan` gets it from TensorRT (GPU machine).
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fcn_deploy.engine.cuda import import_tensorrt, trt_call
from fcn_deploy.errors import FCNError

#: Substrings of TensorRT's "Format/Datatype" text, checked in this order (the short form is
#: "Int8"/"Half"/"Float"; with an execution context it is e.g. "Row major linear FP16 format").
_DATATYPES = (("uint8", "uint8"), ("int8", "int8"), ("fp8", "fp8"), ("bfloat16", "bf16"),
              ("bf16", "bf16"), ("half", "fp16"), ("fp16", "fp16"), ("int32", "int32"),
              ("int64", "int64"), ("bool", "bool"), ("float", "fp32"), ("fp32", "fp32"))
#: Layer types that do the network's arithmetic (what "INT8 layers" should count).
COMPUTE_LAYER_TYPES = ("convolution", "deconvolution", "gemm", "matrixmultiply", "fullyconnected",
                       "myelin", "caskconvolution", "caskdeconvolution")


def datatype_of(text: str) -> str:
    """``"Int8 NC/32HW32"`` -> ``"int8"``; ``"Row major linear FP16 format"`` -> ``"fp16"``."""
    low = str(text).lower()
    for needle, name in _DATATYPES:
        if needle in low:
            return name
    return "unknown"


@dataclass
class LayerPrecisions:
    """Per-layer precision of a plan: by the type of each layer's first input."""

    layers: list[dict[str, str]] = field(default_factory=list)  # name, type, precision
    detailed: bool = True  # False: the plan holds layer names only (built without DETAILED)

    def counts(self, *, compute_only: bool = False) -> dict[str, int]:
        rows = [r for r in self.layers if not compute_only or _is_compute(r["type"])]
        return dict(sorted(Counter(r["precision"] for r in rows).items()))

    def describe(self) -> str:
        if not self.detailed:
            return f"{len(self.layers)} layers (the plan holds no per-layer detail)"
        every = ", ".join(f"{k} {v}" for k, v in self.counts().items())
        compute = ", ".join(f"{k} {v}" for k, v in self.counts(compute_only=True).items())
        return f"{len(self.layers)} layers: {every}; compute layers: {compute or 'none'}"

    def to_dict(self) -> dict[str, Any]:
        return {"detailed": self.detailed, "layers": len(self.layers), "counts": self.counts(),
                "compute_counts": self.counts(compute_only=True)}


def _is_compute(layer_type: str) -> bool:
    low = layer_type.lower().replace(" ", "").replace("_", "")
    return any(t in low for t in COMPUTE_LAYER_TYPES)


def count_layer_precisions(info_json: str) -> LayerPrecisions:
    """Parse ``get_engine_information(LayerInformationFormat.JSON)``.

    Each entry of "Layers" is a dict (detailed verbosity: Name, LayerType, Inputs/Outputs with
    "Format/Datatype") or a bare name (layer-names-only verbosity, no precisions).
    """
    try:
        data = json.loads(info_json)
    except (TypeError, ValueError) as exc:
        raise FCNError(f"the engine inspector's output is not JSON ({exc})") from None
    layers = data.get("Layers") if isinstance(data, dict) else None
    if not isinstance(layers, list):
        raise FCNError("the engine inspector's JSON has no 'Layers' list")
    out = LayerPrecisions()
    for entry in layers:
        if isinstance(entry, str):
            try:
                entry = json.loads(entry)
            except ValueError:
                out.detailed = False
                out.layers.append({"name": entry, "type": "", "precision": "unknown"})
                continue
        if not isinstance(entry, dict):
            continue
        tensors = entry.get("Inputs") or entry.get("Outputs") or []
        first = tensors[0].get("Format/Datatype", "") if tensors and isinstance(tensors[0], dict) else ""
        out.layers.append({"name": str(entry.get("Name", "")),
                           "type": str(entry.get("LayerType", "")),
                           "precision": datatype_of(first)})
    return out


def inspect_plan(plan_path: str | os.PathLike) -> LayerPrecisions:
    """Deserialize ``plan_path`` and read its layers' precisions (needs TensorRT and a GPU)."""
    trt = import_tensorrt()
    path = Path(plan_path)
    logger = trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    engine = trt_call(f"deserializing {path}", runtime.deserialize_cuda_engine, path.read_bytes())
    if engine is None:
        raise FCNError(f"TensorRT could not deserialize {path} for inspection")
    inspector = trt_call(f"creating an engine inspector for {path}", engine.create_engine_inspector)
    text = trt_call(f"inspecting {path}", inspector.get_engine_information,
                    trt.LayerInformationFormat.JSON)
    return count_layer_precisions(text)
