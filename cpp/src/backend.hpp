// The interface every backend implements (internal): one loaded network, run on an NCHW batch.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fcn/config.hpp"
#include "fcn/meta.hpp"
#include "fcn/segmenter.hpp"

namespace fcn::detail {

/// What one run returns; vectors are reused between runs to avoid reallocations.
struct Outputs {
  std::vector<float> scores;          ///< N*C*H*W when requested
  std::array<int64_t, 4> scores_shape{};
  std::vector<uint8_t> labels;        ///< N*H*W when requested
  std::array<int64_t, 3> labels_shape{};
};

class Backend {
 public:
  virtual ~Backend() = default;
  Backend() = default;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  virtual const ModelMeta& meta() const = 0;
  virtual std::string name() const = 0;
  /// "image float32 [batch, 3, height, width] -> scores float32 [...]".
  virtual std::string describe() const = 0;
  virtual bool has_scores() const = 0;
  virtual bool has_labels() const = 0;
  /// Largest batch accepted for HxW images (0 = no limit). Throws when HxW is never accepted.
  virtual int64_t max_batch(int64_t height, int64_t width) const = 0;
  /// Run on ``input`` (float32, contiguous NCHW of ``shape``) and fill the requested outputs.
  virtual void run(const float* input, const std::array<int64_t, 4>& shape, bool want_scores,
                   bool want_labels, Outputs& out) = 0;
};

#if FCN_HAVE_ONNXRUNTIME
std::unique_ptr<Backend> open_onnxruntime(const std::string& path, const Options& options);
#endif
#if FCN_HAVE_TENSORRT
std::unique_ptr<Backend> open_tensorrt(const std::string& path, const Options& options);
#endif

/// "a x b x c" style shape text used in messages: [1, 3, 500, 500].
std::string shape_text(const int64_t* dims, size_t n);

/// Throws fcn::Error when ``path`` is not an existing regular file (``what`` names the kind).
void require_file(const std::string& path, const std::string& what);

}  // namespace fcn::detail
