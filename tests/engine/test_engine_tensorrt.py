"""TensorRT end to end: FP32/FP16/INT8 engines from a small FCN, compared with ONNX Runtime on CPU.

Needs TensorRT 10/11, cuda-python and an NVIDIA GPU. The suite's conftest skips these tests where
there is no GPU and FAILS them where nvidia-smi lists a GPU the TensorRT stack cannot use (so a
broken install is never reported as skipped); nothing here pretends to be a GPU. Nothing imports
tensorrt at module level, for the same reason.

References: FP32 and FP16 engines against the FP32 graph in ONNX Runtime; the INT8 engine against
the *INT8* (Q/DQ) graph run with every ONNX Runtime graph optimization off, so each Q/DQ pair is
computed in float (the exact arithmetic an INT8 kernel implements, the same on every CPU) rather
than against FP32, whose distance from INT8 is the quantization error, not a TensorRT defect.
"""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest

pytestmark = pytest.mark.tensorrt

from fcn_deploy.engine.profiles import Profile  # noqa: E402  (pure Python)
from fcn_deploy.errors import FCNError  # noqa: E402
from runtime_fixtures import random_image  # noqa: E402


@pytest.fixture(scope="module")
def trt():
    import tensorrt

    return tensorrt


PROFILES = [Profile((1, 3, 32, 32), (1, 3, 64, 64), (2, 3, 96, 96)),
            Profile((1, 3, 97, 97), (1, 3, 128, 128), (1, 3, 160, 160))]
SIZES = [(64, 64), (48, 80), (120, 136)]  # profile 0, profile 0, profile 1


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    """FP32, FP16 and INT8 ONNX graphs of one tiny FCN-8s with random score layers."""
    import torch

    from fcn_deploy.export import export_model
    from fcn_deploy.meta import ModelMeta
    from fcn_deploy.models import create_model
    from fcn_deploy.quantize import QuantizeConfig, quantize_onnx

    folder = tmp_path_factory.mktemp("trt")
    torch.manual_seed(0)
    model = create_model("fcn8s_vgg16", num_classes=5, width=1 / 16)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("score"):
                p.normal_(0.0, 0.5)
    meta = ModelMeta.default("fcn8s_vgg16", 5, arch_kwargs=dict(model.arch_kwargs))
    paths = {"fp32": folder / "fp32.onnx", "fp16": folder / "fp16.onnx", "int8": folder / "int8.onnx"}
    export_model(model, meta, paths["fp32"], outputs="both", verify=False, sample_shape=(1, 3, 64, 64))
    export_model(model, meta, paths["fp16"], outputs="both", precision="fp16", verify=False,
                 sample_shape=(1, 3, 64, 64))
    calib = [random_image(64, 64, seed=s) for s in range(8)]
    quantize_onnx(paths["fp32"], paths["int8"], calib, config=QuantizeConfig(progress=False))
    return folder, paths


@pytest.fixture(scope="module")
def plans(graphs):
    from fcn_deploy.engine import BuildOptions, build_engine

    folder, paths = graphs
    out = {}
    for precision, onnx_path in paths.items():
        plan = folder / f"{precision}.plan"
        info = build_engine(onnx_path, plan, BuildOptions(profiles=PROFILES), progress=False,
                            log=lambda _: None)
        assert info.precision == precision
        out[precision] = plan
    return out


def test_network_flags_come_from_the_enum(trt):
    from fcn_deploy.engine.build import network_flags

    major = int(trt.__version__.split(".")[0])
    if major >= 11:
        assert network_flags(trt) == 0
    else:
        assert network_flags(trt) == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


#: precision -> (reference graph, ONNX Runtime graph optimization, min label agreement, score atol
#: as a fraction of max|reference score|). First estimates: scripts/gpu_check.sh measures and
#: prints the real agreement on a GPU machine.
REFERENCES = {"fp32": ("fp32", "all", 0.995, 1e-2), "fp16": ("fp32", "all", 0.99, None),
              "int8": ("int8", "disable", 0.98, None)}


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engines_agree_with_onnxruntime_on_cpu(plans, graphs, precision):
    from fcn_deploy.runtime import Segmenter

    _, paths = graphs
    ref_graph, level, min_agreement, score_atol = REFERENCES[precision]
    with Segmenter.open(paths[ref_graph], backend="onnxruntime", device="cpu",
                        graph_optimization_level=level) as ref, \
            Segmenter.open(plans[precision]) as seg:
        assert seg.backend == "tensorrt" and seg.meta.precision == precision
        for i, (h, w) in enumerate(SIZES):
            image = random_image(h, w, seed=10 + i)
            ref_labels, ref_scores = ref.predict(image, scores=True)
            labels, scores = seg.predict(image, scores=True)
            assert labels.shape == (h, w) and scores.shape == (5, h, w)
            agreement = float((labels == ref_labels).mean())
            assert agreement >= min_agreement, f"{precision} {h}x{w}: {agreement:.4f}"
            if score_atol is not None:
                scale = np.abs(ref_scores).max()
                np.testing.assert_allclose(scores, ref_scores, atol=score_atol * scale)


def test_inspector_reports_the_precision_of_each_plan(plans):
    """The plan, not the graph, says what runs: INT8 convolutions in the INT8 plan, FP16 in the
    FP16 plan, neither in the FP32 plan."""
    from fcn_deploy.engine.inspector import inspect_plan

    found = {p: inspect_plan(plans[p]) for p in ("fp32", "fp16", "int8")}
    for layers in found.values():
        assert layers.detailed and layers.layers
    compute = {p: layers.counts(compute_only=True) for p, layers in found.items()}
    assert compute["int8"].get("int8", 0) > 0, found["int8"].describe()
    assert compute["fp16"].get("fp16", 0) > 0 and "int8" not in compute["fp16"], found["fp16"].describe()
    assert "int8" not in compute["fp32"] and "fp16" not in compute["fp32"], found["fp32"].describe()


def test_infer_from_another_thread_uses_the_runner_device(plans):
    """The current CUDA device is per thread: a runner selects its own on every call."""
    from cuda.bindings import runtime as cudart

    from fcn_deploy.engine.cuda import check, gpu_count
    from fcn_deploy.runtime import open_runner

    device = gpu_count() - 1  # the last GPU: != 0 on a multi-GPU machine
    seen = {}
    with open_runner(plans["fp32"], device=device) as runner:
        def work():
            check(cudart.cudaSetDevice(0), "cudaSetDevice(0)")  # a thread on another device
            runner.infer({"image": np.zeros((1, 3, 64, 64), np.float32)})
            seen["device"] = check(cudart.cudaGetDevice(), "cudaGetDevice")

        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    assert seen["device"] == device


def test_tensorrt_exceptions_become_fcn_errors(plans):
    from fcn_deploy.engine.cuda import trt_call
    from fcn_deploy.runtime import open_runner

    with open_runner(plans["fp32"]) as runner:
        with pytest.raises(FCNError, match=r"selecting optimization profile #7: TensorRT "
                                           r"(raised|refused)"):
            trt_call("selecting optimization profile #7",
                     runner._context.set_optimization_profile_async, 7, runner._stream.handle)
        with pytest.raises(FCNError, match=r"binding 'nope': TensorRT (raised|refused)"):
            trt_call("binding 'nope'", runner._context.set_tensor_address, "nope", 0)


def test_a_refused_timing_cache_is_replaced_and_the_plan_kept(graphs, tmp_path):
    from fcn_deploy.engine import BuildOptions, build_engine

    _, paths = graphs
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"not a timing cache from this TensorRT" * 8)
    messages = []
    info = build_engine(paths["fp32"], tmp_path / "m.plan",
                        BuildOptions(profiles=PROFILES[:1], timing_cache=cache),
                        progress=False, log=messages.append)
    assert info.precision == "fp32" and (tmp_path / "m.plan").stat().st_size > 0
    assert any("was refused by this TensorRT and GPU" in m for m in messages), messages
    assert cache.read_bytes() != b"not a timing cache from this TensorRT" * 8


def test_runner_contract_profiles_and_buffers(plans):
    from fcn_deploy.runtime import open_runner

    with open_runner(plans["fp32"]) as runner:
        assert runner.inputs[0].name == "image" and runner.inputs[0].shape == (None, 3, None, None)
        assert [t.name for t in runner.outputs] == ["scores", "labels"]
        assert runner.outputs[1].dtype == np.uint8
        assert runner.profiles == PROFILES and runner.info.profiles == PROFILES
        assert runner.batch_limit((1, 3, 64, 64)) == 2
        big = np.zeros((2, 3, 96, 96), np.float32)
        runner.infer({"image": big})
        ptr = runner._device_buffers["image"].ptr
        out = runner.infer({"image": np.zeros((1, 3, 40, 40), np.float32)})
        assert out["scores"].shape == (1, 5, 40, 40) and out["labels"].shape == (1, 40, 40)
        assert runner._device_buffers["image"].ptr == ptr  # smaller shape: buffer reused
        runner.infer({"image": np.zeros((1, 3, 150, 150), np.float32)})  # switches to profile 1
        assert runner._active_profile == 1
        assert runner._device_buffers["image"].nbytes == 150 * 150 * 3 * 4
        with pytest.raises(FCNError, match=r"input shape 1x3x200x200 is outside every optimization "
                                           r"profile of engine .*fp32.plan; it accepts #0: min "
                                           r"1x3x32x32, opt 1x3x64x64, max 2x3x96x96"):
            runner.infer({"image": np.zeros((1, 3, 200, 200), np.float32)})
        with pytest.raises(FCNError, match="outside every optimization profile"):
            runner.infer({"image": np.zeros((2, 3, 120, 120), np.float32)})


def test_segmenter_chunks_batches_to_the_profile(plans):
    from fcn_deploy.runtime import Segmenter

    images = [random_image(64, 64, seed=s) for s in range(5)]
    with Segmenter.open(plans["fp32"]) as seg:
        labels = seg.predict_batch(images)  # max batch 2: three chunks
        assert labels.shape == (5, 64, 64)
        np.testing.assert_array_equal(labels[4], seg.predict(images[4]))


def test_plan_from_another_tensorrt_version_is_refused_naming_both(plans, tmp_path, trt):
    import shutil

    from fcn_deploy.runtime import open_runner

    plan = tmp_path / "copy.plan"
    shutil.copyfile(plans["fp32"], plan)
    data = json.loads((plans["fp32"].parent / "fp32.plan.json").read_text())
    data["tensorrt_version"] = "9.9.9.9"
    (tmp_path / "copy.plan.json").write_text(json.dumps(data))
    with pytest.raises(FCNError, match=rf"built with TensorRT 9.9.9.9 on .*; this machine has "
                                       rf"TensorRT {trt.__version__} on"):
        open_runner(plan)
    data["tensorrt_version"] = trt.__version__
    data["gpu"]["name"] = "Some Other GPU"
    data["gpu"]["compute_capability"] = "1.0"
    (tmp_path / "copy.plan.json").write_text(json.dumps(data))
    with pytest.raises(FCNError, match="Some Other GPU.*GPUs differ"):
        open_runner(plan)


def test_engine_cache_builds_once(graphs, tmp_path):
    from fcn_deploy.engine import BuildOptions, EngineCache
    from fcn_deploy.runtime import open_runner

    _, paths = graphs
    cache = EngineCache(tmp_path / "cache")
    options = BuildOptions(profiles=PROFILES[:1])
    first = cache.get_or_build(paths["fp32"], options, log=lambda _: None)
    second = cache.get_or_build(paths["fp32"], options, log=lambda _: None)
    assert first.built and not second.built and first.plan_path == second.plan_path
    with open_runner(paths["fp32"], backend="tensorrt", cache_dir=tmp_path / "cache",
                     profiles=PROFILES[:1]) as runner:
        assert runner.path == first.plan_path


def test_cli_build_then_segment(graphs, tmp_path, capsys):
    import cv2

    from fcn_deploy.cli.build import main as build_main
    from fcn_deploy.cli.segment import main as segment_main

    _, paths = graphs
    plan = tmp_path / "m.plan"
    args = [str(paths["fp16"]), "-o", str(plan), "--min", "1x3x32x32", "--opt", "1x3x64x64",
            "--max", "1x3x96x96", "--workspace", "512MiB", "--opt-level", "1",
            "--timing-cache", str(tmp_path / "timing.cache")]
    assert build_main(args) == 0
    out = capsys.readouterr().out
    assert "precision: FP16" in out and plan.is_file() and (tmp_path / "m.plan.json").is_file()
    assert (tmp_path / "timing.cache").stat().st_size > 0
    assert build_main(args) == 0
    assert "is up to date" in capsys.readouterr().out
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), random_image(64, 64))
    cv2.imwrite(str(src / "big.png"), random_image(200, 200))  # outside the profile
    assert segment_main(["--engine", str(plan), str(src), "-o", str(tmp_path / "out"), "--overlay"]) == 1
    captured = capsys.readouterr()
    assert "big.png" in captured.err and "outside every optimization profile" in captured.err
    assert (tmp_path / "out" / "a.png").is_file() and (tmp_path / "out" / "a_overlay.png").is_file()


@pytest.mark.parametrize("arch", ["nyud_fcn32s_color_d", "siftflow_fcn16s"])
def test_multi_input_and_multi_head_engines_agree_with_onnxruntime(arch, tmp_path):
    """Every input bound by name (RGB-D: a 3-channel image and a 1-channel depth at one N, H, W)
    and every head's outputs read back by name, against the same graph in ONNX Runtime."""
    import onnxruntime as ort
    import torch

    from fcn_deploy.engine import BuildOptions, build_engine
    from fcn_deploy.export import export_model
    from fcn_deploy.export.verify import random_inputs
    from fcn_deploy.meta import ModelMeta
    from fcn_deploy.models import create_model
    from fcn_deploy.runtime import open_runner

    torch.manual_seed(0)
    model = create_model(arch, num_classes=5, width=1 / 16)
    with torch.no_grad():
        for name in model.score_layers:
            model.get_submodule(name).weight.normal_(0.0, 0.5)
    meta = ModelMeta.default(arch, 5, arch_kwargs=dict(model.arch_kwargs),
                             **model.io_description())
    onnx_path, plan = tmp_path / "m.onnx", tmp_path / "m.plan"
    export_model(model, meta, onnx_path, outputs="both", verify=False, sample_shape=(1, 3, 64, 64))
    info = build_engine(onnx_path, plan, BuildOptions(profiles=PROFILES), progress=False,
                        log=lambda _: None)
    assert info.input_names == meta.input_names and info.outputs == meta.output_names("both")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with open_runner(plan) as runner:
        assert [t.name for t in runner.inputs] == meta.input_names
        for i, (h, w) in enumerate(SIZES):  # both profiles
            n = 2 if h <= 96 and w <= 96 else 1
            feeds = random_inputs(meta.input_specs(), (n, 3, h, w), np.random.default_rng(i))
            got = runner.infer(feeds)
            want = dict(zip(meta.output_names("both"), session.run(None, feeds)))
            for head in meta.head_specs():
                scale = np.abs(want[head.scores_output]).max()
                np.testing.assert_allclose(got[head.scores_output], want[head.scores_output],
                                           atol=1e-2 * scale)
                agreement = float((got[head.labels_output] == want[head.labels_output]).mean())
                assert agreement >= 0.995, (head.name, h, w, agreement)
        if len(meta.input_names) > 1:
            feeds = random_inputs(meta.input_specs(), (1, 3, 64, 64), np.random.default_rng(9))
            feeds["depth"] = feeds["depth"][:, :, :, :60]
            with pytest.raises(FCNError, match=r"input 'depth' has shape 1x1x64x60 but 'image'"):
                runner.infer(feeds)
