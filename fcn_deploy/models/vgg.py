"""FCN-32s, FCN-16s, FCN-8s and FCN-8s at-once on a VGG16 backbone, as the reference Caffe nets.

Module names are the Caffe layer names (conv1_1 ... conv5_3, fc6, fc7, score_fr, upscore2, ...),
so a state_dict reads like the reference prototxt. Geometry (fcn.berkeleyvision.org):
conv1_1 pads 100, the other 3x3 convs pad 1, the 2x2/2 max pools round up, fc6 is an unpadded
7x7 conv. The crop offsets (19 | 5, 27 | 5, 9, 31) are the reference's; tests re-derive them from
the receptive-field centres of the score maps (see ``analysis.score_geometry``).
"""
from __future__ import annotations

import torch
from torch import nn

from fcn_deploy.models.layers import FCNBase, FixedScale, crop, scaled_channels
from fcn_deploy.models.registry import register_model

#: (block, number of 3x3 convs, channels) of VGG16.
VGG16_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))


class _VGG16FCNBase(FCNBase):
    """VGG16 backbone with fc6/fc7 as convolutions and the score_fr classifier."""

    def __init__(self, *, num_classes: int, width: float, learn_upsampling: bool) -> None:
        super().__init__(num_classes=num_classes, width=width, learn_upsampling=learn_upsampling)
        in_ch = 3
        self.block_channels: dict[int, int] = {}
        for block, n_convs, channels in VGG16_BLOCKS:
            out_ch = scaled_channels(channels, width)
            for i in range(1, n_convs + 1):
                pad = 100 if (block, i) == (1, 1) else 1
                self.add_module(f"conv{block}_{i}", nn.Conv2d(in_ch, out_ch, 3, padding=pad))
                self.add_module(f"relu{block}_{i}", nn.ReLU(inplace=True))
                in_ch = out_ch
            self.add_module(f"pool{block}", nn.MaxPool2d(2, stride=2, ceil_mode=True))
            self.block_channels[block] = out_ch
        self._add_fc_classifier(in_ch, fc6_kernel=7)

    def _features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the backbone; returns pool3, pool4 and the coarse score map ``score_fr``."""
        out = {}
        for block, n_convs, _ in VGG16_BLOCKS:
            for i in range(1, n_convs + 1):
                x = getattr(self, f"relu{block}_{i}")(getattr(self, f"conv{block}_{i}")(x))
            x = getattr(self, f"pool{block}")(x)
            if block in (3, 4):
                out[f"pool{block}"] = x
        out["score_fr"] = self._fc_classifier(x)
        return out


@register_model("fcn32s_vgg16")
class FCN32sVGG16(_VGG16FCNBase):
    """FCN-32s: score_fr upsampled 32x by one bilinear deconvolution (k64 s32), crop 19."""

    arch = "fcn32s_vgg16"
    score_layers = ("score_fr",)
    upsample_layers = ("upscore",)
    crop_offsets = {"upscore": 19}

    def __init__(self, *, num_classes: int = 21, width: float = 1.0,
                 learn_upsampling: bool = False) -> None:
        super().__init__(num_classes=num_classes, width=width, learn_upsampling=learn_upsampling)
        self.upscore = nn.ConvTranspose2d(num_classes, num_classes, 64, stride=32, bias=False)
        self.init_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = self._features(x)["score_fr"]
        return crop(self.upscore(score), x, self.crop_offsets["upscore"])


@register_model("fcn16s_vgg16")
class FCN16sVGG16(_VGG16FCNBase):
    """FCN-16s: 2x upsampled score_fr fused with score_pool4, then 16x (k32 s16), crop 27."""

    arch = "fcn16s_vgg16"
    score_layers = ("score_fr", "score_pool4")
    upsample_layers = ("upscore2", "upscore16")
    learnable_upsample_layers = ("upscore2",)
    crop_offsets = {"score_pool4": 5, "upscore16": 27}

    def __init__(self, *, num_classes: int = 21, width: float = 1.0,
                 learn_upsampling: bool = False) -> None:
        super().__init__(num_classes=num_classes, width=width, learn_upsampling=learn_upsampling)
        c = num_classes
        self.upscore2 = nn.ConvTranspose2d(c, c, 4, stride=2, bias=False)
        self.score_pool4 = nn.Conv2d(self.block_channels[4], c, 1)
        self.upscore16 = nn.ConvTranspose2d(c, c, 32, stride=16, bias=False)
        self.init_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self._features(x)
        upscore2 = self.upscore2(f["score_fr"])
        score_pool4c = crop(self.score_pool4(f["pool4"]), upscore2, self.crop_offsets["score_pool4"])
        fuse_pool4 = upscore2 + score_pool4c
        return crop(self.upscore16(fuse_pool4), x, self.crop_offsets["upscore16"])


class _FCN8sBase(_VGG16FCNBase):
    score_layers = ("score_fr", "score_pool4", "score_pool3")
    upsample_layers = ("upscore2", "upscore_pool4", "upscore8")
    learnable_upsample_layers = ("upscore2", "upscore_pool4")
    crop_offsets = {"score_pool4": 5, "score_pool3": 9, "upscore8": 31}
    pool4_scale: float | None = None
    pool3_scale: float | None = None

    def __init__(self, *, num_classes: int, width: float, learn_upsampling: bool) -> None:
        super().__init__(num_classes=num_classes, width=width, learn_upsampling=learn_upsampling)
        c = num_classes
        self.upscore2 = nn.ConvTranspose2d(c, c, 4, stride=2, bias=False)
        if self.pool4_scale is not None:
            self.scale_pool4 = FixedScale(self.pool4_scale)
        self.score_pool4 = nn.Conv2d(self.block_channels[4], c, 1)
        self.upscore_pool4 = nn.ConvTranspose2d(c, c, 4, stride=2, bias=False)
        if self.pool3_scale is not None:
            self.scale_pool3 = FixedScale(self.pool3_scale)
        self.score_pool3 = nn.Conv2d(self.block_channels[3], c, 1)
        self.upscore8 = nn.ConvTranspose2d(c, c, 16, stride=8, bias=False)
        self.init_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self._features(x)
        pool4, pool3 = f["pool4"], f["pool3"]
        if self.pool4_scale is not None:
            pool4 = self.scale_pool4(pool4)
        if self.pool3_scale is not None:
            pool3 = self.scale_pool3(pool3)
        upscore2 = self.upscore2(f["score_fr"])
        score_pool4c = crop(self.score_pool4(pool4), upscore2, self.crop_offsets["score_pool4"])
        upscore_pool4 = self.upscore_pool4(upscore2 + score_pool4c)
        score_pool3c = crop(self.score_pool3(pool3), upscore_pool4,
                            self.crop_offsets["score_pool3"])
        upscore8 = self.upscore8(upscore_pool4 + score_pool3c)
        return crop(upscore8, x, self.crop_offsets["upscore8"])


@register_model("fcn8s_vgg16")
class FCN8sVGG16(_FCN8sBase):
    """FCN-8s: adds score_pool3 at stride 8; upscore8 k16 s8, crop 31 (skip crops 5 and 9)."""

    arch = "fcn8s_vgg16"

    def __init__(self, *, num_classes: int = 21, width: float = 1.0,
                 learn_upsampling: bool = False) -> None:
        super().__init__(num_classes=num_classes, width=width, learn_upsampling=learn_upsampling)


@register_model("fcn8s_atonce_vgg16")
class FCN8sAtOnceVGG16(_FCN8sBase):
    """FCN-8s trained at once: pool4 x 0.01 and pool3 x 0.0001 (fixed) before their score layers."""

    arch = "fcn8s_atonce_vgg16"
    source_file_hint = r"at[-_ ]?once"
    pool4_scale = 0.01
    pool3_scale = 0.0001

    def __init__(self, *, num_classes: int = 21, width: float = 1.0,
                 learn_upsampling: bool = False) -> None:
        super().__init__(num_classes=num_classes, width=width, learn_upsampling=learn_upsampling)
