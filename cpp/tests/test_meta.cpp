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

// "inputs" / "heads": completed from the names alone as fcn_deploy/meta.py does (image: the net's
// mean and order; hha: NYUDv2's HHA mean, RGB; depth: log_depth, mean 7.844), with per-head
// output names; absent or [] means one input "image" and one head "score".
TEST(meta, inputs_and_heads_are_completed_like_python) {
  const fcn::ModelMeta single = fcn::ModelMeta::from_json(kDict, "m");
  CHECK(single.inputs.empty());
  CHECK(single.heads.empty());
  CHECK(!single.multi_head());
  const std::vector<fcn::InputSpec> single_inputs = single.input_specs();
  CHECK_EQ(single_inputs.size(), size_t{1});
  CHECK_EQ(single_inputs[0].name, std::string("image"));
  CHECK_EQ(single_inputs[0].mean.at(2), 122.67891434);
  CHECK_EQ(single_inputs[0].encoding, std::string("image"));
  const std::vector<fcn::HeadSpec> single_heads = single.head_specs();
  CHECK_EQ(single_heads.size(), size_t{1});
  CHECK_EQ(single_heads[0].name, std::string("score"));
  CHECK_EQ(single_heads[0].scores_output, std::string("scores"));
  CHECK(single.output_names() == (std::vector<std::string>{"scores", "labels"}));  // "both"
  CHECK(fcn::ModelMeta::from_json(with("extra", "{}, \"inputs\": [], \"heads\": []"), "m")
            .input_names() == std::vector<std::string>{"image"});

  const fcn::ModelMeta m = fcn::ModelMeta::from_json(
      with("extra", R"({}, "inputs": [{"name": "image", "channels": 3}, {"name": "hha", "channels": 3},
                                     {"name": "depth", "channels": 1}],
                      "heads": [{"name": "sem", "num_classes": 3}, {"name": "geo", "num_classes": 2}])"),
      "m");
  CHECK(m.input_names() == (std::vector<std::string>{"image", "hha", "depth"}));
  const std::vector<fcn::InputSpec> in = m.input_specs();
  CHECK_EQ(in[0].mean.at(0), 104.00698793);
  CHECK_EQ(in[0].channel_order, std::string("BGR"));
  CHECK(in[1].mean == (std::vector<double>{118.477, 94.076, 132.431}));
  CHECK_EQ(in[1].channel_order, std::string("RGB"));
  CHECK_EQ(in[1].encoding, std::string("image"));
  CHECK(in[2].mean == std::vector<double>{7.844});
  CHECK_EQ(in[2].encoding, std::string("log_depth"));
  CHECK_EQ(in[2].channels, 1);
  CHECK(m.multi_head());
  const std::vector<fcn::HeadSpec> heads = m.head_specs();
  CHECK_EQ(heads[0].class_names.at(2), std::string("dog"));  // the first head is num_classes'
  CHECK_EQ(heads[0].palette.at(1)[0], 128);
  CHECK(heads[1].class_names == (std::vector<std::string>{"class_0", "class_1"}));
  CHECK(heads[1].palette == (std::vector<std::array<int, 3>>{{0, 0, 0}, {128, 0, 0}}));
  CHECK_EQ(heads[1].scores_output, std::string("scores_geo"));
  CHECK_EQ(heads[1].labels_output, std::string("labels_geo"));
  CHECK(m.output_names() ==
        (std::vector<std::string>{"scores_sem", "scores_geo", "labels_sem", "labels_geo"}));
  CHECK(m.output_names("labels") == (std::vector<std::string>{"labels_sem", "labels_geo"}));
  const fcn::ModelMeta geo = m.for_head("geo");
  CHECK_EQ(geo.num_classes, 2);
  CHECK_EQ(geo.class_names.at(1), std::string("class_1"));
  CHECK_THROWS(m.for_head("depth"), "no head 'depth' in the model's metadata; its heads are sem, geo");
  const std::vector<std::array<int, 3>> voc = fcn::voc_palette(256);
  CHECK_EQ(voc.at(255)[0], 224);  // VOC's ignore colour is entry 255
  CHECK_EQ(voc.at(255)[2], 192);

  // Given values win over the defaults; ONNX metadata_props carry them as JSON.
  auto props = fcn_test::ModelSpec::metadata(2, "BGR", "[1, 2, 3]");
  props["fcn.inputs"] = R"([{"name": "hha", "channels": 3, "mean": [1, 2, 3], "channel_order": "BGR"}])";
  props["fcn.heads"] = R"([{"name": "a", "num_classes": 2}, {"name": "b", "num_classes": 1,
                           "class_names": ["wall"], "palette": [[9, 8, 7]]}])";
  const fcn::ModelMeta p = fcn::ModelMeta::from_onnx_props(props, "x.onnx");
  CHECK(p.inputs.at(0).mean == (std::vector<double>{1, 2, 3}));
  CHECK_EQ(p.inputs.at(0).channel_order, std::string("BGR"));
  CHECK_EQ(p.heads.at(1).class_names.at(0), std::string("wall"));
  CHECK_EQ(p.heads.at(1).palette.at(0)[2], 7);

  // Checkpoints of 0.x kept them in "extra" (ModelMeta.from_dict moves them).
  const fcn::ModelMeta old = fcn::ModelMeta::from_json(
      with("extra", R"({"inputs": [{"name": "hha", "channels": 3}]})"), "old");
  CHECK(old.input_names() == std::vector<std::string>{"hha"});
}

TEST(meta, inputs_and_heads_errors_are_python_s) {
  auto inputs = [](const std::string& list) {
    return fcn::ModelMeta::from_json(with("extra", "{}, \"inputs\": " + list), "m");
  };
  auto heads = [](const std::string& list) {
    return fcn::ModelMeta::from_json(with("extra", "{}, \"heads\": " + list), "m");
  };
  CHECK_THROWS(inputs(R"([{"name": "hha", "channels": 3}, {"name": "hha", "channels": 3}])"),
               "m: metadata input names must be unique, got ['hha', 'hha']");
  CHECK_THROWS(inputs(R"([{"name": "HHA", "channels": 3}])"),
               "input name 'HHA' must be a lower-case identifier (image, hha, depth)");
  CHECK_THROWS(inputs(R"([{"channels": 3}])"), "input name null must be a lower-case identifier");
  CHECK_THROWS(inputs(R"([{"name": "hha"}])"), "input 'hha' needs channels >= 1, got null");
  CHECK_THROWS(inputs(R"([{"name": "hha", "channels": 0}])"), "input 'hha' needs channels >= 1, got 0");
  CHECK_THROWS(inputs(R"([{"name": "hha", "channels": 3, "encoding": "jpeg"}])"),
               "input 'hha' has encoding 'jpeg'; expected one of image, log_depth");
  CHECK_THROWS(inputs(R"([{"name": "depth", "channels": 3}])"),
               "input 'depth' (log_depth) has 3 channels; that encoding makes 1");
  CHECK_THROWS(inputs(R"([{"name": "ir", "channels": 3}])"),  // unknown modality: no mean
               "input 'ir' needs 3 mean value(s), got 0");
  CHECK_THROWS(inputs(R"([{"name": "ir", "channels": 3, "mean": [1, 2, 3], "channel_order": "GBR"}])"),
               "input 'ir' channel_order must be BGR or RGB, got 'GBR'");
  CHECK_THROWS(inputs("{}"), "field 'inputs' must be a list of objects");

  CHECK_THROWS(heads(R"([{"name": "sem", "num_classes": 3}])"),
               "heads lists the heads of a multi-head net (two or more, unique names), got ['sem']");
  CHECK_THROWS(heads(R"([{"name": "a", "num_classes": 3}, {"name": "a", "num_classes": 3}])"),
               "(two or more, unique names), got ['a', 'a']");
  CHECK_THROWS(heads(R"([{"name": "sem", "num_classes": 4}, {"name": "geo", "num_classes": 3}])"),
               "the first head 'sem' has 4 classes but num_classes is 3; they are the same head");
  CHECK_THROWS(heads(R"([{"name": "sem", "num_classes": 3}, {"name": "geo"}])"),
               "head 'geo' needs num_classes >= 1, got null");
  CHECK_THROWS(heads(R"([{"name": "sem", "num_classes": 3}, {"name": "geo", "num_classes": 0}])"),
               "head 'geo' needs num_classes >= 1, got 0");
  CHECK_THROWS(heads(R"([{"name": "sem", "num_classes": 3}, {"name": "Geo", "num_classes": 3}])"),
               "head name 'Geo' must be a lower-case identifier");
  CHECK_THROWS(heads(R"([{"name": "sem", "num_classes": 3},
                         {"name": "geo", "num_classes": 2, "class_names": ["sky"]}])"),
               "head 'geo' has 1 class names for 2 classes");
  CHECK_THROWS(heads(R"([{"name": "sem", "num_classes": 3},
                         {"name": "geo", "num_classes": 2, "palette": [[1, 2, 3]]}])"),
               "head 'geo' has 1 colours for 2 classes");
  CHECK_THROWS(heads(R"([{"name": "sem", "num_classes": 3}, {"name": "geo", "num_classes": 300}])"),
               "head 'geo' has 300 classes; this runtime writes uint8 label maps");
}

TEST(meta, plan_sidecar_carries_inputs_and_heads) {
  const std::string plan = fcn_test::temp_dir() + "/multi.plan";
  fcn_test::write_file(plan + ".json", R"({"tensorrt_version": "10.16.0", "meta": )" +
                                           with("extra", R"({}, "inputs": [{"name": "image", "channels": 3},
                                                 {"name": "depth", "channels": 1}])") + "}");
  const fcn::ModelMeta m = fcn::read_plan_meta(plan);
  CHECK(m.input_names() == (std::vector<std::string>{"image", "depth"}));
  CHECK_EQ(m.inputs.at(1).encoding, std::string("log_depth"));
  std::filesystem::remove(plan + ".json");
}
