"""Checkpoint or model -> verified, deployment-ready ONNX graph (FP32 or FP16).

Opset: default 18, accepted 17..20.
* TensorRT 11 parses opsets 9-25, TensorRT 10.15 9-24, ONNX Runtime 1.31 loads up to 25 (checked);
  18 is inside every one of these ranges with room on both sides.
* 18 is the opset torch's dynamo exporter (torchlib) is written in, so it needs no version
  conversion; the TorchScript exporter writes 7-20 natively.
* Below 17 the dynamo exporter's down-conversion fails (it silently keeps 18); above 20 the
  TorchScript exporter is past its documented maximum. Nothing an FCN uses changed after 13
  (Conv, ConvTranspose, MaxPool, Relu, Add, Slice, Shape, Gather, ArgMax, Cast, LRN), so a higher
  opset would buy nothing.

Weights live inside the .onnx file unless they exceed what one protobuf can hold (2 GiB); then they
go to ``<name>.onnx.data`` next to it (or always/never with ``external_data=True/False``). Every
file is written under a temporary name, checked and verified there, and only then renamed into
place: a failed export leaves nothing behind.
"""
from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Sequence

from fcn_deploy.errors import FCNError
from fcn_deploy.export import graph as g
from fcn_deploy.export.compare import CompareReport
from fcn_deploy.export.fp16 import convert_to_fp16
from fcn_deploy.export.torch_export import EXPORTERS, export_torch, name_dynamic_dims
from fcn_deploy.export.verify import Tolerance, VerificationReport, default_sizes, verify_onnx
from fcn_deploy.fileio import atomic_path, check_output_dir, check_run_files, scratch_dir
from fcn_deploy.meta import OUTPUT_KINDS, ModelMeta
from fcn_deploy.onnxgraph import save_model, write_meta

DEFAULT_OPSET = 18
MIN_OPSET, MAX_OPSET = 17, 20
DEFAULT_EXPORTER = "legacy"
DEFAULT_SAMPLE_SHAPE = (1, 3, 96, 128)
EXPORT_PRECISIONS = ("fp32", "fp16")
#: Larger initializers than this go to external data (protobuf's hard limit is 2 GiB).
EXTERNAL_DATA_THRESHOLD = 2 ** 31 - 2 ** 26


@dataclass
class ExportReport:
    """What ``export_model`` wrote and what it checked."""

    output_path: Path
    meta: ModelMeta
    opset: int
    exporter: str
    precision: str
    outputs: str
    node_counts: dict[str, int]
    ops: dict[str, int]
    optimizations: dict[str, Any]
    external_data: bool
    file_bytes: int
    seconds: float
    verification: VerificationReport | None = None
    comparison: CompareReport | None = None
    fp16: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        counts = " -> ".join(f"{k} {v}" for k, v in self.node_counts.items())
        opt = self.optimizations
        lines = [
            f"wrote {self.output_path} ({self.file_bytes / 2**20:.1f} MiB"
            f"{' + external data' if self.external_data else ''}) in {self.seconds:.1f} s: "
            f"{self.meta.arch}, {self.precision}, outputs {self.outputs}, opset {self.opset}, "
            f"{self.exporter} exporter",
            f"nodes: {counts}",
            f"simplify: {'on' if opt['simplify'] else 'off'}; depthwise upsampling: "
            + (f"{len(opt['depthwise_upsampling']['rewritten'])} rewritten, "
               f"{len(opt['depthwise_upsampling']['skipped_not_diagonal'])} not diagonal (kept)"
               if opt["depthwise_upsampling"] is not None else "off")
            + "; crop folding: "
            + (", ".join(f"{f['node']} +{f['begin_offsets']}" for f in opt["fold_crops"]) or "none"
               if opt["fold_crops"] is not None else "off"),
        ]
        if self.verification is not None:
            lines.append(self.verification.table())
        if self.comparison is not None:
            lines.append(self.comparison.summary())
        return "\n".join(lines)


def _check_options(opset, outputs, precision, exporter, sample_shape) -> tuple:
    opset = DEFAULT_OPSET if opset is None else opset
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise FCNError(f"opset {opset!r} is out of range: expected {MIN_OPSET}..{MAX_OPSET} "
                       f"(default {DEFAULT_OPSET}; TensorRT 10/11 and ONNX Runtime 1.31 accept these)")
    outputs = outputs or "scores"
    if outputs not in OUTPUT_KINDS:
        raise FCNError(f"outputs must be one of {', '.join(OUTPUT_KINDS)}, got {outputs!r}")
    precision = precision or "fp32"
    if precision not in EXPORT_PRECISIONS:
        raise FCNError(f"precision must be one of {', '.join(EXPORT_PRECISIONS)}, got "
                       f"{precision!r} (INT8 graphs come from fcn-quantize)")
    exporter = exporter or DEFAULT_EXPORTER
    if exporter not in EXPORTERS:
        raise FCNError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    shape = tuple(int(d) for d in (sample_shape or DEFAULT_SAMPLE_SHAPE))
    if len(shape) != 4 or shape[1] != 3 or min(shape) < 1:
        raise FCNError(f"sample shape {shape} must be N x 3 x H x W with positive sizes")
    return opset, outputs, precision, exporter, shape


def _weights_bytes(model) -> int:
    import numpy as np
    from onnx import helper

    total = 0
    for t in model.graph.initializer:
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
        total += int(np.prod(t.dims, dtype=np.int64)) * itemsize
    return total


def _default_meta(model) -> ModelMeta:
    arch = getattr(model, "arch", None)
    classes = getattr(model, "num_classes", None)
    if arch is None or classes is None:
        raise FCNError("no metadata given and the model has no .arch/.num_classes; pass a ModelMeta")
    return ModelMeta.default(arch, int(classes), arch_kwargs=dict(getattr(model, "arch_kwargs", {})))


def _tiling_of(model) -> dict[str, int]:
    """The model's tiling geometry for the metadata; empty when it cannot be measured (a custom
    module without a ``score_fr`` layer), so tiled inference refuses it with a clear error."""
    # lazy: fcn_deploy.models imports torch; export's import stays torch-free
    from fcn_deploy.models.analysis import tile_geometry

    try:
        return tile_geometry(model).to_dict()
    except FCNError:
        return {}


def build_graph(model, meta: ModelMeta, *, opset: int, outputs: str, precision: str,
                exporter: str, sample_shape: tuple, simplify: bool, depthwise_upsampling: bool,
                fold_crops: bool, progress=None,
                work_dir: Path | None = None) -> tuple[Any, Any, dict]:
    """Export and optimize in memory. Returns (final model, FP32 model before the label head and
    the FP16 conversion, info dict with node counts, optimizations and fp16 details)."""
    def step(text):
        if progress is not None:
            progress.set_postfix_str(text)
            progress.update(1)

    was_training = model.training
    model.eval()  # dropout off: the graph is the inference net
    try:
        proto = export_torch(model, sample_shape=sample_shape, opset=opset, exporter=exporter,
                             work_dir=work_dir)
    finally:
        model.train(was_training)
    got = proto.opset_import[0].version if proto.opset_import else None
    if got != opset:
        raise FCNError(f"the {exporter} exporter wrote opset {got}, not the requested {opset}; "
                       f"choose another opset in {MIN_OPSET}..{MAX_OPSET}")
    step("exported")
    heads = meta.head_specs()
    got_names = [o.name for o in proto.graph.output]
    if got_names != [h.scores_output for h in heads]:
        raise FCNError(f"the model's outputs are {got_names}; its metadata describes "
                       f"{[h.scores_output for h in heads]} (one per head)")
    for head, output in zip(heads, proto.graph.output):
        scores_dims = output.type.tensor_type.shape.dim
        if len(scores_dims) != 4 or scores_dims[1].dim_value != head.num_classes:
            shape = [d.dim_value or d.dim_param for d in scores_dims]
            raise FCNError(f"the model's output {output.name} has shape {shape}; expected N x "
                           f"{head.num_classes} x H x W (the classes of head {head.name!r} in "
                           "the metadata)")
    counts = {"exported": g.node_count(proto)}
    if simplify:
        proto = g.simplify(proto)
        counts["simplified"] = g.node_count(proto)
    step("simplified")
    optimizations: dict[str, Any] = {"simplify": bool(simplify), "depthwise_upsampling": None,
                                     "fold_crops": None}
    if depthwise_upsampling:
        optimizations["depthwise_upsampling"] = g.depthwise_upsampling(proto)
    if fold_crops:
        optimizations["fold_crops"] = g.fold_crops(proto)
    step("optimized")
    fp32 = proto
    fp16_info: dict[str, Any] = {}
    if precision == "fp16":
        proto, fp16_info = convert_to_fp16(copy.deepcopy(proto))
    add_label_heads(proto, meta, outputs)
    name_dynamic_dims(proto)
    counts["final"] = g.node_count(proto)
    step("converted" if precision == "fp16" else "finished")
    info = {"node_counts": counts, "optimizations": optimizations, "fp16": fp16_info,
            "ops": g.op_histogram(proto)}
    return proto, fp32, info


def add_label_heads(proto, meta: ModelMeta, outputs: str) -> None:
    """Add each head's ``labels`` output (argmax in the graph) when ``outputs`` asks for labels;
    with "labels" alone the scores outputs go. The graph's outputs then follow
    ``meta.output_names(outputs)``: every head's scores, then every head's labels."""
    if outputs not in ("labels", "both"):
        return
    for head in meta.head_specs():
        g.add_label_head(proto, scores=head.scores_output, labels=head.labels_output,
                         keep_scores=(outputs == "both"))
    order = {name: k for k, name in enumerate(meta.output_names(outputs))}
    ordered = sorted(proto.graph.output, key=lambda o: order.get(o.name, len(order)))
    del proto.graph.output[:]
    proto.graph.output.extend(ordered)


@dataclass
class ExportOptions:
    """How :func:`export_model` exports and checks a graph (the fcn-export flags, as one object).

    Defaults: opset 18, the dynamo exporter, "scores" out, FP32, every graph optimization on,
    external data above 1.5 GiB of weights, verification on at the default sizes.
    """

    opset: int | None = None
    outputs: str | None = None
    precision: str | None = None
    exporter: str | None = None
    sample_shape: Sequence[int] | None = None
    simplify: bool = True
    depthwise_upsampling: bool = True
    fold_crops: bool = True
    external_data: bool | None = None
    verify: bool = True
    verify_sizes: Sequence[Sequence[int]] | None = None
    atol: float | None = None
    rtol: float | None = None
    fp32_reference: Any = None
    threads: int | None = None
    progress: bool = False

    def with_changes(self, **changes: Any) -> "ExportOptions":
        """A copy with ``changes``; an unknown name is an FCNError listing the known ones."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise FCNError(f"unknown export option(s) {', '.join(unknown)}; expected some of "
                           f"{', '.join(sorted(known))}")
        return replace(self, **changes)


def export_model(model, meta: ModelMeta | None, output_path, *,
                 options: ExportOptions | None = None, **changes: Any) -> ExportReport:
    """Export ``model`` to ``output_path`` with dynamic batch/height/width, verified.

    ``outputs``: "scores" (float32 N x C x H x W, default), "labels" (uint8 N x H x W, argmax in
    the graph) or "both". ``precision``: "fp32" (default) or "fp16" (FP16 weights and arithmetic,
    FP32 input/outputs). ``simplify``/``depthwise_upsampling``/``fold_crops`` switch the graph
    optimizations (all on by default; which ones applied is recorded in ``meta.extra``).
    ``verify`` (default on) runs the ONNX checker and ONNX Runtime against PyTorch at
    ``verify_sizes`` (default: the sample shape, a smaller odd batch of 2, a larger odd size); a
    failure raises FCNError and leaves no file. ``fp32_reference`` (a path) with FP16 also writes
    the FP32 graph (same outputs and metadata, precision fp32) there, to compare accuracy against:
    :func:`fcn_deploy.evaluate.export_compared` (fcn-export ``--eval-dataset``) does that and
    fills the report's ``comparison``; the export stage itself runs no evaluation.

    The options are an :class:`ExportOptions` (``options=``) and/or its fields as keywords
    (``verify=False``), the keywords applied on top.
    """
    start = time.perf_counter()
    o = (options or ExportOptions()).with_changes(**changes)
    opset, outputs, precision, exporter, sample_shape = (o.opset, o.outputs, o.precision,
                                                         o.exporter, o.sample_shape)
    simplify, depthwise_upsampling, fold_crops = o.simplify, o.depthwise_upsampling, o.fold_crops
    external_data, verify, verify_sizes, atol, rtol = (o.external_data, o.verify, o.verify_sizes,
                                                       o.atol, o.rtol)
    fp32_reference, threads, progress = o.fp32_reference, o.threads, o.progress
    Tolerance(atol=0.0 if atol is None else atol, rtol=0.0 if rtol is None else rtol)  # before work
    opset, outputs, precision, exporter, shape = _check_options(opset, outputs, precision,
                                                                exporter, sample_shape)
    output_path = check_output_dir(output_path)
    if output_path.is_dir():
        raise FCNError(f"output path {output_path} is a folder; expected a .onnx file name")
    if fp32_reference is not None and precision == "fp32":
        raise FCNError("fp32_reference is the FP32 graph to compare an FP16 export with; use it "
                       "with precision fp16")
    meta = meta if meta is not None else _default_meta(model)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=5 + bool(verify), desc="export", unit="step", leave=False)
    try:
        with scratch_dir(output_path) as work:  # the exporter's scratch files, next to the output
            proto, fp32_proto, info = build_graph(
                model, meta, opset=opset, outputs=outputs, precision=precision,
                exporter=exporter, sample_shape=shape, simplify=simplify,
                depthwise_upsampling=depthwise_upsampling, fold_crops=fold_crops, progress=bar,
                work_dir=work)
        extra = dict(meta.extra)
        extra["export"] = {"opset": opset, "exporter": exporter, "node_counts": info["node_counts"],
                           "optimizations": info["optimizations"]}
        if info["fp16"]:
            extra["export"]["fp16"] = info["fp16"]
        final_meta = meta.replace(precision=precision, outputs=outputs, extra=extra,
                                  tiling=meta.tiling or _tiling_of(model))
        write_meta(proto, final_meta)
        external = (_weights_bytes(proto) > EXTERNAL_DATA_THRESHOLD if external_data is None
                    else bool(external_data))
        report_verify = None

        def check(staged: Path) -> None:
            nonlocal report_verify
            save_model(proto, staged, external=external)
            if not verify:
                return
            sizes = verify_sizes or default_sizes(shape)
            report_verify = verify_onnx(staged, model, sizes=sizes, mean=final_meta.mean,
                                        precision=precision, atol=atol, rtol=rtol,
                                        threads=threads, progress=progress)
            report_verify.path = str(output_path)
            if bar is not None:
                bar.update(1)
            if not report_verify.passed:
                raise FCNError(f"verification of the exported graph failed; nothing was "
                               f"written to {output_path}\n{report_verify.table()}")

        data_path = output_path.parent / (output_path.name + ".data")
        if external:
            # the graph names its weight file, so both are staged under their final names
            with scratch_dir(output_path) as staging:
                check(staging / output_path.name)
                os.replace(staging / data_path.name, data_path)
                os.replace(staging / output_path.name, output_path)
        else:
            with atomic_path(output_path, suffix=".onnx") as staged:
                check(staged)
            if data_path.is_file():  # a stale weight file from an earlier external-data export
                data_path.unlink()
        if fp32_reference is not None:
            ref_proto = copy.deepcopy(fp32_proto)
            add_label_heads(ref_proto, meta, outputs)
            write_meta(ref_proto, final_meta.replace(precision="fp32"))
            save_model(ref_proto, Path(fp32_reference), external=external)
    finally:
        if bar is not None:
            bar.close()
    return ExportReport(output_path=output_path, meta=final_meta, opset=opset, exporter=exporter,
                        precision=precision, outputs=outputs, node_counts=info["node_counts"],
                        ops=info["ops"], optimizations=info["optimizations"],
                        external_data=external, file_bytes=output_path.stat().st_size,
                        seconds=time.perf_counter() - start, verification=report_verify,
                        fp16=info["fp16"])


def export_checkpoint(checkpoint_path, output_path, **options) -> ExportReport:
    """Load a checkpoint (``fcn_deploy.models.checkpoint.load_model``) and ``export_model`` it.

    The metadata (classes, palette, mean, ...) comes from the checkpoint; options as for
    ``export_model``.
    """
    output_path = Path(output_path)
    # before loading a large checkpoint: a missing/unwritable folder, or -o naming the input
    check_run_files("fcn-export", inputs=[("checkpoint", checkpoint_path)],
                    outputs=[("output", output_path),
                             ("external weights", output_path.parent / (output_path.name + ".data"))])
    model, meta = load_checkpoint_model(checkpoint_path)
    return export_model(model, meta, output_path, **options)


def load_checkpoint_model(checkpoint_path):
    """(model in eval mode, ModelMeta) from a checkpoint; every failure is an FCNError."""
    path = Path(checkpoint_path)
    if not path.is_file():
        raise FCNError(f"checkpoint {path} does not exist")
    # lazy: fcn_deploy.models imports torch; export's import stays torch-free
    from fcn_deploy.models.checkpoint import load_model

    try:
        return load_model(path, map_location="cpu")
    except FCNError:
        raise
    except Exception as exc:  # torch.load raises many types on corrupt or foreign files
        raise FCNError(f"{path} is not a readable fcn-deploy checkpoint "
                       f"({type(exc).__name__}: {str(exc)[:200]})") from None
