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

const char* kInput = "image";

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

struct ProfileRange {
  std::vector<int64_t> min, max;
  bool covers(const std::array<int64_t, 4>& s) const {
    for (size_t i = 0; i < 4; ++i)
      if (s[i] < min[i] || s[i] > max[i]) return false;
    return true;
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
    for (const auto& p : profiles_)
      profiles += (profiles.empty() ? "" : ", ") + shape_text(p.min.data(), 4) + ".." +
                  shape_text(p.max.data(), 4);
    std::string outs;
    for (const auto& o : outputs_) outs += (outs.empty() ? "" : ", ") + o.describe();
    return input_.describe() + " (profiles " + profiles + ") -> " + outs;
  }

  bool has_scores() const override { return scores_ >= 0; }
  bool has_labels() const override { return labels_ >= 0; }

  int64_t max_batch(int64_t height, int64_t width) const override {
    int64_t best = 0;
    for (const auto& p : profiles_)
      if (p.min[0] <= 1 && p.covers({p.min[0], 3, height, width})) best = std::max(best, p.max[0]);
    if (best == 0) {
      std::string ranges;
      for (const auto& p : profiles_)
        ranges += (ranges.empty() ? "" : ", ") + shape_text(p.min.data(), 4) + ".." +
                  shape_text(p.max.data(), 4);
      throw Error("engine " + path_ + ": an image of " + std::to_string(height) + "x" +
                  std::to_string(width) + " is outside its optimization profiles (" + ranges +
                  "); rebuild it with fcn-build and a profile that covers this size");
    }
    return best;
  }

  void run(const float* input, const std::array<int64_t, 4>& shape, bool want_scores,
           bool want_labels, Outputs& out) override {
    FCN_CHECK(cudaSetDevice(device_id_), "selecting CUDA device " + std::to_string(device_id_));
    select_profile(shape);
    nvinfer1::Dims dims{};
    dims.nbDims = 4;
    for (int i = 0; i < 4; ++i) dims.d[i] = shape[i];
    FCN_CHECK(context_->setInputShape(kInput, dims),
              "engine " + path_ + ": setting input shape " + shape_text(shape.data(), 4) + ": " +
                  logger_.last_error());
    const size_t in_bytes = static_cast<size_t>(shape[0] * shape[1] * shape[2] * shape[3]) * sizeof(float);
    input_.buffer.reserve(in_bytes);
    FCN_CHECK(cudaMemcpyAsync(input_.buffer.get(), input, in_bytes, cudaMemcpyHostToDevice, stream_->get()),
              "copying the input to the GPU");
    FCN_CHECK(context_->setTensorAddress(kInput, input_.buffer.get()), "binding " + std::string(kInput));
    for (auto& o : outputs_) {  // every output needs an address, wanted or not
      const nvinfer1::Dims d = context_->getTensorShape(o.name.c_str());
      FCN_CHECK(d.nbDims >= 0 && volume(d) >= 0, "engine " + path_ + ": shape of output " + o.name);
      o.buffer.reserve(std::max<size_t>(1, static_cast<size_t>(volume(d)) * element_size(o.type)));
      FCN_CHECK(context_->setTensorAddress(o.name.c_str(), o.buffer.get()), "binding " + o.name);
    }
    FCN_CHECK(context_->enqueueV3(stream_->get()),
              "engine " + path_ + ": enqueueV3 on input " + shape_text(shape.data(), 4) + ": " +
                  logger_.last_error());

    std::vector<int64_t> host_labels;  // for int32/int64 labels
    std::vector<int32_t> host_labels32;
    if (want_scores) {
      const IoTensor& o = outputs_[scores_];
      const nvinfer1::Dims d = context_->getTensorShape(o.name.c_str());
      FCN_CHECK(d.nbDims == 4, "engine " + path_ + ": output 'scores' is not 4-D");
      for (int i = 0; i < 4; ++i) out.scores_shape[i] = d.d[i];
      out.scores.resize(static_cast<size_t>(volume(d)));
      FCN_CHECK(cudaMemcpyAsync(out.scores.data(), o.buffer.get(), out.scores.size() * sizeof(float),
                                cudaMemcpyDeviceToHost, stream_->get()),
                "copying 'scores' from the GPU");
    }
    nvinfer1::DataType label_type = nvinfer1::DataType::kUINT8;
    if (want_labels) {
      const IoTensor& o = outputs_[labels_];
      label_type = o.type;
      const nvinfer1::Dims d = context_->getTensorShape(o.name.c_str());
      FCN_CHECK(d.nbDims == 3, "engine " + path_ + ": output 'labels' is not 3-D");
      for (int i = 0; i < 3; ++i) out.labels_shape[i] = d.d[i];
      const auto n = static_cast<size_t>(volume(d));
      out.labels.resize(n);
      void* dst = out.labels.data();
      if (o.type == nvinfer1::DataType::kINT64) {
        host_labels.resize(n);
        dst = host_labels.data();
      } else if (o.type == nvinfer1::DataType::kINT32) {
        host_labels32.resize(n);
        dst = host_labels32.data();
      }
      FCN_CHECK(cudaMemcpyAsync(dst, o.buffer.get(), n * element_size(o.type), cudaMemcpyDeviceToHost,
                                stream_->get()),
                "copying 'labels' from the GPU");
    }
    FCN_CHECK(cudaStreamSynchronize(stream_->get()), "engine " + path_ + ": running on the GPU");
    if (want_labels && label_type != nvinfer1::DataType::kUINT8) {
      auto narrow = [&](const auto& src) {
        for (size_t i = 0; i < src.size(); ++i) {
          if (src[i] < 0 || src[i] > 255)
            throw Error("engine " + path_ + ": output 'labels' holds " + std::to_string(src[i]) +
                        ", outside 0..255");
          out.labels[i] = static_cast<uint8_t>(src[i]);
        }
      };
      if (label_type == nvinfer1::DataType::kINT64)
        narrow(host_labels);
      else
        narrow(host_labels32);
    }
  }

 private:
  void read_io() {
    bool found_input = false;
    std::string inputs;
    for (int32_t i = 0; i < engine_->getNbIOTensors(); ++i) {
      const char* name = engine_->getIOTensorName(i);
      IoTensor t;
      t.name = name;
      t.type = engine_->getTensorDataType(name);
      t.shape = to_vector(engine_->getTensorShape(name));
      if (engine_->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT) {
        inputs += (inputs.empty() ? "" : ", ") + t.describe();
        if (t.name != kInput) continue;
        found_input = true;
        input_ = std::move(t);
      } else {
        if (element_size(t.type) == 0)
          throw Error("engine " + path_ + ": output " + t.describe() + " has an unsupported type");
        outputs_.push_back(std::move(t));
      }
    }
    if (!found_input || inputs.find(", ") != std::string::npos)
      throw Error("engine " + path_ + ": the network's inputs are " + inputs +
                  "; expected one input 'image' float32 [batch, 3, height, width]");
    if (input_.type != nvinfer1::DataType::kFLOAT || input_.shape.size() != 4)
      throw Error("engine " + path_ + ": input " + input_.describe() +
                  " breaks the contract; expected image float32 [batch, 3, height, width]");
    for (size_t i = 0; i < outputs_.size(); ++i) {
      const IoTensor& o = outputs_[i];
      if (o.name == "scores") {
        if (o.type != nvinfer1::DataType::kFLOAT || o.shape.size() != 4)
          throw Error("engine " + path_ + ": output " + o.describe() +
                      " breaks the contract; expected scores float32 [batch, classes, height, width]");
        scores_ = static_cast<int>(i);
      } else if (o.name == "labels") {
        const bool int_type = o.type == nvinfer1::DataType::kUINT8 ||
                              o.type == nvinfer1::DataType::kINT32 ||
                              o.type == nvinfer1::DataType::kINT64;
        if (!int_type || o.shape.size() != 3)
          throw Error("engine " + path_ + ": output " + o.describe() +
                      " breaks the contract; expected labels uint8 [batch, height, width]");
        labels_ = static_cast<int>(i);
      }
    }
    if (scores_ < 0 && labels_ < 0)
      throw Error("engine " + path_ + ": no 'scores' or 'labels' output (" + describe() + ")");
    for (int32_t p = 0; p < engine_->getNbOptimizationProfiles(); ++p) {
      ProfileRange r;
      r.min = to_vector(engine_->getProfileShape(kInput, p, nvinfer1::OptProfileSelector::kMIN));
      r.max = to_vector(engine_->getProfileShape(kInput, p, nvinfer1::OptProfileSelector::kMAX));
      if (r.min.size() == 4 && r.max.size() == 4) profiles_.push_back(r);
    }
    if (profiles_.empty()) {  // a static engine: its one shape
      ProfileRange r{input_.shape, input_.shape};
      profiles_.push_back(r);
    }
  }

  void select_profile(const std::array<int64_t, 4>& shape) {
    for (size_t p = 0; p < profiles_.size(); ++p) {
      if (!profiles_[p].covers(shape)) continue;
      if (static_cast<int32_t>(p) != context_->getOptimizationProfile()) {
        FCN_CHECK(context_->setOptimizationProfileAsync(static_cast<int32_t>(p), stream_->get()),
                  "engine " + path_ + ": selecting optimization profile " + std::to_string(p) +
                      ": " + logger_.last_error());
      }
      return;
    }
    max_batch(shape[2], shape[3]);  // throws naming the profiles when the size is not covered
    throw Error("engine " + path_ + ": batch " + std::to_string(shape[0]) +
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
  IoTensor input_;
  std::vector<IoTensor> outputs_;
  std::vector<ProfileRange> profiles_;
  int scores_ = -1;
  int labels_ = -1;
};

}  // namespace

std::unique_ptr<Backend> open_tensorrt(const std::string& path, const Options& options) {
  return std::make_unique<TensorRTBackend>(path, options);
}

}  // namespace fcn::detail
