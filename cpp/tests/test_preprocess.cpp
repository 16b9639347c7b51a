// preprocess_input for both encodings, with values computed by hand (fcn_deploy/preprocess.py's
// preprocess_input), and read_depth keeping 16 bits.
#include <cmath>
#include <limits>

#include <opencv2/imgcodecs.hpp>

#include "fcn/image.hpp"
#include "fcn/preprocess.hpp"
#include "onnx_writer.hpp"
#include "testing.hpp"

namespace {

fcn::InputSpec spec(const std::string& name, int channels, std::vector<double> mean,
                    const std::string& order, const std::string& encoding) {
  fcn::InputSpec s;
  s.name = name;
  s.channels = channels;
  s.mean = std::move(mean);
  s.channel_order = order;
  s.encoding = encoding;
  return s;
}

// |a - b| within a few float32 ulps of b: std::log and numpy's float32 log may differ by an ulp.
bool close(float a, double b) { return std::abs(static_cast<double>(a) - b) <= 2e-6 * std::max(1.0, std::abs(b)); }

}  // namespace

TEST(preprocess, image_encoding_bgr_and_rgb) {
  cv::Mat img(1, 2, CV_8UC3);
  img.at<cv::Vec3b>(0, 0) = {200, 0, 0};  // B, G, R
  img.at<cv::Vec3b>(0, 1) = {10, 20, 30};
  const auto bgr = fcn::preprocess_input(spec("image", 3, {10, 20, 30}, "BGR", "image"), img);
  CHECK((bgr == std::vector<float>{190, 0, -20, 0, -30, 0}));  // CHW: B plane, G, R
  // HHA: the PNG's channels in RGB order minus NYUDv2's HHA mean, in float32
  const auto hha = fcn::preprocess_input(spec("hha", 3, {118.477, 94.076, 132.431}, "RGB", "image"), img);
  CHECK_EQ(hha[0], 0.0f - 118.477f);   // R of pixel 0
  CHECK_EQ(hha[1], 30.0f - 118.477f);  // R of pixel 1
  CHECK_EQ(hha[2], 0.0f - 94.076f);
  CHECK_EQ(hha[4], 200.0f - 132.431f);  // B of pixel 0
  CHECK_EQ(hha[5], 10.0f - 132.431f);
  cv::Mat gray(1, 1, CV_8UC1, cv::Scalar(50));  // converted like predict()'s images
  CHECK((fcn::preprocess_input(spec("image", 3, {10, 20, 30}, "BGR", "image"), gray) ==
         std::vector<float>{40, 30, 20}));
  CHECK_THROWS(fcn::preprocess_input(spec("hha", 3, {0, 0, 0}, "RGB", "image"), cv::Mat(2, 2, CV_32FC3)),
               "input 'hha': pixel type of 2x2 CV_32F");
}

TEST(preprocess, log_depth_encoding) {
  const fcn::InputSpec depth = spec("depth", 1, {7.844}, "BGR", "log_depth");
  cv::Mat mm(2, 3, CV_16UC1);
  mm.at<uint16_t>(0, 0) = 0;      // missing: counts as 1 -> log 0
  mm.at<uint16_t>(0, 1) = 1;
  mm.at<uint16_t>(0, 2) = 1000;   // log(1000) = 6.907755278982137
  mm.at<uint16_t>(1, 0) = 2550;   // log(2550) = 7.843848638152473
  mm.at<uint16_t>(1, 1) = 65535;  // log(65535) = 11.090339110154238
  mm.at<uint16_t>(1, 2) = 3;      // log(3) = 1.0986122886681098
  const std::vector<float> x = fcn::preprocess_input(depth, mm);
  CHECK_EQ(x.size(), size_t{6});
  CHECK_EQ(x[0], -7.844f);
  CHECK_EQ(x[1], -7.844f);
  CHECK(close(x[2], 6.907755278982137 - 7.844));
  CHECK(close(x[3], 7.843848638152473 - 7.844));
  CHECK(close(x[4], 11.090339110154238 - 7.844));
  CHECK(close(x[5], 1.0986122886681098 - 7.844));
  // float depth (metres below 1 mm count as 1 mm), 8-bit, and NaN kept as numpy keeps it
  cv::Mat f(1, 3, CV_32FC1);
  f.at<float>(0, 0) = 0.25f;
  f.at<float>(0, 1) = 1000.0f;
  f.at<float>(0, 2) = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> y = fcn::preprocess_input(depth, f);
  CHECK_EQ(y[0], -7.844f);
  CHECK_EQ(y[1], x[2]);
  CHECK(std::isnan(y[2]));
  const std::vector<float> z = fcn::preprocess_input(depth, cv::Mat(1, 1, CV_8UC1, cv::Scalar(3)));
  CHECK_EQ(z[0], x[5]);
  CHECK_THROWS(fcn::preprocess_input(depth, cv::Mat(2, 2, CV_16UC3)),
               "input 'depth': expected an HxW depth map (one channel), got 2x2 CV_16U with 3 channel(s)");
  CHECK_THROWS(fcn::preprocess_input(depth, cv::Mat()), "input 'depth': the depth map is empty");
  CHECK_THROWS(fcn::preprocess_input(spec("d", 1, {0}, "BGR", "exr"), mm), "no preprocessing for encoding 'exr'");
}

TEST(preprocess, read_depth_keeps_16_bits) {
  const std::string dir = fcn_test::temp_dir();
  cv::Mat mm(2, 2, CV_16UC1, cv::Scalar(40000));
  mm.at<uint16_t>(1, 1) = 513;
  CHECK(cv::imwrite(dir + "/depth.png", mm));
  const cv::Mat d = fcn::read_depth(dir + "/depth.png");
  CHECK_EQ(d.type(), CV_32FC1);
  CHECK_EQ(d.at<float>(0, 0), 40000.0f);
  CHECK_EQ(d.at<float>(1, 1), 513.0f);
  const cv::Mat as_image = fcn::read_image(dir + "/depth.png");
  CHECK_EQ(as_image.at<cv::Vec3b>(0, 0)[0], 155);  // 40000 / 257
  CHECK(cv::imwrite(dir + "/color.png", cv::Mat(2, 2, CV_8UC3, cv::Scalar(1, 2, 3))));
  CHECK_THROWS(fcn::read_depth(dir + "/color.png"), "color.png is 2x2 CV_8U with 3 channel(s); expected one channel");
  CHECK_THROWS(fcn::read_depth(dir + "/none.png"), "depth image " + dir + "/none.png does not exist");
  fcn_test::write_file(dir + "/bad.png", "not a png");
  CHECK_THROWS(fcn::read_depth(dir + "/bad.png"), "could not be decoded; expected a 16-bit PNG");
}
