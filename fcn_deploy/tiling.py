"""Tiles for exact, memory-bounded inference on images too large for one pass.

An FCN's output pixel p depends on a window of input pixels around p (its *context*); for the
``stride`` output pixels of a cell starting at a multiple of the stride, at most
``context_before`` pixels before the cell and ``context_after`` after it along each axis, the
zero padding of conv1 included. A tile computes the whole image's result exactly for every output
pixel whose context lies inside the tile, provided

1. the tile starts on the network's stride grid (a multiple of ``stride``, 32 for every FCN here):
   each layer maps output index y to input index ``s*y - pad + ...`` with the same padding in
   the tile as in the image, so a tile starting at x0 reproduces the image's feature maps shifted
   by x0 / (product of strides) only when x0 is a multiple of that product; and
2. where the tile is cut out of the image (not at the image's own border) its context margin is
   real image data: zero padding, the intermediate 3x3 convolutions' padding and the partial
   windows of ceil-mode pools all sit at the tile's edge, inside the margin, and never reach a
   kept pixel. At the image's own border the tile ends where the image ends, so padding and
   ceil-mode windows are exactly the whole image's.

So each tile keeps a core of ``tile`` pixels (a multiple of the stride), reads at least
``ceil(context_before / stride) * stride`` pixels before it (keeping the start on the grid) and
``context_after`` pixels after it, clipped at the image border; all tiles have one size.
docs/runtime.md has the derivation and the measured contexts. This module is numpy-free
planning; the Segmenter and fcn-bench run it, cpp/src/tiling.cpp mirrors it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from fcn_deploy.errors import FCNError

#: Whole-image inference up to this many pixels (4096 x 4096); larger images are tiled unless
#: the caller turns tiling off.
DEFAULT_MAX_PIXELS = 4096 * 4096

#: The metadata keys of :class:`TileGeometry` (``ModelMeta.tiling``; ONNX ``fcn.tiling``).
GEOMETRY_KEYS = ("stride", "context_before", "context_after")


@dataclass(frozen=True)
class TileGeometry:
    """How far the output looks: ``stride`` of the coarsest map (tile origins are multiples of
    it) and the input context (pixels) before the first and after the last pixel of a stride
    cell (``stride`` output pixels starting at a multiple of the stride). Tile cores are whole
    cells, so these bound the context of every pixel a tile keeps."""

    stride: int
    context_before: int
    context_after: int

    def __post_init__(self) -> None:
        for key in GEOMETRY_KEYS:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < (key == "stride"):
                raise FCNError(f"tiling geometry: {key} must be an integer >= "
                               f"{int(key == 'stride')}, got {value!r}")

    @property
    def margin_before(self) -> int:
        """Context before a core, rounded up to the stride so tiles start on the grid."""
        return math.ceil(self.context_before / self.stride) * self.stride

    def to_dict(self) -> dict[str, int]:
        return {key: getattr(self, key) for key in GEOMETRY_KEYS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "metadata") -> "TileGeometry":
        if not isinstance(data, Mapping):
            raise FCNError(f"{source}: tiling must be an object with {', '.join(GEOMETRY_KEYS)}; "
                           f"got {data!r}")
        missing = [k for k in GEOMETRY_KEYS if k not in data]
        if missing:
            raise FCNError(f"{source}: tiling is missing {', '.join(missing)}")
        try:
            return cls(**{k: data[k] for k in GEOMETRY_KEYS})
        except FCNError as exc:
            raise FCNError(f"{source}: {exc}") from None


@dataclass(frozen=True)
class Span:
    """One tile along one axis: read input ``[start, stop)``, keep ``[keep_start, keep_stop)``
    (image coordinates; the kept part is the tile's core)."""

    start: int
    stop: int
    keep_start: int
    keep_stop: int


def tile_core(tile: int, geometry: TileGeometry) -> int:
    """``tile`` rounded down to the stride grid (at least one stride)."""
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 1:
        raise FCNError(f"tile size must be a positive integer (pixels), got {tile!r}")
    return max(geometry.stride, tile // geometry.stride * geometry.stride)


def tile_length(size: int, tile: int, geometry: TileGeometry) -> int:
    """Input length of every tile along an axis of ``size`` pixels: core plus both margins,
    rounded up to the next length congruent to ``size`` modulo the stride (so the last tile,
    which ends at the border, can start on the grid too); ``size`` when that is not shorter."""
    core = tile_core(tile, geometry)
    needed = geometry.margin_before + core + geometry.context_after
    length = needed + (size - needed) % geometry.stride
    return min(size, length)


def plan_axis(size: int, tile: int, geometry: TileGeometry) -> list[Span]:
    """Tiles covering ``[0, size)`` with cores of ``tile`` pixels (rounded to the stride grid).

    Every tile reads the same length (:func:`tile_length`), so a run sees one input shape (one
    ONNX Runtime memory plan, one TensorRT profile): a tile starts ``margin_before`` before its
    core, or earlier where that would run past the image's end (extra context is harmless);
    neighbouring cores that get the same window are kept from one run.
    """
    core = tile_core(tile, geometry)
    length = tile_length(size, tile, geometry)
    if length >= size:
        return [Span(start=0, stop=size, keep_start=0, keep_stop=size)]
    spans: list[Span] = []
    for keep_start in range(0, size, core):
        start = min(max(0, keep_start - geometry.margin_before), size - length)
        keep_stop = min(size, keep_start + core)
        if spans and spans[-1].start == start:  # the same window: one run keeps both cores
            spans[-1] = Span(start, start + length, spans[-1].keep_start, keep_stop)
        else:
            spans.append(Span(start, start + length, keep_start, keep_stop))
    return spans


def plan_tiles(height: int, width: int, tile: int,
               geometry: TileGeometry) -> list[tuple[Span, Span]]:
    """(rows, cols) spans of every tile, row-major."""
    rows = plan_axis(height, tile, geometry)
    cols = plan_axis(width, tile, geometry)
    return [(r, c) for r in rows for c in cols]


def tile_for_pixels(max_pixels: int, geometry: TileGeometry) -> int:
    """Largest core whose tiles, margins and grid rounding included, hold at most
    ``max_pixels`` pixels."""
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise FCNError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    extra = geometry.margin_before + geometry.context_after + geometry.stride - 1
    core = (math.isqrt(max_pixels) - extra) // geometry.stride * geometry.stride
    if core < geometry.stride:
        smallest = (geometry.stride + extra) ** 2
        raise FCNError(f"max_pixels {max_pixels} is too small to tile this model: a tile with "
                       f"its context margins needs at least {smallest} pixels")
    return core
