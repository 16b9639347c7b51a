"""SBD, the Semantic Boundaries Dataset (Hariharan et al.), the reference's training set.

Layout (``benchmark_RELEASE/dataset``): ``img/<id>.jpg``, ``cls/<id>.mat`` holding a MATLAB struct
``GTcls`` whose field ``Segmentation`` is the HxW class map (VOC's 21 classes), and the id lists
``train.txt`` (8,498 ids) and ``val.txt``. ``root`` may be ``benchmark_RELEASE`` or its ``dataset``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from fcn_deploy.datasets.base import IdListDataset, integer_map, load_mat
from fcn_deploy.errors import FCNError


def resolve_sbd_root(root: str | os.PathLike) -> Path:
    """The folder holding img/ and cls/, for ``root`` = benchmark_RELEASE/ or its dataset/."""
    root = Path(root)
    if not root.is_dir():
        raise FCNError(f"SBD root {root} does not exist; expected benchmark_RELEASE/ or its "
                       "dataset/ folder")
    for candidate in (root, root / "dataset"):
        if (candidate / "img").is_dir() and (candidate / "cls").is_dir():
            return candidate
    raise FCNError(f"SBD root {root} has no img/ and cls/ folders (nor dataset/img, dataset/cls); "
                   "expected the benchmark_RELEASE/dataset layout")


def read_sbd_label(path: Path) -> np.ndarray:
    """Read ``GTcls.Segmentation`` from an SBD .mat file as an integer HxW array."""
    mat = load_mat(path, what="SBD label")
    if "GTcls" not in mat:
        keys = ", ".join(k for k in mat if not k.startswith("__")) or "none"
        raise FCNError(f"SBD label {path} has no GTcls struct (variables: {keys}); expected "
                       "GTcls.Segmentation")
    gt = mat["GTcls"]
    seg = getattr(gt, "Segmentation", None)
    if seg is None and isinstance(gt, np.ndarray) and gt.dtype.names \
            and "Segmentation" in gt.dtype.names:
        seg = gt["Segmentation"].item() if gt.size == 1 else None
    if seg is None:
        raise FCNError(f"SBD label {path}: GTcls has no Segmentation field; expected "
                       "GTcls.Segmentation (HxW class map)")
    return integer_map(seg, source=f"SBD label {path}: GTcls.Segmentation")


class SBDSegmentation(IdListDataset):
    """SBD images with their ``cls/*.mat`` class maps; ``image_set`` is train, val or a list file."""

    kind = "SBD"
    label_suffix = ".mat"

    def __init__(self, root: str | os.PathLike, *, image_set: str | None = None,
                 list_file: str | os.PathLike | None = None, num_classes: int | None = None,
                 class_names: Sequence[str] | None = None,
                 palette: Sequence[Sequence[int]] | None = None) -> None:
        super().__init__(num_classes=num_classes, class_names=class_names, palette=palette)
        self.root = resolve_sbd_root(root)
        self._resolve_list(image_set or "train", list_file, self.root)
        self.image_dir = self.root / "img"
        self.label_dir = self.root / "cls"
        self._read_ids()

    def read_label(self, path: Path) -> np.ndarray:
        return read_sbd_label(path)
