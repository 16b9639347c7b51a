"""Preprocessing exactly as the reference nets expect, driven by the artifact's metadata."""
from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

from fcn_deploy.errors import FCNError
from fcn_deploy.meta import InputSpec, ModelMeta


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


def preprocess_input(spec: InputSpec, data: np.ndarray) -> np.ndarray:
    """One network input as the net expects it, from its metadata's :class:`InputSpec`.

    ``image`` encoding: uint8 HxWx3 in BGR as read -> ``spec.channel_order`` minus ``spec.mean``,
    3xHxW float32 (a colour image; NYUDv2's HHA PNG, whose mean is in the PNG's own channel
    order, RGB). ``log_depth``: an HxW (or HxWx1) depth map in the PNG's units (millimetres) ->
    ``log(max(depth, 1))`` minus the mean, 1xHxW; missing depth (0) counts as 1 so the log stays
    finite (the reference assumes filled-in depth).
    """
    data = np.asarray(data)
    if spec.encoding == "image":
        if data.ndim != 3 or data.shape[2] != 3:
            raise FCNError(f"input {spec.name!r}: expected an HxWx3 image, got shape {data.shape}")
        return preprocess(data, spec.mean, channel_order=spec.channel_order)
    if spec.encoding == "log_depth":
        if data.ndim == 3 and data.shape[2] == 1:
            data = data[:, :, 0]
        if data.ndim != 2:
            raise FCNError(f"input {spec.name!r}: expected an HxW depth map, got shape "
                           f"{data.shape}")
        if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
            raise FCNError(f"input {spec.name!r}: expected a numeric depth map, got {data.dtype}")
        logd = np.log(np.maximum(data.astype(np.float32), 1.0)) - np.float32(spec.mean[0])
        return np.ascontiguousarray(logd[None])
    raise FCNError(f"input {spec.name!r}: no preprocessing for encoding {spec.encoding!r}")


@functools.lru_cache(maxsize=1)
def _modality_specs() -> dict[str, InputSpec]:
    """{modality: InputSpec} of the known modalities, as ModelMeta completes them (built once:
    the training loader preprocesses every sample's modalities through this)."""
    meta = ModelMeta.default("nyud", 1, inputs=[{"name": "hha", "channels": 3},
                                                {"name": "depth", "channels": 1}])
    return {s.name: s for s in meta.input_specs()}


def preprocess_modality(name: str, data: np.ndarray) -> np.ndarray:
    """A second input of a multi-input net (NYUDv2's ``hha`` or ``depth``) as the reference's
    data layer feeds it: :func:`preprocess_input` with the modality's reference mean."""
    specs = _modality_specs()
    if name not in specs:
        raise FCNError(f"no preprocessing for an input named {name!r}; known: hha, depth")
    return preprocess_input(specs[name], data)
