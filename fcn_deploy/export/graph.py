"""Graph rewrites applied after export, each exact and each optional.

* ``simplify``: constant folding and shape-subgraph cleanup with onnxslim.
* ``depthwise_upsampling``: a ConvTranspose whose C x C kernel is exactly channel-diagonal (the
  fixed bilinear upsampling of the reference nets) becomes a grouped one (group=C, kernel [C,1,k,k]).
  The products it drops are exact zeros, so the outputs are unchanged; C times less work.
* ``fold_crops``: a ConvTranspose whose output is only cropped (Slice with constant starts) gets the
  crop's start offsets as its begin pads, so the rows/columns the crop throws away in front are
  never computed. The end of the crop cannot be folded the same way: ONNX pads are static, while
  how much the upsampled map overhangs the image at the end depends on H and W (H mod 32 for the
  stride-32 nets), so the remaining Slice keeps its dynamic end.
* ``add_label_head``: argmax over classes inside the graph, as ArgMax -> Cast(float) ->
  Cast(uint8). TensorRT converts to/from uint8 only from float32/float16 (never from int32/int64),
  and uint8 only as a network input/output, hence the float step.

All functions work on an in-memory ``onnx.ModelProto`` and return what they changed, so the export
report and the metadata can say which optimizations were applied.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from fcn_deploy.errors import FCNError
from fcn_deploy.onnxgraph import (Graph, attr, consumers, producers,
                                  remove_unused_initializers, set_attr)

_INT64_BIG = 2 ** 62  # Slice ends at or above this mean "to the end" (exporters write INT64_MAX)


def node_count(model) -> int:
    return len(model.graph.node)


def op_histogram(model) -> dict[str, int]:
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))


# -- small graph helpers ----------------------------------------------------------------------
def _constants(graph) -> dict[str, np.ndarray]:
    """Values of initializers and Constant-node outputs, by tensor name (as the graph is now)."""
    g = Graph(graph)
    return {name: g.constant(name) for name in (*g.inits, *g.const_nodes)}


def _unique_name(taken: set[str], base: str) -> str:
    name, i = base, 1
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


def _all_names(graph) -> set[str]:
    names = {t.name for t in graph.initializer}
    names |= {v.name for v in list(graph.input) + list(graph.output) + list(graph.value_info)}
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
        names.add(node.name)
    return names


# -- simplification ---------------------------------------------------------------------------
def simplify(model):
    """Constant folding, dead-code and shape-subgraph cleanup with onnxslim; returns a new model.

    Metadata props and the names of inputs/outputs are preserved.
    """
    import onnxslim

    props = [(p.key, p.value) for p in model.metadata_props]
    try:
        slim = onnxslim.slim(model)
    except Exception as exc:  # a failure here is a bug in the graph or in onnxslim: say which
        raise RuntimeError(f"onnxslim failed to simplify the exported graph: {exc}") from exc
    if slim is None:
        raise RuntimeError("onnxslim returned no model")
    del slim.metadata_props[:]
    for key, value in props:
        entry = slim.metadata_props.add()
        entry.key, entry.value = key, value
    return slim


# -- depthwise upsampling -------------------------------------------------------------------
def depthwise_upsampling(model) -> dict[str, list[str]]:
    """Rewrite exactly channel-diagonal C x C ConvTranspose layers as grouped (group=C) ones.

    Returns ``{"rewritten": [...], "skipped_not_diagonal": [...]}`` (node names). A layer is left
    alone unless its weight is a constant [C, C, kh, kw] tensor with every off-diagonal entry
    exactly zero, group == 1 and C > 1.
    """
    from onnx import numpy_helper

    graph = model.graph
    consts = _constants(graph)
    taken = _all_names(graph)
    rewritten, skipped = [], []
    for node in graph.node:
        if node.op_type != "ConvTranspose" or attr(node, "group", 1) != 1 or len(node.input) < 2:
            continue
        weight = consts.get(node.input[1])
        if weight is None or weight.ndim != 4 or weight.shape[0] != weight.shape[1]:
            continue
        channels = weight.shape[0]
        if channels < 2:
            continue
        idx = np.arange(channels)
        off_diagonal = weight.copy()
        off_diagonal[idx, idx] = 0
        if np.any(off_diagonal != 0):
            skipped.append(node.name or node.output[0])
            continue
        diagonal = np.ascontiguousarray(weight[idx, idx][:, None])  # [C, 1, kh, kw]
        name = _unique_name(taken, f"{node.input[1]}.depthwise")
        graph.initializer.append(numpy_helper.from_array(diagonal.astype(weight.dtype), name))
        node.input[1] = name
        set_attr(node, "group", int(channels))
        rewritten.append(node.name or node.output[0])
    remove_unused_initializers(model)
    return {"rewritten": rewritten, "skipped_not_diagonal": skipped}


# -- crop folding -----------------------------------------------------------------------------
def _depends_on(graph, tensor: str, targets: set[str]) -> bool:
    """Whether ``tensor`` is computed (transitively) from any tensor in ``targets``."""
    producer = producers(graph)
    stack, seen = [tensor], set()
    while stack:
        name = stack.pop()
        if name in targets:
            return True
        if name in seen or name not in producer:
            continue
        seen.add(name)
        stack.extend(producer[name].input)
    return False


def fold_crops(model) -> list[dict[str, Any]]:
    """Fold the constant start offsets of the crops after a ConvTranspose into its begin pads.

    Pattern: ConvTranspose -> Slice [-> Slice ...], every link with a single consumer, Slice
    starts/axes/steps constant, steps 1, starts >= 0 on the spatial axes, and the Slice ends not
    computed from the ConvTranspose's output. The Slice keeps cropping the end (its ends are
    reduced by the folded offset). Returns one record per folded ConvTranspose.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    consts = _constants(graph)
    users_of = consumers(graph)
    outputs = {o.name for o in graph.output}
    taken = _all_names(graph)
    folded = []
    new_nodes: dict[int, list] = {}  # index of a Slice -> nodes to insert before it
    index = {id(n): i for i, n in enumerate(graph.node)}
    for deconv in graph.node:
        if deconv.op_type != "ConvTranspose":
            continue
        if attr(deconv, "output_shape") is not None or attr(deconv, "auto_pad", b"NOTSET") not in (
                b"NOTSET", "NOTSET"):
            continue
        kernel = consts.get(deconv.input[1]) if len(deconv.input) > 1 else None
        if kernel is None or kernel.ndim != 4:
            continue
        pads = list(attr(deconv, "pads", [0, 0, 0, 0]))
        chain_tensors = {deconv.output[0]}
        tensor = deconv.output[0]
        offsets = [0, 0]
        edits = []  # (slice node, new starts, ends delta per position)
        while tensor not in outputs:
            users = [n for n, _ in users_of.get(tensor, [])]
            if len(users) != 1 or users[0].op_type != "Slice" or users[0].input[0] != tensor:
                break
            sl = users[0]
            starts = consts.get(sl.input[1])
            axes = consts.get(sl.input[3]) if len(sl.input) > 3 and sl.input[3] else None
            steps = consts.get(sl.input[4]) if len(sl.input) > 4 and sl.input[4] else None
            if starts is None or (len(sl.input) > 3 and sl.input[3] and axes is None) or (
                    len(sl.input) > 4 and sl.input[4] and steps is None):
                break
            starts = starts.astype(np.int64).reshape(-1)
            axes = (np.arange(len(starts)) if axes is None else axes.astype(np.int64).reshape(-1))
            axes = np.where(axes < 0, axes + 4, axes)
            if steps is not None and np.any(steps != 1):
                break
            if _depends_on(graph, sl.input[2], chain_tensors):
                break
            new_starts = starts.copy()
            delta = np.zeros_like(starts)
            for i, (axis, start) in enumerate(zip(axes, starts)):
                if axis in (2, 3) and start > 0:
                    offsets[axis - 2] += int(start)
                    new_starts[i] = 0
                    delta[i] = start
            if np.any(delta):
                edits.append((sl, new_starts, delta))
            chain_tensors.add(sl.output[0])
            tensor = sl.output[0]
        if not edits:
            continue
        for sl, new_starts, delta in edits:
            ends_name = sl.input[2]
            ends = consts.get(ends_name)
            if ends is not None:
                ends = ends.astype(np.int64).reshape(-1)
                new_ends = np.where((ends >= 0) & (ends < _INT64_BIG), ends - delta, ends)
                if np.any((ends >= 0) & (ends < _INT64_BIG) & (new_ends < 0)):
                    raise RuntimeError(f"crop {sl.name}: constant end before its start")
                name = _unique_name(taken, f"{ends_name}.folded")
                graph.initializer.append(numpy_helper.from_array(new_ends, name))
                sl.input[2] = name
            elif _fold_into_add(graph, ends_name, delta, users_of, consts, taken):
                pass  # the "+ offset" that computed the end now adds offset - delta
            else:
                delta_name = _unique_name(taken, f"{sl.name or sl.output[0]}.crop_offset")
                graph.initializer.append(numpy_helper.from_array(delta.astype(np.int64), delta_name))
                sub_out = _unique_name(taken, f"{sl.name or sl.output[0]}.ends_folded")
                sub = helper.make_node("Sub", [ends_name, delta_name], [sub_out],
                                       name=_unique_name(taken, f"{sl.name}.fold_ends"))
                new_nodes.setdefault(index[id(sl)], []).append(sub)
                sl.input[2] = sub_out
            starts_name = _unique_name(taken, f"{sl.input[1]}.folded")
            graph.initializer.append(numpy_helper.from_array(new_starts.astype(np.int64), starts_name))
            sl.input[1] = starts_name
        pads[0] += offsets[0]
        pads[1] += offsets[1]
        set_attr(deconv, "pads", [int(p) for p in pads])
        folded.append({"node": deconv.name or deconv.output[0], "begin_offsets": offsets})
    if new_nodes:
        nodes = list(graph.node)
        ordered = []
        for i, node in enumerate(nodes):
            ordered.extend(new_nodes.get(i, []))
            ordered.append(node)
        del graph.node[:]
        graph.node.extend(ordered)
    remove_unused_initializers(model)
    _drop_stale_value_info(model)
    return folded


def _fold_into_add(graph, ends_name: str, delta: np.ndarray, users_of, consts, taken) -> bool:
    """When a Slice's end is ``reshape(x + c)`` with constant scalar ``c`` used only there, make it
    ``reshape(x + (c - delta))`` instead of appending a Sub. Returns whether it did."""
    from onnx import numpy_helper

    if delta.size != 1:
        return False
    producer = producers(graph)
    name = ends_name
    while True:
        node = producer.get(name)
        if node is None or len(users_of.get(name, [])) != 1:
            return False
        if node.op_type in ("Unsqueeze", "Reshape", "Squeeze") and node.input[0]:
            name = node.input[0]
            continue
        if node.op_type != "Add":
            return False
        for pos in (0, 1):
            c = consts.get(node.input[pos])
            if c is not None and c.size == 1 and c.dtype == np.int64:
                new = (c - int(delta.reshape(-1)[0])).astype(np.int64)
                folded = _unique_name(taken, f"{node.input[pos]}.folded")
                graph.initializer.append(numpy_helper.from_array(new, folded))
                node.input[pos] = folded
                return True
        return False


def _drop_stale_value_info(model) -> None:
    """Forget inferred intermediate shapes (they change when pads change); inference redoes them."""
    del model.graph.value_info[:]


# -- label head -------------------------------------------------------------------------------
def add_label_head(model, *, scores: str = "scores", labels: str = "labels",
                   keep_scores: bool = True) -> None:
    """Append ``labels = uint8(float(argmax(scores, axis=1)))`` as a graph output [N, H, W].

    Ties go to the lowest class index, as in ``torch.argmax``. With ``keep_scores=False`` the
    scores stop being an output (the label map is 4*C times smaller to copy off the device).
    """
    from onnx import TensorProto, helper

    graph = model.graph
    out_names = [o.name for o in graph.output]
    if scores not in out_names:
        raise RuntimeError(f"graph has no output {scores!r} to take the argmax of")
    score_info = next(o for o in graph.output if o.name == scores)
    if score_info.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise RuntimeError("the label head expects float32 scores")
    dims = score_info.type.tensor_type.shape.dim
    if len(dims) == 4 and dims[1].HasField("dim_value") and dims[1].dim_value > 256:
        raise FCNError(f"a uint8 label map holds at most 256 classes; the model has "
                       f"{dims[1].dim_value}: export 'scores' instead")
    taken = _all_names(graph)
    idx = _unique_name(taken, f"{labels}_int64")
    flt = _unique_name(taken, f"{labels}_float")
    graph.node.extend([
        helper.make_node("ArgMax", [scores], [idx], name=_unique_name(taken, "labels_argmax"),
                         axis=1, keepdims=0, select_last_index=0),
        helper.make_node("Cast", [idx], [flt], name=_unique_name(taken, "labels_to_float"),
                         to=TensorProto.FLOAT),
        helper.make_node("Cast", [flt], [labels], name=_unique_name(taken, "labels_to_uint8"),
                         to=TensorProto.UINT8),
    ])
    graph.output.append(helper.make_tensor_value_info(labels, TensorProto.UINT8,
                                                      ["batch", "height", "width"]))
    if not keep_scores:
        keep = [o for o in graph.output if o.name != scores]
        del graph.output[:]
        graph.output.extend(keep)


def label_source(model, labels: str = "labels") -> str | None:
    """The float scores tensor the label head takes its argmax of (None when absent)."""
    producer = producers(model.graph)
    name = labels
    while name in producer:
        node = producer[name]
        if node.op_type == "ArgMax":
            return node.input[0]
        if node.op_type != "Cast":
            return None
        name = node.input[0]
    return None
