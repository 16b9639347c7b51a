"""The paper's published numbers that the reproduction is shown next to (never used as results).

Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic Segmentation", CVPR 2015:
Table 1 (500x500 input, NVIDIA Tesla K40c, forward time averaged over 20 trials) and section 3.1
(AlexNet patchwise classification against the convolutionalized net).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperTable1Row:
    label: str
    mean_iu: float
    forward_ms: float
    conv_layers: int
    parameters_m: float
    receptive_field: int
    max_stride: int


#: Table 1, by the column the paper names; the VGG16 column applies to the 32s/16s/8s variants
#: (the paper timed FCN-VGG16 once).
PAPER_TABLE1 = {
    "fcn_alexnet": PaperTable1Row("FCN-AlexNet", 39.8, 50.0, 8, 57.0, 355, 32),
    "vgg16": PaperTable1Row("FCN-VGG16", 56.0, 210.0, 16, 134.0, 404, 32),
    "fcn_googlenet": PaperTable1Row("FCN-GoogLeNet", 42.5, 59.0, 22, 6.0, 907, 32),
}

#: The models Table 1 is reproduced on, in report order.
TABLE1_MODELS = ("fcn_alexnet", "fcn32s_vgg16", "fcn16s_vgg16", "fcn8s_vgg16", "fcn_googlenet")

#: Short display names.
DISPLAY = {
    "fcn_alexnet": "FCN-AlexNet", "fcn32s_vgg16": "FCN-32s VGG16", "fcn16s_vgg16": "FCN-16s VGG16",
    "fcn8s_vgg16": "FCN-8s VGG16", "fcn8s_atonce_vgg16": "FCN-8s at-once VGG16",
    "fcn_googlenet": "FCN-GoogLeNet",
}


def paper_row(model: str) -> PaperTable1Row | None:
    """The paper's Table 1 column for a model name (VGG16 variants share one)."""
    if model.endswith("_vgg16"):
        return PAPER_TABLE1["vgg16"]
    return PAPER_TABLE1.get(model)


#: Section 3.1 (K40c): AlexNet on one 227x227 patch, batched (per image) and unbatched; the
#: convolutionalized net on a 500x500 image (10x10 grid); the claims derived from them.
PAPER_PATCHWISE = {
    "patch_batched_ms": 1.2,
    "patch_unbatched_ms": 5.4,
    "whole_image_ms": 22.0,
    "speedup_vs_batched": 5.0,  # "more than 5 times faster"
    "speedup_vs_unbatched": 25.0,  # "nearly 25 times"
    "backward_patch_ms": 2.4,
    "backward_whole_image_ms": 37.0,
}

#: Section 3.1 grid: a 500x500 image gives a 10x10 grid of AlexNet outputs (output stride 32).
PAPER_IMAGE_SIZE = 500
ALEXNET_PATCH = 227
ALEXNET_STRIDE = 32
