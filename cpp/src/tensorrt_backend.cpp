// Native TensorRT backend (TensorRT 10 / 11 C++ API): tensors by name, optimization profiles,
// enqueueV3 on a CUDA stream. Linked only where TensorRT's libraries are found
// (FCN_WITH_TENSORRT); every test run also compiles it against NVIDIA's 10.16 and 11.1 headers
// (cmake/TensorRTCompileCheck.cmake), which needs no GPU and no library.
#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <utility>

#include "backend.hpp"
#include "check.hpp"

namespace fcn::detail {

template <>
struct StatusTraits<cudaError_t> {
  static bool failed(cudaError_t e) { return e != cudaSuccess; }
  static std::string describe(cudaError_t e) {
    return std::string("returned ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
  }
};

namespace {

// Forwards TensorRT's warnings to stderr and keeps the last error for exception messages.
class Logger final : public nvinfer1::ILogger {
 public:
  void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override {
    if (severity <= Severity::kERROR) {
      std::lock_guard<std::mutex> lock(mutex_);
      last_error_ = msg;
    }
    if (severity <= Severity::kWARNING) std::fprintf(stderr, "[TensorRT] %s\n", msg);
  }
  std::string last_error() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return last_error_.empty() ? "no message" : last_error_;
  }

 private:
  mutable std::mutex mutex_;
  std::string last_error_;
};

// cudaMalloc'd memory that grows on demand; freed once, never copied.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer() { release(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      release();
      ptr_ = std::exchange(other.ptr_, nullptr);
      bytes_ = std::exchange(other.bytes_, 0);
    }
    return *this;
  }

  void reserve(size_t bytes) {
    if (bytes <= bytes_) return;
    release();
    FCN_CHECK(cudaMalloc(&ptr_, bytes), "allocating " + std::to_string(bytes) + " bytes on the GPU");
    bytes_ = bytes;
  }
  void* get() const { return ptr_; }

 private:
  void release() noexcept {
    if (ptr_) cudaFree(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
  }
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// A non-blocking CUDA stream.
class CudaStream {
 public:
  CudaStream() { FCN_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "creating a CUDA stream"); }
  ~CudaStream() {
    if (stream_) cudaStreamDestroy(stream_);
  }
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

size_t element_size(nvinfer1::DataType t) {
  switch (t) {
    case nvinfer1::DataType::kFLOAT: return 4;
    case nvinfer1::DataType::kINT32: return 4;
    case nvinfer1::DataType::kINT64: return 8;
    case nvinfer1::DataType::kHALF: return 2;
    case nvinfer1::DataType::kBF16: return 2;
    case nvinfer1::DataType::kINT8: return 1;
    case nvinfer1::DataType::kUINT8: return 1;
    case nvinfer1::DataType::kBOOL: return 1;
    default: return 0;
  }
}

std::string type_name(nvinfer1::DataType t) {
  switch (t) {
    case nvinfer1::DataType::kFLOAT: return "float32";
    case nvinfer1::DataType::kHALF: return "float16";
    case nvinfer1::DataType::kBF16: return "bfloat16";
    case nvinfer1::DataType::kINT32: return "int32";
    case nvinfer1::DataType::kINT64: return "int64";
    case nvinfer1::DataType::kINT8: return "int8";
    case nvinfer1::DataType::kUINT8: return "uint8";
    case nvinfer1::DataType::kBOOL: return "bool";
    default: return "type " + std::to_string(static_cast<int>(t));
  }
}

std::vector<int64_t> to_vector(const nvinfer1::Dims& d) {
  return std::vector<int64_t>(d.d, d.d + std::max(d.nbDims, 0));
}

int64_t volume(const nvinfer1::Dims& d) {
  int64_t v = 1;
  for (int i = 0; i < d.nbDims; ++i) v *= d.d[i];
  return v;
}

struct IoTensor {
  std::string name;
  nvinfer1::DataType type{};
  std::vector<int64_t> shape;  // as built, -1 = dynamic
  DeviceBuffer buffer;
  std::string describe() const {
    return name + " " + type_name(type) + " " + shape_text(shape.data(), shape.size());
  }
};

// One optimization profile: per input (in the metadata's order), its min and max shapes.
struct ProfileRange {
  std::vector<std::vector<int64_t>> min, max;
  bool covers(const std::vector<std::array<int64_t, 4>>& shapes) const {
    for (size_t k = 0; k < shapes.size(); ++k)
      for (size_t i = 0; i < 4; ++i)
        if (shapes[k][i] < min[k][i] || shapes[k][i] > max[k][i]) return false;
    return true;
  }
  std::string text() const {
    std::string out;
    for (size_t k = 0; k < min.size(); ++k)
      out += (k ? " + " : "") + shape_text(min[k].data(), 4) + ".." + shape_text(max[k].data(), 4);
    return out;
  }
};

std::string version_text(int32_t v) {  // getInferLibVersion(): major * 10000 + minor * 100 + patch
  return std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) + "." + std::to_string(v % 100);
}

class TensorRTBackend final : public Backend {
 public:
  TensorRTBackend(const std::string& path, const Options& options)
      : path_(path), device_id_(options.device_id) {
    PlanInfo plan_info;
    meta_ = read_plan_meta(path, &plan_info);
    const std::string& built_with = plan_info.tensorrt_version;
    FCN_CHECK(cudaSetDevice(device_id_), "selecting CUDA device " + std::to_string(device_id_));
    cudaDeviceProp prop{};
    FCN_CHECK(cudaGetDeviceProperties(&prop, device_id_), "reading the GPU's properties");
    gpu_name_ = prop.name;
    stream_ = std::make_unique<CudaStream>();  // on device_id_

    std::ifstream in(path, std::ios::binary);
    const std::vector<char> plan((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (plan.empty()) throw Error("engine " + path + " is empty; rebuild it with fcn-build");

    runtime_.reset(nvinfer1::createInferRuntime(logger_));
    FCN_CHECK(runtime_ != nullptr, "creating the TensorRT runtime: " + logger_.last_error());
    // A version-compatible plan embeds the lean runtime as host code, which TensorRT refuses to
    // run unless allowed (IRuntime::setEngineHostCodeAllowed, default false): the sidecar says.
    if (plan_info.version_compatible) runtime_->setEngineHostCodeAllowed(true);
    engine_.reset(runtime_->deserializeCudaEngine(plan.data(), plan.size()));
    if (!engine_)
      throw Error("engine " + path + " could not be loaded by TensorRT " +
                  version_text(getInferLibVersion()) + " on " + gpu_name_ + " (its sidecar says " +
                  "TensorRT " + (built_with.empty() ? "?" : built_with) + "); plans load only on " +
                  "the TensorRT version and GPU that built them, so rebuild it here with " +
                  "fcn-build. TensorRT said: " + logger_.last_error());
    read_io();
    context_.reset(engine_->createExecutionContext());
    FCN_CHECK(context_ != nullptr, "creating a TensorRT execution context: " + logger_.last_error());
  }

  const ModelMeta& meta() const override { return meta_; }

  std::string name() const override {
    return "tensorrt " + version_text(getInferLibVersion()) + " (" + gpu_name_ + ")";
  }

  std::string describe() const override {
    std::string profiles;
    for (const auto& p : profiles_) profiles += (profiles.empty() ? "" : ", ") + p.text();
    std::string ins, outs;
    for (const auto& i : inputs_) ins += (ins.empty() ? "" : ", ") + i.describe();
    for (const auto& o : outputs_) outs += (outs.empty() ? "" : ", ") + o.describe();
    return ins + " (profiles " + profiles + ") -> " + outs;
  }

  bool has_output(const std::string& name) const override { return output(name) != nullptr; }

  int64_t max_batch(int64_t height, int64_t width) const override {
    int64_t best = 0;
    for (const auto& p : profiles_) {
      std::vector<std::array<int64_t, 4>> one;
      int64_t batch = -1;
      for (size_t k = 0; k < inputs_.size(); ++k) {
        one.push_back({1, channels_[k], height, width});
        batch = batch < 0 ? p.max[k][0] : std::min(batch, p.max[k][0]);
      }
      if (p.covers(one)) best = std::max(best, batch);
    }
    if (best == 0) {
      std::string ranges;
      for (const auto& p : profiles_) ranges += (ranges.empty() ? "" : ", ") + p.text();
      throw Error("engine " + path_ + ": an image of " + std::to_string(height) + "x" +
                  std::to_string(width) + " is outside its optimization profiles (" + ranges +
                  "); rebuild it with fcn-build and a profile that covers this size");
    }
    return best;
  }

  void run(const std::vector<InputTensor>& inputs, const std::vector<std::string>& outputs,
           Outputs& out) override {
    FCN_CHECK(cudaSetDevice(device_id_), "selecting CUDA device " + std::to_string(device_id_));
    std::vector<std::array<int64_t, 4>> shapes;
    for (const InputTensor& t : inputs) shapes.push_back(t.shape);
    select_profile(shapes);
    const std::string shape_words = shapes_text(shapes);
    for (size_t k = 0; k < inputs_.size(); ++k) {
      IoTensor& in = inputs_[k];
      const auto& shape = inputs[k].shape;
      nvinfer1::Dims dims{};
      dims.nbDims = 4;
      for (int i = 0; i < 4; ++i) dims.d[i] = shape[i];
      FCN_CHECK(context_->setInputShape(in.name.c_str(), dims),
                "engine " + path_ + ": setting input shape " + in.name + " " +
                    shape_text(shape.data(), 4) + ": " + logger_.last_error());
      const size_t bytes = static_cast<size_t>(shape[0] * shape[1] * shape[2] * shape[3]) * sizeof(float);
      in.buffer.reserve(bytes);
      FCN_CHECK(cudaMemcpyAsync(in.buffer.get(), inputs[k].data, bytes, cudaMemcpyHostToDevice,
                                stream_->get()),
                "copying input " + in.name + " to the GPU");
      FCN_CHECK(context_->setTensorAddress(in.name.c_str(), in.buffer.get()), "binding " + in.name);
    }
    for (auto& o : outputs_) {  // every output needs an address, wanted or not
      const nvinfer1::Dims d = context_->getTensorShape(o.name.c_str());
      FCN_CHECK(d.nbDims >= 0 && volume(d) >= 0, "engine " + path_ + ": shape of output " + o.name);
      o.buffer.reserve(std::max<size_t>(1, static_cast<size_t>(volume(d)) * element_size(o.type)));
      FCN_CHECK(context_->setTensorAddress(o.name.c_str(), o.buffer.get()), "binding " + o.name);
    }
    FCN_CHECK(context_->enqueueV3(stream_->get()),
              "engine " + path_ + ": enqueueV3 on input " + shape_words + ": " + logger_.last_error());

    // Host staging for integer labels wider than uint8, narrowed after the stream syncs.
    std::vector<std::pair<std::string, std::vector<int64_t>>> wide64;
    std::vector<std::pair<std::string, std::vector<int32_t>>> wide32;
    wide64.reserve(outputs.size());
    wide32.reserve(outputs.size());
    for (const std::string& name : outputs) {
      const IoTensor& o = *output(name);
      OutputTensor& result = out[name];
      const nvinfer1::Dims d = context_->getTensorShape(o.name.c_str());
      result.shape = to_vector(d);
      const auto n = static_cast<size_t>(volume(d));
      void* dst = nullptr;
      if (o.type == nvinfer1::DataType::kFLOAT) {
        FCN_CHECK(d.nbDims == 4, "engine " + path_ + ": output '" + name + "' is not 4-D");
        result.scores.resize(n);
        dst = result.scores.data();
      } else {
        FCN_CHECK(d.nbDims == 3, "engine " + path_ + ": output '" + name + "' is not 3-D");
        result.labels.resize(n);
        dst = result.labels.data();
        if (o.type == nvinfer1::DataType::kINT64) {
          wide64.emplace_back(name, std::vector<int64_t>(n));
          dst = wide64.back().second.data();
        } else if (o.type == nvinfer1::DataType::kINT32) {
          wide32.emplace_back(name, std::vector<int32_t>(n));
          dst = wide32.back().second.data();
        }
      }
      FCN_CHECK(cudaMemcpyAsync(dst, o.buffer.get(), n * element_size(o.type),
                                cudaMemcpyDeviceToHost, stream_->get()),
                "copying '" + name + "' from the GPU");
    }
    FCN_CHECK(cudaStreamSynchronize(stream_->get()), "engine " + path_ + ": running on the GPU");
    auto narrow = [&](const std::string& name, const auto& src) {
      std::vector<uint8_t>& labels = out[name].labels;
      for (size_t i = 0; i < src.size(); ++i) {
        if (src[i] < 0 || src[i] > 255)
          throw Error("engine " + path_ + ": output '" + name + "' holds " +
                      std::to_string(src[i]) + ", outside 0..255");
        labels[i] = static_cast<uint8_t>(src[i]);
      }
    };
    for (const auto& [name, values] : wide64) narrow(name, values);
    for (const auto& [name, values] : wide32) narrow(name, values);
  }

 private:
  const IoTensor* output(const std::string& name) const {
    for (const IoTensor& o : outputs_)
      if (o.name == name) return &o;
    return nullptr;
  }

  static std::string shapes_text(const std::vector<std::array<int64_t, 4>>& shapes) {
    std::string out;
    for (const auto& s : shapes) out += (out.empty() ? "" : " + ") + shape_text(s.data(), 4);
    return out;
  }

  void read_io() {
    std::vector<IoTensor> inputs;
    std::vector<IoInfo> found, outs;
    for (int32_t i = 0; i < engine_->getNbIOTensors(); ++i) {
      const char* name = engine_->getIOTensorName(i);
      IoTensor t;
      t.name = name;
      t.type = engine_->getTensorDataType(name);
      t.shape = to_vector(engine_->getTensorShape(name));
      IoInfo info{t.name, t.describe()};
      info.float_4d = t.type == nvinfer1::DataType::kFLOAT && t.shape.size() == 4;
      info.int_3d = (t.type == nvinfer1::DataType::kUINT8 || t.type == nvinfer1::DataType::kINT32 ||
                     t.type == nvinfer1::DataType::kINT64) && t.shape.size() == 3;
      if (engine_->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT) {
        info.channels = t.shape.size() == 4 ? t.shape[1] : -1;
        found.push_back(info);
        inputs.push_back(std::move(t));
      } else {
        if (element_size(t.type) == 0)
          throw Error("engine " + path_ + ": output " + t.describe() + " has an unsupported type");
        outs.push_back(info);
        outputs_.push_back(std::move(t));
      }
    }
    // inputs_ in the metadata's order: the order run() receives them in
    for (size_t index : check_inputs("engine " + path_, meta_, found))
      inputs_.push_back(std::move(inputs[index]));
    for (const InputSpec& spec : meta_.input_specs()) channels_.push_back(spec.channels);
    check_outputs("engine " + path_, meta_, outs);
    for (int32_t p = 0; p < engine_->getNbOptimizationProfiles(); ++p) {
      ProfileRange r;
      for (const IoTensor& in : inputs_) {
        r.min.push_back(to_vector(engine_->getProfileShape(in.name.c_str(), p, nvinfer1::OptProfileSelector::kMIN)));
        r.max.push_back(to_vector(engine_->getProfileShape(in.name.c_str(), p, nvinfer1::OptProfileSelector::kMAX)));
        if (r.min.back().size() != 4 || r.max.back().size() != 4) break;
      }
      if (r.max.size() == inputs_.size() && r.max.back().size() == 4 && r.min.back().size() == 4)
        profiles_.push_back(r);
    }
    if (profiles_.empty()) {  // a static engine: its one shape
      ProfileRange r;
      for (const IoTensor& in : inputs_) {
        r.min.push_back(in.shape);
        r.max.push_back(in.shape);
      }
      profiles_.push_back(r);
    }
  }

  void select_profile(const std::vector<std::array<int64_t, 4>>& shapes) {
    for (size_t p = 0; p < profiles_.size(); ++p) {
      if (!profiles_[p].covers(shapes)) continue;
      if (static_cast<int32_t>(p) != context_->getOptimizationProfile()) {
        FCN_CHECK(context_->setOptimizationProfileAsync(static_cast<int32_t>(p), stream_->get()),
                  "engine " + path_ + ": selecting optimization profile " + std::to_string(p) +
                      ": " + logger_.last_error());
      }
      return;
    }
    max_batch(shapes[0][2], shapes[0][3]);  // throws naming the profiles when the size is not covered
    throw Error("engine " + path_ + ": batch " + std::to_string(shapes[0][0]) +
                " is outside its optimization profiles (" + describe() + ")");
  }

  // Declaration order is destruction order in reverse: buffers and the stream go first, then the
  // context, the engine, the runtime and last the logger they all report to.
  std::string path_;
  int device_id_ = 0;
  std::string gpu_name_;
  Logger logger_;
  ModelMeta meta_;
  std::unique_ptr<nvinfer1::IRuntime> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine> engine_;
  std::unique_ptr<nvinfer1::IExecutionContext> context_;
  std::unique_ptr<CudaStream> stream_;
  std::vector<IoTensor> inputs_;  // in the metadata's input order
  std::vector<int64_t> channels_;  // per input
  std::vector<IoTensor> outputs_;
  std::vector<ProfileRange> profiles_;
};

}  // namespace

std::unique_ptr<Backend> open_tensorrt(const std::string& path, const Options& options) {
  return std::make_unique<TensorRTBackend>(path, options);
}

}  // namespace fcn::detail
