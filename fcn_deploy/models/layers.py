"""Building blocks shared by the FCN architectures: bilinear kernels, crops, channel scaling.

Also the common base class :class:`FCNBase`, which knows which layers are score layers (zero at
start) and which are upsampling layers (bilinear, frozen unless asked otherwise), so that the
factory, surgery and checkpoints treat every architecture alike.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from fcn_deploy.constants import VGG_MEAN_BGR


def bilinear_kernel(k: int, channels: int) -> torch.Tensor:
    """Bilinear upsampling weights for a ``ConvTranspose2d(channels, channels, k)``.

    factor = (k + 1) // 2; the centre is factor - 1 for odd k and factor - 0.5 for even k;
    w[i, j] = (1 - |i - centre| / factor) * (1 - |j - centre| / factor). The filter sits only on
    the channel diagonal (class c feeds class c), every other entry is zero, as in the reference.
    Returns float32 of shape (channels, channels, k, k).
    """
    if int(k) != k or k < 1:
        raise ValueError(f"kernel size must be a positive integer, got {k!r}")
    if int(channels) != channels or channels < 1:
        raise ValueError(f"channels must be a positive integer, got {channels!r}")
    k, channels = int(k), int(channels)
    factor = (k + 1) // 2
    centre = factor - 1 if k % 2 == 1 else factor - 0.5
    # On the CPU even inside ``with torch.device("meta")`` (models built for shapes only).
    pos = torch.arange(k, dtype=torch.float64, device="cpu")
    profile = 1.0 - (pos - centre).abs() / factor
    filt = (profile[:, None] * profile[None, :]).to(torch.float32)
    weight = torch.zeros(channels, channels, k, k, dtype=torch.float32, device="cpu")
    idx = torch.arange(channels, device="cpu")
    weight[idx, idx] = filt
    return weight


def crop(x: torch.Tensor, ref: torch.Tensor, offset: int) -> torch.Tensor:
    """``x[..., offset:offset + H_ref, offset:offset + W_ref]`` (Caffe's Crop layer, axis 2)."""
    return x[:, :, offset:offset + ref.shape[2], offset:offset + ref.shape[3]]


def color_d_filters(weight: torch.Tensor) -> torch.Tensor:
    """(out, 3, k, k) RGB filters -> (out, 4, k, k): the colour channels as they are, the depth
    channel their mean over the three colour channels (the reference's RGB-D initialisation,
    nyud-fcn32s-color-d/solve.py)."""
    return torch.cat([weight, weight.mean(dim=1, keepdim=True)], dim=1)


def scaled_channels(channels: int, width: float, *, multiple: int = 1) -> int:
    """``channels * width`` rounded half up to a multiple of ``multiple`` (at least ``multiple``)."""
    units = math.floor(channels * width / multiple + 0.5)
    return max(1, units) * multiple


class FixedScale(nn.Module):
    """Multiply by a constant that is neither learned nor stored (FCN-8s at-once skip scaling)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = float(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor:g}"


def conv_relu(in_ch: int, out_ch: int, kernel: int, *, stride: int = 1, padding: int = 0,
              groups: int = 1) -> tuple[nn.Conv2d, nn.ReLU]:
    return (nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, groups=groups),
            nn.ReLU(inplace=True))


#: The head name of a single-head net's scores in {head: scores} views (:func:`head_scores`).
SINGLE_HEAD = "score"


def head_scores(output: "torch.Tensor | dict[str, torch.Tensor]") -> dict[str, torch.Tensor]:
    """A model's output as {head: scores}: a multi-head net's dict as is, a single-head net's
    tensor as ``{"score": tensor}``."""
    return dict(output) if isinstance(output, dict) else {SINGLE_HEAD: output}


def add_fc_layers(module: nn.Module, in_channels: int, *, fc6_kernel: int, width: float) -> int:
    """Add fc6 (unpadded ``fc6_kernel`` square conv), relu6, drop6, fc7 (1x1), relu7, drop7 to
    ``module`` (4096 channels at width 1, dropout 0.5); returns fc7's channels."""
    fc = scaled_channels(4096, width)
    module.fc6 = nn.Conv2d(in_channels, fc, fc6_kernel)
    module.relu6 = nn.ReLU(inplace=True)
    module.drop6 = nn.Dropout(0.5)
    module.fc7 = nn.Conv2d(fc, fc, 1)
    module.relu7 = nn.ReLU(inplace=True)
    module.drop7 = nn.Dropout(0.5)
    return fc


def run_fc_layers(module: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """fc6 -> relu6 -> drop6 -> fc7 -> relu7 -> drop7 of a module built by :func:`add_fc_layers`."""
    h = module.drop6(module.relu6(module.fc6(h)))
    return module.drop7(module.relu7(module.fc7(h)))


class FCNBase(nn.Module):
    """Common behaviour of every FCN: rebuild arguments, weight init, score/upsampling resets.

    Subclasses set ``arch`` and the names in ``score_layers`` (zero-initialised),
    ``upsample_layers`` (bilinear, frozen) and ``learnable_upsample_layers`` (the intermediate
    ones the paper learned; trainable when ``learn_upsampling=True``), and ``crop_offsets``.
    """

    arch: str = ""
    score_layers: tuple[str, ...] = ()
    upsample_layers: tuple[str, ...] = ()
    learnable_upsample_layers: tuple[str, ...] = ()
    crop_offsets: dict[str, int] = {}
    #: Published weight files (the reference Caffe nets, pytorch-fcn) name a layer after its
    #: Caffe layer; our modules carry the same names, so this is empty for the zoo's nets. A net
    #: whose modules are named otherwise (SIFT Flow's two heads *_sem/*_geo, NYUD's color/hha
    #: streams) lists {source layer name: module name} here, and fcn-import follows it.
    source_layer_renames: dict[str, str] = {}
    #: A regular expression searched in a weight file's name to pick this architecture over
    #: another with exactly the same weighted layers (pytorch-fcn's FCN-8s at-once state_dict
    #: has FCN-8s's keys: its fixed scales live in code).
    source_file_hint: str | None = None
    #: The network's named inputs and their channels, in forward order: the first is the
    #: positional argument of ``forward``, the others keyword arguments
    #: (``forward(image, hha=...)``). Single-input nets name theirs ``image`` (or ``hha``).
    input_channels: dict[str, int] = {"image": 3}
    #: The heads of a multi-head net, in order (``("sem", "geo")`` for SIFT Flow); its
    #: ``forward`` then returns {head: NxCxHxW scores}. Empty: one head, ``forward`` returns
    #: the score tensor itself, as every single-head net always has.
    head_names: tuple[str, ...] = ()
    #: The ImageNet classifier whose weights fill the backbone (``"vgg16"`` for every net built
    #: on :func:`~fcn_deploy.models.vgg.build_vgg16`), and the module prefixes of its copies
    #: (``("color.", "hha.")`` for the late-fusion nets' two streams).
    backbone: str = ""
    backbone_prefixes: tuple[str, ...] = ("",)
    #: The BGR mean the published weights of this net were trained with (the reference's data
    #: layer: ImageNet's VGG mean for the PASCAL nets, the dataset's own for SIFT Flow and
    #: NYUDv2); fcn-import writes it into the metadata, so the runtime preprocesses as trained.
    reference_mean: tuple[float, float, float] = VGG_MEAN_BGR

    def __init__(self, *, num_classes: int, width: float, learn_upsampling: bool) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.width = float(width)
        self.learn_upsampling = bool(learn_upsampling)

    @property
    def arch_kwargs(self) -> dict[str, Any]:
        """The factory arguments that rebuild this architecture (plain types only)."""
        return {"num_classes": self.num_classes, "width": self.width,
                "learn_upsampling": self.learn_upsampling}

    @property
    def head_classes(self) -> dict[str, int]:
        """{head: classes}; a single-head net has the one head ``score``."""
        return {SINGLE_HEAD: self.num_classes}

    def io_description(self) -> dict[str, Any]:
        """What a multi-input or multi-head net adds to its metadata (the ``ModelMeta`` fields
        ``inputs`` [{name, channels}] and ``heads`` [{name, num_classes}], which ModelMeta
        completes with each input's preprocessing and each head's names and colours); empty for
        the single-input, single-head nets, whose metadata stays as it was."""
        out: dict[str, Any] = {}
        if len(self.input_channels) > 1 or "image" not in self.input_channels:
            out["inputs"] = [{"name": k, "channels": c} for k, c in self.input_channels.items()]
        if self.head_names:
            out["heads"] = [{"name": k, "num_classes": c} for k, c in self.head_classes.items()]
        return out

    def source_layer_map(self) -> dict[str, str]:
        """{layer name in published weight files: module name} for every module that holds
        weights or a fixed scale (the importer's mapping table for this architecture)."""
        table = {}
        renamed = set(self.source_layer_renames.values())
        for name, module in self.named_modules():
            if not name or name in renamed:
                continue
            if isinstance(module, FixedScale) or any(True for _ in module.parameters(recurse=False)):
                table[name] = name
        table.update(self.source_layer_renames)
        return table

    def arch_kwargs_from_weights(self, shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
        """The factory arguments that fit weights of these shapes ({source layer.weight: shape}).

        ``self`` is this architecture at width 1. The class count is the first score layer's
        output channels; the width is the first convolution's output channels over the reference
        net's. A net with several heads overrides this.
        """
        table = {module: src for src, module in self.source_layer_map().items()}
        kwargs: dict[str, Any] = {}
        score = shapes.get(f"{table[self.score_layers[0]]}.weight") if self.score_layers else None
        if score:
            kwargs["num_classes"] = int(score[0])
        first = next((name for name, m in self.named_modules() if isinstance(m, nn.Conv2d)), None)
        shape = shapes.get(f"{table.get(first, first)}.weight") if first else None
        if shape:
            kwargs["width"] = shape[0] / self.get_submodule(first).out_channels
        return kwargs

    def _add_fc_classifier(self, in_channels: int, *, fc6_kernel: int) -> None:
        """The reference's convolutionalized classifier under Caffe's names: fc6 (an unpadded
        ``fc6_kernel`` square conv) and fc7 (1x1), 4096 channels at width 1, each followed by
        ReLU and dropout 0.5, then the 1x1 ``score_fr``. Run it with :meth:`_fc_classifier`."""
        fc = add_fc_layers(self, in_channels, fc6_kernel=fc6_kernel, width=self.width)
        self.score_fr = nn.Conv2d(fc, self.num_classes, 1)

    def _fc_classifier(self, h: torch.Tensor) -> torch.Tensor:
        """fc6 -> fc7 -> score_fr: the coarse score map."""
        return self.score_fr(run_fc_layers(self, h))

    def init_weights(self) -> None:
        """Initialisation for training from scratch: Kaiming for the backbone, zero scores,
        bilinear upsampling."""
        special = set(self.score_layers) | set(self.upsample_layers)
        for name, module in self.named_modules():
            if name in special:
                continue
            if isinstance(module, nn.Conv2d):
                if module.weight.is_meta:
                    # Built on the meta device for names and shapes only (load_model, the
                    # importer): no values to draw, and drawing would import torch._dynamo (4 s).
                    continue
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        self.reset_score_layers()
        self.reset_upsampling()

    def reset_score_layers(self) -> None:
        """Zero the score layers (the reference starts them at zero)."""
        for name in self.score_layers:
            layer = self.get_submodule(name)
            with torch.no_grad():
                layer.weight.zero_()
                if layer.bias is not None:
                    layer.bias.zero_()

    def reset_upsampling(self) -> None:
        """Bilinear weights in every upsampling layer; frozen unless learnable was asked for."""
        for name in self.upsample_layers:
            layer = self.get_submodule(name)
            k = layer.kernel_size[0]
            with torch.no_grad():
                layer.weight.copy_(bilinear_kernel(k, layer.in_channels))
            learn = self.learn_upsampling and name in self.learnable_upsample_layers
            layer.weight.requires_grad_(learn)
