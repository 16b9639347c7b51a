"""One parser for device strings: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a GPU index ``N``.

Every backend (ONNX Runtime, PyTorch, TensorRT) reads ``device=`` through :func:`parse_device`,
so the accepted spellings and the error for a wrong one are the same everywhere; each backend
then decides what it can run on (TensorRT refuses the CPU, ONNX Runtime needs its CUDA provider).
"""
from __future__ import annotations

from dataclasses import dataclass

from fcn_deploy.errors import FCNError


@dataclass(frozen=True)
class Device:
    """A parsed device: ``kind`` "cpu" or "cuda", and the GPU ``index`` (0 for the CPU)."""

    kind: str
    index: int = 0

    @property
    def is_gpu(self) -> bool:
        return self.kind == "cuda"

    def __str__(self) -> str:
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index}"


def parse_device(device: str | int | None) -> Device | None:
    """``None`` -> None (the backend's default); ``"cpu"``; ``"cuda"`` = ``"cuda:0"``; ``"cuda:N"``
    or ``N`` -> GPU N. Anything else is an FCNError naming the accepted spellings."""
    if device is None:
        return None
    if isinstance(device, int) and not isinstance(device, bool) and device >= 0:
        return Device("cuda", device)
    if isinstance(device, Device):
        return device
    text = str(device).strip().lower()
    if text == "cpu":
        return Device("cpu")
    if text == "cuda":
        return Device("cuda", 0)
    if text.startswith("cuda:") and text[5:].isdigit():
        return Device("cuda", int(text[5:]))
    raise FCNError(f"device {device!r} is not understood; use 'cpu', 'cuda' or 'cuda:N'")
