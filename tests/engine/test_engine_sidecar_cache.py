"""Plan sidecars (write/read/compatibility) and the engine cache's keys and rebuild rules.

The cache tests inject the TensorRT version, GPU and the build step (a function that writes plan
bytes and the sidecar), so the keying logic is exercised here without TensorRT; the real build is
covered by the tensorrt-marked tests.
"""
from __future__ import annotations

import json

import pytest

from fcn_deploy.engine.build import BuildOptions
from fcn_deploy.engine.cache import EngineCache, cache_key, default_cache_dir, plan_is_current
from fcn_deploy.engine.cuda import GpuInfo
from fcn_deploy.engine.graph import sha256_file
from fcn_deploy.engine.profiles import Profile
from fcn_deploy.engine.sidecar import (EngineInfo, check_compatible, read_sidecar, sidecar_path,
                                       write_sidecar)
from fcn_deploy.errors import FCNError
from runtime_fixtures import tiny_meta

H100 = GpuInfo("NVIDIA H100 80GB HBM3", "9.0")
A100 = GpuInfo("NVIDIA A100-SXM4-80GB", "8.0")
A100_PCIE = GpuInfo("NVIDIA A100-PCIE-40GB", "8.0")
T4 = GpuInfo("Tesla T4", "7.5")
PROFILE = Profile((1, 3, 32, 32), (1, 3, 64, 64), (2, 3, 128, 128))


def _info(**changes) -> EngineInfo:
    base = dict(trt_version="10.16.1.11", gpu=H100, profiles=[PROFILE], precision="fp16",
                onnx_sha256="ab" * 32, meta=tiny_meta().to_dict(), outputs=["scores", "labels"],
                build_options=BuildOptions().key_dict(), cache_key="k1")
    base.update(changes)
    return EngineInfo(**base)


def test_sidecar_round_trip(tmp_path):
    plan = tmp_path / "m.plan"
    path = write_sidecar(plan, _info())
    assert path == sidecar_path(plan) == tmp_path / "m.plan.json"
    data = json.loads(path.read_text())
    assert data["tensorrt_version"] == "10.16.1.11"
    assert data["gpu"]["name"] == "NVIDIA H100 80GB HBM3" and data["gpu"]["compute_capability"] == "9.0"
    assert data["profiles"] == [{"min": [1, 3, 32, 32], "opt": [1, 3, 64, 64], "max": [2, 3, 128, 128]}]
    assert data["precision"] == "fp16" and data["onnx_sha256"] == "ab" * 32
    assert data["meta"]["class_names"] == tiny_meta().class_names
    back = read_sidecar(plan)
    assert back.profiles == [PROFILE] and back.gpu == H100 and back.cache_key == "k1"
    assert back.model_meta() == tiny_meta()
    assert "TensorRT 10.16.1.11, FP16, built on NVIDIA H100 80GB HBM3 (compute capability 9.0)" in back.describe()


def test_sidecar_errors(tmp_path):
    plan = tmp_path / "m.plan"
    with pytest.raises(FCNError, match=r"engine .*m.plan has no sidecar m.plan.json.*fcn-build"):
        read_sidecar(plan)
    sidecar_path(plan).write_text("{not json")
    with pytest.raises(FCNError, match="sidecar .*m.plan.json is not valid JSON"):
        read_sidecar(plan)
    sidecar_path(plan).write_text(json.dumps({"tensorrt_version": "10.16"}))
    with pytest.raises(FCNError, match=r"sidecar .* is missing or has a bad field \(KeyError: 'gpu'\)"):
        read_sidecar(plan)


def test_compatibility_names_both_sides():
    info = _info()
    assert check_compatible(info, trt_version="10.16.1.11", gpu=H100) == []
    with pytest.raises(FCNError, match=r"engine m.plan was built with TensorRT 10.16.1.11 on NVIDIA "
                                       r"H100 80GB HBM3 \(compute capability 9.0\); this machine has "
                                       r"TensorRT 11.1.0.106 on NVIDIA H100.*TensorRT versions differ"):
        check_compatible(info, trt_version="11.1.0.106", gpu=H100, plan_path="m.plan")
    with pytest.raises(FCNError, match=r"built with TensorRT 10.16.1.11 on NVIDIA H100 80GB HBM3 "
                                       r"\(compute capability 9.0\); this machine has TensorRT "
                                       r"10.16.1.11 on NVIDIA A100-SXM4-80GB \(compute capability "
                                       r"8.0\). GPUs differ"):
        check_compatible(info, trt_version="10.16.1.11", gpu=A100)
    same_cc = _info(gpu=A100)
    with pytest.raises(FCNError, match="GPUs differ"):
        check_compatible(same_cc, trt_version="10.16.1.11", gpu=A100_PCIE)
    warnings = check_compatible(same_cc, trt_version="10.16.1.11", gpu=A100_PCIE, allow_other_gpu=True)
    assert warnings == ["engine engine was built on NVIDIA A100-SXM4-80GB, running on NVIDIA "
                        "A100-PCIE-40GB (same compute capability)"]


def test_version_and_hardware_compatible_plans():
    vc = _info(build_options={"version_compatible": True})
    assert check_compatible(vc, trt_version="10.17.0.1", gpu=H100) == [
        "engine engine was built with TensorRT 10.16.1.11 (version-compatible); running it on 10.17.0.1"]
    # TensorRT 10 version-compatible plans run on TensorRT 11 (documented cross-major pair)
    assert check_compatible(vc, trt_version="11.1.0.106", gpu=H100) == [
        "engine engine was built with TensorRT 10.16.1.11 (version-compatible); running it on 11.1.0.106"]
    with pytest.raises(FCNError, match=r"built version-compatible with TensorRT 10.16.1.11 on "
                                       r"NVIDIA H100.*this machine has TensorRT 10.13.0.35 .*"
                                       r"TensorRT 10 plans on 11"):
        check_compatible(vc, trt_version="10.13.0.35", gpu=H100)  # older runtime
    with pytest.raises(FCNError, match="TensorRT versions differ"):  # not built version-compatible
        check_compatible(_info(), trt_version="11.1.0.106", gpu=H100)
    ampere = _info(build_options={"hardware_compatibility": "ampere_plus"})
    assert check_compatible(ampere, trt_version="10.16.1.11", gpu=A100) == []
    with pytest.raises(FCNError, match=r"for Ampere or newer GPUs \(compute capability 8.0\+\); "
                                       r"this machine has TensorRT 10.16.1.11 on Tesla T4"):
        check_compatible(ampere, trt_version="10.16.1.11", gpu=T4)
    same = _info(gpu=A100, build_options={"hardware_compatibility": "same_compute_capability"})
    assert check_compatible(same, trt_version="10.16.1.11", gpu=A100_PCIE) == []
    with pytest.raises(FCNError, match="for compute capability 8.0; this machine has"):
        check_compatible(same, trt_version="10.16.1.11", gpu=H100)


def test_cache_key_changes_with_each_input():
    base = dict(onnx_sha256="a" * 64, trt_version="10.16.1.11", gpu=H100, profiles=[PROFILE],
                options=BuildOptions())
    key = cache_key(**base)
    assert key == cache_key(**base) and len(key) == 32
    assert key == cache_key(**{**base, "gpu": GpuInfo(H100.name, "9.0", index=3)})  # index irrelevant
    variants = [
        {"onnx_sha256": "b" * 64}, {"trt_version": "11.1.0.106"}, {"gpu": A100},
        {"profiles": [Profile((1, 3, 32, 32), (1, 3, 64, 64), (4, 3, 128, 128))]},
        {"profiles": [PROFILE, PROFILE]}, {"options": BuildOptions(optimization_level=5)},
        {"options": BuildOptions(version_compatible=True)},
        {"options": BuildOptions(hardware_compatibility="ampere_plus")},
        {"options": BuildOptions(workspace_bytes=1 << 30)},
    ]
    keys = {cache_key(**{**base, **v}) for v in variants}
    assert len(keys) == len(variants) and key not in keys


class _RecordingBuilder:
    """Stands in for the TensorRT build step: writes plan bytes and a sidecar, counts calls."""

    def __init__(self, trt_version="10.16.1.11", gpu=H100):
        self.calls = []
        self.trt_version, self.gpu = trt_version, gpu

    def __call__(self, onnx_path, plan_path, options, *, log=None, cache_key=None):
        self.calls.append(plan_path)
        plan_path.write_bytes(b"plan for " + cache_key.encode())
        info = _info(trt_version=self.trt_version, gpu=self.gpu, profiles=options.profiles,
                     onnx_sha256=sha256_file(onnx_path), cache_key=cache_key)
        write_sidecar(plan_path, info)
        return info


def test_engine_cache_rebuilds_only_when_a_key_part_changes(tmp_path, onnx_factory):
    onnx_path = onnx_factory("m.onnx")
    cache = EngineCache(tmp_path / "cache")
    build = _RecordingBuilder()
    opts = BuildOptions(profiles=[PROFILE])
    logs = []

    def get(**kw):
        machine = {"trt_version": "10.16.1.11", "gpu": H100}
        machine.update(kw.pop("machine", {}))
        return cache.get_or_build(kw.pop("path", onnx_path), kw.pop("options", opts), builder=build,
                                  log=logs.append, **machine, **kw)

    first = get()
    assert first.built and len(build.calls) == 1
    assert first.plan_path == tmp_path / "cache" / f"{first.key}.plan"
    assert plan_is_current(first.plan_path, first.key)
    again = get()
    assert not again.built and again.plan_path == first.plan_path and len(build.calls) == 1
    assert any("engine cache hit" in line for line in logs)
    get(options=BuildOptions(profiles=[Profile((1, 3, 32, 32), (1, 3, 96, 96), (1, 3, 128, 128))]))
    assert len(build.calls) == 2
    get(machine={"trt_version": "10.17.0.1"})
    assert len(build.calls) == 3
    get(machine={"gpu": A100})
    assert len(build.calls) == 4
    get(path=onnx_factory("m2.onnx", seed=7))  # other weights
    assert len(build.calls) == 5
    get()  # the first entry is still there
    assert len(build.calls) == 5
    get(rebuild=True)
    assert len(build.calls) == 6
    # a stale sidecar (other key) is not a hit
    sidecar = first.plan_path.with_name(first.plan_path.name + ".json")
    data = json.loads(sidecar.read_text())
    data["cache_key"] = "something else"
    sidecar.write_text(json.dumps(data))
    get()
    assert len(build.calls) == 7


def test_cache_checks_the_onnx_before_any_build(tmp_path, onnx_factory):
    cache = EngineCache(tmp_path / "cache")
    bad_profile = BuildOptions(profiles=[Profile((1, 3, 8, 8), (1, 3, 8, 8), (1, 3, 8, 8))])
    static = onnx_factory("static.onnx", static_shape=(1, 3, 16, 16))
    with pytest.raises(FCNError, match="dimension 2 of input 'image' is fixed at 16"):
        cache.get_or_build(static, bad_profile, trt_version="10.16.1.11", gpu=H100,
                           builder=_RecordingBuilder())
    assert not (tmp_path / "cache").exists()


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("FCN_DEPLOY_ENGINE_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("FCN_DEPLOY_ENGINE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x" / "fcn-deploy" / "engines"


# (built with, runtime, loads): the version-compatibility matrix TensorRT documents (TensorRT
# 11.4 support matrix, "Engine Portability": 10 -> 11 and 8 -> 10; 10.16 "Version
# Compatibility": 8 -> 9 -> 10, from 8.6 on).
VERSION_MATRIX = [
    ("10.16.1.11", "10.16.1.11", True), ("10.13.0.35", "10.16.1.11", True),
    ("10.16.1.11", "10.13.0.35", False),                     # older runtime
    ("10.16.1.11", "11.1.0.106", True), ("10.0.1.6", "11.4.0.106", True),  # 10 -> 11
    ("11.1.0.106", "10.16.1.11", False),                     # newer plan, older runtime
    ("11.0.0.114", "11.4.0.106", True),
    ("8.6.1.6", "10.16.1.11", True), ("8.6.1.6", "9.3.0.1", True),  # 8 -> 9 and 10
    ("8.6.1.6", "11.1.0.106", False),                        # 8 -> 11: not supported
    ("9.3.0.1", "11.1.0.106", False), ("9.3.0.1", "10.16.1.11", True),
    ("8.5.3.1", "8.6.1.6", False),                           # before version compatibility
    ("10.16.1.11", "12.0.0.1", False),                       # no documented pair
]


@pytest.mark.parametrize("built,runtime,loads", VERSION_MATRIX)
def test_version_compatible_matrix(built, runtime, loads):
    from fcn_deploy.engine.sidecar import version_compatible_loads

    assert version_compatible_loads(built, runtime) is loads
    info = _info(trt_version=built, build_options={"version_compatible": True})
    if loads:
        check_compatible(info, trt_version=runtime, gpu=H100)
    else:
        with pytest.raises(FCNError, match="Version-compatible plans load only on"):
            check_compatible(info, trt_version=runtime, gpu=H100)
