"""PyTorch backend: runs a training checkpoint (``model.pt``) eagerly, for parity checks.

The model comes from :func:`fcn_deploy.models.checkpoint.load_model`; its forward gives "scores"
and the runner adds "labels" by an argmax on the host, so it offers the same outputs as an ONNX
graph exported with both.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fcn_deploy.devices import parse_device
from fcn_deploy.errors import FCNError
from fcn_deploy.ortsession import cap_threads
from fcn_deploy.runtime.base import LABELS, SCORES, Runner, TensorInfo, argmax_labels


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
            torch.set_num_threads(cap_threads(max(1, int(threads))))
        self._torch = torch
        self.device = torch.device(text)
        model, meta = load_model(self.path, map_location="cpu")
        self.model = model.to(self.device).eval()
        self.meta = meta
        classes = int(getattr(model, "num_classes", meta.num_classes))
        self.inputs = [TensorInfo("image", (None, 3, None, None), np.dtype(np.float32),
                                  ("batch", None, "height", "width"))]
        self.outputs = [
            TensorInfo(SCORES, (None, classes, None, None), np.dtype(np.float32),
                       ("batch", None, "height", "width")),
            TensorInfo(LABELS, (None, None, None), np.dtype(np.uint8 if classes <= 256 else np.int32),
                       ("batch", "height", "width")),
        ]

    def _infer(self, feeds: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(feeds["image"]).to(self.device)
            try:
                scores = self.model(x)
            except RuntimeError as exc:  # out of memory (CPU allocator, CUDA), too small a size
                raise FCNError(f"PyTorch failed on {self.path} with input shape "
                               f"{tuple(x.shape)}: {str(exc).strip().splitlines()[0][:300]}"
                               ) from None
            if isinstance(scores, dict):  # torchvision-style {"out": ...}
                scores = scores["out"]
            scores = scores.float().cpu().numpy()
        result = {}
        if SCORES in outputs:
            result[SCORES] = scores
        if LABELS in outputs:
            result[LABELS] = argmax_labels(scores)
        return result

    def close(self) -> None:
        super().close()
        self.model = None
