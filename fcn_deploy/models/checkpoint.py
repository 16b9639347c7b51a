"""The ``model.pt`` checkpoint: weights plus everything needed to rebuild and use the model.

A checkpoint is one dict of plain Python types and tensors, so ``torch.load(path,
weights_only=True)`` reads it (no pickled classes, nothing executed on load)::

    {"format": "fcn-deploy.checkpoint", "format_version": 1,
     "arch": "fcn8s_vgg16", "arch_kwargs": {"num_classes": 21, "width": 1.0, ...},
     "meta": ModelMeta.to_dict(), "metrics": {...}, "training_state": {...} or None,
     "state_dict": {name: tensor}}

``training_state`` holds what a trainer needs to resume (optimizer state, iteration, RNG states);
numpy arrays in it are stored as tensors and numpy scalars as Python numbers.
:func:`capture_rng_state` / :func:`restore_rng_state` convert the Python, numpy and torch RNG
states to and from that form.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from fcn_deploy.errors import FCNError
from fcn_deploy.fileio import atomic_path
from fcn_deploy.meta import ModelMeta
from fcn_deploy.models.registry import create_model

FORMAT = "fcn-deploy.checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "arch", "arch_kwargs", "meta", "state_dict")


def _plain(obj: Any, where: str) -> Any:
    """``obj`` with numpy values converted; FCNError naming the place of anything not storable."""
    import numpy as np

    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise FCNError(f"{where}: numpy object arrays cannot be stored in a checkpoint")
        return torch.from_numpy(np.ascontiguousarray(obj).copy())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, torch.Size):
        return tuple(obj)
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, (str, int)):
                raise FCNError(f"{where}: key {key!r} is a {type(key).__name__}; "
                               f"checkpoint keys must be str or int")
            out[key] = _plain(value, f"{where}[{key!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        items = [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    raise FCNError(f"{where} is a {type(obj).__name__}; a checkpoint stores only dicts, lists, "
                   f"numbers, strings, None and tensors (so weights_only=True can load it)")


def save_checkpoint(path: str | os.PathLike, *, model: nn.Module, meta: ModelMeta,
                    metrics: Mapping[str, Any] | None = None,
                    training_state: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` with its metadata atomically to ``path`` (a failed write keeps the old file).

    ``meta.arch`` and ``meta.num_classes`` must agree with the model; the stored meta carries the
    model's ``arch_kwargs``.
    """
    arch = getattr(model, "arch", None)
    if not arch or not hasattr(model, "arch_kwargs"):
        raise FCNError(f"save_checkpoint needs a model built by create_model (with .arch and "
                       f".arch_kwargs), got {type(model).__name__}")
    if not isinstance(meta, ModelMeta):
        raise FCNError(f"meta must be a ModelMeta, got {type(meta).__name__}")
    if meta.arch != arch or meta.num_classes != model.num_classes:
        raise FCNError(f"meta describes {meta.arch} with {meta.num_classes} classes but the model "
                       f"is {arch} with {model.num_classes} classes")
    arch_kwargs = dict(model.arch_kwargs)
    meta = meta.replace(arch_kwargs=arch_kwargs)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "arch_kwargs": _plain(arch_kwargs, "arch_kwargs"),
        "meta": _plain(meta.to_dict(), "meta"),
        "metrics": _plain(dict(metrics or {}), "metrics"),
        "training_state": (None if training_state is None
                           else _plain(dict(training_state), "training_state")),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, *, map_location: Any = "cpu",
                    mmap: bool = False) -> dict[str, Any]:
    """Read and check a checkpoint (``weights_only=True``); returns the dict described above.

    ``mmap=True`` maps the tensors from the file instead of reading them: cheap when only the
    metadata is wanted.
    """
    path = Path(path)
    if not path.exists():
        raise FCNError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise FCNError(f"checkpoint {path} is not a file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise FCNError(f"{path} is not a readable fcn-deploy checkpoint: torch.load failed "
                       f"({type(exc).__name__}: {first})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        looks_bare = isinstance(ckpt, dict) and ckpt and all(
            isinstance(v, torch.Tensor) for v in ckpt.values())
        what = ("a bare state_dict (load it with fcn_deploy.models.surgery instead)"
                if looks_bare else f"format {ckpt.get('format')!r}" if isinstance(ckpt, dict)
                else f"a {type(ckpt).__name__}")
        raise FCNError(f"{path} is not an fcn-deploy checkpoint: it holds {what}; "
                       f"expected format {FORMAT!r}")
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise FCNError(f"{path}: checkpoint format_version {version!r} is not supported "
                       f"(this toolkit reads up to {FORMAT_VERSION})")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise FCNError(f"{path}: checkpoint is missing {', '.join(missing)}")
    ckpt.setdefault("metrics", {})
    ckpt.setdefault("training_state", None)
    return ckpt


def load_model(path: str | os.PathLike, *, map_location: Any = "cpu",
               num_classes: int | None = None, arch: str | None = None):
    """Rebuild the model of a checkpoint: returns ``(model in eval mode, ModelMeta)``.

    ``arch`` / ``num_classes``, when given, must match the checkpoint (FCNError otherwise).
    """
    ckpt = load_checkpoint(path)
    ck_arch, kwargs = ckpt["arch"], dict(ckpt["arch_kwargs"])
    if arch is not None and arch != ck_arch:
        raise FCNError(f"checkpoint {path} holds a {ck_arch} model, expected {arch}")
    if num_classes is not None and kwargs.get("num_classes") != num_classes:
        raise FCNError(f"checkpoint {path} has {kwargs.get('num_classes')} classes, "
                       f"expected {num_classes}")
    try:
        meta = ModelMeta.from_dict(ckpt["meta"])
    except (FCNError, TypeError) as exc:
        raise FCNError(f"checkpoint {path}: bad metadata: {exc}") from None
    if meta.arch != ck_arch or meta.num_classes != kwargs.get("num_classes"):
        raise FCNError(f"checkpoint {path}: metadata says {meta.arch} with {meta.num_classes} "
                       f"classes, the weights are {ck_arch} with {kwargs.get('num_classes')}")
    try:
        with torch.device("meta"):  # skip the random init: every tensor is loaded below
            model = create_model(ck_arch, **kwargs)
    except FCNError as exc:
        raise FCNError(f"checkpoint {path}: {exc}") from None
    state = ckpt["state_dict"]
    expected = model.state_dict()
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [f"{k} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}"
                 for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if problems:
        raise FCNError(f"checkpoint {path}: weights do not fit {ck_arch} "
                       f"{kwargs}: {'; '.join(problems[:6])}")
    model.load_state_dict(state, assign=True)  # keeps the frozen/learnable flags of the build
    return model.to(map_location).eval(), meta


# -- RNG state in plain types -------------------------------------------------------------

def capture_rng_state() -> dict[str, Any]:
    """Python, numpy (global) and torch RNG states as plain types/tensors (checkpoint-safe)."""
    import numpy as np

    version, internal, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss},
        "numpy": {"bit_generator": np_state["bit_generator"],
                  "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]),
                  "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    import numpy as np

    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))
    npst = state["numpy"]
    key = np.asarray(npst["key"].numpy() if isinstance(npst["key"], torch.Tensor) else npst["key"])
    np.random.set_state({"bit_generator": npst["bit_generator"],
                         "state": {"key": key.astype(np.uint32), "pos": int(npst["pos"])},
                         "has_gauss": int(npst["has_gauss"]), "gauss": float(npst["gauss"])})
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))
