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
    std::string ins;
    for (const auto& i : inputs_) ins += (ins.empty() ? "" : ", ") + i.describe();
    return ins + " -> " + outs;
  }

  std::string int8_kernels() const override { return int8_.description; }

  bool has_output(const std::string& name) const override {
    return std::any_of(outputs_.begin(), outputs_.end(),
                       [&](const TensorInfo& o) { return o.name == name; });
  }

  int64_t max_batch(int64_t height, int64_t width) const override {
    int64_t batch = 0;
    for (const TensorInfo& input : inputs_) {
      const auto& s = input.shape;
      if ((s[2] >= 0 && s[2] != height) || (s[3] >= 0 && s[3] != width))
        throw Error(path_ + ": an image of " + std::to_string(height) + "x" + std::to_string(width) +
                    " does not fit the network's input " + input.describe() +
                    "; resize it or export the model with dynamic height and width");
      if (s[0] > 0) batch = batch > 0 ? std::min(batch, s[0]) : s[0];
    }
    return batch;
  }

  void run(const std::vector<InputTensor>& inputs, const std::vector<std::string>& outputs,
           Outputs& out) override {
    std::vector<const char*> input_names, output_names;
    for (const TensorInfo& i : inputs_) input_names.push_back(i.name.c_str());
    for (const std::string& o : outputs) output_names.push_back(o.c_str());
    std::vector<Ort::Value> results;
    try {
      std::vector<Ort::Value> tensors;
      for (const InputTensor& t : inputs) {
        const auto& shape = t.shape;
        const size_t count = static_cast<size_t>(shape[0] * shape[1] * shape[2] * shape[3]);
        tensors.push_back(Ort::Value::CreateTensor<float>(
            memory_info_, const_cast<float*>(t.data), count, shape.data(), shape.size()));
      }
      results = session_.Run(Ort::RunOptions{nullptr}, input_names.data(), tensors.data(),
                             tensors.size(), output_names.data(), output_names.size());
    } catch (const Ort::Exception& e) {
      std::string shapes;
      for (size_t k = 0; k < inputs.size(); ++k)
        shapes += (shapes.empty() ? "" : ", ") + std::string(inputs.size() > 1 ? inputs_[k].name + " " : "") +
                  shape_text(inputs[k].shape.data(), 4);
      throw Error(path_ + ": ONNX Runtime failed on input " + shapes + " (" + e.what() + ")");
    }
    for (size_t k = 0; k < outputs.size(); ++k) {
      const auto& info = *std::find_if(outputs_.begin(), outputs_.end(),
                                       [&](const TensorInfo& o) { return o.name == outputs[k]; });
      if (info.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
        copy_scores(outputs[k], results[k], out[outputs[k]]);
      else
        copy_labels(outputs[k], results[k], out[outputs[k]]);
    }
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
    std::vector<IoInfo> found;
    for (const TensorInfo& t : inputs) {
      IoInfo f{t.name, t.describe()};
      f.float_4d = t.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT && t.shape.size() == 4;
      f.channels = t.shape.size() == 4 ? t.shape[1] : -1;
      found.push_back(f);
    }
    // inputs_ in the metadata's order: the order run() receives them in
    for (size_t index : check_inputs(path_, meta_, found)) inputs_.push_back(inputs[index]);
    std::vector<IoInfo> outs;
    for (const TensorInfo& o : outputs_) {
      IoInfo f{o.name, o.describe()};
      f.float_4d = o.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT && o.shape.size() == 4;
      f.int_3d = (o.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 ||
                  o.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 ||
                  o.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64) && o.shape.size() == 3;
      outs.push_back(f);
    }
    check_outputs(path_, meta_, outs);
  }

  void copy_scores(const std::string& name, const Ort::Value& v, OutputTensor& out) const {
    out.shape = v.GetTensorTypeAndShapeInfo().GetShape();
    FCN_CHECK(out.shape.size() == 4, path_ + ": output '" + name + "' is not 4-D");
    const auto& shape = out.shape;
    const float* data = v.GetTensorData<float>();
    out.scores.assign(data, data + shape[0] * shape[1] * shape[2] * shape[3]);
  }

  void copy_labels(const std::string& name, const Ort::Value& v, OutputTensor& out) const {
    auto info = v.GetTensorTypeAndShapeInfo();
    out.shape = info.GetShape();
    FCN_CHECK(out.shape.size() == 3, path_ + ": output '" + name + "' is not 3-D");
    const size_t n = info.GetElementCount();
    out.labels.resize(n);
    auto narrow = [&](const auto* data) {
      for (size_t i = 0; i < n; ++i) {
        if (data[i] < 0 || data[i] > 255)
          throw Error(path_ + ": output '" + name + "' holds " + std::to_string(data[i]) +
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
  std::vector<TensorInfo> inputs_;  // in the metadata's input order
  std::vector<TensorInfo> outputs_;
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
