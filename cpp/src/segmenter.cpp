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
#include "fcn/preprocess.hpp"

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

std::vector<size_t> check_inputs(const std::string& what, const ModelMeta& meta,
                                 const std::vector<IoInfo>& found) {
  const std::vector<InputSpec> specs = meta.input_specs();
  auto expected = [](const InputSpec& s) {
    return s.name + " float32 [batch, " + std::to_string(s.channels) + ", height, width]";
  };
  std::vector<size_t> order;
  for (const InputSpec& s : specs)
    for (size_t i = 0; i < found.size(); ++i)
      if (found[i].name == s.name) order.push_back(i);
  if (order.size() != specs.size() || found.size() != specs.size()) {
    std::string want, have;
    for (const InputSpec& s : specs) want += (want.empty() ? "'" : ", '") + s.name + "'" + expected(s).substr(s.name.size());
    for (const IoInfo& f : found) have += (have.empty() ? "" : ", ") + f.text;
    throw Error(what + ": the network's inputs are " + (have.empty() ? "none" : have) +
                (specs.size() == 1 ? "; expected one input " : "; expected the metadata's inputs ") +
                want);
  }
  for (size_t k = 0; k < specs.size(); ++k) {
    const IoInfo& f = found[order[k]];
    if (!f.float_4d || (f.channels >= 0 && f.channels != specs[k].channels))
      throw Error(what + ": input " + f.text + " breaks the contract; expected " +
                  expected(specs[k]));
  }
  return order;
}

void check_outputs(const std::string& what, const ModelMeta& meta, const std::vector<IoInfo>& found) {
  std::string have;
  for (const IoInfo& f : found) have += (have.empty() ? "" : ", ") + f.text;
  const std::vector<HeadSpec> heads = meta.head_specs();
  for (const HeadSpec& h : heads) {
    bool any = false;
    for (const IoInfo& f : found) {
      if (f.name == h.scores_output) {
        if (!f.float_4d)
          throw Error(what + ": output " + f.text + " breaks the contract; expected " +
                      h.scores_output + " float32 [batch, classes, height, width]");
        any = true;
      } else if (f.name == h.labels_output) {
        if (!f.int_3d)
          throw Error(what + ": output " + f.text + " breaks the contract; expected " +
                      h.labels_output + " uint8 [batch, height, width]");
        any = true;
      }
    }
    if (!any)
      throw Error(what + ": the network's outputs are " + (have.empty() ? "none" : have) +
                  "; expected '" + h.scores_output +
                  "' float32 [batch, classes, height, width] and/or '" + h.labels_output +
                  "' uint8 [batch, height, width]" +
                  (heads.size() > 1 ? " for head '" + h.name + "'" : std::string()));
  }
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
  std::vector<InputSpec> inputs;  // meta().input_specs()
  std::vector<HeadSpec> heads;    // meta().head_specs()
  std::mutex mutex;
  detail::Outputs out;
  std::vector<std::vector<float>> buffers;  // one per input
  std::vector<float> best;

  // One set of prepared inputs (prepare_input()), in input_specs() order, of one size.
  using InputSet = std::vector<cv::Mat>;
  // Per input set, per head: a label map, or a 3-D scores Mat.
  using PerHead = std::vector<std::vector<cv::Mat>>;

  void infer(const std::vector<InputSet>& sets, PerHead& labels, PerHead* scores);
  void tiled(const InputSet& set, int tile, std::vector<cv::Mat>& labels,
             std::vector<cv::Mat>* scores);
  std::vector<InputSet> named_sets(const std::vector<NamedMats>& batch) const;
  std::vector<InputSet> single_sets(const std::vector<cv::Mat>& images, const char* call) const;
  NamedMats by_head(std::vector<cv::Mat>& mats) const;
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

std::string size_text(const cv::Mat& m) { return std::to_string(m.rows) + "x" + std::to_string(m.cols); }

template <typename T, typename F>
std::string joined(const std::vector<T>& items, F name) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ", ") + name(i);
  return out;
}

}  // namespace

std::vector<Segmenter::Impl::InputSet> Segmenter::Impl::single_sets(
    const std::vector<cv::Mat>& images, const char* call) const {
  if (inputs.size() != 1)
    throw Error(path + " takes " + std::to_string(inputs.size()) + " inputs (" +
                joined(inputs, [](const InputSpec& s) { return s.name; }) + "); " + call +
                "() feeds one image: use predict_heads() with every input by name");
  if (heads.size() != 1)
    throw Error(path + " has " + std::to_string(heads.size()) + " heads (" +
                joined(heads, [](const HeadSpec& h) { return h.name; }) + "); " + call +
                "() returns one label map: use predict_heads(), which returns one per head");
  if (images.empty()) throw Error("empty batch: expected at least one image");
  std::vector<InputSet> out;
  out.reserve(images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    const std::string name = images.size() == 1 ? "image" : "image " + std::to_string(i);
    out.push_back({inputs[0].encoding == "image" ? to_bgr8(images[i], name)
                                                 : prepare_input(inputs[0], images[i])});
  }
  for (const InputSet& set : out) {
    if (set[0].size() != out[0][0].size())
      throw Error("a batch needs images of one size; got sizes " +
                  joined(out, [](const InputSet& s) { return size_text(s[0]); }) +
                  " (use predict() per image for mixed sizes)");
  }
  return out;
}

std::vector<Segmenter::Impl::InputSet> Segmenter::Impl::named_sets(
    const std::vector<NamedMats>& batch) const {
  if (batch.empty()) throw Error("empty batch: expected at least one set of inputs");
  const std::string expected =
      joined(inputs, [](const InputSpec& s) { return s.name + " (" + s.encoding + ")"; });
  std::vector<InputSet> out;
  for (size_t b = 0; b < batch.size(); ++b) {
    const NamedMats& given = batch[b];
    const std::string where = batch.size() == 1 ? "" : " (set " + std::to_string(b) + ")";
    for (const auto& [name, mat] : given) {
      const bool known = std::any_of(inputs.begin(), inputs.end(),
                                     [&](const InputSpec& s) { return s.name == name; });
      if (!known)
        throw Error(path + ": unexpected input '" + name + "'" + where + "; the network takes " +
                    expected);
    }
    InputSet set;
    for (const InputSpec& spec : inputs) {
      const auto it = given.find(spec.name);
      if (it == given.end())
        throw Error(path + ": missing input '" + spec.name + "'" + where + "; the network takes " +
                    expected);
      set.push_back(prepare_input(spec, it->second));
      if (set.back().size() != set[0].size())
        throw Error("input '" + spec.name + "'" + where + " is " + size_text(set.back()) +
                    " but input '" + inputs[0].name + "' is " + size_text(set[0]) +
                    "; all inputs of one call need the same height and width");
    }
    out.push_back(std::move(set));
  }
  for (const InputSet& set : out) {
    if (set[0].size() != out[0][0].size())
      throw Error("a batch needs inputs of one size; got sizes " +
                  joined(out, [](const InputSet& s) { return size_text(s[0]); }) +
                  " (use predict_heads() per set for mixed sizes)");
  }
  return out;
}

NamedMats Segmenter::Impl::by_head(std::vector<cv::Mat>& mats) const {
  NamedMats out;
  for (size_t k = 0; k < heads.size(); ++k) out[heads[k].name] = mats[k];
  return out;
}

void Segmenter::Impl::infer(const std::vector<InputSet>& sets, PerHead& labels, PerHead* scores) {
  const ModelMeta& meta = backend->meta();
  const int64_t n = static_cast<int64_t>(sets.size());
  const int64_t h = sets[0][0].rows, w = sets[0][0].cols, hw = h * w;
  const bool want_scores = scores != nullptr;
  // Per head: the graph's labels when it has them, else the argmax of its scores.
  std::vector<std::string> names;
  std::vector<bool> fetch_labels;
  for (const HeadSpec& head : heads) {
    const bool has_scores = backend->has_output(head.scores_output);
    if (want_scores && !has_scores)
      throw Error(path + ": scores were asked for but the network has no '" + head.scores_output +
                  "' output (fcn.outputs=" + meta.outputs + "; outputs: " +
                  backend->describe().substr(backend->describe().find("-> ") + 3) + ")");
    fetch_labels.push_back(backend->has_output(head.labels_output));
    if (want_scores || !fetch_labels.back()) names.push_back(head.scores_output);
  }
  for (size_t k = 0; k < heads.size(); ++k)
    if (fetch_labels[k]) names.push_back(heads[k].labels_output);

  std::lock_guard<std::mutex> lock(mutex);
  const int64_t limit = backend->max_batch(h, w);
  const int64_t chunk = limit > 0 ? std::min(limit, n) : n;
  labels.assign(sets.size(), {});
  if (scores) scores->assign(sets.size(), {});
  buffers.resize(inputs.size());
  std::vector<detail::InputTensor> tensors(inputs.size());
  for (int64_t first = 0; first < n; first += chunk) {
    const int64_t count = std::min(chunk, n - first);
    for (size_t k = 0; k < inputs.size(); ++k) {
      const int64_t c = inputs[k].channels;
      buffers[k].resize(static_cast<size_t>(count * c * hw));
      for (int64_t i = 0; i < count; ++i)
        preprocess_input_into(inputs[k], sets[first + i][k], buffers[k].data() + i * c * hw);
      tensors[k].data = buffers[k].data();
      tensors[k].shape = {count, c, h, w};
    }
    backend->run(tensors, names, out);
    const std::string input_text = detail::shape_text(tensors[0].shape.data(), 4);

    for (size_t k = 0; k < heads.size(); ++k) {
      const HeadSpec& head = heads[k];
      const int64_t classes = head.num_classes;
      const detail::OutputTensor* sc = nullptr;
      if (want_scores || !fetch_labels[k]) {
        sc = &out.at(head.scores_output);
        const auto& ss = sc->shape;
        if (ss.size() != 4 || ss[0] != count || ss[1] != classes || ss[2] != h || ss[3] != w)
          throw Error(path + ": output '" + head.scores_output + "' has shape " +
                      detail::shape_text(ss.data(), ss.size()) + " for input " + input_text +
                      "; expected [" + std::to_string(count) + ", " + std::to_string(classes) +
                      " (num_classes in the metadata), " + std::to_string(h) + ", " +
                      std::to_string(w) + "]");
      }
      const detail::OutputTensor* lb = nullptr;
      if (fetch_labels[k]) {
        lb = &out.at(head.labels_output);
        const auto& ls = lb->shape;
        if (ls.size() != 3 || ls[0] != count || ls[1] != h || ls[2] != w)
          throw Error(path + ": output '" + head.labels_output + "' has shape " +
                      detail::shape_text(ls.data(), ls.size()) + " for input " + input_text +
                      "; expected [" + std::to_string(count) + ", " + std::to_string(h) + ", " +
                      std::to_string(w) + "]");
      }
      for (int64_t i = 0; i < count; ++i) {
        cv::Mat label(static_cast<int>(h), static_cast<int>(w), CV_8UC1);
        if (lb) {
          std::copy_n(lb->labels.data() + i * hw, hw, label.ptr<uint8_t>());
        } else {
          detail::argmax_planes(sc->scores.data() + i * classes * hw, classes, hw, best,
                                label.ptr<uint8_t>());
        }
        labels[first + i].push_back(label);
        if (scores) {
          const int sizes[3] = {static_cast<int>(classes), static_cast<int>(h), static_cast<int>(w)};
          cv::Mat m(3, sizes, CV_32F);
          std::copy_n(sc->scores.data() + i * classes * hw, classes * hw, m.ptr<float>());
          (*scores)[first + i].push_back(m);
        }
      }
    }
  }
}

void Segmenter::Impl::tiled(const InputSet& set, int tile, std::vector<cv::Mat>& labels,
                            std::vector<cv::Mat>* scores) {
  const TileGeometry& geometry = backend->meta().tiling;
  if (!geometry.present())
    throw Error(path + " carries no tiling geometry (metadata 'tiling'); re-export the model "
                "with fcn-export from this fcn-deploy, or segment it whole");
  const int rows_n = set[0].rows, cols_n = set[0].cols;
  const std::vector<Span> rows = plan_axis(rows_n, tile, geometry);
  const std::vector<Span> cols = plan_axis(cols_n, tile, geometry);
  PerHead part_labels, part_scores;
  if (rows.size() == 1 && cols.size() == 1) {
    infer({set}, part_labels, scores ? &part_scores : nullptr);
    labels = part_labels[0];
    if (scores) *scores = part_scores[0];
    return;
  }
  labels.clear();
  for (size_t k = 0; k < heads.size(); ++k) labels.emplace_back(rows_n, cols_n, CV_8UC1);
  if (scores) {
    scores->clear();
    for (const HeadSpec& head : heads) {
      const int sizes[3] = {head.num_classes, rows_n, cols_n};
      scores->emplace_back(3, sizes, CV_32F);
    }
  }
  for (const Span& r : rows) {
    for (const Span& c : cols) {
      InputSet window;
      for (const cv::Mat& m : set)
        window.push_back(m(cv::Range(r.start, r.stop), cv::Range(c.start, c.stop)));
      infer({window}, part_labels, scores ? &part_scores : nullptr);
      const cv::Range src_rows(r.keep_start - r.start, r.keep_stop - r.start);
      const cv::Range src_cols(c.keep_start - c.start, c.keep_stop - c.start);
      for (size_t k = 0; k < heads.size(); ++k) {
        part_labels[0][k](src_rows, src_cols)
            .copyTo(labels[k](cv::Range(r.keep_start, r.keep_stop),
                              cv::Range(c.keep_start, c.keep_stop)));
        if (!scores) continue;
        const cv::Mat& tile_scores = part_scores[0][k];
        const int classes = tile_scores.size[0], tile_w = tile_scores.size[2];
        const int64_t width = c.keep_stop - c.keep_start;
        for (int cls = 0; cls < classes; ++cls) {
          for (int y = r.keep_start; y < r.keep_stop; ++y) {
            const float* src = tile_scores.ptr<float>(cls) +
                               static_cast<int64_t>(y - r.start) * tile_w + (c.keep_start - c.start);
            float* dst = (*scores)[k].ptr<float>(cls) + static_cast<int64_t>(y) * cols_n +
                         c.keep_start;
            std::copy_n(src, width, dst);
          }
        }
      }
    }
  }
}

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
  impl_->inputs = impl_->backend->meta().input_specs();
  impl_->heads = impl_->backend->meta().head_specs();
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
  const Impl& s = impl();
  const std::vector<Impl::InputSet> sets = s.single_sets(images_bgr, "preprocess");
  const InputSpec& spec = s.inputs[0];
  const size_t each = static_cast<size_t>(spec.channels) * sets[0][0].total();
  std::vector<float> out(sets.size() * each);
  for (size_t i = 0; i < sets.size(); ++i) preprocess_input_into(spec, sets[i][0], out.data() + i * each);
  return out;
}

cv::Mat Segmenter::predict(const cv::Mat& image_bgr, cv::Mat* scores) {
  std::vector<cv::Mat> all_scores;
  std::vector<cv::Mat> labels = predict_batch({image_bgr}, scores ? &all_scores : nullptr);
  if (scores) *scores = all_scores.at(0);
  return labels.at(0);
}

cv::Mat Segmenter::predict_tiled(const cv::Mat& image_bgr, int tile, cv::Mat* scores) {
  Impl& s = impl();
  const std::vector<Impl::InputSet> sets = s.single_sets({image_bgr}, "predict_tiled");
  std::vector<cv::Mat> labels, head_scores;
  s.tiled(sets[0], tile, labels, scores ? &head_scores : nullptr);
  if (scores) *scores = head_scores[0];
  return labels[0];
}

std::vector<cv::Mat> Segmenter::predict_batch(const std::vector<cv::Mat>& images_bgr,
                                              std::vector<cv::Mat>* scores) {
  Impl& s = impl();
  const std::vector<Impl::InputSet> sets = s.single_sets(images_bgr, "predict_batch");
  Impl::PerHead labels, head_scores;
  s.infer(sets, labels, scores ? &head_scores : nullptr);
  std::vector<cv::Mat> out;
  if (scores) scores->clear();
  for (size_t i = 0; i < sets.size(); ++i) {
    out.push_back(labels[i][0]);
    if (scores) scores->push_back(head_scores[i][0]);
  }
  return out;
}

NamedMats Segmenter::predict_heads(const NamedMats& inputs, NamedMats* scores) {
  std::vector<NamedMats> all_scores;
  std::vector<NamedMats> labels = predict_heads_batch({inputs}, scores ? &all_scores : nullptr);
  if (scores) *scores = all_scores.at(0);
  return labels.at(0);
}

std::vector<NamedMats> Segmenter::predict_heads_batch(const std::vector<NamedMats>& inputs,
                                                      std::vector<NamedMats>* scores) {
  Impl& s = impl();
  const std::vector<Impl::InputSet> sets = s.named_sets(inputs);
  Impl::PerHead labels, head_scores;
  s.infer(sets, labels, scores ? &head_scores : nullptr);
  std::vector<NamedMats> out;
  if (scores) scores->clear();
  for (size_t i = 0; i < sets.size(); ++i) {
    out.push_back(s.by_head(labels[i]));
    if (scores) scores->push_back(s.by_head(head_scores[i]));
  }
  return out;
}

NamedMats Segmenter::predict_heads_tiled(const NamedMats& inputs, int tile, NamedMats* scores) {
  Impl& s = impl();
  const std::vector<Impl::InputSet> sets = s.named_sets({inputs});
  std::vector<cv::Mat> labels, head_scores;
  s.tiled(sets[0], tile, labels, scores ? &head_scores : nullptr);
  if (scores) *scores = s.by_head(head_scores);
  return s.by_head(labels);
}

}  // namespace fcn
