// Segmenter: one loaded model (.onnx or TensorRT .plan) that turns BGR images into label maps.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "fcn/error.hpp"
#include "fcn/export.hpp"
#include "fcn/meta.hpp"

namespace fcn {

enum class BackendKind {
  Auto,         ///< by file: .plan / .engine -> TensorRT, anything else -> ONNX Runtime
  OnnxRuntime,  ///< ONNX Runtime (CPU; CUDA / TensorRT execution providers where present)
  TensorRT,     ///< native TensorRT (enqueueV3 on a CUDA stream); needs FCN_HAVE_TENSORRT
};

/// How to open a model. Defaults run on the CPU with ONNX Runtime's own thread count.
struct Options {
  BackendKind backend = BackendKind::Auto;
  /// ONNX Runtime execution provider: "cpu", "cuda", "tensorrt", or "auto" (CUDA when this
  /// ONNX Runtime has it, else CPU). The TensorRT backend always runs on the GPU.
  std::string device = "cpu";
  int device_id = 0;  ///< CUDA device for the GPU providers and the TensorRT backend
  int threads = 0;    ///< ONNX Runtime intra-op threads; 0 = ONNX Runtime's default
  /// ONNX Runtime's CPU kernels for INT8 (Q/DQ) graphs: "auto" = exact U8U8 kernels
  /// (session.x64quantprecision=1) on x86 CPUs without VNNI, where the fast U8S8 kernels
  /// saturate, else fast; "fast" or "exact" force one.
  std::string int8_kernels = "auto";
};

/// Parse "auto" / "onnxruntime" / "tensorrt"; throws fcn::Error for anything else.
FCN_EXPORT BackendKind parse_backend(const std::string& name);

/// The backends compiled into this build, e.g. {"onnxruntime"}.
FCN_EXPORT std::vector<std::string> available_backends();

/// Mats by name: a multi-input call's inputs (keyed by the network's input names,
/// ModelMeta::input_names()), or a multi-head result (keyed by head names,
/// ModelMeta::head_specs()).
using NamedMats = std::map<std::string, cv::Mat>;

/// Loads a model and segments images at their own size (no resizing), preprocessing from the
/// model's metadata. Label maps are CV_8U (one class index per pixel) at the image's size; they
/// are the argmax over the classes (ties go to the lowest index, like numpy) or the network's
/// own "labels" output.
///
/// Thread-safety: all methods may be called from several threads; predictions on one Segmenter
/// are serialized by an internal mutex. Open one Segmenter per thread to run in parallel.
/// Movable, not copyable (it owns native sessions, engines and GPU memory).
class FCN_EXPORT Segmenter {
 public:
  /// Open ``model_path`` (.onnx, or .plan with its JSON sidecar). Throws fcn::Error when the file
  /// is missing or unreadable, carries no fcn-deploy metadata, or breaks the I/O contract.
  explicit Segmenter(const std::string& model_path, const Options& options = Options());
  ~Segmenter();
  Segmenter(Segmenter&& other) noexcept;
  Segmenter& operator=(Segmenter&& other) noexcept;
  Segmenter(const Segmenter&) = delete;
  Segmenter& operator=(const Segmenter&) = delete;

  const ModelMeta& meta() const;
  const std::string& path() const;
  /// The backend and where it runs, e.g. "onnxruntime 1.31.1 (CPUExecutionProvider)".
  std::string backend() const;
  /// What the network accepts and returns, e.g. "image float32 [batch, 3, height, width] ->
  /// scores float32 [batch, 21, height, width]".
  std::string describe() const;
  /// The CPU's int8 path of the ONNX Runtime backend, e.g. "int8: exact U8U8 kernels (no VNNI)";
  /// empty for TensorRT.
  std::string int8_kernels() const;

  /// Label map (CV_8U, the image's size) of one CV_8UC3 BGR image. When ``scores`` is given it
  /// receives the class scores as a 3-D CV_32F Mat of size {C, H, W} (the model needs a "scores"
  /// output for that).
  cv::Mat predict(const cv::Mat& image_bgr, cv::Mat* scores = nullptr);

  /// The whole-image result of predict() computed in tiles of ``tile`` x ``tile`` output pixels
  /// (rounded down to the network's stride), so memory is bounded by the tile, not the image:
  /// tiles start on the stride grid and read the context margins of the metadata's "tiling"
  /// (docs/runtime.md). Scores equal predict()'s up to float rounding. An image that fits in
  /// one tile is one predict(). Throws fcn::Error when the model carries no tiling geometry.
  cv::Mat predict_tiled(const cv::Mat& image_bgr, int tile, cv::Mat* scores = nullptr);

  /// Label maps of several equally sized images, run as batches (split where an engine's profile
  /// caps the batch). Images of different sizes are an error: call predict() on each.
  std::vector<cv::Mat> predict_batch(const std::vector<cv::Mat>& images_bgr,
                                     std::vector<cv::Mat>* scores = nullptr);

  /// The float32 NCHW input the network gets for ``images_bgr`` (same size each): what
  /// predict_batch() feeds, exposed for tests and parity checks.
  std::vector<float> preprocess(const std::vector<cv::Mat>& images_bgr) const;

  // -- several inputs, several heads ---------------------------------------------------------
  // predict(), predict_tiled(), predict_batch() and preprocess() above are for nets with one
  // input and one head: the image goes to the net's one input whatever its name (an HHA-only
  // net's ``hha``). A net with several inputs or heads refuses them, naming predict_heads().

  /// Label maps of every head (CV_8U, the inputs' size) keyed by head name ("score" for a
  /// single-head net; SIFT Flow's "sem", "geo"), for ``inputs`` keyed by the network's input
  /// names (ModelMeta::input_names(), e.g. "image" + "hha", or "image" + "depth"). Every input
  /// is required, none other is accepted, and all need the same height and width. ``image``-
  /// encoded inputs are images as read (CV_8UC3 BGR; gray, BGRA, 16-bit converted like
  /// predict()'s); ``log_depth`` inputs are one-channel depth maps in millimetres (CV_16U from
  /// read_depth(), or CV_32F...). ``scores``, when given, receives every head's scores (3-D
  /// CV_32F {C, H, W}; the network needs each head's scores output for that). Throws fcn::Error
  /// naming the input or head for anything else.
  NamedMats predict_heads(const NamedMats& inputs, NamedMats* scores = nullptr);

  /// predict_heads() on several equally sized input sets, run as batches.
  std::vector<NamedMats> predict_heads_batch(const std::vector<NamedMats>& inputs,
                                             std::vector<NamedMats>* scores = nullptr);

  /// predict_heads() computed in tiles of ``tile`` x ``tile`` output pixels, as predict_tiled():
  /// every input is cut at the same window, every head stitched.
  NamedMats predict_heads_tiled(const NamedMats& inputs, int tile, NamedMats* scores = nullptr);

 private:
  struct Impl;
  Impl& impl() const;  // throws fcn::Error on a moved-from Segmenter
  std::unique_ptr<Impl> impl_;
};

}  // namespace fcn
