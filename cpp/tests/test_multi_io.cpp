// Several inputs and heads on hand-built ONNX models: image + depth concatenated, one 1x1 conv
// per head, so every label is computed by hand; the single-image API on such nets; errors.
#include <cmath>

#include "fcn/preprocess.hpp"
#include "fcn/segmenter.hpp"
#include "onnx_writer.hpp"
#include "testing.hpp"

namespace {

using fcn_test::save_onnx;

const char* kInputs = R"([{"name": "image", "channels": 3}, {"name": "depth", "channels": 1}])";
const char* kHeads = R"([{"name": "sem", "num_classes": 3}, {"name": "geo", "num_classes": 2}])";

// image (BGR, mean 10, 20, 30) + depth (log_depth, mean 7.844): head sem = the image's three
// preprocessed channels, head geo = (+x, -x) of the preprocessed depth x, so geo is class 0
// where log(depth) >= 7.844 (depth >= 2551 mm) and class 1 below.
fcn_test::ModelSpec rgbd_two_heads(bool labels) {
  fcn_test::ModelSpec s;
  s.inputs = {{"image", 3}, {"depth", 1}};
  s.heads = {{"scores_sem", "labels_sem", 3, {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0}, {0, 0, 0}},
             {"scores_geo", "labels_geo", 2, {0, 0, 0, 1, 0, 0, 0, -1}, {0, 0}}};
  s.labels = labels;
  s.props = fcn_test::ModelSpec::metadata(3, "BGR", "[10.0, 20.0, 30.0]", labels ? "both" : "scores");
  s.props["fcn.inputs"] = kInputs;
  s.props["fcn.heads"] = kHeads;
  return s;
}

cv::Mat hand_image() {  // as test_segmenter.cpp's: sem labels 0 1 2 / 0 1 0
  cv::Mat img(2, 3, CV_8UC3);
  img.at<cv::Vec3b>(0, 0) = {200, 0, 0};
  img.at<cv::Vec3b>(0, 1) = {0, 200, 0};
  img.at<cv::Vec3b>(0, 2) = {0, 0, 200};
  img.at<cv::Vec3b>(1, 0) = {40, 50, 60};
  img.at<cv::Vec3b>(1, 1) = {10, 60, 70};
  img.at<cv::Vec3b>(1, 2) = {13, 20, 30};
  return img;
}

cv::Mat hand_depth() {  // millimetres: 0 (missing), near, far...
  cv::Mat d(2, 3, CV_16UC1);
  const uint16_t mm[6] = {0, 1000, 2550, 2552, 5000, 65535};
  for (int i = 0; i < 6; ++i) d.at<uint16_t>(i / 3, i % 3) = mm[i];
  return d;
}

std::vector<uchar> values(const cv::Mat& m) { return std::vector<uchar>(m.datastart, m.dataend); }

cv::Mat random_mat(int h, int w, int type, double lo, double hi, int seed) {
  cv::Mat m(h, w, type);
  cv::RNG rng(static_cast<uint64_t>(seed));
  rng.fill(m, cv::RNG::UNIFORM, lo, hi);
  return m;
}

}  // namespace

TEST(multi_io, labels_and_scores_of_every_head_by_hand) {
  fcn::Segmenter seg(save_onnx(rgbd_two_heads(false), "rgbd.onnx"));
  CHECK_EQ(seg.describe(), std::string("image float32 [batch, 3, height, width], depth float32 "
                                       "[batch, 1, height, width] -> scores_sem float32 [batch, 3, "
                                       "height, width], scores_geo float32 [batch, 2, height, width]"));
  fcn::NamedMats scores;
  const fcn::NamedMats labels = seg.predict_heads({{"image", hand_image()}, {"depth", hand_depth()}}, &scores);
  CHECK_EQ(labels.size(), size_t{2});
  CHECK(values(labels.at("sem")) == (std::vector<uchar>{0, 1, 2, 0, 1, 0}));
  // log(0 -> 1), log(1000), log(2550) are below 7.844; log(2552), log(5000), log(65535) above
  CHECK(values(labels.at("geo")) == (std::vector<uchar>{1, 1, 1, 0, 0, 0}));
  CHECK_EQ(scores.at("sem").size[0], 3);
  CHECK_EQ(scores.at("sem").at<float>(0, 0, 0), 190.0f);
  CHECK_EQ(scores.at("geo").size[0], 2);
  CHECK_EQ(scores.at("geo").at<float>(0, 0, 0), -7.844f);
  CHECK_EQ(scores.at("geo").at<float>(1, 0, 0), 7.844f);
  CHECK(std::abs(scores.at("geo").at<float>(0, 1, 1) - (8.517193191416238 - 7.844)) < 2e-6);
  // The graph's own labels_<head> outputs give the same maps.
  fcn::Segmenter both(save_onnx(rgbd_two_heads(true), "rgbd_both.onnx"));
  const fcn::NamedMats graph = both.predict_heads({{"image", hand_image()}, {"depth", hand_depth()}});
  CHECK(values(graph.at("sem")) == values(labels.at("sem")));
  CHECK(values(graph.at("geo")) == values(labels.at("geo")));
  // Float depth in millimetres is read the same way.
  cv::Mat metres;
  hand_depth().convertTo(metres, CV_32F);
  CHECK(values(seg.predict_heads({{"image", hand_image()}, {"depth", metres}}).at("geo")) ==
        values(labels.at("geo")));
}

TEST(multi_io, batch_and_tiles_equal_single_whole_predictions) {
  fcn_test::ModelSpec spec = rgbd_two_heads(false);
  spec.props["fcn.tiling"] = R"({"stride": 4, "context_before": 3, "context_after": 2})";
  fcn::Segmenter seg(save_onnx(spec, "rgbd_tiled.onnx"));
  std::vector<fcn::NamedMats> sets;
  for (int i = 0; i < 3; ++i)
    sets.push_back({{"image", random_mat(21, 17, CV_8UC3, 0, 256, i)},
                    {"depth", random_mat(21, 17, CV_16UC1, 0, 6000, 10 + i)}});
  std::vector<fcn::NamedMats> batch_scores;
  const std::vector<fcn::NamedMats> batch = seg.predict_heads_batch(sets, &batch_scores);
  CHECK_EQ(batch.size(), size_t{3});
  for (size_t i = 0; i < sets.size(); ++i) {
    fcn::NamedMats one_scores, tiled_scores;
    const fcn::NamedMats one = seg.predict_heads(sets[i], &one_scores);
    const fcn::NamedMats tiled = seg.predict_heads_tiled(sets[i], 9, &tiled_scores);  // cores of 8
    for (const char* head : {"sem", "geo"}) {
      CHECK_EQ(cv::norm(batch[i].at(head), one.at(head), cv::NORM_INF), 0.0);
      CHECK_EQ(cv::norm(batch_scores[i].at(head), one_scores.at(head), cv::NORM_INF), 0.0);
      CHECK(values(tiled.at(head)) == values(one.at(head)));
      CHECK_EQ(cv::norm(tiled_scores.at(head), one_scores.at(head), cv::NORM_INF), 0.0);
    }
    CHECK(cv::countNonZero(one.at("geo")) > 0 && cv::countNonZero(one.at("geo")) < 21 * 17);
  }
  sets.push_back({{"image", random_mat(20, 17, CV_8UC3, 0, 256, 9)},
                  {"depth", random_mat(20, 17, CV_16UC1, 0, 6000, 9)}});
  CHECK_THROWS(seg.predict_heads_batch(sets), "a batch needs inputs of one size; got sizes 21x17, 21x17, 21x17, 20x17");
}

TEST(multi_io, inputs_are_checked_by_name_size_and_type) {
  fcn::Segmenter seg(save_onnx(rgbd_two_heads(false), "rgbd_errors.onnx"));
  const cv::Mat image = hand_image(), depth = hand_depth();
  CHECK_THROWS(seg.predict_heads({{"image", image}}),
               "missing input 'depth'; the network takes image (image), depth (log_depth)");
  CHECK_THROWS(seg.predict_heads({{"image", image}, {"depth", depth}, {"hha", image}}),
               "unexpected input 'hha'; the network takes image (image), depth (log_depth)");
  CHECK_THROWS(seg.predict_heads({{"image", image}, {"depth", cv::Mat(3, 3, CV_16UC1)}}),
               "input 'depth' is 3x3 but input 'image' is 2x3; all inputs of one call need the same height and width");
  CHECK_THROWS(seg.predict_heads({{"image", image}, {"depth", image}}),
               "input 'depth': expected an HxW depth map (one channel), got 2x3 CV_8U with 3 channel(s)");
  CHECK_THROWS(seg.predict_heads({{"image", cv::Mat(2, 3, CV_32FC3)}, {"depth", depth}}),
               "input 'image': pixel type of 2x3 CV_32F");
  CHECK_THROWS(seg.predict_heads_batch({}), "empty batch");
  // The single-image API refuses a net it cannot feed or whose heads it cannot return.
  CHECK_THROWS(seg.predict(image), "takes 2 inputs (image, depth); predict_batch() feeds one image: use predict_heads()");
  CHECK_THROWS(seg.preprocess({image}), "takes 2 inputs (image, depth)");
  fcn_test::ModelSpec two_heads = rgbd_two_heads(false);
  two_heads.inputs = {{"image", 3}};
  two_heads.heads[0].weight = {1, 0, 0, 0, 1, 0, 0, 0, 1};
  two_heads.heads[1].weight = {1, 0, 0, 0, 0, 1};
  two_heads.props.erase("fcn.inputs");
  fcn::Segmenter sift(save_onnx(two_heads, "two_heads.onnx"));
  CHECK_THROWS(sift.predict(image), "has 2 heads (sem, geo); predict_batch() returns one label map: use predict_heads()");
  CHECK_THROWS(sift.predict_tiled(image, 8), "has 2 heads (sem, geo); predict_tiled()");
  const fcn::NamedMats l = sift.predict_heads({{"image", image}});
  CHECK(values(l.at("sem")) == (std::vector<uchar>{0, 1, 2, 0, 1, 0}));
  CHECK(values(l.at("geo")) == (std::vector<uchar>{0, 0, 1, 0, 1, 0}));  // B-10 vs R-30, ties -> 0
}

TEST(multi_io, an_hha_only_net_takes_the_hha_image_through_predict) {
  fcn_test::ModelSpec hha = fcn_test::ModelSpec::identity("BGR", "[0, 0, 0]");
  hha.input_name = "hha";
  hha.props["fcn.inputs"] = R"([{"name": "hha", "channels": 3}])";  // NYUDv2's HHA mean, RGB
  fcn::Segmenter seg(save_onnx(hha, "hha.onnx"));
  CHECK(seg.meta().input_names() == std::vector<std::string>{"hha"});
  cv::Mat img(1, 2, CV_8UC3);
  img.at<cv::Vec3b>(0, 0) = {200, 0, 0};   // R-118.477, G-94.076, B-132.431 = 67.569 -> class 2
  img.at<cv::Vec3b>(0, 1) = {0, 0, 250};   // R: 131.523 -> class 0
  const std::vector<float> x = seg.preprocess({img});
  CHECK_EQ(x[0], 0.0f - 118.477f);
  CHECK_EQ(x[4], 200.0f - 132.431f);
  CHECK(values(seg.predict(img)) == (std::vector<uchar>{2, 0}));
  const fcn::NamedMats by_name = seg.predict_heads({{"hha", img}});
  CHECK(values(by_name.at("score")) == (std::vector<uchar>{2, 0}));  // the single head's name
  CHECK_THROWS(seg.predict_heads({{"image", img}}), "unexpected input 'image'; the network takes hha (image)");
}

TEST(multi_io, networks_that_break_the_metadata_s_io_are_refused) {
  fcn_test::ModelSpec image_only = rgbd_two_heads(false);
  image_only.inputs = {{"image", 3}};
  image_only.heads[0].weight = {1, 0, 0, 0, 1, 0, 0, 0, 1};
  image_only.heads[1].weight = {1, 0, 0, 0, 0, 1};
  CHECK_THROWS(fcn::Segmenter(save_onnx(image_only, "no_depth.onnx")),
               "the network's inputs are image float32 [batch, 3, height, width]; expected the "
               "metadata's inputs 'image' float32 [batch, 3, height, width], 'depth' float32 "
               "[batch, 1, height, width]");
  fcn_test::ModelSpec wide = rgbd_two_heads(false);
  wide.inputs = {{"image", 3}, {"depth", 3}};
  wide.heads[0].weight.assign(3 * 6, 0.0f);
  wide.heads[1].weight.assign(2 * 6, 0.0f);
  CHECK_THROWS(fcn::Segmenter(save_onnx(wide, "wide_depth.onnx")),
               "input depth float32 [batch, 3, height, width] breaks the contract; expected depth "
               "float32 [batch, 1, height, width]");
  fcn_test::ModelSpec one_head = rgbd_two_heads(false);
  one_head.heads.pop_back();
  CHECK_THROWS(fcn::Segmenter(save_onnx(one_head, "one_head.onnx")),
               "expected 'scores_geo' float32 [batch, classes, height, width] and/or 'labels_geo' "
               "uint8 [batch, height, width] for head 'geo'");
  fcn_test::ModelSpec labels_only = rgbd_two_heads(true);
  fcn::Segmenter seg(save_onnx(labels_only, "heads_both.onnx"));
  fcn::NamedMats scores;
  seg.predict_heads({{"image", hand_image()}, {"depth", hand_depth()}}, &scores);
  CHECK_EQ(scores.size(), size_t{2});
}
