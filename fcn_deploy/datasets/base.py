"""What every segmentation dataset looks like to training, evaluation and INT8 calibration.

A dataset is an indexable sequence of :class:`Sample` (image uint8 HxWx3 BGR, label uint8 HxW or
None, name). Labels are checked as they are loaded, so a bad file fails with its path instead of
silently corrupting a metric or a loss. numpy only: no torch here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from fcn_deploy.constants import IGNORE_LABEL, VOC_CLASSES, voc_palette
from fcn_deploy.errors import FCNError
from fcn_deploy.imageio import read_image


@dataclass
class Sample:
    """One item: ``image`` uint8 HxWx3 BGR, ``label`` uint8 HxW class indices (or None), ``name``.

    Multi-input sets add the other modalities in ``inputs`` (``hha``: uint8 HxWx3 as read, BGR
    order of the PNG; ``depth``: float32 HxW in the PNG's units), multi-head sets the labels of
    the heads after the first in ``labels`` (``geo``: uint8 HxW), all of the image's size.
    """

    image: np.ndarray
    label: np.ndarray | None
    name: str
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)


def default_class_names(num_classes: int) -> list[str]:
    """VOC's names for 21 classes, ``class_<i>`` otherwise (label 0 is always background)."""
    if num_classes == len(VOC_CLASSES):
        return list(VOC_CLASSES)
    return ["background"] + [f"class_{i}" for i in range(1, num_classes)]


def default_palette(num_classes: int) -> list[list[int]]:
    """The VOC colour map's first ``num_classes`` colours as [r, g, b] lists."""
    return [list(rgb) for rgb in voc_palette(num_classes)]


def _describe_values(values: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(str(int(v)) for v in values[:limit])
    return shown + (f", ... ({len(values)} values)" if len(values) > limit else "")


def validate_label(label: np.ndarray, *, num_classes: int, ignore_label: int = IGNORE_LABEL,
                   source: str = "label") -> np.ndarray:
    """Return ``label`` as uint8 HxW after checking it holds only 0..C-1 and the ignore value.

    ``source`` names the file in the error message.
    """
    label = np.asarray(label)
    if label.ndim != 2:
        raise FCNError(f"{source}: label has shape {label.shape}; expected a 2-D HxW map of class "
                       "indices (colour label images must be converted to indices first)")
    if label.dtype.kind not in "uib":
        raise FCNError(f"{source}: label has dtype {label.dtype}; expected integer class indices")
    values = np.unique(label)
    bad = values[((values < 0) | (values >= num_classes)) & (values != ignore_label)]
    if bad.size:
        raise FCNError(f"{source}: label values {_describe_values(bad)} are out of range; expected "
                       f"class indices 0..{num_classes - 1} or {ignore_label} (ignore)")
    return np.ascontiguousarray(label.astype(np.uint8, copy=False))


def check_same_size(image: np.ndarray, label: np.ndarray, *, image_source: str,
                    label_source: str) -> None:
    """Refuse an image and a label of different height/width, naming both files and sizes."""
    if image.shape[:2] != label.shape[:2]:
        ih, iw = image.shape[:2]
        lh, lw = label.shape[:2]
        raise FCNError(f"image {image_source} is {iw}x{ih} (WxH) but its label {label_source} is "
                       f"{lw}x{lh}; expected the same size")


def load_mat(path: Path, *, what: str) -> dict:
    """A MATLAB .mat file's variables (structs as objects); FCNError naming ``what`` and the file
    when it is missing or unreadable."""
    import scipy.io

    if not path.is_file():
        raise FCNError(f"{what} {path} does not exist")
    try:
        return scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except Exception as exc:  # scipy raises many types for a damaged file; all mean "unreadable"
        raise FCNError(f"{what} {path} could not be read as a MATLAB file: {exc}") from None


def integer_map(value, *, source: str) -> np.ndarray:
    """``value`` as an int64 HxW class map; FCNError naming ``source`` when it is not one."""
    seg = np.asarray(value)
    if seg.ndim != 2 or seg.dtype.kind not in "uif":
        raise FCNError(f"{source} has shape {seg.shape} and dtype {seg.dtype}; expected a 2-D "
                       "numeric class map")
    if seg.dtype.kind == "f":
        if not np.all(np.isfinite(seg)) or np.any(seg != np.round(seg)):
            raise FCNError(f"{source} holds non-integer values; expected class indices")
    return seg.astype(np.int64)


def read_mat_labels(path: Path, key: str, *, what: str) -> np.ndarray:
    """The int64 HxW class map stored as variable ``key`` of a .mat file."""
    mat = load_mat(path, what=what)
    if key not in mat:
        keys = ", ".join(k for k in mat if not k.startswith("__")) or "none"
        raise FCNError(f"{what} {path} has no variable {key!r} (variables: {keys})")
    return integer_map(mat[key], source=f"{what} {path}: {key}")


def shift_void(seg: np.ndarray, *, void: Sequence[int], ignore_label: int = IGNORE_LABEL
               ) -> np.ndarray:
    """Labels 1..C -> 0..C-1 and the ``void`` values -> ``ignore_label`` (the reference's
    "rotate labels so classes start at 0, void is 255" for SIFT Flow and NYUDv2)."""
    out = seg - 1
    out[np.isin(seg, list(void))] = ignore_label
    return out


def format_missing(paths: Sequence[os.PathLike | str], *, limit: int = 5) -> str:
    """Up to ``limit`` paths joined for an error message, with a count of the rest."""
    shown = ", ".join(str(p) for p in paths[:limit])
    if len(paths) > limit:
        shown += f" and {len(paths) - limit} more"
    return shown


def read_id_list(path: Path, *, what: str = "image list") -> list[str]:
    """Read a VOC/SBD id list: one id per line (first token), blank lines skipped."""
    if not path.is_file():
        raise FCNError(f"{what} {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FCNError(f"{what} {path} could not be read: {exc}") from None
    ids = [line.split()[0] for line in text.splitlines() if line.strip()]
    if not ids:
        raise FCNError(f"{what} {path} is empty; expected one image id per line")
    return ids


class SegmentationDataset:
    """Base class: an indexable, iterable sequence of :class:`Sample`.

    Subclasses set ``num_classes`` (and optionally ``class_names``/``palette``), implement
    ``__len__`` and ``_load(index)``; ``__getitem__`` handles negative indices and raises
    IndexError past the end, so ``for sample in dataset`` works.
    """

    ignore_label: int = IGNORE_LABEL
    #: The name of the head ``label`` belongs to, and {head: class names} of the heads whose
    #: labels are in ``Sample.labels`` (SIFT Flow: ``sem`` and {"geo": (3 names)}).
    primary_head: str = "score"
    extra_heads: dict[str, tuple[str, ...]] = {}
    #: The modalities each Sample carries in ``inputs`` besides the image (NYUD: hha, depth).
    extra_inputs: tuple[str, ...] = ()
    #: The BGR image mean the reference trains on this set with (SIFT Flow, NYUDv2); None: the
    #: VGG/ImageNet mean of the VOC nets.
    mean: tuple[float, float, float] | None = None

    @property
    def heads(self) -> dict[str, int]:
        """{head: classes}, the primary head first (``{"score": C}`` for a single-head set)."""
        return {self.primary_head: self.num_classes,
                **{head: len(names) for head, names in self.extra_heads.items()}}

    def __init__(self, *, num_classes: int | None = None,
                 class_names: Sequence[str] | None = None,
                 palette: Sequence[Sequence[int]] | None = None,
                 ignore_label: int | None = None) -> None:
        if num_classes is None:  # as many as the names given, else VOC's 21
            num_classes = len(class_names) if class_names is not None else len(VOC_CLASSES)
        if num_classes < 1 or num_classes > 255:
            raise FCNError(f"num_classes={num_classes} is out of range; expected 1..255")
        self.num_classes = int(num_classes)
        self.ignore_label = IGNORE_LABEL if ignore_label is None else int(ignore_label)
        names = list(class_names) if class_names is not None else default_class_names(num_classes)
        if len(names) != num_classes:
            raise FCNError(f"{len(names)} class names given for num_classes={num_classes}; "
                           "expected one name per class")
        self.class_names: list[str] = names
        colours = ([list(map(int, c)) for c in palette] if palette is not None
                   else default_palette(num_classes))
        if len(colours) < num_classes or any(len(c) != 3 for c in colours):
            raise FCNError(f"palette has {len(colours)} colours for num_classes={num_classes}; "
                           "expected at least one [r, g, b] per class")
        self.palette: list[list[int]] = colours[:num_classes]

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _load(self, index: int) -> Sample:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: int) -> Sample:
        n = len(self)
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"dataset indices must be integers, not {type(index).__name__}")
        i = int(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} items")
        return self._load(i)

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self._load(i)

    def check_label(self, label: np.ndarray, *, source: str) -> np.ndarray:
        """:func:`validate_label` with this dataset's class count and ignore value."""
        return validate_label(label, num_classes=self.num_classes, ignore_label=self.ignore_label,
                              source=source)

    def load_pair(self, image_path: Path, label: np.ndarray | None, label_path: Path | None,
                  name: str) -> Sample:
        """Read ``image_path``, validate ``label`` against it and return the Sample."""
        image = read_image(image_path)
        if label is not None:
            label = self.check_label(label, source=f"label {label_path}")
            check_same_size(image, label, image_source=str(image_path),
                            label_source=str(label_path))
        return Sample(image=image, label=label, name=name)

    def verify(self) -> None:
        """Load every item once; raise one FCNError listing every unreadable or invalid file."""
        problems = []
        for i in range(len(self)):
            try:
                self._load(i)
            except FCNError as exc:
                problems.append(str(exc))
        if problems:
            shown = "; ".join(problems[:5])
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            raise FCNError(f"{len(problems)} of {len(self)} items of {self!r} failed to load: "
                           f"{shown}{more}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} items, {self.num_classes} classes)"


class IdListDataset(SegmentationDataset):
    """Images and labels named by the ids of a list file (VOC, SBD).

    A subclass calls :meth:`_resolve_list`, sets ``image_dir`` and ``label_dir``, calls
    :meth:`_read_ids`, and implements :meth:`read_label`. Item ``i`` is
    ``image_dir/<id><image_suffix>`` with the label ``label_dir/<id><label_suffix>``.
    """

    kind = "dataset"  # names the dataset in messages ("VOC", "SBD")
    image_suffix = ".jpg"
    label_suffix = ".png"
    image_dir: Path
    label_dir: Path

    def _resolve_list(self, image_set: str, list_file: str | os.PathLike | None,
                      sets_dir: Path) -> None:
        """Set ``list_path`` and ``image_set``: ``list_file``, or ``image_set`` when it names a
        list file, else the set ``sets_dir/<image_set>.txt`` (which must exist)."""
        if list_file is None:
            candidate = Path(image_set)
            if candidate.suffix == ".txt" or len(candidate.parts) > 1:
                list_file = candidate  # the image_set names a list file, not a set
        if list_file is not None:
            self.list_path = Path(list_file)
            self.image_set = self.list_path.stem
            return
        self.list_path = sets_dir / f"{image_set}.txt"
        self.image_set = image_set
        if not self.list_path.is_file():
            found = sorted(p.stem for p in sets_dir.glob("*.txt")) if sets_dir.is_dir() else []
            hint = f"; available sets: {', '.join(found)}" if found else ""
            raise FCNError(f"{self.kind} image set list {self.list_path} does not exist{hint}")

    def _read_ids(self) -> None:
        """Read the ids from ``list_path``; every listed image and label must exist up front."""
        self.ids = read_id_list(self.list_path, what=f"{self.kind} image list")
        missing = [p for i in self.ids for p in (self.image_path(i), self.label_path(i))
                   if not p.is_file()]
        if missing:
            raise FCNError(f"{len(missing)} files listed by {self.list_path} are missing: "
                           f"{format_missing(missing)}")

    def image_path(self, image_id: str) -> Path:
        return self.image_dir / f"{image_id}{self.image_suffix}"

    def label_path(self, image_id: str) -> Path:
        return self.label_dir / f"{image_id}{self.label_suffix}"

    def read_label(self, path: Path) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.ids)

    def _load(self, index: int) -> Sample:
        image_id = self.ids[index]
        label_path = self.label_path(image_id)
        return self.load_pair(self.image_path(image_id), self.read_label(label_path), label_path,
                              image_id)
