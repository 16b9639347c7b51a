// Image and label-map helpers that behave like fcn_deploy/imageio.py.
#pragma once

#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "fcn/export.hpp"
#include "fcn/meta.hpp"

namespace fcn {

/// Read an image file as CV_8UC3 BGR, like Python's read_image: turned upright by its EXIF
/// orientation (as photo viewers show it), grayscale replicated to 3 channels, alpha dropped,
/// 16-bit divided by 257. Throws fcn::Error for a missing, undecodable or truncated file (a
/// JPEG without an end-of-image marker after its last scan, refused as in Python) and for one
/// over OpenCV's pixel limit.
FCN_EXPORT cv::Mat read_image(const std::string& path);

/// Read a one-channel (8- or 16-bit) depth image as CV_32FC1 in the file's units (millimetres
/// for NYUDv2), like Python's read_depth: decoded unchanged (16 bits kept, unlike read_image).
/// Throws fcn::Error for a missing or undecodable file and for one with several channels.
FCN_EXPORT cv::Mat read_depth(const std::string& path);

/// True for a JPEG whose last scan is not followed by an end-of-image marker (a cut-off file);
/// false for anything that is not a JPEG. The same rule as Python's imageio.jpeg_is_truncated.
FCN_EXPORT bool jpeg_is_truncated(const std::vector<unsigned char>& data);

/// Convert a Mat as apps hold it (CV_8U/CV_16U with 1, 3 or 4 channels) into CV_8UC3 BGR, or
/// throw fcn::Error saying why it cannot be. ``name`` is used in messages.
FCN_EXPORT cv::Mat to_bgr8(const cv::Mat& image, const std::string& name = "image");

/// Label map (CV_8U) -> BGR image with the palette's colours, like Python's
/// runtime.visualize.colorize: labels beyond the palette are black, except the ignore label,
/// which gets VOC's ignore colour (224, 224, 192) when the palette does not cover it.
FCN_EXPORT cv::Mat colorize(const cv::Mat& labels, const ModelMeta& meta);

/// Blend class colours onto the image, ``rint((1 - opacity) * image + opacity * colour)`` in
/// float32, like Python's runtime.visualize.overlay: background (label 0) and the ignore label
/// keep the image's own colour.
FCN_EXPORT cv::Mat overlay(const cv::Mat& image_bgr, const cv::Mat& labels, const ModelMeta& meta,
                           double opacity = 0.5);

/// Write a label map as a VOC-style palette PNG (pixel values are the class indices, the
/// palette holds the colours), like Python's write_label_png. The file is written to a
/// temporary name in the same folder and renamed, so a failure leaves no partial file.
FCN_EXPORT void write_label_png(const std::string& path, const cv::Mat& labels,
                                const ModelMeta& meta);

/// Write class scores (a 3-D CV_32F Mat {C, H, W}, as predict() returns them) as a NumPy .npy
/// file of float32 C x H x W, like Python's fcn-segment --scores; atomically.
FCN_EXPORT void write_scores_npy(const std::string& path, const cv::Mat& scores);

/// Write an image (format from the extension) atomically; throws fcn::Error on failure.
FCN_EXPORT void write_image(const std::string& path, const cv::Mat& image);

}  // namespace fcn
