// ModelMeta: the JSON and metadata_props forms the Python side writes, and their errors.
#include <filesystem>

#include "fcn/meta.hpp"
#include "onnx_writer.hpp"
#include "testing.hpp"

namespace {

// ModelMeta.to_dict() of ModelMeta.default("fcn8s_vgg16", 3) (json.dumps output).
const char* kDict = R"({"arch": "fcn8s_vgg16", "num_classes": 3,
  "class_names": ["background", "cat", "dog"], "palette": [[0, 0, 0], [128, 0, 0], [0, 128, 0]],
  "mean": [104.00698793, 116.66876762, 122.67891434], "ignore_label": 255,
  "channel_order": "BGR", "input_layout": "NCHW", "precision": "fp16", "outputs": "both",
  "arch_kwargs": {"width": 0.0625}, "toolkit_version": "0.1.0", "extra": {}})";

std::string with(const std::string& key, const std::string& value) {
  std::string d = kDict;
  const std::string k = "\"" + key + "\": ";
  const size_t at = d.find(k);
  size_t end = at + k.size();
  int depth = 0;
  for (; end < d.size(); ++end) {
    const char ch = d[end];
    if (ch == '[' || ch == '{') ++depth;
    if (ch == ']' || ch == '}') {
      if (depth == 0) break;
      --depth;
    }
    if (ch == ',' && depth == 0) break;
  }
  return d.substr(0, at + k.size()) + value + d.substr(end);
}

}  // namespace

TEST(meta, from_json_reads_every_field) {
  const fcn::ModelMeta m = fcn::ModelMeta::from_json(kDict, "test");
  CHECK_EQ(m.arch, std::string("fcn8s_vgg16"));
  CHECK_EQ(m.num_classes, 3);
  CHECK_EQ(m.class_names.at(2), std::string("dog"));
  CHECK_EQ(m.palette.at(1)[0], 128);
  CHECK_EQ(m.mean[0], 104.00698793);
  CHECK_EQ(m.mean[2], 122.67891434);
  CHECK_EQ(m.ignore_label, 255);
  CHECK_EQ(m.precision, std::string("fp16"));
  CHECK_EQ(m.outputs, std::string("both"));
  CHECK_EQ(m.toolkit_version, std::string("0.1.0"));
}

TEST(meta, from_json_errors_name_the_field) {
  CHECK_THROWS(fcn::ModelMeta::from_json("{\"arch\": \"x\"}", "m.json"),
               "m.json: metadata is missing num_classes, class_names, palette, mean");
  CHECK_THROWS(fcn::ModelMeta::from_json("{not json", "m.json"), "m.json is not valid JSON");
  CHECK_THROWS(fcn::ModelMeta::from_json(with("num_classes", "4"), "m"),
               "3 class names for 4 classes");
  CHECK_THROWS(fcn::ModelMeta::from_json(with("num_classes", "\"3\""), "m"),
               "field 'num_classes' must be an integer");
  CHECK_THROWS(fcn::ModelMeta::from_json(with("palette", "[[0, 0, 0]]"), "m"),
               "palette has 1 colours for 3 classes");
  CHECK_THROWS(fcn::ModelMeta::from_json(with("palette", "[[0, 0, 300], [1, 1, 1], [2, 2, 2]]"), "m"),
               "in 0..255");
  CHECK_THROWS(fcn::ModelMeta::from_json(with("mean", "[1, 2]"), "m"),
               "field 'mean' must be a list of 3 numbers");
  CHECK_THROWS(fcn::ModelMeta::from_json(with("channel_order", "\"GBR\""), "m"),
               "channel_order must be BGR or RGB, got 'GBR'");
  CHECK_THROWS(fcn::ModelMeta::from_json(with("precision", "\"fp8\""), "m"),
               "precision must be one of fp32, fp16, int8");
  CHECK_THROWS(fcn::ModelMeta::from_json(with("outputs", "\"logits\""), "m"),
               "outputs must be one of scores, labels, both");
  CHECK_THROWS(fcn::ModelMeta::from_json(with("input_layout", "\"NHWC\""), "m"),
               "this runtime feeds NCHW inputs");
  CHECK_THROWS(fcn::ModelMeta::from_json(with("num_classes", "0"), "m"), "num_classes must be >= 1");
}

TEST(meta, from_onnx_props_reads_strings_raw_and_the_rest_as_json) {
  auto props = fcn_test::ModelSpec::metadata(2, "RGB", "[1.5, 2.5, 3.25]", "labels");
  const fcn::ModelMeta m = fcn::ModelMeta::from_onnx_props(props, "x.onnx");
  CHECK_EQ(m.arch, std::string("identity_test"));
  CHECK_EQ(m.channel_order, std::string("RGB"));
  CHECK_EQ(m.outputs, std::string("labels"));
  CHECK_EQ(m.mean[2], 3.25);
  CHECK_EQ(m.palette.at(1)[1], 215);
  CHECK_EQ(m.class_names.at(1), std::string("class_1"));

  props["fcn.mean"] = "[1, 2";
  CHECK_THROWS(fcn::ModelMeta::from_onnx_props(props, "x.onnx"),
               "x.onnx: ONNX metadata 'fcn.mean' is not valid JSON");
  CHECK_THROWS(fcn::ModelMeta::from_onnx_props({{"producer", "x"}}, "x.onnx"),
               "x.onnx: the ONNX file carries no fcn-deploy metadata");
}

TEST(meta, read_plan_meta_reads_the_sidecar) {
  const std::string plan = fcn_test::temp_dir() + "/model.plan";
  CHECK_THROWS(fcn::read_plan_meta(plan), "has no sidecar model.plan.json");
  // The layout of fcn_deploy.engine.sidecar.EngineInfo.to_dict().
  fcn_test::write_file(plan + ".json", std::string(R"({"format": 1, "tensorrt_version": "10.16.0",
    "gpu": {"name": "NVIDIA H100", "compute_capability": "9.0"},
    "profiles": [{"min": [1, 3, 32, 32], "opt": [1, 3, 500, 500], "max": [1, 3, 1024, 1024]}],
    "precision": "fp16", "input_name": "image", "outputs": ["scores"], "meta": )") + kDict + "}");
  std::string version;
  const fcn::ModelMeta m = fcn::read_plan_meta(plan, &version);
  CHECK_EQ(version, std::string("10.16.0"));
  CHECK_EQ(m.arch, std::string("fcn8s_vgg16"));
  CHECK_EQ(m.mean[1], 116.66876762);
  fcn::PlanInfo info;
  fcn::read_plan_meta(plan, &info);
  CHECK_EQ(info.tensorrt_version, std::string("10.16.0"));
  CHECK(!info.version_compatible);  // no build_options: a plan for this TensorRT only

  // A version-compatible plan: the TensorRT backend must allow its embedded host code.
  const std::string vc_sidecar = std::string(R"({"tensorrt_version": "10.16.0",
    "build_options": {"version_compatible": true, "hardware_compatibility": "none"}, "meta": )") +
                                 kDict + "}";
  fcn_test::write_file(plan + ".json", vc_sidecar);
  fcn::read_plan_meta(plan, &info);
  CHECK(info.version_compatible);
  fcn_test::write_file(plan + ".json", std::string(R"({"build_options": {"version_compatible": "yes"},
    "meta": )") + kDict + "}");
  CHECK_THROWS(fcn::read_plan_meta(plan, &info), "build_options.version_compatible is \"yes\"");

  fcn_test::write_file(plan + ".json", "{\"format\": 1}");
  CHECK_THROWS(fcn::read_plan_meta(plan), "has no \"meta\" object");
  fcn_test::write_file(plan + ".json", "{\"meta\": ");
  CHECK_THROWS(fcn::read_plan_meta(plan), "is not valid JSON");
  std::filesystem::remove(plan + ".json");
}

// The tiling geometry: read when present (as fcn-export writes it), absent in older artifacts,
// and planned exactly as fcn_deploy.tiling.plan_axis (tests/runtime/test_tiling.py's values).
TEST(meta, tiling_geometry_and_plan) {
  CHECK(!fcn::ModelMeta::from_json(kDict, "old").tiling.present());
  const fcn::ModelMeta m = fcn::ModelMeta::from_json(
      with("extra", "{}, \"tiling\": {\"stride\": 32, \"context_before\": 221, "
                    "\"context_after\": 215}"), "new");
  CHECK_EQ(m.tiling.stride, 32);
  CHECK_EQ(m.tiling.margin_before(), 224);
  CHECK_EQ(m.tiling.context_after, 215);
  CHECK_THROWS(fcn::ModelMeta::from_json(with("extra", "{}, \"tiling\": {\"stride\": 32}"), "m"),
               "m: metadata tiling is missing context_before");
  CHECK_THROWS(fcn::ModelMeta::from_json(
                   with("extra", "{}, \"tiling\": {\"stride\": 0, \"context_before\": 1, "
                                 "\"context_after\": 1}"), "m"),
               "stride >= 1");

  // core 96, every tile 552 long (224 + 96 + 215 = 535, rounded to 1000 modulo 32); cores
  // 0, 96 and 192 get the same window and are kept from one run (as in test_tiling.py)
  const std::vector<fcn::Span> spans = fcn::plan_axis(1000, 100, m.tiling);
  CHECK_EQ(spans.size(), size_t{6});
  CHECK_EQ(fcn::tile_length(1000, 100, m.tiling), 552);
  CHECK_EQ(spans[0].start, 0);
  CHECK_EQ(spans[0].stop, 552);
  CHECK_EQ(spans[0].keep_stop, 288);
  CHECK_EQ(spans[1].start, 288 - 224);
  CHECK_EQ(spans[1].stop, 288 - 224 + 552);
  CHECK_EQ(spans[1].keep_start, 288);
  CHECK_EQ(spans[1].keep_stop, 384);
  CHECK_EQ(spans[5].start, 1000 - 552);
  CHECK_EQ(spans[5].stop, 1000);
  CHECK_EQ(spans[5].keep_start, 672);
  CHECK_EQ(spans[5].keep_stop, 1000);
  CHECK_EQ(fcn::plan_axis(70, 4096, m.tiling).size(), size_t{1});
  CHECK_EQ(fcn::plan_axis(520, 64, m.tiling).size(), size_t{1});  // 503 -> 520: one tile
  CHECK_EQ(fcn::tile_for_pixels(1000 * 1000, m.tiling), 512);
  CHECK_THROWS(fcn::tile_for_pixels(1000, m.tiling), "at least 252004 pixels");
  CHECK_THROWS(fcn::plan_axis(10, 0, m.tiling), "tile size must be a positive number");
}
