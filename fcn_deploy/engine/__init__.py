"""TensorRT engines: build plans from ONNX (fcn-build), describe them in a sidecar, cache them,
and run them natively.

The pure-Python parts (profiles, precision detection, sidecars, cache keys) work everywhere;
``tensorrt`` and ``cuda-python`` are imported only by the functions that need them, which raise
FCNError saying what to install when they are missing.
"""
from fcn_deploy.engine.build import BuildOptions, build_engine, prepare_build
from fcn_deploy.engine.cache import EngineCache, cache_key
from fcn_deploy.engine.graph import detect_precision, inspect_onnx
from fcn_deploy.engine.profiles import Profile, parse_profiles, select_profile
from fcn_deploy.engine.sidecar import EngineInfo, check_compatible, read_sidecar, write_sidecar

__all__ = ["BuildOptions", "EngineCache", "EngineInfo", "Profile", "build_engine", "cache_key",
           "check_compatible", "detect_precision", "inspect_onnx", "parse_profiles",
           "prepare_build", "read_sidecar", "select_profile", "write_sidecar"]
