"""Numbers about a model computed from the model itself: parameters, depth, MACs, receptive field.

The benchmark reports these next to the paper's Table 1, so nothing here is typed in: shapes come
from running the model on PyTorch's ``meta`` device (no memory, no arithmetic), the receptive
field from backpropagating through a linearised copy.

- ``count_parameter_layers`` reproduces Table 1's "conv layers" (AlexNet 8, VGG16 16, GoogLeNet
  22) as the *longest chain* of parameterised layers (conv or linear; upsampling deconvolutions
  excluded) from the input to the output. Counting every conv module instead gives 58 for
  GoogLeNet (an inception module holds 6 convs but only 2 in series), and 18 for FCN-8s;
  the chain rule is GoogLeNet's own "22 layers deep".
- ``receptive_field`` backpropagates one unit of the score map through a copy with positive
  weights, average pools in place of max pools and no ReLU/LRN, and measures the support.
"""
from __future__ import annotations

import copy
import functools
import itertools
import json
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from fcn_deploy.errors import FCNError
from fcn_deploy.models.registry import create_model, list_models
from fcn_deploy.tiling import TileGeometry

_MAC_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
              nn.ConvTranspose3d, nn.Linear)
_CHAIN_FUNCS = {"conv1d", "conv2d", "conv3d", "linear"}


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameter elements (frozen upsampling weights included unless trainable_only)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _check_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(input_shape)
    if len(shape) != 4 or not all(isinstance(d, int) and d >= 1 for d in shape):
        raise FCNError(f"input_shape must be 4 positive integers (N, C, H, W), got {input_shape!r}")
    return shape


def _default_shape(model: nn.Module) -> tuple[int, int, int, int]:
    size = getattr(model, "input_size", 64)
    return (1, 3, size, size)


def _run_on_meta(model: nn.Module, input_shape: Sequence[int]) -> torch.Tensor:
    """Run ``model`` on a meta input with meta stand-ins for its tensors (hooks still fire)."""
    from torch.func import functional_call

    tensors = {name: torch.empty_like(t, device="meta") for name, t in
               itertools.chain(model.named_parameters(remove_duplicate=False),
                               model.named_buffers(remove_duplicate=False))}
    x = torch.empty(_check_shape(input_shape), device="meta")
    with torch.no_grad():
        return functional_call(model, tensors, (x,), tie_weights=False, strict=False)


def _module_macs(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    kernel = math.prod(module.kernel_size)
    if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        # every input element is multiplied by a (out/groups) x kernel slice of the weights
        return inputs[0].numel() * (module.out_channels // module.groups) * kernel
    return output.numel() * (module.in_channels // module.groups) * kernel


def count_macs(model: nn.Module, input_shape: Sequence[int], *, by_layer: bool = False):
    """Multiply-accumulates of one forward pass at ``input_shape`` (N, C, H, W).

    Counts convolutions, transposed convolutions and linear layers (pools, ReLU, LRN and the
    additions are not MACs). Computed from shapes on the meta device, so width-1 VGG16 at
    500x500 costs nothing. ``by_layer=True`` returns an ordered {module name: MACs} instead.
    """
    table: OrderedDict[str, int] = OrderedDict()
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, _MAC_TYPES):
            def hook(mod, inputs, output, name=name):
                table[name] = table.get(name, 0) + _module_macs(mod, inputs, output)
            handles.append(module.register_forward_hook(hook))
    try:
        _run_on_meta(model, input_shape)
    finally:
        for h in handles:
            h.remove()
    return dict(table) if by_layer else sum(table.values())


def count_parameter_layers(model: nn.Module, input_shape: Sequence[int] | None = None) -> int:
    """Longest chain of conv/linear layers from input to output (Table 1's "conv layers").

    Tracks, for every tensor computed during a meta-device forward, the number of conv/linear
    ops on the longest path that produced it. Transposed convolutions (upsampling) don't count.
    """
    from torch.overrides import TorchFunctionMode
    from torch.utils._pytree import tree_flatten

    depth: dict[int, int] = {}
    keep: list[torch.Tensor] = []  # keeps ids unique while the forward runs

    class DepthMode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            leaves, _ = tree_flatten((args, kwargs))
            d = max((depth.get(id(t), 0) for t in leaves if isinstance(t, torch.Tensor)),
                    default=0)
            if getattr(func, "__name__", "") in _CHAIN_FUNCS:
                d += 1
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    depth[id(t)] = max(d, depth.get(id(t), 0))
                    keep.append(t)
            return out

    with DepthMode():
        out = _run_on_meta(model, input_shape or _default_shape(model))
    return max(depth.get(id(t), 0) for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor))


# -- receptive field -------------------------------------------------------------------------

@dataclass(frozen=True)
class ScoreGeometry:
    """Where a score map's units look in the input image.

    ``rf``: receptive field (pixels, one side); ``stride``: input pixels between neighbouring
    units; ``center0``: image coordinate (pixel index, may be negative or half-integer) of the
    centre of unit 0's receptive field. Unit y is centred on ``center0 + stride * y``.
    """

    rf: int
    stride: int
    center0: float


#: float32 suffices: the gradient is a sum of positive terms, the smallest at the edge of the
#: support is about 1e-12 for these nets, far above float32's underflow.
_PROBE_DTYPE = torch.float32


class _Stop(Exception):
    def __init__(self, output: torch.Tensor) -> None:
        super().__init__("stop")
        self.output = output


def _linearised_copy(model: nn.Module) -> nn.Module:
    """A copy whose output is a positive linear function of the input with the same
    spatial support: max pools become average pools, ReLU/LRN/dropout vanish, weights 1/fan_in."""
    probe = None
    arch = getattr(model, "arch", None)
    if arch:
        if arch in list_models() and hasattr(model, "arch_kwargs"):
            # the geometry does not depend on the width: rebuild thin to stay fast
            kwargs = dict(model.arch_kwargs)
            kwargs["width"] = min(float(kwargs.get("width", 1.0)), 1 / 64)
            probe = create_model(arch, **kwargs)
    if probe is None:
        probe = copy.deepcopy(model)
        if any(t.is_meta for t in itertools.chain(probe.parameters(), probe.buffers())):
            probe = probe.to_empty(device="cpu")  # every weight is overwritten below

    def replace(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if isinstance(child, nn.MaxPool2d):
                new = nn.AvgPool2d(child.kernel_size, child.stride, child.padding,
                                   ceil_mode=child.ceil_mode)
            elif isinstance(child, (nn.ReLU, nn.LocalResponseNorm, nn.Dropout, nn.Dropout2d)):
                new = nn.Identity()
            else:
                replace(child)
                continue
            setattr(parent, name, new)

    replace(probe)
    with torch.no_grad():
        for module in probe.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear, nn.ConvTranspose2d)):
                fan_in = module.weight[0].numel()
                module.weight.fill_(1.0 / fan_in)
                if module.bias is not None:
                    module.bias.zero_()
    return probe.to(_PROBE_DTYPE).eval()


def _probe_inputs(probe: nn.Module, shape: tuple[int, ...]) -> tuple[torch.Tensor, dict]:
    """(zeros of ``shape`` (N, H, W) for the first input, requiring grad; zeros for the others).

    A multi-input net's other inputs take the same geometry as its first (one trunk, or
    streams of the same trunk), so the support is measured through the first input alone."""
    channels = dict(getattr(probe, "input_channels", None) or {"image": 3})
    first, *others = channels
    n, *size = shape
    x = torch.zeros((n, channels[first], *size), dtype=_PROBE_DTYPE, requires_grad=True)
    return x, {name: torch.zeros((n, channels[name], *size), dtype=_PROBE_DTYPE)
               for name in others}


def _first_scores(out) -> torch.Tensor:
    """A model's scores, or a multi-head net's first head's (every head has the trunk's
    geometry)."""
    return next(iter(out.values())) if isinstance(out, dict) else out


def coarse_score_layer(model: nn.Module) -> str:
    """The layer whose output is the coarse score map: ``score_fr``, or the first head's /
    stream's (``score_fr_sem``, ``color.score_fr``)."""
    names = [name for name, _ in model.named_modules()]
    if "score_fr" in names:
        return "score_fr"
    return next((n for n in names if n.split(".")[-1].startswith("score_fr")), "score_fr")


def _support(probe: nn.Module, layer: nn.Module, shape: tuple[int, int],
             axis: int) -> tuple[list[tuple[int, int]], int, int]:
    """Input-pixel support along ``axis`` (2 = H, 3 = W) of two neighbouring units (``mid`` and
    ``mid + 1``) in the middle of ``layer``'s output (the other axis taken in its middle).
    Returns ([(first, last), (first, last)], mid, map size along ``axis``)."""
    x, rest = _probe_inputs(probe, (1,) + shape)

    def stop(module, inputs, output):
        raise _Stop(output)

    handle = layer.register_forward_hook(stop)
    try:
        probe(x, **rest)
        raise RuntimeError("the probed layer did not run")
    except _Stop as s:
        out = s.output
    finally:
        handle.remove()
    n = out.shape[axis]
    mid = max(n // 2 - 1, 0)
    other = out.shape[5 - axis] // 2
    spans = []
    for u in (mid, min(mid + 1, n - 1)):
        index = (0, slice(None), u, other) if axis == 2 else (0, slice(None), other, u)
        (grad,) = torch.autograd.grad(out[index].sum(), x, retain_graph=True)
        profile = grad.abs().sum(dim=(0, 1, 5 - axis))
        nz = torch.nonzero(profile > 0).flatten()
        spans.append((int(nz[0]), int(nz[-1])) if len(nz) else (-1, -1))
    return spans, mid, n


def score_geometry(model: nn.Module, *, layer: str = "score_fr", axes: Sequence[int] = (2,),
                   max_size: int = 8192) -> ScoreGeometry:
    """Measure receptive field, stride and alignment of ``layer``'s output (default score_fr).

    The input is a tall strip (size x 1 px, then 1 px x size; a square for nets without padding
    that cannot take 1 px) grown until the support of two neighbouring units in the middle of the
    map lies inside the image. Registered FCNs are rebuilt at width 1/64 first (the geometry does
    not depend on the width); other models are copied as they are, so pass a thin one.
    ``axes``: 2 measures along H (enough for square kernels, as in every net here), (2, 3) along
    both; if they differ the larger values are reported.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the probe's convolutions are tiny: threads only add overhead
    try:
        return _score_geometry(model, layer, axes, max_size)
    finally:
        torch.set_num_threads(threads)


def _score_geometry(model: nn.Module, layer: str, axes: Sequence[int],
                    max_size: int) -> ScoreGeometry:
    probe = _linearised_copy(model)
    try:
        target = probe.get_submodule(layer)
    except AttributeError:
        raise FCNError(f"model has no layer {layer!r} to measure the receptive field at") from None
    results = []
    for axis in axes:
        size, thin = 512, True
        while True:
            other = 1 if thin else size
            shape = (size, other) if axis == 2 else (other, size)
            try:
                ((a0, a1), (b0, b1)), mid, n = _support(probe, target, shape, axis)
            except RuntimeError:
                if not thin:
                    raise
                thin = False  # the net needs a minimum size (no padding): use a square
                continue
            if n >= 2 and a0 > 0 and b1 < size - 1:
                results.append(ScoreGeometry(rf=a1 - a0 + 1, stride=b0 - a0,
                                             center0=(a0 + a1) / 2 - (b0 - a0) * mid))
                break
            size *= 2
            if size > max_size:
                raise FCNError(f"receptive field of {layer!r} did not fit in a {max_size} px input")
    rf = max(r.rf for r in results)
    stride = max(r.stride for r in results)
    return ScoreGeometry(rf=rf, stride=stride, center0=results[0].center0)


def receptive_field(model: nn.Module, *, layer: str = "score_fr",
                    axes: Sequence[int] = (2,)) -> tuple[int, int]:
    """(receptive field, max stride) of the coarse score map, measured on the model."""
    g = score_geometry(model, layer=layer, axes=axes)
    return g.rf, g.stride


def _output_context(model: nn.Module, max_size: int) -> TileGeometry:
    probe = _linearised_copy(model)
    stride = score_geometry(model, layer=coarse_score_layer(model)).stride
    size = 512
    while True:
        # strip 0 backpropagates the first pixel of a stride cell, strip 1 the cell's last one
        x, rest = _probe_inputs(probe, (2, size, 1))
        out = _first_scores(probe(x, **rest))
        first_px = size // 2 // stride * stride
        last_px = first_px + stride - 1
        (grad,) = torch.autograd.grad(out[0, :, first_px, 0].sum() + out[1, :, last_px, 0].sum(),
                                      x)
        profile = grad.abs().sum(dim=(1, 3)) > 0
        lo = int(torch.nonzero(profile[0]).flatten()[0])
        hi = int(torch.nonzero(profile[1]).flatten()[-1])
        if lo > 0 and hi < size - 1:
            return TileGeometry(stride=stride, context_before=first_px - lo,
                                context_after=hi - last_px)
        size *= 2
        if size > max_size:
            raise FCNError(f"the output's context did not fit in a {max_size} px input")


def tile_geometry(model: nn.Module, *, max_size: int = 8192) -> TileGeometry:
    """Stride and the input context before / after a stride cell of the output, measured.

    A stride cell is the ``stride`` output pixels from a multiple of the stride (image
    coordinates). Every layer here (conv, pool, deconvolution, crop, sum) reads a window whose
    start and end never decrease with the output index, so the cell's first pixel sees furthest
    back and its last pixel furthest ahead. The linearised probe (see :func:`score_geometry`)
    backpropagates those two pixels; the support of the gradient is the input each sees, conv1's
    zero padding included. What fcn_deploy.tiling needs to cut exact tiles; export writes it into
    the artifact's metadata. Registered FCNs are measured at width 1/64 (cached per architecture).
    """
    arch = getattr(model, "arch", None)
    kwargs = getattr(model, "arch_kwargs", None)
    if arch and kwargs is not None:
        from fcn_deploy.models.registry import list_models

        if arch in list_models():
            key = json.dumps({k: v for k, v in kwargs.items()
                              if k not in ("width", "num_classes")}, sort_keys=True)
            return _cached_tile_geometry(arch, key, max_size)
    return _with_one_thread(lambda: _output_context(model, max_size))


def tile_geometry_of_arch(arch: str, arch_kwargs: dict | None = None) -> TileGeometry:
    """:func:`tile_geometry` of a registered architecture by name (old artifacts' fallback)."""
    from fcn_deploy.models.registry import list_models

    if arch not in list_models():
        raise FCNError(f"architecture {arch!r} is not registered here, so its tiling geometry "
                       f"is unknown; re-export the model with this version of fcn-export")
    kwargs = {k: v for k, v in (arch_kwargs or {}).items() if k not in ("width", "num_classes")}
    return _cached_tile_geometry(arch, json.dumps(kwargs, sort_keys=True), 8192)


@functools.lru_cache(maxsize=None)
def _cached_tile_geometry(arch: str, kwargs_json: str, max_size: int) -> TileGeometry:
    from fcn_deploy.models.registry import create_model

    kwargs = json.loads(kwargs_json)
    kwargs["width"] = 1 / 64
    model = create_model(arch, **kwargs)
    return _with_one_thread(lambda: _output_context(model, max_size))


def _with_one_thread(fn):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the probe's convolutions are tiny: threads only add overhead
    try:
        return fn()
    finally:
        torch.set_num_threads(threads)


def upsampled_geometry(center0: float, spacing: float, *, kernel: int,
                       stride: int) -> tuple[float, float]:
    """(center0, spacing) in image pixels of a ``ConvTranspose(kernel, stride)`` output.

    The deconvolution puts input unit y's kernel centre at output index ``stride*y + (k-1)/2``,
    so output index u sits at ``center0 + spacing/stride * (u - (k-1)/2)``.
    """
    new_spacing = spacing / stride
    return center0 - new_spacing * (kernel - 1) / 2, new_spacing


def crop_offset(cropped_center0: float, ref_center0: float, spacing: float) -> float:
    """Offset o such that unit u + o of the cropped map sits on unit u of the reference.

    Both maps must have the same ``spacing`` (1 for the image, whose unit 0 is at 0.0). A
    non-integer result means no crop can align the two maps.
    """
    return (ref_center0 - cropped_center0) / spacing


def model_summary(name: str, *, num_classes: int = 21, input_size: int = 500) -> dict:
    """Table 1-style figures of a registered FCN at width 1, computed (meta device + probe).

    Keys: arch, parameters (all), trainable_parameters, conv_layers, gmacs (at input_size^2),
    receptive_field, max_stride.
    """
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes)
    rf, stride = receptive_field(model)
    return {
        "arch": name,
        "parameters": count_parameters(model),
        "trainable_parameters": count_parameters(model, trainable_only=True),
        "conv_layers": count_parameter_layers(model),
        "gmacs": count_macs(model, (1, 3, input_size, input_size)) / 1e9,
        "receptive_field": rf,
        "max_stride": stride,
    }


def summary_table(archs: Sequence[str] | None = None) -> str:
    """:func:`model_summary` of each registered FCN (default: all) as a Markdown table."""
    lines = ["| arch | parameters | trainable | conv layers | GMAC @500x500 | RF | max stride |",
             "|---|---|---|---|---|---|---|"]
    # default: one input, one head (the multi nets: docs/models.md)
    for arch in archs if archs is not None else list_models(multi=False):
        s = model_summary(arch)
        lines.append(f"| {arch} | {s['parameters']:,} | {s['trainable_parameters']:,} | "
                     f"{s['conv_layers']} | {s['gmacs']:.1f} | {s['receptive_field']} | "
                     f"{s['max_stride']} |")
    return "\n".join(lines)
