"""Models with random weights and the graphs exported from them, made once per run.

Timing does not depend on the weights' values, so every model is built by ``create_model`` with a
seeded initialisation; the zero-initialised score layers get small random weights so the
outputs (and the INT8 calibration ranges) are not constant. Each exported variant is written to
the work folder under a name that encodes everything that decides it, and reused if present.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fcn_deploy.errors import FCNError
from fcn_deploy.export import export_model
from fcn_deploy.onnxgraph import read_meta
from fcn_deploy.quantize import CalibrationReader, QuantizeConfig, quantize_onnx

#: Export variants: name -> export_model options. "base" is the deployed graph with scores out.
VARIANTS = {
    "base": {"outputs": "scores"},
    "labels": {"outputs": "labels"},
    "no_depthwise": {"outputs": "scores", "depthwise_upsampling": False},
    "no_crop_folding": {"outputs": "scores", "fold_crops": False},
    "fp16": {"outputs": "scores", "precision": "fp16"},
}


def model_seed(name: str, seed: int) -> int:
    return (zlib.crc32(name.encode()) + seed) % (2 ** 31)


def randomize_score_layers(model: Any, *, seed: int) -> None:
    """Small random weights in the (zero-initialised) score layers."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in getattr(model, "score_layers", ()):
            layer = model.get_submodule(name)
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 0.01)
            if layer.bias is not None:
                layer.bias.zero_()


def build_model(name: str, *, width: float, seed: int):
    """The registered FCN ``name`` with seeded random weights, in eval mode."""
    import torch

    # lazy: fcn_deploy.models imports torch; the harness loads it only to build models
    from fcn_deploy.models import create_model

    torch.manual_seed(model_seed(name, seed))
    model = create_model(name, width=width)
    randomize_score_layers(model, seed=model_seed(name, seed) + 1)
    return model.eval()


@dataclass
class ExportedGraph:
    path: Path
    variant: str
    reused: bool
    seconds: float


def _width_tag(width: float) -> str:
    return f"{width:g}".replace("/", "_").replace(".", "p")


def export_variant(model: Any, work_dir: Path, variant: str, *, seed: int,
                   threads: int | None = None, verify: bool = True) -> ExportedGraph:
    """Export ``model`` as ``variant`` (see :data:`VARIANTS`) into ``work_dir`` (or reuse it).

    ``verify``: compare the graph with PyTorch at one small size (export_model's check)."""
    import time

    if variant not in VARIANTS:
        raise FCNError(f"unknown export variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    path = work_dir / f"{model.arch}_w{_width_tag(model.width)}_s{seed}_{variant}.onnx"
    if path.is_file():
        return ExportedGraph(path, variant, True, 0.0)
    start = time.perf_counter()
    # verified against PyTorch at one small size: proves the graph, costs little at width 1
    export_model(model, None, path, verify=verify, verify_sizes=[(1, 3, 72, 88)],
                 threads=threads, **VARIANTS[variant])
    return ExportedGraph(path, variant, False, time.perf_counter() - start)


def quantize_variant(fp32_path: Path, *, shape: tuple[int, ...], images: int,
                     seed: int) -> ExportedGraph:
    """INT8 Q/DQ graph of ``fp32_path``, calibrated on ``images`` random images of ``shape``."""
    import time

    path = fp32_path.with_name(fp32_path.stem + f"_int8_c{images}x{shape[2]}x{shape[3]}.onnx")
    if path.is_file():
        return ExportedGraph(path, "int8", True, 0.0)
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    pictures = [rng.integers(0, 256, size=(shape[2], shape[3], 3), dtype=np.uint8)
                for _ in range(images)]
    meta = read_meta(fp32_path)
    reader = CalibrationReader(pictures, mean=meta.mean, channel_order=meta.channel_order,
                               progress=False, description="random calibration images")
    quantize_onnx(fp32_path, path, reader, config=QuantizeConfig(progress=False), seed=seed)
    return ExportedGraph(path, "int8", False, time.perf_counter() - start)
