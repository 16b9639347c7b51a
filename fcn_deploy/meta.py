"""The self-describing metadata every artifact carries.

Checkpoints hold it next to the weights (``ModelMeta.to_dict()``), ONNX files in
``metadata_props`` (``to_onnx_props()``: one string per key, lists as JSON, so the C++ runtime
reads it too), TensorRT engines in their JSON sidecar. A runtime never asks for the mean or the
class list: it reads them from here.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from fcn_deploy import __version__
from fcn_deploy.constants import (IGNORE_LABEL, NYUD_HHA_MEAN, NYUD_LOG_DEPTH_MEAN, VGG_MEAN_BGR,
                                  VOC_CLASSES, voc_palette)
from fcn_deploy.errors import FCNError
from fcn_deploy.tiling import TileGeometry

#: Prefix of every key this toolkit writes into ONNX metadata_props.
ONNX_PREFIX = "fcn."
PRECISIONS = ("fp32", "fp16", "int8")
OUTPUT_KINDS = ("scores", "labels", "both")
#: How the runtime turns a user's array into a network input. ``image``: uint8 HxWx3 in BGR as
#: read -> ``channel_order``, minus ``mean``, CxHxW float32. ``log_depth``: an HxW depth map in
#: millimetres -> ``log(max(depth, 1))`` minus ``mean``, 1xHxW (NYUDv2's early-fusion input).
INPUT_ENCODINGS = ("image", "log_depth")
#: The name of the one input of a single-input net and of its one head.
DEFAULT_INPUT = "image"
SINGLE_HEAD = "score"


@dataclass(frozen=True)
class InputSpec:
    """One network input: its ONNX/TensorRT tensor name, channels and preprocessing."""

    name: str
    channels: int
    mean: tuple[float, ...]
    channel_order: str = "BGR"
    encoding: str = "image"


@dataclass(frozen=True)
class HeadSpec:
    """One score head of a network: name, classes and colours, and its output tensors' names
    (``scores`` / ``labels`` for a single-head net, ``scores_<head>`` / ``labels_<head>`` for each
    head of a multi-head net)."""

    name: str
    num_classes: int
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    scores_output: str = "scores"
    labels_output: str = "labels"


#: What a known modality's input is when the metadata names it without details (checkpoints
#: written before inputs were first-class carried only name and channels).
_MODALITY_DEFAULTS: dict[str, dict[str, Any]] = {
    "hha": {"mean": list(NYUD_HHA_MEAN), "channel_order": "RGB", "encoding": "image"},
    "depth": {"mean": [NYUD_LOG_DEPTH_MEAN], "channel_order": "BGR", "encoding": "log_depth"},
}


def _version() -> str:
    return __version__


@dataclass
class ModelMeta:
    """What a runtime needs to use a model, independent of the artifact's format.

    ``mean`` is in the order of ``channel_order`` (BGR for the reference nets); the input is
    ``(image[..., channel_order] - mean)`` as float32 in ``input_layout``, with no scaling and no
    resizing. ``arch_kwargs`` are the factory arguments that rebuild the architecture.
    """

    arch: str
    num_classes: int
    class_names: list[str]
    palette: list[list[int]]
    mean: list[float] = field(default_factory=lambda: list(VGG_MEAN_BGR))
    ignore_label: int = IGNORE_LABEL
    channel_order: str = "BGR"
    input_layout: str = "NCHW"
    precision: str = "fp32"
    outputs: str = "scores"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    #: the network's inputs when it is not one ``image``: [{name, channels, mean, channel_order,
    #: encoding}] in the order of the model's forward (NYUDv2's ``image`` + ``hha``); empty for
    #: the single-image nets, whose one input is ``mean`` / ``channel_order``. See input_specs().
    inputs: list[dict[str, Any]] = field(default_factory=list)
    #: the heads of a multi-head net: [{name, num_classes, class_names, palette}], the first one
    #: being ``num_classes`` / ``class_names`` / ``palette`` (SIFT Flow's ``sem``, then ``geo``);
    #: empty for a single-head net. See head_specs().
    heads: list[dict[str, Any]] = field(default_factory=list)
    #: the network's tiling geometry (fcn_deploy.tiling.TileGeometry as a dict); empty in
    #: artifacts written before it existed (the runtime then derives it from ``arch``)
    tiling: dict[str, int] = field(default_factory=dict)
    toolkit_version: str = field(default_factory=_version)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.inputs = [self._complete_input(dict(i)) for i in self.inputs]
        self.heads = [self._complete_head(dict(h), first=(k == 0)) for k, h in enumerate(self.heads)]
        self.validate()

    def _complete_input(self, spec: dict[str, Any]) -> dict[str, Any]:
        name = spec.get("name")
        if name == DEFAULT_INPUT:
            defaults = {"mean": list(self.mean), "channel_order": self.channel_order,
                        "encoding": "image"}
        else:
            defaults = _MODALITY_DEFAULTS.get(name, {"channel_order": "BGR", "encoding": "image"})
        out = {**defaults, **spec}
        if "mean" in out:
            out["mean"] = [float(m) for m in out["mean"]]
        return _ordered(out, ("name", "channels", "mean", "channel_order", "encoding"))

    def _complete_head(self, spec: dict[str, Any], *, first: bool) -> dict[str, Any]:
        classes = spec.get("num_classes")
        if first:
            defaults = {"class_names": list(self.class_names), "palette": self.palette}
        elif isinstance(classes, int):
            defaults = {"class_names": [f"class_{i}" for i in range(classes)],
                        "palette": [list(c) for c in voc_palette(max(classes, 1))]}
        else:
            defaults = {}
        out = {**defaults, **spec}
        out["class_names"] = list(out.get("class_names", []))
        out["palette"] = [list(c) for c in out.get("palette", [])]
        return _ordered(out, ("name", "num_classes", "class_names", "palette"))

    def validate(self) -> None:
        if self.num_classes < 1:
            raise FCNError(f"metadata: num_classes must be >= 1, got {self.num_classes}")
        if len(self.class_names) != self.num_classes:
            raise FCNError(f"metadata: {len(self.class_names)} class names for "
                           f"{self.num_classes} classes; expected one name per class")
        if len(self.palette) < self.num_classes:
            raise FCNError(f"metadata: palette has {len(self.palette)} colours for "
                           f"{self.num_classes} classes")
        if len(self.mean) != 3:
            raise FCNError(f"metadata: mean must have 3 values, got {self.mean!r}")
        if self.channel_order not in ("BGR", "RGB"):
            raise FCNError(f"metadata: channel_order must be BGR or RGB, got {self.channel_order!r}")
        if self.precision not in PRECISIONS:
            raise FCNError(f"metadata: precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.outputs not in OUTPUT_KINDS:
            raise FCNError(f"metadata: outputs must be one of {OUTPUT_KINDS}, got {self.outputs!r}")
        if self.tiling:
            TileGeometry.from_dict(self.tiling, source="metadata")
        self._validate_inputs()
        self._validate_heads()

    def _validate_inputs(self) -> None:
        names = [spec.get("name") for spec in self.inputs]
        if len(set(names)) != len(names):
            raise FCNError(f"metadata: input names must be unique, got {names}")
        for spec in self.inputs:
            name = spec.get("name")
            if not isinstance(name, str) or not name.isidentifier() or not name.islower():
                raise FCNError(f"metadata: input name {name!r} must be a lower-case identifier "
                               "(image, hha, depth)")
            channels = spec.get("channels")
            if not isinstance(channels, int) or channels < 1:
                raise FCNError(f"metadata: input {name!r} needs channels >= 1, got {channels!r}")
            if spec.get("encoding") not in INPUT_ENCODINGS:
                raise FCNError(f"metadata: input {name!r} has encoding {spec.get('encoding')!r}; "
                               f"expected one of {', '.join(INPUT_ENCODINGS)}")
            wanted = 3 if spec["encoding"] == "image" else 1
            if channels != wanted:
                raise FCNError(f"metadata: input {name!r} ({spec['encoding']}) has {channels} "
                               f"channels; that encoding makes {wanted}")
            if len(spec.get("mean", [])) != channels:
                raise FCNError(f"metadata: input {name!r} needs {channels} mean value(s), got "
                               f"{spec.get('mean')!r}")
            if spec.get("channel_order") not in ("BGR", "RGB"):
                raise FCNError(f"metadata: input {name!r} channel_order must be BGR or RGB, got "
                               f"{spec.get('channel_order')!r}")

    def _validate_heads(self) -> None:
        if not self.heads:
            return
        names = [spec.get("name") for spec in self.heads]
        if len(self.heads) < 2 or len(set(names)) != len(names):
            raise FCNError(f"metadata: heads lists the heads of a multi-head net (two or more, "
                           f"unique names), got {names}")
        for k, spec in enumerate(self.heads):
            name, classes = spec.get("name"), spec.get("num_classes")
            if not isinstance(name, str) or not name.isidentifier() or not name.islower():
                raise FCNError(f"metadata: head name {name!r} must be a lower-case identifier")
            if not isinstance(classes, int) or classes < 1:
                raise FCNError(f"metadata: head {name!r} needs num_classes >= 1, got {classes!r}")
            if k == 0 and classes != self.num_classes:
                raise FCNError(f"metadata: the first head {name!r} has {classes} classes but "
                               f"num_classes is {self.num_classes}; they are the same head")
            if len(spec["class_names"]) != classes:
                raise FCNError(f"metadata: head {name!r} has {len(spec['class_names'])} class "
                               f"names for {classes} classes")
            if len(spec["palette"]) < classes:
                raise FCNError(f"metadata: head {name!r} has {len(spec['palette'])} colours for "
                               f"{classes} classes")

    # -- inputs and heads ---------------------------------------------------------------------
    def input_specs(self) -> list[InputSpec]:
        """The network's inputs in forward order (one ``image`` for the single-input nets)."""
        specs = self.inputs or [{"name": DEFAULT_INPUT, "channels": 3, "mean": list(self.mean),
                                 "channel_order": self.channel_order, "encoding": "image"}]
        return [InputSpec(name=s["name"], channels=int(s["channels"]),
                          mean=tuple(float(m) for m in s["mean"]),
                          channel_order=s["channel_order"], encoding=s["encoding"]) for s in specs]

    @property
    def input_names(self) -> list[str]:
        return [s["name"] for s in self.inputs] if self.inputs else [DEFAULT_INPUT]

    @property
    def multi_head(self) -> bool:
        return bool(self.heads)

    def head_specs(self) -> list[HeadSpec]:
        """The network's heads in order, each with its output tensor names (one head named
        ``score`` with outputs ``scores`` / ``labels`` for a single-head net)."""
        if not self.heads:
            return [HeadSpec(name=SINGLE_HEAD, num_classes=self.num_classes,
                             class_names=tuple(self.class_names),
                             palette=tuple(tuple(int(v) for v in c) for c in self.palette))]
        return [HeadSpec(name=h["name"], num_classes=int(h["num_classes"]),
                         class_names=tuple(h["class_names"]),
                         palette=tuple(tuple(int(v) for v in c) for c in h["palette"]),
                         scores_output=f"scores_{h['name']}", labels_output=f"labels_{h['name']}")
                for h in self.heads]

    def output_names(self, outputs: str | None = None) -> list[str]:
        """The graph outputs for ``outputs`` (default: this artifact's own): every head's scores
        (head order), then every head's labels."""
        kind = outputs or self.outputs
        heads = self.head_specs()
        names = [h.scores_output for h in heads] if kind in ("scores", "both") else []
        return names + ([h.labels_output for h in heads] if kind in ("labels", "both") else [])

    @classmethod
    def default(cls, arch: str, num_classes: int = 21, *, class_names=None, **kwargs) -> "ModelMeta":
        """Metadata with PASCAL VOC names (when 21 classes) or ``class_<i>`` names and VOC colours."""
        if class_names is None:
            class_names = (list(VOC_CLASSES) if num_classes == len(VOC_CLASSES)
                           else [f"class_{i}" for i in range(num_classes)])
        palette = [list(c) for c in voc_palette(max(num_classes, 1))]
        return cls(arch=arch, num_classes=num_classes, class_names=list(class_names),
                   palette=palette, **kwargs)

    def replace(self, **changes: Any) -> "ModelMeta":
        return dataclasses.replace(self, **changes)

    # -- plain dict (checkpoints, JSON sidecars) --------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelMeta":
        names = {f.name for f in dataclasses.fields(cls)}
        missing = [k for k in ("arch", "num_classes", "class_names", "palette") if k not in data]
        if missing:
            raise FCNError(f"metadata is missing {', '.join(missing)}")
        known = {k: v for k, v in data.items() if k in names}
        known["palette"] = [list(c) for c in known["palette"]]
        known["class_names"] = list(known["class_names"])
        known["mean"] = [float(m) for m in known.get("mean", VGG_MEAN_BGR)]
        extra = dict(known.get("extra") or {})
        for key in ("inputs", "heads"):  # checkpoints of 0.x kept these in extra
            if not known.get(key) and isinstance(extra.get(key), list):
                known[key] = extra.pop(key)
        known["extra"] = extra
        return cls(**known)

    # -- ONNX metadata_props ----------------------------------------------------------------
    def to_onnx_props(self) -> dict[str, str]:
        """Flat string key/values for ``ModelProto.metadata_props`` (lists and dicts as JSON)."""
        out = {}
        for key, value in self.to_dict().items():
            out[ONNX_PREFIX + key] = value if isinstance(value, str) else json.dumps(value)
        return out

    @classmethod
    def from_onnx_props(cls, props: Mapping[str, str]) -> "ModelMeta":
        data: dict[str, Any] = {}
        str_fields = {f.name for f in dataclasses.fields(cls) if f.type in ("str", str)}
        for key, value in props.items():
            if not key.startswith(ONNX_PREFIX):
                continue
            name = key[len(ONNX_PREFIX):]
            if name in str_fields:
                data[name] = value
            else:
                try:
                    data[name] = json.loads(value)
                except json.JSONDecodeError as exc:
                    raise FCNError(f"ONNX metadata {key!r} is not valid JSON: {value[:60]!r}") from exc
        if not data:
            raise FCNError("the ONNX file carries no fcn-deploy metadata (no 'fcn.*' metadata_props)")
        return cls.from_dict(data)


def _ordered(spec: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """``spec`` with ``keys`` first (so the JSON reads name first), the others after."""
    return {**{k: spec[k] for k in keys if k in spec}, **spec}


def __getattr__(name: str) -> Any:
    """``read_onnx_meta`` / ``write_onnx_meta``: moved to :mod:`fcn_deploy.onnxgraph` (``read_meta``
    / ``write_meta``), the layer that loads ONNX; still importable from here for old callers."""
    if name in _MOVED_TO_ONNXGRAPH:
        from fcn_deploy import onnxgraph  # compatibility re-export (an allowed upward import)

        return getattr(onnxgraph, _MOVED_TO_ONNXGRAPH[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_MOVED_TO_ONNXGRAPH = {"read_onnx_meta": "read_meta", "write_onnx_meta": "write_meta"}
