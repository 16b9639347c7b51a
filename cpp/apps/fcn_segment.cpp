// fcn-segment-cpp: segment images with an fcn-deploy model, or time it (--bench).
//
// Parses arguments and calls the library; errors print as "error: ..." and exit 2, like the
// Python commands.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <numeric>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

#include "fcn/fcn.hpp"

namespace {

namespace fs = std::filesystem;

const char* kUsage = R"(usage: fcn-segment-cpp --model MODEL [options] [IMAGE ...]

Segment images with an fcn-deploy model (.onnx, or a TensorRT .plan with its .json sidecar):
preprocessing, classes and colours come from the model's metadata. IMAGE is the network's first
input (the colour image; the HHA image of an HHA-only net); a net with several inputs takes the
others with --input. A net with several heads writes one label map per head, <name>_<head>.png.

options:
  --model PATH       the model file
  -o, --output PATH  label map as a palette PNG of class indices (a folder for several images)
  --overlay PATH     the labels' colours blended over the image (a folder for several images)
  --scores PATH      the class scores as float32 C x H x W .npy (a folder for several images);
                     needs the model's scores outputs
  --input NAME=DIR   the network's input NAME (hha, depth) for each IMAGE: the file in DIR with
                     the IMAGE's stem (any image extension); a file instead of DIR with one
                     IMAGE. Depth images are read unchanged (16-bit millimetres). Repeatable
  --backend NAME     auto (from the extension), onnxruntime or tensorrt [auto]
  --device NAME      ONNX Runtime provider: cpu, cuda, tensorrt or auto [cpu]
  --device-id N      CUDA device [0]
  --threads N        ONNX Runtime intra-op threads, 0 = its default [0]
  --int8-kernels K   ONNX Runtime's CPU kernels for INT8 graphs: auto, fast or exact [auto].
                     auto = exact U8U8 kernels on x86 without VNNI (where the fast U8S8 ones
                     saturate and INT8 results drift), else fast. exact costs about 1.4x in
                     speed without VNNI and is only slower with it (fast is exact there);
                     fast without VNNI changes results
  --tile N           segment in tiles of N x N output pixels (rounded down to the network's
                     stride): the whole-image result in bounded memory; 0 never tiles
                     [default: tile images above --max-pixels]
  --max-pixels N     largest image segmented in one pass when --tile is not given [16777216]
  --info             print the model's metadata, inputs, heads and outputs, then exit
  --bench N          time N runs of predict() (preprocess + network + argmax) after warm-up
  --warmup N         warm-up runs before timing [3]
  --size HxW         image size for --bench when no IMAGE is given [500x500]
  --batch N          images per run for --bench [1]
  --json PATH        also write the --bench statistics as flat JSON
  -h, --help         show this help
)";

struct Args {
  std::string model, output, overlay, scores, json;
  std::vector<std::string> images;
  std::vector<std::pair<std::string, std::string>> inputs;  // --input NAME=DIR, in order
  fcn::Options options;
  bool info = false;
  int bench = 0, warmup = 3, batch = 1, height = 500, width = 500;
  int tile = -1;  // -1: automatic (above max_pixels), 0: never
  int64_t max_pixels = fcn::kDefaultMaxPixels;
};

// First SIGINT/SIGTERM: finish the current image (its files are written atomically, so nothing
// is left half-written or as a temporary file) and stop; a second one ends the process at once.
volatile std::sig_atomic_t g_stop = 0;

extern "C" void on_stop_signal(int signum) {
  g_stop = signum;
  std::signal(signum, SIG_DFL);
}

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An allocation failure: std::bad_alloc, or OpenCV's own (cv::Mat of a huge image).
bool out_of_memory(const std::exception& e) {
  if (dynamic_cast<const std::bad_alloc*>(&e)) return true;
  const auto* cv_error = dynamic_cast<const cv::Exception*>(&e);
  return cv_error != nullptr && cv_error->code == cv::Error::StsNoMem;
}

int to_int(const std::string& option, const std::string& value, int min) {
  try {
    size_t used = 0;
    const int v = std::stoi(value, &used);
    if (used == value.size() && v >= min) return v;
  } catch (const std::exception&) {
  }
  throw UsageError(option + " expects an integer >= " + std::to_string(min) + ", got '" + value + "'");
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError(arg + " expects a value");
      return argv[++i];
    };
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else if (arg == "--model") {
      a.model = value();
    } else if (arg == "-o" || arg == "--output") {
      a.output = value();
    } else if (arg == "--overlay") {
      a.overlay = value();
    } else if (arg == "--scores") {
      a.scores = value();
    } else if (arg == "--input") {
      const std::string v = value();
      const size_t eq = v.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == v.size())
        throw UsageError("--input expects NAME=DIR such as hha=data/hha, got '" + v + "'");
      const std::string name = v.substr(0, eq);
      for (const auto& given : a.inputs)
        if (given.first == name) throw UsageError("--input " + name + " is given twice");
      a.inputs.emplace_back(name, v.substr(eq + 1));
    } else if (arg == "--backend") {
      try {
        a.options.backend = fcn::parse_backend(value());
      } catch (const fcn::Error& e) {
        throw UsageError(e.what());
      }
    } else if (arg == "--device") {
      a.options.device = value();
    } else if (arg == "--device-id") {
      a.options.device_id = to_int(arg, value(), 0);
    } else if (arg == "--threads") {
      a.options.threads = to_int(arg, value(), 0);
    } else if (arg == "--int8-kernels") {
      a.options.int8_kernels = value();
      if (a.options.int8_kernels != "auto" && a.options.int8_kernels != "fast" &&
          a.options.int8_kernels != "exact")
        throw UsageError("--int8-kernels expects auto, fast or exact, got '" +
                         a.options.int8_kernels + "'");
    } else if (arg == "--tile") {
      a.tile = to_int(arg, value(), 0);
    } else if (arg == "--max-pixels") {
      a.max_pixels = to_int(arg, value(), 1);
    } else if (arg == "--info") {
      a.info = true;
    } else if (arg == "--bench") {
      a.bench = to_int(arg, value(), 1);
    } else if (arg == "--warmup") {
      a.warmup = to_int(arg, value(), 0);
    } else if (arg == "--batch") {
      a.batch = to_int(arg, value(), 1);
    } else if (arg == "--json") {
      a.json = value();
    } else if (arg == "--size") {
      const std::string v = value();
      const size_t x = v.find('x');
      if (x == std::string::npos) throw UsageError("--size expects HxW such as 500x500, got '" + v + "'");
      a.height = to_int(arg, v.substr(0, x), 1);
      a.width = to_int(arg, v.substr(x + 1), 1);
    } else if (!arg.empty() && arg[0] == '-' && arg != "-") {
      throw UsageError("unknown option " + arg);
    } else {
      a.images.push_back(arg);
    }
  }
  if (a.model.empty()) throw UsageError("--model is required");
  if (!a.info && a.bench == 0) {
    if (a.images.empty()) throw UsageError("give at least one IMAGE (or --bench N, or --info)");
    if (a.output.empty() && a.overlay.empty() && a.scores.empty())
      throw UsageError("nothing to write: give -o/--output, --overlay and/or --scores");
  }
  return a;
}

// Where the result for ``image`` goes: ``target`` itself for one image, else target/<stem>.png
// (``extension``);
// with several heads, <name>_<head>.png for each (``heads`` empty: the single-head name).
std::vector<std::string> destinations(const std::string& target, const std::string& image,
                                      size_t count, const std::vector<std::string>& heads,
                                      const std::string& extension = ".png") {
  fs::path base;
  if (count == 1 && !fs::is_directory(target)) {
    base = target;
  } else {
    if (!fs::is_directory(target))
      throw fcn::Error("with " + std::to_string(count) + " images, " + target +
                       " must be an existing folder");
    base = (fs::path(target) / fs::path(image).stem()).string() + extension;
  }
  if (heads.empty()) return {base.string()};
  std::vector<std::string> out;
  for (const std::string& head : heads) {
    fs::path p = base;
    out.push_back(p.replace_filename(base.stem().string() + "_" + head + base.extension().string())
                      .string());
  }
  return out;
}

// The file in ``dir`` for ``image``'s stem (any image extension), or ``dir`` itself when it is
// a file and there is one image; throws fcn::Error naming the input when there is none or
// several.
std::string input_file(const std::string& name, const std::string& dir, const std::string& image,
                       size_t count) {
  static const std::vector<std::string> extensions = {".jpg", ".jpeg", ".png", ".bmp", ".tif",
                                                      ".tiff", ".webp", ".ppm", ".pgm"};
  std::error_code ec;
  if (fs::is_regular_file(dir, ec)) {
    if (count == 1) return dir;
    throw fcn::Error("--input " + name + "=" + dir + " is a file; with " + std::to_string(count) +
                     " images give a folder whose files are named like the images");
  }
  if (!fs::is_directory(dir, ec))
    throw fcn::Error("--input " + name + "=" + dir + ": no such folder");
  const std::string stem = fs::path(image).stem().string();
  std::vector<std::string> found;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::string ext = entry.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    if (entry.path().stem().string() == stem && entry.is_regular_file(ec) &&
        std::find(extensions.begin(), extensions.end(), ext) != extensions.end())
      found.push_back(entry.path().string());
  }
  std::sort(found.begin(), found.end());
  if (found.empty())
    throw fcn::Error("no " + name + " input for " + image + ": " + dir + " holds no image named " +
                     stem + ".*");
  if (found.size() > 1)
    throw fcn::Error("several " + name + " inputs for " + image + " in " + dir + ": " + found[0] +
                     ", " + found[1] + "; keep one");
  return found[0];
}

void print_info(const fcn::Segmenter& seg) {
  const fcn::ModelMeta& m = seg.meta();
  std::cout << "model         " << seg.path() << "\n"
            << "backend       " << seg.backend() << "\n"
            << "network       " << seg.describe() << "\n"
            << (seg.int8_kernels().empty() ? "" : "cpu           " + seg.int8_kernels() + "\n")
            << "arch          " << m.arch << " (" << m.precision << ", outputs " << m.outputs << ")\n"
            << "classes       " << m.num_classes << ":";
  for (const auto& n : m.class_names) std::cout << " " << n;
  std::cout << std::setprecision(12) << "\npreprocess    " << m.channel_order << " minus mean [" << m.mean[0] << ", "
            << m.mean[1] << ", " << m.mean[2] << "], " << m.input_layout << ", no scaling\n"
            << "ignore label  " << m.ignore_label << "\n";
  for (const fcn::InputSpec& in : m.input_specs()) {
    std::cout << "input         " << in.name << ": " << in.channels << " channel(s), "
              << in.encoding << ", "
              << (in.encoding == "log_depth" ? "log(max(depth, 1))" : in.channel_order)
              << " minus mean [";
    for (size_t i = 0; i < in.mean.size(); ++i) std::cout << (i ? ", " : "") << in.mean[i];
    std::cout << "]\n";
  }
  for (const fcn::HeadSpec& h : m.head_specs()) {
    std::cout << "head          " << h.name << ": " << h.num_classes << " classes (outputs "
              << h.scores_output << " / " << h.labels_output << "):";
    for (const auto& n : h.class_names) std::cout << " " << n;
    std::cout << "\n";
  }
}

// numpy.percentile's default (linear interpolation between closest ranks).
double percentile(const std::vector<double>& sorted, double q) {
  const double pos = q / 100.0 * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - static_cast<double>(lo));
}

void write_json(const std::string& path, const nlohmann::json& j) {
  const fs::path target(path);
  const fs::path tmp = (target.has_parent_path() ? target.parent_path() : fs::path(".")) /
                       ("." + target.filename().string() + ".tmp-" + std::to_string(::getpid()));
  std::error_code ec;
  {
    std::ofstream out(tmp);
    out << j.dump(2) << "\n";
    out.flush();
    if (!out) {
      fs::remove(tmp, ec);
      throw fcn::Error("could not write " + path + " (folder missing, not writable, or disk full)");
    }
  }
  fs::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw fcn::Error("could not write " + path + ": " + ec.message());
  }
}

// A path as the file system sees it: symlinks resolved (also for a file not written yet).
fs::path resolved(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::absolute(path), ec);
  return ec ? fs::absolute(path).lexically_normal() : p;
}

// The identities of a path: its resolved form, and (for an existing file) device and inode,
// which also catch hard links.
std::vector<std::string> identities(const std::string& path) {
  std::vector<std::string> ids = {"p:" + resolved(path).string()};
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0)
    ids.push_back("i:" + std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino));
  return ids;
}

// What the run does for one IMAGE: the files of the other inputs, and the label maps and
// overlays it writes (one per head of a multi-head net).
struct Job {
  std::string image;
  std::vector<std::pair<std::string, std::string>> inputs;  // (input name, file) beyond IMAGE
  std::vector<std::string> masks, overlays, scores;
};

// Refuses, before any work, an output that is an input (model, sidecar, image) or another output
// of the run: the rule every fcn-deploy command follows (fcn_deploy/fileio.py RunFiles).
void check_outputs(const Args& a, const std::vector<Job>& jobs) {
  std::map<std::string, std::pair<std::string, std::string>> inputs;  // identity -> (what, path)
  auto add_input = [&](const std::string& what, const std::string& path) {
    for (const std::string& id : identities(path)) inputs.emplace(id, std::make_pair(what, path));
  };
  add_input("model", a.model);
  add_input("model sidecar", a.model + ".json");
  for (const std::string& image : a.images) add_input("image", image);
  for (const Job& job : jobs)
    for (const auto& [name, file] : job.inputs) add_input(name + " input", file);
  std::vector<std::pair<std::string, std::string>> outputs;
  for (const Job& job : jobs) {
    for (const std::string& mask : job.masks) outputs.push_back({"mask of " + job.image, mask});
    for (const std::string& ov : job.overlays) outputs.push_back({"overlay of " + job.image, ov});
    for (const std::string& sc : job.scores) outputs.push_back({"scores of " + job.image, sc});
  }
  if (!a.json.empty()) outputs.push_back({"--json report", a.json});
  std::map<std::string, std::pair<std::string, std::string>> written;
  for (const auto& [what, out] : outputs) {
    // Where it goes must exist now: found after the run, the work would be lost.
    const fs::path target(out);
    const fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
    if (fs::is_directory(target))
      throw fcn::Error(what + " " + out + " is a folder; expected a file name");
    if (!fs::is_directory(folder))
      throw fcn::Error("cannot write " + what + " " + out + ": folder " + folder.string() +
                       " does not exist");
    for (const std::string& id : identities(out)) {
      if (auto in = inputs.find(id); in != inputs.end())
        throw fcn::Error(what + " " + out + " is also the " + in->second.first + " " +
                         in->second.second +
                         "; writing it would destroy the input. Choose another output path");
      if (auto other = written.find(id); other != written.end())
        throw fcn::Error(other->second.first + " and " + what + " would both be written to " + out +
                         "; give them different names");
    }
    for (const std::string& id : identities(out)) written.emplace(id, std::make_pair(what, out));
  }
}

// The inputs of one run: IMAGE for the network's first input, the --input files for the others
// (depth maps read unchanged, images as read_image reads them).
fcn::NamedMats read_inputs(const fcn::Segmenter& seg, const Job& job) {
  const std::vector<fcn::InputSpec> specs = seg.meta().input_specs();
  auto read = [](const fcn::InputSpec& spec, const std::string& path) {
    return spec.encoding == "log_depth" ? fcn::read_depth(path) : fcn::read_image(path);
  };
  fcn::NamedMats inputs;
  inputs[specs[0].name] = read(specs[0], job.image);
  for (const auto& [name, file] : job.inputs)
    for (const fcn::InputSpec& spec : specs)
      if (spec.name == name) inputs[name] = read(spec, file);
  return inputs;
}

// The --input names against the network's inputs: every input after the first, no other.
void check_input_names(const fcn::Segmenter& seg, const Args& a) {
  const std::vector<std::string> names = seg.meta().input_names();
  std::string others;
  for (size_t i = 1; i < names.size(); ++i) others += (others.empty() ? "" : ", ") + names[i];
  for (const auto& [name, dir] : a.inputs) {
    if (name == names[0])
      throw fcn::Error("--input " + name + ": '" + name + "' is the network's first input; give " +
                       "its files as IMAGE arguments");
    if (std::find(names.begin(), names.end(), name) == names.end())
      throw fcn::Error("--input " + name + ": the network has no input '" + name + "'; " +
                       (others.empty() ? "it takes only IMAGE (" + names[0] + ")"
                                       : "its other inputs are " + others));
  }
  for (size_t i = 1; i < names.size(); ++i) {
    const bool given = std::any_of(a.inputs.begin(), a.inputs.end(),
                                   [&](const auto& in) { return in.first == names[i]; });
    if (!given)
      throw fcn::Error("the network also takes input '" + names[i] + "'; give it with --input " +
                       names[i] + "=DIR (files named like the images)");
  }
}

int bench(fcn::Segmenter& seg, const Args& a) {
  cv::Mat image;
  if (!a.images.empty()) {
    image = fcn::read_image(a.images[0]);
  } else {
    image.create(a.height, a.width, CV_8UC3);
    cv::RNG rng(0);
    rng.fill(image, cv::RNG::UNIFORM, 0, 256);
  }
  const std::vector<cv::Mat> batch(static_cast<size_t>(a.batch), image);
  // A net with several inputs or heads: predict_heads() with the image as its first input and
  // random data of the same size as the others (depth: 0.5 to 10 m in millimetres).
  const std::vector<fcn::InputSpec> specs = seg.meta().input_specs();
  const bool multi = specs.size() > 1 || seg.meta().multi_head();
  fcn::NamedMats named;
  for (size_t k = 0; multi && k < specs.size(); ++k) {
    if (k == 0) {
      named[specs[k].name] = image;
      continue;
    }
    cv::Mat data(image.rows, image.cols, specs[k].encoding == "log_depth" ? CV_16UC1 : CV_8UC3);
    cv::RNG rng(k);
    if (specs[k].encoding == "log_depth")
      rng.fill(data, cv::RNG::UNIFORM, 500, 10000);
    else
      rng.fill(data, cv::RNG::UNIFORM, 0, 256);
    named[specs[k].name] = data;
  }
  const std::vector<fcn::NamedMats> named_batch(static_cast<size_t>(a.batch), named);
  auto once = [&] {
    if (multi && a.batch == 1)
      seg.predict_heads(named);
    else if (multi)
      seg.predict_heads_batch(named_batch);
    else if (a.batch == 1)
      seg.predict(image);
    else
      seg.predict_batch(batch);
  };
  for (int i = 0; i < a.warmup; ++i) once();
  std::vector<double> ms;
  ms.reserve(static_cast<size_t>(a.bench));
  for (int i = 0; i < a.bench; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    once();
    const auto t1 = std::chrono::steady_clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  const double mean = std::accumulate(ms.begin(), ms.end(), 0.0) / static_cast<double>(ms.size());
  double var = 0;  // sample variance (ddof=1), as fcn-bench reports it
  for (double v : ms) var += (v - mean) * (v - mean);
  const double sd = ms.size() > 1 ? std::sqrt(var / static_cast<double>(ms.size() - 1)) : 0.0;
  const double cv = mean > 0 ? sd / mean : 0.0;
  const double median = percentile(sorted, 50), p90 = percentile(sorted, 90),
               p99 = percentile(sorted, 99);
  const double ips = 1000.0 * a.batch / mean;

  std::printf("model     %s (%s, %s)\n", seg.path().c_str(), seg.meta().arch.c_str(),
              seg.meta().precision.c_str());
  std::printf("backend   %s, threads %s\n", seg.backend().c_str(),
              a.options.threads ? std::to_string(a.options.threads).c_str() : "default");
  if (seg.meta().precision == "int8" && !seg.int8_kernels().empty())
    std::printf("          %s\n", seg.int8_kernels().c_str());
  std::printf("input     %dx3x%dx%d, %d warm-up + %d timed runs of predict() "
              "(preprocess + network + argmax)\n", a.batch, image.rows, image.cols, a.warmup, a.bench);
  std::printf("latency   min %.3f ms  median %.3f  mean %.3f  p90 %.3f  p99 %.3f  max %.3f  "
              "cv %.1f%%  (%.1f images/s)\n", sorted.front(), median, mean, p90, p99, sorted.back(),
              100.0 * cv, ips);
  if (!a.json.empty()) {
    nlohmann::json j = {{"tool", "fcn-segment-cpp"}, {"model", seg.path()},
                        {"arch", seg.meta().arch}, {"precision", seg.meta().precision},
                        {"backend", seg.backend()}, {"threads", a.options.threads},
                        {"int8_kernels", seg.int8_kernels()},
                        {"batch", a.batch}, {"height", image.rows}, {"width", image.cols},
                        {"warmup", a.warmup}, {"runs", a.bench}, {"min_ms", sorted.front()},
                        {"median_ms", median}, {"mean_ms", mean}, {"p90_ms", p90},
                        {"p99_ms", p99}, {"max_ms", sorted.back()}, {"std_ms", sd}, {"cv", cv}, {"images_per_s", ips}};
    write_json(a.json, j);
  }
  return 0;
}

// predict_heads() or predict_heads_tiled() as --tile / --max-pixels say (the Python CLI's
// rule): one label map per head.
fcn::NamedMats segment(fcn::Segmenter& seg, const fcn::NamedMats& inputs, const Args& a,
                       fcn::NamedMats* scores) {
  if (a.tile > 0) return seg.predict_heads_tiled(inputs, a.tile, scores);
  const fcn::TileGeometry& geometry = seg.meta().tiling;
  const cv::Mat& first = inputs.at(seg.meta().input_specs()[0].name);  // all of one size
  if (a.tile < 0 && geometry.present() &&
      static_cast<int64_t>(first.rows) * first.cols > a.max_pixels)
    return seg.predict_heads_tiled(inputs, fcn::tile_for_pixels(a.max_pixels, geometry), scores);
  return seg.predict_heads(inputs, scores);
}

// CPU cores this process may run on (its affinity mask, as Python's cap_threads counts them).
unsigned available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

int run(Args a) {
  const unsigned cores = available_cores();
  if (a.options.threads > static_cast<int>(cores)) {
    std::cerr << "warning: --threads " << a.options.threads << " is more than the " << cores
              << " CPU cores available here; using " << cores << " threads\n";
    a.options.threads = static_cast<int>(cores);
  }
  fcn::Segmenter seg(a.model, a.options);  // its inputs and heads name the files of the run
  // Every file first, so a clash (or an output over an input) fails before any work.
  std::vector<Job> jobs;
  std::vector<std::string> job_errors;  // an IMAGE whose other inputs are not found
  const std::vector<fcn::HeadSpec> heads = seg.meta().head_specs();
  std::vector<std::string> head_names;  // empty: one head, files named as ever
  if (heads.size() > 1)
    for (const fcn::HeadSpec& h : heads) head_names.push_back(h.name);
  if (!a.info && a.bench == 0) {
    check_input_names(seg, a);
    for (const std::string& path : a.images) {
      Job job;
      job.image = path;
      std::string error;
      for (const auto& [name, dir] : a.inputs) {
        try {
          job.inputs.emplace_back(name, input_file(name, dir, path, a.images.size()));
        } catch (const fcn::Error& e) {
          if (a.images.size() == 1) throw;
          if (error.empty()) error = e.what();
        }
      }
      if (!a.output.empty()) job.masks = destinations(a.output, path, a.images.size(), head_names);
      if (!a.overlay.empty())
        job.overlays = destinations(a.overlay, path, a.images.size(), head_names);
      if (!a.scores.empty())
        job.scores = destinations(a.scores, path, a.images.size(), head_names, ".npy");
      jobs.push_back(job);
      job_errors.push_back(error);
    }
    if (!a.overlay.empty() && seg.meta().input_specs()[0].encoding != "image")
      throw fcn::Error("--overlay draws over the network's first input, which is not an image (" +
                       seg.meta().input_specs()[0].encoding + ")");
  }
  check_outputs(a, jobs);
  if (a.info) {
    print_info(seg);
    return 0;
  }
  if (a.bench > 0) return bench(seg, a);
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  int failed = 0;
  for (size_t i = 0; i < jobs.size() && !g_stop; ++i) {
    const Job& job = jobs[i];
    const std::string& path = job.image;
    try {  // a bad image is reported and the others go on, as in Python's fcn-segment
      if (!job_errors[i].empty()) throw fcn::Error(job_errors[i]);
      const fcn::NamedMats inputs = read_inputs(seg, job);
      fcn::NamedMats scores;
      const fcn::NamedMats labels = segment(seg, inputs, a, a.scores.empty() ? nullptr : &scores);
      for (size_t k = 0; k < heads.size(); ++k) {
        const fcn::ModelMeta head_meta = seg.meta().for_head(heads[k].name);
        const cv::Mat& head_labels = labels.at(heads[k].name);
        if (!job.masks.empty()) {
          fcn::write_label_png(job.masks[k], head_labels, head_meta);
          std::cout << path << " -> " << job.masks[k] << "\n";
        }
        if (!job.overlays.empty()) {
          const cv::Mat& image = inputs.at(seg.meta().input_specs()[0].name);
          fcn::write_image(job.overlays[k], fcn::overlay(image, head_labels, head_meta));
          std::cout << path << " -> " << job.overlays[k] << " (overlay)\n";
        }
        if (!job.scores.empty()) {
          fcn::write_scores_npy(job.scores[k], scores.at(heads[k].name));
          std::cout << path << " -> " << job.scores[k] << " (scores)\n";
        }
      }
    } catch (const fcn::Error& e) {
      if (a.images.size() == 1) throw;
      std::cerr << "error: " << path << ": " << e.what() << "\n";
      ++failed;
    } catch (const std::exception& e) {
      if (!out_of_memory(e)) throw;
      if (a.images.size() == 1) throw fcn::Error(path + ": out of memory for this image");
      std::cerr << "error: " << path << ": out of memory for this image\n";
      ++failed;
    }
  }
  if (g_stop) {
    std::cerr << (g_stop == SIGTERM ? "terminated" : "interrupted") << "\n";
    return 128 + static_cast<int>(g_stop);
  }
  if (failed) {
    std::cerr << failed << " of " << a.images.size() << " images failed\n";
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const UsageError& e) {
    std::cerr << kUsage << "error: " << e.what() << "\n";
    return 2;
  } catch (const fcn::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    if (out_of_memory(e)) {
      std::cerr << "error: out of memory; use smaller images or batches\n";
      return 2;
    }
    std::cerr << "internal error (please report): " << e.what() << "\n";
    return 1;
  }
}
