"""The key of a TensorRT plan: what it depends on, hashed (used by the build and the cache)."""
from __future__ import annotations

import hashlib
import json
from typing import Any, Sequence

from fcn_deploy.engine.cuda import GpuInfo
from fcn_deploy.engine.profiles import Profile


def cache_key(*, onnx_sha256: str, trt_version: str, gpu: GpuInfo, profiles: Sequence[Profile],
              options: Any = None) -> str:
    """Hex key over the ONNX hash, TensorRT version, GPU, profiles and plan-changing options."""
    if options is not None and hasattr(options, "key_dict"):
        options = options.key_dict()
    payload = {
        "onnx_sha256": onnx_sha256,
        "tensorrt": str(trt_version),
        "gpu": {"name": gpu.name, "compute_capability": gpu.compute_capability},
        "profiles": [p.to_dict() for p in profiles],
        "options": options or {},
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
