"""Check an explicitly quantized (Q/DQ) ONNX graph against the rules TensorRT accepts.

TensorRT builds INT8 engines only from explicit quantization, and only in this form:
symmetric INT8 (zero points constant 0 of type int8), scales constant and > 0, per-channel
scales only on weights (Conv along axis 0, the output channels), activations per-tensor, and
DequantizeLinear inputs of type int8 (so biases are not quantized to int32). ConvTranspose
weights must be per-tensor here: TensorRT's support for per-channel ConvTranspose weights is
uncertain (a maintainer said only the input-channel axis worked; ONNX Runtime and ModelOpt emit
the output-channel axis), and per-tensor is accepted everywhere.

:func:`check_trt_qdq` returns the violations as readable strings (empty list: the graph passes).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from fcn_deploy.onnxgraph import QDQ_OPS, Graph, attr, label, load_model, zero_point

#: Per-channel axis TensorRT accepts for the weight input of each op (absent: per-tensor only).
WEIGHT_CHANNEL_AXIS = {"Conv": 0}
#: Ops whose input 1 is a weight that may be quantized.
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def check_trt_qdq(model_or_path: Any, *, require_qdq: bool = True) -> list[str]:
    """Return every way the Q/DQ graph breaks TensorRT's explicit-quantization rules.

    ``model_or_path`` is an ``onnx.ModelProto`` or a path. With ``require_qdq`` a graph with no
    Q/DQ node at all is reported too (it would not build as INT8).
    """
    g = Graph(load_model(model_or_path, external_data=True))
    problems: list[str] = []
    qdq_nodes = [n for n in g.nodes if n.op_type in QDQ_OPS]
    if require_qdq and not qdq_nodes:
        problems.append("the graph has no QuantizeLinear/DequantizeLinear nodes; expected an "
                        "explicitly quantized (Q/DQ) graph")
    for node in g.nodes:
        if node.domain not in ("", "ai.onnx") and node.op_type in QDQ_OPS:
            problems.append(f"{label(node)}: domain {node.domain!r}; TensorRT parses only the "
                            "standard ONNX QuantizeLinear/DequantizeLinear")
    for node in qdq_nodes:
        problems.extend(_check_qdq_node(g, node))
    # Biases must stay float: a DequantizeLinear feeding a bias input means int32 bias quantization.
    for node in g.nodes:
        if node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 2 and node.input[2]:
            prod = g.producer.get(node.input[2])
            if prod is not None and prod.op_type == "DequantizeLinear":
                problems.append(f"{label(node)}: bias {node.input[2]!r} is quantized; TensorRT "
                                "needs float biases (use QuantizeBias=False)")
    problems.extend(_check_grouped_int8(g))
    return problems


#: Channels per group TensorRT needs for a grouped (de)convolution in INT8 (NvInfer.h of 10.16
#: and 11.1, IConvolutionLayer::setNbGroups and IDeconvolutionLayer::setNbGroups: "When using
#: groups in int8 mode, the size of the groups ... must be a multiple of 4 for both input and
#: output").
INT8_GROUP_MULTIPLE = 4


#: Ops the grouped-INT8 rule is enforced on: the header states it for both. The reference
#: nets' grouped convolutions (FCN-AlexNet's conv2/4/5, 48-192 channels per group) satisfy it;
#: narrow widths may not (width 1/16: conv2 has 3 input channels per group), and fcn-quantize
#: keeps those in float (:func:`int8_group_misfits`).
GROUPED_INT8_OPS = ("Conv", "ConvTranspose")


def _group_channels(g: Graph, node: Any) -> tuple[int, int, int] | None:
    """``(groups, input channels per group, output channels per group)`` of a grouped Conv or
    ConvTranspose whose weight is a constant (directly or behind a DequantizeLinear); None for
    an ungrouped layer or an unknown weight."""
    groups = int(attr(node, "group", 1))
    if groups <= 1 or len(node.input) < 2:
        return None
    weight = g.constant(node.input[1])
    dq = g.producer.get(node.input[1])
    if weight is None and dq is not None and dq.op_type == "DequantizeLinear":
        weight = g.constant(dq.input[0])
    if weight is None or weight.ndim < 2:
        return None
    if node.op_type == "Conv":  # [Cout, Cin/group, kH, kW]
        return groups, int(weight.shape[1]), int(weight.shape[0]) // groups
    return groups, int(weight.shape[0]) // groups, int(weight.shape[1])  # [Cin, Cout/group, ..]


def _misfit(channels: tuple[int, int, int] | None) -> bool:
    return channels is not None and any(c % INT8_GROUP_MULTIPLE for c in channels[1:])


def int8_group_misfits(model: Any, ops: tuple[str, ...] = ("Conv",)) -> list[str]:
    """Names of the grouped layers (of ``ops``) TensorRT cannot run in INT8, quantized or not:
    channels per group not a multiple of 4. fcn-quantize keeps these in float."""
    g = Graph(model)
    return [n.name for n in g.nodes if n.op_type in ops and _misfit(_group_channels(g, n))]


def _check_grouped_int8(g: Graph, ops: tuple[str, ...] = GROUPED_INT8_OPS) -> list[str]:
    """Grouped (de)convolutions that would run in INT8 (a DequantizeLinear feeds their data or
    weight) with channels per group not a multiple of 4: TensorRT cannot build them. FCN's
    depthwise upsampling (one channel per group) and narrow FCN-AlexNets' conv2 are the cases
    this catches."""
    out: list[str] = []
    for node in g.nodes:
        if node.op_type not in ops:
            continue
        channels = _group_channels(g, node)
        fed = [g.producer.get(name) for name in node.input[:2]]
        if not _misfit(channels) or not any(
                p is not None and p.op_type == "DequantizeLinear" for p in fed):
            continue
        groups, per_in, per_out = channels
        kind = "depthwise " if per_in == 1 and per_out == 1 else "grouped "
        out.append(f"{label(node)}: {kind}{node.op_type} ({groups} groups, {per_in} input and "
                   f"{per_out} output channels per group) is quantized; TensorRT runs grouped "
                   f"(de)convolutions in INT8 only with channels per group a multiple of "
                   f"{INT8_GROUP_MULTIPLE}. " + (
                       "Keep upsampling in float (fcn-quantize --keep-float upsample, the "
                       "default) or export without the depthwise rewrite (fcn-export "
                       "--no-depthwise-upsampling)" if node.op_type == "ConvTranspose" else
                       "Keep it in float (fcn-quantize does so by itself; with another "
                       f"quantizer exclude {node.name or 'the node'})"))
    return out


def _check_qdq_node(g: Graph, node: Any) -> list[str]:
    out: list[str] = []
    who = label(node)
    x = node.input[0]
    scale_name = node.input[1] if len(node.input) > 1 else ""
    zp_name = node.input[2] if len(node.input) > 2 else ""

    # -- scale: constant, float, finite and > 0 --------------------------------------------
    scale = g.constant(scale_name) if scale_name else None
    if scale is None:
        out.append(f"{who}: scale {scale_name!r} is not a constant; TensorRT needs constant scales")
    elif scale.dtype.kind != "f":
        out.append(f"{who}: scale {scale_name!r} has type {scale.dtype}; expected float")
    elif not np.all(np.isfinite(scale)) or not np.all(scale > 0):
        out.append(f"{who}: scale {scale_name!r} has values <= 0 or not finite "
                   f"(min {float(np.min(scale)):g}); expected every scale > 0")

    # -- zero point: present, constant int8, all zero (symmetric) -----------------------------
    if not zp_name:
        out.append(f"{who}: no zero point input; expected an explicit int8 zero point 0 (without "
                   "one the quantized type is uint8)")
    else:
        zp = zero_point(g, node)
        if not zp.constant:
            out.append(f"{who}: zero point {zp_name!r} is not a constant")
        else:
            if zp.type_name != "INT8":
                out.append(f"{who}: zero point {zp_name!r} has type {zp.numpy_name}; expected int8 "
                           "(TensorRT INT8 is signed)")
            if zp.nonzero:
                out.append(f"{who}: zero point {zp_name!r} is not 0 (asymmetric quantization); "
                           "expected 0 (use ActivationSymmetric=True, WeightSymmetric=True)")
            if scale is not None and zp.shape is not None and zp.shape != scale.shape:
                out.append(f"{who}: zero point shape {zp.shape} differs from scale shape "
                           f"{scale.shape}")
    if attr(node, "block_size", 0):
        out.append(f"{who}: blocked quantization (block_size) is not INT8 convolution quantization")

    # -- the int8 data a DequantizeLinear reads ------------------------------------------
    if node.op_type == "DequantizeLinear":
        const = g.constant(x)
        if const is not None:
            if const.dtype != np.int8:
                out.append(f"{who}: input {x!r} has type {const.dtype}; TensorRT's "
                           "DequantizeLinear input must be int8 (int32 bias quantization is "
                           "not supported)")
        else:
            prod = g.producer.get(x)
            if prod is None or prod.op_type != "QuantizeLinear":
                out.append(f"{who}: input {x!r} comes from "
                           f"{label(prod) if prod is not None else 'a graph input'}; expected a "
                           "QuantizeLinear or an int8 constant")
    else:
        users = g.consumers.get(node.output[0], [])
        if node.output[0] in g.graph_outputs:
            out.append(f"{who}: its int8 output {node.output[0]!r} is a graph output; expected "
                       "it to be dequantized")
        for user, _ in users:
            if user.op_type != "DequantizeLinear":
                out.append(f"{who}: its int8 output feeds {label(user)}; expected only "
                           "DequantizeLinear consumers")

    # -- per-channel only on weights, with the axis TensorRT expects ----------------------
    per_channel = scale is not None and scale.size > 1
    if scale is not None and scale.ndim > 1:
        out.append(f"{who}: scale {scale_name!r} has shape {scale.shape}; expected a scalar or "
                   "a 1-D per-channel vector")
    weight_data = _weight_data(g, node)
    if per_channel:
        if weight_data is None:
            out.append(f"{who}: per-channel scale ({scale.size} values) on activation {x!r}; "
                       "TensorRT needs per-tensor activation scales")
        else:
            data, users = weight_data
            axis = int(attr(node, "axis", 1))
            axis = axis + data.ndim if axis < 0 else axis
            if 0 <= axis < data.ndim and data.shape[axis] != scale.size:
                out.append(f"{who}: {scale.size} scales for axis {axis} of a weight of shape "
                           f"{tuple(data.shape)}")
            for user, index in users:
                if index != 1 or user.op_type not in WEIGHTED_OPS:
                    out.append(f"{who}: per-channel tensor feeds input {index} of "
                               f"{label(user)}; per-channel is only for weights")
                    continue
                want = WEIGHT_CHANNEL_AXIS.get(user.op_type)
                if want is None:
                    out.append(f"{who}: per-channel weights for {label(user)}; expected "
                               f"per-tensor weights for {user.op_type} (TensorRT's support for "
                               "per-channel ConvTranspose weights is uncertain)")
                elif axis != want:
                    out.append(f"{who}: per-channel axis {axis} for the weight of "
                               f"{label(user)}; TensorRT expects axis {want} (output channels)")
    return out


def _weight_data(g: Graph, node: Any):
    """If ``node`` quantizes/dequantizes a constant weight: (weight array, weight consumers)."""
    if node.op_type == "DequantizeLinear":
        data = g.constant(node.input[0])
        if data is None:
            prod = g.producer.get(node.input[0])
            if prod is None or prod.op_type != "QuantizeLinear":
                return None
            data = g.constant(prod.input[0])
        if data is None:
            return None
        return data, g.consumers.get(node.output[0], [])
    data = g.constant(node.input[0])
    if data is None:
        return None
    users = []
    for dq, _ in g.consumers.get(node.output[0], []):
        users.extend(g.consumers.get(dq.output[0], []))
    return data, users
