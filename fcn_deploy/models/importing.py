"""Import the paper's published models: Caffe ``.caffemodel``, pytorch-fcn ``.pth`` -> ``model.pt``.

The reference implementation (fcn.berkeleyvision.org) published a caffemodel for every net of the
paper, and pytorch-fcn the VOC ones as PyTorch state_dicts with the same layer names. Our modules
carry Caffe's layer names too, so each architecture's mapping table is
:meth:`~fcn_deploy.models.layers.FCNBase.source_layer_map` (identity for the zoo's nets; a net
with other names declares ``source_layer_renames``). The architecture is the registered model
whose weighted layers are exactly the file's; class count and width come from the blob shapes.

Every import verifies itself: each model parameter is filled from exactly one source blob of the
right shape (Caffe's layouts need no transposition: Convolution (out, in/group, kh, kw) and
Deconvolution (in, out/group, kh, kw) are PyTorch's Conv2d / ConvTranspose2d layouts; legacy 4-D
bias shapes and InnerProduct-shaped fc weights are reshaped), the at-once nets' Scale blobs must
hold the model's fixed factors, source layers with weights left over are an error unless allowed,
the geometry stored in the caffemodel (and in ``--prototxt``) must equal the model's, and one
forward pass must give finite scores of the input's size. Only then is the checkpoint written,
atomically, in the format ``fcn-train`` writes.
"""
from __future__ import annotations

import os
import re
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from fcn_deploy.constants import (NYUD40_CLASSES, PASCAL_CONTEXT_59_CLASSES, SIFTFLOW_CLASSES,
                                   VOC_CLASSES)
from fcn_deploy.errors import FCNError
from fcn_deploy.fileio import check_run_files
from fcn_deploy.meta import ModelMeta
from fcn_deploy.models import caffe
from fcn_deploy.models.checkpoint import FORMAT, load_model, save_checkpoint
from fcn_deploy.models.layers import FCNBase, FixedScale, head_scores
from fcn_deploy.models.registry import check_width, create_model, list_models
from fcn_deploy.models.surgery import load_state_dict_file, remap_state_dict

#: Built-in class lists for ``classes=``; chosen automatically when the class count matches.
CLASS_SETS: dict[str, tuple[str, ...]] = {
    "voc": VOC_CLASSES,
    "pascal-context-59": PASCAL_CONTEXT_59_CLASSES,
    "siftflow-33": SIFTFLOW_CLASSES,
    "nyud-40": NYUD40_CLASSES,
}
#: Side of the square input of the verification forward pass.
DEFAULT_CHECK_SIZE = 32


# -- the source ------------------------------------------------------------------------------

@dataclass
class WeightSource:
    """A weight file read into memory: tensors keyed ``<source layer>.<weight|bias|blobN>``."""

    path: Path
    format: str
    tensors: dict[str, torch.Tensor]
    #: Source layer -> its Caffe type ("" for state_dicts), in file order.
    layer_types: dict[str, str]
    #: Caffe layers with their parameters (no blobs), for the geometry check; [] for state_dicts.
    net: list[caffe.CaffeLayer] = field(default_factory=list)
    #: Whether fixed scales (Caffe Scale layers) are weights in this format (pytorch-fcn: code).
    carries_fixed_scales: bool = True

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in self.tensors.items()}

    def describe(self, key: str) -> str:
        """``conv1_1 blob 0 (Convolution)`` for a caffemodel, the key itself for a state_dict."""
        layer, _, leaf = key.rpartition(".")
        if not self.net:
            return key
        index = {"weight": 0, "bias": 1}.get(leaf, leaf.removeprefix("blob"))
        return f"{layer} blob {index} ({self.layer_types.get(layer, '?')})"


def _caffe_leaf(index: int) -> str:
    return ("weight", "bias")[index] if index < 2 else f"blob{index}"


def read_caffemodel_source(path: Path) -> WeightSource:
    tensors: dict[str, torch.Tensor] = {}
    types: dict[str, str] = {}
    net: list[caffe.CaffeLayer] = []
    legacy = False
    for layer, is_legacy in caffe.iter_caffemodel(path):
        legacy = legacy or is_legacy
        blobs, layer.blobs = layer.blobs, []
        net.append(layer)
        if not blobs:
            continue
        if layer.name in types:
            raise FCNError(f"{path}: two layers named {layer.name!r} hold weights; layer names "
                           f"must be unique")
        types[layer.name] = layer.type
        for i, blob in enumerate(blobs):
            tensors[f"{layer.name}.{_caffe_leaf(i)}"] = torch.from_numpy(blob)
    if not types:
        raise FCNError(f"{path} is not a Caffe .caffemodel: it holds no layer with weights "
                       f"({len(net)} layers found)")
    encoding = "legacy V1 'layers'" if legacy else "'layer'"
    return WeightSource(path=path, format=f"Caffe caffemodel ({encoding} encoding)",
                        tensors=tensors, layer_types=types, net=net)


def read_state_dict_source(path: Path) -> WeightSource:
    state = load_state_dict_file(path)
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    tensors, types = {}, {}
    for key, value in state.items():
        tensors[key] = value.detach().to(torch.float32) if value.is_floating_point() else value
        types.setdefault(key.rpartition(".")[0], "")
    return WeightSource(path=path, format="PyTorch state_dict (pytorch-fcn layout)",
                        tensors=tensors, layer_types=types, carries_fixed_scales=False)


def _is_torch_file(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"  # zip, or a legacy pickle


def _own_checkpoint(path: Path) -> dict[str, Any] | None:
    """The toolkit's checkpoint dict, mapped from the file, when ``path`` is one."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return None
    return obj if isinstance(obj, dict) and obj.get("format") == FORMAT else None


# -- architecture ----------------------------------------------------------------------------

@dataclass
class _Candidate:
    arch: str
    model: FCNBase
    table: dict[str, str]
    weighted: set[str]
    fixed: set[str]

    def needs(self, source: WeightSource) -> set[str]:
        return self.weighted | (self.fixed if source.carries_fixed_scales else set())


def _candidate(arch: str, **kwargs: Any) -> _Candidate:
    with torch.device("meta"):  # names and shapes only: no memory, no random init
        model = create_model(arch, **kwargs)
    if not isinstance(model, FCNBase):
        raise FCNError(f"model {arch!r} has no weight-import table (not an FCNBase)")
    table = model.source_layer_map()
    fixed = {s for s, m in table.items() if isinstance(model.get_submodule(m), FixedScale)}
    return _Candidate(arch, model, table, set(table) - fixed, fixed)


def infer_architecture(source: WeightSource) -> tuple[str, str]:
    """The registered architecture whose weighted layers are the source's; ``(arch, why)``."""
    have = set(source.layer_types)
    candidates = [_candidate(a) for a in list_models()]
    exact = [c for c in candidates if c.needs(source) == have]
    if len(exact) > 1:
        name = source.path.name
        hinted = [c for c in exact if c.model.source_file_hint
                  and re.search(c.model.source_file_hint, name, re.IGNORECASE)]
        chosen = hinted or [c for c in exact if not c.model.source_file_hint]
        if len(chosen) == 1:
            others = ", ".join(c.arch for c in exact if c is not chosen[0])
            why = (f"the file name {name!r}" if hinted else "the layer names")
            return chosen[0].arch, (f"inferred from {why}; {others} has the same layers "
                                    f"(pass --arch to choose it)")
        raise FCNError(f"{source.path}: the layers fit {', '.join(c.arch for c in exact)} "
                       f"alike; pass --arch")
    if exact:
        return exact[0].arch, "inferred from the layer names"
    fits = sorted((c for c in candidates if c.needs(source) <= have),
                  key=lambda c: -len(c.needs(source)))
    if fits:
        extra = sorted(have - fits[0].needs(source))
        return fits[0].arch, (f"inferred from the layer names; the source also has "
                              f"{', '.join(extra)}")
    closest = min(candidates, key=lambda c: len(c.needs(source) ^ have))
    missing = sorted(closest.needs(source) - have)
    unexpected = sorted(have - closest.needs(source))
    raise FCNError(
        f"{source.path}: no model in the zoo has these layers; closest is {closest.arch}, "
        f"which needs {_few(missing)} (absent) and has no {_few(unexpected)}; pass --arch "
        f"(valid: {', '.join(list_models())}) to see every difference")


def _few(names: Sequence[str], limit: int = 6) -> str:
    names = list(names)
    if not names:
        return "nothing"
    return ", ".join(names[:limit]) + (f" ... ({len(names)} in all)" if len(names) > limit else "")


# -- classes ---------------------------------------------------------------------------------

def read_class_file(path: str | os.PathLike) -> list[str]:
    """One class name per line; ``0: background`` / ``0 background`` index prefixes are dropped."""
    path = Path(path)
    if not path.is_file():
        raise FCNError(f"class file {path} does not exist (expected one name per line, or a "
                       f"built-in set: {', '.join(CLASS_SETS)})")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    prefixed = [re.match(r"^(\d+)\s*[:\s]\s*(\S.*)$", line) for line in lines]
    if lines and all(prefixed):
        indices = [int(m.group(1)) for m in prefixed]
        if indices != list(range(indices[0], indices[0] + len(indices))):
            raise FCNError(f"class file {path}: the index prefixes are not consecutive")
        lines = [m.group(2).strip() for m in prefixed]
    if not lines:
        raise FCNError(f"class file {path} holds no class names")
    return lines


def resolve_classes(classes: str | os.PathLike | Sequence[str] | None, num_classes: int
                    ) -> tuple[list[str], str]:
    """Class names for a ``num_classes`` model and where they came from."""
    if classes is None:
        for name, names in CLASS_SETS.items():
            if len(names) == num_classes:
                return list(names), f"built-in {name} (chosen by the class count)"
        return (["background"] + [f"class_{i}" for i in range(1, num_classes)],
                "generic names (pass --classes FILE)")
    if isinstance(classes, (list, tuple)):
        names, origin = [str(c) for c in classes], "given list"
    elif str(classes) in CLASS_SETS:
        names, origin = list(CLASS_SETS[str(classes)]), f"built-in {classes}"
    else:
        names, origin = read_class_file(classes), f"file {classes}"
    if len(names) != num_classes:
        raise FCNError(f"classes: {origin} has {len(names)} names but the model's score layer "
                       f"has {num_classes} outputs")
    return names, origin


# -- mapping ---------------------------------------------------------------------------------

def _strip_ones(shape: tuple[int, ...]) -> tuple[int, ...]:
    i = 0
    while i < len(shape) - 1 and shape[i] == 1:
        i += 1
    return shape[i:]


def _converter(source: WeightSource, model: nn.Module, arch_desc: str):
    """The per-tensor layout conversion: exact, legacy 4-D, InnerProduct, grouped deconvolution."""

    def convert(src_key: str, dst_key: str, tensor: torch.Tensor,
                target: torch.Tensor) -> torch.Tensor:
        have, want = tuple(tensor.shape), tuple(target.shape)
        layer = src_key.rpartition(".")[0]
        ltype = source.layer_types.get(layer, "")
        module = model.get_submodule(dst_key.rpartition(".")[0])
        if have == want:
            return tensor
        if _strip_ones(have) == _strip_ones(want):  # legacy num/channels/height/width
            return tensor.reshape(want)
        flat = _strip_ones(have)
        if (len(flat) == 2 and len(want) == 4 and isinstance(module, nn.Conv2d)
                and flat == (want[0], want[1] * want[2] * want[3])):
            return tensor.reshape(want)  # an InnerProduct fc layer, convolutionalized
        if (isinstance(module, nn.ConvTranspose2d) and dst_key.endswith(".weight")
                and have == (want[0], 1) + want[2:] and want[0] == want[1]):
            full = torch.zeros(want, dtype=tensor.dtype)  # group = channels: a diagonal filter
            idx = torch.arange(want[0])
            full[idx, idx] = tensor[:, 0]
            return full
        kind = f" ({ltype})" if ltype else ""
        raise FCNError(f"layer {layer}{kind}: {src_key.rpartition('.')[2]} has shape {have} in "
                       f"{source.path.name}, {arch_desc} expects {want} for {dst_key}")

    return convert


@dataclass
class MatchedRow:
    parameter: str
    shape: tuple[int, ...]
    source: str
    source_shape: tuple[int, ...]


@dataclass
class ImportReport:
    """What an import read, matched, checked and wrote."""

    source: Path
    source_format: str
    arch: str = ""
    arch_reason: str = ""
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    classes_from: str = ""
    mean: tuple[float, ...] = ()
    matched: list[MatchedRow] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    geometry_checked: list[str] = field(default_factory=list)
    check_shape: tuple[int, ...] = ()
    output: Path | None = None
    seconds: float = 0.0
    #: Set when nothing was imported (the source is already a checkpoint of this toolkit).
    noop: str = ""
    #: The imported model (eval mode), for callers of the library function.
    model: nn.Module | None = field(default=None, repr=False)

    def table(self) -> str:
        rows = [("parameter", "shape", "source")]
        for r in self.matched:
            src = r.source if r.source_shape == r.shape else f"{r.source} {r.source_shape}"
            rows.append((r.parameter, "x".join(map(str, r.shape)) or "-", src))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                         for row in rows)

    def summary(self) -> str:
        if self.noop:
            return self.noop
        lines = [f"source: {self.source} ({self.source_format})",
                 f"architecture: {self.arch} {self.arch_kwargs} ({self.arch_reason})",
                 f"classes: {self.classes_from}",
                 f"mean (BGR): {', '.join(f'{m:g}' for m in self.mean)} (the reference's for "
                 f"{self.arch})", self.table()]
        if self.unused:
            lines.append(f"unused source weights (allowed): {', '.join(self.unused)}")
        for what in self.geometry_checked:
            lines.append(f"geometry: same as {self.arch} in {what}")
        lines.append(f"forward check: 1x3x{self.check_shape[2]}x{self.check_shape[3]} -> "
                     f"{'x'.join(map(str, self.check_shape))} scores, all finite")
        tensors = sum(1 for r in self.matched if r.shape)
        lines.append(f"wrote {self.output} ({tensors} tensors, {self.seconds:.1f} s)" if self.output
                     else f"verified, nothing written ({tensors} tensors, {self.seconds:.1f} s)")
        return "\n".join(lines)


# -- geometry --------------------------------------------------------------------------------

def _hw(value: Any) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (int(value), int(value))


def _fmt(pair: tuple[int, ...]) -> str:
    return str(pair[0]) if len(set(pair)) == 1 else "x".join(map(str, pair))


def geometry_differences(layers: Sequence[caffe.CaffeLayer], model: FCNBase, *, what: str,
                         complete: bool) -> list[str]:
    """How the Caffe layers' geometry differs from ``model``'s (empty: none).

    Compares every convolution / deconvolution (kernel, stride, pad, group, outputs, bias),
    every max pooling under the same name, every crop offset and every fixed scale.
    ``complete=True`` (a full net definition) also reports layers either side lacks.
    """
    table = model.source_layer_map()
    arch = model.arch
    diffs: list[str] = []
    seen: set[str] = set()
    crops = 0
    for layer in layers:
        name = layer.name
        mod_name = table.get(name)
        module = model.get_submodule(mod_name) if mod_name else None
        if layer.type in ("Convolution", "Deconvolution", "InnerProduct"):
            if module is None:
                if complete:
                    diffs.append(f"{name} ({layer.type}) has no counterpart in {arch}")
                continue
            seen.add(name)
            want = nn.ConvTranspose2d if layer.type == "Deconvolution" else nn.Conv2d
            if not isinstance(module, want):
                diffs.append(f"{name} is a {layer.type} in {what}, a {type(module).__name__} "
                             f"in {arch}")
                continue
            c = layer.conv
            if c is None:
                continue
            checks = [("kernel", c.kernel, _hw(module.kernel_size)),
                      ("stride", c.stride, _hw(module.stride)),
                      ("pad", c.pad, _hw(module.padding))]
            for label, theirs, ours in checks:
                if tuple(theirs) != tuple(ours):
                    diffs.append(f"{name}: {label} {_fmt(theirs)} in {what}, {_fmt(ours)} in "
                                 f"{arch}")
            channelwise = (layer.type == "Deconvolution" and module.groups == 1
                           and c.group == c.num_output == module.in_channels == module.out_channels)
            if c.group != module.groups and not channelwise:  # channelwise: imported diagonal
                diffs.append(f"{name}: group {c.group} in {what}, {module.groups} in {arch}")
            if c.num_output != module.out_channels:
                diffs.append(f"{name}: num_output {c.num_output} in {what}, "
                             f"{module.out_channels} in {arch}")
            if c.bias_term != (module.bias is not None):
                diffs.append(f"{name}: bias_term {str(c.bias_term).lower()} in {what}, "
                             f"{'a' if module.bias is not None else 'no'} bias in {arch}")
        elif layer.type == "Scale":
            if module is None or not isinstance(module, FixedScale):
                if complete:
                    diffs.append(f"{name} (Scale) has no counterpart in {arch}")
                continue
            seen.add(name)
            if layer.scale_value is not None and not _close(layer.scale_value, module.factor):
                diffs.append(f"{name}: scale {layer.scale_value:g} in {what}, "
                             f"{module.factor:g} in {arch}")
        elif layer.type == "Pooling" and layer.pool is not None:
            ours = dict(model.named_modules()).get(name)
            if isinstance(ours, nn.MaxPool2d):
                p = layer.pool
                if p.method != "MAX":
                    diffs.append(f"{name}: {p.method} pooling in {what}, max in {arch}")
                for label, theirs, mine in (("kernel", p.kernel, _hw(ours.kernel_size)),
                                            ("stride", p.stride, _hw(ours.stride)),
                                            ("pad", p.pad, _hw(ours.padding))):
                    if tuple(theirs) != tuple(mine):
                        diffs.append(f"{name}: pooling {label} {_fmt(theirs)} in {what}, "
                                     f"{_fmt(mine)} in {arch}")
        elif layer.type == "Crop" and layer.bottoms:
            crops += 1
            cropped = table.get(layer.bottoms[0], layer.bottoms[0])
            expected = model.crop_offsets.get(cropped)
            if expected is None:
                diffs.append(f"{name} crops {layer.bottoms[0]}, which {arch} does not crop")
                continue
            seen.add(f"crop:{cropped}")
            if layer.crop is None or not layer.crop.offsets:
                continue  # Caffe then derives the offset itself; nothing stated to compare
            offsets = set(layer.crop.offsets)
            if layer.crop.axis != 2 or offsets != {expected}:
                diffs.append(f"{name}: crop offset {_fmt(tuple(layer.crop.offsets))} (axis "
                             f"{layer.crop.axis}) in {what}, {expected} (axis 2) in {arch}")
    if complete:
        missing = [s for s in table if s not in seen]
        if missing:
            diffs.append(f"{what} lacks {', '.join(missing)} of {arch}")
        if crops:
            uncropped = [k for k in model.crop_offsets if f"crop:{k}" not in seen]
            diffs += [f"no Crop layer crops {k} ({arch} crops it at {model.crop_offsets[k]})"
                      for k in uncropped]
    return diffs


def _close(a: float, b: float, rel: float = 1e-5) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b))


# -- the import ------------------------------------------------------------------------------

def import_weights(source: str | os.PathLike, output: str | os.PathLike | None, *,
                   arch: str | None = None,
                   classes: str | os.PathLike | Sequence[str] | None = None,
                   prototxt: str | os.PathLike | None = None, allow_unused: bool = False,
                   check_size: int | None = None) -> ImportReport:
    """Import a published model's weights and write them as an fcn-deploy checkpoint.

    ``source``: a Caffe ``.caffemodel``, a pytorch-fcn ``.pth`` state_dict, or a checkpoint of
    this toolkit (then nothing is done; the report says so). ``arch`` overrides the architecture
    inferred from the layer names; ``classes`` is ``"voc"``, ``"pascal-context-59"``, a file
    with one name per line, or a list; ``prototxt`` a net definition whose geometry must match.
    ``output=None`` verifies without writing. FCNError (nothing written) on any mismatch.
    """
    start = time.perf_counter()
    src = Path(source)
    if not src.is_file():
        raise FCNError(f"weights file {src} does not exist")
    out = Path(output) if output is not None else None
    if out is not None:
        class_file = classes if isinstance(classes, (str, os.PathLike)) \
            and str(classes) not in CLASS_SETS else None
        check_run_files("fcn-import", inputs=[("weights file", src), ("--prototxt", prototxt),
                                              ("--classes file", class_file)],
                        outputs=[("checkpoint", out)])
    proto_net = caffe.read_prototxt(prototxt) if prototxt is not None else None
    size = DEFAULT_CHECK_SIZE if check_size is None else int(check_size)
    if size < 1:
        raise FCNError(f"check_size must be >= 1, got {size}")

    if _is_torch_file(src):
        own = _own_checkpoint(src)
        if own is not None:
            model, meta = load_model(src)  # validates it
            if arch is not None and arch != meta.arch:
                raise FCNError(f"{src} is an fcn-deploy checkpoint of {meta.arch}, not {arch}")
            del model
            return ImportReport(source=src, source_format="fcn-deploy checkpoint",
                                arch=meta.arch, arch_kwargs=dict(own["arch_kwargs"]),
                                noop=(f"{src} is already an fcn-deploy checkpoint ({meta.arch}, "
                                      f"{meta.num_classes} classes); nothing to import - use it "
                                      f"directly (fcn-export {src} -o model.onnx)"))
        weights = read_state_dict_source(src)
    else:
        weights = read_caffemodel_source(src)
    report = ImportReport(source=src, source_format=weights.format)

    if arch is None:
        arch, report.arch_reason = infer_architecture(weights)
    else:
        report.arch_reason = "given with --arch"
    reference = _candidate(arch)
    kwargs = reference.model.arch_kwargs_from_weights(weights.shapes())
    if "num_classes" not in kwargs:
        score = reference.model.score_layers[0]
        raise FCNError(f"{src}: cannot tell the number of classes: no weights for the score "
                       f"layer {score} of {arch}")
    if "width" in kwargs:
        check_width(kwargs["width"])
    cand = _candidate(arch, **kwargs)
    model = cand.model
    desc = (f"{arch} ({kwargs['num_classes']} classes"
            f"{'' if kwargs.get('width', 1.0) == 1.0 else ', width %g' % kwargs['width']})")
    report.arch, report.arch_kwargs = arch, dict(model.arch_kwargs)

    tensors = dict(weights.tensors)
    # Fixed scales (FCN-8s at-once): the Scale blob must hold the model's constant factor.
    for src_name in sorted(cand.fixed):
        key = f"{src_name}.weight"
        module = model.get_submodule(cand.table[src_name])
        if key not in tensors:
            if weights.carries_fixed_scales:
                raise FCNError(f"{src}: no Scale layer {src_name} with its blob; {desc} scales by "
                               f"{module.factor:g} there")
            continue
        blob = tensors.pop(key)
        values = blob.to(torch.float64).flatten()
        if values.numel() == 0 or not all(_close(float(v), module.factor)
                                          for v in (values.min(), values.max())):
            raise FCNError(f"layer {src_name} (Scale) multiplies by {float(values.min()):g}.."
                           f"{float(values.max()):g} (shape {tuple(blob.shape)}) but {desc} "
                           f"multiplies by the constant {module.factor:g}")
        report.matched.append(MatchedRow(f"{cand.table[src_name]} (fixed scale "
                                         f"{module.factor:g})", (), weights.describe(key),
                                         tuple(blob.shape)))
    key_map = {s: m for s, m in cand.table.items() if s not in cand.fixed}
    target = model.state_dict()
    updates, mapped = remap_state_dict(tensors, key_map, target,
                                       convert=_converter(weights, model, desc))
    by_target = {}
    for key in tensors:
        prefix, _, leaf = key.rpartition(".")
        if prefix in key_map:
            by_target[f"{key_map[prefix]}.{leaf}"] = key
    for dst in mapped.copied:
        src_key = by_target[dst]
        report.matched.append(MatchedRow(dst, tuple(target[dst].shape),
                                         weights.describe(src_key),
                                         tuple(tensors[src_key].shape)))
    order = {name: i for i, name in enumerate(cand.table.values())}  # the model's own order
    report.matched.sort(key=lambda r: order.get(r.parameter.split(" ")[0].split(".")[0], -1))
    unfilled = [k for k in target if k not in updates]
    if unfilled:
        raise FCNError(f"{src}: {desc} parameters left unfilled: {_few(unfilled)}; the source "
                       f"has no {_few(sorted({k.rpartition('.')[0] for k in unfilled}))} "
                       f"weights")
    if mapped.ignored:
        unused = [f"{k} {tuple(tensors[k].shape)}" for k in mapped.ignored]
        if not allow_unused:
            raise FCNError(f"{src}: source weights not used by {desc}: {_few(unused)}; pass "
                           f"--allow-unused to drop them, or --arch for another model")
        report.unused = unused
    for dst, tensor in updates.items():
        # max and min propagate NaN: two reductions instead of a mask as large as the tensor
        if tensor.is_floating_point() and tensor.numel() and not (
                bool(torch.isfinite(tensor.amax())) and bool(torch.isfinite(tensor.amin()))):
            raise FCNError(f"{src}: {by_target[dst]} holds NaN or infinite values")

    model.load_state_dict(updates, assign=True)
    model.eval()
    del tensors, updates

    problems = []
    if weights.net:
        problems += geometry_differences(weights.net, model, what=src.name, complete=False)
        if not problems and any(layer.conv or layer.crop for layer in weights.net):
            report.geometry_checked.append(f"the layer parameters stored in {src.name}")
    if proto_net is not None:
        problems += geometry_differences(proto_net.layers, model, what=Path(prototxt).name,
                                         complete=True)
        if not problems:
            report.geometry_checked.append(str(prototxt))
    if problems:
        raise FCNError(f"geometry differs from {arch}: {'; '.join(problems)}")

    gen = torch.Generator().manual_seed(0)
    inputs = {name: torch.rand(1, ch, size, size, generator=gen) * 255.0 - 120.0
              for name, ch in model.input_channels.items()}
    first, *others = inputs
    with torch.inference_mode():
        heads = head_scores(model(inputs[first], **{k: inputs[k] for k in others}))
    for head, scores in heads.items():
        expected = (1, model.head_classes[head], size, size)
        what = f"{desc}{'' if len(heads) == 1 else f' head {head}'}"
        if tuple(scores.shape) != expected:
            raise FCNError(f"forward check: {what} gave {tuple(scores.shape)} for a "
                           f"{size}x{size} input, expected {expected}")
        if not bool(torch.isfinite(scores).all()):
            bad = int((~torch.isfinite(scores)).sum())
            raise FCNError(f"forward check: {bad} of the scores{'' if len(heads) == 1 else f' of head {head}'} "
                           f"for a {size}x{size} input are NaN or infinite; the weights of "
                           f"{src.name} overflow")
    expected = (1, kwargs["num_classes"], size, size)
    report.check_shape = expected
    report.mean = tuple(float(m) for m in model.reference_mean)

    names, report.classes_from = resolve_classes(classes, kwargs["num_classes"])
    meta = ModelMeta.default(arch, len(names), class_names=names,
                             mean=[float(m) for m in model.reference_mean],
                             extra={"imported_from": {"file": src.name, "format": weights.format,
                                                      "bytes": src.stat().st_size}},
                             **model.io_description())
    if out is not None:
        save_checkpoint(out, model=model, meta=meta, metrics={}, training_state=None)
        report.output = out
    report.model = model
    report.seconds = time.perf_counter() - start
    return report

