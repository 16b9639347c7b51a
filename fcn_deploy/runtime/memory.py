"""How much memory a pass will take, before it is taken: estimates from the graph, and limits.

``estimate_onnx_activation_bytes`` infers every tensor's shape for one input size and walks the
graph in order, keeping each tensor alive from the node that makes it to the last node that reads
it (graph inputs from the start, graph outputs to the end); the largest sum of live tensors is
the estimate. It is a floor for any executor (ONNX Runtime's arena reuses buffers the same way,
plus its own layout copies), and it grows with the padded image area, so it is what the Segmenter
compares with the memory the machine has before it runs a whole image.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from fcn_deploy.errors import FCNError

def available_memory_bytes() -> int | None:
    """Memory the machine can give without swapping (Linux MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far (ru_maxrss; KiB on Linux, bytes on macOS)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def infer_shapes_at(model_or_path: Any, input_shape: Sequence[int], *,
                    input_name: str | None = None, purpose: str = "infer shapes"):
    """The ONNX model (a path, read without external data, or a ModelProto, copied) with its
    image input fixed to ``input_shape`` and every tensor shape inferred. A multi-input graph's
    first input (or ``input_name``) takes ``input_shape`` and the others its named dims (batch,
    height, width are shared). Raises FCNError naming ``purpose`` when the graph has no such
    input of that rank."""
    import onnx
    from onnx import shape_inference

    shape = tuple(int(d) for d in input_shape)
    if isinstance(model_or_path, (str, os.PathLike)):
        path = Path(model_or_path)
        if not path.is_file():
            raise FCNError(f"ONNX file {path} does not exist")
        model = onnx.load(str(path), load_external_data=False)
    else:
        model = onnx.ModelProto()
        model.CopyFrom(model_or_path)
    graph = model.graph
    inits = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if input_name is not None:
        inputs = [i for i in inputs if i.name == input_name]
    if not inputs:
        raise FCNError(f"cannot {purpose}: expected an image input"
                       f"{f' named {input_name!r}' if input_name else ''}, the graph has "
                       f"{[i.name for i in graph.input if i.name not in inits]}")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != len(shape):
        raise FCNError(f"cannot {purpose} at shape {shape}: input {inputs[0].name!r} has rank "
                       f"{len(dims)}")
    named = {d.dim_param: v for d, v in zip(dims, shape) if d.dim_param}
    for d, v in zip(dims, shape):
        d.Clear()
        d.dim_value = v
    others = [i for i in graph.input if i.name not in inits and i.name != inputs[0].name]
    for out in list(graph.output) + others:  # "height"/"width" of the outputs are the input's
        for d in out.type.tensor_type.shape.dim:  # (after crops, which inference cannot follow)
            if d.dim_param in named:
                value = named[d.dim_param]
                d.Clear()
                d.dim_value = value
    try:
        return shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:  # onnx raises several types for graphs it cannot infer
        raise FCNError(f"cannot {purpose}: ONNX shape inference failed at {list(shape)} "
                       f"({type(exc).__name__}: {exc})") from None


def estimate_onnx_activation_bytes(path: str | os.PathLike, shape: Sequence[int], *,
                                   input_name: str = "image") -> int:
    """Largest sum of simultaneously live tensors (weights excluded) of the ONNX graph at
    ``path`` run on an input of ``shape``. Tensors whose size cannot be inferred count zero."""
    from onnx import helper

    graph = infer_shapes_at(path, shape, input_name=input_name,
                            purpose="estimate the memory").graph
    weights = {t.name for t in graph.initializer}

    def size_of(info) -> int:
        t = info.type.tensor_type
        if not t.HasField("shape"):
            return 0
        n = 1
        for d in t.shape.dim:
            if not d.HasField("dim_value"):
                return 0
            n *= d.dim_value
        try:
            return n * helper.tensor_dtype_to_np_dtype(t.elem_type).itemsize
        except (KeyError, TypeError):
            return 0

    sizes = {info.name: size_of(info) for info in
             list(graph.value_info) + list(graph.input) + list(graph.output)}
    last_use: dict[str, int] = {}
    for i, node in enumerate(graph.node):
        for name in node.input:
            last_use[name] = i
    end = len(graph.node)
    for out in graph.output:
        last_use[out.name] = end
    dims = {t.name: list(t.dims) for t in graph.initializer}
    live = {i.name: sizes.get(i.name, 0) for i in graph.input  # every input, from the start
            if i.name not in weights}
    current = peak = sum(live.values())
    for i, node in enumerate(graph.node):
        for name in node.output:
            if name and name not in weights:
                live[name] = sizes.get(name, 0)
                current += live[name]
        peak = max(peak, current + _conv_workspace(node, dims, sizes))
        for name in [n for n in live if last_use.get(n, -1) <= i]:
            current -= live.pop(name)
    return peak


def _conv_workspace(node, weight_dims: dict, sizes: dict) -> int:
    """ONNX Runtime's CPU Conv expands its input (im2col) for kernels larger than 1x1: one
    float per (input channel / group) x kernel element x output pixel of a group, for one node."""
    if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in weight_dims:
        return 0
    w = weight_dims[node.input[1]]
    if len(w) != 4 or w[2] * w[3] == 1:
        return 0
    out_bytes = sizes.get(node.output[0], 0)  # N x Cout x H x W float32 (N = 1 here)
    return out_bytes // max(w[0], 1) * w[1] * w[2] * w[3]


def format_bytes(n: float) -> str:
    """'7.4 GiB' style text for messages and tables."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
