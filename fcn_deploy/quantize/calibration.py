"""Calibration data for INT8 post-training quantization, pulled through a reader.

The reader follows ONNX Runtime's ``CalibrationDataReader`` interface (``get_next()`` returns one
input feed or None at the end, ``rewind()`` starts over, ``set_range()`` limits it to a slice) so
ONNX Runtime's calibrators can consume it directly. Each image is fed alone (batch 1) at its own
size, preprocessed exactly as the model's metadata says: no resizing, because the FCN sees images
at their native size and its activation ranges should be measured the same way. A net with
several inputs (NYUDv2's colour + HHA or depth) gets every input of a sample in one feed, each
preprocessed as its :class:`~fcn_deploy.meta.InputSpec` says (``preprocess_input``): ``image`` is
the sample's colour image, any other input the sample's ``inputs[name]`` (an HHA-only net's one
input is the sample's HHA image).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fcn_deploy.datasets import ImageFolder, create_dataset
from fcn_deploy.errors import FCNError
from fcn_deploy.meta import DEFAULT_INPUT, InputSpec
from fcn_deploy.preprocess import preprocess_input

#: Where calibration images can come from (see :func:`open_calibration_source`).
SOURCE_HELP = ("a folder of images (any sizes), a dataset spec accepted by create_dataset "
               "(e.g. 'synthetic:32' or a VOC/SBD/folder spec), or 'synthetic'")


class CalibrationWarning(UserWarning):
    """Emitted for calibration images that are skipped (named in the message)."""


class CalibrationReader:
    """Feeds ``{input_name: 1xCxHxW float32}`` (every input) one sample at a time; skips
    unreadable ones.

    ``images`` is any sized, indexable sequence whose items are uint8 HxWx3 BGR arrays or objects
    with an ``.image`` attribute (a dataset's ``Sample``, whose ``.inputs`` hold the other
    modalities); ``names`` names them in messages. ``inputs``: the network's inputs (default: one
    ``image`` with ``mean``/``channel_order``/``input_name``). Every item is decoded once up front
    so that bad files are reported (and skipped) before the long calibration starts; an empty
    set, or one with no readable item, is an FCNError.
    """

    def __init__(self, images: Sequence[Any], *, mean: Sequence[float] | None = None,
                 channel_order: str = "BGR", input_name: str = DEFAULT_INPUT,
                 inputs: Sequence[InputSpec] | None = None, names: Sequence[str] | None = None,
                 limit: int | None = None, progress: bool = True, description: str | None = None):
        if inputs is None:
            if mean is None:
                raise FCNError("a calibration reader needs the input's mean (or its InputSpecs)")
            inputs = [InputSpec(name=input_name, channels=3, mean=tuple(float(m) for m in mean),
                                channel_order=channel_order)]
        self.inputs = list(inputs)
        self.input_name = self.inputs[0].name
        self.mean = list(self.inputs[0].mean)
        self.channel_order = self.inputs[0].channel_order
        self.progress = progress
        self.description = description or "calibration set"
        self._images = images
        total = len(images)
        if limit is not None:
            if limit < 1:
                raise FCNError(f"calibration image count must be >= 1, got {limit}")
            total = min(total, limit)
        if total == 0:
            raise FCNError(f"the {self.description} is empty; expected at least one image "
                           f"({SOURCE_HELP})")
        self._names = list(names) if names is not None else None
        self.indices, self.skipped = self._probe(total)
        if not self.indices:
            raise FCNError(f"none of the {total} images in the {self.description} could be read "
                           f"(first: {self.skipped[0]}); expected readable image files")
        self.shapes: list[tuple[int, int]] = []
        self._pos = 0
        self._end = len(self.indices)
        self._bar = None

    # -- probing ---------------------------------------------------------------------------
    def _name(self, index: int, item: Any = None) -> str:
        if self._names is not None:
            return str(self._names[index])
        name = getattr(item, "name", None)
        return str(name) if name else f"item {index}"

    def _load(self, index: int) -> dict[str, np.ndarray]:
        """The raw arrays of item ``index``, one per network input, checked."""
        item = self._images[index]
        raw: dict[str, np.ndarray] = {}
        for spec in self.inputs:
            if spec.name == DEFAULT_INPUT:
                data = getattr(item, "image", item)
            else:
                data = (getattr(item, "inputs", None) or {}).get(spec.name)
                if data is None:
                    raise FCNError(f"{self._name(index, item)} has no {spec.name!r} input; the "
                                   f"network takes {', '.join(s.name for s in self.inputs)}, so "
                                   "calibrate on a dataset whose samples carry them (e.g. nyud:"
                                   "ROOT or synthetic-rgbd:32)")
            if spec.encoding == "image":
                good = (isinstance(data, np.ndarray) and data.ndim == 3 and data.shape[2] == 3
                        and data.dtype == np.uint8)
                wanted = "a uint8 HxWx3 BGR image"
            else:
                good = isinstance(data, np.ndarray) and (data.ndim == 2 or (
                    data.ndim == 3 and data.shape[2] == 1))
                wanted = "an HxW depth map"
            if not good:
                what = "" if spec.name == DEFAULT_INPUT else f" for input {spec.name!r}"
                raise FCNError(f"{self._name(index, item)}: expected {wanted}{what}, got "
                               f"{getattr(data, 'shape', type(data).__name__)}")
            raw[spec.name] = data
        sizes = {name: tuple(a.shape[:2]) for name, a in raw.items()}
        if len(set(sizes.values())) > 1:
            raise FCNError(f"{self._name(index, item)}: its inputs differ in size ({sizes}); "
                           "expected one height and width for every input")
        return raw

    def _probe(self, total: int) -> tuple[list[int], list[str]]:
        from tqdm import tqdm

        good: list[int] = []
        bad: list[str] = []
        for i in tqdm(range(total), desc="checking calibration images", unit="img",
                      disable=not self.progress, leave=False):
            try:
                self._load(i)
            except FCNError as exc:
                bad.append(str(exc))
                continue
            good.append(i)
        if bad and good:
            shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
            warnings.warn(f"skipped {len(bad)} of {total} calibration images that could not be "
                          f"read: {shown}", CalibrationWarning, stacklevel=3)
        return good, bad

    # -- the reader interface ----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.indices)

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next input feed (batch 1, every input at the sample's own size), or None at the
        end."""
        if self._pos >= self._end:
            if self._pos >= len(self.indices):
                self._close_bar()
            return None
        index = self.indices[self._pos]
        self._pos += 1
        raw = self._load(index)
        self.shapes.append(tuple(raw[self.input_name].shape[:2]))
        feed = {spec.name: preprocess_input(spec, raw[spec.name])[None] for spec in self.inputs}
        if self._bar is None and self.progress:
            from tqdm import tqdm

            self._bar = tqdm(total=len(self.indices), desc="calibrating", unit="img", leave=False)
        if self._bar is not None:
            self._bar.update(1)
            if self._bar.n >= self._bar.total:
                self._close_bar()
        return feed

    def rewind(self) -> None:
        """Start again from the first image (the whole set)."""
        self._pos, self._end = 0, len(self.indices)
        self._close_bar()

    def set_range(self, start_index: int, end_index: int) -> None:
        """Restrict the next pass to images ``start_index:end_index`` (ONNX Runtime's strided mode)."""
        self._pos = max(0, int(start_index))
        self._end = min(len(self.indices), int(end_index))

    def __iter__(self):
        self.rewind()
        while (feed := self.get_next()) is not None:
            yield feed

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def open_calibration_source(source: str | os.PathLike | Sequence[Any], *,
                            mean: Sequence[float] | None = None, channel_order: str = "BGR",
                            input_name: str = DEFAULT_INPUT,
                            inputs: Sequence[InputSpec] | None = None,
                            limit: int | None = None, seed: int | None = None,
                            progress: bool = True) -> CalibrationReader:
    """Build a :class:`CalibrationReader` from a folder, a dataset spec or a dataset object.

    A folder is read as plain images (``ImageFolder``: the files directly inside it; labels are
    not needed), so it serves single-input nets only; anything else is handed
    to ``fcn_deploy.datasets.create_dataset``. ``"synthetic"`` means the synthetic shapes set
    (``limit`` images, 32 by default; ``"synthetic-rgbd"`` the same with HHA and depth inputs).
    ``seed`` is passed to synthetic datasets. ``inputs``: the network's inputs (see
    :class:`CalibrationReader`).
    """
    kwargs: dict[str, Any] = dict(mean=mean, channel_order=channel_order, input_name=input_name,
                                  inputs=inputs, limit=limit, progress=progress)
    if not isinstance(source, (str, os.PathLike)):
        return CalibrationReader(source, description="calibration dataset", **kwargs)
    text = os.fspath(source)
    path = Path(text)
    if path.is_dir():
        names = [s.name for s in inputs or []]
        if names and names != [DEFAULT_INPUT]:
            raise FCNError(f"calibration folder {path} holds plain images, but the network takes "
                           f"the inputs {', '.join(names)}; calibrate it on a dataset whose "
                           "samples carry them (e.g. nyud:ROOT or synthetic-rgbd:32)")
        folder = ImageFolder(path)  # FCNError when it holds no image files
        return CalibrationReader(folder, names=[str(f) for f in folder.images],
                                 description=f"calibration folder {path}", **kwargs)
    if path.suffix and path.exists():
        raise FCNError(f"calibration source {path} is a file; expected {SOURCE_HELP}")
    dataset = _create_dataset(text, limit=limit, seed=seed)
    return CalibrationReader(dataset, description=f"calibration dataset {text!r}", **kwargs)


def _create_dataset(spec: str, *, limit: int | None, seed: int | None):
    kwargs: dict[str, Any] = {}
    scheme = spec.split(":", 1)[0].lower()
    if scheme.partition("-")[0] == "synthetic":  # synthetic, synthetic-rgbd, synthetic-twohead
        if spec.lower() == scheme:
            spec = f"{scheme}:{limit or 32}"
        if seed is not None:
            kwargs["seed"] = seed
    return create_dataset(spec, **kwargs)


def as_calibration_reader(data: Any, **kwargs: Any) -> CalibrationReader | Any:
    """Pass a ready reader through; wrap anything else with :func:`open_calibration_source`."""
    if hasattr(data, "get_next") and hasattr(data, "rewind"):
        return data
    return open_calibration_source(data, **kwargs)
