"""The Segmenter: image in, label map out, over any backend.

It reads the preprocessing (channel order, mean, layout) from the artifact's metadata, runs the
runner, and returns the label map at the image's size. No resizing, no scaling: FCNs take the
image at its own size. Multi-input nets (NYUDv2's colour + HHA / depth) take their other inputs by
name, each preprocessed from its own metadata (``meta.input_specs()``); multi-head nets (SIFT
Flow's ``sem`` and ``geo``) return one label map per head (``meta.head_specs()``).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np

from fcn_deploy.errors import FCNError
from fcn_deploy.imageio import read_depth, read_image, to_bgr8
from fcn_deploy.meta import HeadSpec, InputSpec, ModelMeta
from fcn_deploy.preprocess import preprocess_input
from fcn_deploy.runtime.base import Runner, argmax_labels
from fcn_deploy.runtime.memory import available_memory_bytes, format_bytes
from fcn_deploy.runtime.registry import open_runner
from fcn_deploy.runtime.visualize import add_legend, colorize, overlay
from fcn_deploy.tiling import (DEFAULT_MAX_PIXELS, TileGeometry, plan_tiles, tile_core,
                               tile_for_pixels)

ImageLike = Union[np.ndarray, str, os.PathLike]

#: Below this many pixels per pass the memory estimate is skipped (a few hundred MiB at most).
_CHECK_MEMORY_ABOVE_PIXELS = 1 << 22


def input_specs_of(runner: Runner) -> list[InputSpec]:
    """The metadata's inputs, which must be the network's. A single-input artifact whose
    metadata predates named inputs (an HHA-only net's graph input is ``hha``) feeds its one
    input by the graph's name."""
    specs = runner.meta.input_specs()
    graph = [t.name for t in runner.inputs]
    if len(specs) == 1 and len(graph) == 1 and graph[0] != specs[0].name:
        return [dataclasses.replace(specs[0], name=graph[0])]
    if graph and sorted(graph) != sorted(s.name for s in specs):
        raise FCNError(f"{runner.path}: the network's inputs are {', '.join(graph)} but its "
                       f"metadata lists {', '.join(s.name for s in specs)}; the model and "
                       "its metadata disagree (re-export it from its checkpoint)")
    return specs


class Segmenter:
    """Semantic segmentation with a model.pt, .onnx or .plan.

    >>> seg = Segmenter.open("fcn8s.onnx")           # backend picked from the file
    >>> labels = seg.predict(cv2.imread("cat.jpg"))  # uint8 HxW class indices
    >>> labels, scores = seg.predict("cat.jpg", scores=True)  # + float32 CxHxW scores
    >>> rgbd = Segmenter.open("nyud_fcn16s_color_hha.onnx")  # inputs image + hha
    >>> labels = rgbd.predict(image, hha=hha_image)
    >>> sift = Segmenter.open("siftflow_fcn16s.onnx")        # heads sem + geo
    >>> sift.predict(image)["geo"]                           # {head: labels}

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
        self.input_specs: list[InputSpec] = input_specs_of(runner)
        self.heads: list[HeadSpec] = self.meta.head_specs()
        names = runner.output_names
        for head in self.heads:
            if head.scores_output not in names and head.labels_output not in names:
                raise FCNError(f"{runner.path}: outputs are {names}; expected "
                               f"{head.scores_output!r} and/or {head.labels_output!r}")

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
        return all(h.scores_output in self.runner.output_names for h in self.heads)

    @property
    def multi_head(self) -> bool:
        """True for a net with several heads: predict then returns {head: labels}."""
        return self.meta.multi_head

    @property
    def head_names(self) -> list[str]:
        return [h.name for h in self.heads]

    @property
    def input_names(self) -> list[str]:
        """The net's inputs: the first is predict's positional argument, the others keywords."""
        return [s.name for s in self.input_specs]

    def head(self, name: str | None = None) -> HeadSpec:
        """The head ``name`` (None: the first), with its classes and palette."""
        if name is None:
            return self.heads[0]
        for head in self.heads:
            if head.name == name:
                return head
        raise FCNError(f"{self.meta.arch} has no head {name!r}; its heads are "
                       f"{', '.join(self.head_names)}")

    # -- inference ---------------------------------------------------------------------------
    def predict(self, image: ImageLike, *, rgb: bool = False, scores: bool = False,
                tile: int | None = None, max_pixels: int | None = None, **inputs: Any):
        """Label map (uint8 HxW) of one image; with ``scores=True`` also its float32 CxHxW scores.

        ``image``: the net's first input, a numpy array as apps hold it (HxWx3 BGR as OpenCV
        reads it; ``rgb=True`` for RGB; grayscale, RGBA and 16-bit are converted) or an image
        file path. A multi-input net's other inputs by name (``hha=``, ``depth=``), arrays as
        the datasets hold them (HHA uint8 HxWx3 as read; depth HxW in millimetres, e.g. a 16-bit
        PNG as read) or file paths, each of the image's height and width.
        A multi-head net returns ``{head: labels}`` (``{head: (labels, scores)}`` with scores).
        ``tile``/``max_pixels``: tiled inference for large images, see :meth:`predict_batch`.
        """
        result = self.predict_batch([image], rgb=rgb, scores=scores, tile=tile,
                                    max_pixels=max_pixels,
                                    **{name: [value] for name, value in inputs.items()})
        if self.multi_head:
            return {head: ((r[0][0], r[1][0]) if scores else r[0]) for head, r in result.items()}
        if scores:
            return result[0][0], result[1][0]
        return result[0]

    def predict_batch(self, images: Sequence[ImageLike] | np.ndarray, *, rgb: bool = False,
                      scores: bool = False, tile: int | None = None,
                      max_pixels: int | None = None, **inputs: Any):
        """Label maps (uint8 NxHxW) of equally sized images; ``scores=True`` adds NxCxHxW scores.

        A multi-input net's other inputs by name, one list per input, as long as ``images``
        (see :meth:`predict`); a multi-head net returns ``{head: labels}`` (``{head: (labels,
        scores)}`` with scores).
        Batches larger than the model takes (a static batch dim, an engine profile's max batch)
        are run in chunks. Large images are run in tiles that give the whole image's result
        (scores equal up to float rounding; fcn_deploy/tiling.py; every input is cut at the same
        tile and every head stitched): ``tile`` None tiles
        automatically when an image has more than ``max_pixels`` pixels (default
        fcn_deploy.tiling.DEFAULT_MAX_PIXELS) or would need more memory than the machine has;
        ``tile=N`` always uses cores of N pixels (rounded down to the network's stride);
        ``tile=0`` never tiles, and refuses an image whose estimated memory exceeds what the
        machine has, before allocating it.
        """
        batch = self._load_inputs(images, inputs, rgb=rgb)
        first = batch[self.input_specs[0].name]
        wanted = self._wanted_outputs(scores)
        height, width = first[0].shape[:2]
        core = self.tile_size(height, width, tile=tile, max_pixels=max_pixels, batch=len(first))
        if core is None:
            result = self._run(batch, wanted)
        else:
            parts = [self._run_tiled({name: arrays[i] for name, arrays in batch.items()}, core,
                                     wanted, keep_scores=scores) for i in range(len(first))]
            result = {head.name: (np.stack([p[head.name][0] for p in parts]),
                                  np.stack([p[head.name][1] for p in parts]) if scores else None)
                      for head in self.heads}
        if not self.multi_head:
            labels, score_maps = result[self.heads[0].name]
            return (labels, score_maps) if scores else labels
        return {head: (r if scores else r[0]) for head, r in result.items()}

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

    def _run_tiled(self, inputs: Mapping[str, np.ndarray], core: int, wanted: list[str], *,
                   keep_scores: bool) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """One image (every input) in tiles of ``core`` px; each tile's core is written into
        every head's full label map, and into full score maps only when ``keep_scores`` (C
        floats per pixel)."""
        height, width = next(iter(inputs.values())).shape[:2]
        full: dict[str, list] = {}
        for rows, cols in plan_tiles(height, width, core, self.tile_geometry):
            window = (slice(rows.start, rows.stop), slice(cols.start, cols.stop))
            tile_out = self._run({name: [data[window]] for name, data in inputs.items()},
                                 wanted)
            dst = (slice(rows.keep_start, rows.keep_stop), slice(cols.keep_start, cols.keep_stop))
            src = (slice(rows.keep_start - rows.start, rows.keep_stop - rows.start),
                   slice(cols.keep_start - cols.start, cols.keep_stop - cols.start))
            for head, (tile_labels, tile_scores) in tile_out.items():
                if head not in full:
                    full[head] = [np.empty((height, width), dtype=tile_labels.dtype),
                                  np.empty((tile_scores.shape[1], height, width), np.float32)
                                  if keep_scores else None]
                labels, score_maps = full[head]
                labels[dst] = tile_labels[0][src]
                if score_maps is not None:
                    score_maps[(slice(None),) + dst] = tile_scores[0][(slice(None),) + src]
            del tile_out  # free this tile's outputs before the next run
        return {head: (labels, score_maps) for head, (labels, score_maps) in full.items()}

    def _run(self, batch: Mapping[str, list[np.ndarray]],
             wanted: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """One whole-image pass over equally sized images (every input):
        {head: (labels NxHxW, scores or None)}."""
        x = self._preprocess(batch)
        first = x[self.input_specs[0].name]
        count = len(first)
        limit = self.runner.batch_limit(first.shape) or count
        parts: dict[str, list[np.ndarray]] = {name: [] for name in wanted}
        for start in range(0, count, limit):
            out = self.runner.infer({name: t[start:start + limit] for name, t in x.items()},
                                    outputs=wanted)
            for name in wanted:
                parts[name].append(out[name])
        del x, first
        merged = {name: chunks[0] if len(chunks) == 1 else np.concatenate(chunks, axis=0)
                  for name, chunks in parts.items()}
        height, width = next(iter(batch.values()))[0].shape[:2]
        result = {}
        for head in self.heads:
            score_maps = merged.get(head.scores_output)
            if score_maps is not None:
                score_maps = np.asarray(score_maps, dtype=np.float32)
                self._check_size(head.scores_output, score_maps.shape[2:], (height, width))
            labels = merged.get(head.labels_output)
            if labels is None:
                labels = argmax_labels(score_maps)
            elif labels.ndim == 4 and labels.shape[1] == 1:
                labels = labels[:, 0]
            self._check_size(head.labels_output, labels.shape[1:], (height, width))
            if labels.dtype != np.uint8 and head.num_classes <= 256:
                labels = labels.astype(np.uint8)
            result[head.name] = (labels, score_maps)
        return result

    def _wanted_outputs(self, scores: bool) -> list[str]:
        names = self.runner.output_names
        wanted = []
        for head in self.heads:
            if scores:
                if head.scores_output not in names:
                    raise FCNError(f"{self.runner.path} has only a {head.labels_output!r} output "
                                   "(argmax inside the graph), so scores=True cannot be served; "
                                   "export the model with scores (outputs 'scores' or 'both') "
                                   "to get class scores")
                wanted += [head.scores_output] + ([head.labels_output]
                                                  if head.labels_output in names else [])
            else:
                wanted.append(head.labels_output if head.labels_output in names
                              else head.scores_output)
        return wanted

    def _load_inputs(self, images, inputs: Mapping[str, Any], *,
                     rgb: bool) -> dict[str, list[np.ndarray]]:
        """{input name: arrays} for a batch: the images as the first input, the keyword inputs
        as the others, every one checked against its metadata and the images' size."""
        first, others = self.input_specs[0], self.input_specs[1:]
        known = [s.name for s in others]
        for name in inputs:
            if name == first.name:
                raise FCNError(f"input {name!r} is {self.meta.arch}'s first input: pass it as "
                               "the positional argument, not as a keyword")
            if name not in known:
                raise FCNError(f"unexpected input {name!r}: {self._describe_inputs()}")
        missing = [name for name in known if name not in inputs]
        if missing:
            raise FCNError(f"missing input {', '.join(map(repr, missing))}: "
                           f"{self._describe_inputs()}")
        batch = {first.name: (self._load_images(images, rgb=rgb) if first.encoding == "image"
                              else self._load_extra(first, self._as_list(images, first.name)))}
        count = len(batch[first.name])
        height, width = batch[first.name][0].shape[:2]
        for spec in others:
            arrays = self._load_extra(spec, self._as_list(inputs[spec.name], spec.name))
            if len(arrays) != count:
                raise FCNError(f"input {spec.name!r} has {len(arrays)} item(s) for {count} "
                               "image(s); expected one per image")
            for i, data in enumerate(arrays):
                if data.shape[:2] != (height, width):
                    which = "" if count == 1 else f" #{i}"
                    raise FCNError(f"input {spec.name!r}{which} is {data.shape[0]}x"
                                   f"{data.shape[1]} but the image is {height}x{width}; every "
                                   "input of a net must have the image's height and width")
            batch[spec.name] = arrays
        return batch

    def _describe_inputs(self) -> str:
        first, others = self.input_specs[0], self.input_specs[1:]
        if not others:
            return f"{self.meta.arch} takes one input ({first.name!r}, the positional argument)"
        return (f"{self.meta.arch} takes {first.name!r} (the positional argument) and "
                + ", ".join(f"{s.name}= ({self._expects(s)})" for s in others))

    @staticmethod
    def _expects(spec: InputSpec) -> str:
        if spec.encoding == "log_depth":
            return "an HxW depth map in millimetres, e.g. a 16-bit PNG as read"
        return f"a uint8 HxWx{spec.channels} image as read"

    @staticmethod
    def _as_list(items, name: str) -> list:
        if isinstance(items, np.ndarray):
            if items.ndim < 3:
                raise FCNError(f"input {name!r}: predict_batch takes a list per input or an "
                               f"array with a batch dimension; got shape {items.shape} (use "
                               "predict() for one image)")
            return list(items)
        if isinstance(items, (str, os.PathLike)):
            raise FCNError(f"input {name!r}: predict_batch takes a list per input; use predict() "
                           "for one path")
        return list(items)

    def _load_extra(self, spec: InputSpec, items: list) -> list[np.ndarray]:
        """A multi-input net's other input (HHA image, depth map) as its encoding needs it."""
        if not items:
            raise FCNError(f"input {spec.name!r}: empty batch; expected at least one item")
        out = []
        for i, data in enumerate(items):
            what = f"input {spec.name!r}" + ("" if len(items) == 1 else f" #{i}")
            if isinstance(data, (str, os.PathLike)):
                try:
                    data = read_depth(data) if spec.encoding == "log_depth" else read_image(data)
                except FCNError as exc:
                    raise FCNError(f"{what}: {exc}") from None
            if not isinstance(data, np.ndarray):
                raise FCNError(f"{what}: expected a numpy array or a file path "
                               f"({self._expects(spec)}), got {type(data).__name__}")
            if spec.encoding == "log_depth":
                ok = (data.ndim == 2 or (data.ndim == 3 and data.shape[2] == 1)) and \
                    (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating))
            else:
                ok = data.ndim == 3 and data.shape[2] == spec.channels and data.dtype == np.uint8
            if not ok or data.size == 0:
                raise FCNError(f"{what}: got a {data.dtype} array of shape {data.shape}; expected "
                               f"{self._expects(spec)}")
            out.append(data)
        return out

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

    def _preprocess(self, batch: Mapping[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
        out = {}
        for spec in self.input_specs:
            x = np.stack([preprocess_input(spec, data) for data in batch[spec.name]])
            if self.meta.input_layout == "NHWC":
                x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
            out[spec.name] = x
        return out

    def _check_size(self, name: str, got: tuple[int, ...], expected: tuple[int, int]) -> None:
        if tuple(got) != tuple(expected):
            raise FCNError(f"{self.runner.path}: output {name!r} is {got[0]}x{got[1]} for an "
                           f"image of {expected[0]}x{expected[1]}; an FCN must return the "
                           "input's size (re-export the model)")

    # -- visualization -----------------------------------------------------------------------
    def colorize(self, label: np.ndarray, *, head: str | None = None) -> np.ndarray:
        """Class colours of a label map; ``head`` picks a multi-head net's palette (default:
        the first head's)."""
        return colorize(label, self.head(head).palette, ignore_label=self.meta.ignore_label)

    def overlay(self, image_bgr: np.ndarray, label: np.ndarray, *, opacity: float = 0.5,
                legend: bool = False, head: str | None = None) -> np.ndarray:
        """Class colours blended onto the image; ``legend=True`` appends the classes present;
        ``head`` picks a multi-head net's classes and palette (default: the first head's)."""
        spec = self.head(head)
        out = overlay(image_bgr, label, spec.palette, opacity=opacity,
                      ignore_label=self.meta.ignore_label)
        if legend:
            out = add_legend(out, label, spec.class_names, spec.palette,
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
