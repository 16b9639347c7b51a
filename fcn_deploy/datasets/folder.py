"""Plain folders: images (any common format) plus, optionally, a folder of index masks.

Masks are matched to images by file stem: ``images/cat_01.jpg`` <-> ``masks/cat_01<mask_suffix>``
(default suffix ``.png``; a suffix like ``_mask.png`` works too). Masks hold class indices (palette
or grayscale PNG), 255 = ignore. Without a mask folder, or with ``labels_required=False``, samples
carry ``label=None`` — what INT8 calibration and plain segmentation need.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from fcn_deploy.datasets.base import SegmentationDataset, Sample, format_missing
from fcn_deploy.errors import FCNError
from fcn_deploy.imageio import IMAGE_EXTENSIONS, read_label


def list_images(images_dir: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``images_dir`` (by extension), sorted by name."""
    folder = Path(images_dir)
    if not folder.is_dir():
        raise FCNError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FCNError(f"image folder {folder} holds no images; expected files ending in "
                       f"{', '.join(IMAGE_EXTENSIONS)}")
    return files


class FolderDataset(SegmentationDataset):
    """Images from ``images_dir`` with masks from ``masks_dir`` matched by stem (or no labels).

    With ``labels_required=True`` (default when a mask folder is given) an image without a mask is
    an error listing the first few such images; with False it yields ``label=None`` for them.
    """

    def __init__(self, images_dir: str | os.PathLike, masks_dir: str | os.PathLike | None = None,
                 *, mask_suffix: str | None = None, labels_required: bool | None = None,
                 num_classes: int | None = None, class_names: Sequence[str] | None = None,
                 palette: Sequence[Sequence[int]] | None = None) -> None:
        super().__init__(num_classes=num_classes, class_names=class_names, palette=palette)
        self.images_dir = Path(images_dir)
        self.masks_dir = Path(masks_dir) if masks_dir is not None else None
        self.mask_suffix = mask_suffix or ".png"
        self.images = list_images(self.images_dir)
        self.masks: list[Path | None] = [None] * len(self.images)
        if self.masks_dir is None:
            if labels_required:
                raise FCNError(f"labels_required=True but no mask folder was given for "
                               f"{self.images_dir}")
            return
        if not self.masks_dir.is_dir():
            raise FCNError(f"mask folder {self.masks_dir} does not exist")
        labels_required = True if labels_required is None else labels_required
        unmatched = []
        for i, image in enumerate(self.images):
            mask = self.masks_dir / f"{image.stem}{self.mask_suffix}"
            if mask.is_file():
                self.masks[i] = mask
            else:
                unmatched.append(image)
        if unmatched and labels_required:
            raise FCNError(f"{len(unmatched)} of {len(self.images)} images in {self.images_dir} "
                           f"have no mask <stem>{self.mask_suffix} in {self.masks_dir}: "
                           f"{format_missing([p.name for p in unmatched])} (pass "
                           "labels_required=False to use them without labels)")

    @property
    def has_labels(self) -> bool:
        """Whether any sample carries a label."""
        return any(m is not None for m in self.masks)

    def __len__(self) -> int:
        return len(self.images)

    def _load(self, index: int) -> Sample:
        image_path, mask_path = self.images[index], self.masks[index]
        label = read_label(mask_path) if mask_path is not None else None
        return self.load_pair(image_path, label, mask_path, image_path.stem)


class ImageFolder(FolderDataset):
    """Unlabelled images (``label=None``), e.g. for INT8 calibration or batch segmentation."""

    def __init__(self, images_dir: str | os.PathLike, *, num_classes: int | None = None,
                 class_names: Sequence[str] | None = None,
                 palette: Sequence[Sequence[int]] | None = None) -> None:
        super().__init__(images_dir, None, labels_required=False, num_classes=num_classes,
                         class_names=class_names, palette=palette)
