"""PyTorch -> ONNX: one input "image" [N,3,H,W] and one output "scores" [N,C,H,W], N/H/W dynamic.

Two exporters are supported. The default is the TorchScript-based ("legacy") exporter:

* it keeps the crop logic dynamic by recording ``Shape``/``Gather`` on the very tensors the crop
  refers to, so the graph needs no knowledge of how sizes propagate through ceil-mode pools;
* it exports a full-width FCN-VGG16 in about a second, where the torch.export-based exporter
  ("dynamo", torch's own default since 2.9) needs several seconds per model because it traces with
  symbolic shapes and re-derives every size as an integer expression of H and W (it names the
  output dims after those expressions, e.g. ``Min(height + 7, 4*((height + 37)//4) - 6) - 7``);
* both give graphs that match PyTorch at every size we verify (see tests/export), so speed and
  a graph that states its crops in terms of real tensor shapes decide.

The legacy exporter is deprecated upstream (it warns); ``exporter="dynamo"`` is the way forward
and is exercised by the tests, so switching the default is a one-word change.
"""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

from fcn_deploy.errors import FCNError

INPUT_NAME = "image"
SCORES_NAME = "scores"
LABELS_NAME = "labels"
DYNAMIC_AXES = {0: "batch", 2: "height", 3: "width"}
EXPORTERS = ("legacy", "dynamo")


def export_torch(model: Any, *, sample_shape: tuple[int, int, int, int], opset: int,
                 exporter: str = "legacy") -> "onnx.ModelProto":  # noqa: F821
    """Trace ``model`` (already in eval mode) on a zero input of ``sample_shape`` and return the
    ONNX model in memory, weights included (loaded back if the exporter wrote them aside)."""
    import onnx
    import torch

    if exporter not in EXPORTERS:
        raise FCNError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    sample = torch.zeros(sample_shape, dtype=torch.float32)
    with tempfile.TemporaryDirectory(prefix="fcn-export-") as tmp:
        path = Path(tmp) / "raw.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice and friends
            if exporter == "legacy":
                axes = {INPUT_NAME: DYNAMIC_AXES, SCORES_NAME: DYNAMIC_AXES}
                torch.onnx.export(model, (sample,), str(path), dynamo=False, opset_version=opset,
                                  input_names=[INPUT_NAME], output_names=[SCORES_NAME],
                                  dynamic_axes=axes, do_constant_folding=True,
                                  training=torch.onnx.TrainingMode.EVAL)
            else:
                from torch.export import Dim

                shapes = ({i: Dim(name) for i, name in DYNAMIC_AXES.items()},)
                program = torch.onnx.export(model, (sample,), dynamo=True, opset_version=opset,
                                            input_names=[INPUT_NAME], output_names=[SCORES_NAME],
                                            dynamic_shapes=shapes, optimize=True, verbose=False)
                program.save(str(path), external_data=True)
        proto = onnx.load(str(path), load_external_data=True)
    name_dynamic_dims(proto)
    return proto


def name_dynamic_dims(proto) -> None:
    """Name the dynamic dims of every graph input/output "batch", "height", "width".

    Inputs/outputs of rank 4 are NCHW, rank 3 are NHW (the label map). Static dims stay static.
    """
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        names = {4: ("batch", None, "height", "width"), 3: ("batch", "height", "width")}.get(len(dims))
        if names is None:
            continue
        for dim, name in zip(dims, names):
            if name is not None:
                dim.Clear()
                dim.dim_param = name
