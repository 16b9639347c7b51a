"""Tiny ONNX graphs that follow the project's contract, and a numpy reference for them.

The graph: image [batch,3,height,width] float32 -> Conv 3x3 (pad 1) -> Relu -> Conv 1x1 -> "scores"
[N,C,H,W], and optionally ArgMax + Cast(float) + Cast(uint8) -> "labels" uint8 [N,H,W] (the
order TensorRT accepts); toolkit metadata via
write_onnx_meta. Small enough that every test builds its own in milliseconds.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fcn_deploy.meta import ModelMeta, write_onnx_meta

HIDDEN = 4


def tiny_weights(num_classes: int, seed: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "w1": (rng.standard_normal((HIDDEN, 3, 3, 3)) * 0.05).astype(np.float32),
        "b1": (rng.standard_normal(HIDDEN) * 0.5).astype(np.float32),
        "w2": rng.standard_normal((num_classes, HIDDEN, 1, 1)).astype(np.float32),
        "b2": (rng.standard_normal(num_classes) * 0.1).astype(np.float32),
    }


def tiny_meta(num_classes: int = 4, **changes) -> ModelMeta:
    return ModelMeta.default("tiny_test_net", num_classes, **changes)


def make_tiny_onnx(path: Path, *, num_classes: int = 4, outputs: str = "both",
                   static_shape: tuple[int, int, int, int] | None = None, seed: int = 3,
                   meta: ModelMeta | None = None, input_name: str = "image",
                   with_meta: bool = True) -> Path:
    """Write the tiny graph to ``path``; ``outputs`` is "scores", "labels" or "both"."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = tiny_weights(num_classes, seed)
    if static_shape is None:
        in_dims = ["batch", 3, "height", "width"]
        score_dims, label_dims = ["batch", num_classes, "height", "width"], ["batch", "height", "width"]
    else:
        n, c, h, wd = static_shape
        in_dims, score_dims, label_dims = [n, c, h, wd], [n, num_classes, h, wd], [n, h, wd]
    nodes = [
        helper.make_node("Conv", [input_name, "w1", "b1"], ["h1"], pads=[1, 1, 1, 1],
                         kernel_shape=[3, 3]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("Conv", ["h2", "w2", "b2"], ["scores"], kernel_shape=[1, 1]),
    ]
    graph_outputs = []
    if outputs in ("scores", "both"):
        graph_outputs.append(helper.make_tensor_value_info("scores", TensorProto.FLOAT, score_dims))
    if outputs in ("labels", "both"):
        # int64 -> float -> uint8, as fcn-export writes it: TensorRT casts to uint8 only from
        # float/half, so a direct int64 -> uint8 Cast would never build (prepare_build refuses it)
        nodes += [helper.make_node("ArgMax", ["scores"], ["argmax"], axis=1, keepdims=0),
                  helper.make_node("Cast", ["argmax"], ["argmax_f"], to=TensorProto.FLOAT),
                  helper.make_node("Cast", ["argmax_f"], ["labels"], to=TensorProto.UINT8)]
        graph_outputs.append(helper.make_tensor_value_info("labels", TensorProto.UINT8, label_dims))
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, in_dims)],
        graph_outputs, initializer=[numpy_helper.from_array(v, k) for k, v in w.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    if with_meta:
        meta = meta or tiny_meta(num_classes)
        write_onnx_meta(model, meta.replace(outputs=outputs))
    onnx.save(model, str(path))
    return path


def reference_scores(x_nchw: np.ndarray, num_classes: int = 4, seed: int = 3) -> np.ndarray:
    """The tiny graph computed in numpy (float64), for checking runners independently."""
    w = tiny_weights(num_classes, seed)
    x = x_nchw.astype(np.float64)
    n, _, h, wd = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    h1 = np.zeros((n, HIDDEN, h, wd))
    for dy in range(3):
        for dx in range(3):
            patch = padded[:, :, dy:dy + h, dx:dx + wd]
            h1 += np.einsum("nchw,oc->nohw", patch, w["w1"][:, :, dy, dx].astype(np.float64))
    h1 += w["b1"][None, :, None, None]
    h1 = np.maximum(h1, 0)
    scores = np.einsum("nchw,oc->nohw", h1, w["w2"][:, :, 0, 0].astype(np.float64))
    return scores + w["b2"][None, :, None, None]


def reference_labels(image_bgr: np.ndarray, meta: ModelMeta, num_classes: int = 4,
                     seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Reference labels and a mask of pixels whose top-2 score margin is clear of float32 noise."""
    img = image_bgr if meta.channel_order == "BGR" else image_bgr[:, :, ::-1]
    x = (img.astype(np.float64) - np.asarray(meta.mean))[None].transpose(0, 3, 1, 2)
    scores = reference_scores(x, num_classes, seed)[0]
    top2 = np.sort(scores, axis=0)[-2:]
    return scores.argmax(axis=0).astype(np.uint8), (top2[1] - top2[0]) > 1e-3


def random_image(h: int, w: int, seed: int = 1) -> np.ndarray:
    """A BGR uint8 image with smooth structure, so argmax regions are spatially varied."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(xx / 5.0 + k) * 100 + np.cos(yy / 7.0 - k) * 80 for k in range(3)], -1)
    noise = rng.normal(0, 10, size=(h, w, 3))
    return np.clip(base + 128 + noise, 0, 255).astype(np.uint8)


# -- fixtures, imported by the runtime and engine conftests ---------------------------------------
@pytest.fixture
def tiny_onnx(tmp_path):
    """Path of a tiny graph with both 'scores' and 'labels' outputs (4 classes)."""
    return make_tiny_onnx(tmp_path / "tiny.onnx")


@pytest.fixture
def onnx_factory(tmp_path):
    """``onnx_factory(name, **kwargs)`` writes a variant of the tiny graph."""
    def make(name: str = "variant.onnx", **kwargs):
        return make_tiny_onnx(tmp_path / name, **kwargs)

    return make


# -- multi-input / multi-head FCNs (registered nets, width 1/16) -----------------------------------
#: The nets the multi-IO tests export: two heads, two 3-channel inputs, image + depth, and the
#: HHA-only net (one input named hha); (arch, factory kwargs).
MULTI_IO_NETS = {"siftflow_fcn16s": {"geo_classes": 3}, "nyud_fcn16s_color_hha": {},
                 "nyud_fcn32s_color_d": {}, "nyud_fcn32s_hha": {}}


def make_multi_io_net(folder: Path, arch: str, *, num_classes: int = 5):
    """A tiny ``arch`` (width 1/16, seeded random score layers) saved as ``<arch>.pt`` and
    exported to ``<arch>.onnx`` with scores and labels; returns (model, meta, pt, onnx)."""
    import torch

    from fcn_deploy.export import export_model
    from fcn_deploy.models import create_model, save_checkpoint

    from fcn_deploy.preprocess import preprocess_input

    torch.manual_seed(0)
    model = create_model(arch, num_classes=num_classes, width=1 / 16, **MULTI_IO_NETS[arch])
    meta = ModelMeta.default(arch, num_classes, arch_kwargs=dict(model.arch_kwargs),
                             **model.io_description())
    model.eval()
    params = dict(model.named_parameters())
    with torch.no_grad():  # score layers start at zero; give them weights so labels vary
        for name, p in params.items():  # fusion nets: "color.score_fr", ...
            if any(part.startswith("score") for part in name.split(".")):
                p.normal_(0.0, 0.5)
        # random VGG features share a large constant part, which alone would pick the class
        # everywhere: centre each head's scores on a sample so that labels vary over the image
        sample = {s.name: torch.from_numpy(preprocess_input(s, data)[None]) for s, data in
                  zip(meta.input_specs(), random_inputs_for(meta, 96, 96, seed=11).values())}
        first, *others = sample
        out = model(sample[first], **{n: sample[n] for n in others})
        for head, scores in (out if isinstance(out, dict) else {"": out}).items():
            suffix = f"score_fr_{head}.bias" if head else "score_fr.bias"
            bias = next(p for n, p in params.items() if n.endswith(suffix))
            bias -= scores.mean(dim=(0, 2, 3))
    pt = save_checkpoint(folder / f"{arch}.pt", model=model, meta=meta)
    onnx_path = folder / f"{arch}.onnx"
    export_model(model, meta, onnx_path, outputs="both", verify=False,
                 sample_shape=(1, 3, 64, 64))
    return model, meta, pt, onnx_path


def random_inputs_for(meta: ModelMeta, h: int, w: int, seed: int = 1) -> dict[str, np.ndarray]:
    """{input name: data as the datasets hold it} for every input of ``meta``: images with
    smooth structure, depth as uint16 millimetres (0.5..5 m, smooth)."""
    out = {}
    for k, spec in enumerate(meta.input_specs()):
        if spec.encoding == "log_depth":
            yy, xx = np.mgrid[0:h, 0:w]
            depth = 2500 + 1500 * np.sin(xx / 6.0 + k) * np.cos(yy / 9.0)
            out[spec.name] = np.clip(depth, 500, 5000).astype(np.uint16)
        else:
            out[spec.name] = random_image(h, w, seed=seed + k)
    return out
