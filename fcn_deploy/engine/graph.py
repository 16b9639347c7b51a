"""What the TensorRT builder needs to know about an ONNX graph, read on the CPU.

TensorRT 11 builds strongly typed networks, so an engine's precision is the graph's: FP32, FP16
(float16 weights, FP32 inputs/outputs kept) or INT8 (explicit QuantizeLinear/DequantizeLinear).
:func:`detect_precision` reads it from the graph and reports the evidence, and flags Q/DQ that
TensorRT rejects (asymmetric or uint8 zero points) before any GPU time is spent.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fcn_deploy.errors import FCNError
from fcn_deploy.meta import ModelMeta

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def sha256_file(path: str | os.PathLike, *, chunk: int = 1 << 20,
                external_files: list[Path] | None = None) -> str:
    """Hex sha256 of a file, including its external-data file (``<name>.data``) when present.

    ``external_files``: those files when the caller already knows them (:class:`GraphInfo`), so
    the ONNX file is not parsed again just to find them.
    """
    path = Path(path)
    if external_files is None:
        external_files = _external_data_files(path)
    digest = hashlib.sha256()
    for part in (path, *external_files):
        with open(part, "rb") as f:
            while block := f.read(chunk):
                digest.update(block)
    return digest.hexdigest()


def _external_data_files(path: Path, model=None) -> list[Path]:
    if model is None:
        try:
            import onnx

            model = onnx.load(str(path), load_external_data=False)
        except Exception:
            return []
    names = set()
    for init in model.graph.initializer:
        if init.data_location == 1:  # TensorProto.EXTERNAL
            for entry in init.external_data:
                if entry.key == "location":
                    names.add(entry.value)
    return [path.parent / n for n in sorted(names) if (path.parent / n).is_file()]


@dataclass
class PrecisionReport:
    """The precision a strongly typed TensorRT build will use, and why we think so."""

    precision: str  # "fp32" | "fp16" | "int8"
    reason: str
    float16_initializers: int = 0
    float_initializers: int = 0
    qdq_nodes: int = 0
    meta_precision: str | None = None
    problems: list[str] = field(default_factory=list)

    def describe(self) -> str:
        text = f"{self.precision.upper()} ({self.reason})"
        if self.meta_precision and self.meta_precision != self.precision:
            text += (f"; note: the file's metadata says {self.meta_precision!r}, the graph "
                     f"decides")
        return text


def _load(model_or_path: Any):
    import onnx

    if isinstance(model_or_path, (str, os.PathLike)):
        path = Path(model_or_path)
        if not path.is_file():
            raise FCNError(f"ONNX file {path} does not exist")
        try:
            return onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # protobuf raises several types on corrupt input
            raise FCNError(f"{path} is not a readable ONNX file ({type(exc).__name__}: {exc})") from None
    return model_or_path


def _constant_values(model) -> dict[str, Any]:
    """Name -> TensorProto for initializers and Constant nodes (zero points live in either)."""
    values = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = attr.t
    return values


def detect_precision(model_or_path: Any) -> PrecisionReport:
    """FP32, FP16 or INT8 from the graph: Q/DQ nodes -> int8; float16 weights/casts -> fp16."""
    import onnx
    from onnx import numpy_helper

    model = _load(model_or_path)
    graph = model.graph
    f16 = sum(1 for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT16)
    f32 = sum(1 for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT)
    casts16 = sum(1 for n in graph.node if n.op_type == "Cast" and any(
        a.name == "to" and a.i == onnx.TensorProto.FLOAT16 for a in n.attribute))
    qdq = [n for n in graph.node if n.op_type in QDQ_OPS]
    meta_precision = {p.key: p.value for p in model.metadata_props}.get("fcn.precision")

    problems: list[str] = []
    if qdq:
        consts = _constant_values(model)
        for node in qdq:
            if len(node.input) < 3 or not node.input[2]:
                continue
            zp = consts.get(node.input[2])
            if zp is None:
                problems.append(f"{node.op_type} {node.name or node.output[0]!r}: zero point "
                                f"{node.input[2]!r} is not a constant")
                continue
            if zp.data_type != onnx.TensorProto.INT8:
                problems.append(f"{node.op_type} {node.name or node.output[0]!r}: zero point is "
                                f"{onnx.TensorProto.DataType.Name(zp.data_type)}, TensorRT needs "
                                "INT8 (symmetric quantization)")
                continue
            if zp.data_location != onnx.TensorProto.EXTERNAL:
                values = numpy_helper.to_array(zp)
                if np.any(values != 0):
                    problems.append(f"{node.op_type} {node.name or node.output[0]!r}: zero point "
                                    "is not 0; TensorRT needs symmetric quantization")
        n_q = sum(1 for n in qdq if n.op_type == "QuantizeLinear")
        reason = (f"{n_q} QuantizeLinear and {len(qdq) - n_q} DequantizeLinear nodes: explicit "
                  "INT8 quantization")
        if f16 or casts16:
            reason += f", other layers in FP16 ({f16} float16 initializers)"
        precision = "int8"
    elif f16 or casts16:
        precision = "fp16"
        reason = f"{f16} float16 initializers, {casts16} casts to float16"
    else:
        precision = "fp32"
        reason = f"{f32} float32 initializers, no float16 weights, no Q/DQ nodes"
    return PrecisionReport(precision=precision, reason=reason, float16_initializers=f16,
                           float_initializers=f32, qdq_nodes=len(qdq),
                           meta_precision=meta_precision, problems=problems)


@dataclass
class GraphInfo:
    """The ONNX facts a build depends on."""

    path: Path
    input_name: str
    input_shape: list[int | str | None]  # int = static, str = named dynamic, None = unnamed
    output_names: list[str]
    precision: PrecisionReport
    meta: ModelMeta | None
    external_files: list[Path] = field(default_factory=list)  # external-data files that exist
    unbuildable: list[str] = field(default_factory=list)  # what TensorRT's parser would reject


#: ONNX element types TensorRT casts to UINT8 from (it casts UINT8 only from/to FP32 and FP16).
_UINT8_CAST_SOURCES = ("FLOAT", "FLOAT16")
#: Ops whose output type is fixed and not float (the usual way an int64 reaches a Cast).
_INT_PRODUCERS = {"ArgMax": "INT64", "ArgMin": "INT64", "Shape": "INT64", "NonZero": "INT64"}


def unbuildable_casts(model) -> list[str]:
    """Casts to UINT8 from a non-float tensor: TensorRT's ONNX parser rejects them (UINT8 only
    converts from FP32/FP16), so ``labels = uint8(argmax)`` must go through float first, as
    fcn-export writes it. Found on the CPU, before any GPU time is spent."""
    import onnx

    producer = {out: n for n in model.graph.node for out in n.output}
    out = []
    for node in model.graph.node:
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        if node.op_type != "Cast" or to != onnx.TensorProto.UINT8 or not node.input:
            continue
        src = producer.get(node.input[0])
        if src is None:
            continue
        if src.op_type == "Cast":
            src_to = next((a.i for a in src.attribute if a.name == "to"), None)
            src_type = onnx.TensorProto.DataType.Name(src_to) if src_to is not None else None
        else:
            src_type = _INT_PRODUCERS.get(src.op_type)
        if src_type is not None and src_type not in _UINT8_CAST_SOURCES:
            out.append(f"Cast {node.name or node.output[0]!r} converts {src_type} (from "
                       f"{src.op_type} {src.name or src.output[0]!r}) to UINT8; TensorRT casts to "
                       "UINT8 only from FP32/FP16 (cast the argmax to float first, as fcn-export does)")
    return out


def inspect_onnx(path: str | os.PathLike) -> GraphInfo:
    """Read input/output names, the input's dims, the precision and the toolkit metadata."""
    path = Path(path)
    model = _load(path)
    init_names = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init_names]
    if len(inputs) != 1:
        raise FCNError(f"{path}: expected one network input 'image' [N,3,H,W], found "
                       f"{[i.name for i in inputs]}")
    inp = inputs[0]
    dims: list[int | str | None] = []
    for d in inp.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    props = {p.key: p.value for p in model.metadata_props}
    meta = None
    if any(k.startswith("fcn.") for k in props):
        try:
            meta = ModelMeta.from_onnx_props(props)
        except FCNError as exc:
            raise FCNError(f"{path}: {exc}") from None
    return GraphInfo(path=path, input_name=inp.name, input_shape=dims,
                     output_names=[o.name for o in model.graph.output],
                     precision=detect_precision(model), meta=meta,
                     external_files=_external_data_files(path, model),
                     unbuildable=unbuildable_casts(model))
