"""INT8 post-training quantization of an FP32 FCN graph into explicit Q/DQ form for TensorRT.

ONNX Runtime's ``quantize_static`` does the calibration statistics and inserts the Q/DQ nodes;
this module chooses its settings so the result follows TensorRT's explicit-quantization rules
(see :mod:`fcn_deploy.quantize.trt_rules`), decides which layers stay in float, carries the
toolkit metadata over and writes the result atomically.

Why each setting:
- QDQ format, QInt8 activations and weights: TensorRT reads only Q/DQ and only signed INT8.
- ActivationSymmetric / WeightSymmetric: TensorRT needs zero points 0 (ONNX Runtime's default
  for activations is asymmetric, which TensorRT rejects).
- per_channel with Conv weights along axis 0 (output channels): TensorRT's per-channel axis.
- ConvTranspose weights per-tensor (TensorQuantOverrides): the only form TensorRT certainly
  accepts, used when upsampling is quantized; by default the fixed bilinear upsampling stays in
  float (see DEFAULT_EXCLUDE).
- QuantizeBias=False: TensorRT's DequantizeLinear takes int8 only, so biases stay float.
- CalibStridedMinMax=1: one image per statistics pass, which lets the histogram calibrators
  (entropy, percentile) take images of different sizes and keeps memory to one image's
  activations (ONNX Runtime stacks a pass's tensors, which fails for mixed sizes).
"""
from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import logging
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from fcn_deploy.errors import FCNError
from fcn_deploy.fileio import RunFiles, atomic_path, scratch_dir
from fcn_deploy.meta import InputSpec, ModelMeta
from fcn_deploy.onnxgraph import (QDQ_OPS, QUANTIZED_GRAPH_OPS, Graph, graph_inputs,
                                  half_precision_parts, load_model, meta_props, read_meta_if_any,
                                  remove_unused_initializers, save_model, write_meta)
from fcn_deploy.quantize.cache import CacheKey, file_sha256, read_cache, write_cache
from fcn_deploy.quantize.calibration import as_calibration_reader
from fcn_deploy.quantize.trt_rules import check_trt_qdq, int8_group_misfits

METHODS = ("minmax", "entropy", "percentile")
#: Layer kinds that can be kept in float by kind.
KINDS = ("first_conv", "score", "upsample")
#: Kept in float unless told otherwise: the score layers and the fixed bilinear upsampling.
#: Chosen by measurement (README sensitivity table): every combination kept the demo model's
#: mean IU within 1 point, and this one agrees with FP32 on as many pixels as any while costing
#: almost nothing (the score layers are 1x1 convs to C channels, under 0.1% of FCN-8s' MACs).
#: It also avoids INT8 ConvTranspose, whose per-channel support in TensorRT is uncertain, and
#: lets ONNX Runtime run every backbone conv on its uint8 kernels (a pool output shared by a
#: quantized backbone conv and a quantized score layer keeps both in float there).
DEFAULT_EXCLUDE: tuple[str, ...] = ("score", "upsample")
#: Op types given Q/DQ: the convolutions, and the max pools and ReLUs between them (so that
#: INT8 flows from one convolution to the next). Adds, crops, the argmax head stay float.
QUANTIZED_OPS = ("Conv", "ConvTranspose", "MaxPool", "Relu")
QUANT_OPS_FORBIDDEN = QUANTIZED_GRAPH_OPS


class MissingMetadataWarning(UserWarning):
    """The input graph has no toolkit metadata; defaults were used (stated in the message)."""


@dataclass
class QuantizeConfig:
    """Settings of one INT8 quantization run; None means the default.

    ``method``/``percentile``: percentile 99.99 by default, chosen by measurement (README): on
    the demo models it kept mean IU within 1 point in every run, where min-max lost up to 3.2
    points and entropy up to 1.5 (outliers set min-max's ranges; 99.9 already clips too much).
    ``exclude_kinds``: layer kinds kept in float (``first_conv``, ``score``, ``upsample``);
    None means :data:`DEFAULT_EXCLUDE`, ``()`` quantizes everything. ``exclude_names``: node
    names or layer names (a weight's prefix, e.g. ``score_fr``), shell patterns allowed.
    """

    method: str = "percentile"
    percentile: float = 99.99
    num_images: int | None = None
    exclude_kinds: Sequence[str] | None = None
    exclude_names: Sequence[str] = ()
    progress: bool = True
    calibration_cache: str | None = None

    def __post_init__(self) -> None:
        self.method = self.method.lower().replace("-", "").replace("_", "")
        if self.method not in METHODS:
            raise FCNError(f"calibration method {self.method!r} is unknown; expected one of "
                           f"{', '.join(METHODS)}")
        if not 0 < self.percentile <= 100:
            raise FCNError(f"percentile {self.percentile} is out of range; expected 0 < p <= 100")
        kinds = DEFAULT_EXCLUDE if self.exclude_kinds is None else tuple(self.exclude_kinds)
        bad = [k for k in kinds if k not in KINDS]
        if bad:
            raise FCNError(f"unknown layer kind(s) {', '.join(bad)} to keep in float; expected "
                           f"any of {', '.join(KINDS)}")
        self.exclude_kinds = tuple(kinds)
        self.exclude_names = tuple(self.exclude_names)


@dataclass
class QuantizeResult:
    """What a run produced: the output path, the layers kept in float and the calibration facts."""

    output: Path
    method: str
    num_images: int
    skipped_images: list[str]
    excluded_nodes: list[str]
    quantized_nodes: list[str]
    image_sizes: list[tuple[int, int]]
    seconds: float
    cache_used: Path | None = None  # ranges read from this calibration cache (no calibration run)


# -- graph inspection ------------------------------------------------------------------------
def load_fp32_graph(path: str | os.PathLike):
    """Load an ONNX file and refuse anything that is not a plain FP32 graph."""
    import onnx

    path = Path(path)
    model = load_model(path, external_data=True)
    quant = sorted({n.op_type for n in model.graph.node if n.op_type in QUANT_OPS_FORBIDDEN})
    if quant:
        raise FCNError(f"{path} is already quantized (it has {', '.join(quant)} nodes); "
                       "expected an FP32 graph (quantize the FP32 export instead)")
    half, casts = half_precision_parts(model)
    if half or casts:
        raise FCNError(f"{path} is an FP16 graph ({len(half)} half-precision weights, "
                       f"{len(casts)} casts to half); expected the FP32 export")
    inputs = graph_inputs(model)
    if not inputs:
        raise FCNError(f"{path} has no input; expected the image input(s) of an FCN graph")
    for inp in inputs:
        if inp.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            raise FCNError(f"{path}: input {inp.name!r} is not float32; expected an FP32 graph")
    precision = meta_props(model).get("precision")
    if precision is not None and precision != "fp32":
        raise FCNError(f"{path} has precision {precision!r} in its metadata; expected an fp32 graph")
    return model


def _infer_num_classes(model) -> int | None:
    for out in model.graph.output:
        dims = out.type.tensor_type.shape.dim
        if out.name.startswith("scores") and len(dims) == 4 and dims[1].HasField("dim_value"):
            return int(dims[1].dim_value)
    g = Graph(model)
    for node in g.nodes:
        if node.op_type == "ConvTranspose":
            w = g.constant(node.input[1])
            if w is not None and w.ndim == 4:
                return int(w.shape[1])
    convs = [n for n in g.nodes if n.op_type == "Conv"]
    if convs:
        w = g.constant(convs[-1].input[1])
        if w is not None:
            return int(w.shape[0])
    return None


def model_meta(model, path: str | os.PathLike | None = None):
    """The graph's toolkit metadata, or defaults (with a warning stating them) when it has none."""
    meta = read_meta_if_any(model, path)
    if meta is not None:
        return meta
    num_classes = _infer_num_classes(model)
    if num_classes is None:
        raise FCNError(f"{path} has no fcn-deploy metadata and its number of classes cannot be "
                       "read from the graph; export it with fcn-export")
    meta = ModelMeta.default("unknown", num_classes)
    warnings.warn(f"{path} has no fcn-deploy metadata; using defaults: {num_classes} classes "
                  f"(from the graph), mean {meta.mean} in {meta.channel_order} order, no "
                  "scaling, ignore label 255", MissingMetadataWarning, stacklevel=3)
    return meta


def _constants_to_initializers(model) -> int:
    """Make weights plain initializers: Constant nodes holding tensors become initializers and
    Identity nodes over an initializer are bypassed (exporters emit both for frozen or shared
    weights; ONNX Runtime's quantizer treats only initializers read directly as weights)."""
    keep, moved = [], 0
    for node in model.graph.node:
        value = [a for a in node.attribute if a.name == "value"] if node.op_type == "Constant" else []
        if value and len(node.attribute) == 1:
            tensor = type(value[0].t)()
            tensor.CopyFrom(value[0].t)
            tensor.name = node.output[0]
            model.graph.initializer.append(tensor)
            moved += 1
        else:
            keep.append(node)
    # Identity of a constant (exporters' weight de-duplication): read the constant directly.
    inits = {t.name for t in model.graph.initializer}
    outputs = {o.name for o in model.graph.output}
    alias = {}
    for node in list(keep):
        if node.op_type == "Identity" and node.input[0] in inits and node.output[0] not in outputs:
            alias[node.output[0]] = node.input[0]
            keep.remove(node)
            moved += 1
    for node in keep:
        for i, name in enumerate(node.input):
            if name in alias:
                node.input[i] = alias[name]
    if moved:
        del model.graph.node[:]
        model.graph.node.extend(keep)
    return moved


def _untie_weights(model) -> int:
    """Give every Conv/ConvTranspose its own weight initializer (a copy where layers share one).

    Identical frozen kernels (FCN upsampling layers) are exported once and read through an
    Identity, which :func:`_constants_to_initializers` resolves to one initializer. Quantized, it is
    one int8 initializer behind one DequantizeLinear feeding two layers, and ONNX Runtime's exact
    U8U8 mode (session.x64quantprecision, the default on x86 CPUs without VNNI) then fails to
    load the graph ("Attempt to replace the existing tensor": it converts the shared weight to
    uint8 once per layer). Returns the number of copies made."""
    inits = {t.name: t for t in model.graph.initializer}
    taken = set(inits) | {o for n in model.graph.node for o in n.output}
    seen: set[str] = set()
    copies = 0
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose") or len(node.input) < 2:
            continue
        name = node.input[1]
        if name not in inits:
            continue
        if name in seen:
            copy = type(inits[name])()
            copy.CopyFrom(inits[name])
            base = f"{node.name or node.op_type}.weight"
            copy.name = base
            i = 1
            while copy.name in taken:
                copy.name, i = f"{base}_{i}", i + 1
            taken.add(copy.name)
            model.graph.initializer.append(copy)
            node.input[1] = copy.name
            copies += 1
        seen.add(node.input[1])
    return copies


def _ensure_node_names(model) -> None:
    used = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)


def find_layer_kinds(model, *, num_classes: int | Sequence[int] | None = None
                     ) -> dict[str, list[str]]:
    """Node names of each sensitive kind: ``first_conv``, ``score`` and ``upsample``.

    first_conv: the Conv(s) reading a graph input directly (one per input stream). score: 1x1
    Convs producing ``num_classes`` channels (score_fr, score_pool4, score_pool3; a multi-head
    net gives each head's class count). upsample: ConvTranspose and Resize nodes (the bilinear
    upsampling).
    """
    g = Graph(model)
    num_classes = num_classes or _infer_num_classes(model)
    classes = set(num_classes) if isinstance(num_classes, (list, tuple, set)) else {num_classes}
    kinds: dict[str, list[str]] = {k: [] for k in KINDS}
    convs = [n for n in g.nodes if n.op_type == "Conv"]
    first = [n.name for n in convs if n.input[0] in g.graph_inputs]
    kinds["first_conv"] = first or ([convs[0].name] if convs else [])
    for node in convs:
        w = g.constant(node.input[1])
        if w is not None and w.ndim == 4 and w.shape[0] in classes and w.shape[2:] == (1, 1):
            kinds["score"].append(node.name)
    kinds["upsample"] = [n.name for n in g.nodes if n.op_type in ("ConvTranspose", "Resize")]
    return kinds


def _layer_name(param: str) -> str:
    for suffix in (".weight", ".bias"):
        if param.endswith(suffix):
            return param[: -len(suffix)]
    return param


def select_excluded_nodes(model, *, kinds: Sequence[str], names: Sequence[str],
                          num_classes: int | Sequence[int] | None = None) -> list[str]:
    """Nodes kept in float: those of the given kinds plus those matching ``names``.

    A name matches a node by its node name or by the layer name of one of its weights
    (``score_fr`` matches the Conv that reads ``score_fr.weight``); shell patterns are allowed.
    A name that matches nothing is an error (it is most likely a typo).
    """
    by_kind = find_layer_kinds(model, num_classes=num_classes)
    chosen: list[str] = []
    for kind in kinds:
        chosen.extend(by_kind[kind])
    inits = {t.name for t in model.graph.initializer}
    for pattern in names:
        hits = []
        for node in model.graph.node:
            layers = [_layer_name(i) for i in node.input if i in inits]
            if fnmatch.fnmatchcase(node.name, pattern) or any(
                    fnmatch.fnmatchcase(layer, pattern) for layer in layers):
                hits.append(node.name)
        if not hits:
            examples = [n.name for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")]
            raise FCNError(f"--exclude {pattern!r} matches no node; expected a node name or a "
                           f"layer name such as {', '.join(examples[:4])}")
        chosen.extend(hits)
    seen: set[str] = set()
    return [n for n in chosen if not (n in seen or seen.add(n))]


def float_reads_float(model, excluded: Sequence[str]) -> int:
    """Let nodes that stay in float read the float tensor instead of its Q/DQ copy.

    ONNX Runtime's quantizer routes every consumer of a quantized tensor through the
    DequantizeLinear, including layers kept in float and Shape nodes. Reading the original
    tensor is more accurate for them, and it matters for speed on the CPU: ONNX Runtime converts
    an int8 Q/DQ pair to its fast uint8 kernels only when the QuantizeLinear feeds a single
    DequantizeLinear, so a pool output shared by a backbone conv and a (float) score layer, or
    the image shared with a Shape node, would otherwise keep the quantized conv in float.
    Q/DQ nodes left without consumers are removed. Returns the number of inputs rewired.
    """
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    float_nodes = set(excluded)
    rewired = 0
    for node in graph.node:
        is_float = (node.name in float_nodes or node.op_type == "Shape"
                    or node.op_type not in QUANTIZED_OPS + QDQ_OPS)
        if not is_float:
            continue
        for i, name in enumerate(node.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear":
                continue
            node.input[i] = q.input[0]
            rewired += 1
    outputs = {o.name for o in graph.output}
    while True:  # drop Q/DQ nodes nobody reads any more
        used = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if n.op_type in QDQ_OPS and n.output[0] not in used]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    remove_unused_initializers(model)  # the scales and zero points of the dropped Q/DQ
    return rewired


# -- quantization ------------------------------------------------------------------------------
def _ort_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[method]


def trt_extra_options(model, config: QuantizeConfig) -> dict[str, Any]:
    """ONNX Runtime ``extra_options`` that make ``quantize_static`` emit TensorRT-ready Q/DQ."""
    g = Graph(model)
    overrides = {}
    for node in g.nodes:
        if node.op_type == "ConvTranspose" and g.is_constant(node.input[1]):
            overrides[node.input[1]] = [{"symmetric": True}]  # per-tensor weights
    options: dict[str, Any] = {
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "QuantizeBias": False,
        "QDQOpTypePerChannelSupportToAxis": {"Conv": 0},
        "CalibStridedMinMax": 1,
    }
    if overrides:
        options["TensorQuantOverrides"] = overrides
    if config.method == "percentile":
        options["CalibPercentile"] = float(config.percentile)
    return options


@contextlib.contextmanager
def _quiet_ort():
    """ONNX Runtime's quantizer prints progress to stdout and nags about pre-processing."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def quantize_onnx(input_path: str | os.PathLike, output_path: str | os.PathLike,
                  calibration: Any, *, config: QuantizeConfig | None = None,
                  seed: int | None = None) -> QuantizeResult:
    """Calibrate ``input_path`` (FP32 ONNX) on ``calibration`` and write an INT8 Q/DQ graph.

    ``calibration`` is a reader (``get_next()``/``rewind()``), a folder of images, a dataset
    spec or a dataset. The output keeps the dynamic height/width, carries the input's metadata
    with precision ``int8`` and the calibration settings in ``extra["calibration"]``, is checked
    against TensorRT's Q/DQ rules (an FCNError lists violations) and written atomically.
    """
    import onnxruntime
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    config = config or QuantizeConfig()
    input_path, output_path = Path(input_path), Path(output_path)
    cache_path = Path(config.calibration_cache) if config.calibration_cache else None
    plan = RunFiles("fcn-quantize")
    plan.read_model("FP32 model", input_path)
    plan.read("calibration cache", cache_path)  # read, and rewritten in place: never an output
    if cache_path is not None:  # written after calibration: its folder is checked before
        plan.write_folder("calibration cache folder", cache_path.parent, create=False)
    if isinstance(calibration, (str, os.PathLike)) and Path(calibration).exists():
        plan.read("calibration source", calibration)
    plan.write("output", output_path)
    plan.check()
    start = time.perf_counter()
    model = load_fp32_graph(input_path)
    if not any(n.op_type == "Conv" for n in model.graph.node):
        raise FCNError(f"{input_path} has no Conv layer, so there is nothing to quantize; "
                       "expected an FCN graph from fcn-export")
    meta = model_meta(model, input_path)
    _constants_to_initializers(model)
    _ensure_node_names(model)
    _untie_weights(model)
    specs = graph_input_specs(model, meta, input_path)
    reader = as_calibration_reader(calibration, inputs=specs, limit=config.num_images, seed=seed,
                                   progress=config.progress)
    excluded = select_excluded_nodes(model, kinds=config.exclude_kinds,
                                     names=config.exclude_names,
                                     num_classes=[h.num_classes for h in meta.head_specs()])
    # Grouped Convs TensorRT cannot run in INT8 (channels per group not a multiple of 4, e.g. a
    # narrow FCN-AlexNet's conv2) stay in float, like the kinds asked for.
    excluded += [n for n in int8_group_misfits(model) if n not in excluded]
    options = trt_extra_options(model, config)
    key = ranges = None
    if cache_path is not None:
        key = CacheKey(model_sha256=file_sha256(input_path), method=config.method,
                       percentile=config.percentile if config.method == "percentile" else None,
                       source=_describe_source(calibration, seed),
                       num_images=len(reader) if hasattr(reader, "__len__") else -1)
        ranges = read_cache(cache_path, key)
    # Scratch files (ours and ONNX Runtime's) live in one hidden folder next to the output,
    # removed on every exit path (SIGTERM included: commands raise on it).
    with scratch_dir(output_path) as tmp, _tempdir(str(tmp)):
        src = Path(tmp) / "fp32.onnx"
        save_model(model, src)
        raw = Path(tmp) / "int8.onnx"
        ort_cache = Path(tmp) / "ranges.json"
        if ranges is not None:
            ort_cache.write_text(json.dumps(ranges), encoding="utf-8")
        try:
            with _quiet_ort():
                quantize_static(str(src), str(raw), reader, quant_format=QuantFormat.QDQ,
                                per_channel=True, activation_type=QuantType.QInt8,
                                weight_type=QuantType.QInt8, nodes_to_exclude=list(excluded),
                                op_types_to_quantize=list(QUANTIZED_OPS),
                                calibrate_method=_ort_method(config.method),
                                calibration_providers=["CPUExecutionProvider"],
                                extra_options=options,
                                calibration_cache_path=ort_cache if key is not None else None)
        except (ValueError, KeyError) as exc:  # the calibrator's complaints about the graph/data
            raise FCNError(f"ONNX Runtime could not quantize {input_path}: {exc}") from None
        if key is not None and ranges is None:
            write_cache(cache_path, key, json.loads(ort_cache.read_text(encoding="utf-8")))
        qmodel = load_model(raw, external_data=True)
    float_reads_float(qmodel, excluded)
    sizes = list(getattr(reader, "shapes", []))
    skipped = list(getattr(reader, "skipped", []))
    num_images = len(reader) if hasattr(reader, "__len__") else len(sizes)
    if ranges is not None:  # no calibration ran: the ranges and their image count are the cache's
        sizes, skipped, num_images = [], [], key.num_images
    dq_fed = {n.output[0] for n in qmodel.graph.node if n.op_type == "DequantizeLinear"}
    quantized = [n.name for n in qmodel.graph.node if n.op_type in ("Conv", "ConvTranspose")
                 and len(n.input) > 1 and n.input[0] in dq_fed and n.input[1] in dq_fed]
    calib = {
        "method": config.method,
        "num_images": num_images,
        "skipped_images": len(skipped),
        "from_cache": ranges is not None,
        "excluded_kinds": list(config.exclude_kinds),
        "excluded_names": list(config.exclude_names),
        "excluded_nodes": excluded,
        "quantized_layers": len(quantized),
        "quantizer": f"onnxruntime {onnxruntime.__version__} quantize_static (QDQ, symmetric "
                     "int8, per-channel Conv weights axis 0, per-tensor ConvTranspose weights, "
                     "float biases)",
    }
    if config.method == "percentile":
        calib["percentile"] = float(config.percentile)
    if sizes:
        calib["image_sizes"] = {"min_hw": [min(s[0] for s in sizes), min(s[1] for s in sizes)],
                                "max_hw": [max(s[0] for s in sizes), max(s[1] for s in sizes)]}
    extra = dict(meta.extra)
    extra["calibration"] = calib
    write_meta(qmodel, meta.replace(precision="int8", extra=extra))
    renamed = [f"{a} -> {b}" for a, b in zip(_io_names(model), _io_names(qmodel)) if a != b]
    if renamed or len(_io_names(model)) != len(_io_names(qmodel)):
        raise FCNError(f"the quantized graph's inputs/outputs are {_io_names(qmodel)}, not the "
                       f"FP32 graph's {_io_names(model)}; nothing was written")
    violations = check_trt_qdq(qmodel)
    if violations:
        shown = "\n  ".join(violations[:20])
        raise FCNError(f"the quantized graph breaks TensorRT's Q/DQ rules "
                       f"({len(violations)} problems); nothing was written:\n  {shown}")
    with atomic_path(output_path, suffix=".onnx") as tmp_out:
        save_model(qmodel, tmp_out)
    return QuantizeResult(output=output_path, method=config.method, num_images=num_images,
                          skipped_images=skipped, excluded_nodes=excluded,
                          quantized_nodes=quantized, image_sizes=sizes,
                          seconds=time.perf_counter() - start,
                          cache_used=cache_path if ranges is not None else None)


def graph_input_specs(model, meta: ModelMeta, path: Any = None) -> list[InputSpec]:
    """The graph's inputs as the calibration reader feeds them: its metadata's, which must name
    the graph's inputs in order; a graph without metadata has one image input (any name)."""
    names = [i.name for i in graph_inputs(model)]
    specs = meta.input_specs()
    if not meta_props(model) and len(names) == 1:
        return [replace(specs[0], name=names[0])]
    if [s.name for s in specs] != names:
        raise FCNError(f"{path}: the graph's inputs are {names} but its metadata describes "
                       f"{[s.name for s in specs]}; re-export it with fcn-export")
    return specs


def _io_names(model) -> list[str]:
    return [i.name for i in graph_inputs(model)] + [o.name for o in model.graph.output]


def _describe_source(calibration: Any, seed: int | None) -> str:
    """The calibration source as a cache key: a folder's real path, a spec (+ seed), a type."""
    if isinstance(calibration, (str, os.PathLike)):
        path = Path(calibration)
        if path.is_dir():
            return os.path.realpath(path)
        text = os.fspath(calibration)
        return f"{text} (seed {seed})" if text.lower().startswith("synthetic") else text
    return type(calibration).__name__


@contextlib.contextmanager
def _tempdir(folder: str):
    """Point ``tempfile`` at ``folder`` meanwhile: ONNX Runtime's quantizer makes its own
    temporary folders there, so an interrupted run leaves nothing in the system's."""
    previous = tempfile.tempdir
    tempfile.tempdir = folder
    try:
        yield
    finally:
        tempfile.tempdir = previous
