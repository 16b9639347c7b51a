"""PyTorch -> ONNX: one input per modality ("image" [N,3,H,W]; NYUDv2's nets add "hha" / "depth")
and one output per head ("scores" [N,C,H,W]; a multi-head net's "scores_<head>"), N/H/W dynamic
and shared by every input and output.

Two exporters are supported. The default is the TorchScript-based ("legacy") exporter:

* it keeps the crop logic dynamic by recording ``Shape``/``Gather`` on the very tensors the crop
  refers to, so the graph needs no knowledge of how sizes propagate through ceil-mode pools;
* it exports the registry's nets at width 1/16 in 0.3-1 s, where the torch.export-based exporter
  ("dynamo", torch's own default since 2.9) needs 5-10 s per model because it traces with
  symbolic shapes and re-derives every size as an integer expression of H and W (it names the
  output dims after those expressions, e.g. ``Min(height + 7, 4*((height + 37)//4) - 6) - 7``);
* the dynamo exporter cannot export FCN-AlexNet with dynamic H/W at all in torch 2.13: the
  shape-constraint solver gives up on the nested floor divisions of its stride-4 conv and
  ceil-mode pools ("Expected op to be '==', got <"; the pitfall of pytorch#124507);
* where both work, both graphs match PyTorch at every size we verify (see tests/export).

The legacy exporter is deprecated upstream (it warns); ``exporter="dynamo"`` is the way forward
and is exercised by the tests, so switching the default is a one-word change.
"""
from __future__ import annotations

import contextlib
import os
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


def io_names(model: Any) -> tuple[dict[str, int], list[str]]:
    """({input name: channels}, [output names]) of a model in forward order: the model's
    ``input_channels`` (default one 3-channel ``image``) and one ``scores`` output, or
    ``scores_<head>`` per head of a multi-head net (``head_names``)."""
    inputs = dict(getattr(model, "input_channels", None) or {INPUT_NAME: 3})
    heads = tuple(getattr(model, "head_names", ()) or ())
    outputs = [f"{SCORES_NAME}_{h}" for h in heads] if heads else [SCORES_NAME]
    return inputs, outputs


def _positional(model: Any):
    """``model`` as a module taking every input positionally and returning a tuple of scores
    (what the exporters trace): ``forward(image, hha)`` -> ``(scores_sem, scores_geo)``."""
    import torch

    inputs, _ = io_names(model)
    names = list(inputs)
    heads = tuple(getattr(model, "head_names", ()) or ())
    if len(names) == 1 and not heads:
        return model

    class Positional(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *xs):
            out = self.inner(xs[0], **dict(zip(names[1:], xs[1:])))
            return tuple(out[h] for h in heads) if heads else out

    return Positional(model)


def export_torch(model: Any, *, sample_shape: tuple[int, int, int, int], opset: int,
                 exporter: str = "legacy",
                 work_dir: str | os.PathLike | None = None) -> "onnx.ModelProto":  # noqa: F821
    """Trace ``model`` (already in eval mode) on zero inputs of ``sample_shape`` (N, H, W from
    it; each input's own channels, see :func:`io_names`) and return the ONNX model in memory,
    weights included (loaded back if the exporter wrote them aside).

    The exporter's scratch files go to a temporary folder in ``work_dir`` (default: the system's
    temporary folder), removed on every exit path."""
    import onnx
    import torch

    if exporter not in EXPORTERS:
        raise FCNError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    inputs, outputs = io_names(model)
    n, _, h, w = sample_shape
    samples = tuple(torch.zeros((n, c, h, w), dtype=torch.float32) for c in inputs.values())
    traced = _positional(model)
    with tempfile.TemporaryDirectory(prefix=".fcn-export-", dir=work_dir) as tmp, _native_lrn(model, exporter):
        path = Path(tmp) / "raw.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice and friends
            if exporter == "legacy":
                axes = {name: DYNAMIC_AXES for name in [*inputs, *outputs]}
                torch.onnx.export(traced, samples, str(path), dynamo=False, opset_version=opset,
                                  input_names=list(inputs), output_names=outputs,
                                  dynamic_axes=axes, do_constant_folding=True,
                                  training=torch.onnx.TrainingMode.EVAL)
            else:
                from torch.export import Dim

                dims = {i: Dim(name) for i, name in DYNAMIC_AXES.items()}  # one set, shared
                shapes = tuple(dict(dims) for _ in inputs)
                if traced is not model:  # Positional.forward(*xs): one argument, a tuple
                    shapes = (shapes,)
                try:
                    program = torch.onnx.export(
                        traced, samples, dynamo=True, opset_version=opset,
                        input_names=list(inputs), output_names=outputs,
                        dynamic_shapes=shapes, optimize=True, verbose=False)
                except Exception as exc:  # torch.export cannot prove the dynamic shapes
                    last = [ln for ln in str(exc).splitlines() if ln.strip()]
                    why = next((ln for ln in last if "Error" in ln and ":" in ln), last[0])
                    raise FCNError(f"the dynamo exporter cannot export "
                                   f"{getattr(model, 'arch', type(model).__name__)} with dynamic "
                                   f"height/width ({why.strip()[:300]}); use exporter 'legacy'"
                                   ) from None
                program.save(str(path), external_data=True)
        proto = onnx.load(str(path), load_external_data=True)
    name_dynamic_dims(proto)
    return proto


@contextlib.contextmanager
def _native_lrn(model, exporter: str):
    """Export ``nn.LocalResponseNorm`` as the single ONNX ``LRN`` op (TorchScript exporter).

    PyTorch computes LRN from primitives (square, 5-D reshape, pad, 3-D average pool, pow,
    divide), which the exporter copies node by node, shape bookkeeping included. ONNX's LRN is
    the same function, x / (k + alpha/size * sum of squares over size channels)^beta with the
    window centred the same way; TensorRT and ONNX Runtime run it as one kernel, and the FP16
    conversion can keep it in FP32 by name. The modules are swapped only during the export;
    verification runs the original model, so the equivalence is checked every time.
    """
    import torch
    from torch import nn

    if exporter != "legacy":
        yield
        return

    class LRNFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, size, alpha, beta, k):  # noqa: ARG004 - torch's signature
            return nn.functional.local_response_norm(x, size, alpha, beta, k)

        @staticmethod
        def symbolic(g, x, size, alpha, beta, k):
            return g.op("LRN", x, size_i=size, alpha_f=alpha, beta_f=beta, bias_f=k)

    class OnnxLRN(nn.Module):
        def __init__(self, lrn: nn.LocalResponseNorm):
            super().__init__()
            self.args = (int(lrn.size), float(lrn.alpha), float(lrn.beta), float(lrn.k))

        def forward(self, x):
            return LRNFunction.apply(x, *self.args)

    swapped = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.LocalResponseNorm):
                setattr(parent, name, OnnxLRN(child))
                swapped.append((parent, name, child))
    try:
        yield
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)


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
