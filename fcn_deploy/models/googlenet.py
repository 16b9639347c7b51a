"""FCN-GoogLeNet: the paper's third net (Inception v1), which the reference repo never published.

Backbone: BVLC GoogLeNet (Szegedy et al. 2015, the Caffe ``bvlc_googlenet`` layout, no batch norm):
conv1/7x7_s2, pool1/3x3_s2 + LRN, conv2/3x3_reduce + conv2/3x3 + LRN, pool2/3x3_s2, inception
3a 3b, pool3, 4a..4e, pool4, 5a 5b; Caffe pools round up. As in the paper, the auxiliary loss heads
and the final 7x7 average pool are dropped; the last head's dropout (0.4) is kept before
``score_fr`` (1x1, replacing loss3/classifier). Module names follow Caffe with '/' -> '.', e.g.
``inception_4a.3x3_reduce`` is Caffe's ``inception_4a/3x3_reduce``.

Head and alignment (our choice, derived from the geometry). Every layer maps an output index y to
the centre of its input window ``s*y + (k-1)/2 - pad``. Composing conv1 (7, 2, P), four 3x3/2
pools and the alignment-preserving inception modules, score unit y is centred on image pixel
``32*y + 33 - P``. An upsampling ``ConvTranspose(k, s=32)`` puts unit y's kernel centre at output
pixel ``32*y + (k-1)/2``, so the crop offset is ``(k-1)/2 - 33 + P``. With the FCN-32s kernel
(k = 64, centre 31.5) that is a half-integer for every integer P: the score map would sit half a
pixel off (Caffe's crop refuses such offsets). We therefore use k = 63 (bilinear for factor 32, odd
centre 31, like FCN-AlexNet), making the offset ``P - 2``. P = 34 is the smallest padding for
which every input size from 1 px up produces an output at least offset + size large *and* the
first and last score units straddle the image (centres at -1 and >= H-1), so every output pixel
is a true bilinear blend of two score units; the crop offset is 32.
``tests/models/test_geometry.py`` re-measures the centres empirically and checks this offset.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from fcn_deploy.models.alexnet import LRN_ARGS
from fcn_deploy.models.layers import FCNBase, crop, scaled_channels
from fcn_deploy.models.registry import register_model

#: name -> (1x1, 3x3_reduce, 3x3, 5x5_reduce, 5x5, pool_proj) output channels (BVLC GoogLeNet).
INCEPTION_CONFIG = OrderedDict([
    ("inception_3a", (64, 96, 128, 16, 32, 32)),
    ("inception_3b", (128, 128, 192, 32, 96, 64)),
    ("inception_4a", (192, 96, 208, 16, 48, 64)),
    ("inception_4b", (160, 112, 224, 24, 64, 64)),
    ("inception_4c", (128, 128, 256, 24, 64, 64)),
    ("inception_4d", (112, 144, 288, 32, 64, 64)),
    ("inception_4e", (256, 160, 320, 32, 128, 128)),
    ("inception_5a", (256, 160, 320, 32, 128, 128)),
    ("inception_5b", (384, 192, 384, 48, 128, 128)),
])

#: conv1 padding and the crop offset it implies (see the module docstring).
CONV1_PAD = 34
CROP_OFFSET = CONV1_PAD - 2


class Inception(nn.Module):
    """Four parallel branches concatenated on channels: 1x1 | 1x1->3x3 | 1x1->5x5 | pool->1x1."""

    def __init__(self, in_ch: int, channels: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        c1, c3r, c3, c5r, c5, cp = channels
        layers = [
            ("1x1", nn.Conv2d(in_ch, c1, 1)), ("relu_1x1", nn.ReLU(inplace=True)),
            ("3x3_reduce", nn.Conv2d(in_ch, c3r, 1)), ("relu_3x3_reduce", nn.ReLU(inplace=True)),
            ("3x3", nn.Conv2d(c3r, c3, 3, padding=1)), ("relu_3x3", nn.ReLU(inplace=True)),
            ("5x5_reduce", nn.Conv2d(in_ch, c5r, 1)), ("relu_5x5_reduce", nn.ReLU(inplace=True)),
            ("5x5", nn.Conv2d(c5r, c5, 5, padding=2)), ("relu_5x5", nn.ReLU(inplace=True)),
            ("pool", nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)),
            ("pool_proj", nn.Conv2d(in_ch, cp, 1)), ("relu_pool_proj", nn.ReLU(inplace=True)),
        ]
        for name, module in layers:
            self.add_module(name, module)
        self.out_channels = c1 + c3 + c5 + cp

    def _branch(self, x: torch.Tensor, *names: str) -> torch.Tensor:
        for name in names:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self._branch(x, "1x1", "relu_1x1"),
            self._branch(x, "3x3_reduce", "relu_3x3_reduce", "3x3", "relu_3x3"),
            self._branch(x, "5x5_reduce", "relu_5x5_reduce", "5x5", "relu_5x5"),
            self._branch(x, "pool", "pool_proj", "relu_pool_proj"),
        ], dim=1)


def _pool() -> nn.Sequential:
    return nn.Sequential(OrderedDict([("3x3_s2", nn.MaxPool2d(3, stride=2, ceil_mode=True))]))


@register_model("fcn_googlenet")
class FCNGoogLeNet(FCNBase):
    """FCN-GoogLeNet: Inception v1 to stride 32, score_fr, upscore k63 s32, crop 32."""

    arch = "fcn_googlenet"
    score_layers = ("score_fr",)
    upsample_layers = ("upscore",)
    crop_offsets = {"upscore": CROP_OFFSET}

    def __init__(self, *, num_classes: int = 21, width: float = 1.0,
                 learn_upsampling: bool = False) -> None:
        super().__init__(num_classes=num_classes, width=width, learn_upsampling=learn_upsampling)
        s = lambda c: scaled_channels(c, width)  # noqa: E731
        self.conv1 = nn.Sequential(OrderedDict([
            ("7x7_s2", nn.Conv2d(3, s(64), 7, stride=2, padding=CONV1_PAD)),
            ("relu_7x7", nn.ReLU(inplace=True)),
        ]))
        self.pool1 = nn.Sequential(OrderedDict([
            ("3x3_s2", nn.MaxPool2d(3, stride=2, ceil_mode=True)),
            ("norm1", nn.LocalResponseNorm(**LRN_ARGS)),
        ]))
        self.conv2 = nn.Sequential(OrderedDict([
            ("3x3_reduce", nn.Conv2d(s(64), s(64), 1)),
            ("relu_3x3_reduce", nn.ReLU(inplace=True)),
            ("3x3", nn.Conv2d(s(64), s(192), 3, padding=1)),
            ("relu_3x3", nn.ReLU(inplace=True)),
            ("norm2", nn.LocalResponseNorm(**LRN_ARGS)),
        ]))
        self.pool2 = _pool()
        in_ch = s(192)
        for name, channels in INCEPTION_CONFIG.items():
            module = Inception(in_ch, tuple(s(c) for c in channels))
            self.add_module(name, module)
            in_ch = module.out_channels
            if name == "inception_3b":
                self.pool3 = _pool()
            elif name == "inception_4e":
                self.pool4 = _pool()
        self.drop = nn.Dropout(0.4)
        self.score_fr = nn.Conv2d(in_ch, num_classes, 1)
        self.upscore = nn.ConvTranspose2d(num_classes, num_classes, 63, stride=32, bias=False)
        self.init_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool2(self.conv2(self.pool1(self.conv1(x))))
        for name in INCEPTION_CONFIG:
            h = getattr(self, name)(h)
            if name == "inception_3b":
                h = self.pool3(h)
            elif name == "inception_4e":
                h = self.pool4(h)
        score = self.score_fr(self.drop(h))
        return crop(self.upscore(score), x, self.crop_offsets["upscore"])
