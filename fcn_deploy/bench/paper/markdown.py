"""The reproduction report as Markdown, built only from the run's flat records."""
from __future__ import annotations

from typing import Any, Sequence

from fcn_deploy.bench.paper.targets import format_measured
from fcn_deploy.bench.report import Column, markdown_table


def _f(spec: str):
    return lambda v: format(v, spec)


def _of(records, kind: str, **match):
    return [r for r in records if r.get("kind") == kind and
            all(r.get(k) == v for k, v in match.items())]


def _num(v, spec: str = ".1f", missing: str = "-") -> str:
    return missing if v is None else format(v, spec)


def _header(records, config) -> list[str]:
    env = next((r for r in records if r.get("kind") == "environment"), {})
    summary = next((r for r in records if r.get("kind") == "summary"), {})
    lines = [
        "# FCN timing reproduction (fcn-bench --paper)", "",
        f"Machine: {env.get('cpu')} ({env.get('cpu_count')} cores), {config.threads} threads "
        f"for every backend and for the peak; onnxruntime {env.get('onnxruntime')}, torch "
        f"{env.get('torch')}; {env.get('timestamp')}; load average at start "
        f"{_num(env.get('load_avg_1min_at_start'), '.2f')}, at end "
        f"{_num(summary.get('load_avg_1min_at_end'), '.2f')}; run took "
        f"{_num(summary.get('seconds'), '.0f')} s.",
        "",
        f"Settings: width {config.width:g} "
        f"({'the reference nets' if config.width == 1 else 'thin nets'}), "
        f"input {config.size}x{config.size}, {config.warmup} warm-up + {config.runs} timed runs "
        f"(Table 1, section 3.1, backends, export variants), latency curve {config.scaling_runs} "
        f"runs per size; main backend {config.backend}.",
    ]
    if config.command:
        lines += ["", f"Command: `{config.command}`"]
    lines += ["", "Weights are random (seeded): the arithmetic of a forward pass does not depend "
              "on the weights' values, so timings hold for trained models; no accuracy is "
              "measured here (the paper's mean IU is shown for reference only)."]
    if config.quick:
        lines += ["", "**Quick mode**: tiny widths and inputs, few runs. It checks that the "
                  "harness works; its numbers say nothing about the paper's claims."]
    return lines


def _targets(records) -> list[str]:
    rows = _of(records, "target")
    if not rows:
        return []

    def threshold(r):
        t = r.get("threshold")
        if t is None:
            return "-"
        return f">= {t:.0%}" if r.get("unit") == "fraction" else f">= {t:g}x"

    def holds(r):
        return {True: "**holds**", False: "**does not hold**", None: "n/a"}[r.get("holds")]

    table = ["| target | measured | threshold | result | how it was measured |",
             "|---|---|---|---|---|"]
    for r in rows:
        table.append(f"| {r['description']} | {format_measured(r)} | {threshold(r)} | {holds(r)} | "
                     f"{r.get('note', '')} |")
    return ["", "## Targets", "", *table]


def _table1(records) -> list[str]:
    rows = _of(records, "table1")
    if not rows:
        return []
    head = "| | " + " | ".join(r["display"] for r in rows) + " |"
    rule = "|---|" + "---|" * len(rows)

    def line(label: str, fn) -> str:
        return f"| {label} | " + " | ".join(fn(r) for r in rows) + " |"

    def pair(key, pkey, spec):
        return lambda r: f"{_num(r.get(key), spec)} ({_num(r.get(pkey), spec)})"

    n = rows[0]["runs"]
    lines = ["", "## Table 1 (measured, paper in parentheses)", "",
             f"Forward time = mean compute time of {n} runs after {rows[0]['warmup']} warm-up, "
             f"{rows[0]['input']} input, {rows[0]['backend']} on this CPU; the paper's is a Tesla "
             "K40c GPU, so compare the shape (the last rows), not the milliseconds. Layers, "
             "parameters, receptive field and stride are computed from the models.", "",
             head, rule,
             line("forward time (ms)", pair("compute_mean_ms", "paper_forward_ms", ".0f")),
             line("forward, median / p90 (ms)",
                  lambda r: f"{r['compute_median_ms']:.0f} / {r['compute_p90_ms']:.0f}"),
             line("end to end (ms)", lambda r: _num(r.get("e2e_mean_ms"), ".0f")),
             line("conv layers", pair("conv_layers", "paper_conv_layers", "d")),
             line("parameters (M, trainable)",
                  lambda r: f"{r['trainable_parameters'] / 1e6:.1f} "
                            f"({_num(r.get('paper_parameters_m'), 'g')})"),
             line("parameters (M, incl. frozen upsampling)",
                  lambda r: f"{r['parameters'] / 1e6:.1f}"),
             line("receptive field", pair("receptive_field", "paper_receptive_field", "d")),
             line("max stride", pair("max_stride", "paper_max_stride", "d")),
             line("GMAC", lambda r: _num(r.get("gmacs"), ".1f")),
             line("achieved GFLOP/s", lambda r: _num(r.get("compute_gflops"), ".1f")),
             line("time / FCN-AlexNet's",
                  pair("relative_to_alexnet", "paper_relative_to_alexnet", ".2f")),
             line("mean IU (paper only)", lambda r: f"({_num(r.get('paper_mean_iu'), '.1f')})")]
    return lines


def _patchwise(records) -> list[str]:
    cases = _of(records, "patchwise")
    if not cases:
        return []
    b = cases[0]
    cols = [Column("description", "measurement"),
            Column("compute_mean_ms", "mean (ms)", _f(".1f")),
            Column("compute_median_ms", "median (ms)", _f(".1f")),
            Column("compute_cv", "CV", _f(".1%")),
            Column("per_patch_ms", "per patch (ms)", _f(".2f")),
            Column("gmacs", "GMAC", _f(".2f")),
            Column("compute_gflops", "GFLOP/s", _f(".0f")),
            Column("paper_ms", "paper (ms)", _f("g"))]
    lines = ["", "## Section 3.1: patchwise classification vs one convolutional pass", "",
             f"AlexNet (CaffeNet geometry) with random weights on {b['backend']}, "
             f"{b['image']} image, {b['grid']} grid of 227x227 patches at stride 32; "
             f"{b['runs']} runs each, compute only (inputs prepared).", "",
             markdown_table(cases, cols), ""]
    ratios = _of(records, "ratio", section="patchwise")
    rcols = [Column("description", "ratio"), Column("numerator_ms", "numerator (ms)", _f(".1f")),
             Column("denominator_ms", "denominator (ms)", _f(".2f")),
             Column("value", "measured", _f(".2f")), Column("paper_value", "paper", _f("g"))]
    lines += [markdown_table(ratios, rcols), ""]
    ext = _of(records, "extrapolation")
    ecols = [Column("description", "dense output by ..."),
             Column("per_unit_ms", "measured per unit (ms)", _f(".2f")),
             Column("units", "units", _f(",d")),
             Column("total_s", "extrapolated total (s)", _f(",.1f")),
             Column("sample", "measured on")]
    lines += ["Extrapolated (measured on the sample named, multiplied by the number of units; "
              "not run in full):", "", markdown_table(ext, ecols)]
    fcn = _of(records, "table1", model="fcn_alexnet")
    if fcn and ext:
        lines += ["", f"For comparison, FCN-AlexNet (in-network upsampling, one pass) produces "
                  f"the dense {fcn[0]['input']} output in {fcn[0]['compute_mean_ms']:.0f} ms "
                  "(Table 1 row)."]
    return lines


def _backends(records) -> list[str]:
    rows = _of(records, "backend")
    if not rows:
        return []
    lines = ["", "## Backends and precisions", "",
             "Every graph has scores out and the argmax on the host, so rows compare like with "
             "like; 'vs torch' = PyTorch eager time / this row's time (higher is faster)."]
    ratios = {r["name"]: r for r in _of(records, "ratio", section="backends")}
    for model in dict.fromkeys(r["model"] for r in rows):
        table = ["| backend | precision | compute mean (ms) | median | p90 | CV | e2e mean (ms) "
                 "| img/s | GFLOP/s | vs torch (compute) | vs torch (e2e) |",
                 "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in (x for x in rows if x["model"] == model):
            if r.get("status") != "measured":
                table.append(f"| {r['backend']} | {r['precision']} | {r.get('status')}: {r.get('reason')} "
                             "| | | | | | | | |")
                continue
            key = f"{r['backend']}_{r['precision']}"
            one = 1.0 if r["backend"] == "torch" else None  # the reference row
            rc = ratios.get(f"{model}:{key}_vs_torch_compute", {}).get("value", one)
            re = ratios.get(f"{model}:{key}_vs_torch_e2e", {}).get("value", one)
            table.append(
                f"| {r['backend']} | {r['precision']} | {r['compute_mean_ms']:.1f} | "
                f"{r['compute_median_ms']:.1f} | {r['compute_p90_ms']:.1f} | "
                f"{r['compute_cv']:.1%} | {r['e2e_mean_ms']:.1f} | "
                f"{r['e2e_throughput_ips']:.2f} | {_num(r.get('compute_gflops'))} | "
                f"{_num(rc, '.2f')} | {_num(re, '.2f')} |")
        lines += ["", f"### {rows[[x['model'] for x in rows].index(model)]['display']} "
                      f"({rows[0]['input']})", "", *table]
        for backend in ("onnxruntime", "tensorrt"):
            for low in ("int8", "fp16"):
                for what in ("compute", "e2e"):
                    r = ratios.get(f"{model}:{backend}_{low}_vs_fp32_{what}")
                    if r:
                        lines.append(f"\n{backend} FP32 / {low.upper()} ({what}): "
                                     f"{r['numerator_ms']:.1f} / {r['denominator_ms']:.1f} ms = "
                                     f"**{r['value']:.2f}x** (> 1: {low.upper()} is faster)")
        prof = _of(records, "conv_profile", model=model)
        if prof:
            p = prof[0]
            ops = ", ".join(f"{k[3:-3]} {v:.0f} ms" for k, v in p.items()
                            if k.startswith("op_") and k.endswith("_ms"))
            lines.append(
                f"\nONNX Runtime FP32 profile ({p['runs']} runs): convolution kernels "
                f"{p['conv_ms']:.0f} ms of {p['kernel_total_ms']:.0f} ms per run "
                f"({_num(p.get('conv_share'), '.0%')}); {_num(p.get('conv_gmacs'), '.1f')} GMAC "
                f"-> {_num(p.get('conv_gflops'))} GFLOP/s = "
                f"{_num(p.get('fraction_of_peak'), '.0%')} "
                f"of the measured peak. By operator: {ops}.")
    return lines


def _export(records) -> list[str]:
    rows = _of(records, "export_variant")
    if not rows:
        return []
    ratios = _of(records, "ratio", section="export")
    cols = [Column("variant", "variant"), Column("description", "graph"),
            Column("compute_mean_ms", "compute mean (ms)", _f(".1f")),
            Column("compute_cv", "CV", _f(".1%")),
            Column("e2e_mean_ms", "e2e mean (ms)", _f(".1f")),
            Column("copy_out_mean_ms", "copy out (ms)", _f(".2f")),
            Column("argmax_mean_ms", "argmax (ms)", _f(".2f")),
            Column("gmacs", "GMAC", _f(".2f"))]
    lines = ["", "## Export optimizations (ONNX Runtime FP32)", "",
             "Gain = time without the optimization / time with it (> 1: it helps)."]
    for model in dict.fromkeys(r["model"] for r in rows):
        sub = [r for r in rows if r["model"] == model]
        lines += ["", f"### {sub[0]['display']} ({sub[0]['input']})", "",
                  markdown_table(sub, cols), ""]
        for r in (x for x in ratios if x.get("model") == model):
            lines.append(f"- {r['description']}: {r['numerator_ms']:.1f} / "
                         f"{r['denominator_ms']:.1f} ms = **{r['value']:.3f}x**")
    return lines


def _scaling(records, images) -> list[str]:
    rows = _of(records, "scaling")
    if not rows:
        return []
    sizes = sorted({r["size"] for r in rows})
    head = "| model | " + " | ".join(f"{s}px" for s in sizes) + " | ms per megapixel |"
    rule = "|---|" + "---|" * (len(sizes) + 1)
    table = [head, rule]
    for model in dict.fromkeys(r["model"] for r in rows):
        by = {r["size"]: r for r in rows if r["model"] == model}
        per_mp = [by[s]["compute_mean_ms"] / (s * s / 1e6) for s in sizes if s in by]
        table.append(f"| {next(iter(by.values()))['display']} | " +
                     " | ".join(f"{by[s]['compute_mean_ms']:.0f}" if s in by else "-"
                                for s in sizes)
                     + f" | {min(per_mp):.0f}..{max(per_mp):.0f} |")
    lines = ["", "## Latency against input size", "",
             f"Mean compute time (ms), {rows[0]['backend']}, {rows[0]['runs']} runs per point "
             "after one warm-up. Cost grows with the pixel count (the per-megapixel column stays "
             "in a narrow band; small inputs pay the fixed padding-100 border and the fc layers).",
             "", *table]
    if images.get("scaling_png"):
        lines += ["", f"![latency against input size]({images['scaling_png']})"]
    if images.get("table1_png"):
        lines += ["", f"![Table 1 reproduction]({images['table1_png']})"]
    return lines


def _peak(records) -> list[str]:
    best = next((r for r in records if r.get("kind") == "peak" and r.get("when") == "best"), None)
    if best is None:
        return []
    parts = [f"{k[5:-7].replace('_n', ' n=')}: {v:.1f}" for k, v in best.items()
             if k.startswith("peak_") and k.endswith("_gflops") and k != "peak_gflops"
             and v is not None]
    samples = [f"{r['when']} {r['peak_gflops']:.0f}" for r in records
               if r.get("kind") == "peak" and r.get("when") != "best"]
    return ["", "## Measured FP32 peak", "",
            f"Best single-precision matrix product at {best.get('peak_threads')} threads: "
            f"**{best['peak_gflops']:.1f} GFLOP/s** ({best['peak_method']}). Samples (GFLOP/s): "
            f"{'; '.join(samples)}. Best per library and size: {'; '.join(parts)}."]


def _all_timings(records) -> list[str]:
    rows = []
    for r in records:
        if "compute_mean_ms" not in r:
            continue
        what = {"table1": f"Table 1 {r.get('display')}",
                "backend": f"{r.get('display')} {r.get('backend')} {r.get('precision')}",
                "export_variant": f"{r.get('display')} export {r.get('variant')}",
                "scaling": f"{r.get('display')} {r.get('size')}px",
                "patchwise": f"3.1 {r.get('case')}"}.get(r["kind"], r["kind"])
        rows.append({**r, "what": what})
    if not rows:
        return []
    cols = [Column("what", "measurement"), Column("compute_n", "runs", _f("d"))]
    for s in ("min", "median", "mean", "p90", "p99", "max"):
        cols.append(Column(f"compute_{s}_ms", s, _f(".1f")))
    cols += [Column("compute_cv", "CV", _f(".1%")), Column("e2e_mean_ms", "e2e mean", _f(".1f")),
             Column("e2e_p99_ms", "e2e p99", _f(".1f")),
             Column("cpu_per_wall", "CPU/wall", _f(".2f")),
             Column("low_core_use", "cores under-used", lambda v: "**yes**" if v else "no")]
    low = [r["what"] for r in rows if r.get("low_core_use")]
    lines = ["", "## Every timing (compute, ms)", ""]
    if low:
        lines += [f"{len(low)} of {len(rows)} timings used less than 75% of their threads' "
                  f"cores (other processes on the machine, or serial stretches in the graph); "
                  f"their times are inflated: {', '.join(low)}.", ""]
    return lines + [markdown_table(rows, cols)]


def _notes(records, config) -> list[str]:
    lines = ["", "## Notes", "",
             "- MACs: ONNX graphs are counted from the graph (shape inference at the timed "
             "shape; Conv/ConvTranspose weight shape x output/input size), PyTorch models with "
             "fcn_deploy.models.analysis.count_macs; GFLOP/s = 2 x MACs / mean compute time.",
             "- 'compute' is the network alone (ONNX Runtime: run_with_iobinding; PyTorch: the "
             "module's forward); 'e2e' adds preprocessing, copies and the argmax.",
             f"- CPU/wall (every-timing table) = process CPU seconds per wall second while "
             f"timing: about {config.threads} when the run had its {config.threads} threads' cores "
             "to itself, lower when other processes took them (those times are inflated).",
             "- Dense patchwise and shift-and-stitch totals are extrapolated from the measured "
             "samples named in their table, not run in full."]
    for r in _of(records, "skip"):
        lines.append(f"- Skipped {r['what']}: {r['reason']}")
    trt = {r["reason"] for r in _of(records, "backend", backend="tensorrt", status="skipped")}
    for reason in trt:
        lines.append(f"- TensorRT rows skipped: {reason}.")
    for r in _of(records, "backend", backend="tensorrt", status="failed"):
        lines.append(f"- TensorRT {r['precision']} FAILED on {r['model']}: {r['reason']}.")
    return lines


def render_markdown(records: Sequence[dict[str, Any]], config: Any, *,
                    images: dict[str, str] | None = None) -> str:
    images = images or {}
    lines = _header(records, config)
    lines += _targets(records)
    lines += _table1(records)
    lines += _patchwise(records)
    lines += _backends(records)
    lines += _export(records)
    lines += _scaling(records, images)
    lines += _peak(records)
    lines += _all_timings(records)
    lines += _notes(records, config)
    return "\n".join(lines) + "\n"
