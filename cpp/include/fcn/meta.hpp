// The self-describing metadata every fcn-deploy artifact carries (fcn_deploy/meta.py's ModelMeta).
#pragma once

#include <array>
#include <map>
#include <string>
#include <vector>

#include "fcn/export.hpp"
#include "fcn/tiling.hpp"

namespace fcn {

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

  /// Same checks as the Python side, plus what this runtime supports (NCHW, <= 256 classes).
  /// Throws fcn::Error naming ``source``.
  void validate(const std::string& source) const;

  /// From the ``ModelMeta.to_dict()`` JSON object (checkpoints, plan sidecars' "meta").
  static ModelMeta from_json(const std::string& json_text, const std::string& source);

  /// From ONNX metadata_props: only "fcn.*" keys are read; string fields raw, others JSON.
  static ModelMeta from_onnx_props(const std::map<std::string, std::string>& props,
                                   const std::string& source);
};

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
