"""fcn-build for multi-input (NYUDv2 RGB-D) and multi-head (SIFT Flow) graphs, on the CPU side:
one optimization profile range per input (same N, H, W, each input's own channels), the graph
checks, the sidecar's inputs. The TensorRT build and run themselves are in
test_engine_tensorrt.py (GPU only)."""
from __future__ import annotations

import json
import warnings

import pytest

from fcn_deploy.cli.build import main
from fcn_deploy.engine.build import BuildOptions, prepare_build
from fcn_deploy.engine.profiles import Profile, first_input_shape, input_profiles, parse_profiles
from fcn_deploy.engine.sidecar import EngineInfo, read_sidecar, write_sidecar
from fcn_deploy.errors import FCNError
from fcn_deploy.meta import ModelMeta

RGBD = {"image": ["batch", 3, "height", "width"], "depth": ["batch", 1, "height", "width"]}
PROFILE = Profile((1, 3, 32, 48), (2, 3, 256, 320), (4, 3, 512, 640))


def test_each_input_gets_the_profiles_batch_height_width_and_its_own_channels():
    got = input_profiles(PROFILE, {**RGBD, "hha": ["batch", 3, "height", "width"]})
    assert list(got) == ["image", "depth", "hha"]
    assert got["image"] == PROFILE and got["hha"] == PROFILE
    assert got["depth"] == Profile((1, 1, 32, 48), (2, 1, 256, 320), (4, 1, 512, 640))
    # an input fixed in the graph must be fixed in its profile too: named in the error
    with pytest.raises(FCNError, match=r"profile #3: dimension 2 of input 'depth' is fixed at 64 "
                                       r"in the ONNX graph, but the profile gives min/opt/max "
                                       r"32/256/512"):
        input_profiles(PROFILE, {"image": RGBD["image"], "depth": ["batch", 1, 64, "width"]},
                       index=3)
    with pytest.raises(FCNError, match=r"input 'depth' has dims \?x\?x\?x\?; expected N x C x H "
                                       r"x W with a fixed channel count C"):
        input_profiles(PROFILE, {"image": RGBD["image"], "depth": [None, None, None, None]})
    # the user's profile is the first input's: its channels must be that input's
    with pytest.raises(FCNError, match=r"dimension 1 of input 'hha' is fixed at 3 .* 1/1/1"):
        input_profiles(Profile((1, 1, 8, 8), (1, 1, 8, 8), (1, 1, 8, 8)),
                       {"hha": ["batch", 3, "height", "width"]})


def test_the_first_input_picks_the_profile_and_the_others_share_its_size():
    shapes = {"image": (2, 3, 40, 50), "depth": (2, 1, 40, 50)}
    assert first_input_shape(shapes) == (2, 3, 40, 50)
    with pytest.raises(FCNError, match=r"engine e.plan: input 'depth' has shape 2x1x40x51 but "
                                       r"'image' has 2x3x40x50; expected the same batch, height"):
        first_input_shape({**shapes, "depth": (2, 1, 40, 51)}, what="engine e.plan")
    with pytest.raises(FCNError, match=r"input 'depth' has shape 1x1x40x50"):
        first_input_shape({**shapes, "depth": (1, 1, 40, 50)})


def _export(name: str, path, outputs: str = "labels"):
    torch = pytest.importorskip("torch")
    from fcn_deploy.export import export_model
    from fcn_deploy.models import create_model

    torch.manual_seed(0)
    model = create_model(name, num_classes=4, width=1 / 16).eval()
    meta = ModelMeta.default(model.arch, 4, arch_kwargs=dict(model.arch_kwargs),
                             **model.io_description())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_model(model, meta, path, outputs=outputs, sample_shape=(1, 3, 48, 48),
                     verify=False)
    return path


@pytest.fixture(scope="module")
def rgbd_onnx(tmp_path_factory):
    return _export("nyud_fcn32s_color_d", tmp_path_factory.mktemp("rgbd") / "rgbd.onnx")


def test_prepare_build_takes_every_input_and_every_head(rgbd_onnx, tmp_path):
    prep = prepare_build(rgbd_onnx, BuildOptions(profiles=[PROFILE]))
    assert prep.graph.inputs == RGBD and prep.graph.output_names == ["labels"]
    assert prep.profiles == [PROFILE]
    sift = prepare_build(_export("siftflow_fcn16s", tmp_path / "sift.onnx", outputs="both"))
    assert sift.graph.output_names == ["scores_sem", "scores_geo", "labels_sem", "labels_geo"]
    assert list(sift.graph.inputs) == ["image"]


def test_prepare_build_refuses_inputs_the_metadata_does_not_describe(rgbd_onnx, tmp_path):
    import onnx

    from fcn_deploy.onnxgraph import read_meta, write_meta

    graph = onnx.load(str(rgbd_onnx))
    write_meta(graph, read_meta(graph).replace(inputs=[]))  # metadata of a one-image net
    bad = tmp_path / "bad.onnx"
    onnx.save(graph, str(bad))
    with pytest.raises(FCNError, match=r"the network inputs are 'image', 'depth'; the runtime "
                                       r"expects 'image' \[N,3,H,W\] \(the inputs its metadata"):
        prepare_build(bad)


def test_cli_check_prints_each_inputs_profile(rgbd_onnx, capsys):
    assert main([str(rgbd_onnx), "--check", "--min", "1x3x32x48", "--opt", "2x3x256x320",
                 "--max", "4x3x512x640"]) == 0
    out = capsys.readouterr().out
    assert ("  #0 input image: min 1x3x32x48, opt 2x3x256x320, max 4x3x512x640\n"
            "  #0 input depth: min 1x1x32x48, opt 2x1x256x320, max 4x1x512x640\n") in out
    assert "OK for fcn-build (outputs labels)" in out
    # a profile for the depth channel count is a profile for the wrong input
    assert main([str(rgbd_onnx), "--check", "--min", "1x1x32x32", "--opt", "1x1x64x64",
                 "--max", "1x1x96x96"]) == 2
    assert "dimension 1 of input 'image' is fixed at 3" in capsys.readouterr().err
    assert parse_profiles(None, None, None)[0].min == (1, 3, 32, 32)


def test_sidecar_records_every_input(tmp_path):
    from fcn_deploy.engine.cuda import GpuInfo

    meta = ModelMeta.default("nyud_fcn32s_color_d", 4, inputs=[
        {"name": "image", "channels": 3}, {"name": "depth", "channels": 1}])
    info = EngineInfo(trt_version="10.16.1.11", gpu=GpuInfo("NVIDIA H100", "9.0"),
                      profiles=[PROFILE], precision="fp32", onnx_sha256="ab" * 32,
                      meta=meta.to_dict(), input_name="image", outputs=["labels"],
                      inputs=[{"name": n, "shape": d} for n, d in RGBD.items()])
    plan = tmp_path / "m.plan"
    data = json.loads(write_sidecar(plan, info).read_text())
    assert data["inputs"] == [{"name": "image", "shape": ["batch", 3, "height", "width"]},
                              {"name": "depth", "shape": ["batch", 1, "height", "width"]}]
    back = read_sidecar(plan)
    assert back.input_names == ["image", "depth"] == back.model_meta().input_names
    # a sidecar written before inputs were recorded describes its one input
    del data["inputs"]
    plan.with_name("m.plan.json").write_text(json.dumps(data))
    assert read_sidecar(plan).input_names == ["image"]
