"""PyTorch backend: runs a training checkpoint (``model.pt``) eagerly, for parity checks.

The model comes from :func:`fcn_deploy.models.checkpoint.load_model`; its forward gives "scores"
and the runner adds "labels" by an argmax on the host, so it offers the same outputs as an ONNX
graph exported with both. A multi-input net takes every input by its name (the first positional,
the others as keywords, as in training); a multi-head net gives ``scores_<head>`` and
``labels_<head>`` for every head, named as in the exported graph (``meta.head_specs()``).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fcn_deploy.devices import parse_device
from fcn_deploy.errors import FCNError, require_int
from fcn_deploy.ortsession import cap_threads
from fcn_deploy.runtime.base import Runner, TensorInfo, argmax_labels


class TorchRunner(Runner):
    """Eager PyTorch inference on the CPU (or ``device="cuda[:N]"`` when torch has CUDA).

    Options: ``device``; ``threads`` (``torch.set_num_threads``, process-wide).

    Thread-safety: ``infer`` is serialized by the runner's lock (a module's forward is not
    guaranteed re-entrant); open one runner per thread for parallelism.
    """

    backend = "torch"

    def __init__(self, path: str | os.PathLike, *, device: str | None = None,
                 threads: int | None = None) -> None:
        super().__init__()
        try:
            import torch
        except ImportError as exc:
            raise FCNError(f"the torch backend needs PyTorch ({exc}); install fcn-deploy[torch] "
                           "or export the checkpoint to ONNX and use onnxruntime") from None
        try:
            from fcn_deploy.models.checkpoint import load_model
        except ImportError as exc:
            raise FCNError(f"the torch backend needs fcn_deploy.models.checkpoint ({exc})") from None

        self.path = Path(path)
        if not self.path.is_file():
            raise FCNError(f"checkpoint {self.path} does not exist")
        text = str(parse_device(device) or "cpu")
        if text != "cpu" and not torch.cuda.is_available():
            raise FCNError(f"device {device!r}: this PyTorch has no usable CUDA; use device='cpu'")
        if threads is not None:
            threads = require_int(threads, what="threads", minimum=0)
            torch.set_num_threads(cap_threads(max(1, threads)))
        self._torch = torch
        self.device = torch.device(text)
        model, meta = load_model(self.path, map_location="cpu")
        self.model = model.to(self.device).eval()
        self.meta = meta
        dims = ("batch", None, "height", "width")
        self.inputs = [TensorInfo(spec.name, (None, spec.channels, None, None),
                                  np.dtype(np.float32), dims) for spec in meta.input_specs()]
        # each head's classes as the model has them, so a model whose metadata disagrees is
        # refused at open (check_class_count), as an exported graph would be
        model_classes = dict(getattr(model, "head_classes", {}) or {})
        self._heads = [(head, int(model_classes.get(head.name, head.num_classes)
                                  if meta.multi_head else getattr(model, "num_classes",
                                                                  head.num_classes)))
                       for head in meta.head_specs()]
        self.outputs = [TensorInfo(head.scores_output, (None, classes, None, None),
                                   np.dtype(np.float32), dims) for head, classes in self._heads]
        self.outputs += [TensorInfo(head.labels_output, (None, None, None),
                                    np.dtype(np.uint8 if classes <= 256 else np.int32),
                                    ("batch", "height", "width")) for head, classes in self._heads]

    def _infer(self, feeds: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        torch = self._torch
        names = [t.name for t in self.inputs]
        with torch.inference_mode():
            x = torch.from_numpy(feeds[names[0]]).to(self.device)
            others = {name: torch.from_numpy(feeds[name]).to(self.device) for name in names[1:]}
            try:
                out = self.model(x, **others)
            except RuntimeError as exc:  # out of memory (CPU allocator, CUDA), too small a size
                raise FCNError(f"PyTorch failed on {self.path} with input shape "
                               f"{tuple(x.shape)}: {str(exc).strip().splitlines()[0][:300]}"
                               ) from None
            if self.meta.multi_head:
                if not isinstance(out, dict):
                    raise FCNError(f"{self.path}: the metadata lists the heads "
                                   f"{', '.join(h.name for h, _ in self._heads)} but the model "
                                   "returns one score map; the model and its metadata disagree")
                per_head = {head.name: out.get(head.name) for head, _ in self._heads}
                lost = [name for name, scores in per_head.items() if scores is None]
                if lost:
                    raise FCNError(f"{self.path}: the model returns the heads {sorted(out)}, not "
                                   f"{', '.join(lost)} that its metadata lists")
            else:
                if isinstance(out, dict):  # torchvision-style {"out": ...}
                    out = out["out"]
                per_head = {self._heads[0][0].name: out}
            scores = {name: s.float().cpu().numpy() for name, s in per_head.items()}
        result = {}
        for head, _ in self._heads:
            if head.scores_output in outputs:
                result[head.scores_output] = scores[head.name]
            if head.labels_output in outputs:
                result[head.labels_output] = argmax_labels(scores[head.name])
        return result

    def close(self) -> None:
        super().close()
        self.model = None
