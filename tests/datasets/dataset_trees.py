"""Helpers writing tiny dataset files (imported by the dataset tests and their conftest)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from fcn_deploy.constants import voc_palette


def write_palette_png(path: Path, label: np.ndarray) -> None:
    img = Image.fromarray(label.astype(np.uint8), mode="P")
    img.putpalette([v for rgb in voc_palette(256) for v in rgb])
    img.save(path)


def make_label(h: int, w: int, seed: int) -> np.ndarray:
    """A label with VOC values: background, two classes, a 255 band."""
    rng = np.random.default_rng(seed)
    label = np.zeros((h, w), np.uint8)
    label[2:h // 2, 3:w // 2] = rng.integers(1, 21)
    label[h // 2:, w // 2:] = 15
    label[h // 2, :] = 255
    return label
