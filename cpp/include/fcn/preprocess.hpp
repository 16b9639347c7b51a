// Network inputs from images and depth maps, driven by the metadata: fcn_deploy/preprocess.py.
#pragma once

#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "fcn/export.hpp"
#include "fcn/meta.hpp"

namespace fcn {

/// ``data`` checked and converted to what ``spec``'s encoding reads, or fcn::Error naming the
/// input: ``image``: to_bgr8() (CV_8UC3 BGR; gray, BGRA and 16-bit converted like Python's);
/// ``log_depth``: one channel of any integer or float depth (CV_8U, CV_16U, CV_16S, CV_32S,
/// CV_32F, CV_64F), as it is.
FCN_EXPORT cv::Mat prepare_input(const InputSpec& spec, const cv::Mat& data);

/// Writes ``spec.channels`` x H x W float32 values (CHW) for a prepare_input() result to ``dst``:
/// ``image``: float32(pixel[channel_order]) - float32(mean); ``log_depth``:
/// log(max(float32(depth), 1)) - float32(mean), missing depth (0) counting as 1.
FCN_EXPORT void preprocess_input_into(const InputSpec& spec, const cv::Mat& prepared, float* dst);

/// One network input as the net expects it (float32 CHW), like Python's
/// fcn_deploy.preprocess.preprocess_input: prepare_input() then preprocess_input_into().
FCN_EXPORT std::vector<float> preprocess_input(const InputSpec& spec, const cv::Mat& data);

}  // namespace fcn
