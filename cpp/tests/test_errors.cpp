// Bad model paths, corrupt files, contract violations and wrong images give fcn::Error with a
// message that names the problem.
#include <filesystem>

#include "fcn/config.hpp"
#include "fcn/segmenter.hpp"
#include "onnx_writer.hpp"
#include "testing.hpp"

namespace {

using fcn_test::save_onnx;

std::string good_model() {
  static const std::string path = save_onnx(fcn_test::ModelSpec::identity(), "good.onnx");
  return path;
}

}  // namespace

TEST(errors, bad_model_paths) {
  CHECK_THROWS(fcn::Segmenter("/no/such/model.onnx"), "model /no/such/model.onnx does not exist");
  CHECK_THROWS(fcn::Segmenter(""), "model path is empty");
  CHECK_THROWS(fcn::Segmenter(fcn_test::temp_dir()), "is a folder; expected a .onnx or .plan file");
}

TEST(errors, corrupt_and_empty_files) {
  const std::string dir = fcn_test::temp_dir();
  fcn_test::write_file(dir + "/garbage.onnx", std::string("\x08\x07garbage\xff\xfe not protobuf", 24));
  CHECK_THROWS(fcn::Segmenter(dir + "/garbage.onnx"), "garbage.onnx could not be loaded by ONNX Runtime");
  fcn_test::write_file(dir + "/empty.onnx", "");
  CHECK_THROWS(fcn::Segmenter(dir + "/empty.onnx"), "empty.onnx could not be loaded by ONNX Runtime");
  // A truncated copy of a valid model.
  std::string bytes = fcn_test::make_onnx(fcn_test::ModelSpec::identity());
  fcn_test::write_file(dir + "/truncated.onnx", bytes.substr(0, bytes.size() / 2));
  CHECK_THROWS(fcn::Segmenter(dir + "/truncated.onnx"), "truncated.onnx could not be loaded");
}

TEST(errors, metadata_problems) {
  fcn_test::ModelSpec none = fcn_test::ModelSpec::identity();
  none.props = {{"producer", "someone else"}};
  CHECK_THROWS(fcn::Segmenter(save_onnx(none, "nometa.onnx")), "carries no fcn-deploy metadata");

  fcn_test::ModelSpec no_mean = fcn_test::ModelSpec::identity();
  no_mean.props.erase("fcn.mean");
  CHECK_THROWS(fcn::Segmenter(save_onnx(no_mean, "nomean.onnx")), "nomean.onnx: metadata is missing mean");

  fcn_test::ModelSpec bad_json = fcn_test::ModelSpec::identity();
  bad_json.props["fcn.palette"] = "[[0, 0, 0], [1";
  CHECK_THROWS(fcn::Segmenter(save_onnx(bad_json, "badjson.onnx")), "'fcn.palette' is not valid JSON");

  // Metadata says 4 classes, the network computes 3.
  fcn_test::ModelSpec wrong = fcn_test::ModelSpec::identity();
  wrong.props = fcn_test::ModelSpec::metadata(4, "BGR", "[0, 0, 0]");
  fcn::Segmenter seg(save_onnx(wrong, "wrongclasses.onnx"));
  CHECK_THROWS(seg.predict(cv::Mat(4, 4, CV_8UC3, cv::Scalar(1, 2, 3))), "(num_classes in the metadata)");
}

TEST(errors, io_contract_violations) {
  fcn_test::ModelSpec renamed = fcn_test::ModelSpec::identity();
  renamed.input_name = "input";
  CHECK_THROWS(fcn::Segmenter(save_onnx(renamed, "renamed.onnx")),
               "the network's inputs are input float32 [batch, 3, height, width]; expected one input 'image'");

  fcn_test::ModelSpec no_outputs = fcn_test::ModelSpec::identity();
  no_outputs.scores_name = "logits";
  CHECK_THROWS(fcn::Segmenter(save_onnx(no_outputs, "logits.onnx")),
               "outputs are logits float32 [batch, 3, height, width]; expected 'scores'");

  fcn_test::ModelSpec fixed = fcn_test::ModelSpec::identity();
  fixed.input_dims = {1, 3, 8, 8};
  fcn::Segmenter seg(save_onnx(fixed, "fixed.onnx"));
  CHECK_EQ(seg.predict(cv::Mat(8, 8, CV_8UC3, cv::Scalar(0, 0, 0))).rows, 8);
  CHECK_THROWS(seg.predict(cv::Mat(9, 8, CV_8UC3, cv::Scalar(0, 0, 0))),
               "an image of 9x8 does not fit the network's input image float32 [1, 3, 8, 8]");
  // A batch larger than the static batch dim runs in chunks.
  std::vector<cv::Mat> three(3, cv::Mat(8, 8, CV_8UC3, cv::Scalar(0, 0, 200)));
  const std::vector<cv::Mat> labels = seg.predict_batch(three);
  CHECK_EQ(labels.size(), size_t(3));
  CHECK_EQ(labels[2].at<uchar>(0, 0), 2);
}

TEST(errors, wrong_images) {
  fcn::Segmenter seg(good_model());
  CHECK_THROWS(seg.predict(cv::Mat()), "image: the image is empty");
  CHECK_THROWS(seg.predict(cv::Mat(5, 5, CV_32FC3, cv::Scalar(0.5))), "pixel type of 5x5 CV_32F");
  CHECK_THROWS(seg.predict(cv::Mat(5, 5, CV_8UC2)), "is not an image; expected 1, 3 (BGR) or 4 (BGRA) channels");
  CHECK_THROWS(seg.predict_batch({cv::Mat(2, 2, CV_8UC3), cv::Mat()}), "image 1: the image is empty");
}

TEST(errors, options_and_backends) {
  fcn::Options bad_device;
  bad_device.device = "tpu";
  CHECK_THROWS(fcn::Segmenter(good_model(), bad_device), "unknown device 'tpu'");
  fcn::Options negative;
  negative.threads = -2;
  CHECK_THROWS(fcn::Segmenter(good_model(), negative), "threads must be >= 0");
  CHECK_THROWS(fcn::parse_backend("tflite"), "unknown backend 'tflite'; expected auto, onnxruntime or tensorrt");
  CHECK(fcn::parse_backend("onnxruntime") == fcn::BackendKind::OnnxRuntime);

  // CUDA: works with a GPU build of ONNX Runtime, else a clear error naming the provider.
  fcn::Options cuda;
  cuda.device = "cuda";
  try {
    fcn::Segmenter gpu(good_model(), cuda);
    CHECK(gpu.backend().find("CUDAExecutionProvider") != std::string::npos);
  } catch (const fcn::Error& e) {
    CHECK(std::string(e.what()).find("needs ONNX Runtime's CUDAExecutionProvider") != std::string::npos);
  }
#if !FCN_HAVE_TENSORRT
  const std::string plan = fcn_test::temp_dir() + "/model.plan";
  fcn_test::write_file(plan, "not a plan");
  CHECK_THROWS(fcn::Segmenter{plan}, "this build of fcn_runtime has no TensorRT backend");
  CHECK(fcn::available_backends() == std::vector<std::string>{"onnxruntime"});
#endif
}
