"""Which layers to keep in float: quantize with each combination and measure the accuracy.

For every calibration method and every subset of the sensitive kinds (first conv, score layers,
upsampling) the FP32 graph is quantized (calibration ranges are computed once per method and
reused through ONNX Runtime's calibration cache) and all variants are evaluated together against
the FP32 graph on one labelled dataset: mean IU, its change, and label-map agreement.

Run ``python -m fcn_deploy.quantize.sensitivity fp32.onnx --calib synthetic:32 --dataset
synthetic:50`` to print the table the README shows.
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from fcn_deploy.errors import FCNError


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
    from fcn_deploy.quantize.ptq import KINDS

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
    from fcn_deploy.evaluate import compare_models
    from fcn_deploy.quantize.calibration import as_calibration_reader
    from fcn_deploy.quantize.ptq import QuantizeConfig, load_fp32_graph, model_meta, quantize_onnx

    combos = [tuple(c) for c in (combinations if combinations is not None else kind_combinations())]
    if not combos:
        raise FCNError("no layer-kind combination to measure")
    meta = model_meta(load_fp32_graph(fp32_path), fp32_path)
    reader = as_calibration_reader(calibration, mean=meta.mean, channel_order=meta.channel_order,
                                   seed=seed, progress=progress)
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


def main(argv: Sequence[str] | None = None) -> int:
    from fcn_deploy.quantize.ptq import METHODS

    p = argparse.ArgumentParser(prog="python -m fcn_deploy.quantize.sensitivity",
                                description="accuracy of INT8 variants (layers kept in float, "
                                            "calibration methods) against the FP32 graph")
    p.add_argument("model", help="FP32 ONNX graph")
    p.add_argument("--calib", required=True, help="calibration source (as fcn-quantize --calib)")
    p.add_argument("--dataset", required=True, help="labelled evaluation dataset spec")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--percentile", type=float, default=99.99, help="for --methods percentile")
    p.add_argument("--limit", type=int, default=None, help="evaluate on the first N images")
    p.add_argument("--seed", type=int, default=None, help="seed of a synthetic --dataset")
    p.add_argument("--calib-seed", type=int, default=None, help="seed of a synthetic --calib")
    args = p.parse_args(argv)
    import warnings

    from fcn_deploy.quantize.calibration import open_calibration_source
    from fcn_deploy.quantize.ptq import load_fp32_graph, model_meta

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta = model_meta(load_fp32_graph(args.model), args.model)
    reader = open_calibration_source(args.calib, mean=meta.mean, channel_order=meta.channel_order,
                                     seed=args.calib_seed, progress=False)
    data: Any = args.dataset
    if args.seed is not None:
        from fcn_deploy.datasets import create_dataset

        data = create_dataset(args.dataset, seed=args.seed)
    miou, rows = measure_sensitivity(args.model, reader, data, methods=args.methods,
                                     percentile=args.percentile, max_images=args.limit,
                                     progress=False)
    print(format_table(miou, rows))
    return 0


if __name__ == "__main__":
    from fcn_deploy.cli.common import run_main  # FCNError -> one line, exit 2, as every command

    sys.exit(run_main(main))
