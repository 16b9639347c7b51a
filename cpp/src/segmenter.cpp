// Segmenter: backend choice, preprocessing from metadata, batching and the argmax.
#include "fcn/segmenter.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <mutex>
#include <sstream>

#include "backend.hpp"
#include "fcn/config.hpp"
#include "fcn/image.hpp"

namespace fcn {
namespace detail {

std::string shape_text(const int64_t* dims, size_t n) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < n; ++i) s << (i ? ", " : "") << dims[i];
  s << "]";
  return s.str();
}

void require_file(const std::string& path, const std::string& what) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (path.empty()) throw Error(what + " path is empty; expected a .onnx or .plan file");
  if (!fs::exists(path, ec)) throw Error(what + " " + path + " does not exist");
  if (fs::is_directory(path, ec))
    throw Error(what + " " + path + " is a folder; expected a .onnx or .plan file");
  if (!fs::is_regular_file(path, ec)) throw Error(what + " " + path + " is not a regular file");
}

namespace {

// Per-pixel index of the largest score over C planes of HW values. Ties go to the lowest index
// and a NaN wins over numbers (the first NaN), exactly like numpy.argmax.
void argmax_planes(const float* scores, int64_t classes, int64_t hw, std::vector<float>& best,
                   uint8_t* labels) {
  best.assign(scores, scores + hw);
  std::fill(labels, labels + hw, uint8_t{0});
  for (int64_t c = 1; c < classes; ++c) {
    const float* plane = scores + c * hw;
    const auto label = static_cast<uint8_t>(c);
    for (int64_t i = 0; i < hw; ++i) {
      const float v = plane[i];
      if (v > best[i] || (std::isnan(v) && !std::isnan(best[i]))) {
        best[i] = v;
        labels[i] = label;
      }
    }
  }
}

}  // namespace
}  // namespace detail

BackendKind parse_backend(const std::string& name) {
  if (name == "auto" || name.empty()) return BackendKind::Auto;
  if (name == "onnxruntime" || name == "ort") return BackendKind::OnnxRuntime;
  if (name == "tensorrt" || name == "trt") return BackendKind::TensorRT;
  throw Error("unknown backend '" + name + "'; expected auto, onnxruntime or tensorrt");
}

std::vector<std::string> available_backends() {
  std::vector<std::string> out;
#if FCN_HAVE_ONNXRUNTIME
  out.emplace_back("onnxruntime");
#endif
#if FCN_HAVE_TENSORRT
  out.emplace_back("tensorrt");
#endif
  return out;
}

struct Segmenter::Impl {
  std::string path;
  std::unique_ptr<detail::Backend> backend;
  std::mutex mutex;
  detail::Outputs out;
  std::vector<float> input;
  std::vector<float> best;
};

namespace {

[[maybe_unused]] std::string joined_backends() {  // unused when both backends are built
  std::string out;
  for (const auto& b : available_backends()) out += (out.empty() ? "" : ", ") + b;
  return out;
}

BackendKind resolve_kind(const std::string& path, BackendKind kind) {
  if (kind != BackendKind::Auto) return kind;
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return (ext == ".plan" || ext == ".engine") ? BackendKind::TensorRT : BackendKind::OnnxRuntime;
}

void preprocess_into(const std::vector<cv::Mat>& images, const ModelMeta& meta, float* dst) {
  const float mean[3] = {static_cast<float>(meta.mean[0]), static_cast<float>(meta.mean[1]),
                         static_cast<float>(meta.mean[2])};
  // Channel c of the network's input comes from BGR channel src[c].
  const bool rgb = meta.channel_order == "RGB";
  const int src[3] = {rgb ? 2 : 0, 1, rgb ? 0 : 2};
  for (const cv::Mat& img : images) {
    const int64_t hw = static_cast<int64_t>(img.rows) * img.cols;
    for (int y = 0; y < img.rows; ++y) {
      const uint8_t* row = img.ptr<uint8_t>(y);
      float* out0 = dst + static_cast<int64_t>(y) * img.cols;
      float* out1 = out0 + hw;
      float* out2 = out1 + hw;
      for (int x = 0; x < img.cols; ++x) {
        const uint8_t* px = row + 3 * x;
        out0[x] = static_cast<float>(px[src[0]]) - mean[0];
        out1[x] = static_cast<float>(px[src[1]]) - mean[1];
        out2[x] = static_cast<float>(px[src[2]]) - mean[2];
      }
    }
    dst += 3 * hw;
  }
}

std::vector<cv::Mat> checked_images(const std::vector<cv::Mat>& images) {
  if (images.empty()) throw Error("empty batch: expected at least one image");
  std::vector<cv::Mat> out;
  out.reserve(images.size());
  for (size_t i = 0; i < images.size(); ++i)
    out.push_back(to_bgr8(images[i], images.size() == 1 ? "image" : "image " + std::to_string(i)));
  for (const cv::Mat& img : out) {
    if (img.size() != out[0].size()) {
      std::string sizes;
      for (const cv::Mat& m : out)
        sizes += (sizes.empty() ? "" : ", ") + std::to_string(m.rows) + "x" + std::to_string(m.cols);
      throw Error("a batch needs images of one size; got sizes " + sizes +
                  " (use predict() per image for mixed sizes)");
    }
  }
  return out;
}

}  // namespace

Segmenter::Segmenter(const std::string& model_path, const Options& options)
    : impl_(std::make_unique<Impl>()) {
  detail::require_file(model_path, "model");
  impl_->path = model_path;
  const BackendKind kind = resolve_kind(model_path, options.backend);
  if (kind == BackendKind::TensorRT) {
#if FCN_HAVE_TENSORRT
    impl_->backend = detail::open_tensorrt(model_path, options);
#else
    throw Error(model_path + ": this build of fcn_runtime has no TensorRT backend (built without "
                "TensorRT's headers; rebuild with -DFCN_WITH_TENSORRT=ON -DTENSORRT_ROOT=...); "
                "backends here: " + joined_backends());
#endif
  } else {
#if FCN_HAVE_ONNXRUNTIME
    impl_->backend = detail::open_onnxruntime(model_path, options);
#else
    throw Error(model_path + ": this build of fcn_runtime has no ONNX Runtime backend; backends "
                "here: " + joined_backends());
#endif
  }
}

Segmenter::~Segmenter() = default;
Segmenter::Segmenter(Segmenter&& other) noexcept = default;
Segmenter& Segmenter::operator=(Segmenter&& other) noexcept = default;

Segmenter::Impl& Segmenter::impl() const {
  if (!impl_) throw Error("this Segmenter was moved from; use the one it was moved to");
  return *impl_;
}

const ModelMeta& Segmenter::meta() const { return impl().backend->meta(); }
const std::string& Segmenter::path() const { return impl().path; }
std::string Segmenter::backend() const { return impl().backend->name(); }
std::string Segmenter::describe() const { return impl().backend->describe(); }
std::string Segmenter::int8_kernels() const { return impl().backend->int8_kernels(); }

std::vector<float> Segmenter::preprocess(const std::vector<cv::Mat>& images_bgr) const {
  const std::vector<cv::Mat> images = checked_images(images_bgr);
  std::vector<float> out(images.size() * 3 * images[0].total());
  preprocess_into(images, meta(), out.data());
  return out;
}

cv::Mat Segmenter::predict(const cv::Mat& image_bgr, cv::Mat* scores) {
  std::vector<cv::Mat> all_scores;
  std::vector<cv::Mat> labels = predict_batch({image_bgr}, scores ? &all_scores : nullptr);
  if (scores) *scores = all_scores.at(0);
  return labels.at(0);
}

cv::Mat Segmenter::predict_tiled(const cv::Mat& image_bgr, int tile, cv::Mat* scores) {
  const TileGeometry& geometry = meta().tiling;
  if (!geometry.present())
    throw Error(path() + " carries no tiling geometry (metadata 'tiling'); re-export the model "
                "with fcn-export from this fcn-deploy, or segment it whole");
  const cv::Mat image = to_bgr8(image_bgr, "image");
  const std::vector<Span> rows = plan_axis(image.rows, tile, geometry);
  const std::vector<Span> cols = plan_axis(image.cols, tile, geometry);
  if (rows.size() == 1 && cols.size() == 1) return predict(image, scores);
  cv::Mat labels(image.rows, image.cols, CV_8UC1);
  cv::Mat tile_scores;
  for (const Span& r : rows) {
    for (const Span& c : cols) {
      const cv::Mat part = predict(image(cv::Range(r.start, r.stop), cv::Range(c.start, c.stop)),
                                   scores ? &tile_scores : nullptr);
      const cv::Range src_rows(r.keep_start - r.start, r.keep_stop - r.start);
      const cv::Range src_cols(c.keep_start - c.start, c.keep_stop - c.start);
      part(src_rows, src_cols).copyTo(labels(cv::Range(r.keep_start, r.keep_stop),
                                             cv::Range(c.keep_start, c.keep_stop)));
      if (!scores) continue;
      const int classes = tile_scores.size[0], tile_w = tile_scores.size[2];
      if (r.start == 0 && c.start == 0) {
        const int sizes[3] = {classes, image.rows, image.cols};
        scores->create(3, sizes, CV_32F);
      }
      const int64_t width = c.keep_stop - c.keep_start;
      for (int k = 0; k < classes; ++k) {
        for (int y = r.keep_start; y < r.keep_stop; ++y) {
          const float* src = tile_scores.ptr<float>(k) +
                             static_cast<int64_t>(y - r.start) * tile_w + (c.keep_start - c.start);
          float* dst = scores->ptr<float>(k) + static_cast<int64_t>(y) * image.cols + c.keep_start;
          std::copy_n(src, width, dst);
        }
      }
    }
  }
  return labels;
}

std::vector<cv::Mat> Segmenter::predict_batch(const std::vector<cv::Mat>& images_bgr,
                                              std::vector<cv::Mat>* scores) {
  Impl& s = impl();
  const std::vector<cv::Mat> images = checked_images(images_bgr);
  const ModelMeta& meta = s.backend->meta();
  const int64_t n = static_cast<int64_t>(images.size());
  const int64_t h = images[0].rows, w = images[0].cols, hw = h * w;
  const bool want_scores = scores != nullptr;
  if (want_scores && !s.backend->has_scores())
    throw Error(s.path + ": scores were asked for but the network has no 'scores' output "
                "(fcn.outputs=" + meta.outputs + "; outputs: " + s.backend->describe() + ")");
  const bool fetch_labels = s.backend->has_labels();
  const bool fetch_scores = want_scores || !fetch_labels;

  std::lock_guard<std::mutex> lock(s.mutex);
  const int64_t limit = s.backend->max_batch(h, w);
  const int64_t chunk = limit > 0 ? std::min(limit, n) : n;
  std::vector<cv::Mat> labels;
  labels.reserve(images.size());
  if (scores) scores->clear();
  for (int64_t first = 0; first < n; first += chunk) {
    const int64_t count = std::min(chunk, n - first);
    s.input.resize(static_cast<size_t>(count * 3 * hw));
    preprocess_into(std::vector<cv::Mat>(images.begin() + first, images.begin() + first + count),
                    meta, s.input.data());
    const std::array<int64_t, 4> shape = {count, 3, h, w};
    s.backend->run(s.input.data(), shape, fetch_scores, fetch_labels, s.out);

    int64_t classes = 0;
    if (fetch_scores) {
      const auto& ss = s.out.scores_shape;
      classes = ss[1];
      if (ss[0] != count || ss[2] != h || ss[3] != w || classes != meta.num_classes)
        throw Error(s.path + ": output 'scores' has shape " + detail::shape_text(ss.data(), 4) +
                    " for input " + detail::shape_text(shape.data(), 4) + "; expected [" +
                    std::to_string(count) + ", " + std::to_string(meta.num_classes) +
                    " (num_classes in the metadata), " + std::to_string(h) + ", " +
                    std::to_string(w) + "]");
    }
    if (fetch_labels) {
      const auto& ls = s.out.labels_shape;
      if (ls[0] != count || ls[1] != h || ls[2] != w)
        throw Error(s.path + ": output 'labels' has shape " + detail::shape_text(ls.data(), 3) +
                    " for input " + detail::shape_text(shape.data(), 4) + "; expected [" +
                    std::to_string(count) + ", " + std::to_string(h) + ", " + std::to_string(w) +
                    "]");
    }
    for (int64_t i = 0; i < count; ++i) {
      cv::Mat label(static_cast<int>(h), static_cast<int>(w), CV_8UC1);
      if (fetch_labels) {
        std::copy_n(s.out.labels.data() + i * hw, hw, label.ptr<uint8_t>());
      } else {
        detail::argmax_planes(s.out.scores.data() + i * classes * hw, classes, hw, s.best,
                              label.ptr<uint8_t>());
      }
      labels.push_back(label);
      if (scores) {
        const int sizes[3] = {static_cast<int>(classes), static_cast<int>(h), static_cast<int>(w)};
        cv::Mat sc(3, sizes, CV_32F);
        std::copy_n(s.out.scores.data() + i * classes * hw, classes * hw, sc.ptr<float>());
        scores->push_back(sc);
      }
    }
  }
  return labels;
}

}  // namespace fcn
