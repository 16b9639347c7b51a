"""scripts/gpu_check.sh: its dry run (ONNX Runtime standing in for TensorRT) runs in the suite so
the GPU check cannot rot; its pure decisions are tested directly."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("torch")


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_dry_run_writes_a_report_marked_dry_run(tmp_path):
    out = tmp_path / "report"
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run", "--out",
                           str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    data = json.loads((out / "gpu_check.json").read_text())
    assert data["dry_run"] is True and data["facts"]["tensorrt"] == "not used (dry run)"
    names = [c["name"] for c in data["checks"]]
    for precision in ("fp32", "fp16", "int8"):
        assert f"build_small_{precision}" in names and f"layers_small_{precision}" in names
        assert f"parity_small_{precision}" in names
        assert f"time_small_{precision}_1x3x64x64" in names
    assert names[-1] == "pytest_tensorrt"
    assert "cpp_labels_equal_python" in names or "cpp_labels" in names  # C++ built or not
    assert all(c["ok"] and c["value"].endswith("[DRY-RUN: onnxruntime]") for c in data["checks"])
    md = (out / "gpu_check.md").read_text()
    assert md.startswith("# GPU check of the TensorRT path -- DRY-RUN")
    tail = [line for line in proc.stdout.splitlines() if line.startswith(("PASS ", "FAIL "))]
    assert len(tail) == len(data["checks"]) and all(line.startswith("PASS ") for line in tail)


def test_extra_follows_the_drivers_cuda_major():
    gc = _module()
    assert gc.pick_extra("12.9") == "tensorrt" and gc.pick_extra("13.0") == "tensorrt-cu13"
    assert gc.pick_extra(None) == "tensorrt"


def test_cpp_headers_match_the_installed_tensorrt(tmp_path, monkeypatch):
    gc = _module()
    for name in ("10.16", "11.1", "11.4"):
        (tmp_path / name / "include").mkdir(parents=True)
        (tmp_path / name / "include" / "NvInferRuntime.h").write_text("")
    monkeypatch.setenv("FCN_TENSORRT_HEADERS", str(tmp_path))
    assert gc.header_set_for("10.16.1.11") == tmp_path / "10.16" / "include"
    assert gc.header_set_for("11.1.0.106") == tmp_path / "11.1" / "include"
    assert gc.header_set_for("11.3.0.99") == tmp_path / "11.4" / "include"  # same major, newest
    assert gc.header_set_for("12.0.0.1") is None
