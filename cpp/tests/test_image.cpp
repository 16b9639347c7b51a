// Image helpers: conversions like Python's to_bgr8, colours, overlays, palette PNGs.
#include <filesystem>

#include <opencv2/imgcodecs.hpp>

#include "fcn/image.hpp"
#include "onnx_writer.hpp"
#include "testing.hpp"

namespace {

fcn::ModelMeta test_meta() {
  return fcn::ModelMeta::from_onnx_props(fcn_test::ModelSpec::metadata(3, "BGR", "[0, 0, 0]"), "t");
}

}  // namespace

TEST(image, to_bgr8_converts_like_python) {
  cv::Mat gray(2, 3, CV_8UC1, cv::Scalar(7));
  cv::Mat g3 = fcn::to_bgr8(gray);
  CHECK_EQ(g3.type(), CV_8UC3);
  CHECK(g3.at<cv::Vec3b>(1, 2) == cv::Vec3b(7, 7, 7));

  cv::Mat bgra(2, 2, CV_8UC4, cv::Scalar(1, 2, 3, 200));
  CHECK(fcn::to_bgr8(bgra).at<cv::Vec3b>(0, 0) == cv::Vec3b(1, 2, 3));

  cv::Mat deep(1, 3, CV_16UC3);  // 16-bit: integer division by 257
  deep.at<cv::Vec3w>(0, 0) = cv::Vec3w(65535, 514, 513);
  deep.at<cv::Vec3w>(0, 1) = cv::Vec3w(256, 0, 257 * 100 + 256);
  deep.at<cv::Vec3w>(0, 2) = cv::Vec3w(0, 0, 0);
  const cv::Mat d8 = fcn::to_bgr8(deep);
  CHECK(d8.at<cv::Vec3b>(0, 0) == cv::Vec3b(255, 2, 1));
  CHECK(d8.at<cv::Vec3b>(0, 1) == cv::Vec3b(0, 0, 100));

  CHECK_THROWS(fcn::to_bgr8(cv::Mat()), "image: the image is empty");
  CHECK_THROWS(fcn::to_bgr8(cv::Mat(2, 2, CV_32FC3)), "pixel type of 2x2 CV_32F");
  CHECK_THROWS(fcn::to_bgr8(cv::Mat(2, 2, CV_8UC2), "photo"), "photo: 2x2 CV_8U with 2 channel(s) is not an image");
}

TEST(image, read_image_round_trip_and_errors) {
  const std::string dir = fcn_test::temp_dir();
  cv::Mat img(5, 4, CV_8UC3);
  cv::randu(img, 0, 256);
  fcn::write_image(dir + "/a.png", img);
  const cv::Mat back = fcn::read_image(dir + "/a.png");
  CHECK_EQ(cv::norm(back, img, cv::NORM_INF), 0.0);

  cv::Mat gray(3, 3, CV_8UC1, cv::Scalar(9));
  CHECK(cv::imwrite(dir + "/g.png", gray));
  CHECK(fcn::read_image(dir + "/g.png").at<cv::Vec3b>(2, 2) == cv::Vec3b(9, 9, 9));

  CHECK_THROWS(fcn::read_image(dir + "/missing.png"), "missing.png does not exist");
  fcn_test::write_file(dir + "/bad.jpg", "this is not a jpeg");
  CHECK_THROWS(fcn::read_image(dir + "/bad.jpg"), "bad.jpg could not be decoded");
  fcn_test::write_file(dir + "/empty.png", "");
  CHECK_THROWS(fcn::read_image(dir + "/empty.png"), "empty.png could not be decoded");
  CHECK_THROWS(fcn::write_image(dir + "/nofolder/x.png", img), "folder " + dir + "/nofolder does not exist");
  CHECK_THROWS(fcn::write_image(dir + "/x.notanimage", img), "could not encode");
}

TEST(image, colorize_uses_palette_and_ignore_colour) {
  const fcn::ModelMeta meta = test_meta();  // palette [0,255,0], [40,215,20], [80,175,40]
  cv::Mat labels = (cv::Mat_<uchar>(1, 4) << 0, 2, 7, 255);
  const cv::Mat c = fcn::colorize(labels, meta);
  CHECK(c.at<cv::Vec3b>(0, 0) == cv::Vec3b(0, 255, 0));     // RGB palette -> BGR
  CHECK(c.at<cv::Vec3b>(0, 1) == cv::Vec3b(40, 175, 80));
  CHECK(c.at<cv::Vec3b>(0, 2) == cv::Vec3b(0, 0, 0));       // beyond the palette
  CHECK(c.at<cv::Vec3b>(0, 3) == cv::Vec3b(192, 224, 224)); // VOC ignore colour
  CHECK_THROWS(fcn::colorize(cv::Mat(2, 2, CV_32S), meta), "expected a non-empty CV_8UC1 label map");
}

TEST(image, overlay_blends_like_numpy) {
  const fcn::ModelMeta meta = test_meta();
  cv::Mat image(1, 4, CV_8UC3, cv::Scalar(11, 9, 30));
  cv::Mat labels = (cv::Mat_<uchar>(1, 4) << 0, 1, 255, 1);
  image.at<cv::Vec3b>(0, 3) = cv::Vec3b(200, 100, 0);
  const cv::Mat o = fcn::overlay(image, labels, meta, 0.5);
  CHECK(o.at<cv::Vec3b>(0, 0) == cv::Vec3b(11, 9, 30));  // background kept
  CHECK(o.at<cv::Vec3b>(0, 2) == cv::Vec3b(11, 9, 30));  // ignore label kept
  // class 1 colour BGR (20, 215, 40): 5.5+10 -> 16 (rint 15.5), 4.5+107.5 = 112, 15+20 = 35
  CHECK(o.at<cv::Vec3b>(0, 1) == cv::Vec3b(16, 112, 35));
  CHECK(o.at<cv::Vec3b>(0, 3) == cv::Vec3b(110, 158, 20));
  CHECK_THROWS(fcn::overlay(image, cv::Mat(2, 4, CV_8UC1, cv::Scalar(0)), meta), "same height and width");
  CHECK_THROWS(fcn::overlay(image, labels, meta, 1.5), "opacity must be between 0 and 1");
}

TEST(image, write_label_png_is_a_palette_png_of_indices) {
  const fcn::ModelMeta meta = test_meta();
  const std::string path = fcn_test::temp_dir() + "/mask.png";
  cv::Mat labels = (cv::Mat_<uchar>(2, 3) << 0, 1, 2, 2, 1, 0);
  fcn::write_label_png(path, labels, meta);
  // OpenCV expands the palette: each pixel shows its class's colour.
  const cv::Mat shown = cv::imread(path, cv::IMREAD_COLOR);
  CHECK_EQ(shown.rows, 2);
  CHECK_EQ(shown.cols, 3);
  CHECK(shown.at<cv::Vec3b>(0, 0) == cv::Vec3b(0, 255, 0));
  CHECK(shown.at<cv::Vec3b>(0, 1) == cv::Vec3b(20, 215, 40));
  CHECK(shown.at<cv::Vec3b>(1, 0) == cv::Vec3b(40, 175, 80));
  // No temporary files left behind.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(fcn_test::temp_dir()))
    files += e.path().filename().string().find(".tmp-") != std::string::npos;
  CHECK_EQ(files, 0);
  CHECK_THROWS(fcn::write_label_png(fcn_test::temp_dir() + "/no/such/mask.png", labels, meta),
               "does not exist");
}

namespace {
// A JPEG of ``stored`` with an EXIF APP1 segment (little-endian TIFF, one IFD entry) carrying
// ``orientation``, inserted right after the SOI marker.
std::vector<unsigned char> jpeg_with_orientation(const cv::Mat& stored, int orientation) {
  std::vector<unsigned char> jpeg;
  CHECK(cv::imencode(".jpg", stored, jpeg, {cv::IMWRITE_JPEG_QUALITY, 100}));
  const std::vector<unsigned char> app1 = {
      0xFF, 0xE1, 0x00, 34, 'E', 'x', 'i', 'f', 0, 0,           // APP1, length 34, "Exif\0\0"
      'I', 'I', 0x2A, 0x00, 0x08, 0x00, 0x00, 0x00,              // TIFF header, IFD at 8
      0x01, 0x00,                                                // one entry
      0x12, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00,            // 0x0112 SHORT x1
      static_cast<unsigned char>(orientation), 0x00, 0x00, 0x00,  // value
      0x00, 0x00, 0x00, 0x00};                                   // no next IFD
  jpeg.insert(jpeg.begin() + 2, app1.begin(), app1.end());
  return jpeg;
}

void write_bytes(const std::string& path, const std::vector<unsigned char>& bytes) {
  fcn_test::write_file(path, std::string(bytes.begin(), bytes.end()));
}
}  // namespace

TEST(image, read_image_follows_exif_orientation_like_python) {
  const std::string dir = fcn_test::temp_dir();
  cv::Mat stored(20, 40, CV_8UC3, cv::Scalar(255, 128, 0));
  stored(cv::Rect(0, 0, 10, 20)).setTo(cv::Scalar(0, 0, 255));
  write_bytes(dir + "/portrait.jpg", jpeg_with_orientation(stored, 6));
  const cv::Mat upright = fcn::read_image(dir + "/portrait.jpg");
  CHECK_EQ(upright.rows, 40);  // 90 degrees clockwise: the stored left strip is now on top
  CHECK_EQ(upright.cols, 20);
  const cv::Mat raw = cv::imread(dir + "/portrait.jpg", cv::IMREAD_UNCHANGED);
  cv::Mat rotated;
  cv::rotate(raw, rotated, cv::ROTATE_90_CLOCKWISE);
  CHECK_EQ(cv::norm(upright, rotated, cv::NORM_INF), 0.0);
  write_bytes(dir + "/plain.jpg", jpeg_with_orientation(stored, 1));
  CHECK_EQ(fcn::read_image(dir + "/plain.jpg").rows, 20);
}

TEST(image, truncated_jpeg_is_refused_like_python) {
  const std::string dir = fcn_test::temp_dir();
  cv::Mat img(48, 64, CV_8UC3);
  cv::randu(img, 0, 256);
  std::vector<unsigned char> jpeg;
  CHECK(cv::imencode(".jpg", img, jpeg));
  CHECK(!fcn::jpeg_is_truncated(jpeg));
  std::vector<unsigned char> cut(jpeg.begin(), jpeg.begin() + static_cast<long>(jpeg.size() * 2 / 3));
  CHECK(fcn::jpeg_is_truncated(cut));
  write_bytes(dir + "/cut.jpg", cut);
  CHECK_THROWS(fcn::read_image(dir + "/cut.jpg"),
               "cut.jpg is a truncated JPEG (no end-of-image marker after its last scan)");
  std::vector<unsigned char> trailing = jpeg;
  trailing.insert(trailing.end(), 10, 0);  // junk after the end marker is fine, as in Python
  write_bytes(dir + "/trailing.jpg", trailing);
  CHECK_EQ(fcn::read_image(dir + "/trailing.jpg").rows, 48);
  CHECK(!fcn::jpeg_is_truncated(std::vector<unsigned char>{0x89, 'P', 'N', 'G'}));
}
