// Writes tiny ONNX models for the C++ tests (protobuf wire format by hand, no dependencies):
// image -> Conv 1x1 (C x 3 weights, bias) -> "scores" [-> ArgMax -> Cast uint8 -> "labels"],
// with fcn-deploy metadata in metadata_props. Lets the tests hand-compute every label.
// Multi-input / multi-head models: the inputs concatenated along channels, one 1x1 Conv per
// head (scores_<head> [-> labels_<head>]).
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "testing.hpp"

namespace fcn_test {

class Proto {  // one protobuf message being encoded
 public:
  Proto& varint_field(int field, uint64_t v) {
    key(field, 0);
    varint(v);
    return *this;
  }
  Proto& bytes_field(int field, const std::string& bytes) {
    key(field, 2);
    varint(bytes.size());
    out_ += bytes;
    return *this;
  }
  Proto& message(int field, const Proto& m) { return bytes_field(field, m.str()); }
  Proto& float_field(int field, float f) {
    key(field, 5);
    char b[4];
    std::memcpy(b, &f, 4);  // little-endian hosts only (x86-64, aarch64)
    out_.append(b, 4);
    return *this;
  }
  const std::string& str() const { return out_; }

 private:
  void key(int field, int wire) { varint(static_cast<uint64_t>(field) << 3 | static_cast<uint64_t>(wire)); }
  void varint(uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<char>(v));
  }
  std::string out_;
};

enum : int { kFloat = 1, kUint8 = 2, kInt64 = 7 };  // TensorProto.DataType

inline Proto value_info(const std::string& name, int elem_type, const std::vector<int64_t>& dims,
                        const std::vector<std::string>& dim_names) {
  Proto shape;
  for (size_t i = 0; i < dims.size(); ++i) {
    Proto dim;
    if (dims[i] >= 0)
      dim.varint_field(1, static_cast<uint64_t>(dims[i]));
    else
      dim.bytes_field(2, dim_names[i]);
    shape.message(1, dim);
  }
  Proto tensor;
  tensor.varint_field(1, static_cast<uint64_t>(elem_type)).message(2, shape);
  Proto type;
  type.message(1, tensor);
  Proto vi;
  vi.bytes_field(1, name).message(2, type);
  return vi;
}

inline Proto float_tensor(const std::string& name, const std::vector<int64_t>& dims,
                          const std::vector<float>& values) {
  Proto t;
  for (int64_t d : dims) t.varint_field(1, static_cast<uint64_t>(d));
  t.varint_field(2, kFloat).bytes_field(8, name);
  t.bytes_field(9, std::string(reinterpret_cast<const char*>(values.data()), values.size() * 4));
  return t;
}

inline Proto node(const std::string& op, const std::vector<std::string>& in,
                  const std::vector<std::string>& out, const std::vector<Proto>& attributes = {}) {
  Proto n;
  for (const auto& i : in) n.bytes_field(1, i);
  for (const auto& o : out) n.bytes_field(2, o);
  n.bytes_field(3, op + "_" + out[0]).bytes_field(4, op);
  for (const auto& a : attributes) n.message(5, a);
  return n;
}

inline Proto int_attribute(const std::string& name, int64_t v) {
  Proto a;
  a.bytes_field(1, name).varint_field(3, static_cast<uint64_t>(v)).varint_field(20, 2);
  return a;
}

/// One head of a multi-head (or multi-input) model: a 1x1 conv over all input channels.
struct HeadDef {
  std::string scores_name, labels_name;
  int classes = 0;
  std::vector<float> weight;  // classes x (all input channels), row-major
  std::vector<float> bias;    // classes
};

struct ModelSpec {
  std::vector<std::pair<std::string, int>> inputs;  // (name, channels); empty: input_name, 3
  std::vector<HeadDef> heads;                        // empty: one head, the fields below
  int classes = 3;
  std::vector<float> weight;  // classes x 3, row-major
  std::vector<float> bias;    // classes
  bool scores = true;
  bool labels = false;
  std::string input_name = "image";
  std::string scores_name = "scores";
  std::vector<int64_t> input_dims = {-1, 3, -1, -1};  // -1: dynamic ("batch", "height", "width")
  std::map<std::string, std::string> props;           // metadata_props

  // Identity 1x1 conv over 3 classes: scores are exactly the preprocessed input.
  static ModelSpec identity(const std::string& channel_order = "BGR",
                            const std::string& mean = "[10.0, 20.0, 30.0]") {
    ModelSpec s;
    s.weight = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    s.bias = {0, 0, 0};
    s.props = metadata(3, channel_order, mean);
    return s;
  }

  // The keys fcn_deploy.meta.ModelMeta.to_onnx_props() writes.
  static std::map<std::string, std::string> metadata(int classes, const std::string& channel_order,
                                                     const std::string& mean,
                                                     const std::string& outputs = "scores") {
    std::string names = "[", palette = "[";
    for (int c = 0; c < classes; ++c) {
      names += (c ? ", " : "") + std::string("\"class_") + std::to_string(c) + "\"";
      palette += (c ? ", " : "") + std::string("[") + std::to_string(c * 40) + ", " +
                 std::to_string(255 - c * 40) + ", " + std::to_string(c * 20) + "]";
    }
    return {{"fcn.arch", "identity_test"},
            {"fcn.num_classes", std::to_string(classes)},
            {"fcn.class_names", names + "]"},
            {"fcn.palette", palette + "]"},
            {"fcn.mean", mean},
            {"fcn.ignore_label", "255"},
            {"fcn.channel_order", channel_order},
            {"fcn.input_layout", "NCHW"},
            {"fcn.precision", "fp32"},
            {"fcn.outputs", outputs},
            {"fcn.arch_kwargs", "{}"},
            {"fcn.toolkit_version", "test"},
            {"fcn.extra", "{}"},
            {"producer.note", "not ours"}};
  }
};

inline std::string make_multi_onnx(const ModelSpec& s);
inline std::string model_bytes(const Proto& graph, const std::map<std::string, std::string>& props);

inline std::string make_onnx(const ModelSpec& s) {
  if (!s.inputs.empty() || !s.heads.empty()) return make_multi_onnx(s);
  const int64_t c = s.classes;
  Proto graph;
  const std::string scores = s.scores ? s.scores_name : "raw_scores";
  graph.message(1, node("Conv", {s.input_name, "W", "B"}, {scores}));
  if (s.labels) {
    graph.message(1, node("ArgMax", {scores}, {"argmax"},
                          {int_attribute("axis", 1), int_attribute("keepdims", 0)}));
    graph.message(1, node("Cast", {"argmax"}, {"labels"}, {int_attribute("to", kUint8)}));
  }
  graph.bytes_field(2, "fcn_test");
  graph.message(5, float_tensor("W", {c, 3, 1, 1}, s.weight));
  graph.message(5, float_tensor("B", {c}, s.bias));
  graph.message(11, value_info(s.input_name, kFloat, s.input_dims, {"batch", "", "height", "width"}));
  if (s.scores)
    graph.message(12, value_info(scores, kFloat, {-1, c, -1, -1}, {"batch", "", "height", "width"}));
  if (s.labels) graph.message(12, value_info("labels", kUint8, {-1, -1, -1}, {"batch", "height", "width"}));

  return model_bytes(graph, s.props);
}

inline std::string model_bytes(const Proto& graph, const std::map<std::string, std::string>& props) {
  Proto model;
  model.varint_field(1, 8);  // ir_version
  model.bytes_field(2, "fcn_cpp_tests");
  model.message(7, graph);
  Proto opset;
  opset.bytes_field(1, "").varint_field(2, 17);
  model.message(8, opset);
  for (const auto& [k, v] : props) {
    Proto entry;
    entry.bytes_field(1, k).bytes_field(2, v);
    model.message(14, entry);
  }
  return model.str();
}

inline std::string make_multi_onnx(const ModelSpec& s) {
  const std::vector<std::pair<std::string, int>> inputs =
      s.inputs.empty() ? std::vector<std::pair<std::string, int>>{{s.input_name, 3}} : s.inputs;
  std::vector<HeadDef> heads = s.heads;
  if (heads.empty()) heads.push_back({s.scores_name, "labels", s.classes, s.weight, s.bias});
  int64_t channels = 0;
  for (const auto& in : inputs) channels += in.second;
  Proto graph;
  std::string x = inputs[0].first;
  if (inputs.size() > 1) {
    std::vector<std::string> names;
    for (const auto& in : inputs) names.push_back(in.first);
    x = "concat";
    graph.message(1, node("Concat", names, {x}, {int_attribute("axis", 1)}));
  }
  for (const HeadDef& h : heads) {
    graph.message(1, node("Conv", {x, "W_" + h.scores_name, "B_" + h.scores_name}, {h.scores_name}));
    if (s.labels) {
      graph.message(1, node("ArgMax", {h.scores_name}, {"argmax_" + h.scores_name},
                            {int_attribute("axis", 1), int_attribute("keepdims", 0)}));
      graph.message(1, node("Cast", {"argmax_" + h.scores_name}, {h.labels_name},
                            {int_attribute("to", kUint8)}));
    }
  }
  graph.bytes_field(2, "fcn_test_multi");
  for (const HeadDef& h : heads) {
    graph.message(5, float_tensor("W_" + h.scores_name, {h.classes, channels, 1, 1}, h.weight));
    graph.message(5, float_tensor("B_" + h.scores_name, {h.classes}, h.bias));
  }
  for (const auto& in : inputs)
    graph.message(11, value_info(in.first, kFloat, {-1, in.second, -1, -1},
                                 {"batch", "", "height", "width"}));
  for (const HeadDef& h : heads)
    graph.message(12, value_info(h.scores_name, kFloat, {-1, h.classes, -1, -1},
                                 {"batch", "", "height", "width"}));
  if (s.labels)
    for (const HeadDef& h : heads)
      graph.message(12, value_info(h.labels_name, kUint8, {-1, -1, -1}, {"batch", "height", "width"}));
  return model_bytes(graph, s.props);
}

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// Writes the model for ``spec`` as ``name`` in the run's scratch folder; returns its path.
inline std::string save_onnx(const ModelSpec& spec, const std::string& name) {
  const std::string path = temp_dir() + "/" + name;
  write_file(path, make_onnx(spec));
  return path;
}

}  // namespace fcn_test
