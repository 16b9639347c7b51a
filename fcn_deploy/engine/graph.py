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
                                  external_data_files, graph_inputs, load_model, producers,
                                  read_meta_if_any, value_dims)


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
    """The ONNX facts a build depends on. ``input_name`` / ``input_shape`` are the first input's
    (the one the profiles are given for); ``inputs`` holds every input in order."""

    path: Path
    input_name: str
    input_shape: list[int | str | None]  # int = static, str = named dynamic, None = unnamed
    output_names: list[str]
    precision: PrecisionReport
    meta: ModelMeta | None
    external_files: list[Path] = field(default_factory=list)  # external-data files that exist
    unbuildable: list[str] = field(default_factory=list)  # what TensorRT's parser would reject
    inputs: dict[str, list[int | str | None]] = field(default_factory=dict)  # name -> dims

    def __post_init__(self) -> None:
        if not self.inputs:
            self.inputs = {self.input_name: list(self.input_shape)}


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
    """Read input/output names, the inputs' dims, the precision and the toolkit metadata."""
    path = Path(path)
    model = load_model(path)
    inputs = {i.name: value_dims(i) for i in graph_inputs(model)}
    if not inputs:
        raise FCNError(f"{path}: the graph has no input; expected an image input 'image' "
                       "[N,3,H,W] (and the other inputs of a multi-input net)")
    first = next(iter(inputs))
    meta = read_meta_if_any(model, path)
    return GraphInfo(path=path, input_name=first, input_shape=inputs[first],
                     output_names=[o.name for o in model.graph.output],
                     precision=detect_precision(model), meta=meta,
                     external_files=external_data_files(path, model),
                     unbuildable=unbuildable_casts(model), inputs=inputs)
