"""Net surgery: ImageNet weights into an FCN, staged init (32s -> 16s -> 8s), new class counts.

Every function copies by key name and checks shapes first, so a wrong file fails with an FCNError
naming the key, its shape and the expected shape, and the model is left unchanged.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn

from fcn_deploy.errors import FCNError
from fcn_deploy.models.classifiers import AlexNetClassifier, VGG16Classifier
from fcn_deploy.models.layers import FCNBase, color_d_filters

StateSource = Any  # nn.Module | Mapping[str, Tensor] | str | os.PathLike


@dataclass
class SurgeryReport:
    """What a surgery did, by state_dict key (for logs and tests)."""

    copied: list[str] = field(default_factory=list)
    initialized: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state_dict from a file: a bare state_dict, a dict with ``state_dict``, or a checkpoint."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise FCNError(f"weights file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FCNError(f"{path} is not a readable PyTorch weights file "
                       f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    if isinstance(obj, Mapping):
        # fcn-deploy checkpoints and most trainers use "state_dict"; pytorch-fcn "model_state_dict"
        for wrapper in ("state_dict", "model_state_dict"):
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise FCNError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    return dict(obj)


def _as_state_dict(source: StateSource) -> dict[str, torch.Tensor]:
    if isinstance(source, nn.Module):
        return source.state_dict()
    if isinstance(source, Mapping):
        bad = [k for k, v in source.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise FCNError(f"state_dict entries must be tensors; not: {', '.join(map(str, bad[:5]))}")
        return dict(source)
    if isinstance(source, (str, os.PathLike)):
        return load_state_dict_file(source)
    raise FCNError(f"expected a model, a state_dict or a file path, got {type(source).__name__}")


def _classifier_for(fcn_model: nn.Module):
    arch = getattr(fcn_model, "arch", "")
    width = getattr(fcn_model, "width", 1.0)
    # The template only supplies key names and shapes: build it on the meta device (no memory,
    # no random init of a 138M-parameter classifier).
    if arch.endswith("_vgg16") or getattr(fcn_model, "backbone", "") == "vgg16":
        with torch.device("meta"):
            template = VGG16Classifier(width=width)
        return template, "torchvision VGG16 (features.N, classifier.0/3/6)"
    if arch == "fcn_alexnet":
        with torch.device("meta"):
            template = AlexNetClassifier(width=width)
        return template, "CaffeNet in AlexNetClassifier's layout (features.N, classifier.1/4/6)"
    raise FCNError(f"no ImageNet weight layout for {arch or type(fcn_model).__name__!r}: "
                   f"load_imagenet_weights supports the *_vgg16 FCNs (torchvision VGG16 "
                   f"state_dict) and fcn_alexnet (CaffeNet state_dict)")


def load_imagenet_weights(fcn_model: nn.Module, state_dict_or_path: StateSource) -> SurgeryReport:
    """Load an ImageNet classifier's weights into an FCN's backbone and fc6/fc7, by key name.

    VGG16 FCNs take torchvision's ``vgg16`` state_dict; FCN-AlexNet takes CaffeNet weights in
    :class:`~fcn_deploy.models.classifiers.AlexNetClassifier`'s layout (torchvision's alexnet is a
    different network and is refused with the offending key's shape). fc6/fc7 weights are
    reshaped from (out, C*k*k) to (out, C, k, k); fc8 (the 1000-class layer) is dropped; score
    layers stay zero and the upsampling stays bilinear. A net with several backbone copies (the
    NYUD late-fusion streams) gets the weights in each; a first convolution with a fourth input
    channel (RGB-D) gets the colour filters and, on that channel, their mean, as the reference.
    """
    template, layout = _classifier_for(fcn_model)
    source = _as_state_dict(state_dict_or_path)
    expected = template.state_dict()
    key_map = template.fcn_key_map()
    target = fcn_model.state_dict()
    hint = ""
    if isinstance(template, AlexNetClassifier):
        hint = (" (FCN-AlexNet needs CaffeNet weights: 96/256/384/384/256 channels, grouped "
                "conv2/4/5; torchvision's alexnet with 64/192 channels is a different network)")

    missing = [k for k in expected if k not in source]
    if missing:
        raise FCNError(f"ImageNet weights: missing {', '.join(missing[:6])}"
                       f"{' ...' if len(missing) > 6 else ''}; expected a {layout} state_dict"
                       f"{hint}")
    unexpected = [k for k in source if k not in expected]
    if unexpected:
        raise FCNError(f"ImageNet weights: unexpected keys {', '.join(unexpected[:6])}"
                       f"{' ...' if len(unexpected) > 6 else ''}; expected a {layout} state_dict"
                       f"{hint}")
    for key, ref in expected.items():
        if _shape(source[key]) != _shape(ref):
            raise FCNError(f"ImageNet weights: {key} has shape {_shape(source[key])}, expected "
                           f"{_shape(ref)} for {fcn_model.arch} at width {template.width:g}{hint}")

    report = SurgeryReport()
    for prefix in getattr(fcn_model, "backbone_prefixes", ("",)):
        updates, part = remap_state_dict(source, {k: prefix + v for k, v in key_map.items()},
                                         target, convert=_imagenet_convert)
        _apply(fcn_model, updates)
        report.copied += part.copied
        report.ignored = part.ignored
    return report


def _imagenet_convert(src_key: str, dst_key: str, tensor: torch.Tensor,
                      target: torch.Tensor) -> torch.Tensor:
    """fc layers reshaped to convolutions; RGB filters widened for an RGB-D first conv."""
    if tensor.dim() == 4 and target.dim() == 4 and tensor.shape[1] == 3 and target.shape[1] == 4:
        return color_d_filters(tensor)
    return tensor.reshape(target.shape)


Convert = Callable[[str, str, torch.Tensor, torch.Tensor], torch.Tensor]


def _reshape(src_key: str, dst_key: str, tensor: torch.Tensor,
             target: torch.Tensor) -> torch.Tensor:
    return tensor.reshape(target.shape)


def remap_state_dict(source: Mapping[str, torch.Tensor], key_map: Mapping[str, str],
                     target: Mapping[str, torch.Tensor], *, convert: Convert | None = None
                     ) -> tuple[dict[str, torch.Tensor], SurgeryReport]:
    """Rename ``source`` keys ``<prefix>.<leaf>`` to ``<key_map[prefix]>.<leaf>`` of ``target``.

    ``convert(source_key, target_key, tensor, target_tensor)`` turns each tensor into the target's
    shape (default: a reshape, for callers that checked shapes already) or raises FCNError.
    Returns the tensors by target key and a report: ``copied`` target keys, ``ignored`` source
    keys (prefix not in the map, or no such target key). Nothing is written into a model.
    """
    convert = convert or _reshape
    report = SurgeryReport()
    updates: dict[str, torch.Tensor] = {}
    for key, tensor in source.items():
        prefix, _, leaf = key.rpartition(".")
        dst = f"{key_map[prefix]}.{leaf}" if prefix in key_map else None
        if dst is None or dst not in target:
            report.ignored.append(key)
            continue
        updates[dst] = convert(key, dst, tensor, target[dst])
        report.copied.append(dst)
    return updates, report


def _apply(model: nn.Module, updates: Mapping[str, torch.Tensor]) -> None:
    state = model.state_dict()
    with torch.no_grad():
        for key, value in updates.items():
            state[key].copy_(value.to(device=state[key].device, dtype=state[key].dtype))


def _head_keys(model: nn.Module) -> tuple[set[str], set[str]]:
    """State-dict keys of the score layers and of the upsampling layers."""
    score = {k for k in model.state_dict() if k.rpartition(".")[0] in model.score_layers}
    upsample = {k for k in model.state_dict() if k.rpartition(".")[0] in model.upsample_layers}
    return score, upsample


def _transfer(model: nn.Module, source: StateSource, *, copy_head: bool, allow_new_head: bool,
              what: str) -> SurgeryReport:
    if not isinstance(model, FCNBase):
        raise FCNError(f"{what} takes an FCN built by create_model, got {type(model).__name__}")
    src = _as_state_dict(source)
    target = model.state_dict()
    score_keys, upsample_keys = _head_keys(model)
    head = score_keys | upsample_keys
    backbone = [k for k in target if k not in head]
    missing = [k for k in backbone if k not in src]
    if missing:
        raise FCNError(f"{what}: the source lacks {', '.join(missing[:6])}"
                       f"{' ...' if len(missing) > 6 else ''} that {model.arch} needs; "
                       f"it is not a model with the same backbone")
    wanted = backbone + ([k for k in target if k in head and k in src] if copy_head else [])
    for key in wanted:
        if _shape(src[key]) != _shape(target[key]):
            advice = (" (different number of classes: use load_pretrained(..., "
                      "reset_classifier=True))" if key in head else "")
            raise FCNError(f"{what}: {key} has shape {_shape(src[key])} in the source, "
                           f"{model.arch} (width {model.width:g}, {model.num_classes} classes) "
                           f"expects {_shape(target[key])}{advice}")
    new_head = [k for k in head if k not in wanted]
    if not allow_new_head and copy_head and new_head:
        raise FCNError(f"{what}: the source lacks {', '.join(sorted(new_head))}")
    _apply(model, {k: src[k] for k in wanted})
    new_layers = {k.rpartition(".")[0] for k in new_head}
    for name in model.score_layers:
        if name in new_layers:
            _zero(model.get_submodule(name))
    if new_layers & set(model.upsample_layers):
        model.reset_upsampling()  # only rewrites weights; copied ones are bilinear too
        with torch.no_grad():
            for k in wanted:
                if k in upsample_keys:
                    target[k].copy_(src[k])
    used = set(wanted)
    return SurgeryReport(copied=list(wanted), initialized=sorted(new_head),
                         ignored=sorted(k for k in src if k not in used))


def _zero(layer: nn.Module) -> None:
    with torch.no_grad():
        for p in layer.parameters():
            p.zero_()


def init_from_coarser(model: nn.Module, source: StateSource) -> SurgeryReport:
    """Staged training init: FCN-16s from FCN-32s, FCN-8s from FCN-16s (the reference's surgery).

    Every layer the source has under the same name is copied (backbone, fc6/fc7, score_fr,
    score_pool4, upscore2, ...); the new score layers start at zero and the new upsampling
    layers at bilinear. ``source`` is a model, a state_dict, or a checkpoint/state_dict file.
    """
    return _transfer(model, source, copy_head=True, allow_new_head=True, what="init_from_coarser")


def load_pretrained(model: nn.Module, source: StateSource, *,
                    reset_classifier: bool = True) -> SurgeryReport:
    """Copy a trained FCN of the same architecture into ``model``.

    ``reset_classifier=True`` (fine-tuning on another label set): backbone and fc6/fc7 copied,
    score layers re-zeroed, upsampling re-set to bilinear, so the class count may differ.
    ``reset_classifier=False``: everything copied; shapes must match exactly.
    """
    if reset_classifier:
        return _transfer(model, source, copy_head=False, allow_new_head=True,
                         what="load_pretrained")
    return _transfer(model, source, copy_head=True, allow_new_head=False, what="load_pretrained")


def transplant_streams(model: nn.Module, sources: Mapping[str, StateSource]) -> SurgeryReport:
    """Fill the streams of a late-fusion net from trained single-stream nets (the reference's
    ``surgery.transplant(net, color_net, suffix='color')`` in nyud-fcn32s-color-hha/solve.py).

    ``sources`` maps a stream (``color``, ``hha``) to a trained single-stream FCN of the same
    width and class count (``nyud_fcn32s_color`` / ``nyud_fcn32s_hha``: a model, a state_dict
    or a checkpoint file). Each stream's layers are copied by name (``color.conv1_1.weight`` <-
    ``conv1_1.weight``); a stream's score layer the source lacks (FCN-16s' ``score_pool4``) starts
    at zero; the fused upsampling is not a stream's and keeps its bilinear weights. Streams not
    in ``sources`` keep their weights. FCNError on an unknown stream or a shape that differs.
    """
    streams = [name for name, child in model.named_children()
               if name in {p.rstrip(".") for p in getattr(model, "backbone_prefixes", ())}]
    if not streams or streams == [""]:
        raise FCNError(f"{getattr(model, 'arch', type(model).__name__)} has no streams to "
                       "transplant into; only the late-fusion nets (nyud_*_color_hha) have")
    unknown = sorted(set(sources) - set(streams))
    if unknown:
        raise FCNError(f"no stream {', '.join(unknown)} in {model.arch}; its streams are "
                       f"{', '.join(streams)}")
    score = set(getattr(model, "score_layers", ()))
    copied, initialized, ignored = [], [], []
    updates: dict[str, torch.Tensor] = {}
    for stream, source in sources.items():
        src = _as_state_dict(source)
        target = model.get_submodule(stream).state_dict()
        used = set()
        for key, tensor in target.items():
            full = f"{stream}.{key}"
            if key not in src:
                if full.rpartition(".")[0] in score:
                    initialized.append(full)
                    continue
                raise FCNError(f"stream {stream}: the source lacks {key}, which {model.arch} "
                               "needs; transplant a single-stream net of the same family "
                               "(nyud_fcn32s_color / nyud_fcn32s_hha)")
            if _shape(src[key]) != _shape(tensor):
                raise FCNError(f"stream {stream}: {key} has shape {_shape(src[key])} in the "
                               f"source, {model.arch} (width {model.width:g}, "
                               f"{model.num_classes} classes) expects {_shape(tensor)}")
            updates[full] = src[key]
            copied.append(full)
            used.add(key)
        ignored += [f"{stream}: {k}" for k in src if k not in used]
    _apply(model, updates)
    for layer in {k.rpartition(".")[0] for k in initialized}:
        _zero(model.get_submodule(layer))
    return SurgeryReport(copied=copied, initialized=sorted(initialized), ignored=sorted(ignored))

