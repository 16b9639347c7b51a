"""The registry of backends and ``open_runner``, which picks one from the file and the machine.

Each backend says which artifacts it opens and whether this machine can run it (without importing
heavy modules), so tests and benchmarks can iterate :func:`available_backends`.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from fcn_deploy.errors import FCNError
from fcn_deploy.fileio import url_scheme  # noqa: F401  (also from here)
from fcn_deploy.ortsession import available_cores, cap_threads  # noqa: F401  (also from here)
from fcn_deploy.runtime.base import Runner

PLAN_SUFFIXES = (".plan", ".engine", ".trt")
ONNX_SUFFIXES = (".onnx",)
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


@dataclass(frozen=True)
class BackendSpec:
    """One backend: its name, the artifacts it opens, an availability probe and its opener.

    ``probe()`` returns None when the backend can run here, else the reason it cannot.
    ``opener`` is ``"module:callable"`` (imported only when used) or a callable
    ``(path, **options) -> Runner``. ``threads_option`` names the opener's CPU-thread option
    (None: the backend has none), so commands map one ``--threads`` onto every backend.
    ``schemes`` are the URL schemes the backend opens (``triton://host:port/model``): the
    opener then gets the URL string instead of a file path.
    ``int8_kernels``: the opener takes ``int8_kernels=`` (auto/fast/exact, see
    :mod:`fcn_deploy.cpu`), so commands map ``--int8-kernels`` onto the backends that have a
    choice of CPU int8 kernels.
    """

    name: str
    suffixes: tuple[str, ...]
    probe: Callable[[], str | None]
    opener: str | Callable[..., Runner]
    description: str = ""
    threads_option: str | None = None
    schemes: tuple[str, ...] = ()
    int8_kernels: bool = False

    def open(self, path: Path | str, **options: Any) -> Runner:
        opener = self.opener
        if isinstance(opener, str):
            module, _, attr = opener.partition(":")
            opener = getattr(importlib.import_module(module), attr)
        _check_option_names(self.name, opener, options)
        return opener(path, **options)


def _check_option_names(backend: str, opener: Callable[..., Runner], options: dict) -> None:
    """FCNError naming an option the opener does not take (a config file's typo, or another
    backend's option), with the ones it does take, instead of Python's TypeError."""
    try:
        params = inspect.signature(opener).parameters
    except (TypeError, ValueError):  # no signature to read: the opener itself decides
        return
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    takes = [n for n, p in list(params.items())[1:]  # after the path
             if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for name in options:
        if name not in takes:
            raise FCNError(f"backend {backend!r} has no option {name!r}; its options are "
                           f"{', '.join(takes) or 'none'}")


_REGISTRY: dict[str, BackendSpec] = {}


def register_backend(spec: BackendSpec, *, replace: bool = False) -> None:
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"backend {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec


def list_backends() -> list[str]:
    """Every registered backend, available here or not."""
    return list(_REGISTRY)


def backend_status() -> dict[str, str | None]:
    """``{name: None if available else the reason it is not}``."""
    return {name: spec.probe() for name, spec in _REGISTRY.items()}


def available_backends() -> list[str]:
    """The backends this machine can run (for parametrizing tests and benchmarks)."""
    return [name for name, reason in backend_status().items() if reason is None]


def get_backend(name: str) -> BackendSpec:
    if name not in _REGISTRY:
        raise FCNError(f"unknown backend {name!r}; choose one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def thread_options(backend: str, threads: int | None) -> dict[str, int]:
    """The runner options that set ``threads`` CPU threads on ``backend`` ({} when unset/none);
    more threads than cores are capped at the core count (see :func:`cap_threads`)."""
    if threads is None:
        return {}
    name = get_backend(backend).threads_option
    return {name: cap_threads(threads)} if name else {}


def _scheme_backend(scheme: str) -> BackendSpec:
    for spec in _REGISTRY.values():
        if scheme in spec.schemes:
            return spec
    known = sorted(s for spec in _REGISTRY.values() for s in spec.schemes)
    raise FCNError(f"no backend opens {scheme}:// URLs; known URL schemes: {', '.join(known)}")


def int8_kernel_options(backend: str, int8_kernels: str | None) -> dict[str, str]:
    """The runner options that pass ``int8_kernels`` to ``backend`` ({} when unset, or when the
    backend has no choice of int8 kernels: PyTorch runs FP32, TensorRT's INT8 is exact)."""
    if int8_kernels is None or not get_backend(backend).int8_kernels:
        return {}
    return {"int8_kernels": int8_kernels}


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in ONNX_SUFFIXES:
        return "onnx"
    if suffix in PLAN_SUFFIXES:
        return "plan"
    if suffix in CHECKPOINT_SUFFIXES:
        return "checkpoint"
    raise FCNError(f"{path}: cannot tell the model format from the extension {suffix or '(none)'!r}; "
                   f"expected .onnx, a TensorRT plan ({', '.join(PLAN_SUFFIXES)}) or a checkpoint "
                   f"({', '.join(CHECKPOINT_SUFFIXES)})")


def default_backend(path: str | os.PathLike) -> str:
    """The backend for an artifact: plans -> tensorrt, ONNX -> onnxruntime, checkpoints -> torch;
    a URL -> the backend registered for its scheme."""
    scheme = url_scheme(path)
    if scheme is not None:
        return _scheme_backend(scheme).name
    return {"onnx": "onnxruntime", "plan": "tensorrt", "checkpoint": "torch"}[_kind(Path(path))]


def open_runner(path: str | os.PathLike, *, backend: str | None = None, **options: Any) -> Runner:
    """Open ``path`` (model.pt, .onnx or .plan) with ``backend`` (None = from the file).

    ``options`` go to the backend (``device``, ``intra_op_threads``, ``providers``, ...). A
    backend that cannot open this kind of file, or is not installed here, is an FCNError that
    says what to use or install instead. ``path`` may be a URL of a served model
    (``triton://host:8000/fcn8s``), opened by the backend registered for its scheme.
    """
    scheme = url_scheme(path)
    if scheme is not None:
        spec = get_backend(backend) if backend else _scheme_backend(scheme)
        if scheme not in spec.schemes:
            raise FCNError(f"backend {spec.name!r} cannot open {path}; it opens "
                           f"{', '.join(spec.suffixes) or 'no'} files")
        reason = spec.probe()
        if reason is not None:
            raise FCNError(f"backend {spec.name!r} is not available here: {reason}")
        return spec.open(str(path), **options)
    path = Path(path)
    if not path.exists():
        raise FCNError(f"model file {path} does not exist")
    if path.is_dir():
        raise FCNError(f"{path} is a folder; expected a model file (.onnx, .plan or .pt)")
    name = backend or default_backend(path)
    spec = get_backend(name)
    kind = _kind(path)
    if path.suffix.lower() not in spec.suffixes:
        hints = {"checkpoint": "Export it to ONNX with fcn-export first",
                 "onnx": "Use backend 'onnxruntime', or build a plan with fcn-build",
                 "plan": "TensorRT plans run only with backend 'tensorrt'"}
        raise FCNError(f"backend {name!r} cannot open {path} ({kind}); it opens "
                       f"{', '.join(spec.suffixes)} files. {hints[kind]}")
    reason = spec.probe()
    if reason is not None:
        raise FCNError(f"backend {name!r} is not available here: {reason}")
    runner = spec.open(path, **options)
    try:
        runner.check_class_count()
    except FCNError:
        runner.close()
        raise
    return runner


# -- built-in backends ----------------------------------------------------------------------
def _probe_module(module: str, hint: str) -> Callable[[], str | None]:
    def probe() -> str | None:
        return None if importlib.util.find_spec(module) is not None else f"{module} is not installed ({hint})"

    return probe


def _probe_tensorrt() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "tensorrt is not installed (pip install 'fcn-deploy[tensorrt]' on a GPU machine)"
    try:
        found = importlib.util.find_spec("cuda.bindings") is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        return "cuda-python is not installed (pip install cuda-python)"
    # lazy: fcn_deploy.engine imports onnx (TensorRT when it runs); the runtime's import must not
    from fcn_deploy.engine.cuda import cuda_device_count

    count, reason = cuda_device_count()
    return None if count else f"no usable CUDA GPU: {reason}"


def _open_tensorrt(path: Path, *, profiles=None, cache_dir=None, device=None,
                   allow_other_gpu: bool = False, **build: Any) -> Runner:
    """Open a plan, or an ONNX file through the engine cache (built once per GPU/TensorRT)."""
    # lazy: fcn_deploy.engine imports onnx (TensorRT when it runs); the runtime's import must not
    from fcn_deploy.engine.runner import TensorRTRunner

    if path.suffix.lower() in ONNX_SUFFIXES:
        from fcn_deploy.engine.build import BuildOptions
        from fcn_deploy.engine.cache import EngineCache
        from fcn_deploy.engine.cuda import parse_device

        options = BuildOptions(device=parse_device(device), **build)
        if profiles is not None:
            options.profiles = list(profiles)
        path = EngineCache(cache_dir).get_or_build(path, options).plan_path
    elif profiles is not None or cache_dir is not None or build:
        raise FCNError(f"{path} is already a plan: profiles and build options apply only when "
                       "opening an .onnx with backend 'tensorrt'")
    return TensorRTRunner(path, device=device, allow_other_gpu=allow_other_gpu)


register_backend(BackendSpec(
    "onnxruntime", ONNX_SUFFIXES, _probe_module("onnxruntime", "pip install onnxruntime"),
    "fcn_deploy.runtime.onnxruntime_backend:OnnxRuntimeRunner",
    "ONNX Runtime: CPU, or CUDA/TensorRT execution providers with onnxruntime-gpu",
    threads_option="intra_op_threads", int8_kernels=True))
register_backend(BackendSpec(
    "torch", CHECKPOINT_SUFFIXES, _probe_module("torch", "pip install 'fcn-deploy[torch]'"),
    "fcn_deploy.runtime.torch_backend:TorchRunner",
    "PyTorch eager on a training checkpoint (parity reference)", threads_option="threads"))
register_backend(BackendSpec(
    "tensorrt", PLAN_SUFFIXES + ONNX_SUFFIXES, _probe_tensorrt, _open_tensorrt,
    "native TensorRT 10/11 (plans from fcn-build; .onnx through the engine cache)"))
register_backend(BackendSpec(
    "triton", (), _probe_module("tritonclient", "pip install 'fcn-deploy[serve]'"),
    "fcn_deploy.runtime.triton_backend:TritonRunner",
    "a model served by Triton Inference Server (triton://host:8000/name, "
    "triton+grpc://host:8001/name)", schemes=("triton", "triton+http", "triton+grpc")))
