"""The ImageNet classifiers the FCNs start from, and their convolutionalized form.

- :class:`VGG16Classifier`: torchvision's ``vgg16`` key layout (``features.N``, ``classifier.0/3/6``),
  224x224 -> 1000 logits, so torchvision's VGG16 ImageNet state_dict loads as is. Pools round up
  as in Caffe (identical to torchvision's at 224x224; differs only when convolutionalized on
  other sizes).
- :class:`AlexNetClassifier`: CaffeNet (the reference's AlexNet variant), 227x227 -> 1000, in a
  torchvision-like layout (``features.N``, ``classifier.1/4/6``). torchvision's own ``alexnet`` is a
  different net (64/192/384/256/256 channels, no LRN, no groups) whose weights do not fit; FCN-AlexNet
  needs CaffeNet-geometry weights converted into this key layout.

:func:`convolutionalize` turns either into a fully convolutional net with the same weights (the
paper's section 3.1: fc6 4096x25088 becomes a 4096x512x7x7 convolution), used by the benchmark to
compare patchwise classification with one whole-image pass.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from fcn_deploy.errors import FCNError
from fcn_deploy.models.alexnet import LRN_ARGS, caffenet_channels
from fcn_deploy.models.layers import scaled_channels
from fcn_deploy.models.registry import check_num_classes, check_width
from fcn_deploy.models.vgg import VGG16_BLOCKS


class _Classifier(nn.Module):
    """features -> flatten -> classifier, with the fixed input size the fc layers need."""

    input_size: int = 0
    #: classifier.N index -> FCN layer name it becomes (fc8, the ImageNet classifier, is dropped).
    fcn_layer_names: dict[int, str] = {}
    #: features.N index -> the FCN's conv layer name.
    _conv_names: dict[int, str] = {}

    def __init__(self, num_classes: int, width: float) -> None:
        super().__init__()
        self.num_classes = check_num_classes(num_classes)
        self.width = check_width(width)
        self.feature_channels = 0
        self.feature_size = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        if h.shape[2:] != (self.feature_size, self.feature_size):
            raise FCNError(f"{type(self).__name__} takes {self.input_size}x{self.input_size} "
                           f"inputs (features {self.feature_size}x{self.feature_size}); got "
                           f"{x.shape[2]}x{x.shape[3]}; convolutionalize() it for other sizes")
        return self.classifier(torch.flatten(h, 1))

    def fcn_key_map(self) -> dict[str, str]:
        """{classifier state_dict prefix: FCN layer name} for the layers an FCN inherits."""
        keys = {f"features.{i}": name for i, name in self._conv_names.items()}
        keys.update({f"classifier.{i}": name for i, name in self.fcn_layer_names.items()})
        return keys


class VGG16Classifier(_Classifier):
    """VGG16 (configuration D) in torchvision's key layout; ``width`` scales every channel."""

    input_size = 224
    fcn_layer_names = {0: "fc6", 3: "fc7"}

    def __init__(self, *, num_classes: int = 1000, width: float = 1.0) -> None:
        super().__init__(num_classes, width)
        layers: list[nn.Module] = []
        in_ch = 3
        self._conv_names: dict[int, str] = {}
        for block, n_convs, channels in VGG16_BLOCKS:
            out_ch = scaled_channels(channels, width)
            for i in range(1, n_convs + 1):
                self._conv_names[len(layers)] = f"conv{block}_{i}"
                layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True)]
                in_ch = out_ch
            layers.append(nn.MaxPool2d(2, stride=2, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        self.feature_channels, self.feature_size = in_ch, 7
        fc = scaled_channels(4096, width)
        self.classifier = nn.Sequential(
            nn.Linear(in_ch * 7 * 7, fc), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(fc, fc), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(fc, self.num_classes),
        )
        _init_classifier(self)


class AlexNetClassifier(_Classifier):
    """CaffeNet (AlexNet as trained in Caffe) in a torchvision-like key layout, 227x227 input."""

    input_size = 227
    fcn_layer_names = {1: "fc6", 4: "fc7"}
    _conv_names = {0: "conv1", 4: "conv2", 8: "conv3", 10: "conv4", 12: "conv5"}

    def __init__(self, *, num_classes: int = 1000, width: float = 1.0) -> None:
        super().__init__(num_classes, width)
        c1, c2, c3, c4, c5 = caffenet_channels(width)
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, 11, stride=4), nn.ReLU(inplace=True),                  # 0, 1
            nn.MaxPool2d(3, stride=2, ceil_mode=True), nn.LocalResponseNorm(**LRN_ARGS),  # 2, 3
            nn.Conv2d(c1, c2, 5, padding=2, groups=2), nn.ReLU(inplace=True),      # 4, 5
            nn.MaxPool2d(3, stride=2, ceil_mode=True), nn.LocalResponseNorm(**LRN_ARGS),  # 6, 7
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(inplace=True),                # 8, 9
            nn.Conv2d(c3, c4, 3, padding=1, groups=2), nn.ReLU(inplace=True),      # 10, 11
            nn.Conv2d(c4, c5, 3, padding=1, groups=2), nn.ReLU(inplace=True),      # 12, 13
            nn.MaxPool2d(3, stride=2, ceil_mode=True),                              # 14
        )
        self.feature_channels, self.feature_size = c5, 6
        fc = scaled_channels(4096, width)
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(c5 * 6 * 6, fc), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(fc, fc), nn.ReLU(inplace=True),
            nn.Linear(fc, self.num_classes),
        )
        _init_classifier(self)


def _init_classifier(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


class ConvolutionalizedClassifier(nn.Module):
    """A classifier whose linear layers became convolutions: any input size -> a score grid."""

    def __init__(self, features: nn.Sequential, classifier: nn.Sequential) -> None:
        super().__init__()
        self.features = features
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def convolutionalize(classifier: nn.Module) -> ConvolutionalizedClassifier:
    """Fully convolutional copy of a :class:`VGG16Classifier` / :class:`AlexNetClassifier`.

    The first linear layer becomes a k x k convolution over the last feature map (k = 7 for VGG16,
    6 for AlexNet; its weight reshaped from out x (C*k*k) to out x C x k x k, which is the order
    ``flatten`` used), the others 1x1 convolutions. No padding is added, so a 224x224 (227x227)
    input gives a 1x1 grid equal to the classifier's logits, and AlexNet on 500x500 a 10x10 grid.
    """
    if not isinstance(classifier, _Classifier):
        raise FCNError(f"convolutionalize takes a VGG16Classifier or AlexNetClassifier, "
                       f"got {type(classifier).__name__}")
    features = copy.deepcopy(classifier.features)
    layers: list[nn.Module] = []
    first = True
    in_ch = classifier.feature_channels
    for module in classifier.classifier:
        if isinstance(module, nn.Linear):
            k = classifier.feature_size if first else 1
            conv = nn.Conv2d(in_ch, module.out_features, k, device=module.weight.device,
                             dtype=module.weight.dtype)
            with torch.no_grad():
                conv.weight.copy_(module.weight.reshape(conv.weight.shape))
                conv.bias.copy_(module.bias)
            layers.append(conv)
            in_ch, first = module.out_features, False
        else:
            layers.append(copy.deepcopy(module))
    out = ConvolutionalizedClassifier(features, nn.Sequential(*layers))
    return out.train(classifier.training)
