"""FP32 -> FP16 graph (weights and arithmetic in FP16, inputs and outputs kept FP32).

TensorRT 11 builds strongly typed networks, so an FP16 engine needs an FP16 ONNX graph. We use
onnxconverter-common's ``convert_float_to_float16`` with ``keep_io_types=True``: a Cast after the
FP32 "image" input and before the FP32 "scores" output. Ops kept in FP32:

* LRN (FCN-AlexNet, FCN-GoogLeNet): it squares activations before scaling them by alpha/size, and
  squares of activations in the hundreds overflow FP16's 65504;
* the label head (ArgMax -> Cast -> Cast) is appended after conversion, on the FP32 scores, so the
  argmax sees exactly the values the "scores" output carries.

ONNX Runtime's CPU provider has FP16 kernels for few ops; for the others it inserts casts and runs
them in FP32 on FP16-rounded weights and activations. That is slower than FP32 on a CPU but keeps
every FP16 rounding of weights and of tensors between ops, which is what decides accuracy (GPUs
accumulate FP16 convolutions in FP32 too), so CPU measurements of FP16 accuracy are meaningful.
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np

#: Ops left in FP32 in addition to onnxconverter-common's default block list.
KEEP_FP32_OPS: tuple[str, ...] = ("LRN",)
FP16_MAX = 65504.0


def convert_to_fp16(model, *, keep_fp32_ops: Sequence[str] = KEEP_FP32_OPS) -> tuple[Any, dict]:
    """Return (fp16 model, info). ``info`` counts weights that FP16 cannot hold faithfully."""
    from onnx import numpy_helper
    from onnxconverter_common import float16

    overflow = tiny = 0
    for tensor in model.graph.initializer:
        if tensor.data_type == 1:  # FLOAT
            values = np.abs(numpy_helper.to_array(tensor))
            overflow += int(np.count_nonzero(values > FP16_MAX))
            tiny += int(np.count_nonzero((values > 0) & (values < 6.0e-8)))
    block = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(keep_fp32_ops))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one warning per clamped weight; counted above instead
        fp16 = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=block,
                                                max_finite_val=FP16_MAX, min_positive_val=6.0e-8)
    _shapes_from_fp32(fp16)
    kept = sorted({n.op_type for n in fp16.graph.node if n.op_type in set(keep_fp32_ops)})
    info = {"converter": "onnxconverter-common float16 (keep_io_types=True)",
            "fp32_ops": kept, "weights_clamped_overflow": overflow,
            "weights_clamped_tiny": tiny}
    return fp16, info


def _shapes_from_fp32(model) -> None:
    """Let Shape read the FP32 tensor a Cast converted (same shape), dropping casts done only for
    Shape: the converter casts the whole input image to FP16 just to take its shape."""
    producer = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.op_type == "Shape":
            src = producer.get(node.input[0])
            if src is not None and src.op_type == "Cast":
                node.input[0] = src.input[0]
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [n for n in model.graph.node if n.op_type != "Cast" or n.output[0] in used]
    if len(keep) != len(model.graph.node):
        del model.graph.node[:]
        model.graph.node.extend(keep)
