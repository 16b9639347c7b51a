// Network inputs from images and depth maps (fcn_deploy/preprocess.py's preprocess_input).
#include "fcn/preprocess.hpp"

#include <cmath>

#include "backend.hpp"
#include "fcn/error.hpp"
#include "fcn/image.hpp"

namespace fcn {
namespace {

template <typename T>
void log_depth_rows(const cv::Mat& depth, float mean, float* dst) {
  for (int y = 0; y < depth.rows; ++y) {
    const T* row = depth.ptr<T>(y);
    float* out = dst + static_cast<int64_t>(y) * depth.cols;
    for (int x = 0; x < depth.cols; ++x) {
      const float d = static_cast<float>(row[x]);  // as numpy's astype(float32)
      out[x] = std::log(d < 1.0f ? 1.0f : d) - mean;  // np.maximum keeps a NaN, and so does this
    }
  }
}

}  // namespace

cv::Mat prepare_input(const InputSpec& spec, const cv::Mat& data) {
  const std::string what = "input '" + spec.name + "'";
  if (spec.encoding == "image") return to_bgr8(data, what);
  if (spec.encoding == "log_depth") {
    if (data.empty() || data.dims != 2 || data.rows == 0 || data.cols == 0)
      throw Error(what + ": the depth map is empty; expected HxW with H, W > 0");
    if (data.channels() != 1)
      throw Error(what + ": expected an HxW depth map (one channel), got " +
                  detail::mat_text(data));
    switch (data.depth()) {
      case CV_8U: case CV_16U: case CV_16S: case CV_32S: case CV_32F: case CV_64F: return data;
      default:
        throw Error(what + ": pixel type of " + detail::mat_text(data) +
                    " is not supported; expected a numeric depth map (CV_16U millimetres as "
                    "read by read_depth, or CV_32F)");
    }
  }
  throw Error(what + ": no preprocessing for encoding '" + spec.encoding + "'");
}

void preprocess_input_into(const InputSpec& spec, const cv::Mat& prepared, float* dst) {
  const int64_t hw = static_cast<int64_t>(prepared.rows) * prepared.cols;
  if (spec.encoding == "log_depth") {
    const float mean = static_cast<float>(spec.mean.at(0));
    switch (prepared.depth()) {
      case CV_8U: log_depth_rows<uint8_t>(prepared, mean, dst); break;
      case CV_16U: log_depth_rows<uint16_t>(prepared, mean, dst); break;
      case CV_16S: log_depth_rows<int16_t>(prepared, mean, dst); break;
      case CV_32S: log_depth_rows<int32_t>(prepared, mean, dst); break;
      case CV_32F: log_depth_rows<float>(prepared, mean, dst); break;
      default: log_depth_rows<double>(prepared, mean, dst); break;
    }
    return;
  }
  const float mean[3] = {static_cast<float>(spec.mean.at(0)), static_cast<float>(spec.mean.at(1)),
                         static_cast<float>(spec.mean.at(2))};
  // Channel c of the network's input comes from BGR channel src[c].
  const bool rgb = spec.channel_order == "RGB";
  const int src[3] = {rgb ? 2 : 0, 1, rgb ? 0 : 2};
  for (int y = 0; y < prepared.rows; ++y) {
    const uint8_t* row = prepared.ptr<uint8_t>(y);
    float* out0 = dst + static_cast<int64_t>(y) * prepared.cols;
    float* out1 = out0 + hw;
    float* out2 = out1 + hw;
    for (int x = 0; x < prepared.cols; ++x) {
      const uint8_t* px = row + 3 * x;
      out0[x] = static_cast<float>(px[src[0]]) - mean[0];
      out1[x] = static_cast<float>(px[src[1]]) - mean[1];
      out2[x] = static_cast<float>(px[src[2]]) - mean[2];
    }
  }
}

std::vector<float> preprocess_input(const InputSpec& spec, const cv::Mat& data) {
  const cv::Mat prepared = prepare_input(spec, data);
  std::vector<float> out(static_cast<size_t>(spec.channels) * prepared.total());
  preprocess_input_into(spec, prepared, out.data());
  return out;
}

}  // namespace fcn
