"""Write a Triton Inference Server model repository from an ``.onnx`` or a ``.plan`` (+ sidecar).

    <repo>/<name>/config.pbtxt
    <repo>/<name>/<version>/model.onnx | model.plan | model.py + model.onnx (Python backend)

Every network input is listed (``image``, and a fusion net's ``hha`` / ``depth``, each with its
channels; all share the dynamic N, H, W) and every head's outputs (``labels`` / ``scores``, or a
multi-head net's ``labels_<head>`` / ``scores_<head>``). The config is built as Triton's own
``ModelConfig`` protobuf (the schema ``tritonclient`` ships),
written as text, parsed back with that schema and checked against the rules Triton applies when it
loads a model (batching, dims, instance groups, accelerators) before anything is written: a
config Triton would reject is never written. The toolkit metadata (classes, palette, mean, channel
order...) goes into ``parameters`` with the same ``fcn.*`` keys as ONNX metadata_props, so a
client (our ``triton`` backend) preprocesses without any other file.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from fcn_deploy.errors import FCNError
from fcn_deploy.fileio import RunFiles, atomic_path, atomic_write_text, os_error_reason
from fcn_deploy.meta import ModelMeta
from fcn_deploy.runtime.registry import ONNX_SUFFIXES, PLAN_SUFFIXES

PLATFORMS = {"onnx": "onnxruntime_onnx", "plan": "tensorrt_plan"}
BACKENDS = ("native", "python")
KINDS = ("auto", "gpu", "cpu")
#: Parameter keys of the serving limits (read by the triton client and the Python model).
MAX_HEIGHT_KEY = "fcn_serve.max_height"
MAX_WIDTH_KEY = "fcn_serve.max_width"
PROFILES_KEY = "fcn_serve.profiles"
THREADS_KEY = "fcn_serve.intra_op_threads"
_PYTHON_MODEL = Path(__file__).with_name("triton_python_model.py")


def model_config_pb2():
    """Triton's model-config protobuf module, as ``tritonclient`` ships it."""
    try:
        from tritonclient.grpc import model_config_pb2 as pb
    except ImportError as exc:
        raise FCNError(f"Triton's model-config schema comes with tritonclient ({exc}); install "
                       "it with pip install 'fcn-deploy[serve]'") from None
    return pb


@dataclass
class TritonRepoOptions:
    """How to serve the model. None means the default.

    ``name``: model name (default: the artifact's stem); ``version``: version folder (1);
    ``backend``: "native" (onnxruntime_onnx / tensorrt_plan platform) or "python" (a model.py
    running the ONNX with ONNX Runtime on the CPU, which the tritonserver of nvidia-pytriton's
    wheel can serve); ``max_batch_size``: largest batch (8; for a plan, its profiles' max batch);
    ``outputs``: "labels", "scores" or "both" of what the graph has (default: labels when the
    graph has them, else scores); ``preferred_batch_sizes`` and ``max_queue_delay_us``: dynamic
    batching (None/empty sizes = Triton's choice; ``dynamic_batching=False`` turns it off);
    ``instance_kind`` ("auto": GPU for native, CPU for python) and ``instance_count``;
    ``ort_tensorrt``: ONNX Runtime's TensorRT accelerator ("fp32"/"fp16", onnx only);
    ``version_policy``: "latest:N", "all" or "specific:1,2"; ``max_image``: (H, W) the server
    accepts (default: for a plan, its profiles; else any); ``intra_op_threads``: ONNX Runtime
    threads per instance of the python backend; ``overwrite``: replace an existing version
    folder.
    """

    name: str | None = None
    version: int = 1
    backend: str = "native"
    max_batch_size: int | None = None
    outputs: str | None = None
    dynamic_batching: bool = True
    preferred_batch_sizes: Sequence[int] = ()
    max_queue_delay_us: int = 0
    instance_kind: str = "auto"
    instance_count: int = 1
    ort_tensorrt: str | None = None
    version_policy: str = "latest:1"
    max_image: tuple[int, int] | None = None
    intra_op_threads: int | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise FCNError(f"backend {self.backend!r} is not one of {', '.join(BACKENDS)}")
        if self.instance_kind not in KINDS:
            raise FCNError(f"instance kind {self.instance_kind!r} is not one of {', '.join(KINDS)}")
        if self.ort_tensorrt is not None and self.ort_tensorrt not in ("fp32", "fp16"):
            raise FCNError(f"ONNX Runtime TensorRT precision {self.ort_tensorrt!r} is not fp32 "
                           "or fp16")
        if self.outputs is not None and self.outputs not in ("labels", "scores", "both"):
            raise FCNError(f"outputs {self.outputs!r} is not labels, scores or both")
        if self.version < 1:
            raise FCNError(f"model version must be >= 1, got {self.version}")
        if self.max_image is not None and min(self.max_image) < 1:
            raise FCNError(f"max image size must be positive, got {self.max_image}")
        # Each number must fit its ModelConfig field (protobuf raises a bare ValueError
        # otherwise) and make sense to Triton.
        _check_range("model version", self.version, 1, _INT64_MAX)
        if self.max_batch_size is not None:
            _check_range("max batch size", self.max_batch_size, 0, _INT32_MAX)
        for size in self.preferred_batch_sizes:
            _check_range("preferred batch size", size, 1, _INT32_MAX)
        _check_range("max queue delay (microseconds)", self.max_queue_delay_us, 0, _INT64_MAX)
        _check_range("instance count", self.instance_count, 1, _INT32_MAX)
        if self.intra_op_threads is not None:
            _check_range("intra-op threads (0 = ONNX Runtime's default)",
                         self.intra_op_threads, 0, _INT32_MAX)


_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1


def _check_range(what: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FCNError(f"{what} must be an integer in {low}..{high}, got {value!r}")


@dataclass
class ArtifactIO:
    """What the config needs from the artifact, read without running it."""

    kind: str  # "onnx" or "plan"
    meta: ModelMeta
    height: int  # -1 = dynamic
    width: int
    outputs: list[str]
    #: every network input in the metadata's order: (name, channels); all share N, H, W
    inputs: list[tuple[str, int]] = field(default_factory=lambda: [("image", 3)])
    max_batch: int | None = None  # from a plan's profiles
    profiles: list[Any] = field(default_factory=list)
    extra_files: list[Path] = field(default_factory=list)  # ONNX external data


@dataclass
class TritonRepoResult:
    model_dir: Path
    config_path: Path
    files: list[Path]
    config_text: str


def read_artifact(path: Path) -> ArtifactIO:
    """Inputs, outputs and metadata of an ``.onnx``, or of a ``.plan`` from its sidecar."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise FCNError(f"model file {path} does not exist")
    if suffix in ONNX_SUFFIXES:
        # lazy: fcn_deploy.engine imports onnx; only the artifact's kind needs it
        from fcn_deploy.engine.graph import inspect_onnx

        info = inspect_onnx(path)
        if info.meta is None:
            raise FCNError(f"{path} carries no fcn-deploy metadata; export it with fcn-export so "
                           "a client knows the mean and classes")
        inputs = _checked_inputs(path, info.meta, info.inputs)
        dims = info.inputs[inputs[0][0]]
        if isinstance(dims[0], int):
            raise FCNError(f"{path}: the batch dimension is fixed at {dims[0]}; Triton batches "
                           "on a dynamic first dimension (export with fcn-export, which keeps "
                           "N, H, W dynamic)")
        h, w = (d if isinstance(d, int) else -1 for d in dims[2:])
        return ArtifactIO("onnx", info.meta, h, w, list(info.output_names), inputs=inputs,
                          extra_files=list(info.external_files))
    if suffix in PLAN_SUFFIXES:
        # lazy: fcn_deploy.engine imports onnx; only the artifact's kind needs it
        from fcn_deploy.engine.sidecar import read_sidecar

        info = read_sidecar(path)
        meta = info.model_meta()
        inputs = _checked_inputs(path, meta, {i["name"]: list(i.get("shape") or [])
                                              for i in info.inputs})
        profiles = list(info.profiles)
        if not profiles:
            raise FCNError(f"sidecar of {path} lists no shape profiles; rebuild with fcn-build")

        def static(axis: int) -> int:  # a dim every profile fixes to one value, else -1
            values = {p.min[axis] for p in profiles} | {p.max[axis] for p in profiles}
            return values.pop() if len(values) == 1 else -1

        # the profiles are the first input's; the other inputs share their N, H, W
        h, w = static(2), static(3)
        return ArtifactIO("plan", meta, h, w, list(info.outputs), inputs=inputs,
                          max_batch=max(p.max[0] for p in profiles), profiles=profiles)
    raise FCNError(f"{path}: fcn-triton takes an .onnx or a TensorRT plan "
                   f"({', '.join(PLAN_SUFFIXES)}); got {suffix or 'no extension'!r}")


def _checked_inputs(path: Path, meta: ModelMeta,
                    graph: dict[str, list[Any]]) -> list[tuple[str, int]]:
    """(name, channels) of every input, in the metadata's order, checked against the graph's
    (or sidecar's) dims: the client feeds what the metadata lists, by name."""
    specs = meta.input_specs()
    if sorted(graph) != sorted(s.name for s in specs):
        raise FCNError(f"{path}: the network's inputs are {', '.join(graph)} but its metadata "
                       f"lists {', '.join(s.name for s in specs)}; re-export it with fcn-export "
                       "so a client feeds every input by its name")
    out = []
    for spec in specs:
        dims = graph[spec.name]
        if dims and (len(dims) != 4 or dims[1] != spec.channels):
            raise FCNError(f"{path}: input {spec.name!r} has dims {dims}; expected "
                           f"[batch, {spec.channels}, height, width]")
        out.append((spec.name, spec.channels))
    return out


def _parse_version_policy(text: str, pb) -> Any:
    policy = pb.ModelVersionPolicy()
    kind, _, arg = text.partition(":")
    try:
        if kind == "latest":
            policy.latest.num_versions = int(arg or 1)
            if policy.latest.num_versions < 1:
                raise ValueError
        elif kind == "all" and not arg:
            policy.all.SetInParent()
        elif kind == "specific":
            versions = [int(v) for v in arg.split(",")]
            if not versions or min(versions) < 1:
                raise ValueError
            policy.specific.versions.extend(versions)
        else:
            raise ValueError
    except ValueError:
        raise FCNError(f"version policy {text!r} is not understood; use latest:N, all or "
                       "specific:V1,V2") from None
    return policy


def _chosen_outputs(io: ArtifactIO, wanted: str | None, path: Path) -> list[tuple[str, str]]:
    """(kind, output name) of the served outputs: every head's labels, then every head's
    scores, of the kinds ``wanted`` (default: labels when the graph has them, else scores)."""
    heads = io.meta.head_specs()
    by_kind = {"labels": [h.labels_output for h in heads],
               "scores": [h.scores_output for h in heads]}
    have = [k for k, names in by_kind.items() if all(n in io.outputs for n in names)]
    if not have:
        expected = " and/or ".join(repr(n) for n in by_kind["labels"] + by_kind["scores"])
        raise FCNError(f"{path}: outputs are {io.outputs}; expected {expected}")
    if wanted is None:
        kinds = have[:1]
    else:
        kinds = ["labels", "scores"] if wanted == "both" else [wanted]
        missing = [n for k in kinds for n in by_kind[k] if n not in io.outputs]
        if missing:
            raise FCNError(f"{path} has no {' or '.join(map(repr, missing))} output (it has "
                           f"{', '.join(io.outputs)}); export it with --outputs {wanted}")
    return [(k, n) for k in kinds for n in by_kind[k]]


def build_config(path: str | os.PathLike, options: TritonRepoOptions | None = None):
    """The ``ModelConfig`` message for ``path`` (checked; nothing written)."""
    return _build(Path(path), options or TritonRepoOptions())[0]


def _build(path: Path, options: TritonRepoOptions) -> tuple[Any, ArtifactIO]:
    import json

    pb = model_config_pb2()
    io = read_artifact(path)
    if options.backend == "python" and io.kind != "onnx":
        raise FCNError(f"{path}: the python backend runs an .onnx with ONNX Runtime; a TensorRT "
                       "plan is served by the native tensorrt_plan platform")
    if options.ort_tensorrt and (io.kind != "onnx" or options.backend != "native"):
        raise FCNError("the ONNX Runtime TensorRT accelerator applies to the onnxruntime_onnx "
                       "platform only (an .onnx with the native backend)")
    name = options.name or path.stem.split(".")[0]
    config = pb.ModelConfig(name=name)
    if options.backend == "python":
        config.backend = "python"
    else:
        config.platform = PLATFORMS[io.kind]
    if io.max_batch is not None:
        if options.max_batch_size is not None and options.max_batch_size > io.max_batch:
            raise FCNError(f"max batch size {options.max_batch_size} is larger than the plan's "
                           f"profiles allow ({io.max_batch}); rebuild it with a larger --max batch")
        config.max_batch_size = (io.max_batch if options.max_batch_size is None
                                 else options.max_batch_size)
    else:
        config.max_batch_size = 8 if options.max_batch_size is None else options.max_batch_size
    config.version_policy.CopyFrom(_parse_version_policy(options.version_policy, pb))
    # max_batch_size 0 means no batching by Triton: the dims then include the batch dim.
    batch = [-1] if config.max_batch_size == 0 else []
    for name, channels in io.inputs:  # every input; one image's inputs share N, H, W
        config.input.add(name=name, data_type=pb.TYPE_FP32,
                         dims=batch + [channels, io.height, io.width])
    served = _chosen_outputs(io, options.outputs, path)
    classes = {h.scores_output: h.num_classes for h in io.meta.head_specs()}
    for kind, out in served:
        if kind == "labels":
            config.output.add(name=out, data_type=pb.TYPE_UINT8,
                              dims=batch + [io.height, io.width])
        else:
            config.output.add(name=out, data_type=pb.TYPE_FP32,
                              dims=batch + [classes[out], io.height, io.width])
    if options.dynamic_batching:
        config.dynamic_batching.SetInParent()
        config.dynamic_batching.preferred_batch_size.extend(int(s) for s in
                                                            options.preferred_batch_sizes)
        config.dynamic_batching.max_queue_delay_microseconds = int(options.max_queue_delay_us)
    kind = options.instance_kind
    if kind == "auto":
        kind = "cpu" if options.backend == "python" else "gpu"
    config.instance_group.add(count=options.instance_count,
                              kind=pb.ModelInstanceGroup.KIND_GPU if kind == "gpu"
                              else pb.ModelInstanceGroup.KIND_CPU)
    if options.ort_tensorrt:
        accel = config.optimization.execution_accelerators.gpu_execution_accelerator.add(
            name="tensorrt")
        accel.parameters["precision_mode"] = options.ort_tensorrt.upper()
    kinds = sorted({kind for kind, _ in served})
    meta = io.meta.replace(outputs="both" if len(kinds) == 2 else kinds[0])
    for key, value in sorted(meta.to_onnx_props().items()):
        config.parameters[key].string_value = value
    max_hw = options.max_image
    if max_hw is None and io.profiles:
        max_hw = (max(p.max[2] for p in io.profiles), max(p.max[3] for p in io.profiles))
    if max_hw is not None:
        config.parameters[MAX_HEIGHT_KEY].string_value = str(max_hw[0])
        config.parameters[MAX_WIDTH_KEY].string_value = str(max_hw[1])
    if io.profiles:
        config.parameters[PROFILES_KEY].string_value = json.dumps(
            [p.to_dict() for p in io.profiles])
    if options.intra_op_threads is not None:
        if options.backend != "python":
            raise FCNError("intra-op threads apply to the python backend; the native backends "
                           "take their threads from Triton's own settings")
        config.parameters[THREADS_KEY].string_value = str(options.intra_op_threads)
    check_config(config, profiles=io.profiles)
    return config, io


def check_config(config, *, profiles: Sequence[Any] = ()) -> None:
    """Raise FCNError where Triton would refuse to load ``config`` (a ``ModelConfig``)."""
    pb = model_config_pb2()
    where = f"model {config.name!r}"
    if not config.name or "/" in config.name or config.name in (".", ".."):
        raise FCNError(f"model name {config.name!r} must be a non-empty folder name")
    if not all(c.isascii() and (c.isalnum() or c in "_-.") for c in config.name):
        # It is a folder and part of every URL (/v2/models/<name>/infer): spaces, '#', '?',
        # '%' and the like break clients, shells and Triton's own model loading.
        raise FCNError(f"model name {config.name!r} may contain only letters, digits, '_', '-' "
                       "and '.'; choose another --name")
    if bool(config.platform) == bool(config.backend):
        raise FCNError(f"{where}: set exactly one of platform and backend")
    if config.platform and config.platform not in PLATFORMS.values():
        raise FCNError(f"{where}: platform {config.platform!r} is not one of "
                       f"{', '.join(PLATFORMS.values())}")
    if config.max_batch_size < 0:
        raise FCNError(f"{where}: max_batch_size must be >= 0, got {config.max_batch_size}")
    if config.HasField("dynamic_batching"):
        if config.max_batch_size == 0:
            raise FCNError(f"{where}: dynamic batching needs max_batch_size > 0")
        bad = [s for s in config.dynamic_batching.preferred_batch_size
               if not 1 <= s <= config.max_batch_size]
        if bad:
            raise FCNError(f"{where}: preferred batch sizes {bad} are outside 1.."
                           f"{config.max_batch_size} (max_batch_size)")
        if config.dynamic_batching.max_queue_delay_microseconds < 0:
            raise FCNError(f"{where}: max queue delay must be >= 0")
        if profiles:
            batches = sorted({b for p in profiles for b in range(p.min[0], p.max[0] + 1)})
            outside = [s for s in config.dynamic_batching.preferred_batch_size
                       if s not in batches]
            if outside:
                raise FCNError(f"{where}: preferred batch sizes {outside} are outside the plan's "
                               f"profiles (batch {batches[0]}..{batches[-1]})")
    names = [t.name for t in list(config.input) + list(config.output)]
    if len(set(names)) != len(names):
        raise FCNError(f"{where}: tensor names repeat: {names}")
    for tensor in list(config.input) + list(config.output):
        if not tensor.dims or any(d == 0 or d < -1 for d in tensor.dims):
            raise FCNError(f"{where}: tensor {tensor.name!r} dims {list(tensor.dims)} must be "
                           "positive or -1 (dynamic)")
        if tensor.data_type == pb.TYPE_INVALID:
            raise FCNError(f"{where}: tensor {tensor.name!r} has no data type")
    for group in config.instance_group:
        if group.count < 1:
            raise FCNError(f"{where}: instance count must be >= 1, got {group.count}")
        if config.platform == "tensorrt_plan" and group.kind == pb.ModelInstanceGroup.KIND_CPU:
            raise FCNError(f"{where}: a TensorRT plan runs on GPUs only (KIND_GPU)")
    accels = config.optimization.execution_accelerators
    for accel in list(accels.gpu_execution_accelerator) + list(accels.cpu_execution_accelerator):
        if config.platform != "onnxruntime_onnx":
            raise FCNError(f"{where}: execution accelerators apply to onnxruntime_onnx only")
        if accel.name == "tensorrt" and accel.parameters.get("precision_mode", "FP32") not in (
                "FP32", "FP16"):
            raise FCNError(f"{where}: TensorRT precision_mode must be FP32 or FP16")
    for key, value in config.parameters.items():
        if not value.string_value and key:
            raise FCNError(f"{where}: parameter {key!r} is empty")


def parse_config_text(text: str, *, source: str = "config.pbtxt"):
    """Parse config.pbtxt text with Triton's schema and check it; FCNError naming the problem."""
    from google.protobuf import text_format

    pb = model_config_pb2()
    config = pb.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise FCNError(f"{source} does not follow Triton's model-config schema: {exc}") from None
    profiles = []
    if PROFILES_KEY in config.parameters:
        import json

        # lazy: fcn_deploy.engine imports onnx
        from fcn_deploy.engine.profiles import Profile

        profiles = [Profile.from_dict(p)
                    for p in json.loads(config.parameters[PROFILES_KEY].string_value)]
    check_config(config, profiles=profiles)
    return config


def config_text(config) -> str:
    """config.pbtxt text of a ``ModelConfig``, parsed back and checked before it is returned."""
    from google.protobuf import text_format

    header = ("# Written by fcn-triton (fcn-deploy); the fcn.* parameters are the model's "
              "metadata.\n")
    text = header + text_format.MessageToString(config)
    parsed = parse_config_text(text)
    if parsed != config:
        raise AssertionError("config.pbtxt did not parse back to the same ModelConfig")
    return text


def write_triton_repository(path: str | os.PathLike, repository: str | os.PathLike,
                            options: TritonRepoOptions | None = None) -> TritonRepoResult:
    """Write ``<repository>/<name>/config.pbtxt`` and ``<name>/<version>/`` for ``path``."""
    options = options or TritonRepoOptions()
    path = Path(path)
    config, io = _build(path, options)
    text = config_text(config)
    repository = Path(repository)
    if repository.exists() and not repository.is_dir():
        raise FCNError(f"model repository {repository} exists and is not a folder")
    model_dir = repository / config.name
    version_dir = model_dir / str(options.version)
    source = path.resolve()
    if source.is_relative_to(model_dir.resolve()):
        raise FCNError(f"{path} lies inside the model folder {model_dir} that fcn-triton would "
                       "write; choose another repository")
    if version_dir.exists() and not options.overwrite:
        raise FCNError(f"{version_dir} already exists; pick another --version or pass "
                       "--overwrite to replace it")
    io_kind = "plan" if config.platform == "tensorrt_plan" else "onnx"
    copies = [(path, version_dir / f"model.{io_kind}")]
    copies += [(extra, version_dir / extra.name) for extra in io.extra_files]
    config_path = model_dir / "config.pbtxt"
    model_py = version_dir / "model.py" if config.backend == "python" else None
    # The shared plan: no file written may be an input (symlinks and hard links included) or
    # another file of this repository, checked before any folder is made.
    plan = RunFiles("fcn-triton")
    plan.read_model("model", path)
    for extra in io.extra_files:
        plan.read("model's external weights", extra)
    for src, dst in copies:
        plan.write(f"copy of {src.name}", dst)
    plan.write("python backend", model_py)
    plan.write("config", config_path)
    if plan.conflicts():
        plan.check()  # raises with the reason
    # Folders this call creates are removed again if it fails or is interrupted, so no
    # half-made model folder (which Triton would try to load) or empty version is left behind.
    first_new = next((d for d in (repository, model_dir, version_dir) if not d.exists()), None)
    try:
        plan.write_folder("model version folder", version_dir)
        plan.check()
        written = []
        for src, dst in copies:
            with atomic_path(dst, suffix=dst.suffix) as tmp:
                shutil.copyfile(src, tmp)
            written.append(dst)
        if model_py is not None:
            atomic_write_text(model_py, _PYTHON_MODEL.read_text(encoding="utf-8"))
            written.append(model_py)
        atomic_write_text(config_path, text)
    except BaseException as exc:
        if first_new is not None:
            shutil.rmtree(first_new, ignore_errors=True)
        if isinstance(exc, OSError):
            raise FCNError(f"cannot write the model repository {repository}: "
                           f"{os_error_reason(exc)}") from None
        raise
    return TritonRepoResult(model_dir=model_dir, config_path=config_path,
                            files=[config_path] + written, config_text=text)
