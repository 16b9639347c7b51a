"""The Segmenter: image in, label map out, over any backend.

It reads the preprocessing (channel order, mean, layout) from the artifact's metadata, runs the
runner, and returns the label map at the image's size. No resizing, no scaling: FCNs take the
image at its own size.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

from fcn_deploy.errors import FCNError
from fcn_deploy.imageio import read_image, to_bgr8
from fcn_deploy.meta import ModelMeta
from fcn_deploy.preprocess import preprocess_batch
from fcn_deploy.runtime.base import LABELS, SCORES, Runner, argmax_labels
from fcn_deploy.runtime.memory import available_memory_bytes, format_bytes
from fcn_deploy.runtime.registry import open_runner
from fcn_deploy.runtime.visualize import add_legend, colorize, overlay
from fcn_deploy.tiling import (DEFAULT_MAX_PIXELS, TileGeometry, plan_tiles, tile_core,
                               tile_for_pixels)

ImageLike = Union[np.ndarray, str, os.PathLike]

#: Below this many pixels per pass the memory estimate is skipped (a few hundred MiB at most).
_CHECK_MEMORY_ABOVE_PIXELS = 1 << 22


class Segmenter:
    """Semantic segmentation with a model.pt, .onnx or .plan.

    >>> seg = Segmenter.open("fcn8s.onnx")           # backend picked from the file
    >>> labels = seg.predict(cv2.imread("cat.jpg"))  # uint8 HxW class indices
    >>> labels, scores = seg.predict("cat.jpg", scores=True)  # + float32 CxHxW scores

    Thread-safety: as the underlying runner's (see its docstring); the Segmenter itself keeps no
    per-call state (only caches of the tiling geometry and memory estimates; a race recomputes).
    """

    def __init__(self, runner: Runner) -> None:
        if runner.meta is None:
            raise FCNError(f"{runner.path}: no model metadata; the Segmenter needs the mean and "
                           "class list (export with fcn-export, build with fcn-build)")
        if runner.meta.input_layout not in ("NCHW", "NHWC"):
            raise FCNError(f"{runner.path}: input layout {runner.meta.input_layout!r} is not "
                           "supported; expected NCHW or NHWC")
        runner.check_class_count()  # scores channels vs the metadata's classes, as the C++ app
        self.runner = runner
        self.meta: ModelMeta = runner.meta
        self._geometry: TileGeometry | None = None
        self._memory_estimates: dict[tuple[int, ...], int | None] = {}
        names = runner.output_names
        if SCORES not in names and LABELS not in names:
            raise FCNError(f"{runner.path}: outputs are {names}; expected 'scores' and/or 'labels'")

    @classmethod
    def open(cls, path: str | os.PathLike, backend: str | None = None, device: str | None = None,
             **options: Any) -> "Segmenter":
        """Open an artifact; ``backend`` None picks it from the file and what is installed."""
        if device is not None:
            options["device"] = device
        return cls(open_runner(path, backend=backend, **options))

    # -- properties --------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        return self.runner.backend

    @property
    def class_names(self) -> list[str]:
        return list(self.meta.class_names)

    @property
    def palette(self) -> list[list[int]]:
        return [list(c) for c in self.meta.palette]

    @property
    def has_scores(self) -> bool:
        return SCORES in self.runner.output_names

    # -- inference ---------------------------------------------------------------------------
    def predict(self, image: ImageLike, *, rgb: bool = False, scores: bool = False,
                tile: int | None = None, max_pixels: int | None = None):
        """Label map (uint8 HxW) of one image; with ``scores=True`` also its float32 CxHxW scores.

        ``image``: a numpy array as apps hold it (HxWx3 BGR as OpenCV reads it; ``rgb=True`` for
        RGB; grayscale, RGBA and 16-bit are converted) or an image file path.
        ``tile``/``max_pixels``: tiled inference for large images, see :meth:`predict_batch`.
        """
        result = self.predict_batch([image], rgb=rgb, scores=scores, tile=tile,
                                    max_pixels=max_pixels)
        if scores:
            return result[0][0], result[1][0]
        return result[0]

    def predict_batch(self, images: Sequence[ImageLike] | np.ndarray, *, rgb: bool = False,
                      scores: bool = False, tile: int | None = None,
                      max_pixels: int | None = None):
        """Label maps (uint8 NxHxW) of equally sized images; ``scores=True`` adds NxCxHxW scores.

        Batches larger than the model takes (a static batch dim, an engine profile's max batch)
        are run in chunks. Large images are run in tiles that give the whole image's result
        (scores equal up to float rounding; fcn_deploy/tiling.py): ``tile`` None tiles
        automatically when an image has more than ``max_pixels`` pixels (default
        fcn_deploy.tiling.DEFAULT_MAX_PIXELS) or would need more memory than the machine has;
        ``tile=N`` always uses cores of N pixels (rounded down to the network's stride);
        ``tile=0`` never tiles, and refuses an image whose estimated memory exceeds what the
        machine has, before allocating it.
        """
        bgr = self._load_images(images, rgb=rgb)
        wanted = self._wanted_outputs(scores)
        height, width = bgr[0].shape[:2]
        core = self.tile_size(height, width, tile=tile, max_pixels=max_pixels, batch=len(bgr))
        if core is None:
            labels, score_maps = self._run(bgr, wanted)
        else:
            parts = [self._run_tiled(image, core, wanted, keep_scores=scores) for image in bgr]
            labels = np.stack([p[0] for p in parts])
            score_maps = np.stack([p[1] for p in parts]) if scores else None
        return (labels, score_maps) if scores else labels

    @property
    def tile_geometry(self) -> TileGeometry:
        """Stride and context of the network (metadata ``tiling``; for artifacts written before
        it existed, measured from the registered architecture, which needs PyTorch)."""
        if self._geometry is None:
            if self.meta.tiling:
                self._geometry = TileGeometry.from_dict(self.meta.tiling,
                                                        source=f"{self.runner.path}")
            else:
                try:
                    from fcn_deploy.models.analysis import tile_geometry_of_arch
                except ImportError:
                    raise FCNError(f"{self.runner.path} carries no tiling geometry (metadata "
                                   "'tiling', written by fcn-export since 0.1) and PyTorch is "
                                   "not installed to derive it from the architecture "
                                   f"{self.meta.arch!r}; re-export the model, or install torch"
                                   ) from None
                self._geometry = tile_geometry_of_arch(self.meta.arch, self.meta.arch_kwargs)
        return self._geometry

    def tile_size(self, height: int, width: int, *, tile: int | None = None,
                  max_pixels: int | None = None, batch: int = 1) -> int | None:
        """The tile core :meth:`predict_batch` uses for ``height`` x ``width`` images, or None
        for one whole-image pass (raises FCNError when ``tile=0`` and that will not fit)."""
        if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 0):
            raise FCNError(f"tile must be a tile size in pixels, 0 (never tile) or None "
                           f"(automatic); got {tile!r}")
        if tile is not None and tile > 0:
            core = tile_core(tile, self.tile_geometry)
            return None if core >= height and core >= width else core
        if max_pixels is not None and (isinstance(max_pixels, bool)
                                       or not isinstance(max_pixels, int) or max_pixels < 1):
            raise FCNError(f"max_pixels must be a positive number of pixels, got {max_pixels!r}")
        budget = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
        automatic = tile is None and height * width > budget
        geometry = self._automatic_geometry() if automatic else None
        if geometry is not None:
            core = tile_for_pixels(budget, geometry)
            if core < height or core < width:
                return core
        needed, available = self._memory_needed(batch, height, width), available_memory_bytes()
        if needed is None or available is None or needed <= available:
            return None
        geometry = self._automatic_geometry() if tile is None else None
        if geometry is not None:  # tiles with about the area that fits (the estimate grows with it)
            fits = int(height * width * available / needed)
            return tile_for_pixels(min(budget, max(fits, 1)), geometry)
        raise FCNError(f"a {height}x{width} image needs about {format_bytes(needed)} for "
                       f"{self.meta.arch} on {self.backend} (estimated from the graph), more than "
                       f"the {format_bytes(available)} this machine has available; segment it in "
                       f"tiles (tile=N, or --tile N / --max-pixels on fcn-segment), which gives "
                       f"the same result in bounded memory")

    def _automatic_geometry(self) -> TileGeometry | None:
        """The geometry, or None when it is unknown (automatic tiling then runs whole images,
        as before tiling existed; an explicit tile size reports why)."""
        try:
            return self.tile_geometry
        except FCNError:
            return None

    def _memory_needed(self, batch: int, height: int, width: int) -> int | None:
        if batch * height * width < _CHECK_MEMORY_ABOVE_PIXELS:
            return None  # small images: not worth reading the graph
        shape = ((batch, 3, height, width) if self.meta.input_layout == "NCHW"
                 else (batch, height, width, 3))
        if shape not in self._memory_estimates:
            self._memory_estimates[shape] = self.runner.activation_bytes(shape)
        return self._memory_estimates[shape]

    def _run_tiled(self, image: np.ndarray, core: int, wanted: list[str], *,
                   keep_scores: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """One image in tiles of ``core`` px; each tile's core is written into the full label
        map, and into full score maps only when ``keep_scores`` (C floats per pixel)."""
        height, width = image.shape[:2]
        labels = score_maps = None
        for rows, cols in plan_tiles(height, width, core, self.tile_geometry):
            tile_labels, tile_scores = self._run(
                [image[rows.start:rows.stop, cols.start:cols.stop]], wanted)
            dst = (slice(rows.keep_start, rows.keep_stop), slice(cols.keep_start, cols.keep_stop))
            src = (slice(rows.keep_start - rows.start, rows.keep_stop - rows.start),
                   slice(cols.keep_start - cols.start, cols.keep_stop - cols.start))
            if labels is None:
                labels = np.empty((height, width), dtype=tile_labels.dtype)
                if keep_scores:
                    score_maps = np.empty((tile_scores.shape[1], height, width), np.float32)
            labels[dst] = tile_labels[0][src]
            if score_maps is not None:
                score_maps[(slice(None),) + dst] = tile_scores[0][(slice(None),) + src]
            del tile_labels, tile_scores  # free this tile's outputs before the next run
        return labels, score_maps

    def _run(self, bgr: list[np.ndarray],
             wanted: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """One whole-image pass over equally sized images: (labels NxHxW, scores or None)."""
        x = self._preprocess(bgr)
        limit = self.runner.batch_limit(x.shape) or len(bgr)
        parts: dict[str, list[np.ndarray]] = {name: [] for name in wanted}
        for start in range(0, len(bgr), limit):
            out = self.runner.infer({"image": x[start:start + limit]}, outputs=wanted)
            for name in wanted:
                parts[name].append(out[name])
        del x
        merged = {name: chunks[0] if len(chunks) == 1 else np.concatenate(chunks, axis=0)
                  for name, chunks in parts.items()}
        height, width = bgr[0].shape[:2]
        score_maps = merged.get(SCORES)
        if score_maps is not None:
            score_maps = np.asarray(score_maps, dtype=np.float32)
            self._check_size(SCORES, score_maps.shape[2:], (height, width))
        labels = merged.get(LABELS)
        if labels is None:
            labels = argmax_labels(score_maps)
        elif labels.ndim == 4 and labels.shape[1] == 1:
            labels = labels[:, 0]
        self._check_size(LABELS, labels.shape[1:], (height, width))
        if labels.dtype != np.uint8 and self.meta.num_classes <= 256:
            labels = labels.astype(np.uint8)
        return labels, score_maps

    def _wanted_outputs(self, scores: bool) -> list[str]:
        names = self.runner.output_names
        if scores:
            if SCORES not in names:
                raise FCNError(f"{self.runner.path} has only a 'labels' output (argmax inside the "
                               "graph), so scores=True cannot be served; export the model with "
                               "scores (outputs 'scores' or 'both') to get class scores")
            return [SCORES] + ([LABELS] if LABELS in names else [])
        return [LABELS] if LABELS in names else [SCORES]

    def _load_images(self, images, *, rgb: bool) -> list[np.ndarray]:
        if isinstance(images, np.ndarray):
            if images.ndim != 4:
                raise FCNError(f"predict_batch takes a list of images or an NxHxWxC array; got an "
                               f"array of shape {images.shape} (use predict() for one image)")
            images = list(images)
        if isinstance(images, (str, os.PathLike)):
            raise FCNError("predict_batch takes a list of images; use predict() for one path")
        images = list(images)
        if not images:
            raise FCNError("empty batch: predict_batch needs at least one image")
        out = []
        for i, image in enumerate(images):
            if isinstance(image, (str, os.PathLike)):
                out.append(read_image(Path(image)))
            else:
                name = "image" if len(images) == 1 else f"image #{i}"
                out.append(to_bgr8(image, rgb=rgb, name=name))
        sizes = {im.shape[:2] for im in out}
        if len(sizes) > 1:
            listing = ", ".join(f"#{i} {im.shape[0]}x{im.shape[1]}" for i, im in enumerate(out[:6]))
            raise FCNError(f"a batch needs images of one size (HxW); got {listing}"
                           f"{' ...' if len(out) > 6 else ''}. Use predict() per image for mixed "
                           "sizes")
        return out

    def _preprocess(self, images: list[np.ndarray]) -> np.ndarray:
        x = preprocess_batch(images, self.meta.mean, channel_order=self.meta.channel_order)
        if self.meta.input_layout == "NHWC":
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        return x

    def _check_size(self, name: str, got: tuple[int, ...], expected: tuple[int, int]) -> None:
        if tuple(got) != tuple(expected):
            raise FCNError(f"{self.runner.path}: output {name!r} is {got[0]}x{got[1]} for an "
                           f"image of {expected[0]}x{expected[1]}; an FCN must return the "
                           "input's size (re-export the model)")

    # -- visualization -----------------------------------------------------------------------
    def colorize(self, label: np.ndarray) -> np.ndarray:
        return colorize(label, self.meta.palette, ignore_label=self.meta.ignore_label)

    def overlay(self, image_bgr: np.ndarray, label: np.ndarray, *, opacity: float = 0.5,
                legend: bool = False) -> np.ndarray:
        """Class colours blended onto the image; ``legend=True`` appends the classes present."""
        out = overlay(image_bgr, label, self.meta.palette, opacity=opacity,
                      ignore_label=self.meta.ignore_label)
        if legend:
            out = add_legend(out, label, self.meta.class_names, self.meta.palette,
                             ignore_label=self.meta.ignore_label)
        return out

    # -- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        self.runner.close()

    def __enter__(self) -> "Segmenter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<Segmenter {self.meta.arch} ({self.meta.num_classes} classes) "
                f"{self.backend} {self.runner.path}>")
