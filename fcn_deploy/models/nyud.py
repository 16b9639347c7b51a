"""The NYUDv2 nets of the paper's Table 4 (40 classes, Gupta et al.), as the reference's nyud-*.

* ``nyud_fcn32s_color`` / ``nyud_fcn32s_hha``: FCN-32s on the RGB image / on the HHA encoding of
  depth (3 channels: horizontal disparity, height above ground, angle with gravity);
* ``nyud_fcn32s_color_d``: early fusion, FCN-32s on a 4-channel input (BGR + log depth
  concatenated; the reference's ``conv1_1_bgrd``); ``forward(image, depth=...)``;
* ``nyud_fcn32s_color_hha``: late fusion, two whole VGG16 streams (every layer name suffixed
  ``color`` / ``hha`` in the caffemodel: ``conv1_1color`` ... ``score_frhha``) whose score maps
  are summed (``score_fused``) before one k64 s32 upsampling, crop 19;
  ``forward(image, hha=...)``;
* ``nyud_fcn16s_color_hha``: the paper's stride-16 late fusion (no published weights): each stream
  also scores pool4, the fused pool4 scores (crop 5) join the 2x upsampled fused score_fr, then
  upscore16 (k32 s16, crop 27).

Every net returns one score tensor (one head). Module names: the single-stream nets use Caffe's
names; the two-stream nets hold the streams as submodules ``color`` and ``hha`` and declare the
caffemodel names in ``source_layer_renames`` (``conv1_1color`` -> ``color.conv1_1``).
"""
from __future__ import annotations

import torch
from torch import nn

from fcn_deploy.constants import NYUD_MEAN_BGR
from fcn_deploy.models.layers import FCNBase, color_d_filters, crop
from fcn_deploy.models.registry import register_model
from fcn_deploy.models.vgg import HEADS, FCN32sVGG16, build_vgg16, run_vgg16

NYUD_CLASSES_COUNT = 40
#: The streams of the late-fusion nets: stream (submodule and caffemodel suffix) -> input name.
STREAMS = {"color": "image", "hha": "hha"}


@register_model("nyud_fcn32s_color")
class NYUDFCN32sColor(FCN32sVGG16):
    """FCN-32s on the RGB image, 40 classes (nyud-fcn32s-color)."""

    arch = "nyud_fcn32s_color"
    reference_mean = NYUD_MEAN_BGR
    # The same layers as fcn32s_vgg16: the importer picks this net by the file name.
    source_file_hint = r"nyud.*colou?r"

    def __init__(self, *, num_classes: int = NYUD_CLASSES_COUNT, width: float = 1.0,
                 learn_upsampling: bool = False) -> None:
        super().__init__(num_classes=num_classes, width=width, learn_upsampling=learn_upsampling)


@register_model("nyud_fcn32s_hha")
class NYUDFCN32sHHA(FCN32sVGG16):
    """FCN-32s on the 3-channel HHA image, 40 classes (nyud-fcn32s-hha); its input is ``hha``."""

    arch = "nyud_fcn32s_hha"
    reference_mean = NYUD_MEAN_BGR
    source_file_hint = r"nyud.*hha"
    input_channels = {"hha": 3}

    def __init__(self, *, num_classes: int = NYUD_CLASSES_COUNT, width: float = 1.0,
                 learn_upsampling: bool = False) -> None:
        super().__init__(num_classes=num_classes, width=width, learn_upsampling=learn_upsampling)


@register_model("nyud_fcn32s_color_d")
class NYUDFCN32sColorD(FCN32sVGG16):
    """RGB-D early fusion: FCN-32s whose conv1_1 (Caffe: ``conv1_1_bgrd``) takes BGR + log depth.

    ``forward(image, depth=...)``: image Nx3xHxW, depth Nx1xHxW, concatenated in that order.
    """

    arch = "nyud_fcn32s_color_d"
    reference_mean = NYUD_MEAN_BGR
    input_channels = {"image": 3, "depth": 1}
    source_layer_renames = {"conv1_1_bgrd": "conv1_1"}

    def __init__(self, *, num_classes: int = NYUD_CLASSES_COUNT, width: float = 1.0,
                 learn_upsampling: bool = False) -> None:
        super().__init__(num_classes=num_classes, width=width, learn_upsampling=learn_upsampling)

    def forward(self, image: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(torch.cat([image, depth], dim=1))

    def init_conv1_1_from_color(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """The reference's surgery from an RGB net (nyud-fcn32s-color-d/solve.py): the colour
        channels take the RGB net's conv1_1 filters, the depth channel their mean over the
        three colour channels, the bias is copied. (``--imagenet`` does this by itself.)"""
        want = (self.conv1_1.out_channels, 3) + tuple(self.conv1_1.kernel_size)
        if tuple(weight.shape) != want or tuple(bias.shape) != (want[0],):
            raise ValueError(f"conv1_1 of an RGB net must be {want} (+ bias), got "
                             f"{tuple(weight.shape)} / {tuple(bias.shape)}")
        with torch.no_grad():
            self.conv1_1.weight.copy_(color_d_filters(weight))
            self.conv1_1.bias.copy_(bias)



class VGG16Stream(nn.Module):
    """One stream of a late-fusion net: the VGG16 trunk, score_fr and (stride 16) score_pool4."""

    def __init__(self, *, in_channels: int, classes: int, width: float, pool4: bool) -> None:
        super().__init__()
        self.block_channels, fc = build_vgg16(self, width=width, in_channels=in_channels)
        self.score_fr = nn.Conv2d(fc, classes, 1)
        if pool4:
            self.score_pool4 = nn.Conv2d(self.block_channels[4], classes, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = run_vgg16(self, x)
        out = {"score_fr": self.score_fr(f["fc7"]), "pool4": f["pool4"]}
        if hasattr(self, "score_pool4"):
            out["score_pool4"] = self.score_pool4(f["pool4"])
        return out


class _LateFusion(FCNBase):
    """Two VGG16 streams (color on ``image``, hha on ``hha``), score maps summed, one head."""

    variant = "32s"
    input_channels = {"image": 3, "hha": 3}
    backbone = "vgg16"
    backbone_prefixes = tuple(f"{stream}." for stream in STREAMS)

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        head = HEADS[cls.variant]
        streams = [f"{s}.{n}" for s in STREAMS for n in head.score if n in ("score_fr",
                                                                            "score_pool4")]
        shared = head.names("")
        cls.score_layers = tuple(streams)
        cls.upsample_layers = shared["upsample_layers"]
        cls.learnable_upsample_layers = shared["learnable_upsample_layers"]
        cls.crop_offsets = shared["crop_offsets"]

    def __init__(self, *, num_classes: int, width: float, learn_upsampling: bool) -> None:
        super().__init__(num_classes=num_classes, width=width, learn_upsampling=learn_upsampling)
        c, pool4 = num_classes, self.variant == "16s"
        for stream, inp in STREAMS.items():
            self.add_module(stream, VGG16Stream(in_channels=self.input_channels[inp], classes=c,
                                                width=width, pool4=pool4))
        if pool4:
            self.upscore2 = nn.ConvTranspose2d(c, c, 4, stride=2, bias=False)
            self.upscore16 = nn.ConvTranspose2d(c, c, 32, stride=16, bias=False)
        else:
            self.upscore = nn.ConvTranspose2d(c, c, 64, stride=32, bias=False)
        self.source_layer_renames = {
            f"{name.rpartition('.')[2]}{stream}": name
            for stream in STREAMS for name, m in self.named_modules()
            if name.startswith(f"{stream}.") and any(True for _ in m.parameters(recurse=False))}
        self.init_weights()

    def forward(self, image: torch.Tensor, hha: torch.Tensor) -> torch.Tensor:
        color, depth = self.color(image), self.hha(hha)
        score_fused = color["score_fr"] + depth["score_fr"]
        if self.variant == "32s":
            return crop(self.upscore(score_fused), image, self.crop_offsets["upscore"])
        upscore2 = self.upscore2(score_fused)
        pool4_fused = color["score_pool4"] + depth["score_pool4"]
        fuse_pool4 = upscore2 + crop(pool4_fused, upscore2, self.crop_offsets["score_pool4"])
        return crop(self.upscore16(fuse_pool4), image, self.crop_offsets["upscore16"])


@register_model("nyud_fcn32s_color_hha")
class NYUDFCN32sColorHHA(_LateFusion):
    """RGB-HHA late fusion at stride 32 (nyud-fcn32s-color-hha): score_fused -> upscore k64 s32."""

    arch = "nyud_fcn32s_color_hha"
    reference_mean = NYUD_MEAN_BGR
    variant = "32s"

    def __init__(self, *, num_classes: int = NYUD_CLASSES_COUNT, width: float = 1.0,
                 learn_upsampling: bool = False) -> None:
        super().__init__(num_classes=num_classes, width=width, learn_upsampling=learn_upsampling)


@register_model("nyud_fcn16s_color_hha")
class NYUDFCN16sColorHHA(_LateFusion):
    """RGB-HHA late fusion at stride 16 (the paper's best NYUD net, 34.0 mean IU)."""

    arch = "nyud_fcn16s_color_hha"
    reference_mean = NYUD_MEAN_BGR
    variant = "16s"

    def __init__(self, *, num_classes: int = NYUD_CLASSES_COUNT, width: float = 1.0,
                 learn_upsampling: bool = False) -> None:
        super().__init__(num_classes=num_classes, width=width, learn_upsampling=learn_upsampling)
