"""An engine cache: build a plan once per (ONNX, TensorRT version, GPU, profiles, options).

Building a TensorRT engine takes minutes, and a plan is only valid for the TensorRT version and GPU
that built it. The cache key hashes exactly what the plan depends on, so a cached plan is reused
until one of them changes and is rebuilt then. Entries are ``<root>/<key>.plan`` plus their
sidecar; the key is also stored in the sidecar, so an ``-o`` plan built earlier can be checked for
being current the same way.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fcn_deploy.engine.build import BuildOptions, build_engine, prepare_build
from fcn_deploy.engine.cuda import GpuInfo, gpu_info, trt_version as current_trt_version
from fcn_deploy.engine.keys import cache_key
from fcn_deploy.engine.sidecar import EngineInfo, read_sidecar, sidecar_path
from fcn_deploy.errors import FCNError

CACHE_ENV = "FCN_DEPLOY_ENGINE_CACHE"


def default_cache_dir() -> Path:
    """``$FCN_DEPLOY_ENGINE_CACHE``, else ``$XDG_CACHE_HOME/fcn-deploy/engines`` (~/.cache)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "fcn-deploy" / "engines"


def plan_is_current(plan_path: str | os.PathLike, key: str) -> bool:
    """True when ``plan_path`` and its sidecar exist and the sidecar was written for ``key``."""
    plan_path = Path(plan_path)
    if not (plan_path.is_file() and sidecar_path(plan_path).is_file()):
        return False
    try:
        return read_sidecar(plan_path).cache_key == key
    except FCNError:
        return False


@dataclass
class CacheResult:
    plan_path: Path
    info: EngineInfo
    key: str
    built: bool  # False: reused a cached plan


Builder = Callable[..., EngineInfo]


class EngineCache:
    """Plans under one folder, keyed by :func:`cache_key`.

    ``trt_version`` and ``gpu`` default to this machine's (which needs TensorRT and a GPU);
    ``builder`` defaults to :func:`fcn_deploy.engine.build.build_engine` and is called as
    ``builder(onnx_path, plan_path, options, log=..., cache_key=key)``.
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def path_for(self, key: str) -> Path:
        return self.root / f"{key}.plan"

    def lookup(self, key: str) -> Path | None:
        path = self.path_for(key)
        return path if plan_is_current(path, key) else None

    def key_for(self, onnx_path: str | os.PathLike, options=None, *, trt_version: str | None = None,
                gpu: GpuInfo | None = None, prepared=None) -> str:
        """The key of ``onnx_path`` built with ``options`` here; ``prepared``: the
        :func:`~fcn_deploy.engine.build.prepare_build` result when the caller already has it."""
        prep = prepared if prepared is not None else prepare_build(onnx_path, options)
        trt_version, gpu = _machine(trt_version, gpu, prep.options.device)
        return cache_key(onnx_sha256=prep.onnx_sha256, trt_version=trt_version, gpu=gpu,
                         profiles=prep.profiles, options=prep.options)

    def get_or_build(self, onnx_path: str | os.PathLike, options=None, *,
                     trt_version: str | None = None, gpu: GpuInfo | None = None,
                     builder: Builder | None = None, rebuild: bool = False,
                     log: Callable[[str], None] | None = None) -> CacheResult:
        """Return the cached plan for this ONNX/TensorRT/GPU/profiles, building it if missing
        (or always, with ``rebuild=True``)."""
        log = log or logging.getLogger("fcn_deploy.engine").info
        options = options or BuildOptions()
        key = self.key_for(onnx_path, options, trt_version=trt_version, gpu=gpu)
        hit = None if rebuild else self.lookup(key)
        if hit is not None:
            log(f"engine cache hit: {hit}")
            return CacheResult(plan_path=hit, info=read_sidecar(hit), key=key, built=False)
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path_for(key)
        log(f"engine cache miss: building {path}")
        info = (builder or build_engine)(onnx_path, path, options, log=log, cache_key=key)
        return CacheResult(plan_path=path, info=info, key=key, built=True)


def _machine(trt_version: str | None, gpu: GpuInfo | None, device: int) -> tuple[str, GpuInfo]:
    if trt_version is None:
        trt_version = current_trt_version()
    if gpu is None:
        gpu = gpu_info(device)
    return trt_version, gpu
