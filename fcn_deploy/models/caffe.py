"""Caffe's model files without Caffe: ``.caffemodel`` (binary NetParameter), ``.prototxt`` (text).

The schema is ours, declared at runtime with ``descriptor_pb2`` from the field numbers of Caffe's
format, and holds only what importing an FCN needs: layer name, type, bottoms, tops, blobs, and the
convolution / pooling / crop / scale parameters that fix the geometry. Both layer encodings are
read: the current ``layer`` (LayerParameter, field 100) and the legacy ``layers``
(V1LayerParameter, field 2, type as an enum). Blobs carry their shape either as ``shape.dim`` or
as the legacy num/channels/height/width, and their values as packed float ``data`` or
``double_data``.

Speed and memory: a published VGG16 FCN is a 540 MB file whose fc6 blob alone is 411 MB. The
reader walks the top level of the file itself (a NetParameter is a sequence of tagged fields) and
hands one layer at a time to protobuf; in our schema the packed ``data`` / ``double_data`` fields
are declared ``bytes`` (a packed repeated scalar is a length-delimited field on the wire, the same
encoding as bytes), so their values arrive as one bytes object that numpy views without a Python
float list. Peak memory is the weights plus about two copies of the largest layer. A blob written
with unpacked floats (legal protobuf, not what Caffe writes) is re-read with a numeric schema.
"""
from __future__ import annotations

import functools
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, Sequence

import numpy as np

from fcn_deploy.errors import FCNError
from fcn_deploy.fileio import atomic_path

#: NetParameter fields (Caffe's numbering).
NET_NAME, NET_LAYERS_V1, NET_LAYER = 1, 2, 100

#: V1LayerParameter.LayerType values -> the layer type strings of the current format.
V1_LAYER_TYPES: dict[int, str] = {
    0: "None", 1: "Accuracy", 2: "BNLL", 3: "Concat", 4: "Convolution", 5: "Data", 6: "Dropout",
    7: "EuclideanLoss", 8: "Flatten", 9: "HDF5Data", 10: "HDF5Output", 11: "Im2col",
    12: "ImageData", 13: "InfogainLoss", 14: "InnerProduct", 15: "LRN",
    16: "MultinomialLogisticLoss",
    17: "Pooling", 18: "ReLU", 19: "Sigmoid", 20: "Softmax", 21: "SoftmaxWithLoss", 22: "Split",
    23: "TanH", 24: "WindowData", 25: "Eltwise", 26: "Power", 27: "SigmoidCrossEntropyLoss",
    28: "HingeLoss", 29: "MemoryData", 30: "ArgMax", 31: "Threshold", 32: "DummyData",
    33: "Slice", 34: "MVN", 35: "AbsVal", 36: "Silence", 37: "ContrastiveLoss", 38: "Exp",
    39: "Deconvolution",
}
#: The enum's value names (as written in legacy text prototxts), by value.
_V1_ENUM_NAMES: dict[int, str] = {
    0: "NONE", 1: "ACCURACY", 2: "BNLL", 3: "CONCAT", 4: "CONVOLUTION", 5: "DATA", 6: "DROPOUT",
    7: "EUCLIDEAN_LOSS", 8: "FLATTEN", 9: "HDF5_DATA", 10: "HDF5_OUTPUT", 11: "IM2COL",
    12: "IMAGE_DATA", 13: "INFOGAIN_LOSS", 14: "INNER_PRODUCT", 15: "LRN",
    16: "MULTINOMIAL_LOGISTIC_LOSS", 17: "POOLING", 18: "RELU", 19: "SIGMOID", 20: "SOFTMAX",
    21: "SOFTMAX_LOSS", 22: "SPLIT", 23: "TANH", 24: "WINDOW_DATA", 25: "ELTWISE", 26: "POWER",
    27: "SIGMOID_CROSS_ENTROPY_LOSS", 28: "HINGE_LOSS", 29: "MEMORY_DATA", 30: "ARGMAX",
    31: "THRESHOLD", 32: "DUMMY_DATA", 33: "SLICE", 34: "MVN", 35: "ABSVAL", 36: "SILENCE",
    37: "CONTRASTIVE_LOSS", 38: "EXP", 39: "DECONVOLUTION",
}
_V1_BY_TYPE = {t: v for v, t in V1_LAYER_TYPES.items()}
_POOL_METHODS = {0: "MAX", 1: "AVE", 2: "STOCHASTIC"}


# -- the schema ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def schema(*, raw_data: bool = True) -> dict[str, Any]:
    """Message classes of our minimal Caffe schema, by message name.

    ``raw_data=True``: BlobProto.data / double_data are ``bytes`` (the packed payload as is; the
    fast path). ``raw_data=False``: they are packed ``repeated float`` / ``repeated double``, which
    also accepts unpacked values.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fd = descriptor_pb2.FieldDescriptorProto
    package = "fcn_deploy.caffe_raw" if raw_data else "fcn_deploy.caffe_numeric"
    fdp = descriptor_pb2.FileDescriptorProto(name=f"{package.replace('.', '/')}.proto",
                                             package=package, syntax="proto2")
    scalar = {"string": fd.TYPE_STRING, "bytes": fd.TYPE_BYTES, "int32": fd.TYPE_INT32,
              "uint32": fd.TYPE_UINT32, "int64": fd.TYPE_INT64, "float": fd.TYPE_FLOAT,
              "double": fd.TYPE_DOUBLE, "bool": fd.TYPE_BOOL}

    def message(name: str, fields: Sequence[tuple], enums: Sequence[tuple] = ()) -> None:
        msg = fdp.message_type.add(name=name)
        for enum_name, values in enums:
            enum = msg.enum_type.add(name=enum_name)
            for number, value_name in values.items():
                enum.value.add(name=value_name, number=number)
        for spec in fields:
            fname, number, kind, rep = spec[:4]
            options = spec[4] if len(spec) > 4 else {}
            f = msg.field.add(name=fname, number=number,
                              label=fd.LABEL_REPEATED if rep else fd.LABEL_OPTIONAL)
            if kind in scalar:
                f.type = scalar[kind]
            elif kind.startswith("enum:"):
                f.type, f.type_name = fd.TYPE_ENUM, f".{package}.{kind[5:]}"
            else:
                f.type, f.type_name = fd.TYPE_MESSAGE, f".{package}.{kind}"
            if options.get("packed"):
                f.options.packed = True
            if "default" in options:
                f.default_value = options["default"]

    message("BlobShape", [("dim", 1, "int64", True, {"packed": True})])
    if raw_data:
        values = [("data", 5, "bytes", False), ("double_data", 8, "bytes", False)]
    else:
        values = [("data", 5, "float", True, {"packed": True}),
                  ("double_data", 8, "double", True, {"packed": True})]
    message("BlobProto", [("num", 1, "int32", False), ("channels", 2, "int32", False),
                          ("height", 3, "int32", False), ("width", 4, "int32", False),
                          ("shape", 7, "BlobShape", False)] + values)
    message("FillerParameter", [("type", 1, "string", False), ("value", 2, "float", False)])
    message("ParamSpec", [("name", 1, "string", False), ("lr_mult", 3, "float", False)])
    message("ConvolutionParameter", [
        ("num_output", 1, "uint32", False), ("bias_term", 2, "bool", False, {"default": "true"}),
        ("pad", 3, "uint32", True), ("kernel_size", 4, "uint32", True),
        ("group", 5, "uint32", False, {"default": "1"}), ("stride", 6, "uint32", True),
        ("pad_h", 9, "uint32", False), ("pad_w", 10, "uint32", False),
        ("kernel_h", 11, "uint32", False), ("kernel_w", 12, "uint32", False),
        ("stride_h", 13, "uint32", False), ("stride_w", 14, "uint32", False),
        ("dilation", 18, "uint32", True)])
    message("PoolingParameter", [
        ("pool", 1, "enum:PoolingParameter.PoolMethod", False),
        ("kernel_size", 2, "uint32", False), ("stride", 3, "uint32", False, {"default": "1"}),
        ("pad", 4, "uint32", False), ("kernel_h", 5, "uint32", False),
        ("kernel_w", 6, "uint32", False), ("stride_h", 7, "uint32", False),
        ("stride_w", 8, "uint32", False), ("pad_h", 9, "uint32", False),
        ("pad_w", 10, "uint32", False), ("global_pooling", 12, "bool", False)],
        enums=[("PoolMethod", _POOL_METHODS)])
    message("CropParameter", [("axis", 1, "int32", False, {"default": "2"}),
                              ("offset", 2, "uint32", True)])
    message("ScaleParameter", [("axis", 1, "int32", False, {"default": "1"}),
                               ("num_axes", 2, "int32", False, {"default": "1"}),
                               ("filler", 3, "FillerParameter", False),
                               ("bias_term", 4, "bool", False)])
    message("LayerParameter", [
        ("name", 1, "string", False), ("type", 2, "string", False),
        ("bottom", 3, "string", True), ("top", 4, "string", True),
        ("param", 6, "ParamSpec", True), ("blobs", 7, "BlobProto", True),
        ("convolution_param", 106, "ConvolutionParameter", False),
        ("pooling_param", 121, "PoolingParameter", False),
        ("scale_param", 142, "ScaleParameter", False),
        ("crop_param", 144, "CropParameter", False)])
    message("V1LayerParameter", [
        ("bottom", 2, "string", True), ("top", 3, "string", True), ("name", 4, "string", False),
        ("type", 5, "enum:V1LayerParameter.LayerType", False), ("blobs", 6, "BlobProto", True),
        ("convolution_param", 10, "ConvolutionParameter", False),
        ("pooling_param", 19, "PoolingParameter", False)],
        enums=[("LayerType", _V1_ENUM_NAMES)])
    message("NetParameter", [("name", 1, "string", False),
                             ("layers", 2, "V1LayerParameter", True),
                             ("layer", 100, "LayerParameter", True)])

    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    find = pool.FindMessageTypeByName
    return {m.name: message_factory.GetMessageClass(find(f"{package}.{m.name}"))
            for m in fdp.message_type}


# -- the in-memory form ----------------------------------------------------------------------

@dataclass
class ConvSpec:
    """A Convolution / Deconvolution layer's geometry (per spatial axis: (h, w))."""

    num_output: int
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    pad: tuple[int, int] = (0, 0)
    group: int = 1
    bias_term: bool = True


@dataclass
class PoolSpec:
    method: str
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    pad: tuple[int, int] = (0, 0)


@dataclass
class CropSpec:
    axis: int = 2
    offsets: tuple[int, ...] = ()


@dataclass
class CaffeLayer:
    """One layer of a Caffe net: what the importer and the geometry check read."""

    name: str
    type: str
    bottoms: list[str] = field(default_factory=list)
    tops: list[str] = field(default_factory=list)
    blobs: list[np.ndarray] = field(default_factory=list)
    conv: ConvSpec | None = None
    pool: PoolSpec | None = None
    crop: CropSpec | None = None
    #: The constant a Scale layer's filler sets (FCN-8s at-once: 0.01, 0.0001).
    scale_value: float | None = None


@dataclass
class CaffeNet:
    name: str
    layers: list[CaffeLayer]
    #: True when the file used the legacy ``layers`` (V1LayerParameter) encoding.
    legacy: bool = False


def _pair(repeated: Sequence[int], h: int, w: int, default: int, what: str,
          layer: str) -> tuple[int, int]:
    """Caffe's "one value for both axes, or one per axis, or the _h/_w fields" rule."""
    if h or w:
        return (int(h), int(w))
    values = [int(v) for v in repeated]
    if not values:
        return (default, default)
    if len(values) == 1:
        return (values[0], values[0])
    if len(values) == 2:
        return (values[0], values[1])
    raise FCNError(f"layer {layer!r}: {what} has {len(values)} values; a 2-D layer takes 1 or 2")


def _conv_spec(p: Any, layer: str) -> ConvSpec:
    if any(d != 1 for d in p.dilation):
        raise FCNError(f"layer {layer!r}: dilation {list(p.dilation)} is not supported "
                       f"(the FCN nets use none)")
    return ConvSpec(num_output=int(p.num_output),
                    kernel=_pair(p.kernel_size, p.kernel_h, p.kernel_w, 0, "kernel_size", layer),
                    stride=_pair(p.stride, p.stride_h, p.stride_w, 1, "stride", layer),
                    pad=_pair(p.pad, p.pad_h, p.pad_w, 0, "pad", layer),
                    group=int(p.group), bias_term=bool(p.bias_term))


def _pool_spec(p: Any) -> PoolSpec:
    kernel = (p.kernel_h, p.kernel_w) if p.kernel_h or p.kernel_w else (p.kernel_size,) * 2
    stride = (p.stride_h, p.stride_w) if p.stride_h or p.stride_w else (p.stride,) * 2
    pad = (p.pad_h, p.pad_w) if p.pad_h or p.pad_w else (p.pad,) * 2
    return PoolSpec(method=_POOL_METHODS.get(p.pool, str(p.pool)),
                    kernel=tuple(map(int, kernel)), stride=tuple(map(int, stride)),
                    pad=tuple(map(int, pad)))


def _layer_from_message(msg: Any, *, legacy: bool, source: str, blobs: list[np.ndarray]
                        ) -> CaffeLayer:
    if legacy:
        ltype = V1_LAYER_TYPES.get(int(msg.type), f"V1:{int(msg.type)}")
    else:
        ltype = msg.type
    layer = CaffeLayer(name=msg.name, type=ltype, bottoms=list(msg.bottom),
                       tops=list(msg.top), blobs=blobs)
    if msg.HasField("convolution_param"):
        layer.conv = _conv_spec(msg.convolution_param, msg.name)
    if msg.HasField("pooling_param"):
        layer.pool = _pool_spec(msg.pooling_param)
    if not legacy:
        if msg.HasField("crop_param"):
            layer.crop = CropSpec(axis=int(msg.crop_param.axis),
                                  offsets=tuple(int(o) for o in msg.crop_param.offset))
        if msg.HasField("scale_param") and msg.scale_param.HasField("filler"):
            layer.scale_value = float(msg.scale_param.filler.value)
    return layer


# -- reading a .caffemodel --------------------------------------------------------------------

def _blob_shape(blob: Any) -> tuple[int, ...] | None:
    if blob.HasField("shape"):
        return tuple(int(d) for d in blob.shape.dim)
    legacy = (blob.num, blob.channels, blob.height, blob.width)
    if any(legacy):
        return tuple(int(d) for d in legacy)
    return None


@dataclass
class _RawBlob:
    """A blob's fields copied out of its message, so the message can be freed first."""

    shape: tuple[int, ...] | None
    data: bytes
    double_data: bytes
    serialized: bytes | None  # set only when the values were not packed as Caffe packs them


def _raw_blob(blob: Any) -> _RawBlob:
    shape = _blob_shape(blob)
    count = math.prod(shape) if shape is not None else None
    data, double = blob.data, blob.double_data
    packed = ((data and (count is None or len(data) == 4 * count))
              or (double and (count is None or len(double) == 8 * count)))
    # Unpacked values (legal protobuf, not Caffe's own encoding) land in the unknown fields of
    # the bytes-typed schema: keep the blob's encoding to re-read it with the numeric schema.
    return _RawBlob(shape, data, double, None if packed else blob.SerializeToString())


def _blob_array(raw: _RawBlob, *, layer: str, index: int, source: str) -> np.ndarray:
    """A blob's values as float32 in its stored shape (legacy 4-D shapes kept as stored)."""
    shape = raw.shape
    count = math.prod(shape) if shape is not None else None
    values: np.ndarray | None = None
    if raw.serialized is None:
        if raw.data and (count is None or len(raw.data) == 4 * count):
            values = np.frombuffer(raw.data, dtype="<f4")
        else:
            values = np.frombuffer(raw.double_data, dtype="<f8")
    else:
        numeric = schema(raw_data=False)["BlobProto"].FromString(raw.serialized)
        for seq, dtype in ((numeric.data, np.float32), (numeric.double_data, np.float64)):
            if len(seq) and (count is None or len(seq) == count):
                values = np.asarray(seq, dtype=dtype)
                break
    if values is None:
        n_f, n_d = len(raw.data) // 4, len(raw.double_data) // 8
        held = f"{n_f} float values" if n_f or not n_d else f"{n_d} double values"
        raise FCNError(f"{source}: layer {layer!r} blob {index} holds {held} but its shape "
                       f"{shape} needs {count}; the file is corrupt or not a caffemodel")
    if shape is None:
        shape = (values.size,)
    if values.dtype == np.float64:
        with np.errstate(over="ignore"):
            out = values.astype(np.float32)
        if not np.isfinite(out).all() and np.isfinite(values).all():
            raise FCNError(f"{source}: layer {layer!r} blob {index} holds double values outside "
                           f"the float32 range")
        return out.reshape(shape)
    return values.astype(np.float32, copy=True).reshape(shape)  # native order, writable


def _read_varint(f: BinaryIO) -> int | None:
    """One base-128 varint from ``f``; None at a clean end of file."""
    result, shift = 0, 0
    while True:
        b = f.read(1)
        if not b:
            if shift == 0:
                return None
            raise EOFError("file ends inside a varint")
        result |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _partial_name(buf: bytes, field_number: int) -> str | None:
    """The string field ``field_number`` from the start of a (possibly truncated) message."""
    f = io.BytesIO(buf)
    try:
        while True:
            tag = _read_varint(f)
            if tag is None:
                return None
            number, wire = tag >> 3, tag & 7
            if wire == 0:
                _read_varint(f)
            elif wire == 1:
                f.seek(8, 1)
            elif wire == 5:
                f.seek(4, 1)
            elif wire == 2:
                n = _read_varint(f) or 0
                chunk = f.read(n)
                if number == field_number and len(chunk) == n:
                    return chunk.decode("utf-8", "replace")
            else:
                return None
    except (EOFError, ValueError):
        return None


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\r\n\t" for c in text)


def iter_caffemodel(path: str | os.PathLike, *, with_blobs: bool = True
                    ) -> Iterator[tuple[CaffeLayer, bool]]:
    """Yield ``(layer, legacy)`` for each layer of a binary caffemodel, one in memory at a time.

    FCNError for a file that is not a caffemodel, is truncated (naming the layer it ends in) or
    holds a blob whose values do not fit its shape.
    """
    path = Path(path)
    source = str(path)
    classes = schema(raw_data=True)
    size = path.stat().st_size
    with open(path, "rb", buffering=1 << 20) as f:
        head = f.read(256)
        f.seek(0)
        if not head:
            raise FCNError(f"{source} is empty; expected a Caffe .caffemodel (binary NetParameter)")
        if _looks_like_text(head):
            raise FCNError(f"{source} is a text file (a .prototxt holds a net's definition, no "
                           f"weights); expected a binary .caffemodel - pass a prototxt with "
                           f"--prototxt")
        index = 0
        while True:
            start = f.tell()
            try:
                tag = _read_varint(f)
                if tag is None:
                    return
                number, wire = tag >> 3, tag & 7
                if wire == 2:
                    length = _read_varint(f)
                    if length is None:
                        raise EOFError
                elif wire in (0, 1, 5):
                    length = None
                else:
                    raise ValueError(f"wire type {wire}")
            except (EOFError, ValueError) as exc:
                raise FCNError(f"{source} is not a Caffe .caffemodel: bad protobuf field at byte "
                               f"{start} ({exc or 'truncated'})") from None
            if wire == 0:
                _read_varint(f)
                continue
            if wire in (1, 5):
                f.seek(8 if wire == 1 else 4, 1)
                continue
            if number not in (NET_LAYER, NET_LAYERS_V1):
                if f.tell() + length > size:
                    raise FCNError(f"{source} is not a Caffe .caffemodel or is truncated: field "
                                   f"{number} at byte {start} declares {length} bytes, the file "
                                   f"has {size - f.tell()} left")
                f.seek(length, 1)
                continue
            legacy = number == NET_LAYERS_V1
            buf = f.read(length)
            index += 1
            if len(buf) < length:
                name = _partial_name(buf, 4 if legacy else 1)
                what = f"layer {name!r}" if name else f"layer #{index}"
                raise FCNError(f"{source} is truncated: it ends inside {what} (the layer declares "
                               f"{length} bytes, {len(buf)} are present); download it again")
            cls = classes["V1LayerParameter" if legacy else "LayerParameter"]
            try:
                msg = cls.FromString(buf)
            except Exception as exc:  # protobuf's DecodeError and friends
                name = _partial_name(buf, 4 if legacy else 1)
                what = f"layer {name!r}" if name else f"layer #{index}"
                raise FCNError(f"{source} is not a valid caffemodel: {what} at byte {start} does "
                               f"not parse ({type(exc).__name__}: {exc})") from None
            del buf
            name = msg.name or f"#{index}"
            raw = [_raw_blob(b) for b in msg.blobs] if with_blobs else []
            layer = _layer_from_message(msg, legacy=legacy, source=source, blobs=[])
            layer.name = name
            del msg  # frees the parsed copy before the arrays are made: peak ~2x the layer
            for i in range(len(raw)):
                layer.blobs.append(_blob_array(raw[i], layer=name, index=i, source=source))
                raw[i] = None
            del raw
            yield layer, legacy


def read_caffemodel(path: str | os.PathLike) -> CaffeNet:
    """Every layer of a caffemodel with its blobs (float32 numpy arrays in Caffe's layout)."""
    path = Path(path)
    if not path.is_file():
        raise FCNError(f"caffemodel {path} does not exist")
    layers, legacy = [], False
    for layer, is_legacy in iter_caffemodel(path):
        layers.append(layer)
        legacy = legacy or is_legacy
    if not any(layer.blobs for layer in layers):
        raise FCNError(f"{path} is not a Caffe .caffemodel: it holds no layer with weights "
                       f"({len(layers)} layers found)")
    return CaffeNet(name="", layers=layers, legacy=legacy)


# -- reading a .prototxt ----------------------------------------------------------------------

def read_prototxt(path: str | os.PathLike) -> CaffeNet:
    """A text-format net definition (deploy/train/val prototxt), parameters only, no blobs.

    Fields our schema does not declare (data layers, loss parameters, fillers, ...) are skipped.
    """
    from google.protobuf import text_format

    path = Path(path)
    if not path.is_file():
        raise FCNError(f"prototxt {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise FCNError(f"{path} is not a text prototxt (not UTF-8 text); the binary weights "
                       f"file is the SOURCE, the prototxt goes to --prototxt") from None
    net = schema(raw_data=True)["NetParameter"]()
    try:
        text_format.Parse(text, net, allow_unknown_field=True)
    except text_format.ParseError as exc:
        raise FCNError(f"{path} is not a valid Caffe prototxt: {exc}") from None
    layers = [_layer_from_message(m, legacy=False, source=str(path), blobs=[]) for m in net.layer]
    layers += [_layer_from_message(m, legacy=True, source=str(path), blobs=[]) for m in net.layers]
    if not layers:
        raise FCNError(f"{path} defines no layers; expected a Caffe net definition")
    return CaffeNet(name=net.name, layers=layers, legacy=bool(net.layers))


# -- writing (tests, benchmarks, and anyone converting weights back) ---------------------------

def _fill_message(msg: Any, layer: CaffeLayer, *, legacy: bool, blob_dims: str,
                  dtype: str) -> None:
    msg.name = layer.name
    if legacy:
        if layer.type not in _V1_BY_TYPE:
            raise FCNError(f"layer {layer.name!r}: type {layer.type!r} has no legacy (V1) "
                           f"encoding")
        msg.type = _V1_BY_TYPE[layer.type]
    else:
        msg.type = layer.type
    msg.bottom.extend(layer.bottoms)
    msg.top.extend(layer.tops)
    if layer.conv is not None:
        c, p = layer.conv, msg.convolution_param
        p.num_output = c.num_output
        p.bias_term = c.bias_term
        if c.group != 1:
            p.group = c.group
        for values, single, h, w in ((c.kernel, p.kernel_size, "kernel_h", "kernel_w"),
                                     (c.stride, p.stride, "stride_h", "stride_w"),
                                     (c.pad, p.pad, "pad_h", "pad_w")):
            if values[0] == values[1]:
                single.append(values[0])
            else:
                setattr(p, h, values[0])
                setattr(p, w, values[1])
    if layer.pool is not None:
        p = msg.pooling_param
        p.pool = {v: k for k, v in _POOL_METHODS.items()}[layer.pool.method]
        p.kernel_h, p.kernel_w = layer.pool.kernel
        p.stride_h, p.stride_w = layer.pool.stride
        if any(layer.pool.pad):
            p.pad_h, p.pad_w = layer.pool.pad
    if not legacy:
        if layer.crop is not None:
            msg.crop_param.axis = layer.crop.axis
            msg.crop_param.offset.extend(layer.crop.offsets)
        if layer.scale_value is not None:
            msg.scale_param.filler.type = "constant"
            msg.scale_param.filler.value = layer.scale_value
    elif layer.crop is not None or layer.scale_value is not None:
        raise FCNError(f"layer {layer.name!r}: crop/scale parameters have no legacy encoding")
    for arr in layer.blobs:
        blob = msg.blobs.add()
        arr = np.asarray(arr)
        if blob_dims == "legacy":
            if arr.ndim > 4:
                raise FCNError(f"layer {layer.name!r}: a {arr.ndim}-D blob has no legacy shape")
            dims = (1,) * (4 - arr.ndim) + tuple(arr.shape)
            blob.num, blob.channels, blob.height, blob.width = dims
        else:
            blob.shape.dim.extend(int(d) for d in arr.shape)
        if dtype == "float64":
            blob.double_data = np.ascontiguousarray(arr, dtype="<f8").tobytes()
        else:
            blob.data = np.ascontiguousarray(arr, dtype="<f4").tobytes()


def encode_caffemodel(layers: Sequence[CaffeLayer], *, name: str = "", legacy: bool = False,
                      blob_dims: str = "shape", dtype: str = "float32") -> bytes:
    """Serialize ``layers`` as a binary NetParameter, as Caffe's ``Net::ToProto`` would.

    ``legacy=True`` writes V1LayerParameter ``layers``; ``blob_dims="legacy"`` writes
    num/channels/height/width instead of ``shape``; ``dtype="float64"`` fills ``double_data``.
    """
    if blob_dims not in ("shape", "legacy") or dtype not in ("float32", "float64"):
        raise ValueError(f"blob_dims must be shape|legacy and dtype float32|float64, got "
                         f"{blob_dims!r}, {dtype!r}")
    classes = schema(raw_data=True)
    net = classes["NetParameter"]()
    if name:
        net.name = name
    for layer in layers:
        msg = net.layers.add() if legacy else net.layer.add()
        _fill_message(msg, layer, legacy=legacy, blob_dims=blob_dims, dtype=dtype)
    return net.SerializeToString()


def write_caffemodel(path: str | os.PathLike, layers: Iterable[CaffeLayer], **kwargs: Any) -> Path:
    """:func:`encode_caffemodel` into ``path``, written atomically, one layer at a time (``layers``
    may be a generator, so a 540 MB net never needs to be in memory twice)."""
    classes = schema(raw_data=True)
    legacy = kwargs.pop("legacy", False)
    name = kwargs.pop("name", "")
    number = NET_LAYERS_V1 if legacy else NET_LAYER
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        if name:
            f.write(_key(NET_NAME) + _varint(len(name.encode())) + name.encode())
        for layer in layers:
            msg = classes["V1LayerParameter" if legacy else "LayerParameter"]()
            _fill_message(msg, layer, legacy=legacy, blob_dims=kwargs.get("blob_dims", "shape"),
                          dtype=kwargs.get("dtype", "float32"))
            data = msg.SerializeToString()
            del msg
            f.write(_key(number) + _varint(len(data)))
            f.write(data)
            del data
    return Path(path)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(number: int, wire: int = 2) -> bytes:
    return _varint((number << 3) | wire)
