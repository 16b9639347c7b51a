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
from typing import Sequence

from fcn_deploy.errors import FCNError

#: Initializers at most this large stay in the shape-only copy (crop starts, reshape targets:
#: shape inference needs their values); larger ones (weights) become value-less inputs.
_KEEP_INITIALIZER_BYTES = 1024


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


def _shape_only_model(path: Path, input_name: str, shape: Sequence[int]):
    import onnx
    from onnx import helper

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    kept, moved = [], []
    for init in graph.initializer:
        n = 1
        for d in init.dims:
            n *= d
        (kept if n * 4 <= _KEEP_INITIALIZER_BYTES and not init.external_data else moved).append(init)
    inputs = [i for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    for inp in inputs:
        if inp.name == input_name:
            dims = inp.type.tensor_type.shape.dim
            for d, value in zip(dims, shape):
                d.Clear()
                d.dim_value = int(value)
    new_inputs = inputs + [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                           for t in moved]
    new_graph = helper.make_graph(list(graph.node), graph.name, new_inputs, list(graph.output),
                                  initializer=kept)
    out = helper.make_model(new_graph, opset_imports=list(model.opset_import))
    out.ir_version = model.ir_version
    return out


def estimate_onnx_activation_bytes(path: str | os.PathLike, shape: Sequence[int], *,
                                   input_name: str = "image") -> int:
    """Largest sum of simultaneously live tensors (weights excluded) of the ONNX graph at
    ``path`` run on an input of ``shape``. Tensors whose size cannot be inferred count zero."""
    import onnx
    from onnx import helper

    path = Path(path)
    try:
        model = _shape_only_model(path, input_name, shape)
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:  # onnx raises several types for graphs it cannot infer
        raise FCNError(f"{path}: could not infer the graph's shapes for input {list(shape)} "
                       f"({type(exc).__name__}: {exc})") from None
    graph = inferred.graph
    weights = {i.name for i in graph.input if i.name != input_name} | {
        t.name for t in graph.initializer}

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
    live = {input_name: sizes.get(input_name, 0)}
    current = peak = live[input_name]
    for i, node in enumerate(graph.node):
        for name in node.output:
            if name and name not in weights:
                live[name] = sizes.get(name, 0)
                current += live[name]
        peak = max(peak, current)
        for name in [n for n in live if last_use.get(n, -1) <= i]:
            current -= live.pop(name)
    return peak


def format_bytes(n: float) -> str:
    """'7.4 GiB' style text for messages and tables."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
