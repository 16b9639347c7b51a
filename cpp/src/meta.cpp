// ModelMeta from JSON (plan sidecars) and ONNX metadata_props, with the Python side's checks.
#include "fcn/meta.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>

#include <nlohmann/json.hpp>

#include "fcn/error.hpp"

namespace fcn {
namespace {

using nlohmann::json;

const char* kOnnxPrefix = "fcn.";
// Fields written as plain strings into metadata_props (everything else is JSON).
const std::set<std::string> kStringFields = {"arch", "channel_order", "input_layout",
                                             "precision", "outputs", "toolkit_version"};

[[noreturn]] void fail(const std::string& source, const std::string& message) {
  throw Error(source + ": metadata " + message);
}

std::string type_error(const std::string& field, const std::string& expected, const json& v) {
  std::string text = v.dump();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return "field '" + field + "' must be " + expected + ", got " + text;
}

int get_int(const json& obj, const std::string& field, const std::string& source) {
  const json& v = obj.at(field);
  if (v.is_number_integer()) return v.get<int>();
  if (v.is_number_float() && v.get<double>() == static_cast<int>(v.get<double>()))
    return static_cast<int>(v.get<double>());
  fail(source, type_error(field, "an integer", v));
}

std::string get_string(const json& obj, const std::string& field, const std::string& source) {
  const json& v = obj.at(field);
  if (!v.is_string()) fail(source, type_error(field, "a string", v));
  return v.get<std::string>();
}

ModelMeta from_object(const json& obj, const std::string& source) {
  if (!obj.is_object()) fail(source, "must be a JSON object, got " + obj.dump().substr(0, 60));
  std::vector<std::string> missing;
  for (const char* key : {"arch", "num_classes", "class_names", "palette", "mean"})
    if (!obj.contains(key)) missing.emplace_back(key);
  if (!missing.empty()) {
    std::string list;
    for (const auto& m : missing) list += (list.empty() ? "" : ", ") + m;
    fail(source, "is missing " + list + " (expected the fields of fcn_deploy's ModelMeta)");
  }
  ModelMeta meta;
  meta.arch = get_string(obj, "arch", source);
  meta.num_classes = get_int(obj, "num_classes", source);

  const json& names = obj.at("class_names");
  if (!names.is_array()) fail(source, type_error("class_names", "a list of strings", names));
  for (const json& n : names) {
    if (!n.is_string()) fail(source, type_error("class_names", "a list of strings", names));
    meta.class_names.push_back(n.get<std::string>());
  }

  const json& palette = obj.at("palette");
  if (!palette.is_array()) fail(source, type_error("palette", "a list of [r, g, b]", palette));
  for (const json& c : palette) {
    if (!c.is_array() || c.size() != 3)
      fail(source, type_error("palette", "a list of [r, g, b]", c));
    std::array<int, 3> rgb{};
    for (int i = 0; i < 3; ++i) {
      if (!c[i].is_number_integer() || c[i].get<int>() < 0 || c[i].get<int>() > 255)
        fail(source, type_error("palette", "a list of [r, g, b] in 0..255", c));
      rgb[i] = c[i].get<int>();
    }
    meta.palette.push_back(rgb);
  }

  const json& mean = obj.at("mean");
  if (!mean.is_array() || mean.size() != 3 ||
      !std::all_of(mean.begin(), mean.end(), [](const json& m) { return m.is_number(); }))
    fail(source, type_error("mean", "a list of 3 numbers", mean));
  for (int i = 0; i < 3; ++i) meta.mean[i] = mean[i].get<double>();

  if (obj.contains("ignore_label")) meta.ignore_label = get_int(obj, "ignore_label", source);
  if (obj.contains("channel_order")) meta.channel_order = get_string(obj, "channel_order", source);
  if (obj.contains("input_layout")) meta.input_layout = get_string(obj, "input_layout", source);
  if (obj.contains("precision")) meta.precision = get_string(obj, "precision", source);
  if (obj.contains("outputs")) meta.outputs = get_string(obj, "outputs", source);
  if (obj.contains("toolkit_version") && obj.at("toolkit_version").is_string())
    meta.toolkit_version = obj.at("toolkit_version").get<std::string>();
  if (obj.contains("tiling")) {
    const json& t = obj.at("tiling");
    if (!t.is_object()) fail(source, type_error("tiling", "an object", t));
    for (const char* key : {"stride", "context_before", "context_after"})
      if (!t.contains(key)) fail(source, std::string("tiling is missing ") + key);
    meta.tiling.stride = get_int(t, "stride", source);
    meta.tiling.context_before = get_int(t, "context_before", source);
    meta.tiling.context_after = get_int(t, "context_after", source);
    if (meta.tiling.stride < 1 || meta.tiling.context_before < 0 || meta.tiling.context_after < 0)
      fail(source, type_error("tiling", "stride >= 1 and contexts >= 0", t));
  }
  meta.validate(source);
  return meta;
}

template <typename T>
std::string join(const std::vector<T>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ", ") + std::string(i);
  return out;
}

}  // namespace

void ModelMeta::validate(const std::string& source) const {
  if (num_classes < 1)
    fail(source, "num_classes must be >= 1, got " + std::to_string(num_classes));
  if (num_classes > 256)
    fail(source, "num_classes is " + std::to_string(num_classes) +
                     "; this runtime writes uint8 label maps and supports at most 256 classes");
  if (static_cast<int>(class_names.size()) != num_classes)
    fail(source, "has " + std::to_string(class_names.size()) + " class names for " +
                     std::to_string(num_classes) + " classes; expected one name per class");
  if (static_cast<int>(palette.size()) < num_classes)
    fail(source, "palette has " + std::to_string(palette.size()) + " colours for " +
                     std::to_string(num_classes) + " classes");
  if (channel_order != "BGR" && channel_order != "RGB")
    fail(source, "channel_order must be BGR or RGB, got '" + channel_order + "'");
  if (input_layout != "NCHW")
    fail(source, "input_layout is '" + input_layout + "'; this runtime feeds NCHW inputs");
  const std::vector<const char*> precisions = {"fp32", "fp16", "int8"};
  if (std::find(precisions.begin(), precisions.end(), precision) == precisions.end())
    fail(source, "precision must be one of " + join(precisions) + ", got '" + precision + "'");
  const std::vector<const char*> kinds = {"scores", "labels", "both"};
  if (std::find(kinds.begin(), kinds.end(), outputs) == kinds.end())
    fail(source, "outputs must be one of " + join(kinds) + ", got '" + outputs + "'");
}

ModelMeta ModelMeta::from_json(const std::string& json_text, const std::string& source) {
  json obj;
  try {
    obj = json::parse(json_text);
  } catch (const json::parse_error& e) {
    throw Error(source + " is not valid JSON (" + e.what() + ")");
  }
  try {
    return from_object(obj, source);
  } catch (const json::exception& e) {  // a type mismatch the checks above did not name
    throw Error(source + ": metadata has an unexpected value (" + e.what() + ")");
  }
}

ModelMeta ModelMeta::from_onnx_props(const std::map<std::string, std::string>& props,
                                     const std::string& source) {
  json obj = json::object();
  const std::string prefix = kOnnxPrefix;
  for (const auto& [key, value] : props) {
    if (key.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string field = key.substr(prefix.size());
    if (kStringFields.count(field)) {
      obj[field] = value;
      continue;
    }
    try {
      obj[field] = json::parse(value);
    } catch (const json::parse_error&) {
      throw Error(source + ": ONNX metadata '" + key + "' is not valid JSON: '" +
                  value.substr(0, 60) + "'");
    }
  }
  if (obj.empty())
    throw Error(source + ": the ONNX file carries no fcn-deploy metadata (no 'fcn.*' "
                         "metadata_props); export it with fcn-deploy or add them with "
                         "fcn_deploy.meta.write_onnx_meta");
  try {
    return from_object(obj, source);
  } catch (const json::exception& e) {
    throw Error(source + ": metadata has an unexpected value (" + e.what() + ")");
  }
}

ModelMeta read_plan_meta(const std::string& plan_path, std::string* tensorrt_version) {
  PlanInfo info;
  ModelMeta meta = read_plan_meta(plan_path, &info);
  if (tensorrt_version) *tensorrt_version = info.tensorrt_version;
  return meta;
}

ModelMeta read_plan_meta(const std::string& plan_path, PlanInfo* info) {
  const std::string sidecar = plan_path + ".json";
  std::error_code ec;
  if (!std::filesystem::is_regular_file(sidecar, ec))
    throw Error("engine " + plan_path + " has no sidecar " +
                std::filesystem::path(sidecar).filename().string() +
                "; it holds the TensorRT version, profiles and class metadata. Build engines "
                "with fcn-build");
  std::ifstream in(sidecar, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  json data;
  try {
    data = json::parse(text);
  } catch (const json::parse_error& e) {
    throw Error("sidecar " + sidecar + " is not valid JSON (" + e.what() +
                "); rebuild the engine with fcn-build");
  }
  if (!data.is_object() || !data.contains("meta"))
    throw Error("sidecar " + sidecar + " has no \"meta\" object; rebuild the engine with fcn-build");
  if (info) {
    const json& v = data.value("tensorrt_version", json());
    info->tensorrt_version = v.is_string() ? v.get<std::string>() : std::string();
    const json& options = data.value("build_options", json::object());
    const json& vc = options.is_object() ? options.value("version_compatible", json()) : json();
    if (!vc.is_null() && !vc.is_boolean())
      throw Error("sidecar " + sidecar + ": build_options.version_compatible is " + vc.dump() +
                  "; expected true or false. Rebuild the engine with fcn-build");
    info->version_compatible = vc.is_boolean() && vc.get<bool>();
  }
  try {
    return from_object(data.at("meta"), "sidecar " + sidecar);
  } catch (const json::exception& e) {
    throw Error("sidecar " + sidecar + ": metadata has an unexpected value (" + e.what() + ")");
  }
}

}  // namespace fcn
