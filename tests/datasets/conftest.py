"""Tiny on-disk dataset trees written in tmp_path."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from dataset_trees import make_label, write_palette_png


@pytest.fixture
def voc_tree(tmp_path):
    """VOCdevkit/VOC2012 with 3 ids in train.txt and 2 in val.txt; returns (devkit, labels)."""
    year = tmp_path / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (year / sub).mkdir(parents=True)
    labels = {}
    for k, name in enumerate(["2007_000032", "2007_000039", "2008_000123"]):
        h, w = 20 + k, 30 - k
        image = np.random.default_rng(k).integers(0, 256, (h, w, 3), dtype=np.uint8)
        cv2.imwrite(str(year / "JPEGImages" / f"{name}.jpg"), image)
        labels[name] = make_label(h, w, k)
        write_palette_png(year / "SegmentationClass" / f"{name}.png", labels[name])
    sets = year / "ImageSets" / "Segmentation"
    (sets / "train.txt").write_text("2007_000032\n2007_000039\n\n2008_000123\n")
    (sets / "val.txt").write_text("2008_000123\n2007_000032\n")
    return tmp_path / "VOCdevkit", labels
