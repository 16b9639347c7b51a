"""Turning label maps into images people look at: colour masks, overlays and a class legend.

Palettes are RGB (as in :class:`~fcn_deploy.meta.ModelMeta` and VOC's palette PNGs); images are BGR
uint8 as OpenCV holds them, so results go straight to ``cv2.imwrite``/``write_image``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from fcn_deploy.errors import FCNError

#: Colour of the ignore label (255) in VOC's palette, RGB.
IGNORE_COLOR = (224, 224, 192)


def label_lut(palette: Sequence[Sequence[int]], *, ignore_label: int | None = 255) -> np.ndarray:
    """A 256x3 uint8 RGB lookup table: palette colours, black beyond them, VOC's ignore colour."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    colors = np.asarray(palette, dtype=np.int64).reshape(-1, 3)[:256]
    if colors.size and (colors.min() < 0 or colors.max() > 255):
        raise FCNError("palette colours must be RGB triples in 0..255")
    lut[:len(colors)] = colors
    if ignore_label is not None and 0 <= ignore_label < 256 and ignore_label >= len(colors):
        lut[ignore_label] = IGNORE_COLOR
    return lut


def _check_label(label: np.ndarray) -> np.ndarray:
    label = np.asarray(label)
    if label.ndim != 2 or label.size == 0:
        raise FCNError(f"expected a HxW label map, got shape {label.shape}")
    if not np.issubdtype(label.dtype, np.integer):
        raise FCNError(f"expected integer class indices, got dtype {label.dtype}")
    if label.min() < 0 or label.max() > 255:
        raise FCNError("label values must be class indices in 0..255")
    return label.astype(np.uint8, copy=False)


def colorize(label: np.ndarray, palette: Sequence[Sequence[int]], *,
             ignore_label: int | None = 255) -> np.ndarray:
    """HxW class indices -> HxWx3 BGR colour image with the palette's colours."""
    label = _check_label(label)
    return np.ascontiguousarray(label_lut(palette, ignore_label=ignore_label)[label][:, :, ::-1])


def overlay(image_bgr: np.ndarray, label: np.ndarray, palette: Sequence[Sequence[int]], *,
            opacity: float = 0.5, skip: Sequence[int] = (0,),
            ignore_label: int | None = 255) -> np.ndarray:
    """Blend class colours onto the image: ``(1-opacity)*image + opacity*colour``.

    Pixels whose class is in ``skip`` (background by default) or equals ``ignore_label`` keep the
    image's own colour, so the scene stays readable.
    """
    if not 0.0 <= float(opacity) <= 1.0:
        raise FCNError(f"overlay opacity must be between 0 and 1, got {opacity}")
    label = _check_label(label)
    if image_bgr.shape[:2] != label.shape or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise FCNError(f"image {image_bgr.shape} and label map {label.shape} must have the same HxW "
                       "(image HxWx3)")
    colors = colorize(label, palette, ignore_label=ignore_label).astype(np.float32)
    blended = (1.0 - opacity) * image_bgr.astype(np.float32) + opacity * colors
    out = np.rint(blended).clip(0, 255).astype(np.uint8)
    keep = np.isin(label, [*skip, *([ignore_label] if ignore_label is not None else [])])
    out[keep] = image_bgr[keep]
    return out


def present_classes(label: np.ndarray, num_classes: int, *, ignore_label: int | None = 255) -> list[int]:
    """Sorted class indices that occur in ``label`` (the ignore label and out-of-range left out)."""
    values = np.unique(_check_label(label))
    return [int(v) for v in values if v < num_classes and v != ignore_label]


def draw_legend(class_ids: Sequence[int], class_names: Sequence[str],
                palette: Sequence[Sequence[int]], *, font_scale: float = 0.5,
                min_height: int = 0) -> np.ndarray:
    """A BGR image listing ``class_ids`` as colour swatch + name, one row per class, on white."""
    import cv2

    font, thickness = cv2.FONT_HERSHEY_SIMPLEX, 1
    lut = label_lut(palette, ignore_label=None)
    labels = [class_names[i] if i < len(class_names) else f"class_{i}" for i in class_ids]
    sizes = [cv2.getTextSize(t, font, font_scale, thickness)[0] for t in labels] or [(0, 0)]
    text_h = max(max(h for _, h in sizes), int(round(14 * font_scale / 0.5)))
    row = text_h + 10
    swatch = text_h + 4
    pad = 6
    width = pad * 3 + swatch + max(w for w, _ in sizes) + pad
    height = max(min_height, pad * 2 + row * max(len(labels), 1))
    panel = np.full((height, max(width, 60), 3), 255, dtype=np.uint8)
    if not labels:
        cv2.putText(panel, "(none)", (pad, pad + text_h), font, font_scale, (0, 0, 0), thickness,
                    cv2.LINE_AA)
    for k, (cid, text) in enumerate(zip(class_ids, labels)):
        top = pad + k * row
        rgb = lut[cid]
        color = (int(rgb[2]), int(rgb[1]), int(rgb[0]))
        cv2.rectangle(panel, (pad, top + 3), (pad + swatch, top + 3 + swatch), color, -1)
        cv2.rectangle(panel, (pad, top + 3), (pad + swatch, top + 3 + swatch), (0, 0, 0), 1)
        cv2.putText(panel, text, (pad * 2 + swatch + pad, top + 3 + swatch - 3), font, font_scale,
                    (0, 0, 0), thickness, cv2.LINE_AA)
    return panel


def add_legend(image_bgr: np.ndarray, label: np.ndarray, class_names: Sequence[str],
               palette: Sequence[Sequence[int]], *, ignore_label: int | None = 255,
               font_scale: float = 0.5) -> np.ndarray:
    """The image with a legend of the classes present in ``label`` to its right (same height;
    the image is padded with white below when the legend is taller)."""
    ids = present_classes(label, len(class_names), ignore_label=ignore_label)
    panel = draw_legend(ids, class_names, palette, font_scale=font_scale,
                        min_height=image_bgr.shape[0])
    if panel.shape[0] > image_bgr.shape[0]:
        pad = np.full((panel.shape[0] - image_bgr.shape[0], image_bgr.shape[1], 3), 255, np.uint8)
        image_bgr = np.concatenate([image_bgr, pad], axis=0)
    return np.concatenate([image_bgr, panel], axis=1)
