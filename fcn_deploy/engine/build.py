"""Build a TensorRT plan from an FCN ONNX graph (TensorRT 10 and 11 Python API).

Precision is the graph's: the network is strongly typed (TensorRT 10: the STRONGLY_TYPED creation
flag; TensorRT 11: the only mode), so an FP16 or Q/DQ INT8 ONNX gives an FP16 or INT8 engine and no
precision flags are set. Everything that can be checked without a GPU (profiles against the ONNX
input, precision and Q/DQ rules, metadata) is checked by :func:`prepare_build` before TensorRT is
imported. The plan is written atomically with its JSON sidecar (:mod:`fcn_deploy.engine.sidecar`).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fcn_deploy.engine.graph import GraphInfo, inspect_onnx, sha256_file
from fcn_deploy.engine.profiles import DEFAULT_PROFILE, Profile, describe_profiles, validate_profiles
from fcn_deploy.engine.sidecar import HARDWARE_COMPAT, EngineInfo, sidecar_path, write_sidecar
from fcn_deploy.errors import FCNError

Log = Callable[[str], None]
_LOG = logging.getLogger("fcn_deploy.engine")


@dataclass
class BuildOptions:
    """How to build: shape profiles and builder settings (None = TensorRT's default).

    ``workspace_bytes``: limit of the builder's scratch memory pool. ``optimization_level``: 0-5
    (TensorRT's default is 3; higher searches longer for faster kernels). ``timing_cache``: a file
    read before and written after the build, which makes rebuilds much faster.
    ``version_compatible``: the plan also loads on later TensorRT versions of the same major
    (``exclude_lean_runtime`` leaves the lean runtime out of it). ``hardware_compatibility``:
    "none", "ampere_plus" or "same_compute_capability".
    """

    profiles: list[Profile] = field(default_factory=lambda: [Profile(*DEFAULT_PROFILE)])
    workspace_bytes: int | None = None
    optimization_level: int | None = None
    timing_cache: Path | None = None
    version_compatible: bool = False
    exclude_lean_runtime: bool = False
    hardware_compatibility: str = "none"
    device: int = 0

    def validate(self) -> "BuildOptions":
        if self.workspace_bytes is not None and self.workspace_bytes < 1:
            raise FCNError(f"workspace limit must be positive, got {self.workspace_bytes} bytes")
        if self.optimization_level is not None and not 0 <= self.optimization_level <= 5:
            raise FCNError(f"builder optimization level must be 0..5, got {self.optimization_level}")
        if self.hardware_compatibility not in HARDWARE_COMPAT:
            raise FCNError(f"hardware compatibility must be one of {', '.join(HARDWARE_COMPAT)}; "
                           f"got {self.hardware_compatibility!r}")
        if self.exclude_lean_runtime and not self.version_compatible:
            raise FCNError("exclude_lean_runtime needs version_compatible (the lean runtime is "
                           "only embedded in version-compatible plans)")
        return self

    def key_dict(self) -> dict[str, Any]:
        """The settings that change the plan's content (part of the engine cache key)."""
        return {
            "workspace_bytes": self.workspace_bytes,
            "optimization_level": self.optimization_level,
            "version_compatible": self.version_compatible,
            "exclude_lean_runtime": self.exclude_lean_runtime,
            "hardware_compatibility": self.hardware_compatibility,
        }


@dataclass
class PreparedBuild:
    """The CPU-side facts of a build, checked before TensorRT is touched."""

    onnx_path: Path
    graph: GraphInfo
    profiles: list[Profile]
    options: BuildOptions
    onnx_sha256: str

    @property
    def precision(self) -> str:
        return self.graph.precision.precision


def parse_size(text: str) -> int:
    """``"4GiB"``, ``"512MiB"``, ``"1G"``, ``"1048576"`` -> bytes."""
    units = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20,
             "mb": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}
    raw = str(text).strip().lower()
    number = raw.rstrip("kmgib")
    unit = raw[len(number):]
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if unit not in units or value <= 0:
        raise FCNError(f"size {text!r} is not understood; use e.g. 4GiB, 512MiB or a byte count")
    return int(value * units[unit])


def prepare_build(onnx_path: str | os.PathLike, options: BuildOptions | None = None) -> PreparedBuild:
    """Check the ONNX file, the profiles and the precision; no TensorRT needed."""
    options = (options or BuildOptions()).validate()
    onnx_path = Path(onnx_path)
    graph = inspect_onnx(onnx_path)
    if graph.input_name != "image":
        raise FCNError(f"{onnx_path}: the network input is {graph.input_name!r}; the runtime "
                       "expects 'image' [N,3,H,W] (export with fcn-export)")
    if graph.meta is None:
        raise FCNError(f"{onnx_path} carries no fcn-deploy metadata (classes, palette, mean); "
                       "export it with fcn-export so the engine is self-describing")
    unknown = [o for o in graph.output_names if o not in ("scores", "labels")]
    if unknown or not graph.output_names:
        raise FCNError(f"{onnx_path}: outputs are {graph.output_names}; expected 'scores' "
                       "and/or 'labels'")
    profiles = validate_profiles(options.profiles, graph.input_shape)
    report = graph.precision
    if report.problems:
        shown = "; ".join(report.problems[:3])
        more = f" (and {len(report.problems) - 3} more)" if len(report.problems) > 3 else ""
        raise FCNError(f"{onnx_path}: the Q/DQ graph is not buildable by TensorRT: {shown}{more}. "
                       "Quantize with symmetric int8 (ActivationSymmetric/WeightSymmetric)")
    return PreparedBuild(onnx_path=onnx_path, graph=graph, profiles=profiles, options=options,
                         onnx_sha256=sha256_file(onnx_path,
                                                 external_files=graph.external_files))


def network_flags(trt) -> int:
    """Creation flags for a strongly typed network, from the enum (never a hard-coded int)."""
    from fcn_deploy.engine.cuda import trt_major

    if trt_major(trt) >= 11:  # TensorRT 11: strongly typed is the only mode, no flag needed
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def _progress_monitor(trt):
    """A TensorRT progress monitor that shows the top-level build phases as tqdm bars."""
    from tqdm import tqdm

    class _Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._lock = threading.Lock()
            self._bars: dict[str, Any] = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            with self._lock:
                if parent_phase is None:
                    self._bars[phase_name] = tqdm(total=num_steps, desc=phase_name, leave=False)

        def step_complete(self, phase_name, step):
            with self._lock:
                bar = self._bars.get(phase_name)
                if bar is not None:
                    bar.update(1)
            return True

        def phase_finish(self, phase_name):
            with self._lock:
                bar = self._bars.pop(phase_name, None)
                if bar is not None:
                    bar.close()

    return _Monitor()


def _hardware_level(trt, name: str):
    levels = {"none": trt.HardwareCompatibilityLevel.NONE,
              "ampere_plus": trt.HardwareCompatibilityLevel.AMPERE_PLUS,
              "same_compute_capability": trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY}
    return levels[name]


def _serialize_with_tensorrt(prep: PreparedBuild, *, log: Log, progress: bool) -> bytes:
    """Parse, configure and build; returns the serialized plan."""
    from fcn_deploy.engine.cuda import import_tensorrt, set_device

    import_tensorrt()  # FCNError saying what to install when it is missing
    import tensorrt as trt

    set_device(prep.options.device)
    logger = trt.Logger(trt.Logger.WARNING)
    try:
        builder = trt.Builder(logger)
    except TypeError as exc:  # pybind11 factory returned nullptr: no usable GPU/driver
        raise FCNError(f"TensorRT could not create a builder ({exc}); a working NVIDIA GPU and "
                       "driver are needed to build engines") from None
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(prep.onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise FCNError(f"TensorRT's ONNX parser rejected {prep.onnx_path}: "
                       + " | ".join(errors[:5]) + (" ..." if len(errors) > 5 else ""))

    config = builder.create_builder_config()
    opts = prep.options
    if opts.workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts.workspace_bytes))
    if opts.optimization_level is not None:
        config.builder_optimization_level = int(opts.optimization_level)
    if opts.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        if opts.exclude_lean_runtime:
            config.set_flag(trt.BuilderFlag.EXCLUDE_LEAN_RUNTIME)
    if opts.hardware_compatibility != "none":
        config.hardware_compatibility_level = _hardware_level(trt, opts.hardware_compatibility)
    if progress:
        monitor = _progress_monitor(trt)
        config.progress_monitor = monitor

    timing_cache = None
    if opts.timing_cache is not None:
        previous = Path(opts.timing_cache).read_bytes() if Path(opts.timing_cache).is_file() else b""
        timing_cache = config.create_timing_cache(previous)
        config.set_timing_cache(timing_cache, ignore_mismatch=False)
        log(f"timing cache {opts.timing_cache} ({'loaded ' + str(len(previous)) + ' bytes' if previous else 'new'})")

    input_name = network.get_input(0).name
    for profile in prep.profiles:
        trt_profile = builder.create_optimization_profile()
        trt_profile.set_shape(input_name, profile.min, profile.opt, profile.max)
        config.add_optimization_profile(trt_profile)

    started = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise FCNError(f"TensorRT failed to build an engine from {prep.onnx_path}; see the "
                       "TensorRT messages above (workspace too small, unsupported layer?)")
    log(f"built in {time.perf_counter() - started:.1f} s")
    if timing_cache is not None:
        from fcn_deploy.fileio import atomic_write_bytes

        atomic_write_bytes(opts.timing_cache, bytes(config.get_timing_cache().serialize()))
    return bytes(plan)


def build_engine(onnx_path: str | os.PathLike, plan_path: str | os.PathLike,
                 options: BuildOptions | None = None, *, log: Log | None = None,
                 progress: bool = True, cache_key: str | None = None,
                 prepared: PreparedBuild | None = None) -> EngineInfo:
    """Build ``plan_path`` (+ ``<plan>.json``) from ``onnx_path``; returns the sidecar's content.

    ``log`` receives progress lines (default: the ``fcn_deploy.engine`` logger; fcn-build prints
    them). ``prepared``: the :func:`prepare_build` result when the caller already has it (saves
    parsing and hashing the ONNX again). Raises FCNError without TensorRT, cuda-python or a GPU,
    saying what to install.
    """
    from fcn_deploy.engine.cache import cache_key as make_key
    from fcn_deploy.engine.cuda import gpu_info, import_cudart, import_tensorrt, trt_version
    from fcn_deploy.fileio import atomic_write_bytes, check_run_files

    log = log or _LOG.info
    plan_path = Path(plan_path)
    check_run_files("build_engine", inputs=[("ONNX model", onnx_path)],
                    outputs=[("plan", plan_path), ("sidecar", sidecar_path(plan_path))])
    prep = prepared if prepared is not None else prepare_build(onnx_path, options)
    log(f"building a {prep.graph.precision.describe()} engine from {prep.onnx_path}")
    log(f"profiles: {describe_profiles(prep.profiles)}")
    trt = import_tensorrt()
    import_cudart()
    version = trt_version(trt)
    gpu = gpu_info(prep.options.device)
    log(f"TensorRT {version} on {gpu.describe()}")
    plan = _serialize_with_tensorrt(prep, log=log, progress=progress)
    key = cache_key or make_key(onnx_sha256=prep.onnx_sha256, trt_version=version, gpu=gpu,
                                profiles=prep.profiles, options=prep.options)
    info = EngineInfo(trt_version=version, gpu=gpu, profiles=prep.profiles,
                      precision=prep.precision, onnx_sha256=prep.onnx_sha256,
                      meta=prep.graph.meta.replace(precision=prep.precision).to_dict(),
                      input_name=prep.graph.input_name, outputs=prep.graph.output_names,
                      onnx_path=str(prep.onnx_path), build_options=prep.options.key_dict(),
                      cache_key=key)
    # Drop the old sidecar first: a crash between the two writes leaves a plan without a
    # sidecar (refused at load time), never a new plan described by an old sidecar.
    sidecar_path(plan_path).unlink(missing_ok=True)
    atomic_write_bytes(plan_path, plan)
    write_sidecar(plan_path, info)
    log(f"wrote {plan_path} ({len(plan) / 1e6:.1f} MB) and {plan_path}.json")
    return info
