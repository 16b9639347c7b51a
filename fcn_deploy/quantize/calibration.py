"""Calibration data for INT8 post-training quantization, pulled through a reader.

The reader follows ONNX Runtime's ``CalibrationDataReader`` interface (``get_next()`` returns one
input feed or None at the end, ``rewind()`` starts over, ``set_range()`` limits it to a slice) so
ONNX Runtime's calibrators can consume it directly. Each image is fed alone (batch 1) at its own
size, preprocessed exactly as the model's metadata says: no resizing, because the FCN sees images
at their native size and its activation ranges should be measured the same way.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fcn_deploy.datasets import ImageFolder, create_dataset
from fcn_deploy.errors import FCNError
from fcn_deploy.preprocess import preprocess

#: Where calibration images can come from (see :func:`open_calibration_source`).
SOURCE_HELP = ("a folder of images (any sizes), a dataset spec accepted by create_dataset "
               "(e.g. 'synthetic:32' or a VOC/SBD/folder spec), or 'synthetic'")


class CalibrationWarning(UserWarning):
    """Emitted for calibration images that are skipped (named in the message)."""


class CalibrationReader:
    """Feeds ``{input_name: 1x3xHxW float32}`` one image at a time; skips unreadable images.

    ``images`` is any sized, indexable sequence whose items are uint8 HxWx3 BGR arrays or objects
    with an ``.image`` attribute (a dataset's ``Sample``); ``names`` names them in messages.
    Every item is decoded once up front so that bad files are reported (and skipped) before the
    long calibration starts; an empty set, or one with no readable image, is an FCNError.
    """

    def __init__(self, images: Sequence[Any], *, mean: Sequence[float], channel_order: str = "BGR",
                 input_name: str = "image", names: Sequence[str] | None = None,
                 limit: int | None = None, progress: bool = True, description: str | None = None):
        self.mean = [float(m) for m in mean]
        self.channel_order = channel_order
        self.input_name = input_name
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

    def _load(self, index: int) -> np.ndarray:
        item = self._images[index]
        image = getattr(item, "image", item)
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 \
                or image.dtype != np.uint8:
            raise FCNError(f"{self._name(index, item)}: expected a uint8 HxWx3 BGR image, got "
                           f"{getattr(image, 'shape', type(image).__name__)}")
        return image

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
        """The next input feed (batch 1, the image at its own size), or None at the end."""
        if self._pos >= self._end:
            if self._pos >= len(self.indices):
                self._close_bar()
            return None
        index = self.indices[self._pos]
        self._pos += 1
        image = self._load(index)
        self.shapes.append(tuple(image.shape[:2]))
        x = preprocess(image, self.mean, channel_order=self.channel_order)[None]
        if self._bar is None and self.progress:
            from tqdm import tqdm

            self._bar = tqdm(total=len(self.indices), desc="calibrating", unit="img", leave=False)
        if self._bar is not None:
            self._bar.update(1)
            if self._bar.n >= self._bar.total:
                self._close_bar()
        return {self.input_name: x}

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


def open_calibration_source(source: str | os.PathLike | Sequence[Any], *, mean: Sequence[float],
                            channel_order: str = "BGR", input_name: str = "image",
                            limit: int | None = None, seed: int | None = None,
                            progress: bool = True) -> CalibrationReader:
    """Build a :class:`CalibrationReader` from a folder, a dataset spec or a dataset object.

    A folder is read as plain images (``ImageFolder``: the files directly inside it; labels are
    not needed); anything else is handed
    to ``fcn_deploy.datasets.create_dataset``. ``"synthetic"`` means the synthetic shapes set
    (``limit`` images, 32 by default). ``seed`` is passed to synthetic datasets.
    """
    if not isinstance(source, (str, os.PathLike)):
        return CalibrationReader(source, mean=mean, channel_order=channel_order,
                                 input_name=input_name, limit=limit, progress=progress,
                                 description="calibration dataset")
    text = os.fspath(source)
    path = Path(text)
    if path.is_dir():
        folder = ImageFolder(path)  # FCNError when it holds no image files
        return CalibrationReader(folder, mean=mean, channel_order=channel_order,
                                 input_name=input_name, names=[str(f) for f in folder.images],
                                 limit=limit, progress=progress,
                                 description=f"calibration folder {path}")
    if path.suffix and path.exists():
        raise FCNError(f"calibration source {path} is a file; expected {SOURCE_HELP}")
    dataset = _create_dataset(text, limit=limit, seed=seed)
    return CalibrationReader(dataset, mean=mean, channel_order=channel_order,
                             input_name=input_name, limit=limit, progress=progress,
                             description=f"calibration dataset {text!r}")


def _create_dataset(spec: str, *, limit: int | None, seed: int | None):
    kwargs: dict[str, Any] = {}
    if spec.split(":", 1)[0].lower() == "synthetic":
        if spec.lower() == "synthetic":
            spec = f"synthetic:{limit or 32}"
        if seed is not None:
            kwargs["seed"] = seed
    return create_dataset(spec, **kwargs)


def as_calibration_reader(data: Any, **kwargs: Any) -> CalibrationReader | Any:
    """Pass a ready reader through; wrap anything else with :func:`open_calibration_source`."""
    if hasattr(data, "get_next") and hasattr(data, "rewind"):
        return data
    return open_calibration_source(data, **kwargs)
