"""fcn-triton: repositories whose config.pbtxt Triton's own schema (tritonclient's) accepts."""
from __future__ import annotations

import json

import pytest
from google.protobuf import text_format

from fcn_deploy.cli.triton import main as triton_main
from fcn_deploy.errors import FCNError
from fcn_deploy.meta import ModelMeta
from fcn_deploy.serve.repository import (_PYTHON_MODEL, TritonRepoOptions, build_config,
                                         model_config_pb2, parse_config_text,
                                         write_triton_repository)

pb = model_config_pb2()


def _parse(path) -> "pb.ModelConfig":
    """Parse a written config.pbtxt with Triton's schema, independently of our checks."""
    config = pb.ModelConfig()
    text_format.Parse(path.read_text(), config)
    return config


def _meta_of(config) -> ModelMeta:
    return ModelMeta.from_onnx_props({k: v.string_value for k, v in config.parameters.items()
                                      if k.startswith("fcn.")})


def _fake_plan(tmp_path, profiles, outputs=("labels",)):
    """A plan file and its sidecar: only the sidecar is read (nothing runs the engine here)."""
    from fcn_deploy.engine.cuda import GpuInfo
    from fcn_deploy.engine.profiles import Profile
    from fcn_deploy.engine.sidecar import EngineInfo, write_sidecar

    plan = tmp_path / "net.plan"
    plan.write_bytes(b"not run in these tests")
    meta = ModelMeta.default("fcn8s_vgg16", 21)
    write_sidecar(plan, EngineInfo(
        trt_version="10.13.0", gpu=GpuInfo(name="NVIDIA A100", compute_capability="8.0"),
        profiles=[Profile(*p) for p in profiles], precision="fp16", onnx_sha256="0" * 64,
        meta=meta.to_dict(), outputs=list(outputs)))
    return plan


def test_onnx_repository_native_platform(tiny_onnx, tmp_path):
    options = TritonRepoOptions(name="fcn", max_batch_size=16, outputs="both",
                                preferred_batch_sizes=(4, 8), max_queue_delay_us=2000,
                                instance_count=2, ort_tensorrt="fp16", version_policy="latest:2",
                                version=3)
    result = write_triton_repository(tiny_onnx, tmp_path / "repo", options)
    model_dir = tmp_path / "repo" / "fcn"
    assert result.model_dir == model_dir
    assert sorted(p.relative_to(model_dir).as_posix() for p in result.files) == [
        "3/model.onnx", "config.pbtxt"]
    assert (model_dir / "3" / "model.onnx").read_bytes() == tiny_onnx.read_bytes()
    config = _parse(model_dir / "config.pbtxt")
    assert config.name == "fcn" and config.platform == "onnxruntime_onnx" and not config.backend
    assert config.max_batch_size == 16
    assert config.version_policy.latest.num_versions == 2
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [
        ("image", pb.TYPE_FP32, [3, -1, -1])]
    assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [
        ("labels", pb.TYPE_UINT8, [-1, -1]), ("scores", pb.TYPE_FP32, [4, -1, -1])]
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    assert [(g.kind, g.count) for g in config.instance_group] == [
        (pb.ModelInstanceGroup.KIND_GPU, 2)]
    (accel,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accel.name == "tensorrt" and dict(accel.parameters) == {"precision_mode": "FP16"}
    meta = _meta_of(config)
    assert meta.num_classes == 4 and meta.class_names == [f"class_{i}" for i in range(4)]
    assert meta.mean == pytest.approx([104.00698793, 116.66876762, 122.67891434])
    assert meta.channel_order == "BGR" and meta.palette[1] == [128, 0, 0]
    assert meta.outputs == "both"


def test_default_outputs_are_labels_and_python_backend_runs_on_cpu(tiny_onnx, tmp_path):
    result = write_triton_repository(tiny_onnx, tmp_path / "repo",
                                     TritonRepoOptions(backend="python", intra_op_threads=1))
    model_dir = tmp_path / "repo" / "tiny"
    config = _parse(model_dir / "config.pbtxt")
    assert config.backend == "python" and not config.platform
    assert [t.name for t in config.output] == ["labels"] and _meta_of(config).outputs == "labels"
    assert config.max_batch_size == 8 and config.HasField("dynamic_batching")
    assert [(g.kind, g.count) for g in config.instance_group] == [
        (pb.ModelInstanceGroup.KIND_CPU, 1)]
    assert config.parameters["fcn_serve.intra_op_threads"].string_value == "1"
    assert (model_dir / "1" / "model.py").read_bytes() == _PYTHON_MODEL.read_bytes()
    assert len(result.files) == 3


def test_max_batch_size_0_puts_the_batch_dim_into_the_dims(tiny_onnx, tmp_path):
    config = build_config(tiny_onnx, TritonRepoOptions(max_batch_size=0, dynamic_batching=False,
                                                       outputs="both"))
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert [list(t.dims) for t in list(config.input) + list(config.output)] == [
        [-1, 3, -1, -1], [-1, -1, -1], [-1, 4, -1, -1]]


def test_plan_dims_and_batch_come_from_its_profiles(tmp_path):
    plan = _fake_plan(tmp_path, [((1, 3, 256, 500), (4, 3, 256, 500), (8, 3, 256, 1000)),
                                 ((1, 3, 256, 200), (1, 3, 256, 300), (2, 3, 256, 400))])
    result = write_triton_repository(plan, tmp_path / "repo",
                                     TritonRepoOptions(preferred_batch_sizes=(2, 8)))
    config = _parse(result.config_path)
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 8
    # height is 256 in every profile: static; width varies: -1
    assert list(config.input[0].dims) == [3, 256, -1]
    assert [(t.name, list(t.dims)) for t in config.output] == [("labels", [256, -1])]
    assert config.parameters["fcn_serve.max_height"].string_value == "256"
    assert config.parameters["fcn_serve.max_width"].string_value == "1000"
    assert json.loads(config.parameters["fcn_serve.profiles"].string_value)[1]["max"] == [
        2, 3, 256, 400]
    assert (tmp_path / "repo" / "net" / "1" / "model.plan").read_bytes() == plan.read_bytes()
    assert _meta_of(config).num_classes == 21


@pytest.mark.parametrize("options,message", [
    (dict(max_batch_size=16), r"max batch size 16 is larger than the plan's profiles allow \(8\)"),
    (dict(instance_kind="cpu"), r"a TensorRT plan runs on GPUs only"),
    (dict(backend="python"), r"the python backend runs an .onnx"),
    (dict(ort_tensorrt="fp16"), r"applies to the onnxruntime_onnx platform only"),
    (dict(outputs="scores"), r"has no 'scores' output"),
])
def test_plan_configs_triton_would_refuse_are_not_written(tmp_path, options, message):
    plan = _fake_plan(tmp_path, [((1, 3, 64, 64), (4, 3, 128, 128), (8, 3, 256, 256))])
    with pytest.raises(FCNError, match=message):
        write_triton_repository(plan, tmp_path / "repo", TritonRepoOptions(**options))
    assert not (tmp_path / "repo").exists()


def test_preferred_batch_outside_the_profiles_is_refused(tmp_path):
    plan = _fake_plan(tmp_path, [((2, 3, 64, 64), (4, 3, 128, 128), (8, 3, 256, 256))])
    with pytest.raises(FCNError, match=r"preferred batch sizes \[1\] are outside the plan's "
                                       r"profiles \(batch 2..8\)"):
        build_config(plan, TritonRepoOptions(preferred_batch_sizes=(1, 4)))


@pytest.mark.parametrize("options,message", [
    (dict(preferred_batch_sizes=(4, 16)), r"preferred batch sizes \[16\] are outside 1..8"),
    (dict(max_batch_size=0), r"dynamic batching needs max_batch_size > 0"),
    (dict(instance_count=0), r"instance count must be an integer in 1..2147483647, got 0"),
    # Out of their protobuf fields' range: an FCNError, not protobuf's bare ValueError.
    (dict(max_batch_size=2**40), r"max batch size must be an integer in 0..2147483647"),
    (dict(instance_count=2**31), r"instance count must be an integer in 1..2147483647"),
    (dict(preferred_batch_sizes=(2**32,)), r"preferred batch size must be an integer in 1.."),
    (dict(max_queue_delay_us=-5), r"max queue delay \(microseconds\) must be an integer in "
                                  r"0..9223372036854775807, got -5"),
    (dict(version=2**64), r"model version must be an integer in 1..9223372036854775807"),
    (dict(backend="python", intra_op_threads=-3), r"intra-op threads .* got -3"),
    (dict(version_policy="newest"), r"version policy 'newest' is not understood"),
    (dict(name="a/b"), r"model name 'a/b' must be a non-empty folder name"),
    # Names that break Triton's URLs (/v2/models/<name>/infer) and shell-friendly folder names.
    (dict(name="my model"), r"model name 'my model' may contain only letters, digits, '_', "
                            r"'-' and '\.'"),
    (dict(name="m#1"), r"model name 'm#1' may contain only"),
    (dict(name="m?x"), r"model name 'm\?x' may contain only"),
    (dict(name="m%20"), r"model name 'm%20' may contain only"),
    (dict(name=".."), r"model name '\.\.' must be a non-empty folder name"),
    (dict(intra_op_threads=2), r"intra-op threads apply to the python backend"),
])
def test_onnx_configs_triton_would_refuse_are_not_written(tiny_onnx, tmp_path, options, message):
    with pytest.raises(FCNError, match=message):
        write_triton_repository(tiny_onnx, tmp_path / "repo", TritonRepoOptions(**options))
    assert not (tmp_path / "repo").exists()


def test_parse_config_text_uses_tritons_schema():
    good = 'name: "m" platform: "onnxruntime_onnx" max_batch_size: 4 ' \
           'input { name: "image" data_type: TYPE_FP32 dims: [3, -1, -1] } ' \
           'output { name: "labels" data_type: TYPE_UINT8 dims: [-1, -1] }'
    assert parse_config_text(good).max_batch_size == 4
    with pytest.raises(FCNError, match=r"does not follow Triton's model-config schema: .*"
                                       r"max_batch_sise"):
        parse_config_text(good.replace("max_batch_size", "max_batch_sise"))
    with pytest.raises(FCNError, match="does not follow Triton's model-config schema"):
        parse_config_text(good.replace("TYPE_UINT8", "TYPE_UINT9"))
    with pytest.raises(FCNError, match=r"tensor 'labels' dims \[-1, 0\] must be positive"):
        parse_config_text(good.replace("dims: [-1, -1]", "dims: [-1, 0]"))


def test_existing_version_is_kept_unless_overwrite(tiny_onnx, onnx_factory, tmp_path):
    repo = tmp_path / "repo"
    write_triton_repository(tiny_onnx, repo, TritonRepoOptions(name="m"))
    other = onnx_factory("other.onnx", seed=9)
    with pytest.raises(FCNError, match=r"m/1 already exists; pick another --version"):
        write_triton_repository(other, repo, TritonRepoOptions(name="m"))
    assert (repo / "m" / "1" / "model.onnx").read_bytes() == tiny_onnx.read_bytes()
    write_triton_repository(other, repo, TritonRepoOptions(name="m", version=2))
    write_triton_repository(other, repo, TritonRepoOptions(name="m", overwrite=True))
    assert (repo / "m" / "1" / "model.onnx").read_bytes() == other.read_bytes()
    assert (repo / "m" / "2" / "model.onnx").read_bytes() == other.read_bytes()


def test_model_inside_the_target_folder_is_refused(tiny_onnx, tmp_path):
    repo = tmp_path / "repo"
    write_triton_repository(tiny_onnx, repo, TritonRepoOptions(name="m"))
    inner = repo / "m" / "1" / "model.onnx"
    with pytest.raises(FCNError, match="lies inside the model folder"):
        write_triton_repository(inner, repo, TritonRepoOptions(name="m", overwrite=True))


def test_cli_writes_and_reports_errors(tiny_onnx, tmp_path, capsys):
    rc = triton_main([str(tiny_onnx), "-o", str(tmp_path / "repo"), "--name", "fcn",
                      "--backend", "python", "--outputs", "both", "--preferred-batch", "2", "4",
                      "--max-queue-delay-us", "500", "--max-image", "512x640", "--print"])
    out = capsys.readouterr().out
    assert rc == 0 and 'backend: "python"' in out and "wrote " in out
    config = _parse(tmp_path / "repo" / "fcn" / "config.pbtxt")
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4]
    assert config.parameters["fcn_serve.max_height"].string_value == "512"
    assert config.parameters["fcn_serve.max_width"].string_value == "640"
    rc = triton_main([str(tmp_path / "missing.onnx"), "-o", str(tmp_path / "repo2")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: model file ") and "does not exist" in err
    rc = triton_main([str(tiny_onnx), "-o", str(tmp_path / "r3"), "--no-dynamic-batching",
                      "--preferred-batch", "2"])
    assert rc == 2 and "drop --no-dynamic-batching" in capsys.readouterr().err
    rc = triton_main([str(tiny_onnx), "-o", str(tmp_path / "r4"), "--name", "my model"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: model name 'my model' may contain only letters")
    assert not (tmp_path / "r4").exists()


def test_a_hard_link_of_the_model_is_not_overwritten(tiny_onnx, tmp_path):
    repo = tmp_path / "repo"
    write_triton_repository(tiny_onnx, repo, TritonRepoOptions(name="m"))
    link = tmp_path / "link.onnx"
    link.hardlink_to(repo / "m" / "1" / "model.onnx")
    with pytest.raises(FCNError, match=r"fcn-triton: copy of link.onnx .*model.onnx is also the "
                                       r"model .*link.onnx: writing it would destroy that input"):
        write_triton_repository(link, repo, TritonRepoOptions(name="m", overwrite=True))


def test_a_failed_or_interrupted_write_leaves_no_model_folder(tiny_onnx, tmp_path, monkeypatch):
    from fcn_deploy.serve import repository

    repo = tmp_path / "repo"
    write_triton_repository(tiny_onnx, repo, TritonRepoOptions(name="kept"))

    class Interrupted(BaseException):  # as SIGTERM/Ctrl-C arrive (cli.common), not an Exception
        pass

    def interrupted(src, dst):
        raise Interrupted

    monkeypatch.setattr(repository.shutil, "copyfile", interrupted)
    with pytest.raises(Interrupted):
        write_triton_repository(tiny_onnx, repo, TritonRepoOptions(name="m"))
    # The half-made folder is gone (a later run is not refused as "already exists"), nothing
    # else was touched, and no hidden temp file is left.
    assert sorted(p.name for p in repo.iterdir()) == ["kept"]
    assert sorted(p.name for p in (repo / "kept").rglob("*")) == ["1", "config.pbtxt",
                                                                  "model.onnx"]
    with pytest.raises(Interrupted):
        write_triton_repository(tiny_onnx, tmp_path / "new", TritonRepoOptions(name="m"))
    assert not (tmp_path / "new").exists()
    monkeypatch.undo()
    write_triton_repository(tiny_onnx, repo, TritonRepoOptions(name="m"))
    assert (repo / "m" / "1" / "model.onnx").read_bytes() == tiny_onnx.read_bytes()


@pytest.fixture(scope="module")
def multi_io_onnx(tmp_path_factory):
    """Real exports (width 1/16) of a two-head and an image + depth net."""
    pytest.importorskip("torch")
    from runtime_fixtures import make_multi_io_net

    folder = tmp_path_factory.mktemp("multi_io")
    return {arch: make_multi_io_net(folder, arch)[3]
            for arch in ("siftflow_fcn16s", "nyud_fcn32s_color_d")}


def test_two_head_net_serves_every_heads_outputs(multi_io_onnx, tmp_path):
    sift = multi_io_onnx["siftflow_fcn16s"]
    config = build_config(sift, TritonRepoOptions(outputs="both"))
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [
        ("image", pb.TYPE_FP32, [3, -1, -1])]
    # every head's labels, then every head's scores with that head's classes (sem 5, geo 3)
    assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [
        ("labels_sem", pb.TYPE_UINT8, [-1, -1]), ("labels_geo", pb.TYPE_UINT8, [-1, -1]),
        ("scores_sem", pb.TYPE_FP32, [5, -1, -1]), ("scores_geo", pb.TYPE_FP32, [3, -1, -1])]
    meta = _meta_of(config)
    assert meta.outputs == "both" and [h.name for h in meta.head_specs()] == ["sem", "geo"]
    assert meta.head_specs()[1].class_names == ("horizontal", "vertical", "sky")
    result = write_triton_repository(sift, tmp_path / "repo", TritonRepoOptions(
        backend="python", max_batch_size=0, dynamic_batching=False))
    config = _parse(result.config_path)  # default: the labels of every head
    assert [(t.name, list(t.dims)) for t in list(config.input) + list(config.output)] == [
        ("image", [-1, 3, -1, -1]), ("labels_sem", [-1, -1, -1]), ("labels_geo", [-1, -1, -1])]
    assert _meta_of(config).outputs == "labels"


def test_two_input_net_lists_every_input_with_its_channels(multi_io_onnx, tmp_path):
    rgbd = multi_io_onnx["nyud_fcn32s_color_d"]
    result = write_triton_repository(rgbd, tmp_path / "repo", TritonRepoOptions(
        name="rgbd", outputs="scores", max_batch_size=4))
    config = _parse(result.config_path)
    assert config.platform == "onnxruntime_onnx" and config.max_batch_size == 4
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [
        ("image", pb.TYPE_FP32, [3, -1, -1]), ("depth", pb.TYPE_FP32, [1, -1, -1])]
    assert [(t.name, list(t.dims)) for t in config.output] == [("scores", [5, -1, -1])]
    meta = _meta_of(config)
    assert [(s.name, s.channels, s.encoding) for s in meta.input_specs()] == [
        ("image", 3, "image"), ("depth", 1, "log_depth")]
    assert (tmp_path / "repo" / "rgbd" / "1" / "model.onnx").read_bytes() == rgbd.read_bytes()


def test_two_input_plan_takes_every_input_from_its_sidecar(tmp_path):
    from fcn_deploy.engine.cuda import GpuInfo
    from fcn_deploy.engine.profiles import Profile
    from fcn_deploy.engine.sidecar import EngineInfo, write_sidecar

    plan = tmp_path / "rgbd.plan"
    plan.write_bytes(b"not run in these tests")
    rgbd = ModelMeta.default("nyud_fcn32s_color_d", 4, inputs=[
        {"name": "image", "channels": 3}, {"name": "depth", "channels": 1}], heads=[
        {"name": "sem", "num_classes": 4}, {"name": "geo", "num_classes": 3}])
    write_sidecar(plan, EngineInfo(
        trt_version="10.16.1.11", gpu=GpuInfo("NVIDIA H100", "9.0"),
        profiles=[Profile((1, 3, 64, 64), (1, 3, 128, 128), (2, 3, 256, 256))],
        precision="fp32", onnx_sha256="ab" * 32, meta=rgbd.to_dict(),
        outputs=["scores_sem", "scores_geo", "labels_sem", "labels_geo"],
        inputs=[{"name": "image", "shape": ["batch", 3, "height", "width"]},
                {"name": "depth", "shape": ["batch", 1, "height", "width"]}]))
    config = build_config(plan, TritonRepoOptions(outputs="both"))
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 2
    assert [(t.name, list(t.dims)) for t in config.input] == [
        ("image", [3, -1, -1]), ("depth", [1, -1, -1])]
    assert [(t.name, list(t.dims)) for t in config.output] == [
        ("labels_sem", [-1, -1]), ("labels_geo", [-1, -1]),
        ("scores_sem", [4, -1, -1]), ("scores_geo", [3, -1, -1])]
    assert config.parameters["fcn_serve.max_height"].string_value == "256"


def test_inputs_or_heads_the_graph_lacks_are_refused(onnx_factory):
    """The config lists what the metadata says; a graph that disagrees is refused by name."""
    rgbd = ModelMeta.default("nyud_fcn32s_color_d", 4, inputs=[
        {"name": "image", "channels": 3}, {"name": "depth", "channels": 1}])
    with pytest.raises(FCNError, match=r"only_image.onnx: the network's inputs are image but its "
                                       r"metadata lists image, depth"):
        build_config(onnx_factory("only_image.onnx", meta=rgbd))
    depth_only = ModelMeta.default("nyud_fcn32s_d", 4, inputs=[{"name": "depth", "channels": 1}])
    with pytest.raises(FCNError, match=r"input 'depth' has dims \['batch', 3, 'height', "
                                       r"'width'\]; expected \[batch, 1, height, width\]"):
        build_config(onnx_factory("d.onnx", meta=depth_only, input_name="depth"))
    two_heads = ModelMeta.default("siftflow_fcn16s", 4, heads=[
        {"name": "sem", "num_classes": 4}, {"name": "geo", "num_classes": 3}])
    with pytest.raises(FCNError, match=r"sift.onnx: outputs are \['scores', 'labels'\]; expected "
                                       r"'labels_sem' and/or 'labels_geo' and/or 'scores_sem'"):
        build_config(onnx_factory("sift.onnx", meta=two_heads))
