"""The paper reproduction in quick mode (CI): structure and internal consistency, not speed."""
from __future__ import annotations

import json

import pytest

from fcn_deploy.timing import STAT_FIELDS

MODELS = ("fcn_alexnet", "fcn8s_vgg16")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    from fcn_deploy.cli.bench import main

    out = tmp_path_factory.mktemp("paper") / "out"
    rc = main(["--paper", "--quick", "--models", *MODELS, "--output-dir", str(out), "--quiet"])
    assert rc == 0
    return out, json.loads((out / "paper.json").read_text())


def _of(records, kind, **match):
    return [r for r in records
            if r["kind"] == kind and all(r.get(k) == v for k, v in match.items())]


def test_files_are_written(quick):
    out, records = quick
    for name in ("paper.json", "paper.csv", "paper.md", "paper_scaling.png", "paper_table1.png"):
        assert (out / name).stat().st_size > 0, name
    for png in ("paper_scaling.png", "paper_table1.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["paper.json", "paper.csv", "paper.md", "paper_scaling.png", "paper_table1.png"])
    csv_header = (out / "paper.csv").read_text().splitlines()[0].split(",")
    assert "kind" in csv_header and "compute_mean_ms" in csv_header
    md = (out / "paper.md").read_text()
    for heading in ("## Targets", "## Table 1", "## Section 3.1", "## Backends and precisions",
                    "## Export optimizations", "## Latency against input size",
                    "## Measured FP32 peak", "## Every timing", "**Quick mode**",
                    "Weights are random"):
        assert heading in md, heading
    assert all(not isinstance(v, (dict, list)) for r in records for v in r.values())


def test_every_timing_is_ordered(quick):
    _, records = quick
    timed = [r for r in records if "compute_mean_ms" in r]
    assert len(timed) >= 20
    for r in timed:
        for prefix in ("compute", "e2e"):
            if f"{prefix}_min_ms" not in r:
                continue
            seq = [r[f"{prefix}_{s}_ms"] for s in ("min", "median", "p90", "p99", "max")]
            assert seq == sorted(seq), r
            assert r[f"{prefix}_min_ms"] <= r[f"{prefix}_mean_ms"] <= r[f"{prefix}_max_ms"]
            assert r[f"{prefix}_cv"] >= 0
        if "e2e_mean_ms" in r:
            assert r["compute_mean_ms"] <= r["e2e_mean_ms"]
        if r.get("compute_gflops") is not None:
            assert r["compute_gflops"] == pytest.approx(2 * r["gmacs"] / r["compute_mean_ms"] * 1e3)
    assert set(STAT_FIELDS) <= {k.split("_")[1] for k in timed[0] if k.startswith("compute_")}


def test_ratios_are_quotients_of_reported_times(quick):
    from fcn_deploy.runtime import backend_status

    trt_reason = backend_status()["tensorrt"]
    _, records = quick
    ratios = _of(records, "ratio")
    assert len(ratios) >= 12
    for r in ratios:
        assert r["value"] == pytest.approx(r["numerator_ms"] / r["denominator_ms"])
    for model in MODELS:
        torch_row = _of(records, "backend", model=model, backend="torch")[0]
        ort = _of(records, "backend", model=model, backend="onnxruntime", precision="fp32")[0]
        int8 = _of(records, "backend", model=model, backend="onnxruntime", precision="int8")[0]
        fp16 = _of(records, "backend", model=model, backend="onnxruntime", precision="fp16")[0]
        assert int8["status"] == fp16["status"] == "measured", (int8.get("reason"),
                                                                fp16.get("reason"))
        vs = _of(records, "ratio", name=f"{model}:onnxruntime_fp32_vs_torch_compute")[0]
        assert (vs["numerator_ms"], vs["denominator_ms"]) == (torch_row["compute_mean_ms"],
                                                              ort["compute_mean_ms"])
        q = _of(records, "ratio", name=f"{model}:onnxruntime_int8_vs_fp32_compute")[0]
        assert (q["numerator_ms"], q["denominator_ms"]) == (ort["compute_mean_ms"],
                                                            int8["compute_mean_ms"])
        h = _of(records, "ratio", name=f"{model}:onnxruntime_fp16_vs_fp32_e2e")[0]
        assert (h["numerator_ms"], h["denominator_ms"]) == (ort["e2e_mean_ms"], fp16["e2e_mean_ms"])
        variants = {r["variant"]: r for r in _of(records, "export_variant", model=model)}
        assert set(variants) == {"base", "no_depthwise", "no_crop_folding", "labels"}
        g = _of(records, "ratio", name=f"{model}:gain_depthwise_upsampling")[0]
        assert (g["numerator_ms"], g["denominator_ms"]) == (
            variants["no_depthwise"]["compute_mean_ms"], variants["base"]["compute_mean_ms"])
        # the depthwise rewrite really removes multiplications
        assert variants["no_depthwise"]["gmacs"] > variants["base"]["gmacs"]
        assert variants["labels"]["argmax_mean_ms"] == 0 < variants["base"]["argmax_mean_ms"]
        trt = _of(records, "backend", model=model, backend="tensorrt")
        assert len(trt) == 3
        if trt_reason is None:  # TensorRT usable here: every row measured (a failed build fails)
            assert [r["status"] for r in trt] == ["measured"] * 3, [r.get("reason") for r in trt]
        else:  # skipped only for the reason the backend is unavailable, nothing else
            assert [(r["status"], r["reason"]) for r in trt] == [("skipped", trt_reason)] * 3
    cases = {r["case"]: r for r in _of(records, "patchwise")}
    w = _of(records, "ratio", name="whole_vs_batched")[0]
    assert (w["numerator_ms"], w["denominator_ms"]) == (cases["patches_batched"]["compute_mean_ms"],
                                                        cases["whole_image"]["compute_mean_ms"])
    table1 = {r["model"]: r for r in _of(records, "table1")}
    rel = table1["fcn8s_vgg16"]["relative_to_alexnet"]
    assert rel == pytest.approx(table1["fcn8s_vgg16"]["compute_mean_ms"]
                                / table1["fcn_alexnet"]["compute_mean_ms"])


def test_table1_numbers_come_from_the_models(quick):
    from fcn_deploy.models import create_model
    from fcn_deploy.models.analysis import count_parameters

    _, records = quick
    table1 = {r["model"]: r for r in _of(records, "table1")}
    assert list(table1) == list(MODELS)
    for name, r in table1.items():
        model = create_model(name, width=1 / 16)
        assert r["parameters"] == count_parameters(model)
        assert r["trainable_parameters"] == count_parameters(model, trainable_only=True)
        assert r["runs"] == 3 and r["compute_n"] == 3 and r["input"] == "1x3x96x96"
    # geometry does not depend on the width: the paper's values
    geometry = {m: (r["conv_layers"], r["receptive_field"]) for m, r in table1.items()}
    assert geometry == {"fcn_alexnet": (8, 355), "fcn8s_vgg16": (16, 404)}
    assert all(r["max_stride"] == 32 for r in table1.values())
    assert table1["fcn8s_vgg16"]["paper_forward_ms"] == 210.0


def test_section_31_and_extrapolations(quick):
    _, records = quick
    cases = {r["case"]: r for r in _of(records, "patchwise")}
    assert set(cases) == {"patch_single", "patches_batched", "patches_one_by_one", "whole_image"}
    assert cases["whole_image"]["grid"] == "4x4" and cases["patches_batched"]["patches"] == 16
    assert cases["patches_one_by_one"]["calls_per_run"] == 16
    ext = {r["name"]: r for r in _of(records, "extrapolation")}
    assert ext["shift_and_stitch"]["units"] == 32 * 32 and ext["shift_and_stitch"]["extrapolated"]
    assert ext["dense_patchwise_batched"]["units"] == 323 * 323
    e = ext["dense_patchwise_batched"]
    assert e["total_s"] == pytest.approx(e["units"] * e["per_unit_ms"] / 1e3)
    assert e["per_unit_ms"] == pytest.approx(cases["patches_batched"]["compute_mean_ms"] / 16)


def test_targets_are_judged_from_their_measurements(quick):
    _, records = quick
    targets = {r["name"]: r for r in _of(records, "target")}
    assert len(targets) == 5
    for t in targets.values():
        assert t["reference_setting"] is False and "not the reference nets" in t["note"]
        if t["measured"] is not None and t["threshold"] is not None:
            assert t["holds"] == (t["measured"] >= t["threshold"])
    prof = _of(records, "conv_profile", model="fcn8s_vgg16")[0]
    assert targets["onnxruntime_fp32_conv_fraction_of_peak"]["measured"] == pytest.approx(
        prof["conv_gflops"] / prof["peak_gflops"])
    best = _of(records, "peak", when="best")[0]
    assert best["peak_gflops"] == max(r["peak_gflops"] for r in _of(records, "peak"))
    assert prof["peak_gflops"] == best["peak_gflops"]
