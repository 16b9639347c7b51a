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

import onnx

from fcn_deploy.errors import FCNError
from fcn_deploy.meta import ModelMeta
# Re-exported: documented here before the ONNX graph layer existed.
from fcn_deploy.onnxgraph import (QDQ_OPS, PrecisionReport, attr, detect_precision,  # noqa: F401
                                  external_data_files, load_model, producers, read_meta_if_any)


def sha256_file(path: str | os.PathLike, *, chunk: int = 1 << 20,
                external_files: list[Path] | None = None) -> str:
    """Hex sha256 of a file, including its external-data file (``<name>.data``) when present.

    ``external_files``: those files when the caller already knows them (:class:`GraphInfo`), so
    the ONNX file is not parsed again just to find them.
    """
    path = Path(path)
    if external_files is None:
        external_files = external_data_files(path)
    digest = hashlib.sha256()
    for part in (path, *external_files):
        with open(part, "rb") as f:
            while block := f.read(chunk):
                digest.update(block)
    return digest.hexdigest()


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
    producer = producers(model.graph)
    out = []
    for node in model.graph.node:
        to = attr(node, "to")
        if node.op_type != "Cast" or to != onnx.TensorProto.UINT8 or not node.input:
            continue
        src = producer.get(node.input[0])
        if src is None:
            continue
        if src.op_type == "Cast":
            src_to = attr(src, "to")
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
    model = load_model(path)
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
    meta = read_meta_if_any(model, path)
    return GraphInfo(path=path, input_name=inp.name, input_shape=dims,
                     output_names=[o.name for o in model.graph.output],
                     precision=detect_precision(model), meta=meta,
                     external_files=external_data_files(path, model),
                     unbuildable=unbuildable_casts(model))
