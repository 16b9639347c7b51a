"""Flat records, CSV/Markdown rendering, atomic files, the FP32 peak and the ORT profile."""
from __future__ import annotations

import json

import pytest

from fcn_deploy.bench.peak import PeakResult, measure_peak
from fcn_deploy.bench.report import (Column, markdown_table, prepare_output_dir, read_json,
                                     to_csv, write_json)
from fcn_deploy.errors import FCNError


def test_records_are_flat_and_round_trip(tmp_path):
    rows = [{"kind": "timing", "a_ms": 1.5, "ok": True, "n": 3, "none": None,
             "inf": float("inf")}]
    path = write_json(tmp_path / "r.json", rows)
    back = read_json(path)
    assert back == [{"kind": "timing", "a_ms": 1.5, "ok": True, "n": 3, "none": None,
                     "inf": None}]
    with pytest.raises(TypeError, match="records are flat"):
        write_json(tmp_path / "bad.json", [{"nested": {"x": 1}}])
    assert not (tmp_path / "bad.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left behind


def test_csv_and_markdown():
    rows = [{"a": 1, "b": 2.25}, {"a": 3, "c": "x|y"}]
    assert to_csv(rows) == "a,b,c\n1,2.25,\n3,,x|y\n"
    table = markdown_table(rows, [Column("a", "A"), Column("b", "B", "{:.1f}"), Column("c", "C")])
    assert table.splitlines() == ["| A | B | C |", "|---|---|---|", "| 1 | 2.2 | - |",
                                  "| 3 | - | x/y |"]


def test_output_dir_rules(tmp_path):
    assert prepare_output_dir(tmp_path / "new").is_dir()
    with pytest.raises(FCNError, match="does not exist"):
        prepare_output_dir(tmp_path / "missing" / "deeper")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FCNError, match="is a file"):
        prepare_output_dir(tmp_path / "file")
    with pytest.raises(FCNError, match="does not exist"):
        write_json(tmp_path / "missing" / "r.json", [])


def test_peak_measures_a_plausible_rate():
    peak = measure_peak(threads=1, sizes=(128,), methods=("onnxruntime", "numpy"), repeats=2)
    assert set(peak.gflops) <= {"onnxruntime@128", "numpy@128"} and "onnxruntime@128" in peak.gflops
    assert peak.peak_gflops == max(peak.gflops.values()) > 0.1
    flat = peak.flat()
    assert flat["peak_onnxruntime_n128_gflops"] == peak.gflops["onnxruntime@128"]
    other = PeakResult(threads=1, gflops={"onnxruntime@128": peak.peak_gflops * 2})
    merged = peak.merge(other)
    assert merged.peak_gflops == peak.peak_gflops * 2 and merged.peak_method == "onnxruntime@128"
    with pytest.raises(FCNError, match="unknown peak method"):
        measure_peak(methods=("cublas",))


def test_ort_profile_times_the_convolutions(tiny_artifacts):
    from fcn_deploy.bench.profile import ort_profile, parse_ort_profile

    prof = ort_profile(tiny_artifacts["scores"], (1, 3, 64, 64), threads=1, runs=2, warmup=1)
    assert prof.runs == 2 and prof.conv_ms > 0 and prof.total_ms >= prof.conv_ms
    assert "ConvTranspose" in prof.by_op_ms  # the upsampling is timed separately from Conv
    events = [{"cat": "Node", "name": "a_kernel_time", "dur": 3000, "args": {"op_name": "Conv"}},
              {"cat": "Node", "name": "b_kernel_time", "dur": 1000, "args": {"op_name": "Relu"}},
              {"cat": "Node", "name": "a_fence_before", "dur": 7, "args": {"op_name": "Conv"}}]
    parsed = parse_ort_profile(events, runs=2)
    assert parsed.by_op_ms == {"Conv": 1.5, "Relu": 0.5} and parsed.conv_ms == 1.5


def test_benchmark_sessions_stop_spinning_after_a_run(tiny_artifacts):
    from fcn_deploy.bench.pipeline import STOP_SPINNING, make_ort_session

    (key, value), = STOP_SPINNING.items()
    opts = make_ort_session(tiny_artifacts["scores"], threads=1).get_session_options()
    assert opts.get_session_config_entry(key) == value == "1"
    kept = make_ort_session(tiny_artifacts["scores"], threads=1, stop_spinning=False)
    with pytest.raises(RuntimeError, match="does not have configuration"):
        kept.get_session_options().get_session_config_entry(key)
