"""SIFT Flow FCN-32s/16s/8s: one VGG16 trunk, two heads (semantic 33 classes, geometric 3).

As the reference's siftflow-fcn*s nets: the trunk is the VOC nets' (conv1_1 pads 100, ...,
fc6/fc7), and every head layer exists twice, suffixed ``_sem`` and ``_geo`` (``score_fr_sem``,
``upscore2_sem``, ``score_pool4_sem``, ``upscore16_sem`` ...), each with the VOC net's kernel,
stride and crop offsets. ``forward(image)`` returns ``{"sem": scores, "geo": scores}``, both the
image's size. The module names are the Caffe names, so fcn-import maps a caffemodel one to one.
"""
from __future__ import annotations

from typing import Any

import torch

from fcn_deploy.constants import SIFTFLOW_GEO_CLASSES, SIFTFLOW_MEAN_BGR
from fcn_deploy.models.layers import FCNBase
from fcn_deploy.models.registry import check_num_classes, register_model
from fcn_deploy.models.vgg import HEADS, add_head, build_vgg16, run_head, run_vgg16

#: Head name -> the suffix of its layers in the reference nets.
SIFTFLOW_HEADS = {"sem": "_sem", "geo": "_geo"}


class _SiftFlowFCN(FCNBase):
    """Two reference heads of one variant (32s/16s/8s) on one VGG16 trunk."""

    variant = "32s"
    backbone = "vgg16"
    head_names = tuple(SIFTFLOW_HEADS)
    reference_mean = SIFTFLOW_MEAN_BGR

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        per_head = [HEADS[cls.variant].names(sfx) for sfx in SIFTFLOW_HEADS.values()]
        for attr in per_head[0]:
            if attr == "crop_offsets":
                setattr(cls, attr, {k: v for names in per_head for k, v in names[attr].items()})
            else:
                setattr(cls, attr, tuple(n for names in per_head for n in names[attr]))

    def __init__(self, *, num_classes: int, geo_classes: int, width: float,
                 learn_upsampling: bool) -> None:
        super().__init__(num_classes=num_classes, width=width, learn_upsampling=learn_upsampling)
        self.geo_classes = check_num_classes(geo_classes)
        self.block_channels, fc = build_vgg16(self, width=width)
        for head, suffix in SIFTFLOW_HEADS.items():
            add_head(self, self.variant, suffix=suffix, classes=self.head_classes[head],
                     fc_channels=fc, block_channels=self.block_channels)
        self.init_weights()

    @property
    def head_classes(self) -> dict[str, int]:
        return {"sem": self.num_classes, "geo": self.geo_classes}

    @property
    def arch_kwargs(self) -> dict[str, Any]:
        return {**super().arch_kwargs, "geo_classes": self.geo_classes}

    def arch_kwargs_from_weights(self, shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
        kwargs = super().arch_kwargs_from_weights(shapes)
        geo = shapes.get("score_fr_geo.weight")
        if geo:
            kwargs["geo_classes"] = int(geo[0])
        return kwargs

    def io_description(self) -> dict[str, Any]:
        """The heads; the geometric head names SIFT Flow's three classes when it has three."""
        out = super().io_description()
        if self.geo_classes == len(SIFTFLOW_GEO_CLASSES):
            out["heads"][1]["class_names"] = list(SIFTFLOW_GEO_CLASSES)
        return out

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = run_vgg16(self, x)
        return {head: run_head(self, self.variant, f, x, suffix=suffix)
                for head, suffix in SIFTFLOW_HEADS.items()}


@register_model("siftflow_fcn32s")
class SiftFlowFCN32s(_SiftFlowFCN):
    """SIFT Flow FCN-32s: score_fr_sem/_geo, upscore_sem/_geo (k64 s32), crop 19."""

    arch = "siftflow_fcn32s"
    variant = "32s"

    def __init__(self, *, num_classes: int = 33, geo_classes: int = 3, width: float = 1.0,
                 learn_upsampling: bool = False) -> None:
        super().__init__(num_classes=num_classes, geo_classes=geo_classes, width=width,
                         learn_upsampling=learn_upsampling)


@register_model("siftflow_fcn16s")
class SiftFlowFCN16s(_SiftFlowFCN):
    """SIFT Flow FCN-16s (the paper's Table 5 net): per head upscore2 k4 s2, score_pool4
    (crop 5), upscore16 k32 s16 (crop 27)."""

    arch = "siftflow_fcn16s"
    variant = "16s"

    def __init__(self, *, num_classes: int = 33, geo_classes: int = 3, width: float = 1.0,
                 learn_upsampling: bool = False) -> None:
        super().__init__(num_classes=num_classes, geo_classes=geo_classes, width=width,
                         learn_upsampling=learn_upsampling)


@register_model("siftflow_fcn8s")
class SiftFlowFCN8s(_SiftFlowFCN):
    """SIFT Flow FCN-8s: per head as FCN-8s (crops 5, 9, 31)."""

    arch = "siftflow_fcn8s"
    variant = "8s"

    def __init__(self, *, num_classes: int = 33, geo_classes: int = 3, width: float = 1.0,
                 learn_upsampling: bool = False) -> None:
        super().__init__(num_classes=num_classes, geo_classes=geo_classes, width=width,
                         learn_upsampling=learn_upsampling)
