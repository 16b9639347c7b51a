// ModelMeta from JSON (plan sidecars) and ONNX metadata_props, with the Python side's checks.
#include "fcn/meta.hpp"

#include <algorithm>
#include <cctype>
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

std::vector<std::string> get_names(const json& names, const std::string& field,
                                   const std::string& source) {
  if (!names.is_array()) fail(source, type_error(field, "a list of strings", names));
  std::vector<std::string> out;
  for (const json& n : names) {
    if (!n.is_string()) fail(source, type_error(field, "a list of strings", names));
    out.push_back(n.get<std::string>());
  }
  return out;
}

std::vector<std::array<int, 3>> get_palette(const json& palette, const std::string& field,
                                            const std::string& source) {
  if (!palette.is_array()) fail(source, type_error(field, "a list of [r, g, b]", palette));
  std::vector<std::array<int, 3>> out;
  for (const json& c : palette) {
    if (!c.is_array() || c.size() != 3) fail(source, type_error(field, "a list of [r, g, b]", c));
    std::array<int, 3> rgb{};
    for (int i = 0; i < 3; ++i) {
      if (!c[i].is_number_integer() || c[i].get<int>() < 0 || c[i].get<int>() > 255)
        fail(source, type_error(field, "a list of [r, g, b] in 0..255", c));
      rgb[i] = c[i].get<int>();
    }
    out.push_back(rgb);
  }
  return out;
}

// An integer (or a float with an integral value, as JSON writers may give) or nothing.
bool as_int(const json& v, int& out) {
  if (v.is_number_integer()) {
    out = v.get<int>();
    return true;
  }
  if (v.is_number_float() && v.get<double>() == static_cast<int>(v.get<double>())) {
    out = static_cast<int>(v.get<double>());
    return true;
  }
  return false;
}

// The defaults of a known modality (fcn_deploy/meta.py _MODALITY_DEFAULTS; the means are
// fcn_deploy.constants' NYUD_HHA_MEAN and NYUD_LOG_DEPTH_MEAN).
const double kNyudHhaMean[3] = {118.477, 94.076, 132.431};
const double kNyudLogDepthMean = 7.844;

// One entry of "inputs" completed as ModelMeta._complete_input does: the defaults of its name
// (``image``: the net's mean and channel order; ``hha`` / ``depth``: NYUDv2's), the entry's own
// values on top.
InputSpec complete_input(const json& raw, const ModelMeta& meta, const std::string& source) {
  if (!raw.is_object()) fail(source, type_error("inputs", "a list of objects", raw));
  const json name = raw.value("name", json());
  if (!name.is_string())
    fail(source, "input name " + name.dump() + " must be a lower-case identifier (image, hha, depth)");
  InputSpec spec;
  spec.name = name.get<std::string>();
  spec.channel_order = "BGR";
  spec.encoding = "image";
  if (spec.name == kDefaultInput) {
    spec.mean.assign(meta.mean.begin(), meta.mean.end());
    spec.channel_order = meta.channel_order;
  } else if (spec.name == "hha") {
    spec.mean.assign(kNyudHhaMean, kNyudHhaMean + 3);
    spec.channel_order = "RGB";
  } else if (spec.name == "depth") {
    spec.mean = {kNyudLogDepthMean};
    spec.encoding = "log_depth";
  }
  const std::string what = "input '" + spec.name + "'";
  const json channels = raw.value("channels", json());
  if (!as_int(channels, spec.channels))
    fail(source, what + " needs channels >= 1, got " + channels.dump());
  if (raw.contains("mean")) {
    const json& mean = raw.at("mean");
    if (!mean.is_array() ||
        !std::all_of(mean.begin(), mean.end(), [](const json& m) { return m.is_number(); }))
      fail(source, what + " needs " + std::to_string(spec.channels) + " mean value(s), got " +
                       mean.dump());
    spec.mean.clear();
    for (const json& m : mean) spec.mean.push_back(m.get<double>());
  }
  for (const char* key : {"channel_order", "encoding"}) {
    if (!raw.contains(key)) continue;
    const json& v = raw.at(key);
    if (!v.is_string()) fail(source, what + " has " + key + " " + v.dump() + "; expected a string");
    (std::string(key) == "encoding" ? spec.encoding : spec.channel_order) = v.get<std::string>();
  }
  return spec;
}

// One entry of "heads" completed as ModelMeta._complete_head does: the first head takes the
// net's class names and palette, the others class_<i> names and VOC colours, unless given.
HeadSpec complete_head(const json& raw, const ModelMeta& meta, bool first,
                       const std::string& source) {
  if (!raw.is_object()) fail(source, type_error("heads", "a list of objects", raw));
  const json name = raw.value("name", json());
  if (!name.is_string()) fail(source, "head name " + name.dump() + " must be a lower-case identifier");
  HeadSpec head;
  head.name = name.get<std::string>();
  const json classes = raw.value("num_classes", json());
  if (!as_int(classes, head.num_classes))
    fail(source, "head '" + head.name + "' needs num_classes >= 1, got " + classes.dump());
  if (first) {
    head.class_names = meta.class_names;
    head.palette = meta.palette;
  } else {
    for (int i = 0; i < head.num_classes; ++i) head.class_names.push_back("class_" + std::to_string(i));
    head.palette = voc_palette(std::max(head.num_classes, 1));
  }
  const std::string field = "heads[" + head.name + "].";
  if (raw.contains("class_names"))
    head.class_names = get_names(raw.at("class_names"), field + "class_names", source);
  if (raw.contains("palette")) head.palette = get_palette(raw.at("palette"), field + "palette", source);
  head.scores_output = "scores_" + head.name;
  head.labels_output = "labels_" + head.name;
  return head;
}

// Python's str.isidentifier() and str.islower() for ASCII names: image, hha, depth, sem, geo.
bool lower_identifier(const std::string& name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  bool cased = false;
  for (const char ch : name) {
    if (ch >= 'a' && ch <= 'z')
      cased = true;
    else if (!(ch == '_' || (ch >= '0' && ch <= '9')))
      return false;
  }
  return cased;
}

std::string names_text(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "'" : ", '") + n + "'";
  return "[" + out + "]";
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

  meta.class_names = get_names(obj.at("class_names"), "class_names", source);

  meta.palette = get_palette(obj.at("palette"), "palette", source);

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
  // "inputs" / "heads" (checkpoints of 0.x kept them in "extra", as ModelMeta.from_dict reads)
  for (const char* key : {"inputs", "heads"}) {
    json list = obj.value(key, json::array());
    if ((list.is_null() || (list.is_array() && list.empty())) && obj.contains("extra") &&
        obj.at("extra").is_object() && obj.at("extra").value(key, json()).is_array())
      list = obj.at("extra").at(key);
    if (list.is_null()) continue;
    if (!list.is_array()) fail(source, type_error(key, "a list of objects", list));
    for (size_t k = 0; k < list.size(); ++k) {
      if (std::string(key) == "inputs")
        meta.inputs.push_back(complete_input(list[k], meta, source));
      else
        meta.heads.push_back(complete_head(list[k], meta, k == 0, source));
    }
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

// ModelMeta._validate_inputs: unique lower-case names, channels that the encoding makes, one
// mean value per channel, BGR or RGB.
void validate_inputs(const ModelMeta& meta, const std::string& source) {
  std::vector<std::string> names;
  for (const InputSpec& s : meta.inputs) names.push_back(s.name);
  if (std::set<std::string>(names.begin(), names.end()).size() != names.size())
    fail(source, "input names must be unique, got " + names_text(names));
  for (const InputSpec& s : meta.inputs) {
    const std::string what = "input '" + s.name + "'";
    if (!lower_identifier(s.name))
      fail(source, "input name '" + s.name + "' must be a lower-case identifier (image, hha, depth)");
    if (s.channels < 1)
      fail(source, what + " needs channels >= 1, got " + std::to_string(s.channels));
    if (s.encoding != "image" && s.encoding != "log_depth")
      fail(source, what + " has encoding '" + s.encoding + "'; expected one of image, log_depth");
    const int wanted = s.encoding == "image" ? 3 : 1;
    if (s.channels != wanted)
      fail(source, what + " (" + s.encoding + ") has " + std::to_string(s.channels) +
                       " channels; that encoding makes " + std::to_string(wanted));
    if (static_cast<int>(s.mean.size()) != s.channels)
      fail(source, what + " needs " + std::to_string(s.channels) + " mean value(s), got " +
                       std::to_string(s.mean.size()));
    if (s.channel_order != "BGR" && s.channel_order != "RGB")
      fail(source, what + " channel_order must be BGR or RGB, got '" + s.channel_order + "'");
  }
}

// ModelMeta._validate_heads: two or more uniquely named heads, the first being num_classes.
void validate_heads(const ModelMeta& meta, const std::string& source) {
  if (meta.heads.empty()) return;
  std::vector<std::string> names;
  for (const HeadSpec& h : meta.heads) names.push_back(h.name);
  if (names.size() < 2 || std::set<std::string>(names.begin(), names.end()).size() != names.size())
    fail(source, "heads lists the heads of a multi-head net (two or more, unique names), got " +
                     names_text(names));
  for (size_t k = 0; k < meta.heads.size(); ++k) {
    const HeadSpec& h = meta.heads[k];
    const std::string what = "head '" + h.name + "'";
    if (!lower_identifier(h.name))
      fail(source, "head name '" + h.name + "' must be a lower-case identifier");
    if (h.num_classes < 1)
      fail(source, what + " needs num_classes >= 1, got " + std::to_string(h.num_classes));
    if (h.num_classes > 256)
      fail(source, what + " has " + std::to_string(h.num_classes) +
                       " classes; this runtime writes uint8 label maps and supports at most 256");
    if (k == 0 && h.num_classes != meta.num_classes)
      fail(source, "the first head '" + h.name + "' has " + std::to_string(h.num_classes) +
                       " classes but num_classes is " + std::to_string(meta.num_classes) +
                       "; they are the same head");
    if (static_cast<int>(h.class_names.size()) != h.num_classes)
      fail(source, what + " has " + std::to_string(h.class_names.size()) + " class names for " +
                       std::to_string(h.num_classes) + " classes");
    if (static_cast<int>(h.palette.size()) < h.num_classes)
      fail(source, what + " has " + std::to_string(h.palette.size()) + " colours for " +
                       std::to_string(h.num_classes) + " classes");
    if (h.scores_output != "scores_" + h.name || h.labels_output != "labels_" + h.name)
      fail(source, what + " has outputs '" + h.scores_output + "' / '" + h.labels_output +
                       "'; a multi-head net's are scores_<head> / labels_<head>");
  }
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
  validate_inputs(*this, source);
  validate_heads(*this, source);
}

std::vector<InputSpec> ModelMeta::input_specs() const {
  if (!inputs.empty()) return inputs;
  InputSpec image;
  image.name = kDefaultInput;
  image.channels = 3;
  image.mean.assign(mean.begin(), mean.end());
  image.channel_order = channel_order;
  image.encoding = "image";
  return {image};
}

std::vector<std::string> ModelMeta::input_names() const {
  std::vector<std::string> out;
  for (const InputSpec& s : input_specs()) out.push_back(s.name);
  return out;
}

std::vector<HeadSpec> ModelMeta::head_specs() const {
  if (!heads.empty()) return heads;
  HeadSpec head;
  head.name = kSingleHead;
  head.num_classes = num_classes;
  head.class_names = class_names;
  head.palette = palette;
  return {head};
}

std::vector<std::string> ModelMeta::output_names(const std::string& kind) const {
  const std::string k = kind.empty() ? outputs : kind;
  std::vector<std::string> out;
  const std::vector<HeadSpec> all = head_specs();
  if (k == "scores" || k == "both")
    for (const HeadSpec& h : all) out.push_back(h.scores_output);
  if (k == "labels" || k == "both")
    for (const HeadSpec& h : all) out.push_back(h.labels_output);
  return out;
}

ModelMeta ModelMeta::for_head(const std::string& head) const {
  for (const HeadSpec& h : head_specs()) {
    if (h.name != head) continue;
    ModelMeta out = *this;
    out.num_classes = h.num_classes;
    out.class_names = h.class_names;
    out.palette = h.palette;
    return out;
  }
  std::string names;
  for (const HeadSpec& h : head_specs()) names += (names.empty() ? "" : ", ") + h.name;
  throw Error("no head '" + head + "' in the model's metadata; its heads are " + names);
}

std::vector<std::array<int, 3>> voc_palette(int num_colors) {
  std::vector<std::array<int, 3>> out;
  for (int i = 0; i < num_colors; ++i) {
    int r = 0, g = 0, b = 0, c = i;
    for (int j = 0; j < 8; ++j) {
      r |= ((c >> 0) & 1) << (7 - j);
      g |= ((c >> 1) & 1) << (7 - j);
      b |= ((c >> 2) & 1) << (7 - j);
      c >>= 3;
    }
    out.push_back({r, g, b});
  }
  return out;
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
