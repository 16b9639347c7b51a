"""NYUDv2 in the reference's layout (Gupta et al.'s 40 classes, with HHA and depth images).

Layout (the reference's data/nyud)::

    data/images/img_<id>.png   data/hha/img_<id>.png   data/depth/img_<id>.png (16-bit)
    segmentation/img_<id>.mat   (variable ``segmentation``: 0 void, 1..40)
    train.txt  val.txt  test.txt  trainval.txt   (ids such as 5001; 795 train / 654 test)

Labels are shifted to 0..39 with void as 255 (ignore). ``modalities`` chooses which of ``hha``
and ``depth`` each Sample carries in ``inputs`` (default both): ``hha`` uint8 HxWx3 as read
(BGR order of the PNG), ``depth`` float32 HxW in the PNG's units. How a net takes them is
:func:`fcn_deploy.preprocess.preprocess_modality`'s business.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fcn_deploy.constants import NYUD40_CLASSES, NYUD_MEAN_BGR
from fcn_deploy.datasets.base import (IdListDataset, Sample, check_same_size, read_mat_labels,
                                      shift_void)
from fcn_deploy.errors import FCNError
from fcn_deploy.imageio import read_depth, read_image

NYUD_MODALITIES = ("hha", "depth")


def parse_modalities(modalities: str | tuple[str, ...] | None) -> tuple[str, ...]:
    """``"hha,depth"`` / ``("hha",)`` / None (both) -> a tuple of known modality names."""
    if modalities is None:
        return NYUD_MODALITIES
    names = modalities.split(",") if isinstance(modalities, str) else list(modalities)
    names = tuple(n.strip() for n in names if n.strip())
    unknown = [n for n in names if n not in NYUD_MODALITIES]
    if unknown:
        raise FCNError(f"modalities {', '.join(unknown)} not known; NYUDv2 has "
                       f"{', '.join(NYUD_MODALITIES)}")
    return names


class NYUDSegmentation(IdListDataset):
    """NYUDv2 images, 40-class labels, and the HHA / depth images of ``modalities``."""

    kind = "NYUDv2"
    image_suffix = ".png"
    label_suffix = ".mat"
    mean = NYUD_MEAN_BGR

    def __init__(self, root: str | os.PathLike, *, image_set: str | None = None,
                 list_file: str | os.PathLike | None = None,
                 modalities: str | tuple[str, ...] | None = None) -> None:
        super().__init__(num_classes=len(NYUD40_CLASSES), class_names=NYUD40_CLASSES)
        self.root = Path(root)
        if not ((self.root / "data" / "images").is_dir()
                and (self.root / "segmentation").is_dir()):
            raise FCNError(f"NYUDv2 root {self.root} has no data/images/ and segmentation/ "
                           "folders; expected the reference's data/nyud layout")
        self.extra_inputs = parse_modalities(modalities)
        self._resolve_list(image_set or "train", list_file, self.root)
        self.image_dir = self.root / "data" / "images"
        self.label_dir = self.root / "segmentation"
        self._read_ids()
        missing = [self.modality_path(m, i) for i in self.ids for m in self.extra_inputs
                   if not self.modality_path(m, i).is_file()]
        if missing:
            raise FCNError(f"{len(missing)} {'/'.join(self.extra_inputs)} images listed by "
                           f"{self.list_path} are missing: {', '.join(map(str, missing[:5]))}")

    def image_path(self, image_id: str) -> Path:
        return self.image_dir / f"img_{image_id}{self.image_suffix}"

    def label_path(self, image_id: str) -> Path:
        return self.label_dir / f"img_{image_id}{self.label_suffix}"

    def modality_path(self, modality: str, image_id: str) -> Path:
        return self.root / "data" / modality / f"img_{image_id}.png"

    def read_label(self, path: Path) -> np.ndarray:
        return shift_void(read_mat_labels(path, "segmentation", what="NYUDv2 label"), void=(0,))

    def _load(self, index: int) -> Sample:
        sample = super()._load(index)
        for modality in self.extra_inputs:
            path = self.modality_path(modality, sample.name)
            data = read_image(path) if modality == "hha" else read_depth(path)
            check_same_size(sample.image, data, image_source=str(self.image_path(sample.name)),
                            label_source=str(path))
            sample.inputs[modality] = data
        return sample
