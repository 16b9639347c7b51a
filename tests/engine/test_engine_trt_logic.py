"""The decisions the TensorRT path makes around TensorRT's calls, tested on the CPU.

These test our code's handling of what TensorRT returns (timing caches refused with False,
bindings that raise RuntimeError, the inspector's JSON, when a GPU test may skip). The objects
standing in for TensorRT below only return the values TensorRT's headers document; they verify
the decisions, not TensorRT: the `tensorrt` tests and scripts/gpu_check.sh do that on a GPU.
"""
from __future__ import annotations

import json

import pytest

from fcn_deploy.engine.build import attach_timing_cache, save_timing_cache, serialize_timing_cache
from fcn_deploy.engine.cuda import cuda_device_count, gpu_test_decision, trt_call
from fcn_deploy.engine.inspector import count_layer_precisions, datatype_of
from fcn_deploy.errors import FCNError


class _Config:
    """IBuilderConfig's timing-cache calls: set_timing_cache returns False for a cache from
    another version/device (NvInfer.h: "true if set successfully, false otherwise")."""

    def __init__(self, *, accepts=lambda blob: True, create_raises=False, serialize=b"cache"):
        self.accepts, self.create_raises, self.serialize = accepts, create_raises, serialize
        self.attached = None

    def create_timing_cache(self, blob):
        if self.create_raises and blob:
            raise RuntimeError("invalid timing cache")
        return {"blob": bytes(blob)}

    def set_timing_cache(self, cache, ignore_mismatch):
        assert ignore_mismatch is False
        if not self.accepts(cache["blob"]):
            return False
        self.attached = cache
        return True

    def get_timing_cache(self):
        if self.serialize is None:
            return None
        data = self.serialize

        class _Cache:
            def serialize(self):
                if isinstance(data, Exception):
                    raise data
                return data
        return _Cache()


def test_timing_cache_from_this_machine_is_loaded():
    log = []
    config = _Config()
    cache = attach_timing_cache(config, b"old", source="t.cache", log=log.append)
    assert cache == {"blob": b"old"} and config.attached is cache
    assert log == ["timing cache t.cache (loaded 3 bytes)"]


def test_refused_timing_cache_falls_back_to_a_fresh_one_with_a_warning():
    log = []
    config = _Config(accepts=lambda blob: blob == b"")  # another GPU's cache: False
    cache = attach_timing_cache(config, b"other gpu", source="t.cache", log=log.append)
    assert cache == {"blob": b""} and config.attached is cache
    assert log[0].startswith("warning: timing cache t.cache (9 bytes) was refused by this "
                             "TensorRT and GPU")
    assert log[1] == "timing cache t.cache (new)"
    log.clear()
    cache = attach_timing_cache(_Config(create_raises=True), b"corrupt", source="t.cache",
                                log=log.append)
    assert cache == {"blob": b""} and "was refused" in log[0]


def test_no_timing_cache_at_all_is_a_warning_not_an_error():
    log = []
    cache = attach_timing_cache(_Config(accepts=lambda blob: False), b"", source="t.cache",
                                log=log.append)
    assert cache is None
    assert log == ["warning: TensorRT refused an empty timing cache; building without one"]


def test_serializing_the_cache_never_raises(tmp_path):
    log = []
    assert serialize_timing_cache(_Config(serialize=b"abc"), log=log.append) == b"abc"
    assert serialize_timing_cache(_Config(serialize=None), log=log.append) is None
    assert serialize_timing_cache(_Config(serialize=RuntimeError("boom")), log=log.append) is None
    assert log[0].startswith("warning: TensorRT returned no timing cache")
    assert log[1] == ("warning: could not serialize the timing cache (RuntimeError: boom); the "
                      "plan is kept, the cache is not saved")
    target = tmp_path / "t.cache"
    assert save_timing_cache(target, b"abc", log=log.append) and target.read_bytes() == b"abc"
    assert not save_timing_cache(target, None, log=log.append)  # nothing to save: file kept
    assert target.read_bytes() == b"abc"
    missing = tmp_path / "no" / "such" / "dir" / "t.cache"
    assert not save_timing_cache(missing, b"abc", log=log.append)
    assert log[-1].startswith(f"warning: could not write the timing cache {missing}")


def test_trt_call_turns_binding_errors_into_fcn_errors():
    def raises(*args):
        raise RuntimeError("profile index 7 is out of range")

    with pytest.raises(FCNError, match=r"^engine m.plan: selecting optimization profile #7: "
                                       r"TensorRT raised RuntimeError: profile index 7 is out "
                                       r"of range$"):
        trt_call("engine m.plan: selecting optimization profile #7", raises, 7, 0)
    with pytest.raises(FCNError, match=r"binding 'labels': TensorRT refused it"):
        trt_call("binding 'labels'", lambda name, ptr: False, "labels", 0)
    assert trt_call("ok", lambda x: x + 1, 1) == 2
    assert trt_call("a None result is the caller's to judge", lambda: None) is None
    with pytest.raises(TypeError):  # our own bugs stay ordinary exceptions
        trt_call("bug", lambda: len(3))


@pytest.mark.parametrize("smi,problem,action,text", [
    (None, None, "run", ""),
    (1, None, "run", ""),
    (None, "TensorRT is not available (ModuleNotFoundError: x)", "skip",
     "no NVIDIA GPU here (nvidia-smi is not available): TensorRT is not available"),
    (0, "cudaGetDeviceCount returned cudaErrorNoDevice (no CUDA-capable device is detected)",
     "skip", "no NVIDIA GPU here (nvidia-smi lists no GPU): cudaGetDeviceCount returned "
             "cudaErrorNoDevice"),
    (2, "cudaGetDeviceCount returned cudaErrorInsufficientDriver (CUDA driver version is "
        "insufficient for CUDA runtime version)", "fail",
     "nvidia-smi lists 2 GPU(s) but the TensorRT stack cannot use them: cudaGetDeviceCount "
     "returned cudaErrorInsufficientDriver"),
    (1, "TensorRT is not available (OSError: libnvinfer.so.10: cannot open shared object file)",
     "fail", "nvidia-smi lists 1 GPU(s) but the TensorRT stack cannot use them: TensorRT is not"),
])
def test_gpu_tests_fail_rather_than_skip_when_a_gpu_is_there(smi, problem, action, text):
    got_action, why = gpu_test_decision(smi_gpus=smi, problem=problem)
    assert got_action == action and why.startswith(text)


def test_cuda_device_count_names_why_there_is_no_gpu():
    count, reason = cuda_device_count()
    if count:
        pytest.skip("this machine has a usable CUDA GPU")
    assert reason and ("cuda-python is not available" in reason
                       or reason.startswith("cudaGetDeviceCount returned cuda"))


def _layer(name, kind, datatype):
    return {"Name": name, "LayerType": kind,
            "Inputs": [{"Name": "x", "Location": "Device", "Dimensions": [1, 8, 16, 16],
                        "Format/Datatype": datatype}],
            "Outputs": [{"Name": "y", "Location": "Device", "Dimensions": [1, 8, 16, 16],
                         "Format/Datatype": "Float"}]}


def test_inspector_json_gives_per_layer_precisions():
    info = json.dumps({"Layers": [
        _layer("conv1", "CaskConvolution", "Int8 NC/32HW32"),
        _layer("conv2", "CaskConvolution", "Int8 NC/32HW32"),
        _layer("score", "CaskConvolution", "Row major linear FP16 format"),
        _layer("up", "CaskDeconvolution", "Float"),
        _layer("argmax", "Reduce", "Float"),
        _layer("cast", "Reformat", "Int32"),
    ], "Bindings": ["image", "scores", "labels"]})
    found = count_layer_precisions(info)
    assert found.detailed
    assert found.counts() == {"fp16": 1, "fp32": 2, "int32": 1, "int8": 2}
    assert found.counts(compute_only=True) == {"fp16": 1, "fp32": 1, "int8": 2}
    assert found.describe() == ("6 layers: fp16 1, fp32 2, int32 1, int8 2; compute layers: "
                                "fp16 1, fp32 1, int8 2")
    names_only = count_layer_precisions(json.dumps({"Layers": ["conv1", "conv2"]}))
    assert not names_only.detailed and names_only.counts() == {"unknown": 2}
    assert [datatype_of(t) for t in ("Half", "BFloat16", "Float", "Int8", "UInt8", "?")] == \
        ["fp16", "bf16", "fp32", "int8", "uint8", "unknown"]
    with pytest.raises(FCNError, match="has no 'Layers' list"):
        count_layer_precisions("{}")
    with pytest.raises(FCNError, match="is not JSON"):
        count_layer_precisions("Layers: conv1")


def test_gpu_extras_pin_cuda_python_to_the_tensorrt_wheels_cuda_major():
    """cuda-python's major must be the CUDA major of the TensorRT wheel: a newer one needs a
    newer driver and fails every call with cudaErrorInsufficientDriver."""
    import re
    import tomllib
    from pathlib import Path

    from packaging.requirements import Requirement

    data = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    extras = data["project"]["optional-dependencies"]
    seen = {}
    for name in ("tensorrt", "tensorrt-cu13"):
        reqs = {r.name: r for r in map(Requirement, extras[name])}
        wheel = next(n for n in reqs if n.startswith("tensorrt-cu"))
        cuda = int(re.fullmatch(r"tensorrt-cu(\d+)", wheel).group(1))
        spec = reqs["cuda-python"].specifier
        assert spec.contains(f"{cuda}.9.0") and not spec.contains(f"{cuda + 1}.0.0"), (name, spec)
        assert not spec.contains(f"{cuda - 1}.9.0"), (name, spec)
        assert reqs[wheel].specifier.contains("10.16.1.11") and reqs[wheel].specifier.contains("11.1.0")
        seen[name] = cuda
    assert seen == {"tensorrt": 12, "tensorrt-cu13": 13}


def test_nvidia_smi_gpus_counts_the_listed_gpus(tmp_path, monkeypatch):
    """Parsing of ``nvidia-smi -L`` (the stand-in script only prints its documented format)."""
    from fcn_deploy.engine.cuda import nvidia_smi_gpus

    smi = tmp_path / "nvidia-smi"
    monkeypatch.setenv("PATH", str(tmp_path))
    assert nvidia_smi_gpus() is None  # not installed
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-1)'\n"
                   "echo 'GPU 1: NVIDIA H200 (UUID: GPU-2)'\n")
    smi.chmod(0o755)
    assert nvidia_smi_gpus() == 2
    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate "
                   "with the NVIDIA driver.'\nexit 9\n")
    assert nvidia_smi_gpus() is None
    smi.write_text("#!/bin/sh\nexit 0\n")
    assert nvidia_smi_gpus() == 0
