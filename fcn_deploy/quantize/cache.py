"""The calibration cache of fcn-quantize: activation ranges kept for a later run, checked on reuse.

ONNX Runtime's own cache file holds ranges and the calibration method only, so a cache made for
another model, another percentile or other images would be reused silently. Ours wraps ORT's
ranges with what they depend on (the FP32 graph's SHA-256, the method and its settings, the
calibration source and image count) and is reused only when all of it matches. A cache written
for something else is reported and recalibrated (then overwritten); a file that is not a cache
(corrupt, truncated, foreign) is an error, so nothing the user did not write with fcn-quantize
is ever overwritten.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fcn_deploy.errors import FCNError
from fcn_deploy.fileio import atomic_write_text

FORMAT = "fcn-deploy calibration cache"
VERSION = 1


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheKey:
    """What calibration ranges depend on; two runs with equal keys get equal ranges."""

    model_sha256: str
    method: str
    percentile: float | None
    source: str
    num_images: int

    def as_dict(self) -> dict[str, Any]:
        return {"model_sha256": self.model_sha256, "method": self.method,
                "percentile": self.percentile, "source": self.source,
                "num_images": self.num_images}

    def differences(self, other: dict[str, Any]) -> list[str]:
        """Fields where a cached key differs from this one, as 'name (cached X, now Y)'."""
        out = []
        for name, value in self.as_dict().items():
            if other.get(name) != value:
                shown = ("another graph" if name == "model_sha256"
                         else f"{other.get(name)!r}, now {value!r}")
                out.append(f"{name.replace('_sha256', '')} ({shown})")
        return out


def read_cache(path: Path, key: CacheKey) -> dict[str, Any] | None:
    """ORT's ranges from a cache made for ``key``; None (with a warning) when made for another.

    A missing file is None silently; a file that is not one of our caches is an FCNError.
    """
    if not path.exists():
        return None
    if not path.is_file():
        raise FCNError(f"calibration cache {path} is not a file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise FCNError(f"calibration cache {path} is not readable JSON (corrupt or truncated: "
                       f"{exc}); delete it to recalibrate") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise FCNError(f"calibration cache {path} was not written by fcn-quantize (no "
                       f"{FORMAT!r} header); delete it or choose another --calibration-cache")
    ranges, cached_key = data.get("ranges"), data.get("key")
    if data.get("version") != VERSION or not isinstance(ranges, dict) or \
            not isinstance(cached_key, dict):
        raise FCNError(f"calibration cache {path} is incomplete or of another version; delete it "
                       "to recalibrate")
    diff = key.differences(cached_key)
    if diff:
        warnings.warn(f"calibration cache {path} was made for other settings: "
                      f"{'; '.join(diff)}. Recalibrating, and the cache will be replaced")
        return None
    return ranges


def write_cache(path: Path, key: CacheKey, ranges: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps({"format": FORMAT, "version": VERSION,
                                        "key": key.as_dict(), "ranges": ranges}, indent=1) + "\n")
