// ONNX Runtime backend: CPU, plus the CUDA / TensorRT execution providers where this ONNX Runtime
// has them. The headers may be older than the library (the C API is versioned): the API version
// is checked once, before the first call.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <memory>
#include <mutex>

#include "backend.hpp"
#include "check.hpp"

namespace fcn::detail {
namespace {

const char* kInput = "image";

void init_api() {
  static const OrtApi* api = [] {
    const OrtApiBase* base = OrtGetApiBase();
    const OrtApi* found = base ? base->GetApi(ORT_API_VERSION) : nullptr;
    if (found) Ort::InitApi(found);
    return found;
  }();
  if (!api) {
    const OrtApiBase* base = OrtGetApiBase();
    throw Error(std::string("the ONNX Runtime library (") +
                (base ? base->GetVersionString() : "unknown version") +
                ") is older than the headers fcn_runtime was built with (C API version " +
                std::to_string(ORT_API_VERSION) + "); use that ONNX Runtime or a newer one");
  }
}

// One ONNX Runtime environment shared by every session of the process, released with the last.
std::shared_ptr<Ort::Env> shared_env() {
  static std::mutex mutex;
  static std::weak_ptr<Ort::Env> weak;
  std::lock_guard<std::mutex> lock(mutex);
  std::shared_ptr<Ort::Env> env = weak.lock();
  if (!env) {
    env = std::make_shared<Ort::Env>(ORT_LOGGING_LEVEL_ERROR, "fcn_runtime");
    weak = env;
  }
  return env;
}

// Owns an OrtCUDAProviderOptionsV2 / OrtTensorRTProviderOptionsV2 (released by the C API).
template <typename T, void (*Release)(T*)>
struct ProviderOptions {
  T* ptr = nullptr;
  ProviderOptions() = default;
  ProviderOptions(const ProviderOptions&) = delete;
  ProviderOptions& operator=(const ProviderOptions&) = delete;
  ~ProviderOptions() {
    if (ptr) Release(ptr);
  }
};
void release_cuda(OrtCUDAProviderOptionsV2* p) { Ort::GetApi().ReleaseCUDAProviderOptions(p); }
void release_trt(OrtTensorRTProviderOptionsV2* p) { Ort::GetApi().ReleaseTensorRTProviderOptions(p); }

std::string type_name(ONNXTensorElementDataType t) {
  switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return "float32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return "float16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: return "float64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: return "uint8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8: return "int8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return "int32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return "int64";
    default: return "type " + std::to_string(static_cast<int>(t));
  }
}

struct TensorInfo {
  std::string name;
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  std::vector<int64_t> shape;      // -1 = dynamic
  std::vector<std::string> names;  // symbolic dim names ("" where none)

  std::string describe() const {
    std::string dims;
    for (size_t i = 0; i < shape.size(); ++i) {
      std::string d = shape[i] >= 0 ? std::to_string(shape[i])
                                     : (i < names.size() && !names[i].empty() ? names[i] : "?");
      dims += (i ? ", " : "") + d;
    }
    return name + " " + type_name(type) + " [" + dims + "]";
  }
};

TensorInfo tensor_info(const std::string& name, const Ort::TypeInfo& type) {
  TensorInfo info;
  info.name = name;
  if (type.GetONNXType() != ONNX_TYPE_TENSOR) return info;
  auto t = type.GetTensorTypeAndShapeInfo();
  info.type = t.GetElementType();
  info.shape = t.GetShape();
  std::vector<const char*> names(info.shape.size(), nullptr);
  if (!names.empty()) t.GetSymbolicDimensions(names.data(), names.size());
  for (const char* n : names) info.names.emplace_back(n ? n : "");
  return info;
}

class OnnxRuntimeBackend final : public Backend {
 public:
  OnnxRuntimeBackend(const std::string& path, const Options& options) : path_(path) {
    init_api();
    env_ = shared_env();
    Ort::SessionOptions session_options;
    if (options.threads < 0)
      throw Error("threads must be >= 0 (0 = ONNX Runtime's default), got " +
                  std::to_string(options.threads));
    if (options.threads > 0) session_options.SetIntraOpNumThreads(options.threads);
    // The Python runtime's default too, so both sides run the same optimized graph.
    session_options.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
    // Exact U8U8 int8 kernels where the fast U8S8 ones saturate (x86 without VNNI); the entry
    // changes nothing for float graphs, so it is set before the graph's precision is known.
    int8_ = resolve_int8_kernels(options.int8_kernels, cpu_int8());
    if (int8_.exact) session_options.AddConfigEntry("session.x64quantprecision", "1");
    add_providers(session_options, options);
    try {
      session_ = Ort::Session(*env_, path.c_str(), session_options);
    } catch (const Ort::Exception& e) {
      throw Error(path + " could not be loaded by ONNX Runtime " + Ort::GetVersionString() +
                  "; expected a valid .onnx model (" + e.what() + ")");
    }
    read_meta();
    read_io();
    memory_info_ = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  }

  const ModelMeta& meta() const override { return meta_; }

  std::string name() const override {
    std::string where;
    for (const auto& p : providers_) where += (where.empty() ? "" : ", ") + p;
    return "onnxruntime " + Ort::GetVersionString() + " (" + where + ")";
  }

  std::string describe() const override {
    std::string outs;
    for (const auto& o : outputs_) outs += (outs.empty() ? "" : ", ") + o.describe();
    return input_.describe() + " -> " + outs;
  }

  std::string int8_kernels() const override { return int8_.description; }

  bool has_scores() const override { return scores_index_ >= 0; }
  bool has_labels() const override { return labels_index_ >= 0; }

  int64_t max_batch(int64_t height, int64_t width) const override {
    const auto& s = input_.shape;
    if ((s[2] >= 0 && s[2] != height) || (s[3] >= 0 && s[3] != width))
      throw Error(path_ + ": an image of " + std::to_string(height) + "x" + std::to_string(width) +
                  " does not fit the network's input " + input_.describe() +
                  "; resize it or export the model with dynamic height and width");
    return s[0] > 0 ? s[0] : 0;
  }

  void run(const float* input, const std::array<int64_t, 4>& shape, bool want_scores,
           bool want_labels, Outputs& out) override {
    const size_t count = static_cast<size_t>(shape[0] * shape[1] * shape[2] * shape[3]);
    std::vector<const char*> names;
    if (want_scores) names.push_back(outputs_[scores_index_].name.c_str());
    if (want_labels) names.push_back(outputs_[labels_index_].name.c_str());
    std::vector<Ort::Value> results;
    try {
      Ort::Value tensor = Ort::Value::CreateTensor<float>(
          memory_info_, const_cast<float*>(input), count, shape.data(), shape.size());
      const char* input_names[] = {kInput};
      results = session_.Run(Ort::RunOptions{nullptr}, input_names, &tensor, 1, names.data(),
                             names.size());
    } catch (const Ort::Exception& e) {
      throw Error(path_ + ": ONNX Runtime failed on input " + shape_text(shape.data(), 4) + " (" +
                  e.what() + ")");
    }
    size_t k = 0;
    if (want_scores) copy_scores(results[k++], out);
    if (want_labels) copy_labels(results[k++], out);
  }

 private:
  void add_providers(Ort::SessionOptions& session_options, const Options& options) {
    const std::vector<std::string> available = Ort::GetAvailableProviders();
    auto has = [&](const std::string& p) {
      return std::find(available.begin(), available.end(), p) != available.end();
    };
    auto require = [&](const std::string& p) {
      if (has(p)) return;
      std::string list;
      for (const auto& a : available) list += (list.empty() ? "" : ", ") + a;
      throw Error("device '" + options.device + "' needs ONNX Runtime's " + p +
                  ", which this ONNX Runtime " + Ort::GetVersionString() + " lacks (it has " +
                  list + "); use device cpu, or link a GPU build of ONNX Runtime");
    };
    std::string device = options.device.empty() ? "cpu" : options.device;
    if (device == "auto") device = has("CUDAExecutionProvider") ? "cuda" : "cpu";
    const std::string id = std::to_string(options.device_id);
    const char* keys[] = {"device_id"};
    const char* values[] = {id.c_str()};
    if (device == "tensorrt") {
      require("TensorrtExecutionProvider");
      ProviderOptions<OrtTensorRTProviderOptionsV2, release_trt> trt;
      Ort::ThrowOnError(Ort::GetApi().CreateTensorRTProviderOptions(&trt.ptr));
      Ort::ThrowOnError(Ort::GetApi().UpdateTensorRTProviderOptions(trt.ptr, keys, values, 1));
      session_options.AppendExecutionProvider_TensorRT_V2(*trt.ptr);
      providers_.emplace_back("TensorrtExecutionProvider");
      device = has("CUDAExecutionProvider") ? "cuda" : "cpu";  // for nodes TensorRT leaves
    }
    if (device == "cuda") {
      require("CUDAExecutionProvider");
      ProviderOptions<OrtCUDAProviderOptionsV2, release_cuda> cuda;
      Ort::ThrowOnError(Ort::GetApi().CreateCUDAProviderOptions(&cuda.ptr));
      Ort::ThrowOnError(Ort::GetApi().UpdateCUDAProviderOptions(cuda.ptr, keys, values, 1));
      session_options.AppendExecutionProvider_CUDA_V2(*cuda.ptr);
      providers_.emplace_back("CUDAExecutionProvider");
    } else if (device != "cpu") {
      throw Error("unknown device '" + options.device + "'; expected cpu, cuda, tensorrt or auto");
    }
    providers_.emplace_back("CPUExecutionProvider");
  }

  void read_meta() {
    std::map<std::string, std::string> props;
    try {
      Ort::AllocatorWithDefaultOptions alloc;
      Ort::ModelMetadata md = session_.GetModelMetadata();
      for (const auto& key : md.GetCustomMetadataMapKeysAllocated(alloc)) {
        Ort::AllocatedStringPtr value = md.LookupCustomMetadataMapAllocated(key.get(), alloc);
        props[key.get()] = value ? value.get() : "";
      }
    } catch (const Ort::Exception& e) {
      throw Error(path_ + ": could not read the model's metadata (" + e.what() + ")");
    }
    meta_ = ModelMeta::from_onnx_props(props, path_);
  }

  void read_io() {
    Ort::AllocatorWithDefaultOptions alloc;
    std::vector<TensorInfo> inputs;
    for (size_t i = 0; i < session_.GetInputCount(); ++i)
      inputs.push_back(tensor_info(session_.GetInputNameAllocated(i, alloc).get(),
                                   session_.GetInputTypeInfo(i)));
    for (size_t i = 0; i < session_.GetOutputCount(); ++i)
      outputs_.push_back(tensor_info(session_.GetOutputNameAllocated(i, alloc).get(),
                                     session_.GetOutputTypeInfo(i)));
    std::string all_inputs;
    for (const auto& t : inputs) all_inputs += (all_inputs.empty() ? "" : ", ") + t.describe();
    if (inputs.size() != 1 || inputs[0].name != kInput)
      throw Error(path_ + ": the network's inputs are " + all_inputs +
                  "; expected one input 'image' float32 [batch, 3, height, width]");
    input_ = inputs[0];
    const auto& s = input_.shape;
    if (input_.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || s.size() != 4 ||
        (s[1] >= 0 && s[1] != 3))
      throw Error(path_ + ": input " + input_.describe() +
                  " breaks the contract; expected image float32 [batch, 3, height, width]");
    for (size_t i = 0; i < outputs_.size(); ++i) {
      const TensorInfo& o = outputs_[i];
      if (o.name == "scores") {
        if (o.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || o.shape.size() != 4)
          throw Error(path_ + ": output " + o.describe() +
                      " breaks the contract; expected scores float32 [batch, classes, height, width]");
        scores_index_ = static_cast<int>(i);
      } else if (o.name == "labels") {
        const bool int_type = o.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 ||
                              o.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 ||
                              o.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
        if (!int_type || o.shape.size() != 3)
          throw Error(path_ + ": output " + o.describe() +
                      " breaks the contract; expected labels uint8 [batch, height, width]");
        labels_index_ = static_cast<int>(i);
      }
    }
    if (scores_index_ < 0 && labels_index_ < 0)
      throw Error(path_ + ": the network's outputs are " + describe().substr(describe().find("-> ") + 3) +
                  "; expected 'scores' float32 [batch, classes, height, width] and/or 'labels' "
                  "uint8 [batch, height, width]");
  }

  void copy_scores(const Ort::Value& v, Outputs& out) const {
    const std::vector<int64_t> shape = v.GetTensorTypeAndShapeInfo().GetShape();
    FCN_CHECK(shape.size() == 4, path_ + ": output 'scores' is not 4-D");
    std::copy(shape.begin(), shape.end(), out.scores_shape.begin());
    const float* data = v.GetTensorData<float>();
    out.scores.assign(data, data + shape[0] * shape[1] * shape[2] * shape[3]);
  }

  void copy_labels(const Ort::Value& v, Outputs& out) const {
    auto info = v.GetTensorTypeAndShapeInfo();
    const std::vector<int64_t> shape = info.GetShape();
    FCN_CHECK(shape.size() == 3, path_ + ": output 'labels' is not 3-D");
    std::copy(shape.begin(), shape.end(), out.labels_shape.begin());
    const size_t n = info.GetElementCount();
    out.labels.resize(n);
    auto narrow = [&](const auto* data) {
      for (size_t i = 0; i < n; ++i) {
        if (data[i] < 0 || data[i] > 255)
          throw Error(path_ + ": output 'labels' holds " + std::to_string(data[i]) +
                      ", outside 0..255");
        out.labels[i] = static_cast<uint8_t>(data[i]);
      }
    };
    switch (info.GetElementType()) {
      case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: {
        const uint8_t* data = v.GetTensorData<uint8_t>();
        std::copy(data, data + n, out.labels.begin());
        break;
      }
      case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: narrow(v.GetTensorData<int32_t>()); break;
      default: narrow(v.GetTensorData<int64_t>()); break;
    }
  }

  std::string path_;
  std::shared_ptr<Ort::Env> env_;
  Ort::Session session_{nullptr};
  Ort::MemoryInfo memory_info_{nullptr};
  std::vector<std::string> providers_;
  Int8Choice int8_;
  ModelMeta meta_;
  TensorInfo input_;
  std::vector<TensorInfo> outputs_;
  int scores_index_ = -1;
  int labels_index_ = -1;
};

}  // namespace

std::unique_ptr<Backend> open_onnxruntime(const std::string& path, const Options& options) {
  try {
    return std::make_unique<OnnxRuntimeBackend>(path, options);
  } catch (const Ort::Exception& e) {  // session options, providers: name the model
    throw Error(path + ": ONNX Runtime " + Ort::GetVersionString() + ": " + e.what());
  }
}

}  // namespace fcn::detail
