"""PASCAL VOC segmentation in the VOCdevkit layout.

``root`` is either the ``VOCdevkit`` folder (the year folder ``VOC<year>`` is used) or the year folder
itself. Images are ``JPEGImages/<id>.jpg``; labels are the palette PNGs ``SegmentationClass/<id>.png``
whose *indices* are the classes (255 = boundary/void, ignored). The ids come from
``ImageSets/Segmentation/<image_set>.txt`` or from an explicit list file such as the reference's
``seg11valid.txt`` (736 VOC2011 ids).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from fcn_deploy.constants import voc_palette
from fcn_deploy.datasets.base import IdListDataset, SegmentationDataset
from fcn_deploy.errors import FCNError
from fcn_deploy.fileio import atomic_write_bytes, atomic_write_text
from fcn_deploy.imageio import read_label, write_label_png


def resolve_voc_root(root: str | os.PathLike, *, year: str | int = "2012") -> Path:
    """The VOC year folder (holding JPEGImages) for ``root`` = VOCdevkit/ or VOCdevkit/VOC<year>/."""
    root = Path(root)
    if not root.is_dir():
        raise FCNError(f"VOC root {root} does not exist; expected a VOCdevkit folder or its "
                       f"VOC{year} folder")
    if (root / "JPEGImages").is_dir():
        return root
    year_dir = root / f"VOC{year}"
    if year_dir.is_dir():
        return year_dir
    found = sorted(p.name for p in root.glob("VOC*") if p.is_dir())
    hint = f" (found {', '.join(found)}: pass year=...)" if found else ""
    raise FCNError(f"VOC root {root} has neither JPEGImages/ nor VOC{year}/{hint}; expected a "
                   "VOCdevkit folder or its year folder")


class VOCSegmentation(IdListDataset):
    """PASCAL VOC semantic segmentation (images + palette-index labels).

    ``image_set`` is a set name (``ImageSets/Segmentation/<name>.txt``) or a path to a list file;
    ``list_file`` forces a list file path. All listed images and labels are checked to exist up front.
    """

    kind = "VOC"

    def __init__(self, root: str | os.PathLike, *, image_set: str | None = None,
                 year: str | int | None = None, list_file: str | os.PathLike | None = None,
                 num_classes: int | None = None, class_names: Sequence[str] | None = None,
                 palette: Sequence[Sequence[int]] | None = None) -> None:
        super().__init__(num_classes=num_classes, class_names=class_names, palette=palette)
        year = str(year) if year is not None else "2012"
        self.root = resolve_voc_root(root, year=year)
        self._resolve_list(image_set or "val", list_file,
                           self.root / "ImageSets" / "Segmentation")
        self.image_dir = self.root / "JPEGImages"
        self.label_dir = self.root / "SegmentationClass"
        for folder in (self.image_dir, self.label_dir):
            if not folder.is_dir():
                raise FCNError(f"VOC folder {folder} does not exist; expected the VOCdevkit layout "
                               "(JPEGImages/, SegmentationClass/, ImageSets/Segmentation/)")
        self._read_ids()

    def read_label(self, path: Path) -> np.ndarray:
        return read_label(path)


def write_voc_layout(root: str | os.PathLike, dataset: SegmentationDataset, *,
                     image_set: str | None = None, year: str | int | None = None,
                     jpeg_quality: int | None = None, progress: bool = False) -> Path:
    """Write ``dataset`` as a VOCdevkit tree under ``root`` (the VOCdevkit folder, created).

    Writes ``VOC<year>/JPEGImages/<name>.jpg`` (quality 95, no chroma subsampling), ``SegmentationClass/<name>.png`` (palette PNG with
    the dataset's colours, 255 kept) and ``ImageSets/Segmentation/<image_set>.txt`` (replaced).
    Files already there for other sets are kept, so several sets can share one tree. Returns the
    ``VOC<year>`` folder. Every sample needs a label.
    """
    import cv2

    image_set = image_set or "train"
    year_dir = Path(root) / f"VOC{year or '2012'}"
    folders = {name: year_dir / name for name in ("JPEGImages", "SegmentationClass")}
    sets_dir = year_dir / "ImageSets" / "Segmentation"
    for folder in (*folders.values(), sets_dir):
        folder.mkdir(parents=True, exist_ok=True)
    palette = [list(c) for c in voc_palette(256)]
    palette[:len(dataset.palette)] = [list(c) for c in dataset.palette]
    quality = 95 if jpeg_quality is None else int(jpeg_quality)
    names: list[str] = []
    seen: set[str] = set()
    indices = range(len(dataset))
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc=f"writing VOC {image_set}", unit="img")
    for i in indices:
        sample = dataset[i]
        if sample.label is None:
            raise FCNError(f"sample {sample.name} has no label; a VOC tree needs a label per image")
        name = sample.name
        if name in seen or not name or "/" in name or "\\" in name or name.split() != [name]:
            raise FCNError(f"sample name {name!r} is duplicated or not usable as a VOC id "
                           "(expected unique names without spaces or slashes)")
        seen.add(sample.name)
        ok, jpg = cv2.imencode(".jpg", sample.image, [
            cv2.IMWRITE_JPEG_QUALITY, quality,  # 4:4:4: thin coloured parts keep their colour
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
        if not ok:  # pragma: no cover - cv2 encodes any uint8 BGR image
            raise RuntimeError(f"JPEG encoding failed for {sample.name}")
        atomic_write_bytes(folders["JPEGImages"] / f"{sample.name}.jpg", jpg.tobytes())
        write_label_png(folders["SegmentationClass"] / f"{sample.name}.png", sample.label, palette)
        names.append(sample.name)
    atomic_write_text(sets_dir / f"{image_set}.txt", "".join(f"{n}\n" for n in names))
    return year_dir
