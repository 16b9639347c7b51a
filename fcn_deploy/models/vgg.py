"""FCN-32s, FCN-16s, FCN-8s and FCN-8s at-once on a VGG16 backbone, as the reference Caffe nets.

Module names are the Caffe layer names (conv1_1 ... conv5_3, fc6, fc7, score_fr, upscore2, ...),
so a state_dict reads like the reference prototxt. Geometry (fcn.berkeleyvision.org):
conv1_1 pads 100, the other 3x3 convs pad 1, the 2x2/2 max pools round up, fc6 is an unpadded
7x7 conv. The crop offsets (19 | 5, 27 | 5, 9, 31) are the reference's; tests re-derive them from
the receptive-field centres of the score maps (see ``analysis.score_geometry``).

The head of each net (score layers, skips, upsampling, crops) is described once in ``HEADS`` and
built by :func:`add_head` / run by :func:`run_head` with a name suffix, so the two-head SIFT Flow
nets (``score_fr_sem``, ``upscore2_geo``, ...) and the NYUD nets reuse the VOC nets' heads.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fcn_deploy.models.layers import (FCNBase, FixedScale, add_fc_layers, crop, run_fc_layers,
                                      scaled_channels)
from fcn_deploy.models.registry import register_model

#: (block, number of 3x3 convs, channels) of VGG16.
VGG16_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))


def build_vgg16(module: nn.Module, *, width: float, in_channels: int = 3) -> tuple[dict[int, int], int]:
    """Add conv1_1 ... pool5, fc6/fc7 (with their ReLU and dropout) to ``module`` under Caffe's
    names; returns ({block: channels}, fc7 channels). ``in_channels`` is 4 for RGB-D."""
    block_channels: dict[int, int] = {}
    in_ch = in_channels
    for block, n_convs, channels in VGG16_BLOCKS:
        out_ch = scaled_channels(channels, width)
        for i in range(1, n_convs + 1):
            pad = 100 if (block, i) == (1, 1) else 1
            module.add_module(f"conv{block}_{i}", nn.Conv2d(in_ch, out_ch, 3, padding=pad))
            module.add_module(f"relu{block}_{i}", nn.ReLU(inplace=True))
            in_ch = out_ch
        module.add_module(f"pool{block}", nn.MaxPool2d(2, stride=2, ceil_mode=True))
        block_channels[block] = out_ch
    return block_channels, add_fc_layers(module, in_ch, fc6_kernel=7, width=width)


def run_vgg16(module: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run a trunk built by :func:`build_vgg16`: pool3, pool4 and fc7 (after drop7)."""
    out = {}
    for block, n_convs, _ in VGG16_BLOCKS:
        for i in range(1, n_convs + 1):
            x = getattr(module, f"relu{block}_{i}")(getattr(module, f"conv{block}_{i}")(x))
        x = getattr(module, f"pool{block}")(x)
        if block in (3, 4):
            out[f"pool{block}"] = x
    out["fc7"] = run_fc_layers(module, x)
    return out


@dataclass(frozen=True)
class HeadLayers:
    """One FCN head of the reference: its score layers (zero at start), upsampling layers
    (bilinear; the intermediate ones learnable on request) and crop offsets, by base name."""

    score: tuple[str, ...]
    upsample: tuple[str, ...]
    learnable: tuple[str, ...]
    crops: dict[str, int]

    def names(self, suffix: str) -> dict[str, Any]:
        """The FCNBase class attributes for this head with ``suffix`` on every layer name."""
        return {"score_layers": tuple(n + suffix for n in self.score),
                "upsample_layers": tuple(n + suffix for n in self.upsample),
                "learnable_upsample_layers": tuple(n + suffix for n in self.learnable),
                "crop_offsets": {n + suffix: off for n, off in self.crops.items()}}


#: The heads of FCN-32s, -16s and -8s (fcn.berkeleyvision.org's voc-fcn*s/net.py).
HEADS = {
    "32s": HeadLayers(("score_fr",), ("upscore",), (), {"upscore": 19}),
    "16s": HeadLayers(("score_fr", "score_pool4"), ("upscore2", "upscore16"), ("upscore2",),
                      {"score_pool4": 5, "upscore16": 27}),
    "8s": HeadLayers(("score_fr", "score_pool4", "score_pool3"),
                     ("upscore2", "upscore_pool4", "upscore8"), ("upscore2", "upscore_pool4"),
                     {"score_pool4": 5, "score_pool3": 9, "upscore8": 31}),
}
_FINAL_UP = {"32s": ("upscore", 64, 32), "16s": ("upscore16", 32, 16), "8s": ("upscore8", 16, 8)}


def add_head(module: nn.Module, variant: str, *, suffix: str = "", classes: int, fc_channels: int,
             block_channels: dict[int, int], pool4_scale: float | None = None,
             pool3_scale: float | None = None) -> None:
    """Add the ``variant`` head's layers (named ``<layer><suffix>``) to ``module``."""
    c = classes
    add = module.add_module
    add(f"score_fr{suffix}", nn.Conv2d(fc_channels, c, 1))
    if variant != "32s":
        add(f"upscore2{suffix}", nn.ConvTranspose2d(c, c, 4, stride=2, bias=False))
        if pool4_scale is not None:
            add(f"scale_pool4{suffix}", FixedScale(pool4_scale))
        add(f"score_pool4{suffix}", nn.Conv2d(block_channels[4], c, 1))
    if variant == "8s":
        add(f"upscore_pool4{suffix}", nn.ConvTranspose2d(c, c, 4, stride=2, bias=False))
        if pool3_scale is not None:
            add(f"scale_pool3{suffix}", FixedScale(pool3_scale))
        add(f"score_pool3{suffix}", nn.Conv2d(block_channels[3], c, 1))
    name, k, s = _FINAL_UP[variant]
    add(f"{name}{suffix}", nn.ConvTranspose2d(c, c, k, stride=s, bias=False))


def run_head(module: nn.Module, variant: str, f: dict[str, torch.Tensor], x: torch.Tensor, *,
             suffix: str = "") -> torch.Tensor:
    """The ``variant`` head on trunk outputs ``f`` (pool3, pool4, fc7): scores of x's size."""
    layer = lambda name: getattr(module, name + suffix)  # noqa: E731
    offsets = HEADS[variant].crops
    score = layer("score_fr")(f["fc7"])
    if variant == "32s":
        return crop(layer("upscore")(score), x, offsets["upscore"])
    pool4 = f["pool4"]
    if hasattr(module, "scale_pool4" + suffix):
        pool4 = layer("scale_pool4")(pool4)
    upscore2 = layer("upscore2")(score)
    fuse_pool4 = upscore2 + crop(layer("score_pool4")(pool4), upscore2, offsets["score_pool4"])
    if variant == "16s":
        return crop(layer("upscore16")(fuse_pool4), x, offsets["upscore16"])
    pool3 = f["pool3"]
    if hasattr(module, "scale_pool3" + suffix):
        pool3 = layer("scale_pool3")(pool3)
    upscore_pool4 = layer("upscore_pool4")(fuse_pool4)
    fuse_pool3 = upscore_pool4 + crop(layer("score_pool3")(pool3), upscore_pool4,
                                      offsets["score_pool3"])
    return crop(layer("upscore8")(fuse_pool3), x, offsets["upscore8"])


class _VGG16FCNBase(FCNBase):
    """VGG16 backbone with fc6/fc7 as convolutions and one reference head (``variant``)."""

    variant = "32s"
    backbone = "vgg16"
    pool4_scale: float | None = None
    pool3_scale: float | None = None

    def __init__(self, *, num_classes: int, width: float, learn_upsampling: bool) -> None:
        super().__init__(num_classes=num_classes, width=width, learn_upsampling=learn_upsampling)
        self.block_channels, fc = build_vgg16(self, width=width,
                                              in_channels=sum(self.input_channels.values()))
        add_head(self, self.variant, classes=num_classes, fc_channels=fc,
                 block_channels=self.block_channels, pool4_scale=self.pool4_scale,
                 pool3_scale=self.pool3_scale)
        self.init_weights()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for attr, value in HEADS[cls.variant].names("").items():
            setattr(cls, attr, value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_head(self, self.variant, run_vgg16(self, x), x)


@register_model("fcn32s_vgg16")
class FCN32sVGG16(_VGG16FCNBase):
    """FCN-32s: score_fr upsampled 32x by one bilinear deconvolution (k64 s32), crop 19."""

    arch = "fcn32s_vgg16"
    variant = "32s"

    def __init__(self, *, num_classes: int = 21, width: float = 1.0,
                 learn_upsampling: bool = False) -> None:
        super().__init__(num_classes=num_classes, width=width, learn_upsampling=learn_upsampling)


@register_model("fcn16s_vgg16")
class FCN16sVGG16(_VGG16FCNBase):
    """FCN-16s: 2x upsampled score_fr fused with score_pool4, then 16x (k32 s16), crop 27."""

    arch = "fcn16s_vgg16"
    variant = "16s"

    def __init__(self, *, num_classes: int = 21, width: float = 1.0,
                 learn_upsampling: bool = False) -> None:
        super().__init__(num_classes=num_classes, width=width, learn_upsampling=learn_upsampling)


@register_model("fcn8s_vgg16")
class FCN8sVGG16(_VGG16FCNBase):
    """FCN-8s: adds score_pool3 at stride 8; upscore8 k16 s8, crop 31 (skip crops 5 and 9)."""

    arch = "fcn8s_vgg16"
    variant = "8s"

    def __init__(self, *, num_classes: int = 21, width: float = 1.0,
                 learn_upsampling: bool = False) -> None:
        super().__init__(num_classes=num_classes, width=width, learn_upsampling=learn_upsampling)


@register_model("fcn8s_atonce_vgg16")
class FCN8sAtOnceVGG16(_VGG16FCNBase):
    """FCN-8s trained at once: pool4 x 0.01 and pool3 x 0.0001 (fixed) before their score layers."""

    arch = "fcn8s_atonce_vgg16"
    variant = "8s"
    source_file_hint = r"at[-_ ]?once"
    pool4_scale = 0.01
    pool3_scale = 0.0001

    def __init__(self, *, num_classes: int = 21, width: float = 1.0,
                 learn_upsampling: bool = False) -> None:
        super().__init__(num_classes=num_classes, width=width, learn_upsampling=learn_upsampling)
