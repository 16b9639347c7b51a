"""Which layers to keep in float: quantize with each combination and measure the accuracy.

For every calibration method and every subset of the sensitive kinds (first conv, score layers,
upsampling) the FP32 graph is quantized (calibration ranges are computed once per method and
reused through ONNX Runtime's calibration cache) and all variants are evaluated together against
the FP32 graph on one labelled dataset: mean IU, its change, and label-map agreement.

Run ``python -m fcn_deploy.cli.sensitivity fp32.onnx --calib synthetic:32 --dataset
synthetic:50`` to print the table the README shows.
"""
from __future__ import annotations

import itertools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from fcn_deploy.errors import FCNError
from fcn_deploy.evaluate import compare_models
from fcn_deploy.quantize.calibration import as_calibration_reader
from fcn_deploy.quantize.ptq import (KINDS, QuantizeConfig, graph_input_specs, load_fp32_graph,
                                     model_meta, quantize_onnx)


@dataclass
class SensitivityRow:
    method: str
    kept_float: tuple[str, ...]
    int8_layers: int
    mean_iu: float
    delta_mean_iu: float
    agreement: float
    pixel_accuracy: float


def kind_combinations(kinds: Sequence[str] | None = None) -> list[tuple[str, ...]]:
    """Every subset of ``kinds`` (default: all of KINDS), smallest first."""
    kinds = tuple(kinds or KINDS)
    return [c for r in range(len(kinds) + 1) for c in itertools.combinations(kinds, r)]


def measure_sensitivity(fp32_path: str | os.PathLike, calibration: Any, dataset: Any, *,
                        methods: Sequence[str] = ("percentile",), percentile: float = 99.99,
                        combinations: Sequence[Sequence[str]] | None = None,
                        work_dir: str | os.PathLike | None = None, max_images: int | None = None,
                        seed: int | None = None, progress: bool = True,
                        threads: int | None = None) -> tuple[float, list[SensitivityRow]]:
    """Quantize ``fp32_path`` for every (method, kept-float kinds) and evaluate all variants.

    Returns the FP32 mean IU and one row per variant. ``calibration`` and ``dataset`` are
    anything :func:`quantize_onnx` / :func:`compare_models` accept.
    """
    combos = [tuple(c) for c in (combinations if combinations is not None else kind_combinations())]
    if not combos:
        raise FCNError("no layer-kind combination to measure")
    graph = load_fp32_graph(fp32_path)
    specs = graph_input_specs(graph, model_meta(graph, fp32_path), fp32_path)
    reader = as_calibration_reader(calibration, inputs=specs, seed=seed, progress=progress)
    with tempfile.TemporaryDirectory(prefix="fcn-sensitivity.", dir=work_dir) as tmp:
        variants: list[tuple[str, tuple[str, ...], Path, int]] = []
        for method in methods:
            cache = Path(tmp) / f"ranges_{method}.json"
            for combo in combos:
                out = Path(tmp) / f"{method}_{'-'.join(combo) or 'none'}.onnx"
                reader.rewind()
                result = quantize_onnx(fp32_path, out, reader, config=QuantizeConfig(
                    method=method, percentile=percentile, exclude_kinds=combo,
                    progress=progress, calibration_cache=str(cache)))
                variants.append((method, combo, out, len(result.quantized_nodes)))
        report = compare_models([fp32_path] + [v[2] for v in variants], dataset,
                                max_images=max_images, progress=progress, seed=seed,
                                threads=threads)
    ref = report.results[0].metrics
    rows = []
    for (method, combo, _, layers), res in zip(variants, report.results[1:]):
        m = res.metrics
        rows.append(SensitivityRow(method=method, kept_float=combo, int8_layers=layers,
                                   mean_iu=m.mean_iu, delta_mean_iu=m.mean_iu - ref.mean_iu,
                                   agreement=res.agreement, pixel_accuracy=m.pixel_accuracy))
    return ref.mean_iu, rows


def format_table(fp32_miou: float, rows: Sequence[SensitivityRow]) -> str:
    lines = [f"FP32 mean IU {100 * fp32_miou:.2f}", "",
             "| method | kept in float | INT8 conv layers | mean IU | Δ mean IU | agreement |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.method} | {', '.join(r.kept_float) or 'nothing'} | {r.int8_layers} | "
                     f"{100 * r.mean_iu:.2f} | {100 * r.delta_mean_iu:+.2f} | "
                     f"{100 * r.agreement:.2f} |")
    return "\n".join(lines) + "\n"
