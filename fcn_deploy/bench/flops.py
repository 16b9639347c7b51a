"""How much arithmetic a forward pass is, so a measured time becomes a FLOP rate.

Where the count comes from (chosen per artifact, recorded in every report row as ``mac_source``):

- ``model.pt`` / an in-memory PyTorch model: :func:`fcn_deploy.models.analysis.count_macs` on
  the meta device (exact, the layers PyTorch runs).
- ``.onnx``: counted **from the graph itself** (:func:`onnx_macs`): ONNX shape inference at the
  benchmarked input shape, then for every Conv/ConvTranspose (and MatMul/Gemm, QLinearConv,
  ConvInteger) its weight shape times its output (Conv) or input (ConvTranspose) size. We chose
  the graph over rebuilding ``meta.arch`` with ``create_model`` because it counts what the
  graph *executes*: the export's depthwise upsampling rewrite really does remove the
  off-diagonal multiplications, INT8/FP16 graphs and foreign graphs (no metadata) are counted
  the same way, and no PyTorch is needed. Only if shape inference leaves a convolution's size
  unknown do we fall back to the metadata's architecture (``mac_source`` says so).
- TensorRT plans: the metadata's architecture through ``create_model`` + ``count_macs``.

One MAC is two FLOPs. Pools, ReLU, LRN, additions and the argmax are not counted.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from fcn_deploy.errors import FCNError
from fcn_deploy.runtime.memory import infer_shapes_at

_CONV_OPS = {"Conv", "ConvInteger", "QLinearConv", "NhwcConv", "FusedConv"}
_DECONV_OPS = {"ConvTranspose"}
_MATMUL_OPS = {"MatMul", "Gemm", "MatMulInteger", "QLinearMatMul"}
#: Which input holds the weight, per op (QLinearConv: x, x_scale, x_zp, w, ...).
_WEIGHT_INPUT = {"QLinearConv": 3, "QLinearMatMul": 3}


@dataclass
class MacCount:
    """Multiply-accumulates of one forward pass at ``input_shape``.

    ``conv``: ordinary convolutions (the bulk); ``deconv``: transposed convolutions
    (upsampling); ``matmul``: MatMul/Gemm. ``source`` says how it was counted.
    """

    input_shape: tuple[int, ...]
    conv: int = 0
    deconv: int = 0
    matmul: int = 0
    source: str = ""
    by_node: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.conv + self.deconv + self.matmul

    @property
    def gflop(self) -> float:
        """Total FLOPs (2 per MAC) in units of 1e9."""
        return 2 * self.total / 1e9


def _dims(value_info) -> list[int | None]:
    out = []
    for d in value_info.type.tensor_type.shape.dim:
        out.append(int(d.dim_value) if d.HasField("dim_value") else None)
    return out


def onnx_macs(model_or_path: Any, input_shape: Sequence[int], *,
              input_name: str | None = None) -> MacCount:
    """Count the MACs of an ONNX graph at a concrete ``input_shape`` (N, C, H, W).

    Weights need not be loaded (only their dims are read), so external-data graphs work. Raises
    FCNError when a convolution's shape cannot be inferred (see :func:`artifact_macs` for the
    fallback).
    """
    shape = tuple(int(d) for d in input_shape)
    inferred = infer_shapes_at(model_or_path, shape, input_name=input_name,
                               purpose="count MACs")
    inits = {t.name: list(t.dims) for t in inferred.graph.initializer}
    shapes: dict[str, list[int | None]] = {}
    g = inferred.graph
    for v in list(g.value_info) + list(g.input) + list(g.output):
        shapes[v.name] = _dims(v)
    for name, d in inits.items():
        shapes[name] = [int(x) for x in d]
    for node in inferred.graph.node:  # Constant nodes carry weights in some exporters' graphs
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    shapes[node.output[0]] = [int(x) for x in a.t.dims]
    batch = shape[0]

    def known(name: str, what: str, node) -> list[int]:
        s = shapes.get(name)
        if s is None:
            raise FCNError(f"cannot count MACs: shape of {what} {name!r} of {node.op_type} "
                           f"{node.name!r} was not inferred")
        s = list(s)
        if s and s[0] is None and what != "weight":
            s[0] = batch  # FCN graphs keep the batch; inference sometimes loses it after a Slice
        if any(v is None for v in s):
            raise FCNError(f"cannot count MACs: {what} {name!r} of {node.op_type} {node.name!r} "
                           f"has unknown dims {s}")
        return s

    count = MacCount(input_shape=shape, source="onnx graph (shape inference)")
    for i, node in enumerate(inferred.graph.node):
        op = node.op_type
        label = node.name or f"{op}_{i}"
        if op in _CONV_OPS or op in _DECONV_OPS:
            w = known(node.input[_WEIGHT_INPUT.get(op, 1)], "weight", node)
            per = math.prod(w[1:])  # Conv: Cin/g*kh*kw per output; ConvTranspose: Cout/g*kh*kw
            if op in _DECONV_OPS:
                macs = math.prod(known(node.input[0], "input", node)) * per
                count.deconv += macs
            else:
                macs = math.prod(known(node.output[0], "output", node)) * per
                count.conv += macs
        elif op in _MATMUL_OPS:
            a = known(node.input[0], "input", node)
            out = known(node.output[0], "output", node)
            k = a[-1]
            if op == "Gemm" and any(x.name == "transA" and x.i for x in node.attribute):
                k = a[-2]
            macs = math.prod(out) * k
            count.matmul += macs
        else:
            continue
        count.by_node[label] = macs
    if count.total == 0:
        raise FCNError("the graph has no Conv, ConvTranspose, MatMul or Gemm to count")
    return count


def torch_macs(model: Any, input_shape: Sequence[int]) -> MacCount:
    """MACs of a PyTorch model (``fcn_deploy.models.analysis.count_macs``), split by layer kind."""
    from torch import nn

    # lazy: fcn_deploy.models imports torch, which importing fcn_deploy.bench must not load
    from fcn_deploy.models.analysis import count_macs

    shape = tuple(int(d) for d in input_shape)
    by_layer = count_macs(model, shape, by_layer=True)
    modules = dict(model.named_modules())
    count = MacCount(input_shape=shape, source="pytorch model (count_macs)")
    for name, macs in by_layer.items():
        module = modules.get(name)
        if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            count.deconv += macs
        elif isinstance(module, nn.Linear):
            count.matmul += macs
        else:
            count.conv += macs
        count.by_node[name] = macs
    return count


def arch_macs(meta: Any, input_shape: Sequence[int]) -> MacCount:
    """MACs of ``meta.arch`` rebuilt with ``create_model`` (weights never touch memory)."""
    import torch

    # lazy: fcn_deploy.models imports torch, which importing fcn_deploy.bench must not load
    from fcn_deploy.models import create_model, list_models

    if meta is None or meta.arch not in list_models():
        arch = getattr(meta, "arch", None)
        raise FCNError(f"cannot count MACs: architecture {arch!r} is not a registered model")
    kwargs = dict(meta.arch_kwargs or {})
    kwargs.setdefault("num_classes", meta.num_classes)
    with torch.device("meta"):
        model = create_model(meta.arch, **kwargs)
    count = torch_macs(model, input_shape)
    count.source = f"metadata arch {meta.arch} (create_model + count_macs)"
    return count


def artifact_macs(path: str | os.PathLike, input_shape: Sequence[int], *, meta: Any = None,
                  model: Any = None) -> MacCount | None:
    """MACs for a benchmarked artifact, by the rules in this module's docstring; None if unknown.

    ``model``: the in-memory PyTorch model when there is one (the torch backend's).
    """
    suffix = Path(path).suffix.lower()
    if model is not None:
        return torch_macs(model, input_shape)
    if suffix == ".onnx":
        try:
            return onnx_macs(path, input_shape)
        except FCNError as exc:
            first = str(exc)
        try:
            count = arch_macs(meta, input_shape)
        except (FCNError, ImportError):
            return None
        count.source += f"; graph count failed: {first}"
        return count
    try:
        return arch_macs(meta, input_shape)
    except (FCNError, ImportError):
        return None
