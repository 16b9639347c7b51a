"""The one place that loads, saves and walks ONNX graphs.

Every stage (export, quantize, the TensorRT build, the paper harness) reads ONNX through here, so
a missing or corrupt file is the same :class:`FCNError` everywhere, the Q/DQ op set, the
zero-point rule and the precision of a graph are decided once, and the toolkit's ``fcn.*``
metadata_props are read and written by one pair of functions (the key format is
:mod:`fcn_deploy.meta`'s, ``ONNX_PREFIX``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from fcn_deploy.errors import FCNError
from fcn_deploy.meta import ONNX_PREFIX, ModelMeta

#: The explicit-quantization ops (what TensorRT reads for INT8).
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
#: Ops that mean a graph is already quantized (Q/DQ or ONNX Runtime's integer operators).
QUANTIZED_GRAPH_OPS = frozenset(QDQ_OPS) | {"QLinearConv", "QLinearMatMul", "ConvInteger",
                                            "MatMulInteger", "DynamicQuantizeLinear", "QLinearAdd"}
HALF_TYPES = (onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)


# -- load / save ----------------------------------------------------------------------------
def load_model(model_or_path: Any, *, external_data: bool = False) -> onnx.ModelProto:
    """``onnx.ModelProto`` from a path (FCNError when missing or unreadable), or the proto itself.

    ``external_data``: also load the weights of a model saved with external data (needed to read
    weight values; not needed for names, shapes, types and metadata).
    """
    if not isinstance(model_or_path, (str, os.PathLike)):
        return model_or_path
    path = Path(model_or_path)
    if not path.is_file():
        raise FCNError(f"ONNX file {path} does not exist")
    try:
        return onnx.load(str(path), load_external_data=external_data)
    except Exception as exc:  # protobuf raises several types on corrupt input
        raise FCNError(f"{path} is not a readable ONNX file ({type(exc).__name__}: {exc})") from None


def save_model(model: onnx.ModelProto, path: str | os.PathLike, *, external: bool = False) -> None:
    """Write ``model`` to ``path``; ``external`` puts the weights in ``<name>.data`` beside it.

    Callers that publish an artifact wrap this in :func:`fcn_deploy.fileio.atomic_path`.
    """
    path = Path(path)
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=1024)
    else:
        onnx.save_model(model, str(path))


def external_data_files(path: str | os.PathLike, model: onnx.ModelProto | None = None) -> list[Path]:
    """The external-data files (that exist) next to ``path`` that its initializers point at."""
    path = Path(path)
    if model is None:
        try:
            model = load_model(path)
        except FCNError:
            return []
    names = set()
    for init in model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            for entry in init.external_data:
                if entry.key == "location":
                    names.add(entry.value)
    return [path.parent / n for n in sorted(names) if (path.parent / n).is_file()]


# -- toolkit metadata ----------------------------------------------------------------------
def meta_props(model: onnx.ModelProto) -> dict[str, str]:
    """The toolkit's ``fcn.*`` metadata_props, keys without the prefix."""
    return {p.key[len(ONNX_PREFIX):]: p.value for p in model.metadata_props
            if p.key.startswith(ONNX_PREFIX)}


def read_meta(model_or_path: Any) -> ModelMeta:
    """The :class:`ModelMeta` an ONNX file (or proto) carries; FCNError naming the file if none."""
    model = load_model(model_or_path)
    props = {p.key: p.value for p in model.metadata_props}
    try:
        return ModelMeta.from_onnx_props(props)
    except FCNError as exc:
        if isinstance(model_or_path, (str, os.PathLike)):
            raise FCNError(f"{model_or_path}: {exc}") from None
        raise


def read_meta_if_any(model: onnx.ModelProto, path: Any = None) -> ModelMeta | None:
    """Like :func:`read_meta`, but None when the graph has no ``fcn.*`` key at all."""
    if not meta_props(model):
        return None
    try:
        return ModelMeta.from_onnx_props({p.key: p.value for p in model.metadata_props})
    except FCNError as exc:
        raise FCNError(f"{path}: {exc}" if path is not None else str(exc)) from None


def write_meta(model: onnx.ModelProto, meta: ModelMeta) -> None:
    """Replace the toolkit's keys in an in-memory model's metadata_props (others are kept)."""
    keep = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(ONNX_PREFIX)]
    del model.metadata_props[:]
    for key, value in keep + sorted(meta.to_onnx_props().items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


# -- the network's interface -----------------------------------------------------------------
def graph_inputs(model: onnx.ModelProto) -> list[Any]:
    """The network inputs (ValueInfoProto) in order: graph inputs that are not initializers."""
    inits = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def value_dims(value: Any) -> list[int | str | None]:
    """A graph input/output's dims: int when static, its dim_param when named, else None."""
    return [int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or None)
            for d in value.type.tensor_type.shape.dim]


def interface_problems(model: onnx.ModelProto, meta: ModelMeta,
                       outputs: str | None = None) -> list[str]:
    """How the graph's inputs and outputs differ from what ``meta`` describes (empty: none).

    Inputs: ``meta.input_specs()`` in order, float32 ``[batch, C, height, width]`` with each
    input's own channels. Outputs: ``meta.output_names(outputs)`` in order, scores float32
    ``[batch, C_head, height, width]``, labels uint8 ``[batch, height, width]``. Every input and
    output shares the dim names batch/height/width (all of one call have the same N, H, W).
    """
    problems = []
    want: list[tuple[str, list, int]] = [
        (s.name, ["batch", s.channels, "height", "width"], onnx.TensorProto.FLOAT)
        for s in meta.input_specs()]
    got_inputs = graph_inputs(model)
    if [i.name for i in got_inputs] != [w[0] for w in want]:
        problems.append(f"inputs are {[i.name for i in got_inputs]}; the metadata describes "
                        f"{[w[0] for w in want]}")
    heads = {h.scores_output: h for h in meta.head_specs()}
    out_want = []
    for name in meta.output_names(outputs):
        if name in heads:
            out_want.append((name, ["batch", heads[name].num_classes, "height", "width"],
                             onnx.TensorProto.FLOAT))
        else:
            out_want.append((name, ["batch", "height", "width"], onnx.TensorProto.UINT8))
    got_outputs = list(model.graph.output)
    if [o.name for o in got_outputs] != [w[0] for w in out_want]:
        problems.append(f"outputs are {[o.name for o in got_outputs]}; the metadata describes "
                        f"{[w[0] for w in out_want]}")
    values = {v.name: v for v in [*got_inputs, *got_outputs]}
    for name, dims, elem in want + out_want:
        value = values.get(name)
        if value is None:
            continue
        got = value_dims(value)
        got_type = value.type.tensor_type.elem_type
        if got != dims or got_type != elem:
            problems.append(f"{name} is {onnx.TensorProto.DataType.Name(got_type).lower()}"
                            f"{got}; expected {onnx.TensorProto.DataType.Name(elem).lower()}"
                            f"{dims}")
    return problems


# -- graph helpers ---------------------------------------------------------------------------
def attr(node: Any, name: str, default: Any = None) -> Any:
    """The value of a node attribute (python/numpy/TensorProto), or ``default``."""
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def set_attr(node: Any, name: str, value: Any) -> None:
    """Set (replace) a node attribute."""
    for i, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[i]
            break
    node.attribute.append(helper.make_attribute(name, value))


def label(node: Any) -> str:
    """``"<op> <name>"`` for messages."""
    return f"{node.op_type} {node.name or '(unnamed)'}"


def producers(graph: Any) -> dict[str, Any]:
    """Tensor name -> the node that computes it."""
    return {out: n for n in graph.node for out in n.output}


def consumers(graph: Any) -> dict[str, list[tuple[Any, int]]]:
    """Tensor name -> [(node, input index)] of the nodes that read it."""
    out: dict[str, list[tuple[Any, int]]] = {}
    for n in graph.node:
        for i, name in enumerate(n.input):
            out.setdefault(name, []).append((n, i))
    return out


class Graph:
    """Constants and producer/consumer maps of one (top-level) ONNX graph, taken when built.

    Constants are initializers and Constant-node outputs (zero points and weights live in
    either); :meth:`tensor` gives the TensorProto (types readable without the data),
    :meth:`constant` the numpy value.
    """

    def __init__(self, model: Any):
        graph = getattr(model, "graph", model)  # a ModelProto or its GraphProto
        self.nodes = list(graph.node)
        self.inits = {t.name: t for t in graph.initializer}
        self.const_nodes: dict[str, Any] = {}
        for node in self.nodes:
            if node.op_type == "Constant" and len(node.output) == 1:
                value = attr(node, "value")
                if value is not None:
                    self.const_nodes[node.output[0]] = value
        self.producer = producers(graph)
        self.consumers = consumers(graph)
        self.graph_inputs = {i.name for i in graph.input} - set(self.inits)
        self.graph_outputs = {o.name for o in graph.output}
        self._arrays: dict[str, np.ndarray] = {}

    def tensor(self, name: str) -> Any | None:
        return self.inits.get(name, self.const_nodes.get(name))

    def is_constant(self, name: str) -> bool:
        return name in self.inits or name in self.const_nodes

    def constant(self, name: str) -> np.ndarray | None:
        if name not in self._arrays:
            tensor = self.tensor(name)
            if tensor is None:
                return None
            self._arrays[name] = numpy_helper.to_array(tensor)
        return self._arrays[name]


def remove_unused_initializers(model: Any) -> int:
    """Drop initializers no node and no graph output reads; returns how many."""
    graph = model.graph
    used = {name for node in graph.node for name in node.input}
    used |= {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name in used]
    removed = len(graph.initializer) - len(keep)
    if removed:
        del graph.initializer[:]
        graph.initializer.extend(keep)
    return removed


# -- Q/DQ and precision ---------------------------------------------------------------------
@dataclass
class ZeroPoint:
    """What a Q/DQ node's zero point is; TensorRT needs a constant int8 0 (symmetric)."""

    name: str  # "" when the node has none (the quantized type is then uint8)
    constant: bool = False
    data_type: int | None = None  # ONNX element type (onnx.TensorProto.INT8, ...)
    nonzero: bool | None = None  # None when the values are not loaded (external data)
    shape: tuple[int, ...] | None = None

    @property
    def type_name(self) -> str | None:
        """The ONNX name of the element type, e.g. ``"INT8"``."""
        return None if self.data_type is None else onnx.TensorProto.DataType.Name(self.data_type)

    @property
    def numpy_name(self) -> str | None:
        """The numpy name of the element type, e.g. ``"int8"``."""
        if self.data_type is None:
            return None
        return str(np.dtype(helper.tensor_dtype_to_np_dtype(self.data_type)))


def zero_point(g: Graph, node: Any) -> ZeroPoint:
    """The zero point of a QuantizeLinear/DequantizeLinear node, read from the graph."""
    name = node.input[2] if len(node.input) > 2 else ""
    if not name:
        return ZeroPoint(name="")
    tensor = g.tensor(name)
    if tensor is None:
        return ZeroPoint(name=name)
    zp = ZeroPoint(name=name, constant=True, data_type=tensor.data_type)
    if tensor.data_location != onnx.TensorProto.EXTERNAL:  # else: the values are not loaded
        values = g.constant(name)
        zp.nonzero = bool(np.any(values != 0))
        zp.shape = tuple(values.shape)
    return zp


def half_precision_parts(model: Any, *, types: tuple[int, ...] = HALF_TYPES
                         ) -> tuple[list[str], list[str]]:
    """(names of half-precision initializers, names of Casts to half) for element ``types``."""
    half = [t.name for t in model.graph.initializer if t.data_type in types]
    casts = [n.name for n in model.graph.node if n.op_type == "Cast" and attr(n, "to") in types]
    return half, casts


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


def detect_precision(model_or_path: Any) -> PrecisionReport:
    """FP32, FP16 or INT8 from the graph: Q/DQ nodes -> int8; float16 weights/casts -> fp16.

    ``problems`` lists Q/DQ zero points TensorRT rejects (not constant, not int8, not 0).
    """
    model = load_model(model_or_path)
    graph = model.graph
    half, casts = half_precision_parts(model, types=(onnx.TensorProto.FLOAT16,))
    f16, casts16 = len(half), len(casts)
    f32 = sum(1 for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT)
    qdq = [n for n in graph.node if n.op_type in QDQ_OPS]
    meta_precision = meta_props(model).get("precision")

    problems: list[str] = []
    if qdq:
        g = Graph(model)
        for node in qdq:
            zp = zero_point(g, node)
            who = f"{node.op_type} {node.name or node.output[0]!r}"
            if not zp.name:
                continue
            if not zp.constant:
                problems.append(f"{who}: zero point {zp.name!r} is not a constant")
            elif zp.type_name != "INT8":
                problems.append(f"{who}: zero point is {zp.type_name}, TensorRT needs INT8 "
                                "(symmetric quantization)")
            elif zp.nonzero:
                problems.append(f"{who}: zero point is not 0; TensorRT needs symmetric "
                                "quantization")
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
