// The interface every backend implements (internal): one loaded network, run on an NCHW batch.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "fcn/config.hpp"
#include "fcn/meta.hpp"
#include "fcn/segmenter.hpp"

namespace fcn::detail {

/// One network input of a run: float32, contiguous NCHW of ``shape``, in the order of the
/// metadata's input_specs() (every input has the same N, H, W).
struct InputTensor {
  const float* data = nullptr;
  std::array<int64_t, 4> shape{};
};

/// One output of a run; vectors are reused between runs to avoid reallocations.
struct OutputTensor {
  std::vector<float> scores;   ///< a scores output: N*C*H*W values
  std::vector<uint8_t> labels; ///< a labels output: N*H*W class indices
  std::vector<int64_t> shape;
};

/// What one run returns, by output name.
using Outputs = std::map<std::string, OutputTensor>;

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
  /// Whether the network has this output (a head's scores_output / labels_output).
  virtual bool has_output(const std::string& name) const = 0;
  /// Largest batch accepted for HxW inputs (0 = no limit). Throws when HxW is never accepted.
  virtual int64_t max_batch(int64_t height, int64_t width) const = 0;
  /// Run on ``inputs`` (one per input spec, in order) and fill ``out[name]`` for every name in
  /// ``outputs`` (scores outputs as float32, labels outputs as uint8).
  virtual void run(const std::vector<InputTensor>& inputs, const std::vector<std::string>& outputs,
                   Outputs& out) = 0;
};

/// A network input or output as a backend sees it, for the contract checks below.
struct IoInfo {
  std::string name;
  std::string text;       ///< describe(): "image float32 [batch, 3, height, width]"
  bool float_4d = false;  ///< float32 with 4 dims (inputs, scores outputs)
  bool int_3d = false;    ///< uint8 / int32 / int64 with 3 dims (labels outputs)
  int64_t channels = -1;  ///< dim 1 when static, else -1
};

/// The network's inputs against the metadata's input_specs(): the same names (any order), each
/// float32 [batch, channels, height, width]. Returns, per input spec, its index in ``found``;
/// throws fcn::Error naming ``what`` (the model) and what was expected.
std::vector<size_t> check_inputs(const std::string& what, const ModelMeta& meta,
                                 const std::vector<IoInfo>& found);

/// The outputs every head needs: its scores output (float32 [batch, classes, height, width])
/// and/or its labels output (integer [batch, height, width]). Throws fcn::Error naming ``what``.
void check_outputs(const std::string& what, const ModelMeta& meta, const std::vector<IoInfo>& found);

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

/// "40x30 CV_16U with 1 channel(s)": a Mat as messages describe it.
std::string mat_text(const cv::Mat& m);

/// Throws fcn::Error when ``path`` is not an existing regular file (``what`` names the kind).
void require_file(const std::string& path, const std::string& what);

}  // namespace fcn::detail
