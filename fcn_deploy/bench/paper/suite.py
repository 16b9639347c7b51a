"""The paper's timing reproduction in one run: Table 1, section 3.1, backends, export
optimizations, the latency curve and the targets, all on one machine with one thread count.

Models are built one at a time with random weights (timing does not depend on them), exported to
the work folder, timed, and dropped before the next, so a full-width VGG16 never shares memory
with another. The FP32 peak is measured before, between models and after (the best sample
counts), so a machine that was busier at some moment does not understate it.
"""
from __future__ import annotations

import gc
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from fcn_deploy.bench.artifact import time_interleaved
from fcn_deploy.bench.flops import MacCount, artifact_macs, onnx_macs, torch_macs
from fcn_deploy.bench.paper.artifacts import build_model, export_variant, quantize_variant
from fcn_deploy.bench.paper.config import COMPARISON_MODELS, SCALING_MODELS, PaperConfig
from fcn_deploy.bench.paper.facts import DISPLAY, paper_row
from fcn_deploy.bench.paper.markdown import render_markdown
from fcn_deploy.bench.paper.patchwise import run_patchwise
from fcn_deploy.bench.paper.plots import plot_scaling, plot_table1
from fcn_deploy.bench.paper.targets import evaluate_targets
from fcn_deploy.bench.peak import measure_peak
from fcn_deploy.bench.pipeline import (STAGES, OrtPipeline, TorchPipeline, make_ort_session,
                                       pipeline_for_runner)
from fcn_deploy.bench.profile import CONV_OPS, ort_profile
from fcn_deploy.bench.report import (environment, load_avg_1min, prepare_output_dir, write_csv,
                                     write_json, write_text)
from fcn_deploy.constants import VGG_MEAN_BGR
from fcn_deploy.errors import FCNError
from fcn_deploy.fileio import scratch_dir
from fcn_deploy.onnxgraph import read_meta
from fcn_deploy.runtime import backend_status, open_runner
from fcn_deploy.timing import TimingStats

TRT_PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class Measurement:
    """One timed configuration: end-to-end and compute statistics, stage means, MACs."""

    e2e: TimingStats
    compute: TimingStats
    stage_means_ms: dict[str, float]
    macs: MacCount | None
    compute_mode: str
    output: str
    cpu_per_wall: float | None = None

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self.e2e.flat("e2e"), **self.compute.flat("compute")}
        for stage in STAGES:  # "compute_mean_ms" is the compute statistics' own mean
            if stage != "compute":
                out[f"{stage}_mean_ms"] = self.stage_means_ms.get(stage)
        out["compute_mode"] = self.compute_mode
        out["output"] = self.output
        out["cpu_per_wall"] = self.cpu_per_wall
        if self.macs is not None:
            out["gmacs"] = self.macs.total / 1e9
            out["conv_gmacs"] = self.macs.conv / 1e9
            out["mac_source"] = self.macs.source
            out["compute_gflops"] = 2 * self.macs.total / (self.compute.mean * 1e-3) / 1e9
        else:
            out.update(gmacs=None, conv_gmacs=None, mac_source=None, compute_gflops=None)
        return out


@dataclass
class PaperReport:
    """What ``run_paper`` produced: the flat records, the Markdown and the files written."""

    records: list[dict[str, Any]]
    markdown: str
    files: dict[str, Path] = field(default_factory=dict)

    def find(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("kind") == kind and
                all(r.get(k) == v for k, v in match.items())]


class _Run:
    """State of one reproduction run (the config, the records so far, logging)."""

    def __init__(self, config: PaperConfig, work_dir: Path) -> None:
        self.config = config
        self.work_dir = work_dir
        self.records: list[dict[str, Any]] = []
        self.start = time.perf_counter()

    # -- output --------------------------------------------------------------------------
    def log(self, text: str) -> None:
        if not self.config.progress:
            return
        elapsed = time.perf_counter() - self.start
        line = f"[fcn-bench --paper {elapsed:6.0f} s] {text}"
        try:
            from tqdm import tqdm

            tqdm.write(line, file=sys.stderr)
        except ImportError:
            print(line, file=sys.stderr, flush=True)

    def add(self, record: dict[str, Any]) -> dict[str, Any]:
        self.records.append(record)
        return record

    def skip(self, section: str, what: str, reason: str, **extra: Any) -> dict[str, Any]:
        self.log(f"skipped {what}: {reason}")
        return self.add({"kind": "skip", "section": section, "what": what, "reason": reason,
                         **extra})

    def ratio(self, section: str, name: str, text: str, num: tuple[str, float],
              den: tuple[str, float], **extra: Any) -> dict[str, Any]:
        return self.add({"kind": "ratio", "section": section, "name": name, "description": text,
                         "numerator": num[0], "numerator_ms": num[1], "denominator": den[0],
                         "denominator_ms": den[1], "value": num[1] / den[1], **extra})

    # -- timing --------------------------------------------------------------------------
    # An "opener" sets up one configuration inside an ExitStack (which closes its runner) and
    # returns (pipeline, MAC count); a group of them is timed interleaved.
    def onnx_opener(self, path: Path) -> Callable:
        """ONNX Runtime on the CPU, with the runner's settings plus STOP_SPINNING (several
        sessions are timed side by side; see fcn_deploy.bench.pipeline.STOP_SPINNING)."""
        def open_(stack: ExitStack, shape):
            try:
                macs = onnx_macs(path, shape)
            except FCNError:
                macs = None
            meta = read_meta(path)
            session = make_ort_session(path, threads=self.config.threads)
            return OrtPipeline(session, mean=meta.mean, channel_order=meta.channel_order,
                               where=str(path)), macs
        return open_

    def torch_opener(self, model) -> Callable:
        def open_(stack: ExitStack, shape):
            return TorchPipeline(model, mean=VGG_MEAN_BGR), torch_macs(model, shape)
        return open_

    def tensorrt_opener(self, path: Path) -> Callable:
        def open_(stack: ExitStack, shape):
            runner = stack.enter_context(open_runner(path, backend="tensorrt"))
            return pipeline_for_runner(runner), artifact_macs(path, shape, meta=runner.meta)
        return open_

    def time_group(self, openers: dict[str, Callable], shape, *, runs: int | None = None,
                   warmup: int | None = None, label: str = ""
                   ) -> tuple[dict[str, Measurement], dict[str, str]]:
        """Time the configurations interleaved; returns (measurements, {name: why it failed})
        where a configuration that cannot be opened (FCNError, ImportError) is left out."""
        failed: dict[str, str] = {}
        with ExitStack() as stack:
            pipes, macs = {}, {}
            for name, opener in openers.items():
                try:
                    pipes[name], macs[name] = opener(stack, shape)
                except (FCNError, ImportError) as exc:
                    failed[name] = str(exc)
            if not pipes:
                return {}, failed
            timings = time_interleaved(
                pipes, shape, runs=runs or self.config.runs,
                warmup=self.config.warmup if warmup is None else warmup, seed=self.config.seed,
                progress=self.config.progress, label=label)
        return {name: Measurement(t.e2e, t.compute, t.stage_means_ms, macs[name],
                                  pipes[name].compute_mode, pipes[name].output, t.cpu_per_wall)
                for name, t in timings.items()}, failed

    def time_one(self, opener: Callable, shape, **kw: Any) -> Measurement:
        got, failed = self.time_group({"one": opener}, shape, **kw)
        if failed:
            raise FCNError(failed["one"])
        return got["one"]


def _shape_text(shape) -> str:
    return "x".join(str(d) for d in shape)


def _model_sections(config: PaperConfig, name: str) -> dict[str, bool]:
    s = set(config.sections)
    return {"table1": "table1" in s,
            "backends": "backends" in s and name in COMPARISON_MODELS,
            "export": "export" in s and name in COMPARISON_MODELS,
            "scaling": "scaling" in s and name in SCALING_MODELS}


def _run_model(run: _Run, name: str) -> None:
    """Every measurement of one model (Table 1 row, backends, export variants, latency curve)."""
    config = run.config
    todo = _model_sections(config, name)
    if not any(todo.values()):
        return
    display = DISPLAY.get(name, name)
    shape = config.shape
    run.log(f"{display}: building (width {config.width:g}, random weights)")
    model = build_model(name, width=config.width, seed=config.seed)
    graphs: dict[str, Path] = {}

    def graph(variant: str) -> Path:
        if variant not in graphs:
            run.log(f"{display}: exporting ONNX ({variant})")
            exported = export_variant(model, run.work_dir, variant, seed=config.seed,
                                      threads=config.threads, verify=not config.quick)
            run.add({"kind": "export", "model": name, "variant": variant,
                     "file": exported.path.name, "reused": exported.reused,
                     "seconds": exported.seconds})
            graphs[variant] = exported.path
        return graphs[variant]

    measured: dict[str, Measurement] = {}
    common = {"model": name, "display": display, "width": config.width,
              "input": _shape_text(shape), "threads": config.threads,
              "runs": config.runs, "warmup": config.warmup}
    # backends first: their interleaved ONNX Runtime / PyTorch timings also serve Table 1
    if todo["backends"]:
        measured.update(_backends(run, name, model, common, graph))
    if todo["table1"]:
        key = "onnxruntime fp32" if config.backend == "onnxruntime" else "torch fp32"
        if key not in measured:
            opener = (run.onnx_opener(graph("base")) if config.backend == "onnxruntime"
                      else run.torch_opener(model))
            run.log(f"{display}: {key} at {_shape_text(shape)}, {config.runs} runs")
            measured[key] = run.time_one(opener, shape, label=f"{display} {key}")
        _table1_row(run, name, model, common, measured[key])
    if todo["export"]:
        _export_variants(run, name, common, graph)
    if todo["scaling"]:
        _scaling(run, name, model, graph)
    del model
    gc.collect()


def _table1_row(run: _Run, name: str, model, common: dict, m: Measurement) -> None:
    # lazy: fcn_deploy.models imports torch; the harness loads it only to build models
    from fcn_deploy.models.analysis import count_parameter_layers, count_parameters, receptive_field

    shape = run.config.shape
    rf, stride = receptive_field(model)
    paper = paper_row(name)
    run.add({"kind": "table1", **common, "backend": run.config.backend, "precision": "fp32",
             **m.fields(),
             "conv_layers": count_parameter_layers(model, shape),
             "parameters": count_parameters(model),
             "trainable_parameters": count_parameters(model, trainable_only=True),
             "receptive_field": rf, "max_stride": stride,
             "paper_column": paper.label if paper else None,
             "paper_forward_ms": paper.forward_ms if paper else None,
             "paper_conv_layers": paper.conv_layers if paper else None,
             "paper_parameters_m": paper.parameters_m if paper else None,
             "paper_receptive_field": paper.receptive_field if paper else None,
             "paper_max_stride": paper.max_stride if paper else None,
             "paper_mean_iu": paper.mean_iu if paper else None})


def _backends(run: _Run, name: str, model, common: dict, graph) -> dict[str, Measurement]:
    """PyTorch eager, ONNX Runtime FP32/INT8/FP16 and TensorRT (where present), interleaved."""
    config, shape = run.config, run.config.shape
    display = common["display"]
    openers: dict[str, Callable] = {"torch fp32": run.torch_opener(model),
                                    "onnxruntime fp32": run.onnx_opener(graph("base"))}
    graphs = {"torch fp32": "in-memory nn.Module", "onnxruntime fp32": graph("base").name}
    skipped: dict[str, str] = {}
    try:
        run.log(f"{display}: INT8 quantization ({config.calibration_images} random "
                "calibration images)")
        int8 = quantize_variant(graph("base"), shape=shape, images=config.calibration_images,
                                seed=config.seed)
        run.add({"kind": "export", "model": name, "variant": "int8", "file": int8.path.name,
                 "reused": int8.reused, "seconds": int8.seconds})
        openers["onnxruntime int8"] = run.onnx_opener(int8.path)
        graphs["onnxruntime int8"] = int8.path.name
    except ImportError as exc:
        skipped["onnxruntime int8"] = f"fcn_deploy.quantize is not available here ({exc})"
    except FCNError as exc:
        skipped["onnxruntime int8"] = f"INT8 quantization failed: {exc}"
    try:  # FP16 graphs are meant for GPUs; on the CPU this shows what running one there costs
        openers["onnxruntime fp16"] = run.onnx_opener(graph("fp16"))
        graphs["onnxruntime fp16"] = graph("fp16").name
    except FCNError as exc:
        skipped["onnxruntime fp16"] = f"FP16 export failed: {exc}"
    trt_reason = backend_status().get("tensorrt")
    for precision in TRT_PRECISIONS:
        key = f"tensorrt {precision}"
        if trt_reason is not None:
            skipped[key] = trt_reason
            continue
        try:
            path = _trt_graph(run, precision, graph, shape)
            openers[key] = run.tensorrt_opener(path)
            graphs[key] = path.name
        except (FCNError, ImportError) as exc:
            skipped[key] = str(exc)
    run.log(f"{display}: {', '.join(openers)} at {_shape_text(shape)}, {config.runs} runs each, "
            "interleaved")
    rows, failed = run.time_group(openers, shape, label=f"{display} backends")
    skipped.update(failed)
    order = ["torch fp32", "onnxruntime fp32", "onnxruntime int8", "onnxruntime fp16",
             *(f"tensorrt {p}" for p in TRT_PRECISIONS)]
    for key in order:
        backend, precision = key.split()
        if key in rows:
            run.add({"kind": "backend", **common, "backend": backend, "precision": precision,
                     "graph": graphs[key], "status": "measured", "interleaved": True,
                     **rows[key].fields()})
        else:
            reason = skipped.get(key, "not run")
            # TensorRT present but its build or run failed: a failure, never a skip
            status = "failed" if backend == "tensorrt" and trt_reason is None else "skipped"
            if backend != "tensorrt":
                run.skip("backends", f"{name} {key}", reason)
            run.add({"kind": "backend", **common, "backend": backend, "precision": precision,
                     "status": status, "reason": reason})
    if "torch fp32" not in rows or "onnxruntime fp32" not in rows:
        raise FCNError(f"{name}: the PyTorch or ONNX Runtime FP32 timing failed: {failed}")
    torch_m = rows["torch fp32"]
    for key, m in rows.items():
        if key == "torch fp32":
            continue
        label = key.replace(" ", "_")
        run.ratio("backends", f"{name}:{label}_vs_torch_compute",
                  f"{display}: torch eager compute / {key} compute",
                  ("torch fp32 compute", torch_m.compute.mean), (f"{key} compute", m.compute.mean),
                  model=name)
        run.ratio("backends", f"{name}:{label}_vs_torch_e2e",
                  f"{display}: torch eager end to end / {key} end to end",
                  ("torch fp32 e2e", torch_m.e2e.mean), (f"{key} e2e", m.e2e.mean), model=name)
    for backend in ("onnxruntime", "tensorrt"):
        for low in ("int8", "fp16"):
            if f"{backend} {low}" not in rows or f"{backend} fp32" not in rows:
                continue
            for what in ("compute", "e2e"):
                fp32 = getattr(rows[f"{backend} fp32"], what).mean
                other = getattr(rows[f"{backend} {low}"], what).mean
                run.ratio("backends", f"{name}:{backend}_{low}_vs_fp32_{what}",
                          f"{display}: {backend} FP32 / {low.upper()} ({what})",
                          (f"{backend} fp32 {what}", fp32), (f"{backend} {low} {what}", other),
                          model=name)
    _conv_profile(run, name, graph("base"), rows["onnxruntime fp32"])
    return rows


def _trt_graph(run: _Run, precision: str, graph, shape) -> Path:
    """The ONNX graph TensorRT compiles for a precision (precision lives in the graph)."""
    if precision == "fp32":
        return graph("base")
    if precision == "int8":
        return quantize_variant(graph("base"), shape=shape, images=run.config.calibration_images,
                                seed=run.config.seed).path
    return graph("fp16")


def _conv_profile(run: _Run, name: str, path: Path, ort_fp32: Measurement) -> None:
    """Convolution throughput of ONNX Runtime FP32 from its profiler, against the peak."""
    config = run.config
    run.log(f"{DISPLAY.get(name, name)}: onnxruntime profile ({config.profile_runs} runs)")
    prof = ort_profile(path, config.shape, threads=config.threads, runs=config.profile_runs,
                       warmup=1)
    macs = ort_fp32.macs
    rec = {"kind": "conv_profile", "model": name, "backend": "onnxruntime", "precision": "fp32",
           "input": _shape_text(config.shape), "threads": config.threads,
           "runs": config.profile_runs, "kernel_total_ms": prof.total_ms, "conv_ms": prof.conv_ms,
           "conv_share": prof.conv_ms / prof.total_ms if prof.total_ms else None,
           "conv_ops": ",".join(CONV_OPS)}
    if macs is not None and prof.conv_ms > 0:
        rec["conv_gmacs"] = macs.conv / 1e9
        rec["conv_gflops"] = 2 * macs.conv / (prof.conv_ms * 1e-3) / 1e9
    top = sorted(prof.by_op_ms.items(), key=lambda kv: -kv[1])[:8]
    for op, ms in top:
        rec[f"op_{op}_ms"] = ms
    run.add(rec)


def _export_variants(run: _Run, name: str, common: dict, graph) -> None:
    """The deployed graph against each optimization switched off, timed interleaved."""
    display = common["display"]
    texts = {"base": "deployed graph: depthwise upsampling, folded crops, scores out",
             "no_depthwise": "diagonal ConvTranspose kept dense (no depthwise rewrite)",
             "no_crop_folding": "crops kept as Slice (not folded into the upsampling)",
             "labels": "argmax inside the graph (uint8 labels out)"}
    openers = {variant: run.onnx_opener(graph(variant)) for variant in texts}
    run.log(f"{display}: onnxruntime fp32 export variants ({', '.join(texts)}), interleaved")
    got, failed = run.time_group(openers, run.config.shape, label=f"{display} export variants")
    if failed:
        raise FCNError(f"{name}: export variants failed to open: {failed}")
    for variant, text in texts.items():
        run.add({"kind": "export_variant", **common, "variant": variant, "description": text,
                 "backend": "onnxruntime", "graph": graph(variant).name, "interleaved": True,
                 **got[variant].fields()})
    base = got["base"]
    run.ratio("export", f"{name}:gain_depthwise_upsampling",
              f"{display}: compute without / with the depthwise upsampling rewrite",
              ("no_depthwise compute", got["no_depthwise"].compute.mean),
              ("base compute", base.compute.mean), model=name)
    run.ratio("export", f"{name}:gain_crop_folding",
              f"{display}: compute without / with crop folding",
              ("no_crop_folding compute", got["no_crop_folding"].compute.mean),
              ("base compute", base.compute.mean), model=name)
    run.ratio("export", f"{name}:gain_labels_in_graph",
              f"{display}: end to end with scores out + host argmax / with argmax in the graph",
              ("base e2e", base.e2e.mean), ("labels e2e", got["labels"].e2e.mean), model=name)


def _scaling(run: _Run, name: str, model, graph) -> None:
    config = run.config
    display = DISPLAY.get(name, name)
    for size in config.scaling_sizes:
        shape = (1, 3, size, size)
        run.log(f"{display}: latency curve at {size}x{size} ({config.backend}, "
                f"{config.scaling_runs} runs)")
        opener = (run.onnx_opener(graph("base")) if config.backend == "onnxruntime"
                  else run.torch_opener(model))
        m = run.time_one(opener, shape, runs=config.scaling_runs, warmup=1,
                         label=f"{display} {size}px")
        run.add({"kind": "scaling", "model": name, "display": display, "size": size,
                 "pixels": size * size, "backend": config.backend, "width": config.width,
                 "runs": config.scaling_runs, **m.fields()})


def run_paper(config: PaperConfig, output_dir) -> PaperReport:
    """Run the reproduction and write ``paper.json``, ``paper.csv``, ``paper.md`` and the plots
    into ``output_dir`` (created if its parent exists)."""
    import torch

    out = prepare_output_dir(output_dir)
    torch.set_num_threads(config.threads)
    peak_sizes = (384, 768) if config.quick else (2048, 3072)
    with ExitStack() as stack:
        # exported graphs go to --work-dir, else to a hidden folder in the report folder that
        # is removed on every exit path (SIGTERM included), not to the system's temp folder
        work = config.work_dir or stack.enter_context(scratch_dir(out / "paper-work"))
        run = _Run(config, Path(work))
        settings = {k: (v if isinstance(v, (int, float, str, bool)) or v is None else str(v))
                    for k, v in asdict(config).items() if k != "extra"}
        run.add({**environment(threads=config.threads), "command": config.command,
                 **{f"config_{k}": v for k, v in settings.items()}})
        run.log(f"measuring the FP32 peak ({config.threads} threads)")
        peak = measure_peak(threads=config.threads, sizes=peak_sizes, repeats=5)
        run.add({"kind": "peak", "when": "before", **peak.flat()})
        for name in config.models:
            _run_model(run, name)
            # sample the peak between models too (MLAS only, a second): on a shared machine
            # the best of many samples is the one least disturbed by other processes
            sample = measure_peak(threads=config.threads, sizes=peak_sizes[:1],
                                  methods=("onnxruntime",), repeats=5)
            run.add({"kind": "peak", "when": f"after {name}", **sample.flat()})
            peak = peak.merge(sample)
        if "patchwise" in config.sections:
            for rec in run_patchwise(config, run.work_dir, log=run.log):
                run.add(rec)
        run.log("measuring the FP32 peak again")
        peak_after = measure_peak(threads=config.threads, sizes=peak_sizes, repeats=5)
        run.add({"kind": "peak", "when": "after", **peak_after.flat()})
        peak = peak.merge(peak_after)
        run.add({"kind": "peak", "when": "best", **peak.flat()})
        for rec in run.records:
            if rec["kind"] == "conv_profile" and rec.get("conv_gflops") is not None:
                rec["peak_gflops"] = peak.peak_gflops
                rec["fraction_of_peak"] = rec["conv_gflops"] / peak.peak_gflops
        _relative_rows(run.records)
        _flag_core_use(run.records, config.threads)
        for rec in evaluate_targets(run.records, config):
            run.add(rec)
        run.add({"kind": "summary", "seconds": time.perf_counter() - run.start,
                 "load_avg_1min_at_end": load_avg_1min()})
    files: dict[str, Path] = {}
    if config.plots:
        if any(r["kind"] == "scaling" for r in run.records):
            files["scaling_png"] = plot_scaling(run.records, out / "paper_scaling.png")
        if any(r["kind"] == "table1" for r in run.records):
            files["table1_png"] = plot_table1(run.records, out / "paper_table1.png")
    markdown = render_markdown(run.records, config, images={k: v.name for k, v in files.items()})
    files["json"] = write_json(out / "paper.json", run.records)
    files["csv"] = write_csv(out / "paper.csv", run.records)
    files["markdown"] = write_text(out / "paper.md", markdown)
    return PaperReport(records=run.records, markdown=markdown, files=files)


#: A timing whose process used less than this share of its threads' cores is flagged.
LOW_CORE_USE = 0.75


def _flag_core_use(records: list[dict[str, Any]], threads: int) -> None:
    """``core_use`` = CPU seconds per wall second / threads; ``low_core_use`` below 0.75 (other
    processes took the cores, or the graph has serial stretches; either way, slower)."""
    for r in records:
        if r.get("cpu_per_wall") is not None:
            r["core_use"] = r["cpu_per_wall"] / threads
            r["low_core_use"] = r["core_use"] < LOW_CORE_USE


def _relative_rows(records: list[dict[str, Any]]) -> None:
    """Table 1 forward times relative to FCN-AlexNet, measured and the paper's."""
    rows = [r for r in records if r["kind"] == "table1"]
    ref = next((r for r in rows if r["model"] == "fcn_alexnet"), None)
    for r in rows:
        if ref is None:
            r["relative_to_alexnet"] = None
            r["paper_relative_to_alexnet"] = None
            continue
        r["relative_to_alexnet"] = r["compute_mean_ms"] / ref["compute_mean_ms"]
        r["paper_relative_to_alexnet"] = (r["paper_forward_ms"] / ref["paper_forward_ms"]
                                          if r.get("paper_forward_ms") else None)
