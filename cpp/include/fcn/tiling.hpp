// Exact tiled inference (fcn_deploy/tiling.py): tiles on the stride grid with context margins.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fcn/export.hpp"

namespace fcn {

/// The network's tiling geometry, metadata "tiling" (written by fcn-export): tile origins are
/// multiples of ``stride``; an output stride cell (``stride`` pixels from a multiple of it) sees
/// ``context_before`` input pixels before its first pixel and ``context_after`` after its last.
/// ``stride == 0`` means the artifact carries none (written before fcn-deploy had tiling).
struct FCN_EXPORT TileGeometry {
  int stride = 0;
  int context_before = 0;
  int context_after = 0;

  bool present() const { return stride > 0; }
  /// context_before rounded up to the stride, so that tiles start on the grid.
  int margin_before() const;
};

/// One tile along one axis: read input [start, stop), keep [keep_start, keep_stop) (image
/// coordinates).
struct FCN_EXPORT Span {
  int start, stop, keep_start, keep_stop;
};

/// ``tile`` rounded down to the stride (at least one stride); throws for tile < 1.
FCN_EXPORT int tile_core(int tile, const TileGeometry& geometry);

/// Input length of every tile along an axis (core + margins, rounded up to a length congruent
/// to ``size`` modulo the stride), as fcn_deploy.tiling.tile_length.
FCN_EXPORT int tile_length(int size, int tile, const TileGeometry& geometry);

/// Tiles covering [0, size) with cores of tile_core(tile) pixels, all of tile_length(); as
/// fcn_deploy.tiling.plan_axis.
FCN_EXPORT std::vector<Span> plan_axis(int size, int tile, const TileGeometry& geometry);

/// Largest core whose tile, margins included, holds at most ``max_pixels`` pixels; throws when
/// even one stride does not fit.
FCN_EXPORT int tile_for_pixels(int64_t max_pixels, const TileGeometry& geometry);

/// Whole-image inference up to this many pixels by default (4096 x 4096), as in Python.
constexpr int64_t kDefaultMaxPixels = int64_t{4096} * 4096;

}  // namespace fcn
