// Tile planning, mirroring fcn_deploy/tiling.py (docs/runtime.md derives the rules).
#include "fcn/tiling.hpp"

#include <algorithm>
#include <cmath>

#include "fcn/error.hpp"

namespace fcn {

int TileGeometry::margin_before() const {
  return (context_before + stride - 1) / stride * stride;
}

int tile_core(int tile, const TileGeometry& geometry) {
  if (!geometry.present()) throw Error("tiling geometry has no stride");
  if (tile < 1) throw Error("tile size must be a positive number of pixels, got " +
                            std::to_string(tile));
  return std::max(geometry.stride, tile / geometry.stride * geometry.stride);
}

int tile_length(int size, int tile, const TileGeometry& geometry) {
  const int needed = geometry.margin_before() + tile_core(tile, geometry) + geometry.context_after;
  const int rest = ((size - needed) % geometry.stride + geometry.stride) % geometry.stride;
  return std::min(size, needed + rest);
}

std::vector<Span> plan_axis(int size, int tile, const TileGeometry& geometry) {
  const int core = tile_core(tile, geometry);
  const int length = tile_length(size, tile, geometry);
  if (length >= size) return {Span{0, size, 0, size}};
  std::vector<Span> spans;
  for (int keep_start = 0; keep_start < size; keep_start += core) {
    const int start = std::min(std::max(0, keep_start - geometry.margin_before()), size - length);
    const int keep_stop = std::min(size, keep_start + core);
    if (!spans.empty() && spans.back().start == start)
      spans.back().keep_stop = keep_stop;  // the same window: one run keeps both cores
    else
      spans.push_back({start, start + length, keep_start, keep_stop});
  }
  return spans;
}

int tile_for_pixels(int64_t max_pixels, const TileGeometry& geometry) {
  if (!geometry.present()) throw Error("tiling geometry has no stride");
  if (max_pixels < 1)
    throw Error("max_pixels must be a positive integer, got " + std::to_string(max_pixels));
  const int64_t side = static_cast<int64_t>(std::sqrt(static_cast<double>(max_pixels)));
  int64_t root = side;  // exact integer square root
  while (root * root > max_pixels) --root;
  while ((root + 1) * (root + 1) <= max_pixels) ++root;
  const int64_t extra =
      geometry.margin_before() + geometry.context_after + geometry.stride - 1;
  const int64_t core = (root - extra) / geometry.stride * geometry.stride;
  if (core < geometry.stride) {
    const int64_t smallest = geometry.stride + extra;
    throw Error("max_pixels " + std::to_string(max_pixels) +
                " is too small to tile this model: a tile with its context margins needs at "
                "least " + std::to_string(smallest * smallest) + " pixels");
  }
  return static_cast<int>(std::min<int64_t>(core, 1 << 30));
}

}  // namespace fcn
