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

from fcn_deploy.engine.cuda import (gpu_info, import_cudart, import_tensorrt, set_device, trt_call,
                                    trt_major, trt_version)
from fcn_deploy.engine.graph import GraphInfo, inspect_onnx, sha256_file
from fcn_deploy.engine.keys import cache_key as make_key
from fcn_deploy.engine.profiles import (DEFAULT_PROFILE, Profile, describe_profiles, input_profiles,
                                        validate_profiles)
from fcn_deploy.engine.sidecar import HARDWARE_COMPAT, EngineInfo, sidecar_path, write_sidecar
from fcn_deploy.errors import FCNError, require_int
from fcn_deploy.fileio import RunFiles, atomic_write_bytes

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
        if self.workspace_bytes is not None:
            require_int(self.workspace_bytes, what="workspace limit", minimum=1,
                        expected="a positive integer number of bytes")
        if self.optimization_level is not None:
            level = require_int(self.optimization_level, what="builder optimization level",
                                expected="an integer 0..5")
            if not 0 <= level <= 5:
                raise FCNError(f"builder optimization level must be 0..5, got {level}")
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
    if graph.meta is None:
        raise FCNError(f"{onnx_path} carries no fcn-deploy metadata (classes, palette, mean); "
                       "export it with fcn-export so the engine is self-describing")
    specs = graph.meta.input_specs()
    if list(graph.inputs) != [s.name for s in specs]:
        names = ", ".join(repr(n) for n in graph.inputs)
        verb = "inputs are" if len(graph.inputs) > 1 else "input is"
        raise FCNError(f"{onnx_path}: the network {verb} {names}; the runtime expects "
                       + ", ".join(f"{s.name!r} [N,{s.channels},H,W]" for s in specs)
                       + " (the inputs its metadata describes; export with fcn-export)")
    known = graph.meta.output_names("both")
    unknown = [o for o in graph.output_names if o not in known]
    if unknown or not graph.output_names:
        raise FCNError(f"{onnx_path}: outputs are {graph.output_names}; expected some of "
                       f"{', '.join(repr(o) for o in known)}")
    if graph.unbuildable:
        raise FCNError(f"{onnx_path}: TensorRT would reject this graph: "
                       + "; ".join(graph.unbuildable))
    profiles = validate_profiles(options.profiles, inputs=graph.inputs)
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


def _serialize_with_tensorrt(prep: PreparedBuild, *, log: Log,
                             progress: bool) -> tuple[bytes, bytes | None]:
    """Parse, configure and build; returns the serialized plan and timing cache (or None)."""
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

    # Per-layer precisions in the plan, for the engine inspector (fcn_deploy.engine.inspector).
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    timing_cache = None
    if opts.timing_cache is not None:
        cache_path = Path(opts.timing_cache)
        previous = cache_path.read_bytes() if cache_path.is_file() else b""
        timing_cache = attach_timing_cache(config, previous, source=str(cache_path), log=log)

    names = [network.get_input(k).name for k in range(network.num_inputs)]
    if names != list(prep.graph.inputs):
        raise FCNError(f"TensorRT's network has the inputs {names}; the ONNX graph "
                       f"{prep.onnx_path} has {list(prep.graph.inputs)}")
    for i, profile in enumerate(prep.profiles):
        trt_profile = builder.create_optimization_profile()
        for name, own in input_profiles(profile, prep.graph.inputs, index=i).items():
            trt_call(f"{prep.onnx_path}: optimization profile #{i} for input {name!r} "
                     f"({own.describe()})", trt_profile.set_shape, name, own.min, own.opt,
                     own.max)
        config.add_optimization_profile(trt_profile)

    started = time.perf_counter()
    plan = trt_call(f"building {prep.onnx_path}", builder.build_serialized_network, network, config)
    if plan is None:
        raise FCNError(f"TensorRT failed to build an engine from {prep.onnx_path}; see the "
                       "TensorRT messages above (workspace too small, unsupported layer?)")
    log(f"built in {time.perf_counter() - started:.1f} s")
    cache_bytes = serialize_timing_cache(config, log=log) if timing_cache is not None else None
    return bytes(plan), cache_bytes


def attach_timing_cache(config, previous: bytes, *, source: str, log: Log):
    """Create a timing cache from ``previous`` and attach it to the builder ``config``.

    ``IBuilderConfig.set_timing_cache`` returns False (it does not raise) for a cache written by
    another TensorRT version or GPU, and ``create_timing_cache`` may give None or raise on a
    corrupt file: then the build goes on with a fresh, empty cache and a warning. Returns the
    attached cache, or None (with a warning) when not even an empty one is accepted.
    """
    def make_and_set(blob: bytes):
        try:
            cache = config.create_timing_cache(blob)
            return cache if cache is not None and config.set_timing_cache(
                cache, ignore_mismatch=False) else None
        except (RuntimeError, TypeError, ValueError):
            return None

    if previous:
        cache = make_and_set(previous)
        if cache is not None:
            log(f"timing cache {source} (loaded {len(previous)} bytes)")
            return cache
        log(f"warning: timing cache {source} ({len(previous)} bytes) was refused by this TensorRT "
            "and GPU (written by another version or device, or corrupt); starting a fresh one")
    cache = make_and_set(b"")
    if cache is None:
        log("warning: TensorRT refused an empty timing cache; building without one")
        return None
    log(f"timing cache {source} (new)")
    return cache


def serialize_timing_cache(config, *, log: Log) -> bytes | None:
    """The builder's timing cache as bytes, or None with a warning: never an exception, so a
    built plan is never lost to cache handling."""
    try:
        cache = config.get_timing_cache()
        data = cache.serialize() if cache is not None else None
    except (RuntimeError, TypeError, ValueError) as exc:
        log(f"warning: could not serialize the timing cache ({type(exc).__name__}: {exc}); "
            "the plan is kept, the cache is not saved")
        return None
    if data is None:
        log("warning: TensorRT returned no timing cache after the build; the cache is not saved")
        return None
    return bytes(data)


def build_run_files(command: str, onnx_path: str | os.PathLike, plan_path: str | os.PathLike,
                    *, timing_cache: str | os.PathLike | None = None):
    """The plan (fileio.RunFiles) of a build: it reads the ONNX model and its ``.data`` weights
    and writes the plan, its sidecar and the timing cache. The cache is read and rewritten in
    place, so it counts as written: it may not be the model, its weights, the plan or sidecar."""
    plan = RunFiles(command)
    plan.read_model("ONNX model", onnx_path)
    plan.write("plan", plan_path)
    plan.write("sidecar", sidecar_path(plan_path))
    plan.write("timing cache", timing_cache)
    return plan


def save_timing_cache(path: str | os.PathLike, data: bytes | None, *, log: Log) -> bool:
    """Write the timing cache atomically after the plan; a failure is a warning, not an error."""

    if data is None:
        return False
    try:
        atomic_write_bytes(path, data)
    except (OSError, FCNError) as exc:
        log(f"warning: could not write the timing cache {path} ({exc}); the plan is kept")
        return False
    log(f"saved timing cache {path} ({len(data)} bytes)")
    return True


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
    log = log or _LOG.info
    plan_path = Path(plan_path)
    opts = options if options is not None else prepared.options if prepared is not None else None
    build_run_files("build_engine", onnx_path, plan_path,
                    timing_cache=opts.timing_cache if opts is not None else None).check()
    prep = prepared if prepared is not None else prepare_build(onnx_path, options)
    log(f"building a {prep.graph.precision.describe()} engine from {prep.onnx_path}")
    log(f"profiles: {describe_profiles(prep.profiles)}")
    trt = import_tensorrt()
    import_cudart()
    version = trt_version(trt)
    gpu = gpu_info(prep.options.device)
    log(f"TensorRT {version} on {gpu.describe()}")
    plan, timing_cache = _serialize_with_tensorrt(prep, log=log, progress=progress)
    key = cache_key or make_key(onnx_sha256=prep.onnx_sha256, trt_version=version, gpu=gpu,
                                profiles=prep.profiles, options=prep.options)
    info = EngineInfo(trt_version=version, gpu=gpu, profiles=prep.profiles,
                      precision=prep.precision, onnx_sha256=prep.onnx_sha256,
                      meta=prep.graph.meta.replace(precision=prep.precision).to_dict(),
                      input_name=prep.graph.input_name, outputs=prep.graph.output_names,
                      inputs=[{"name": name, "shape": dims} for name, dims
                              in prep.graph.inputs.items()],
                      onnx_path=str(prep.onnx_path), build_options=prep.options.key_dict(),
                      cache_key=key)
    # Drop the old sidecar first: a crash between the two writes leaves a plan without a
    # sidecar (refused at load time), never a new plan described by an old sidecar.
    sidecar_path(plan_path).unlink(missing_ok=True)
    atomic_write_bytes(plan_path, plan)
    write_sidecar(plan_path, info)
    log(f"wrote {plan_path} ({len(plan) / 1e6:.1f} MB) and {plan_path}.json")
    if prep.options.timing_cache is not None:  # after the plan: the plan is what matters
        save_timing_cache(prep.options.timing_cache, timing_cache, log=log)
    return info
