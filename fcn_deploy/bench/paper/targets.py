"""The issue's speed targets, each read from the run's own records and judged honestly.

A target whose inputs were not measured (section or model not run, a backend skipped) reports
``holds = None`` with the reason. Targets are about the reference nets on the benchmark machine:
at another width or input size they are still computed but flagged as not the real test.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    threshold: float | None  # None: reported, no pass/fail ("aim" values)
    unit: str


TARGETS = (
    Target("alexnet_whole_image_vs_batched_patches",
           "FCN-AlexNet whole image at least 5x faster than 100 batched AlexNet patches "
           "(the paper's claim)", 5.0, "x"),
    Target("fcn8s_onnxruntime_fp32_vs_torch",
           "ONNX Runtime FP32 FCN-8s at least 1.8x faster than PyTorch eager (compute)", 1.8, "x"),
    Target("onnxruntime_fp32_conv_fraction_of_peak",
           "ONNX Runtime FP32 convolution throughput (FCN-8s) at least 70% of the measured FP32 "
           "peak", 0.70, "fraction"),
    Target("fcn8s_int8_vs_fp32",
           "ONNX Runtime INT8 / FP32 speed-up for FCN-8s VGG16 (aim >= 1.5x)", 1.5, "x"),
    Target("fcn_alexnet_int8_vs_fp32",
           "ONNX Runtime INT8 / FP32 speed-up for FCN-AlexNet (reported, no threshold)", None, "x"),
)


def format_measured(target: dict[str, Any]) -> str:
    """A target record's measured value as the reports show it ("73%", "1.92x")."""
    value = target.get("measured")
    if value is None:
        return "not measured"
    return f"{value:.0%}" if target.get("unit") == "fraction" else f"{value:.2f}x"


def _find(records, kind: str, **match: Any) -> dict[str, Any] | None:
    for r in records:
        if r.get("kind") == kind and all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def _skip_reason(records, model: str, backend: str, precision: str) -> str | None:
    row = _find(records, "backend", model=model, backend=backend, precision=precision)
    return row.get("reason") if row and row.get("status") == "skipped" else None


#: The timings each target is computed from: (kind, match) pairs.
_INPUTS = {
    "alexnet_whole_image_vs_batched_patches": [("patchwise", {"case": "patches_batched"}),
                                               ("patchwise", {"case": "whole_image"})],
    "fcn8s_onnxruntime_fp32_vs_torch": [
        ("backend", {"model": "fcn8s_vgg16", "backend": "torch", "precision": "fp32"}),
        ("backend", {"model": "fcn8s_vgg16", "backend": "onnxruntime", "precision": "fp32"})],
    "onnxruntime_fp32_conv_fraction_of_peak": [
        ("backend", {"model": "fcn8s_vgg16", "backend": "onnxruntime", "precision": "fp32"})],
    "fcn8s_int8_vs_fp32": [
        ("backend", {"model": "fcn8s_vgg16", "backend": "onnxruntime", "precision": p})
        for p in ("fp32", "int8")],
    "fcn_alexnet_int8_vs_fp32": [
        ("backend", {"model": "fcn_alexnet", "backend": "onnxruntime", "precision": p})
        for p in ("fp32", "int8")],
}


def _low_core_use(records, name: str) -> list[str]:
    out = []
    for kind, match in _INPUTS.get(name, []):
        r = _find(records, kind, **match)
        if r is not None and r.get("low_core_use"):
            label = match.get("case") or f"{match.get('backend')} {match.get('precision')}"
            out.append(f"{label} at {r['core_use']:.0%}")
    return out


def evaluate_targets(records: list[dict[str, Any]], config: Any) -> list[dict[str, Any]]:
    """One "target" record per :data:`TARGETS` entry: measured value, threshold, holds, note."""
    reference = config.width == 1.0 and config.size == 500
    caveat = ("" if reference else
              f" (width {config.width:g}, {config.size}px: not the reference nets at 500x500, "
              "so this is no test of the target)")
    out = []
    for t in TARGETS:
        value, note = None, ""
        if t.name == "alexnet_whole_image_vs_batched_patches":
            r = _find(records, "ratio", section="patchwise", name="whole_vs_batched")
            if r:
                value = r["value"]
                note = (f"{r['numerator_ms']:.1f} ms for the batched patches / "
                        f"{r['denominator_ms']:.1f} ms for the whole image ({r['backend']})")
                if config.patch_grid != 10:
                    note += f"; {config.patch_grid}x{config.patch_grid} grid, not 10x10"
            else:
                note = "section 3.1 (patchwise) was not run"
        elif t.name == "fcn8s_onnxruntime_fp32_vs_torch":
            r = _find(records, "ratio", name="fcn8s_vgg16:onnxruntime_fp32_vs_torch_compute")
            e = _find(records, "ratio", name="fcn8s_vgg16:onnxruntime_fp32_vs_torch_e2e")
            if r:
                value = r["value"]
                note = (f"torch {r['numerator_ms']:.0f} ms / onnxruntime {r['denominator_ms']:.0f} "
                        f"ms compute")
                if e:
                    note += f"; end to end {e['value']:.2f}x"
            else:
                note = "the backend comparison did not run on fcn8s_vgg16"
        elif t.name == "onnxruntime_fp32_conv_fraction_of_peak":
            r = _find(records, "conv_profile", model="fcn8s_vgg16")
            if r and r.get("fraction_of_peak") is not None:
                value = r["fraction_of_peak"]
                timing = _find(records, "backend", model="fcn8s_vgg16", backend="onnxruntime",
                               precision="fp32")
                whole = ""
                if timing and timing.get("compute_gflops") and r.get("peak_gflops"):
                    whole = (f"; whole graph {timing['compute_gflops']:.1f} GFLOP/s = "
                             f"{timing['compute_gflops'] / r['peak_gflops']:.0%} of peak")
                note = (f"convolution kernels {r['conv_gflops']:.1f} GFLOP/s (profiler: "
                        f"{r['conv_ms']:.0f} ms of conv per run) vs peak {r['peak_gflops']:.1f} "
                        f"GFLOP/s{whole}")
                if value > 1.0:
                    note += ("; above 100%: every peak sample was taken while other processes "
                             "held cores, so the peak is understated")
            else:
                note = "no ONNX Runtime profile of fcn8s_vgg16 (backend comparison not run)"
        else:
            model = "fcn8s_vgg16" if t.name.startswith("fcn8s") else "fcn_alexnet"
            r = _find(records, "ratio", name=f"{model}:onnxruntime_int8_vs_fp32_compute")
            if r:
                value = r["value"]
                note = (f"fp32 {r['numerator_ms']:.1f} ms / int8 {r['denominator_ms']:.1f} ms "
                        "compute")
            else:
                note = (_skip_reason(records, model, "onnxruntime", "int8")
                        or f"the backend comparison did not run on {model}")
        low = _low_core_use(records, t.name)
        if low:
            note += f"; measured with under-used cores ({', '.join(low)}): times inflated"
        holds = None
        if value is not None and t.threshold is not None:
            holds = bool(value >= t.threshold)
        out.append({"kind": "target", "name": t.name, "description": t.description,
                    "measured": value, "threshold": t.threshold, "unit": t.unit, "holds": holds,
                    "reference_setting": reference, "note": note + caveat})
    return out
