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
from fcn_deploy.constants import IGNORE_LABEL, VGG_MEAN_BGR, VOC_CLASSES, voc_palette
from fcn_deploy.errors import FCNError
from fcn_deploy.tiling import TileGeometry

#: Prefix of every key this toolkit writes into ONNX metadata_props.
ONNX_PREFIX = "fcn."
PRECISIONS = ("fp32", "fp16", "int8")
OUTPUT_KINDS = ("scores", "labels", "both")


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
    #: the network's tiling geometry (fcn_deploy.tiling.TileGeometry as a dict); empty in
    #: artifacts written before it existed (the runtime then derives it from ``arch``)
    tiling: dict[str, int] = field(default_factory=dict)
    toolkit_version: str = field(default_factory=_version)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

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


def __getattr__(name: str) -> Any:
    """``read_onnx_meta`` / ``write_onnx_meta``: moved to :mod:`fcn_deploy.onnxgraph` (``read_meta``
    / ``write_meta``), the layer that loads ONNX; still importable from here for old callers."""
    if name in _MOVED_TO_ONNXGRAPH:
        from fcn_deploy import onnxgraph  # compatibility re-export (an allowed upward import)

        return getattr(onnxgraph, _MOVED_TO_ONNXGRAPH[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_MOVED_TO_ONNXGRAPH = {"read_onnx_meta": "read_meta", "write_onnx_meta": "write_meta"}
