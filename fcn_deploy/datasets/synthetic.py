"""SyntheticShapes: a procedurally generated segmentation set that a tiny FCN learns on a CPU.

Why it exists: tests, the demo and CI need labelled data without downloading PASCAL VOC, and the
data must reward what FCN's skip layers are for. Each image shows several textured shapes on a
cluttered, low-saturation background:

* the class is carried by a hue family (one per class, jittered per object) and by the shape; the
  texture (flat, stripes, checker, noise, ramp) varies per object, so colour alone is a cue but not
  a constant one;
* shapes are discs/ellipses, rectangles, triangles, rings (with a hole), thin bars (1.5-4 px wide),
  crosses and stars, from 3 px to a third of the image, overlapping (later ones occlude earlier
  ones), partly cut by the border;
* edges are anti-aliased (4x supersampled coverage); the label takes a pixel when coverage >= 1/2;
* a thin band (``boundary`` px, default 1) on the occluded side of every visible object edge is
  labelled 255 (ignore), as VOC marks its object boundaries;
* images are ``min_size``..``max_size`` px on each side independently (default 64..128).

Item ``i`` depends only on ``(seed, i)``: it is rebuilt from ``numpy.random.default_rng([seed, i])``
on every access, so it is identical whatever the access order, process or worker.

A 32-stride prediction cannot represent the small, thin and boundary pixels: :func:`stride_oracle`
shows it (the label block-mode downsampled by 32 and upsampled back scores far below stride 8).
"""
from __future__ import annotations

import math

import numpy as np

from fcn_deploy.constants import voc_palette
from fcn_deploy.datasets.base import SegmentationDataset, Sample
from fcn_deploy.errors import FCNError

#: Object shapes in class order (class i+1 is SHAPES[i]; class 0 is background).
SHAPES: tuple[str, ...] = ("disc", "square", "triangle", "ring", "bar", "cross", "star")
MAX_CLASSES = 1 + len(SHAPES)
TEXTURES: tuple[str, ...] = ("flat", "stripes", "checker", "noise", "ramp")
_SS = 4  # supersampling factor for anti-aliased coverage
_SHIFT = 4  # fractional bits for cv2 drawing coordinates


def _hsv_to_bgr(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """HSV (OpenCV units: H 0..180, S, V 0..255; any shapes broadcastable) -> float32 BGR."""
    import cv2

    h, s, v = np.broadcast_arrays(np.asarray(h, np.float32) % 180.0,
                                  np.clip(np.asarray(s, np.float32), 0, 255),
                                  np.clip(np.asarray(v, np.float32), 0, 255))
    hsv = np.stack([h, s, v], axis=-1).reshape(-1, 1, 3).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR).reshape(h.shape + (3,)).astype(np.float32)


def _texture(rng: np.random.Generator, kind: str, h: int, w: int) -> np.ndarray:
    """A zero-centred modulation field in [-1, 1] of shape HxW."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    phi = rng.uniform(0, math.pi)
    if kind == "flat":
        return np.zeros((h, w), np.float32)
    if kind == "stripes":
        period = rng.uniform(3.0, 8.0)
        u = xs * math.cos(phi) + ys * math.sin(phi)
        return np.sign(np.sin(2 * math.pi * u / period + rng.uniform(0, 6.3))).astype(np.float32)
    if kind == "checker":
        period = rng.uniform(3.0, 7.0)
        return np.sign(np.sin(math.pi * xs / period) * np.sin(math.pi * ys / period)
                       + 1e-6).astype(np.float32)
    if kind == "noise":
        return np.clip(rng.standard_normal((h, w)).astype(np.float32) * 0.6, -1, 1)
    u = xs * math.cos(phi) + ys * math.sin(phi)
    return (2 * (u - u.min()) / max(float(u.max() - u.min()), 1.0) - 1).astype(np.float32)


def _poly(canvas: np.ndarray, points: np.ndarray) -> None:
    import cv2

    pts = np.round((points * _SS - 0.5) * (1 << _SHIFT)).astype(np.int32)
    cv2.fillPoly(canvas, [pts], 255, lineType=cv2.LINE_8, shift=_SHIFT)


def _ellipse(canvas: np.ndarray, cx: float, cy: float, ax: float, ay: float, angle: float,
             value: int) -> None:
    import cv2

    f = 1 << _SHIFT
    centre = (int(round((cx * _SS - 0.5) * f)), int(round((cy * _SS - 0.5) * f)))
    axes = (max(int(round(ax * _SS * f)), 1), max(int(round(ay * _SS * f)), 1))
    cv2.ellipse(canvas, centre, axes, math.degrees(angle), 0, 360, value, -1, cv2.LINE_8, _SHIFT)


def _rect(cx: float, cy: float, half_len: float, half_wid: float, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    corners = np.array([[-half_len, -half_wid], [half_len, -half_wid], [half_len, half_wid],
                        [-half_len, half_wid]])
    rot = np.array([[c, -s], [s, c]])
    return corners @ rot.T + [cx, cy]


def _shape_coverage(rng: np.random.Generator, shape: str, h: int, w: int, cx: float, cy: float,
                    r: float) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] (float32 HxW) of one shape of radius about ``r``."""
    import cv2

    canvas = np.zeros((h * _SS, w * _SS), np.uint8)
    angle = rng.uniform(0, math.pi)
    if shape == "disc":
        _ellipse(canvas, cx, cy, r, r * rng.uniform(0.7, 1.0), angle, 255)
    elif shape == "square":
        _poly(canvas, _rect(cx, cy, r, r * rng.uniform(0.55, 1.0), angle))
    elif shape == "triangle":
        a = angle + np.array([0, 2 * math.pi / 3, 4 * math.pi / 3]) + rng.uniform(-0.25, 0.25, 3)
        rad = r * rng.uniform(0.85, 1.2, 3)
        _poly(canvas, np.stack([cx + rad * np.cos(a), cy + rad * np.sin(a)], axis=1))
    elif shape == "ring":
        r = max(r, 5.0)
        ay = r * rng.uniform(0.8, 1.0)
        k = rng.uniform(0.45, 0.7)
        _ellipse(canvas, cx, cy, r, ay, angle, 255)
        _ellipse(canvas, cx, cy, r * k, ay * k, angle, 0)
    elif shape == "bar":
        half_wid = rng.uniform(0.75, 2.0)  # 1.5..4 px wide: thinner than any stride
        _poly(canvas, _rect(cx, cy, max(r, 4.0) * rng.uniform(1.2, 2.2), half_wid, angle))
    elif shape == "cross":
        r = max(r, 4.0)
        half_wid = max(0.75, r * rng.uniform(0.12, 0.25))
        _poly(canvas, _rect(cx, cy, r, half_wid, angle))
        _poly(canvas, _rect(cx, cy, r * rng.uniform(0.7, 1.0), half_wid, angle + math.pi / 2))
    elif shape == "star":
        r = max(r, 4.0)
        a = angle + np.arange(10) * math.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, r, r * rng.uniform(0.38, 0.55))
        _poly(canvas, np.stack([cx + rad * np.cos(a), cy + rad * np.sin(a)], axis=1))
    else:  # pragma: no cover - SHAPES is closed
        raise ValueError(shape)
    return cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Low-saturation gradient with clutter (lines, blobs, texture) as float32 BGR HxWx3."""
    import cv2

    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    phi = rng.uniform(0, 2 * math.pi)
    u = xs * math.cos(phi) + ys * math.sin(phi)
    t = ((u - u.min()) / max(float(u.max() - u.min()), 1.0))[..., None]
    c0, c1 = (_hsv_to_bgr(rng.uniform(0, 180), rng.uniform(0, 60), rng.uniform(40, 230))
              for _ in range(2))
    image = (c0 * (1 - t) + c1 * t).astype(np.float32)
    if rng.random() < 0.5:  # a faint background texture
        kind = TEXTURES[rng.integers(1, len(TEXTURES))]
        image += _texture(rng, kind, h, w)[..., None] * rng.uniform(5, 20)
    for _ in range(int(rng.integers(3, 11))):  # clutter: grayish strokes and blobs
        colour = tuple(float(c) for c in _hsv_to_bgr(rng.uniform(0, 180), rng.uniform(0, 55),
                                                       rng.uniform(30, 240)))
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        if rng.random() < 0.5:
            x1, y1 = x0 + rng.uniform(-w / 2, w / 2), y0 + rng.uniform(-h / 2, h / 2)
            cv2.line(image, (int(x0), int(y0)), (int(x1), int(y1)), colour,
                     int(rng.integers(1, 4)), cv2.LINE_AA)
        else:
            axes = (int(rng.integers(2, max(3, w // 6))), int(rng.integers(2, max(3, h // 6))))
            cv2.ellipse(image, (int(x0), int(y0)), axes, float(rng.uniform(0, 180)), 0, 360,
                        colour, -1, cv2.LINE_AA)
    return image


class SyntheticShapes(SegmentationDataset):
    """Deterministic procedurally generated shapes (see the module docstring).

    ``num_classes`` counts background: 2..8 (default 7: background + disc, square, triangle,
    ring, bar, cross). Classes use ``SHAPES`` in order.
    """

    def __init__(self, *, num_images: int | None = None, seed: int | None = None,
                 min_size: int | None = None, max_size: int | None = None,
                 num_classes: int | None = None, min_objects: int | None = None,
                 max_objects: int | None = None, boundary: int | None = None) -> None:
        num_classes = 7 if num_classes is None else int(num_classes)
        if not 2 <= num_classes <= MAX_CLASSES:
            raise FCNError(f"SyntheticShapes num_classes={num_classes} is out of range; expected "
                           f"2..{MAX_CLASSES} (background + up to {len(SHAPES)} shapes)")
        super().__init__(num_classes=num_classes,
                         class_names=["background", *SHAPES[:num_classes - 1]],
                         palette=[list(c) for c in voc_palette(num_classes)])
        self.num_images = 200 if num_images is None else int(num_images)
        self.seed = 0 if seed is None else int(seed)
        self.min_size = 64 if min_size is None else int(min_size)
        self.max_size = max(128, self.min_size) if max_size is None else int(max_size)
        self.min_objects = 2 if min_objects is None else int(min_objects)
        self.max_objects = 6 if max_objects is None else int(max_objects)
        self.boundary = 1 if boundary is None else int(boundary)
        if self.num_images < 1:
            raise FCNError(f"SyntheticShapes num_images={self.num_images}; expected at least 1")
        if self.seed < 0:
            raise FCNError(f"SyntheticShapes seed={self.seed}; expected a non-negative integer")
        if not 16 <= self.min_size <= self.max_size <= 4096:
            raise FCNError(f"SyntheticShapes sizes min_size={self.min_size}, max_size="
                           f"{self.max_size}; expected 16 <= min_size <= max_size <= 4096")
        if not 1 <= self.min_objects <= self.max_objects <= 250:
            raise FCNError(f"SyntheticShapes min_objects={self.min_objects}, max_objects="
                           f"{self.max_objects}; expected 1 <= min_objects <= max_objects <= 250")
        if not 0 <= self.boundary <= 8:
            raise FCNError(f"SyntheticShapes boundary={self.boundary}; expected 0..8 pixels")

    def __len__(self) -> int:
        return self.num_images

    def _load(self, index: int) -> Sample:
        image, label = self.render(index)
        return Sample(image=image, label=label, name=f"shapes{self.seed}_{index:06d}")

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image (uint8 HxWx3 BGR) and label (uint8 HxW) of item ``index``, from (seed, index)."""
        import cv2

        rng = np.random.default_rng([self.seed, int(index)])
        h = int(rng.integers(self.min_size, self.max_size + 1))
        w = int(rng.integers(self.min_size, self.max_size + 1))
        image = _background(rng, h, w)
        label = np.zeros((h, w), np.uint8)
        depth = np.zeros((h, w), np.uint8)  # draw order of the visible object, 0 = background
        k = self.num_classes - 1
        hue_step = 180.0 / k
        r_min, r_max = 3.0, max(4.0, 0.33 * min(h, w))
        for order in range(1, int(rng.integers(self.min_objects, self.max_objects + 1)) + 1):
            cls = int(rng.integers(1, self.num_classes))
            r = math.exp(rng.uniform(math.log(r_min), math.log(r_max)))  # many small, some large
            cx, cy = rng.uniform(-0.05, 1.05) * w, rng.uniform(-0.05, 1.05) * h
            alpha = _shape_coverage(rng, SHAPES[cls - 1], h, w, cx, cy, r)
            hue = (cls - 1) * hue_step + rng.uniform(-0.2, 0.2) * hue_step
            sat, val = rng.uniform(150, 255), rng.uniform(110, 240)
            kind = TEXTURES[int(rng.integers(0, len(TEXTURES)))]
            mod = _texture(rng, kind, h, w) * rng.uniform(0.15, 0.35)
            colour = _hsv_to_bgr(hue, sat * (1 - 0.4 * np.abs(mod)), val * (1 + mod))
            image = image * (1 - alpha[..., None]) + colour * alpha[..., None]
            inside = alpha >= 0.5
            label[inside] = cls
            depth[inside] = order
        if self.boundary:
            size = 2 * self.boundary + 1
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
            label[cv2.dilate(depth, kernel) > depth] = self.ignore_label
        image += rng.standard_normal(image.shape).astype(np.float32) * rng.uniform(0, 6)
        return np.clip(np.round(image), 0, 255).astype(np.uint8), label


def stride_oracle(label: np.ndarray, stride: int, *, num_classes: int,
                  ignore_label: int = 255) -> np.ndarray:
    """The best prediction a net with output ``stride`` could make without upsampling tricks.

    Each ``stride`` x ``stride`` block takes the most frequent non-ignored class of ``label``
    (0 if the block is all ignore); the block map is then upsampled back by nearest neighbour and
    cropped to the label's size.
    """
    label = np.asarray(label)
    h, w = label.shape
    bh, bw = -(-h // stride), -(-w // stride)
    padded = np.full((bh * stride, bw * stride), ignore_label, dtype=np.int64)
    padded[:h, :w] = label
    blocks = padded.reshape(bh, stride, bw, stride).transpose(0, 2, 1, 3).reshape(bh, bw, -1)
    counts = np.stack([(blocks == c).sum(axis=-1) for c in range(num_classes)], axis=-1)
    coarse = counts.argmax(axis=-1).astype(np.uint8)
    return np.repeat(np.repeat(coarse, stride, axis=0), stride, axis=1)[:h, :w]


#: The geometric class of each synthetic shape class in :class:`SyntheticTwoHead` (class index
#: -> geo class): background 0, round shapes (disc, ring) 1, the other shapes 2.
SYNTHETIC_GEO_CLASSES = ("background", "round", "angular")
_GEO_OF_CLASS = np.array([0, 1, 2, 2, 1, 2, 2, 2], np.uint8)


class SyntheticTwoHead(SyntheticShapes):
    """SyntheticShapes with a second, coarser label map, as SIFT Flow's geometric head:
    ``label`` is head ``sem`` (the shapes), ``labels["geo"]`` maps each shape class to round /
    angular / background (ignored pixels stay ignored). Same options as SyntheticShapes."""

    primary_head = "sem"
    extra_heads = {"geo": SYNTHETIC_GEO_CLASSES}

    def _load(self, index: int) -> Sample:
        sample = super()._load(index)
        geo = np.full_like(sample.label, self.ignore_label)
        known = sample.label != self.ignore_label
        geo[known] = _GEO_OF_CLASS[sample.label[known]]
        sample.labels["geo"] = geo
        return sample


class SyntheticRGBD(SyntheticShapes):
    """SyntheticShapes with a second modality that carries the labels differently, as NYUD's
    HHA and depth: each class sits at its own depth (mm) plus smooth noise, and the ``hha``
    image encodes (depth, class height, a per-item constant) as three 8-bit channels. Drawn from
    ``(seed, index, 1)`` so the image stays SyntheticShapes' own."""

    extra_inputs = ("hha", "depth")

    def _load(self, index: int) -> Sample:
        sample = super()._load(index)
        rng = np.random.default_rng([self.seed, int(index), 1])
        label = sample.label.astype(np.int64)
        label[label == self.ignore_label] = 0
        depth = 1000.0 + 400.0 * label + rng.normal(0.0, 60.0, label.shape)
        depth = np.clip(depth, 1.0, None).astype(np.float32)
        hha = np.stack([np.clip(depth / 20.0, 0, 255),
                        np.clip(30.0 * label + rng.normal(0, 8.0, label.shape), 0, 255),
                        np.full(label.shape, rng.uniform(60, 200))], axis=-1)
        sample.inputs["hha"] = np.round(hha).astype(np.uint8)
        sample.inputs["depth"] = depth
        return sample
