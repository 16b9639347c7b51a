"""FCN-AlexNet: the reference's fully convolutional CaffeNet (fcn.berkeleyvision.org voc-fcn-alexnet).

CaffeNet differs from torchvision's AlexNet: 96/256/384/384/256 channels, grouped conv2/4/5
(2 groups), local response normalisation *after* pool1 and pool2, fc6 a 6x6 kernel over 256
channels. Layer names are Caffe's (conv1, pool1, norm1, ..., fc6, fc7, score_fr, upscore).

Caffe's LRN (ACROSS_CHANNELS) computes x / (k + alpha/n * sum_{window of n channels} x^2)^beta
with k = 1 and the window centred on the channel (n = 5: two channels either side, clipped at the
ends). ``torch.nn.LocalResponseNorm(5, alpha, beta, k=1)`` computes the same thing: it also
divides alpha by the window size and pads size//2 = 2 zero channels before and (size-1)//2 = 2
after. tests/models/test_layers.py checks this against a direct implementation of Caffe's formula.
"""
from __future__ import annotations

import torch
from torch import nn

from fcn_deploy.models.layers import FCNBase, crop, scaled_channels
from fcn_deploy.models.registry import register_model

#: LocalResponseNorm settings of CaffeNet and GoogLeNet: local_size 5, alpha 1e-4, beta 0.75, k 1.
LRN_ARGS = dict(size=5, alpha=1e-4, beta=0.75, k=1.0)


def caffenet_channels(width: float) -> tuple[int, int, int, int, int]:
    """conv1..conv5 channels at ``width``; even so that the 2-group convs stay valid."""
    return tuple(scaled_channels(c, width, multiple=2) for c in (96, 256, 384, 384, 256))


@register_model("fcn_alexnet")
class FCNAlexNet(FCNBase):
    """FCN-AlexNet: CaffeNet backbone (conv1 pad 100), fc6 6x6, score_fr, upscore k63 s32, crop 18."""

    arch = "fcn_alexnet"
    score_layers = ("score_fr",)
    upsample_layers = ("upscore",)
    crop_offsets = {"upscore": 18}

    def __init__(self, *, num_classes: int = 21, width: float = 1.0,
                 learn_upsampling: bool = False) -> None:
        super().__init__(num_classes=num_classes, width=width, learn_upsampling=learn_upsampling)
        c1, c2, c3, c4, c5 = caffenet_channels(width)
        self.conv1 = nn.Conv2d(3, c1, 11, stride=4, padding=100)
        self.relu1 = nn.ReLU(inplace=True)
        self.pool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.norm1 = nn.LocalResponseNorm(**LRN_ARGS)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=2, groups=2)
        self.relu2 = nn.ReLU(inplace=True)
        self.pool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.norm2 = nn.LocalResponseNorm(**LRN_ARGS)
        self.conv3 = nn.Conv2d(c2, c3, 3, padding=1)
        self.relu3 = nn.ReLU(inplace=True)
        self.conv4 = nn.Conv2d(c3, c4, 3, padding=1, groups=2)
        self.relu4 = nn.ReLU(inplace=True)
        self.conv5 = nn.Conv2d(c4, c5, 3, padding=1, groups=2)
        self.relu5 = nn.ReLU(inplace=True)
        self.pool5 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self._add_fc_classifier(c5, fc6_kernel=6)
        self.upscore = nn.ConvTranspose2d(num_classes, num_classes, 63, stride=32, bias=False)
        self.init_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(self.pool1(self.relu1(self.conv1(x))))
        h = self.norm2(self.pool2(self.relu2(self.conv2(h))))
        h = self.relu3(self.conv3(h))
        h = self.relu4(self.conv4(h))
        h = self.pool5(self.relu5(self.conv5(h)))
        score = self._fc_classifier(h)
        return crop(self.upscore(score), x, self.crop_offsets["upscore"])
