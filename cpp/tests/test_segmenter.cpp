// Segmenter on hand-built ONNX models: preprocessing from metadata, argmax ties, the graph's
// labels, batches, scores, threads.
#include <cmath>
#include <thread>

#include "fcn/segmenter.hpp"
#include "onnx_writer.hpp"
#include "testing.hpp"

namespace {

using fcn_test::save_onnx;

// Pixels (B, G, R) whose labels are easy to compute by hand for mean (10, 20, 30).
cv::Mat hand_image() {
  cv::Mat img(2, 3, CV_8UC3);
  img.at<cv::Vec3b>(0, 0) = {200, 0, 0};   // BGR: 190, -20, -30 -> 0
  img.at<cv::Vec3b>(0, 1) = {0, 200, 0};   // -10, 180, -30 -> 1
  img.at<cv::Vec3b>(0, 2) = {0, 0, 200};   // -10, -20, 170 -> 2
  img.at<cv::Vec3b>(1, 0) = {40, 50, 60};  // 30, 30, 30: a three-way tie -> 0
  img.at<cv::Vec3b>(1, 1) = {10, 60, 70};  // 0, 40, 40: tie of 1 and 2 -> 1
  img.at<cv::Vec3b>(1, 2) = {13, 20, 30};  // 3, 0, 0 -> 0
  return img;
}

std::vector<uchar> values(const cv::Mat& m) { return std::vector<uchar>(m.datastart, m.dataend); }

cv::Mat random_image(int h, int w, int seed) {
  cv::Mat img(h, w, CV_8UC3);
  cv::RNG rng(static_cast<uint64_t>(seed));
  rng.fill(img, cv::RNG::UNIFORM, 0, 256);
  return img;
}

fcn_test::ModelSpec random_model(int classes, bool scores, bool labels) {
  fcn_test::ModelSpec s;
  s.classes = classes;
  cv::RNG rng(1234);
  for (int i = 0; i < classes * 3; ++i) s.weight.push_back(static_cast<float>(rng.gaussian(1.0)));
  for (int i = 0; i < classes; ++i) s.bias.push_back(static_cast<float>(rng.gaussian(10.0)));
  s.scores = scores;
  s.labels = labels;
  s.props = fcn_test::ModelSpec::metadata(classes, "BGR", "[104.00698793, 116.66876762, 122.67891434]",
                                          scores && labels ? "both" : (labels ? "labels" : "scores"));
  return s;
}

}  // namespace

TEST(segmenter, bgr_model_labels_by_hand) {
  fcn::Segmenter seg(save_onnx(fcn_test::ModelSpec::identity("BGR"), "bgr.onnx"));
  CHECK_EQ(seg.meta().arch, std::string("identity_test"));
  CHECK(seg.backend().find("onnxruntime") == 0);
  CHECK(seg.backend().find("CPUExecutionProvider") != std::string::npos);
  CHECK_EQ(seg.describe(), std::string("image float32 [batch, 3, height, width] -> scores float32 [batch, 3, height, width]"));
  cv::Mat scores;
  const cv::Mat labels = seg.predict(hand_image(), &scores);
  CHECK_EQ(labels.type(), CV_8UC1);
  CHECK_EQ(labels.rows, 2);
  CHECK_EQ(labels.cols, 3);
  CHECK(values(labels) == (std::vector<uchar>{0, 1, 2, 0, 1, 0}));
  // Scores of the identity net are the preprocessed input: pixel - mean, channel by channel.
  CHECK_EQ(scores.dims, 3);
  CHECK_EQ(scores.size[0], 3);
  CHECK_EQ(scores.at<float>(0, 0, 0), 190.0f);
  CHECK_EQ(scores.at<float>(1, 0, 0), -20.0f);
  CHECK_EQ(scores.at<float>(2, 1, 1), 40.0f);
}

TEST(segmenter, rgb_model_gets_channels_swapped) {
  // mean is in the model's channel order (R, G, B) = (30, 20, 10).
  fcn::Segmenter seg(save_onnx(fcn_test::ModelSpec::identity("RGB", "[30.0, 20.0, 10.0]"), "rgb.onnx"));
  const cv::Mat img = hand_image();
  const std::vector<float> x = seg.preprocess({img});
  CHECK_EQ(x.size(), size_t(18));
  CHECK_EQ(x[0], -30.0f);    // channel 0 = R of pixel (0,0) - 30
  CHECK_EQ(x[6], -20.0f);    // channel 1 = G - 20
  CHECK_EQ(x[12], 190.0f);   // channel 2 = B - 10
  // Channel c of the net now holds colour (R, G, B)[c]: pixel (0,0) is blue -> class 2.
  CHECK(values(seg.predict(img)) == (std::vector<uchar>{2, 1, 0, 0, 0, 2}));
}

TEST(segmenter, mean_is_subtracted_in_float32) {
  // A mean with a fraction: the input is float32(pixel) - float32(mean), exactly as numpy does.
  fcn::Segmenter seg(save_onnx(fcn_test::ModelSpec::identity("BGR", "[104.00698793, 116.66876762, 122.67891434]"), "vgg.onnx"));
  cv::Mat img(1, 1, CV_8UC3, cv::Scalar(1, 2, 250));
  const std::vector<float> x = seg.preprocess({img});
  CHECK_EQ(x[0], 1.0f - 104.00698793f);
  CHECK_EQ(x[1], 2.0f - 116.66876762f);
  CHECK_EQ(x[2], 250.0f - 122.67891434f);
}

TEST(segmenter, graph_labels_match_argmax_of_scores) {
  fcn::Segmenter both(save_onnx(random_model(5, true, true), "both.onnx"));
  fcn::Segmenter scores_only(save_onnx(random_model(5, true, false), "scores.onnx"));
  fcn::Segmenter labels_only(save_onnx(random_model(5, false, true), "labels.onnx"));
  const cv::Mat img = random_image(23, 31, 7);
  cv::Mat scores;
  const cv::Mat from_graph = both.predict(img, &scores);
  const cv::Mat from_argmax = scores_only.predict(img);
  CHECK_EQ(cv::norm(from_graph, from_argmax, cv::NORM_INF), 0.0);
  CHECK_EQ(cv::norm(labels_only.predict(img), from_argmax, cv::NORM_INF), 0.0);
  // The C++ argmax of the returned scores, pixel by pixel.
  int mismatches = 0, classes_seen = 0;
  std::vector<bool> seen(5, false);
  for (int y = 0; y < img.rows; ++y)
    for (int x = 0; x < img.cols; ++x) {
      int best = 0;
      for (int c = 1; c < 5; ++c)
        if (scores.at<float>(c, y, x) > scores.at<float>(best, y, x)) best = c;
      mismatches += best != from_argmax.at<uchar>(y, x);
      seen[best] = true;
    }
  for (bool s : seen) classes_seen += s;
  CHECK_EQ(mismatches, 0);
  CHECK(classes_seen >= 3);  // the test image exercises several classes
  CHECK_THROWS(labels_only.predict(img, &scores), "the network has no 'scores' output");
}

TEST(segmenter, batch_equals_single_predictions) {
  fcn::Segmenter seg(save_onnx(random_model(4, true, false), "batch.onnx"));
  std::vector<cv::Mat> images = {random_image(9, 13, 1), random_image(9, 13, 2), random_image(9, 13, 3)};
  std::vector<cv::Mat> scores;
  const std::vector<cv::Mat> labels = seg.predict_batch(images, &scores);
  CHECK_EQ(labels.size(), size_t(3));
  CHECK_EQ(scores.size(), size_t(3));
  for (size_t i = 0; i < images.size(); ++i) {
    cv::Mat single_scores;
    CHECK_EQ(cv::norm(labels[i], seg.predict(images[i], &single_scores), cv::NORM_INF), 0.0);
    CHECK_EQ(cv::norm(scores[i], single_scores, cv::NORM_INF), 0.0);
  }
  images.push_back(random_image(10, 13, 4));
  CHECK_THROWS(seg.predict_batch(images), "a batch needs images of one size; got sizes 9x13, 9x13, 9x13, 10x13");
  CHECK_THROWS(seg.predict_batch({}), "empty batch");
}

TEST(segmenter, other_image_types_are_converted) {
  fcn::Segmenter seg(save_onnx(fcn_test::ModelSpec::identity("BGR"), "convert.onnx"));
  const cv::Mat img = hand_image();
  cv::Mat deep;
  img.convertTo(deep, CV_16U, 257.0);  // 16-bit: divided by 257 again
  CHECK_EQ(cv::norm(seg.predict(deep), seg.predict(img), cv::NORM_INF), 0.0);
  cv::Mat bgra;
  cv::Mat alpha(img.size(), CV_8UC1, cv::Scalar(99));
  cv::merge(std::vector<cv::Mat>{img, alpha}, bgra);
  CHECK_EQ(cv::norm(seg.predict(bgra), seg.predict(img), cv::NORM_INF), 0.0);
  cv::Mat gray(4, 4, CV_8UC1, cv::Scalar(35));  // 25, 15, 5 -> class 0
  CHECK_EQ(cv::countNonZero(seg.predict(gray)), 0);
  cv::Mat roi = random_image(20, 20, 5)(cv::Rect(3, 4, 7, 6));  // not continuous
  CHECK_EQ(cv::norm(seg.predict(roi), seg.predict(roi.clone()), cv::NORM_INF), 0.0);
}

TEST(segmenter, threads_option_and_concurrent_calls) {
  fcn::Options one;
  one.threads = 1;
  fcn::Segmenter seg(save_onnx(random_model(6, true, false), "threads.onnx"), one);
  const cv::Mat img = random_image(31, 17, 11);
  const cv::Mat expected = seg.predict(img);
  std::vector<cv::Mat> got(4);
  std::vector<std::thread> pool;
  for (size_t t = 0; t < got.size(); ++t)
    pool.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i) got[t] = seg.predict(img);
    });
  for (auto& t : pool) t.join();
  for (const cv::Mat& g : got) CHECK_EQ(cv::norm(g, expected, cv::NORM_INF), 0.0);
}

TEST(segmenter, move_transfers_the_model) {
  fcn::Segmenter a(save_onnx(fcn_test::ModelSpec::identity("BGR"), "move.onnx"));
  fcn::Segmenter b(std::move(a));
  CHECK(values(b.predict(hand_image())) == (std::vector<uchar>{0, 1, 2, 0, 1, 0}));
  CHECK_THROWS(a.predict(hand_image()), "moved from");  // NOLINT(bugprone-use-after-move)
}

// Tiles are stitched back exactly: a pointwise net (1x1 conv) gives bit-identical labels and
// scores whatever the tiles; the geometry (stride 4, contexts 3 / 2) comes from the metadata.
TEST(segmenter, predict_tiled_stitches_labels_and_scores) {
  fcn_test::ModelSpec spec = random_model(5, true, false);
  spec.props["fcn.tiling"] = R"({"stride": 4, "context_before": 3, "context_after": 2})";
  fcn::Segmenter seg(save_onnx(spec, "tiled.onnx"));
  CHECK_EQ(seg.meta().tiling.margin_before(), 4);
  const cv::Mat image = random_image(37, 23, 5);
  cv::Mat whole_scores, tiled_scores;
  const cv::Mat whole = seg.predict(image, &whole_scores);
  const cv::Mat tiled = seg.predict_tiled(image, 9, &tiled_scores);  // cores of 8
  CHECK(values(tiled) == values(whole));
  CHECK_EQ(tiled_scores.dims, 3);
  CHECK_EQ(tiled_scores.size[0], 5);
  CHECK_EQ(tiled_scores.size[1], 37);
  CHECK_EQ(tiled_scores.size[2], 23);
  CHECK_EQ(cv::norm(tiled_scores, whole_scores, cv::NORM_INF), 0.0);
  CHECK(values(seg.predict_tiled(image, 64)) == values(whole));  // one tile

  fcn::Segmenter old(save_onnx(random_model(5, true, false), "untiled.onnx"));
  CHECK_THROWS(old.predict_tiled(image, 8), "carries no tiling geometry");
}
