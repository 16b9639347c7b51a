// The self-describing metadata every fcn-deploy artifact carries (fcn_deploy/meta.py's ModelMeta).
#pragma once

#include <array>
#include <map>
#include <string>
#include <vector>

#include "fcn/export.hpp"
#include "fcn/tiling.hpp"

namespace fcn {

/// One network input (fcn_deploy.meta.InputSpec): its tensor name, channels and preprocessing.
/// ``image``: CV_8UC3 BGR as read -> ``channel_order`` minus ``mean``, 3 x H x W float32;
/// ``log_depth``: a one-channel depth map in millimetres -> log(max(d, 1)) minus ``mean``.
struct FCN_EXPORT InputSpec {
  std::string name;
  int channels = 3;
  std::vector<double> mean;  ///< one value per channel, in channel_order
  std::string channel_order = "BGR";
  std::string encoding = "image";  ///< "image" or "log_depth"
};

/// One score head (fcn_deploy.meta.HeadSpec): classes, colours and its output tensors' names
/// ("scores" / "labels" for a single-head net, "scores_<head>" / "labels_<head>" otherwise).
struct FCN_EXPORT HeadSpec {
  std::string name;
  int num_classes = 0;
  std::vector<std::string> class_names;
  std::vector<std::array<int, 3>> palette;  ///< RGB colour per class
  std::string scores_output = "scores";
  std::string labels_output = "labels";
};

/// The name of the one input of a single-input net, and of the one head of a single-head net.
constexpr const char* kDefaultInput = "image";
constexpr const char* kSingleHead = "score";

/// What a runtime needs to use a model: classes, colours and the preprocessing.
///
/// The network input is ``float32(image[..., channel_order]) - float32(mean)`` in NCHW, with no
/// scaling and no resizing; ``mean`` is in ``channel_order``. Read from ONNX metadata_props
/// (keys "fcn.<field>", lists as JSON) or from a TensorRT plan's JSON sidecar ("meta"), never
/// hard-coded.
struct FCN_EXPORT ModelMeta {
  std::string arch;
  int num_classes = 0;
  std::vector<std::string> class_names;
  std::vector<std::array<int, 3>> palette;  ///< RGB colour per class
  std::array<double, 3> mean{};             ///< in channel_order
  int ignore_label = 255;
  std::string channel_order = "BGR";  ///< "BGR" or "RGB": the order the network expects
  std::string input_layout = "NCHW";
  std::string precision = "fp32";  ///< "fp32", "fp16" or "int8"
  std::string outputs = "scores";  ///< "scores", "labels" or "both"
  std::string toolkit_version;
  TileGeometry tiling;  ///< "tiling"; absent (stride 0) in artifacts older than tiling
  /// "inputs": the network's inputs when it is not one ``image`` (NYUDv2's image + hha), in
  /// forward order, completed as the Python side does (``hha``: NYUDv2's HHA mean, RGB;
  /// ``depth``: log_depth with NYUDv2's log-depth mean; ``image``: mean / channel_order above).
  /// Empty for single-image nets: use input_specs().
  std::vector<InputSpec> inputs;
  /// "heads": the heads of a multi-head net (two or more; the first is num_classes /
  /// class_names / palette above), each with its output names. Empty for a single-head net:
  /// use head_specs().
  std::vector<HeadSpec> heads;

  /// The network's inputs in forward order; one ``image`` (mean, channel_order) when
  /// ``inputs`` is empty.
  std::vector<InputSpec> input_specs() const;
  std::vector<std::string> input_names() const;
  /// The heads in order; one head ``score`` (outputs ``scores`` / ``labels``) when ``heads`` is
  /// empty.
  std::vector<HeadSpec> head_specs() const;
  bool multi_head() const { return !heads.empty(); }
  /// The graph outputs for ``kind`` ("scores", "labels", "both"; empty = ``outputs``): every
  /// head's scores in head order, then every head's labels.
  std::vector<std::string> output_names(const std::string& kind = "") const;
  /// This metadata with ``head``'s classes, names and palette as its own (num_classes,
  /// class_names, palette), so colorize / overlay / write_label_png draw that head's labels.
  /// Throws fcn::Error for an unknown head.
  ModelMeta for_head(const std::string& head) const;

  /// Same checks as the Python side, plus what this runtime supports (NCHW, <= 256 classes).
  /// Throws fcn::Error naming ``source``.
  void validate(const std::string& source) const;

  /// From the ``ModelMeta.to_dict()`` JSON object (checkpoints, plan sidecars' "meta").
  static ModelMeta from_json(const std::string& json_text, const std::string& source);

  /// From ONNX metadata_props: only "fcn.*" keys are read; string fields raw, others JSON.
  static ModelMeta from_onnx_props(const std::map<std::string, std::string>& props,
                                   const std::string& source);
};

/// The PASCAL VOC colour map (RGB), as fcn_deploy.constants.voc_palette: the bits of label i
/// spread over the high bits of R, G and B in turn.
FCN_EXPORT std::vector<std::array<int, 3>> voc_palette(int num_colors = 256);

/// The metadata of a TensorRT plan from its JSON sidecar ``<plan>.json`` (key "meta", written by
/// fcn-build next to the plan). ``tensorrt_version``, when given, receives the sidecar's
/// "tensorrt_version" (the TensorRT that built the plan). Needs no GPU and no TensorRT.
FCN_EXPORT ModelMeta read_plan_meta(const std::string& plan_path,
                                    std::string* tensorrt_version = nullptr);

/// What a sidecar says about the plan itself, besides the model's metadata.
struct PlanInfo {
  std::string tensorrt_version;     ///< the TensorRT that built the plan ("" when absent)
  bool version_compatible = false;  ///< built version-compatible ("build_options"): loading it
                                    ///< needs IRuntime::setEngineHostCodeAllowed(true)
};

/// read_plan_meta() that also fills ``info`` (when not null) from the sidecar.
FCN_EXPORT ModelMeta read_plan_meta(const std::string& plan_path, PlanInfo* info);

}  // namespace fcn
