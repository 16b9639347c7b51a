"""The JSON sidecar ``<plan>.json`` that makes a TensorRT plan self-describing.

A plan file is opaque bytes that load only on the TensorRT version and GPU that built it. The
sidecar records those, the shape profiles, the precision, the source ONNX's sha256 and the toolkit
metadata (classes, palette, mean), so the runtime can refuse a mismatched plan with a message that
names both sides, and never asks the user for the mean or class list.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fcn_deploy import __version__
from fcn_deploy.engine.cuda import GpuInfo
from fcn_deploy.engine.profiles import Profile, describe_profiles
from fcn_deploy.errors import FCNError
from fcn_deploy.fileio import atomic_write_text
from fcn_deploy.meta import ModelMeta

SIDECAR_FORMAT = 1
HARDWARE_COMPAT = ("none", "ampere_plus", "same_compute_capability")


def sidecar_path(plan_path: str | os.PathLike) -> Path:
    return Path(str(plan_path) + ".json")


@dataclass
class EngineInfo:
    """Everything known about a built plan (the sidecar's content)."""

    trt_version: str
    gpu: GpuInfo
    profiles: list[Profile]
    precision: str
    onnx_sha256: str
    meta: dict[str, Any]
    input_name: str = "image"
    outputs: list[str] = field(default_factory=lambda: ["scores"])
    #: every network input in order, [{name, shape}] with the ONNX dims (ints static, names
    #: dynamic); the profiles are the first input's, the others share their N, H, W. Sidecars
    #: written before it existed describe one input, ``input_name``.
    inputs: list[dict[str, Any]] = field(default_factory=list)
    onnx_path: str = ""
    build_options: dict[str, Any] = field(default_factory=dict)
    cache_key: str = ""
    built_at: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc)
                          .isoformat(timespec="seconds"))
    toolkit_version: str = field(default_factory=lambda: __version__)

    def __post_init__(self) -> None:
        if not self.inputs:
            self.inputs = [{"name": self.input_name, "shape": ["batch", 3, "height", "width"]}]

    @property
    def input_names(self) -> list[str]:
        return [str(i["name"]) for i in self.inputs]

    def model_meta(self) -> ModelMeta:
        return ModelMeta.from_dict(self.meta)

    @property
    def version_compatible(self) -> bool:
        return bool(self.build_options.get("version_compatible", False))

    @property
    def hardware_compatibility(self) -> str:
        return str(self.build_options.get("hardware_compatibility") or "none")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SIDECAR_FORMAT,
            "tensorrt_version": self.trt_version,
            "gpu": self.gpu.to_dict(),
            "profiles": [p.to_dict() for p in self.profiles],
            "precision": self.precision,
            "onnx_sha256": self.onnx_sha256,
            "onnx_path": self.onnx_path,
            "input_name": self.input_name,
            "inputs": [dict(i) for i in self.inputs],
            "outputs": list(self.outputs),
            "build_options": dict(self.build_options),
            "cache_key": self.cache_key,
            "built_at": self.built_at,
            "toolkit_version": self.toolkit_version,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "sidecar") -> "EngineInfo":
        try:
            gpu = data["gpu"]
            return cls(
                trt_version=str(data["tensorrt_version"]),
                gpu=GpuInfo(name=str(gpu["name"]), compute_capability=str(gpu["compute_capability"]),
                            index=int(gpu.get("index", 0)),
                            total_memory_mb=int(gpu.get("total_memory_mb", 0))),
                profiles=[Profile.from_dict(p) for p in data["profiles"]],
                precision=str(data["precision"]),
                onnx_sha256=str(data["onnx_sha256"]),
                meta=dict(data["meta"]),
                input_name=str(data.get("input_name", "image")),
                inputs=[{"name": str(i["name"]), "shape": list(i.get("shape", []))}
                        for i in data.get("inputs", [])],
                outputs=list(data.get("outputs", ["scores"])),
                onnx_path=str(data.get("onnx_path", "")),
                build_options=dict(data.get("build_options", {})),
                cache_key=str(data.get("cache_key", "")),
                built_at=str(data.get("built_at", "")),
                toolkit_version=str(data.get("toolkit_version", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FCNError(f"{source} is missing or has a bad field ({type(exc).__name__}: {exc}); "
                           "rebuild the engine with fcn-build") from None

    def describe(self) -> str:
        return (f"TensorRT {self.trt_version}, {self.precision.upper()}, built on "
                f"{self.gpu.describe()}, profiles {describe_profiles(self.profiles)}")


def write_sidecar(plan_path: str | os.PathLike, info: EngineInfo) -> Path:
    """Write ``<plan>.json`` atomically."""
    path = sidecar_path(plan_path)
    atomic_write_text(path, json.dumps(info.to_dict(), indent=2, sort_keys=True) + "\n")
    return path


def read_sidecar(plan_path: str | os.PathLike) -> EngineInfo:
    """Read ``<plan>.json``; FCNError if it is missing or malformed."""
    path = sidecar_path(plan_path)
    if not path.is_file():
        raise FCNError(f"engine {plan_path} has no sidecar {path.name}; it holds the TensorRT "
                       "version, GPU, profiles and class metadata. Build engines with fcn-build")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FCNError(f"sidecar {path} is not valid JSON ({exc}); rebuild the engine with fcn-build") from None
    if not isinstance(data, dict):
        raise FCNError(f"sidecar {path} is not a JSON object; rebuild the engine with fcn-build")
    return EngineInfo.from_dict(data, source=f"sidecar {path}")


def _version_tuple(text: str) -> tuple[int, ...]:
    out = []
    for part in str(text).split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def _cc_tuple(text: str) -> tuple[int, int]:
    v = _version_tuple(text) + (0, 0)
    return v[0], v[1]


#: Version-compatible plans across major versions that TensorRT documents as loading
#: (built-with major, runtime major). TensorRT 11.4 support matrix, "Engine Portability":
#: "TensorRT 10 version-compatible engines can run with a TensorRT 11 runtime, and TensorRT 8
#: version-compatible engines can run with a TensorRT 10 runtime"; TensorRT 10.16 "Version
#: Compatibility": TensorRT 8 engines also run on TensorRT 9, and TensorRT 9 engines on 10.
#: Within a major version any later runtime loads them; nothing else across majors does.
CROSS_MAJOR_VERSION_COMPAT = frozenset({(8, 9), (8, 10), (9, 10), (10, 11)})
#: Version compatibility exists from TensorRT 8.6 on, for the builder and the runtime.
FIRST_VERSION_COMPAT = (8, 6)


def version_compatible_loads(built: str, runtime: str) -> bool:
    """Whether a plan built version-compatible with TensorRT ``built`` loads on ``runtime``."""
    bv, rv = _version_tuple(built), _version_tuple(runtime)
    if bv[:2] < FIRST_VERSION_COMPAT or rv[:2] < FIRST_VERSION_COMPAT or rv < bv:
        return False
    return bv[0] == rv[0] or (bv[0], rv[0]) in CROSS_MAJOR_VERSION_COMPAT


def check_compatible(info: EngineInfo, *, trt_version: str, gpu: GpuInfo,
                     plan_path: str | os.PathLike = "engine",
                     allow_other_gpu: bool = False) -> list[str]:
    """Raise FCNError when this TensorRT/GPU cannot load the plan; return warnings otherwise.

    TensorRT versions must be equal unless the plan was built version-compatible (then
    :func:`version_compatible_loads` decides: a later version of the same major, or the documented
    cross-major pairs 10 -> 11 and 8 -> 10). The GPU must be the same model (same name and compute
    capability) unless the plan was built hardware-compatible (``ampere_plus``: any GPU of compute
    capability 8.0+; ``same_compute_capability``: equal compute capability), or
    ``allow_other_gpu`` accepts another name with an equal compute capability (with a warning).
    """
    warnings: list[str] = []
    built = f"TensorRT {info.trt_version} on {info.gpu.describe()}"
    here = f"TensorRT {trt_version} on {gpu.describe()}"
    hint = "Rebuild it here with fcn-build (engines are specific to a TensorRT version and GPU)"

    bv, rv = _version_tuple(info.trt_version), _version_tuple(trt_version)
    if bv != rv:
        if not info.version_compatible:
            raise FCNError(f"engine {plan_path} was built with {built}; this machine has {here}. "
                           f"TensorRT versions differ. {hint}")
        if not version_compatible_loads(info.trt_version, trt_version):
            raise FCNError(f"engine {plan_path} was built version-compatible with {built}; this "
                           f"machine has {here}. Version-compatible plans load only on the same "
                           "or a later TensorRT of the same major, or TensorRT 10 plans on 11 "
                           f"(and 8 on 10). {hint}")
        warnings.append(f"engine {plan_path} was built with TensorRT {info.trt_version} "
                        f"(version-compatible); running it on {trt_version}")

    bcc, rcc = _cc_tuple(info.gpu.compute_capability), _cc_tuple(gpu.compute_capability)
    level = info.hardware_compatibility
    if level == "ampere_plus":
        if rcc < (8, 0):
            raise FCNError(f"engine {plan_path} was built with {built} for Ampere or newer GPUs "
                           f"(compute capability 8.0+); this machine has {here}. {hint}")
    elif level == "same_compute_capability":
        if rcc != bcc:
            raise FCNError(f"engine {plan_path} was built with {built} for compute capability "
                           f"{info.gpu.compute_capability}; this machine has {here}. {hint}")
    else:
        if rcc != bcc or (info.gpu.name != gpu.name and not allow_other_gpu):
            raise FCNError(f"engine {plan_path} was built with {built}; this machine has {here}. "
                           f"GPUs differ. {hint}")
        if info.gpu.name != gpu.name:
            warnings.append(f"engine {plan_path} was built on {info.gpu.name}, running on "
                            f"{gpu.name} (same compute capability)")
    return warnings
