"""The reference Caffe FCNs written out layer by layer, and a forward pass with Caffe's semantics.

Independent of fcn_deploy.models' classes: the nets follow the reference's net.py / val.prototxt
files (fcn.berkeleyvision.org voc-fcn32s ... voc-fcn-alexnet) and the forward pass implements
each Caffe layer with torch.nn.functional as Caffe defines it (ceil-mode pooling by Caffe's own
size formula, LRN by Caffe's formula, Crop by offset, Scale per channel, Eltwise SUM). Tests
import weights written from these nets and compare the imported model's output with this.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from fcn_deploy.models.caffe import CaffeLayer, ConvSpec, CropSpec, PoolSpec

VGG_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
#: The nets the importer supports, as the reference names them.
NETS = ("fcn32s", "fcn16s", "fcn8s", "fcn8s-atonce", "fcn-alexnet")
#: Our registered name of each.
ARCH = {"fcn32s": "fcn32s_vgg16", "fcn16s": "fcn16s_vgg16", "fcn8s": "fcn8s_vgg16",
        "fcn8s-atonce": "fcn8s_atonce_vgg16", "fcn-alexnet": "fcn_alexnet"}


class _Builder:
    def __init__(self, rng: np.random.Generator, width: float, num_classes: int,
                 random_upsampling: bool) -> None:
        self.rng, self.width, self.c = rng, width, num_classes
        self.random_upsampling = random_upsampling
        self.layers: list[CaffeLayer] = []
        self.channels: dict[str, int] = {"data": 3}

    def ch(self, n: int) -> int:
        return max(1, int(round(n * self.width)))

    def conv(self, name, bottom, n_out, k, *, stride=1, pad=0, group=1, score=False):
        c_in = self.channels[bottom]
        fan_in = c_in // group * k * k
        std = math.sqrt((1.0 if score else 2.0) / fan_in)
        # float32 draws: a full-width VGG16 is 134M values
        w = self.rng.standard_normal((n_out, c_in // group, k, k), dtype=np.float32)
        w *= std  # in place: one 411 MB array for a full-width fc6, not two
        b = self.rng.standard_normal((n_out,), dtype=np.float32) * 0.1
        self.layers.append(CaffeLayer(name, "Convolution", [bottom], [name], [w, b],
                                      conv=ConvSpec(n_out, (k, k), (stride, stride), (pad, pad),
                                                    group, True)))
        self.channels[name] = n_out
        return name

    def relu(self, name, bottom):
        self.layers.append(CaffeLayer(name, "ReLU", [bottom], [bottom]))
        return bottom

    def pool(self, name, bottom, k, s):
        self.layers.append(CaffeLayer(name, "Pooling", [bottom], [name],
                                      pool=PoolSpec("MAX", (k, k), (s, s))))
        self.channels[name] = self.channels[bottom]
        return name

    def deconv(self, name, bottom, k, s):
        c = self.channels[bottom]
        if self.random_upsampling:  # not bilinear: a transposed layout would show in the output
            w = self.rng.standard_normal((c, c, k, k), dtype=np.float32) / (k / 2)
        else:
            w = np.zeros((c, c, k, k), np.float32)
            factor = (k + 1) // 2
            centre = factor - 1 if k % 2 else factor - 0.5
            og = np.ogrid[:k, :k]
            w[range(c), range(c)] = ((1 - abs(og[0] - centre) / factor)
                                     * (1 - abs(og[1] - centre) / factor))
        self.layers.append(CaffeLayer(name, "Deconvolution", [bottom], [name], [w],
                                      conv=ConvSpec(c, (k, k), (s, s), (0, 0), 1, False)))
        self.channels[name] = c
        return name

    def crop(self, name, bottom, like, offset):
        self.layers.append(CaffeLayer(name, "Crop", [bottom, like], [name],
                                      crop=CropSpec(2, (offset,))))
        self.channels[name] = self.channels[bottom]
        return name

    def scale(self, name, bottom, value):
        c = self.channels[bottom]
        self.layers.append(CaffeLayer(name, "Scale", [bottom], [name],
                                      [np.full((c,), value, np.float32)], scale_value=value))
        self.channels[name] = c
        return name

    def add(self, name, a, b):
        self.layers.append(CaffeLayer(name, "Eltwise", [a, b], [name]))
        self.channels[name] = self.channels[a]
        return name

    def other(self, name, ltype, bottom):
        self.layers.append(CaffeLayer(name, ltype, [bottom], [bottom]))
        return bottom


def reference_net(net: str, *, width: float = 1 / 16, num_classes: int = 21, seed: int = 0,
                  random_upsampling: bool = True) -> list[CaffeLayer]:
    """One of the reference's nets (deploy form: the data layer and the loss left out), random
    weights scaled so activations stay of order one."""
    b = _Builder(np.random.default_rng(seed), width, num_classes, random_upsampling)
    C = num_classes
    if net == "fcn-alexnet":
        h = b.relu("relu1", b.conv("conv1", "data", b.ch(96), 11, stride=4, pad=100))
        h = b.other("norm1", "LRN", b.pool("pool1", h, 3, 2))
        h = b.relu("relu2", b.conv("conv2", h, b.ch(256), 5, pad=2, group=2))
        h = b.other("norm2", "LRN", b.pool("pool2", h, 3, 2))
        h = b.relu("relu3", b.conv("conv3", h, b.ch(384), 3, pad=1))
        h = b.relu("relu4", b.conv("conv4", h, b.ch(384), 3, pad=1, group=2))
        h = b.relu("relu5", b.conv("conv5", h, b.ch(256), 3, pad=1, group=2))
        h = b.pool("pool5", h, 3, 2)
        fc6_k = 6
    else:
        h = "data"
        for block, n, ch in VGG_BLOCKS:
            for i in range(1, n + 1):
                name = f"conv{block}_{i}"
                h = b.relu(f"relu{block}_{i}", b.conv(name, h, b.ch(ch), 3,
                                                      pad=100 if name == "conv1_1" else 1))
            h = b.pool(f"pool{block}", h, 2, 2)
        fc6_k = 7
    h = b.other("drop6", "Dropout", b.relu("relu6", b.conv("fc6", h, b.ch(4096), fc6_k)))
    h = b.other("drop7", "Dropout", b.relu("relu7", b.conv("fc7", h, b.ch(4096), 1)))
    score = b.conv("score_fr", h, C, 1, score=True)
    if net in ("fcn32s", "fcn-alexnet"):
        k = 63 if net == "fcn-alexnet" else 64
        b.crop("score", b.deconv("upscore", score, k, 32), "data", 18 if k == 63 else 19)
        return b.layers
    at_once = net == "fcn8s-atonce"
    up2 = b.deconv("upscore2", score, 4, 2)
    pool4 = b.scale("scale_pool4", "pool4", 0.01) if at_once else "pool4"
    sp4 = b.crop("score_pool4c", b.conv("score_pool4", pool4, C, 1, score=True), up2, 5)
    fuse4 = b.add("fuse_pool4", up2, sp4)
    if net == "fcn16s":
        b.crop("score", b.deconv("upscore16", fuse4, 32, 16), "data", 27)
        return b.layers
    up4 = b.deconv("upscore_pool4", fuse4, 4, 2)
    pool3 = b.scale("scale_pool3", "pool3", 0.0001) if at_once else "pool3"
    sp3 = b.crop("score_pool3c", b.conv("score_pool3", pool3, C, 1, score=True), up4, 9)
    fuse3 = b.add("fuse_pool3", up4, sp3)
    b.crop("score", b.deconv("upscore8", fuse3, 16, 8), "data", 31)
    return b.layers


def _caffe_max_pool(x: torch.Tensor, k: int, s: int) -> torch.Tensor:
    h, w = x.shape[2:]
    oh, ow = (math.ceil((h - k) / s) + 1, math.ceil((w - k) / s) + 1)  # Caffe rounds up (pad 0)
    x = F.pad(x, (0, (ow - 1) * s + k - w, 0, (oh - 1) * s + k - h), value=-math.inf)
    return F.max_pool2d(x, k, s)


def _caffe_lrn(x: torch.Tensor, n: int = 5, alpha: float = 1e-4, beta: float = 0.75
               ) -> torch.Tensor:
    sq = x * x
    c = x.shape[1]
    total = torch.zeros_like(x)
    for i in range(c):
        lo, hi = max(0, i - n // 2), min(c, i + n // 2 + 1)
        total[:, i] = sq[:, lo:hi].sum(1)
    return x / (1.0 + alpha / n * total) ** beta


def caffe_forward(layers: list[CaffeLayer], data: torch.Tensor) -> torch.Tensor:
    """Run the net on ``data`` (N x 3 x H x W, BGR minus mean) as Caffe would; the last top."""
    blobs = {"data": data}
    top = "data"
    for layer in layers:
        x = blobs[layer.bottoms[0]]
        p = [torch.from_numpy(np.asarray(b, np.float32)) for b in layer.blobs]
        if layer.type == "Convolution":
            c = layer.conv
            y = F.conv2d(x, p[0], p[1] if c.bias_term else None, stride=c.stride, padding=c.pad,
                         groups=c.group)
        elif layer.type == "Deconvolution":
            c = layer.conv
            y = F.conv_transpose2d(x, p[0], None, stride=c.stride, padding=c.pad, groups=c.group)
        elif layer.type == "Pooling":
            y = _caffe_max_pool(x, layer.pool.kernel[0], layer.pool.stride[0])
        elif layer.type == "ReLU":
            y = torch.relu(x)
        elif layer.type == "LRN":
            y = _caffe_lrn(x)
        elif layer.type == "Dropout":
            y = x
        elif layer.type == "Crop":
            ref, o = blobs[layer.bottoms[1]], layer.crop.offsets[0]
            y = x[:, :, o:o + ref.shape[2], o:o + ref.shape[3]]
        elif layer.type == "Scale":
            y = x * p[0].reshape(1, -1, 1, 1)
        elif layer.type == "Eltwise":
            y = x + blobs[layer.bottoms[1]]
        else:
            raise AssertionError(f"no Caffe semantics here for {layer.type}")
        top = layer.tops[0]
        blobs[top] = y
    return blobs[top]


def state_dict_of(layers: list[CaffeLayer]) -> dict[str, torch.Tensor]:
    """The net's weights as pytorch-fcn stores them (``<layer>.weight`` / ``<layer>.bias``);
    Scale layers are constants in pytorch-fcn's code, not weights."""
    out = {}
    for layer in layers:
        if layer.type == "Scale" or not layer.blobs:
            continue
        for leaf, blob in zip(("weight", "bias"), layer.blobs):
            out[f"{layer.name}.{leaf}"] = torch.from_numpy(np.array(blob))
    return out


def to_prototxt(layers: list[CaffeLayer], *, name: str = "net") -> str:
    """A val.prototxt in the reference's style: Python data layer, every layer, the loss."""
    out = [f'name: "{name}"',
           'layer {\n  name: "data"\n  type: "Python"\n  top: "data"\n  top: "label"\n'
           '  python_param {\n    module: "voc_layers"\n    layer: "VOCSegDataLayer"\n'
           '    param_str: "{\\\'seed\\\': 1337, \\\'split\\\': \\\'seg11valid\\\'}"\n  }\n}']
    for layer in layers:
        lines = [f'  name: "{layer.name}"', f'  type: "{layer.type}"']
        lines += [f'  bottom: "{b}"' for b in layer.bottoms]
        lines += [f'  top: "{t}"' for t in layer.tops]
        if layer.type == "Deconvolution":
            lines.append("  param {\n    lr_mult: 0\n  }")
        elif layer.type == "Convolution":
            lines.append("  param {\n    lr_mult: 1\n    decay_mult: 1\n  }\n"
                         "  param {\n    lr_mult: 2\n    decay_mult: 0\n  }")
        if layer.conv is not None:
            c = layer.conv
            body = [f"num_output: {c.num_output}"]
            if not c.bias_term:
                body.append("bias_term: false")
            body += [f"pad: {c.pad[0]}", f"kernel_size: {c.kernel[0]}"]
            if c.group != 1:
                body.append(f"group: {c.group}")
            body.append(f"stride: {c.stride[0]}")
            lines.append("  convolution_param {\n" + "".join(f"    {x}\n" for x in body) + "  }")
        if layer.pool is not None:
            lines.append(f"  pooling_param {{\n    pool: MAX\n    kernel_size: "
                         f"{layer.pool.kernel[0]}\n    stride: {layer.pool.stride[0]}\n  }}")
        if layer.crop is not None:
            lines.append(f"  crop_param {{\n    axis: {layer.crop.axis}\n    offset: "
                         f"{layer.crop.offsets[0]}\n  }}")
        if layer.scale_value is not None:
            lines.append(f"  param {{\n    lr_mult: 0\n  }}\n  scale_param {{\n    filler {{\n"
                         f"      type: \"constant\"\n      value: {layer.scale_value}\n"
                         f"    }}\n  }}")
        if layer.type == "LRN":
            lines.append("  lrn_param {\n    local_size: 5\n    alpha: 0.0001\n    beta: 0.75\n  }")
        if layer.type == "Dropout":
            lines.append("  dropout_param {\n    dropout_ratio: 0.5\n  }")
        if layer.type == "Eltwise":
            lines.append("  eltwise_param {\n    operation: SUM\n  }")
        out.append("layer {\n" + "\n".join(lines) + "\n}")
    out.append('layer {\n  name: "loss"\n  type: "SoftmaxWithLoss"\n  bottom: "score"\n'
               '  bottom: "label"\n  top: "loss"\n  loss_param {\n    ignore_label: 255\n'
               '    normalize: false\n  }\n}')
    return "\n".join(out) + "\n"
