"""Helpers of the export tests: a tiny FCN-like net, randomized registry models, ONNX runs.

A module of its own (not conftest) so that `from export_helpers import ...` finds this file
when other test folders' conftest.py are loaded in the same run.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxslim")

from torch import nn  # noqa: E402

from fcn_deploy.meta import ModelMeta  # noqa: E402

WIDTH = 1 / 16
SAMPLE = (1, 3, 48, 64)
#: The trace size, a smaller odd batch of 2 and a larger odd size.
SIZES = [(1, 3, 48, 64), (2, 3, 35, 41), (1, 3, 83, 99)]


def bilinear(channels: int, k: int) -> torch.Tensor:
    factor = (k + 1) // 2
    centre = factor - 1 if k % 2 == 1 else factor - 0.5
    profile = 1 - (torch.arange(k, dtype=torch.float64) - centre).abs() / factor
    weight = torch.zeros(channels, channels, k, k)
    weight[range(channels), range(channels)] = (profile[:, None] * profile[None, :]).float()
    return weight


class TinyFCN(nn.Module):
    """FCN in miniature: padded conv, ceil-mode pools, dropout, a skip with a crop, two
    bilinear ConvTranspose k4 s2 upsamplings (channel-diagonal) and a final crop."""

    arch = "tiny_fcn"

    def __init__(self, num_classes: int = 5, *, bake_in_size: bool = False):
        super().__init__()
        self.num_classes = num_classes
        self.arch_kwargs = {"num_classes": num_classes}
        self.bake_in_size = bake_in_size
        self.conv1 = nn.Conv2d(3, 8, 3, padding=20)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.pool2 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.fc = nn.Conv2d(8, 8, 5)
        self.drop = nn.Dropout2d(0.5)
        self.score = nn.Conv2d(8, num_classes, 1)
        self.score_skip = nn.Conv2d(8, num_classes, 1)
        self.up2 = nn.ConvTranspose2d(num_classes, num_classes, 4, 2, bias=False)
        self.up_final = nn.ConvTranspose2d(num_classes, num_classes, 4, 2, bias=False)
        with torch.no_grad():
            self.up2.weight.copy_(bilinear(num_classes, 4))
            self.up_final.weight.copy_(bilinear(num_classes, 4))

    def forward(self, x):
        h, w = x.shape[2], x.shape[3]
        if self.bake_in_size:  # a bug the verification must catch: the trace size becomes fixed
            h, w = int(h), int(w)
        p1 = self.pool1(torch.relu(self.conv1(x)))
        p2 = self.pool2(torch.relu(self.conv2(p1)))
        up = self.up2(self.score(self.drop(torch.relu(self.fc(p2)))))
        skip = self.score_skip(p1)[:, :, 2:2 + up.shape[2], 2:2 + up.shape[3]]
        out = self.up_final(up + skip)
        return out[:, :, 7:7 + h, 7:7 + w]


def randomize_scores(model, seed: int = 0):
    """Score layers start at zero in the registry; give them weights so outputs mean something."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in model.score_layers:
            layer = model.get_submodule(name)  # "color.score_fr" in a two-stream net
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 0.05)
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen) * 0.5)
    return model


def registry_model(name: str, num_classes: int = 5, seed: int = 0):
    from fcn_deploy.models import create_model

    torch.manual_seed(seed)
    return randomize_scores(create_model(name, num_classes=num_classes, width=WIDTH), seed)


def meta_for(model) -> ModelMeta:
    """The model's metadata as the trainer writes it: its inputs and heads included."""
    return ModelMeta.default(model.arch, model.num_classes, arch_kwargs=dict(model.arch_kwargs),
                             **model.io_description())


def random_feeds(meta: ModelMeta, shape, seed: int = 0) -> dict[str, np.ndarray]:
    """Preprocessed-looking random data for every input of ``meta`` at ``shape``'s N, H, W."""
    from fcn_deploy.export.verify import random_inputs

    return random_inputs(meta.input_specs(), shape, np.random.default_rng(seed))


def run_onnx(path_or_model, x) -> dict[str, np.ndarray]:
    """Outputs by name; ``x`` is the first input's array or a dict of every input's."""
    import onnxruntime as ort

    source = path_or_model if isinstance(path_or_model, (str, bytes)) else (
        str(path_or_model) if hasattr(path_or_model, "is_file") else
        path_or_model.SerializeToString())
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    feeds = x if isinstance(x, dict) else {session.get_inputs()[0].name: x}
    return dict(zip(names, session.run(None, feeds)))
