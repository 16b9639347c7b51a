"""Accuracy of deployable artifacts on a labelled dataset, and how precisions compare.

``evaluate`` scores one artifact (ONNX graph of any precision, or a model.pt checkpoint) with the
paper's four metrics from one confusion matrix over the whole set. ``compare_models`` runs
several artifacts image by image in lockstep (so no predictions are stored) and adds, for each,
the fraction of pixels whose label equals the first (reference) model's and the per-class IU
change: the FP32 vs FP16 vs INT8 report. ``compare_onnx`` is its two-graph view and
``export_compared`` runs it for fcn-export ``--eval-dataset`` after the export, so that the export
stage (one floor down) never evaluates.

Multi-input nets get every input from the dataset's samples (``image`` is the sample's image, any
other name its ``inputs[name]``: ``synthetic-rgbd``, ``nyud:``); multi-head nets are scored per
head (the first head against ``Sample.label``, the others against ``Sample.labels[head]``). The
first head's figures are the headline; the other heads' are in ``EvalResult.heads``, the JSON's
``heads`` and a per-head table (SIFT Flow: the geometric head's pixel accuracy).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fcn_deploy.cpu import cpu_features
from fcn_deploy.datasets import create_dataset
from fcn_deploy.errors import FCNError
from fcn_deploy.fileio import RunFiles, atomic_write_text, check_output_dir, scratch_dir
from fcn_deploy.metrics import ConfusionMatrix
from fcn_deploy.preprocess import preprocess
from fcn_deploy.runtime import open_runner
from fcn_deploy.runtime.registry import default_backend, int8_kernel_options, thread_options
from fcn_deploy.runtime.segmenter import Segmenter


@dataclass
class EvalResult:
    """One artifact's scores. ``agreement`` is the fraction of all pixels (ignore-labelled ones
    included) whose predicted label equals the reference model's; None for the reference.
    ``int8_kernels``: for an INT8 graph on ONNX Runtime, the CPU's int8 path it ran on (e.g.
    "int8: exact U8U8 kernels (no VNNI)"), else None."""

    path: str
    precision: str
    metrics: Any  # fcn_deploy.metrics.SegMetrics
    confusion: np.ndarray
    num_images: int
    seconds: float
    agreement: float | None = None
    agreement_pixels: int = 0
    int8_kernels: str | None = None
    #: a multi-head net's heads after the first: {head: HeadResult} (as training's reports)
    heads: dict[str, "HeadResult"] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = {"path": self.path, "precision": self.precision, "num_images": self.num_images,
               "seconds": round(self.seconds, 3), "agreement": self.agreement,
               "agreement_pixels": self.agreement_pixels, "int8_kernels": self.int8_kernels,
               **self.metrics.as_dict(),
               "confusion": self.confusion.tolist()}
        if self.heads:
            out["heads"] = {name: head.as_dict() for name, head in self.heads.items()}
        return out


@dataclass
class HeadResult:
    """The scores of one head after the first of a multi-head net (SIFT Flow's ``geo``), with
    the dataset's names of its classes."""

    class_names: list[str]
    metrics: Any  # fcn_deploy.metrics.SegMetrics
    confusion: np.ndarray

    def as_dict(self) -> dict[str, Any]:
        return {"class_names": self.class_names, **self.metrics.as_dict(),
                "confusion": self.confusion.tolist()}


@dataclass
class ComparisonReport:
    """Several artifacts on one dataset; the first is the reference."""

    dataset: str
    num_images: int
    class_names: list[str]
    results: list[EvalResult] = field(default_factory=list)

    @property
    def reference(self) -> EvalResult:
        return self.results[0]

    def to_dict(self) -> dict[str, Any]:
        ref = self.reference.metrics
        models = []
        for r in self.results:
            entry = r.as_dict()
            entry["delta_mean_iu"] = _num(r.metrics.mean_iu - ref.mean_iu)
            entry["delta_per_class_iu"] = [_num(a - b) for a, b in
                                           zip(r.metrics.per_class_iu, ref.per_class_iu)]
            models.append(entry)
        return {"dataset": self.dataset, "num_images": self.num_images,
                "class_names": self.class_names, "reference": self.reference.path,
                "models": models}

    def to_markdown(self) -> str:
        ref = self.reference
        names = [_short(r.path, self.results) for r in self.results]
        lines = [f"# Accuracy: {', '.join(names)}", "",
                 f"Dataset `{self.dataset}`: {self.num_images} images, "
                 f"{len(self.class_names)} classes. Reference: `{names[0]}`. Metrics in %; "
                 "agreement = pixels whose label equals the reference's.", "",
                 "| model | precision | mean IU | Δ mean IU | pixel acc. | mean acc. | fw IU "
                 "| agreement |",
                 "|---|---|---:|---:|---:|---:|---:|---:|"]
        for name, r in zip(names, self.results):
            m = r.metrics
            delta = "—" if r is ref else _pct(m.mean_iu - ref.metrics.mean_iu, signed=True)
            agree = "—" if r.agreement is None else _pct(r.agreement, digits=2)
            lines.append(f"| {name} | {r.precision} | {_pct(m.mean_iu)} | {delta} | "
                         f"{_pct(m.pixel_accuracy)} | {_pct(m.mean_accuracy)} | {_pct(m.fw_iu)} "
                         f"| {agree} |")
        int8_paths = sorted({r.int8_kernels for r in self.results if r.int8_kernels})
        if int8_paths:
            lines += ["", f"INT8 on this CPU ({_cpu_line()}): {'; '.join(int8_paths)}."]
        if any(r.heads for r in self.results):
            lines += ["", "The other heads (the table above is the first head's), metrics in %:",
                      "", "| model | head | classes | mean IU | pixel acc. | mean acc. | fw IU |",
                      "|---|---|---:|---:|---:|---:|---:|"]
            for name, r in zip(names, self.results):
                for head, h in r.heads.items():
                    m = h.metrics
                    lines.append(f"| {name} | {head} | {len(h.class_names)} | {_pct(m.mean_iu)} "
                                 f"| {_pct(m.pixel_accuracy)} | {_pct(m.mean_accuracy)} | "
                                 f"{_pct(m.fw_iu)} |")
        lines += ["", "Per-class IU (%), with the change against the reference:", "",
                  "| class | " + " | ".join(names) + " |",
                  "|---|" + "---:|" * len(names)]
        for c, cname in enumerate(self.class_names):
            cells = [_pct(ref.metrics.per_class_iu[c])]
            for r in self.results[1:]:
                iu = r.metrics.per_class_iu[c]
                d = iu - ref.metrics.per_class_iu[c]
                cells.append(f"{_pct(iu)} ({_pct(d, signed=True)})")
            lines.append(f"| {c} {cname} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def write(self, path: str | os.PathLike) -> tuple[Path, Path]:
        """Write the Markdown to ``path`` and the JSON next to it (same name, ``.json``); for a
        ``.json`` path, the JSON there and the Markdown beside it (``.md``)."""
        md, js = report_paths(path)
        plan = RunFiles("ComparisonReport.write")
        for r in self.results:
            plan.read_model("model", r.path)
        plan.write("report", md)
        plan.write("JSON report", js)
        plan.check()
        atomic_write_text(js, json.dumps(self.to_dict(), indent=2) + "\n")
        atomic_write_text(md, self.to_markdown())
        return md, js


def report_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """Where ``ComparisonReport.write(path)`` writes: the Markdown and the JSON next to it.
    A ``.json`` path gets the JSON, and the Markdown goes beside it as ``.md`` (writing
    Markdown into a .json file would break whatever reads it)."""
    md = Path(path)
    if md.suffix.lower() == ".json":
        return md.with_suffix(".md"), md
    return md, md.with_suffix(".json")


def _num(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _pct(x: float | None, *, signed: bool = False, digits: int = 2) -> str:
    if x is None or math.isnan(x):
        return "-"
    value = round(100 * x, digits) + 0.0  # no "-0.00" for a change that rounds to zero
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _cpu_line() -> str:
    cpu = cpu_features()
    return f"{cpu.name}, {cpu.describe_int8()}"


def _short(path: str, results: Sequence[EvalResult]) -> str:
    names = [Path(r.path).name for r in results]
    name = Path(path).name
    return name if names.count(name) == 1 else path


# -- prediction ---------------------------------------------------------------------------------
class _Predictor:
    """Label maps (one per head) from one artifact through the Segmenter (any backend)."""

    def __init__(self, path: str | os.PathLike, *, backend: str | None, threads: int | None,
                 device: str | None, int8_kernels: str | None = None):
        self.path = str(path)
        p = Path(path)
        if not p.is_file():
            raise FCNError(f"model {p} does not exist; expected an .onnx graph or a model.pt")
        runner = _open(p, backend=backend, threads=threads, device=device,
                       int8_kernels=int8_kernels)
        try:
            self.segmenter = Segmenter(runner)
        except BaseException:
            runner.close()
            raise
        self.meta = runner.meta
        kernels = getattr(runner, "int8_kernels", None)
        self.int8_kernels = (kernels.describe() if kernels is not None
                             and self.meta.precision == "int8" else None)
        self.heads = self.segmenter.heads

    def check_dataset(self, data: Any, spec: str) -> None:
        """The net's heads and inputs are the dataset's: the first head has its classes, every
        other head is one of its heads with as many classes, every input is in its samples."""
        first, others = self.heads[0], self.heads[1:]
        if first.num_classes != data.num_classes:
            raise FCNError(f"{self.path} predicts {first.num_classes} classes but dataset "
                           f"{spec!r} has {data.num_classes}; expected the same classes")
        extra_heads = dict(getattr(data, "extra_heads", {}) or {})
        for head in others:
            if head.name not in extra_heads:
                raise FCNError(f"{self.path} has the head {head.name!r} but dataset {spec!r} "
                               f"labels no such head (its heads: {', '.join(data.heads)}); "
                               "evaluate it on a dataset with every head (siftflow:, "
                               "synthetic-twohead)")
            if len(extra_heads[head.name]) != head.num_classes:
                raise FCNError(f"{self.path} predicts {head.num_classes} classes for head "
                               f"{head.name!r} but dataset {spec!r} has "
                               f"{len(extra_heads[head.name])}; expected the same classes")
        known = ["image", *getattr(data, "extra_inputs", ())]
        missing = [name for name in self.segmenter.input_names if name not in known]
        if missing:
            raise FCNError(f"{self.path} takes the input(s) {', '.join(missing)} but dataset "
                           f"{spec!r} has only {', '.join(known)}; evaluate it on a dataset "
                           "with them (nyud:, synthetic-rgbd)")

    def predict(self, sample: Any) -> dict[str, np.ndarray]:
        """{head: uint8 HxW labels} of one sample, every input fed from it."""
        names = self.segmenter.input_names
        data = [sample.image if name == "image" else sample.inputs[name] for name in names]
        result = self.segmenter.predict(data[0], **dict(zip(names[1:], data[1:])))
        if not self.segmenter.multi_head:
            result = {self.heads[0].name: result}
        shape = data[0].shape[:2]
        for head, label in result.items():
            if label.shape != shape:
                raise FCNError(f"{self.path}: prediction of shape {label.shape} for an image of "
                               f"{shape}; expected the input's height and width")
        return result

    def close(self) -> None:
        self.segmenter.close()


def _open(path: Path, *, backend: str | None, threads: int | None, device: str | None,
          int8_kernels: str | None = None):
    name = backend or default_backend(path)
    options: dict[str, Any] = {}
    if device is not None:
        options["device"] = device
    options.update(thread_options(name, threads))
    options.update(int8_kernel_options(name, int8_kernels))
    return open_runner(path, backend=backend, **options)


# -- evaluation ---------------------------------------------------------------------------------
def _open_dataset(dataset: Any, *, seed: int | None, meta=None):
    """``(spec, dataset)``; a ``folder:`` spec takes its classes from ``meta`` (the reference
    model's metadata), since plain folders of masks do not name their classes."""
    if isinstance(dataset, str):
        scheme = dataset.partition(":")[0].strip().lower()
        kwargs: dict[str, Any] = {}
        if seed is not None and scheme.startswith("synthetic"):
            kwargs["seed"] = seed
        if meta is not None and scheme == "folder":
            kwargs.update(num_classes=meta.num_classes, class_names=list(meta.class_names),
                          palette=[list(c) for c in meta.palette])
        return dataset, create_dataset(dataset, **kwargs)
    return getattr(dataset, "spec", type(dataset).__name__), dataset


def _run(paths: Sequence[str | os.PathLike], dataset: Any, *, backend: str | None,
         max_images: int | None, threads: int | None, progress: bool,
         seed: int | None, device: str | None = None,
         int8_kernels: str | None = None) -> ComparisonReport:
    from tqdm import tqdm

    if not paths:
        raise FCNError("no model to evaluate; expected at least one .onnx or model.pt path")
    if max_images is not None and int(max_images) < 1:
        raise FCNError(f"image limit must be >= 1, got {max_images}")
    predictors: list[_Predictor] = []
    try:
        for path in paths:
            predictors.append(_Predictor(path, backend=backend, threads=threads, device=device,
                                         int8_kernels=int8_kernels))
        spec, data = _open_dataset(dataset, seed=seed, meta=predictors[0].meta)
        total = len(data) if max_images is None else min(len(data), int(max_images))
        if total < 1:
            raise FCNError(f"dataset {spec!r} is empty; expected labelled images")
        for pred in predictors:
            pred.check_dataset(data, str(spec))
        ignore = getattr(data, "ignore_label", 255)
        matrices = [{head.name: ConfusionMatrix(head.num_classes, ignore_label=ignore)
                     for head in pred.heads} for pred in predictors]
        agree = [0] * len(predictors)
        seconds = [0.0] * len(predictors)
        pixels = 0
        for i in tqdm(range(total), desc="evaluating", unit="img", disable=not progress):
            sample = data[i]
            if sample.label is None:
                raise FCNError(f"dataset {spec!r} image {sample.name!r} has no label; evaluation "
                               "needs a labelled dataset")
            reference = None
            for k, pred in enumerate(predictors):
                t0 = time.perf_counter()
                per_head = pred.predict(sample)
                seconds[k] += time.perf_counter() - t0
                for j, (head, label) in enumerate(per_head.items()):
                    matrices[k][head].update(sample.label if j == 0 else sample.labels[head],
                                             label)
                label = per_head[pred.heads[0].name]  # agreement: on the first head
                if reference is None:
                    reference = label
                agree[k] += int(np.count_nonzero(label == reference))
            pixels += reference.size
        results = []
        for k, pred in enumerate(predictors):
            first = matrices[k][pred.heads[0].name]
            others = {head.name: HeadResult(class_names=list(data.extra_heads[head.name]),
                                            metrics=matrices[k][head.name].compute(),
                                            confusion=matrices[k][head.name].matrix.copy())
                      for head in pred.heads[1:]}
            results.append(EvalResult(
                path=pred.path, precision=str(pred.meta.precision), metrics=first.compute(),
                confusion=first.matrix.copy(), num_images=total, seconds=seconds[k],
                agreement=None if k == 0 else agree[k] / pixels, agreement_pixels=pixels,
                int8_kernels=pred.int8_kernels, heads=others))
    finally:
        for pred in predictors:
            pred.close()
    return ComparisonReport(dataset=str(spec), num_images=total,
                            class_names=list(data.class_names), results=results)


def evaluate(artifact_path: str | os.PathLike, dataset: Any, *, backend: str | None = None,
             max_images: int | None = None, threads: int | None = None,
             progress: bool = True, seed: int | None = None,
             device: str | None = None, int8_kernels: str | None = None) -> EvalResult:
    """Score one artifact on a labelled dataset (spec string or dataset object).

    ``int8_kernels``: ONNX Runtime's CPU int8 kernels (None = auto; see :mod:`fcn_deploy.cpu`).
    """
    return _run([artifact_path], dataset, backend=backend, max_images=max_images,
                threads=threads, progress=progress, seed=seed, device=device,
                int8_kernels=int8_kernels).results[0]


def compare_models(paths: Sequence[str | os.PathLike], dataset: Any, *,
                   backend: str | None = None, max_images: int | None = None,
                   threads: int | None = None, progress: bool = True,
                   seed: int | None = None, device: str | None = None,
                   int8_kernels: str | None = None) -> ComparisonReport:
    """Score several artifacts on the same images; the first is the reference for agreement."""
    return _run(paths, dataset, backend=backend, max_images=max_images, threads=threads,
                progress=progress, seed=seed, device=device, int8_kernels=int8_kernels)


# -- two graphs, and fcn-export --eval-dataset ---------------------------------------------------
def compare_onnx(a, b, dataset: Any, *, threads: int | None = None, limit: int | None = None,
                 progress: bool = False) -> CompareReport:
    """Label agreement of graphs ``a`` and ``b`` and each one's mean IU on ``dataset``.

    ``dataset`` is a dataset object (``__len__``/``__getitem__`` -> Sample with image and label)
    or a spec for ``fcn_deploy.datasets.create_dataset`` such as ``"synthetic:20"``. The work is
    ``fcn_deploy.evaluate.compare_models`` on ONNX Runtime's CPU provider, with ``a`` as the
    reference; this keeps the two-graph summary the export report prints.
    Moved from ``fcn_deploy.export`` (which does not evaluate).
    """
    # lazy: the fcn_deploy.export package and onnxgraph import onnx; evaluating runtimes does not
    from fcn_deploy.export.compare import CompareReport
    from fcn_deploy.onnxgraph import read_meta

    report = compare_models([a, b], dataset, backend="onnxruntime", device="cpu",
                            max_images=limit, threads=threads, progress=progress)
    ref, other = report.results
    meta = read_meta(a)
    return CompareReport(name_a=Path(a).name, name_b=Path(b).name, images=report.num_images,
                         pixels=other.agreement_pixels, agreement=float(other.agreement),
                         miou_a=float(ref.metrics.mean_iu), miou_b=float(other.metrics.mean_iu),
                         head=meta.head_specs()[0].name if meta.multi_head else "")


def export_compared(source: Any, output_path: str | os.PathLike, *, eval_dataset: Any,
                    eval_limit: int | None = None, meta: Any = None, options: Any = None,
                    **changes: Any):
    """Export an FP16 graph and measure what FP16 changed: fcn-export ``--eval-dataset``.

    ``source`` is a checkpoint path (``export_checkpoint``) or a model (``export_model`` with
    ``meta``); ``options``/``changes`` as for ``export_model``. The FP32 graph of the same export
    (``fp32_reference``) is written to a scratch folder next to the output, compared with the
    FP16 graph on ``eval_dataset`` (a spec such as "synthetic:20", or a dataset object; at most
    ``eval_limit`` images) by :func:`compare_onnx`, and removed; the returned ``ExportReport``
    carries the comparison (named "fp32" and the precision) in ``comparison``.
    """
    # lazy: fcn_deploy.export imports onnx (and exporting, torch)
    from fcn_deploy.export import ExportOptions, export_checkpoint, export_model

    o = (options or ExportOptions()).with_changes(**changes)
    if (o.precision or "fp32") == "fp32":
        raise FCNError("--eval-dataset measures what FP16 changes against FP32; use it with "
                       "precision fp16")
    if not Path(output_path).is_dir():  # export_model names a folder given as -o itself
        check_output_dir(output_path)  # the scratch folder goes next to the output
    with scratch_dir(output_path) as staging:
        o = o.with_changes(fp32_reference=staging / "fp32.onnx")
        if isinstance(source, (str, os.PathLike)):
            report = export_checkpoint(source, output_path, options=o)
        else:
            report = export_model(source, meta, output_path, options=o)
        comparison = compare_onnx(o.fp32_reference, report.output_path, eval_dataset,
                                  threads=o.threads, limit=eval_limit, progress=o.progress)
    comparison.name_a = "fp32"
    comparison.name_b = report.precision
    report.comparison = comparison
    return report
