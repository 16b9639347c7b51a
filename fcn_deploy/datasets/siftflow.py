"""SIFT Flow (Liu et al.) as the reference's siftflow layers read it: 33 semantic + 3 geometric.

Layout (the ``SiftFlowDataset`` folder of the reference's data/sift-flow)::

    Images/spatial_envelope_256x256_static_8outdoorcategories/<id>.jpg
    SemanticLabels/spatial_envelope_256x256_static_8outdoorcategories/<id>.mat   (variable S)
    GeoLabels/spatial_envelope_256x256_static_8outdoorcategories/<id>.mat        (variable S)
    trainval.txt  test.txt  (the reference's lists: 2,488 and 200 ids)

Semantic labels are 0 (void) and 1..33, geometric labels -1 (void) and 1..3 (0 too is void, as
the reference maps -1 to 0 first); both are shifted to start at 0 with void as 255 (ignore).
Each Sample's ``label`` is the semantic map (head ``sem``) and ``labels["geo"]`` the geometric.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fcn_deploy.constants import SIFTFLOW_CLASSES, SIFTFLOW_GEO_CLASSES, SIFTFLOW_MEAN_BGR
from fcn_deploy.datasets.base import (IdListDataset, Sample, check_same_size, read_mat_labels,
                                      shift_void, validate_label)
from fcn_deploy.errors import FCNError

SIFTFLOW_SUBDIR = "spatial_envelope_256x256_static_8outdoorcategories"


class SiftFlowSegmentation(IdListDataset):
    """SIFT Flow images with semantic (head ``sem``) and geometric (head ``geo``) labels."""

    kind = "SIFT Flow"
    label_suffix = ".mat"
    primary_head = "sem"
    extra_heads = {"geo": SIFTFLOW_GEO_CLASSES}
    mean = SIFTFLOW_MEAN_BGR

    def __init__(self, root: str | os.PathLike, *, image_set: str | None = None,
                 list_file: str | os.PathLike | None = None) -> None:
        super().__init__(num_classes=len(SIFTFLOW_CLASSES), class_names=SIFTFLOW_CLASSES)
        self.root = Path(root)
        if not (self.root / "Images").is_dir() or not (self.root / "SemanticLabels").is_dir():
            raise FCNError(f"SIFT Flow root {self.root} has no Images/ and SemanticLabels/ "
                           "folders; expected the SiftFlowDataset layout")
        self._resolve_list(image_set or "trainval", list_file, self.root)
        self.image_dir = self.root / "Images" / SIFTFLOW_SUBDIR
        self.label_dir = self.root / "SemanticLabels" / SIFTFLOW_SUBDIR
        self.geo_dir = self.root / "GeoLabels" / SIFTFLOW_SUBDIR
        self._read_ids()
        missing = [self.geo_path(i) for i in self.ids if not self.geo_path(i).is_file()]
        if missing:
            raise FCNError(f"{len(missing)} geometric labels listed by {self.list_path} are "
                           f"missing: {', '.join(map(str, missing[:5]))}")

    def geo_path(self, image_id: str) -> Path:
        return self.geo_dir / f"{image_id}.mat"

    def read_label(self, path: Path) -> np.ndarray:
        return shift_void(read_mat_labels(path, "S", what="SIFT Flow semantic label"), void=(0,))

    def _load(self, index: int) -> Sample:
        sample = super()._load(index)
        path = self.geo_path(sample.name)
        geo = shift_void(read_mat_labels(path, "S", what="SIFT Flow geometric label"),
                         void=(-1, 0))
        geo = validate_label(geo, num_classes=len(SIFTFLOW_GEO_CLASSES), source=f"label {path}")
        check_same_size(sample.image, geo, image_source=str(self.image_path(sample.name)),
                        label_source=str(path))
        sample.labels["geo"] = geo
        return sample
