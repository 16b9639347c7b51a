"""Preprocessing exactly as the reference nets expect, driven by the artifact's metadata."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from fcn_deploy.errors import FCNError


def preprocess(image_bgr: np.ndarray, mean: Sequence[float], *, channel_order: str = "BGR") -> np.ndarray:
    """uint8 HxWx3 BGR image -> float32 3xHxW input: channel order as the model's, minus mean.

    No scaling to [0, 1] and no resizing: the net takes the image at its own size.
    """
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise FCNError(f"expected an HxWx3 image, got shape {image_bgr.shape}")
    img = image_bgr if channel_order == "BGR" else image_bgr[:, :, ::-1]
    x = img.astype(np.float32) - np.asarray(mean, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess_batch(images: Sequence[np.ndarray], mean: Sequence[float], *,
                     channel_order: str = "BGR") -> np.ndarray:
    """Stack equally sized images into one float32 NCHW batch; mixed sizes are an error."""
    if not images:
        raise FCNError("empty batch: expected at least one image")
    shapes = {im.shape[:2] for im in images}
    if len(shapes) != 1:
        raise FCNError(f"a batch needs images of one size; got sizes {sorted(shapes)} "
                       "(use predict() per image for mixed sizes)")
    return np.stack([preprocess(im, mean, channel_order=channel_order) for im in images])
