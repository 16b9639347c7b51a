// Image reading/conversion like fcn_deploy/imageio.py, palette PNGs, colourizing and overlays.
#include "fcn/image.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include <unistd.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <zlib.h>

#include "backend.hpp"
#include "fcn/error.hpp"

namespace fcn {
namespace detail {

std::string mat_text(const cv::Mat& m) {
  static const char* depths[] = {"CV_8U", "CV_8S", "CV_16U", "CV_16S",
                                 "CV_32S", "CV_32F", "CV_64F", "CV_16F"};
  std::string dims = m.dims == 2 ? std::to_string(m.rows) + "x" + std::to_string(m.cols)
                                 : std::to_string(m.dims) + "-D";
  return dims + " " + depths[m.depth()] + " with " + std::to_string(m.channels()) + " channel(s)";
}

}  // namespace detail
namespace {

namespace fs = std::filesystem;
using detail::mat_text;

void check_labels(const cv::Mat& labels, const std::string& what) {
  if (labels.empty() || labels.type() != CV_8UC1 || labels.dims != 2)
    throw Error(what + ": expected a non-empty CV_8UC1 label map, got " +
                (labels.empty() ? std::string("an empty Mat") : mat_text(labels)));
}

// Writes ``bytes`` to a temporary file beside ``path`` and renames it over ``path``.
void atomic_write(const std::string& path, const std::vector<unsigned char>& bytes) {
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  if (!fs::is_directory(dir))
    throw Error("cannot write " + path + ": folder " + dir.string() + " does not exist");
  static std::atomic<unsigned> counter{0};
  const fs::path tmp = dir / ("." + target.filename().string() + ".tmp-" +
                              std::to_string(::getpid()) + "-" + std::to_string(counter++));
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) {
      const int err = errno;
      std::error_code ignored;
      fs::remove(tmp, ignored);
      throw Error("could not write " + path + ": " +
                  (err ? std::string(std::strerror(err)) : std::string("disk full or no permission")));
    }
  }
  std::error_code ec;
  fs::rename(tmp, target, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw Error("could not write " + path + ": " + ec.message());
  }
}

void put_u32(std::vector<unsigned char>& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<unsigned char>(v >> shift));
}

void put_chunk(std::vector<unsigned char>& out, const char type[4],
               const std::vector<unsigned char>& data) {
  put_u32(out, static_cast<uint32_t>(data.size()));
  const size_t start = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data.begin(), data.end());
  const uLong crc = crc32(0L, out.data() + start, static_cast<uInt>(out.size() - start));
  put_u32(out, static_cast<uint32_t>(crc));
}

}  // namespace

cv::Mat to_bgr8(const cv::Mat& image, const std::string& name) {
  if (image.empty() || image.dims != 2 || image.rows == 0 || image.cols == 0)
    throw Error(name + ": the image is empty; expected HxWx3 with H, W > 0");
  cv::Mat img8;
  if (image.depth() == CV_16U) {
    img8.create(image.rows, image.cols, CV_MAKETYPE(CV_8U, image.channels()));
    const int n = image.cols * image.channels();
    for (int y = 0; y < image.rows; ++y) {
      const uint16_t* src = image.ptr<uint16_t>(y);
      uint8_t* dst = img8.ptr<uint8_t>(y);
      for (int i = 0; i < n; ++i) dst[i] = static_cast<uint8_t>(src[i] / 257);  // as Python
    }
  } else if (image.depth() == CV_8U) {
    img8 = image;
  } else {
    throw Error(name + ": pixel type of " + mat_text(image) +
                " is not supported; expected 8-bit or 16-bit (convert float images to 0..255 "
                "CV_8U first)");
  }
  cv::Mat out;
  switch (img8.channels()) {
    case 1: cv::cvtColor(img8, out, cv::COLOR_GRAY2BGR); break;
    case 3: out = img8.isContinuous() ? img8 : img8.clone(); break;
    case 4: cv::cvtColor(img8, out, cv::COLOR_BGRA2BGR); break;
    default:
      throw Error(name + ": " + mat_text(image) +
                  " is not an image; expected 1, 3 (BGR) or 4 (BGRA) channels");
  }
  return out;
}

bool jpeg_is_truncated(const std::vector<unsigned char>& data) {
  // The rule of fcn_deploy/imageio.py: an FFD9 (end of image) must follow the last FFDA (start
  // of scan). Scan data cannot hold markers (0xFF is stuffed as FF 00) and an EXIF thumbnail's
  // own FFD9 lies before the main image's scans.
  if (data.size() < 2 || data[0] != 0xFF || data[1] != 0xD8) return false;
  size_t last_scan = std::string::npos;
  for (size_t i = 0; i + 1 < data.size(); ++i)
    if (data[i] == 0xFF && data[i + 1] == 0xDA) last_scan = i;
  if (last_scan == std::string::npos) return false;  // no scan: the decoder refuses it itself
  for (size_t i = last_scan + 2; i + 1 < data.size(); ++i)
    if (data[i] == 0xFF && data[i + 1] == 0xD9) return false;
  return true;
}

cv::Mat read_image(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw Error("image " + path + " does not exist");
  std::ifstream in(path, std::ios::binary);
  std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)),
                                   std::istreambuf_iterator<char>());
  if (jpeg_is_truncated(bytes))
    throw Error("image " + path + " is a truncated JPEG (no end-of-image marker after its last "
                "scan); the file was cut off while copying or downloading");
  cv::Mat image;
  if (!bytes.empty()) {
    // As fcn_deploy/imageio.py: any depth and colour layout (converted by to_bgr8), with the
    // EXIF orientation applied (IMREAD_UNCHANGED alone would ignore it).
    try {
      image = cv::imdecode(bytes, cv::IMREAD_ANYDEPTH | cv::IMREAD_ANYCOLOR);
    } catch (const cv::Exception& e) {
      if (std::string(e.what()).find("CV_IO_MAX_IMAGE_PIXELS") != std::string::npos)
        throw Error("image " + path + " has more pixels than OpenCV decodes (its limit, 2^30 by "
                    "default, is set by the environment variable OPENCV_IO_MAX_IMAGE_PIXELS); "
                    "raise it if the machine has the memory for this image");
      image = cv::Mat();
    }
  }
  if (image.empty())
    throw Error("image " + path + " could not be decoded; expected a readable image file "
                "(.jpg, .jpeg, .png, .bmp, .tif, .tiff, .webp, .ppm, .pgm)");
  return to_bgr8(image, "image " + path);
}

cv::Mat read_depth(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw Error("depth image " + path + " does not exist");
  std::ifstream in(path, std::ios::binary);
  const std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)),
                                         std::istreambuf_iterator<char>());
  cv::Mat depth;
  if (!bytes.empty()) {
    try {
      depth = cv::imdecode(bytes, cv::IMREAD_UNCHANGED);  // 16 bits kept, no EXIF turn
    } catch (const cv::Exception&) {
      depth = cv::Mat();
    }
  }
  if (depth.empty())
    throw Error("depth image " + path + " could not be decoded; expected a 16-bit PNG");
  if (depth.channels() != 1)
    throw Error("depth image " + path + " is " + mat_text(depth) + "; expected one channel");
  cv::Mat out;
  depth.convertTo(out, CV_32F);
  return out;
}

// 256 BGR colours: the palette, black beyond it, VOC's ignore colour for an uncovered ignore label.
std::array<cv::Vec3b, 256> label_lut(const ModelMeta& meta) {
  std::array<cv::Vec3b, 256> lut{};
  const size_t n = std::min<size_t>(meta.palette.size(), 256);
  for (size_t i = 0; i < n; ++i)
    lut[i] = cv::Vec3b(static_cast<uchar>(meta.palette[i][2]), static_cast<uchar>(meta.palette[i][1]),
                       static_cast<uchar>(meta.palette[i][0]));
  if (meta.ignore_label >= 0 && meta.ignore_label < 256 && static_cast<size_t>(meta.ignore_label) >= n)
    lut[meta.ignore_label] = cv::Vec3b(192, 224, 224);
  return lut;
}

cv::Mat colorize(const cv::Mat& labels, const ModelMeta& meta) {
  check_labels(labels, "colorize");
  const auto lut = label_lut(meta);
  cv::Mat out(labels.size(), CV_8UC3);
  for (int y = 0; y < labels.rows; ++y) {
    const uchar* src = labels.ptr<uchar>(y);
    cv::Vec3b* dst = out.ptr<cv::Vec3b>(y);
    for (int x = 0; x < labels.cols; ++x) dst[x] = lut[src[x]];
  }
  return out;
}

cv::Mat overlay(const cv::Mat& image_bgr, const cv::Mat& labels, const ModelMeta& meta,
                double opacity) {
  check_labels(labels, "overlay");
  const cv::Mat image = to_bgr8(image_bgr, "overlay image");
  if (image.size() != labels.size())
    throw Error("overlay: image is " + mat_text(image) + " but the label map is " +
                mat_text(labels) + "; expected the same height and width");
  if (!(opacity >= 0.0 && opacity <= 1.0))
    throw Error("overlay opacity must be between 0 and 1, got " + std::to_string(opacity));
  const auto lut = label_lut(meta);
  // float32 arithmetic, one rounding per operation, as numpy does it.
  const float keep = static_cast<float>(1.0 - opacity), mix = static_cast<float>(opacity);
  cv::Mat out = image.clone();
  for (int y = 0; y < labels.rows; ++y) {
    const uchar* lab = labels.ptr<uchar>(y);
    cv::Vec3b* dst = out.ptr<cv::Vec3b>(y);
    for (int x = 0; x < labels.cols; ++x) {
      if (lab[x] == 0 || lab[x] == meta.ignore_label) continue;
      const cv::Vec3b& colour = lut[lab[x]];
      for (int c = 0; c < 3; ++c) {
        const float a = keep * static_cast<float>(dst[x][c]);
        const float b = mix * static_cast<float>(colour[c]);
        const float v = std::nearbyint(a + b);
        dst[x][c] = static_cast<uchar>(std::min(255.0f, std::max(0.0f, v)));
      }
    }
  }
  return out;
}

void write_label_png(const std::string& path, const cv::Mat& labels, const ModelMeta& meta) {
  check_labels(labels, "write_label_png " + path);
  const auto width = static_cast<uint32_t>(labels.cols);
  const auto height = static_cast<uint32_t>(labels.rows);

  std::vector<unsigned char> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  std::vector<unsigned char> ihdr;
  put_u32(ihdr, width);
  put_u32(ihdr, height);
  ihdr.insert(ihdr.end(), {8, 3, 0, 0, 0});  // 8 bits, palette colour, deflate, filter 0, no interlace
  put_chunk(png, "IHDR", ihdr);

  std::vector<unsigned char> plte(768, 0);  // 256 entries, unused ones black (as Python writes)
  for (size_t i = 0; i < meta.palette.size() && i < 256; ++i)
    for (int c = 0; c < 3; ++c) plte[3 * i + c] = static_cast<unsigned char>(meta.palette[i][c]);
  put_chunk(png, "PLTE", plte);

  std::vector<unsigned char> raw;
  raw.reserve(static_cast<size_t>(height) * (width + 1));
  for (int y = 0; y < labels.rows; ++y) {
    raw.push_back(0);  // filter type None
    const uchar* row = labels.ptr<uchar>(y);
    raw.insert(raw.end(), row, row + labels.cols);
  }
  uLongf packed_size = compressBound(static_cast<uLong>(raw.size()));
  std::vector<unsigned char> packed(packed_size);
  if (compress2(packed.data(), &packed_size, raw.data(), static_cast<uLong>(raw.size()), 6) != Z_OK)
    throw Error("write_label_png " + path + ": zlib could not compress the label map");
  packed.resize(packed_size);
  put_chunk(png, "IDAT", packed);
  put_chunk(png, "IEND", {});
  atomic_write(path, png);
}

void write_scores_npy(const std::string& path, const cv::Mat& scores) {
  if (scores.dims != 3 || scores.type() != CV_32FC1 || !scores.isContinuous())
    throw Error("write_scores_npy " + path + ": expected a continuous 3-D CV_32F Mat {C, H, W}, got " +
                (scores.empty() ? std::string("an empty Mat") : mat_text(scores)));
  // NPY format 1.0: magic, version, little-endian header length, a Python dict literal padded
  // with spaces to a multiple of 64 bytes and ended by a newline, then the raw C-order data.
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" +
                       std::to_string(scores.size[0]) + ", " + std::to_string(scores.size[1]) +
                       ", " + std::to_string(scores.size[2]) + "), }";
  const size_t preamble = 10;
  header.append(64 - (preamble + header.size() + 1) % 64, ' ');
  header += '\n';
  std::vector<unsigned char> bytes = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                                      static_cast<unsigned char>(header.size() & 0xff),
                                      static_cast<unsigned char>(header.size() >> 8)};
  bytes.insert(bytes.end(), header.begin(), header.end());
  const auto* data = scores.ptr<unsigned char>();
  bytes.insert(bytes.end(), data, data + scores.total() * sizeof(float));  // x86/ARM: little-endian
  atomic_write(path, bytes);
}

void write_image(const std::string& path, const cv::Mat& image) {
  std::string ext = fs::path(path).extension().string();
  if (ext.empty()) ext = ".png";
  std::vector<unsigned char> bytes;
  bool ok = false;
  try {
    ok = cv::imencode(ext, image, bytes);
  } catch (const cv::Exception&) {
    ok = false;
  }
  if (!ok) throw Error("could not encode " + path + "; use .png or .jpg");
  atomic_write(path, bytes);
}

}  // namespace fcn
