"""The one runner contract every backend implements.

A runner wraps one loaded artifact (model.pt, .onnx or .plan) and runs the network on a batch:
``infer({"image": nchw_float32}) -> {"scores": ..., "labels": ...}`` (a multi-input net takes
every input by name, ``{"image": ..., "hha": ...}``; a multi-head net gives ``scores_<head>`` /
``labels_<head>``, see ``ModelMeta.head_specs()``). It knows nothing about images, means or
palettes; the :class:`~fcn_deploy.runtime.segmenter.Segmenter` does that on top,
from the runner's :attr:`Runner.meta`. The Segmenter, fcn-eval and fcn-bench treat every backend
alike through this interface.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from fcn_deploy.errors import FCNError
from fcn_deploy.meta import ModelMeta

#: The network's input and output names (the project-wide ONNX contract).
INPUT_NAME = "image"
SCORES = "scores"
LABELS = "labels"


@dataclass(frozen=True)
class TensorInfo:
    """Name, shape and dtype of one network input or output.

    ``shape`` holds ints for static dims and None for dynamic ones; ``dim_names`` holds the axis
    names where the artifact names them ("batch", "height", "width"), else None per dim.
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype
    dim_names: tuple[str | None, ...] = ()

    def describe(self) -> str:
        """``image float32 [batch, 3, height, width]``: how error messages show a tensor."""
        dims = []
        for i, d in enumerate(self.shape):
            if d is not None:
                dims.append(str(d))
            else:
                named = self.dim_names[i] if i < len(self.dim_names) else None
                dims.append(named or "?")
        return f"{self.name} {np.dtype(self.dtype).name} [{', '.join(dims)}]"

    def accepts(self, shape: Sequence[int]) -> bool:
        """True when ``shape`` has this tensor's rank and matches every static dim."""
        return len(shape) == len(self.shape) and all(
            d is None or d == s for d, s in zip(self.shape, shape))


class Runner:
    """Base class of every backend: one loaded network, ``infer`` on a batch, ``close``.

    Subclasses set ``backend``, ``path``, ``meta``, ``inputs`` and ``outputs`` in ``__init__`` and
    implement ``_infer``. Use as a context manager or call :meth:`close`.

    Thread-safety: :meth:`infer` takes the runner's lock unless the subclass sets
    ``concurrent = True`` (ONNX Runtime sessions run concurrently), so sharing one runner between
    threads is safe but serialized; open one runner per thread for parallel inference.
    """

    backend: str = "?"
    concurrent: bool = False

    def __init__(self) -> None:
        self.path = None
        self.meta: ModelMeta | None = None
        self.inputs: list[TensorInfo] = []
        self.outputs: list[TensorInfo] = []
        self._lock = threading.Lock()
        self._closed = False

    # -- public contract -----------------------------------------------------------------
    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def infer(self, feeds: Mapping[str, np.ndarray], *,
              outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Run the network on ``feeds`` (``{"image": float32 NCHW}``); return ``{name: array}``.

        ``outputs`` limits what is fetched (default: every output). Arrays returned belong to the
        caller (never views of reused buffers).
        """
        if self._closed:
            raise FCNError(f"{self.backend} runner for {self.path} is closed")
        feeds = self.check_feeds(feeds)
        wanted = self.check_output_names(outputs)
        if self.concurrent:
            result = self._infer(feeds, wanted)
        else:
            with self._lock:
                result = self._infer(feeds, wanted)
        self._check_result_classes(result)
        return result

    def close(self) -> None:
        """Release the backend's resources; later ``infer`` calls are an error."""
        self._closed = True

    def batch_limit(self, shape: Sequence[int]) -> int | None:
        """Largest batch this runner takes for images of ``shape`` (NCHW, N ignored); None = any."""
        first = self.inputs[0].shape[0] if self.inputs and self.inputs[0].shape else None
        return first

    def check_class_count(self) -> None:
        """Refuse a network whose score channels disagree with its metadata's class count.

        Labels beyond the class list would be drawn with no palette colour and no name (and
        counted in no class by fcn-eval), so such an artifact is an error at open, as in the C++
        runtime. Each head's ``scores`` output is checked against its own classes
        (``meta.head_specs()``). Dynamic channel counts are checked on each result instead.
        """
        if self.meta is None:
            return
        shapes = {t.name: t.shape for t in self.outputs}
        for head in self.meta.head_specs():
            shape = shapes.get(head.scores_output, ())
            if len(shape) == 4 and shape[1] is not None and shape[1] != head.num_classes:
                raise FCNError(self._classes_mismatch(head, f"output {head.scores_output!r} has "
                                                            f"{shape[1]} channels"))

    def _check_result_classes(self, result: Mapping[str, np.ndarray]) -> None:
        if self.meta is None:
            return
        for head in self.meta.head_specs():
            classes = head.num_classes
            scores = result.get(head.scores_output)
            if scores is not None and scores.ndim == 4 and scores.shape[1] != classes:
                raise FCNError(self._classes_mismatch(head, f"output {head.scores_output!r} has "
                                                            f"{scores.shape[1]} channels"))
            labels = result.get(head.labels_output)
            if labels is not None and labels.size and int(labels.max()) >= classes:
                raise FCNError(self._classes_mismatch(
                    head, f"output {head.labels_output!r} holds class {int(labels.max())}",
                    f" (0..{classes - 1})"))

    def _classes_mismatch(self, head, what: str, detail: str = "") -> str:
        where = f" for head {head.name!r}" if self.meta.multi_head else ""
        return (f"{self.path}: {what} but the metadata lists {head.num_classes} classes{where}"
                f"{detail}; the model and its metadata disagree (re-export it from its "
                "checkpoint)")

    def activation_bytes(self, shape: Sequence[int]) -> int | None:
        """Estimated memory of one pass on an input of ``shape`` beyond the loaded weights
        (see runtime/memory.py); None where the backend cannot tell."""
        return None

    def describe_accepted(self) -> str:
        """What the network accepts, for error messages."""
        return ", ".join(t.describe() for t in self.inputs)

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.backend} {self.path}>"

    # -- helpers for subclasses ----------------------------------------------------------
    def check_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check names, rank, static dims and dtype of ``feeds``; return contiguous arrays."""
        if not isinstance(feeds, Mapping):
            raise FCNError(f"infer() takes a dict {{name: array}}; got {type(feeds).__name__}")
        expected = {t.name: t for t in self.inputs}
        unknown = sorted(set(feeds) - set(expected))
        missing = sorted(set(expected) - set(feeds))
        if unknown or missing:
            raise FCNError(f"{self.path}: inputs {sorted(feeds)} do not match the network's "
                           f"inputs ({self.describe_accepted()})")
        out = {}
        for name, array in feeds.items():
            info = expected[name]
            array = np.asarray(array)
            if array.size == 0:
                raise FCNError(f"{self.path}: input {name!r} is empty (shape {array.shape}); "
                               f"expected {info.describe()}")
            if not info.accepts(array.shape):
                raise FCNError(f"{self.path}: input {name!r} has shape {tuple(array.shape)}; "
                               f"the network accepts {info.describe()}")
            if array.dtype != info.dtype:
                if not (np.issubdtype(array.dtype, np.floating) and
                        np.issubdtype(info.dtype, np.floating)):
                    raise FCNError(f"{self.path}: input {name!r} has dtype {array.dtype}; "
                                   f"expected {np.dtype(info.dtype).name}")
                array = array.astype(info.dtype)
            out[name] = np.ascontiguousarray(array)
        self._check_shared_dims(out)
        return out

    def _check_shared_dims(self, feeds: Mapping[str, np.ndarray]) -> None:
        """Every input of one call has the same batch, height and width (one image's
        modalities); the network would fail deep inside, or broadcast, otherwise."""
        if len(feeds) < 2:
            return
        nhwc = self.meta is not None and self.meta.input_layout == "NHWC"
        axes = (0, 1, 2) if nhwc else (0, 2, 3)
        dims = {name: tuple(a.shape[k] for k in axes) for name, a in feeds.items()
                if a.ndim == 4}
        if len(set(dims.values())) > 1:
            shown = ", ".join(f"{n} {'x'.join(map(str, d))}" for n, d in dims.items())
            raise FCNError(f"{self.path}: the inputs of one call must have the same batch, "
                           f"height and width; got (N x H x W) {shown}")

    def check_output_names(self, outputs: Sequence[str] | None) -> list[str]:
        names = self.output_names
        if outputs is None:
            return names
        bad = [o for o in outputs if o not in names]
        if bad:
            raise FCNError(f"{self.path}: no output named {', '.join(map(repr, bad))}; the "
                           f"network's outputs are {', '.join(t.describe() for t in self.outputs)}")
        return list(outputs)

    def _infer(self, feeds: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        raise NotImplementedError


def argmax_labels(scores: np.ndarray) -> np.ndarray:
    """Per-pixel class of NxCxHxW scores as NxHxW (uint8 when the classes fit, else int32)."""
    labels = np.argmax(scores, axis=1)
    return labels.astype(np.uint8 if scores.shape[1] <= 256 else np.int32)
