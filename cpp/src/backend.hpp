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
  /// For ONNX Runtime: the CPU's int8 kernels this session uses, e.g. "int8: exact U8U8 kernels
  /// (no VNNI)"; empty where there is no such choice (TensorRT).
  virtual std::string int8_kernels() const { return ""; }
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

/// What the CPU can do with int8 products (see cpu.cpp and fcn_deploy/cpu.py).
struct CpuInt8 {
  bool x86 = false;
  std::vector<std::string> dot_flags;  ///< avx512_vnni / avx_vnni / amx_int8 present
};
/// Read /proc/cpuinfo (or $FCN_CPU_FLAGS, which replaces the flags: a testing aid).
CpuInt8 detect_cpu_int8();
/// detect_cpu_int8(), once per process.
const CpuInt8& cpu_int8();

/// Resolved int8 kernel choice: ``exact`` sets ONNX Runtime's session.x64quantprecision=1.
struct Int8Choice {
  bool exact = false;
  std::string description;  ///< the same words as the Python runtime's
};
/// "auto" (or empty), "fast" or "exact" for ``cpu``; throws fcn::Error for anything else.
Int8Choice resolve_int8_kernels(const std::string& requested, const CpuInt8& cpu);

/// "a x b x c" style shape text used in messages: [1, 3, 500, 500].
std::string shape_text(const int64_t* dims, size_t n);

/// Throws fcn::Error when ``path`` is not an existing regular file (``what`` names the kind).
void require_file(const std::string& path, const std::string& what);

}  // namespace fcn::detail
