"""Preprocessing exactly as the reference nets expect, driven by the artifact's metadata."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from fcn_deploy.constants import NYUD_HHA_MEAN, NYUD_LOG_DEPTH_MEAN
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


def preprocess_modality(name: str, data: np.ndarray) -> np.ndarray:
    """A second input of a multi-input net (NYUDv2's) as the reference's data layer feeds it.

    ``hha``: uint8 HxWx3 as read (BGR order of the PNG) -> the PNG's own channel order
    (disparity, height, angle) minus ``NYUD_HHA_MEAN``, 3xHxW. ``depth``: HxW in the PNG's
    units (millimetres) -> log(depth) minus ``NYUD_LOG_DEPTH_MEAN``, 1xHxW; missing depth (0)
    counts as 1 so the log stays finite (the reference assumes filled-in depth).
    """
    if name == "hha":
        return preprocess(data, NYUD_HHA_MEAN, channel_order="RGB")
    if name == "depth":
        if data.ndim != 2:
            raise FCNError(f"expected an HxW depth map, got shape {data.shape}")
        logd = np.log(np.maximum(data.astype(np.float32), 1.0)) - np.float32(NYUD_LOG_DEPTH_MEAN)
        return np.ascontiguousarray(logd[None])
    raise FCNError(f"no preprocessing for an input named {name!r}; known: hha, depth")
