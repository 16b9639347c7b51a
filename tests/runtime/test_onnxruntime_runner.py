"""The runner contract on the ONNX Runtime backend, and the backend registry."""
from __future__ import annotations

import importlib.util
import threading

import numpy as np
import pytest

from fcn_deploy.errors import FCNError
from fcn_deploy.runtime import (Runner, TensorInfo, available_backends, backend_status,
                                default_backend, list_backends, open_runner)
from runtime_fixtures import reference_scores


def _x(n=1, h=20, w=24, seed=0):
    return np.random.default_rng(seed).normal(0, 60, size=(n, 3, h, w)).astype(np.float32)


# -- registry --------------------------------------------------------------------------------
def test_registry_lists_all_backends_and_reports_why_one_is_missing():
    assert list_backends() == ["onnxruntime", "torch", "tensorrt", "triton"]
    status = backend_status()
    assert status["onnxruntime"] is None  # a dependency of the package
    available = available_backends()
    assert "onnxruntime" in available
    assert ("torch" in available) == (importlib.util.find_spec("torch") is not None)
    if importlib.util.find_spec("tensorrt") is None:
        assert "tensorrt" not in available
        assert "tensorrt is not installed" in status["tensorrt"]


@pytest.mark.parametrize("name,backend", [("m.onnx", "onnxruntime"), ("m.plan", "tensorrt"),
                                          ("m.engine", "tensorrt"), ("model.pt", "torch"),
                                          ("M.PTH", "torch")])
def test_default_backend_follows_the_file_type(name, backend):
    assert default_backend(name) == backend


def test_open_runner_errors_name_the_problem(tmp_path, tiny_onnx):
    with pytest.raises(FCNError, match="model file .*missing.onnx does not exist"):
        open_runner(tmp_path / "missing.onnx")
    odd = tmp_path / "model.bin"
    odd.write_bytes(b"x")
    with pytest.raises(FCNError, match=r"extension '\.bin'.*expected \.onnx"):
        open_runner(odd)
    with pytest.raises(FCNError, match="unknown backend 'tflite'; choose one of onnxruntime, torch, tensorrt"):
        open_runner(tiny_onnx, backend="tflite")
    with pytest.raises(FCNError, match="backend 'torch' cannot open .*tiny.onnx \\(onnx\\).*Use backend 'onnxruntime'"):
        open_runner(tiny_onnx, backend="torch")
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"x")
    with pytest.raises(FCNError, match="backend 'onnxruntime' cannot open .*Export it to ONNX"):
        open_runner(ckpt, backend="onnxruntime")
    with pytest.raises(FCNError, match="is a folder"):
        open_runner(tmp_path.joinpath("dir.onnx").mkdir() or tmp_path / "dir.onnx")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT installed")
def test_tensorrt_backend_without_tensorrt_says_what_to_install(tmp_path, tiny_onnx):
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"not really a plan")
    with pytest.raises(FCNError, match=r"backend 'tensorrt' is not available here: tensorrt is not "
                                       r"installed \(pip install 'fcn-deploy\[tensorrt\]'"):
        open_runner(plan)
    with pytest.raises(FCNError, match="backend 'tensorrt' is not available here"):
        open_runner(tiny_onnx, backend="tensorrt")


def test_a_test_backend_can_be_registered_and_found(tmp_path):
    from fcn_deploy.runtime import registry

    class Echo(Runner):
        backend = "echo"

        def __init__(self, path, **options):
            super().__init__()
            self.path, self.options = path, options
            self.inputs = [TensorInfo("image", (None, 3, None, None), np.dtype(np.float32))]
            self.outputs = [TensorInfo("scores", (None, 3, None, None), np.dtype(np.float32))]

        def _infer(self, feeds, outputs):
            return {"scores": feeds["image"] * 2}

    spec = registry.BackendSpec("echo", (".onnx",), lambda: None, Echo)
    registry.register_backend(spec)
    try:
        with pytest.raises(ValueError, match="already registered"):
            registry.register_backend(spec)
        model = tmp_path / "m.onnx"
        model.write_bytes(b"")
        with open_runner(model, backend="echo", flavour=1) as runner:
            assert runner.options == {"flavour": 1}
            out = runner.infer({"image": np.ones((1, 3, 2, 2), np.float64)})
            assert out["scores"].dtype == np.float32 and np.all(out["scores"] == 2)
        assert "echo" in available_backends()
    finally:
        registry._REGISTRY.pop("echo")


# -- the runner contract ---------------------------------------------------------------------
def test_inputs_and_outputs_describe_the_graph(tiny_onnx):
    with open_runner(tiny_onnx) as runner:
        assert runner.backend == "onnxruntime"
        assert runner.providers == ["CPUExecutionProvider"]  # no onnxruntime-gpu/GPU here
        assert runner.meta.arch == "tiny_test_net" and runner.meta.num_classes == 4
        (image,) = runner.inputs
        assert image == TensorInfo("image", (None, 3, None, None), np.dtype(np.float32),
                                   ("batch", None, "height", "width"))
        assert image.describe() == "image float32 [batch, 3, height, width]"
        scores, labels = runner.outputs
        assert (scores.name, scores.shape, scores.dtype) == ("scores", (None, 4, None, None), np.float32)
        assert (labels.name, labels.shape, labels.dtype) == ("labels", (None, None, None), np.uint8)


def test_infer_matches_a_numpy_reference_and_fetches_only_what_is_asked(tiny_onnx):
    x = _x(n=2, h=17, w=23)
    with open_runner(tiny_onnx, intra_op_threads=1, graph_optimization_level="basic") as runner:
        out = runner.infer({"image": x})
        assert sorted(out) == ["labels", "scores"]
        ref = reference_scores(x)
        np.testing.assert_allclose(out["scores"], ref, rtol=1e-4, atol=1e-4)
        assert out["labels"].shape == (2, 17, 23) and out["labels"].dtype == np.uint8
        np.testing.assert_array_equal(out["labels"], out["scores"].argmax(axis=1))
        only = runner.infer({"image": x}, outputs=["labels"])
        assert list(only) == ["labels"]
        with pytest.raises(FCNError, match="no output named 'probs'; the network's outputs are "
                                           "scores float32"):
            runner.infer({"image": x}, outputs=["probs"])


def test_infer_refuses_bad_feeds_with_what_the_network_accepts(tiny_onnx, onnx_factory):
    with open_runner(tiny_onnx) as runner:
        with pytest.raises(FCNError, match=r"inputs \['input'\] do not match .*image float32 "
                                           r"\[batch, 3, height, width\]"):
            runner.infer({"input": _x()})
        with pytest.raises(FCNError, match=r"input 'image' has shape \(3, 20, 24\); the network "
                                           r"accepts image float32 \[batch, 3, height, width\]"):
            runner.infer({"image": _x()[0]})
        with pytest.raises(FCNError, match=r"has shape \(1, 4, 20, 24\)"):
            runner.infer({"image": np.zeros((1, 4, 20, 24), np.float32)})
        with pytest.raises(FCNError, match=r"input 'image' is empty \(shape \(1, 3, 0, 24\)\)"):
            runner.infer({"image": np.zeros((1, 3, 0, 24), np.float32)})
        with pytest.raises(FCNError, match="has dtype uint8; expected float32"):
            runner.infer({"image": np.zeros((1, 3, 4, 4), np.uint8)})
        # float64 is converted, not refused
        assert runner.infer({"image": _x().astype(np.float64)})["scores"].dtype == np.float32
    static = onnx_factory("static.onnx", static_shape=(1, 3, 16, 16))
    with open_runner(static) as runner:
        assert runner.inputs[0].shape == (1, 3, 16, 16)
        assert runner.batch_limit((5, 3, 16, 16)) == 1
        with pytest.raises(FCNError, match=r"shape \(1, 3, 20, 24\); the network accepts image "
                                           r"float32 \[1, 3, 16, 16\]"):
            runner.infer({"image": _x()})


def test_options_are_checked(tiny_onnx):
    with pytest.raises(FCNError, match="graph_optimization_level 'max' is not one of disable, basic"):
        open_runner(tiny_onnx, graph_optimization_level="max")
    with pytest.raises(FCNError, match="intra_op_threads must be an integer >= 0"):
        open_runner(tiny_onnx, intra_op_threads=-2)
    with pytest.raises(FCNError, match="device 'tpu' is not understood"):
        open_runner(tiny_onnx, device="tpu")
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(FCNError, match="device 'cuda' needs onnxruntime-gpu"):
            open_runner(tiny_onnx, device="cuda")
    with open_runner(tiny_onnx, device="cpu", providers=["CPUExecutionProvider"]) as runner:
        assert runner.providers == ["CPUExecutionProvider"]


def test_graph_without_metadata_is_refused(onnx_factory):
    bare = onnx_factory("bare.onnx", with_meta=False)
    with pytest.raises(FCNError, match="carries no fcn-deploy metadata"):
        open_runner(bare)


def test_closed_runner_refuses_work_and_concurrent_calls_agree(tiny_onnx):
    runner = open_runner(tiny_onnx, intra_op_threads=1)
    xs = [_x(seed=i) for i in range(4)]
    expected = [runner.infer({"image": x})["labels"] for x in xs]
    results: dict[int, np.ndarray] = {}

    def work(i):
        results[i] = runner.infer({"image": xs[i]})["labels"]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        np.testing.assert_array_equal(results[i], expected[i])
    runner.close()
    with pytest.raises(FCNError, match="runner for .* is closed"):
        runner.infer({"image": xs[0]})


def test_provider_choice():
    from fcn_deploy.engine.cuda import gpu_count
    from fcn_deploy.runtime.onnxruntime_backend import choose_providers

    cpu_only = ["AzureExecutionProvider", "CPUExecutionProvider"]
    gpu_build = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(None, cpu_only) == ["CPUExecutionProvider"]
    assert choose_providers("cpu", gpu_build) == ["CPUExecutionProvider"]
    assert choose_providers("cuda:1", gpu_build) == [("CUDAExecutionProvider", {"device_id": 1}),
                                                     "CPUExecutionProvider"]
    if gpu_count() == 0:  # onnxruntime-gpu without a GPU falls back to the CPU provider
        assert choose_providers(None, gpu_build) == ["CPUExecutionProvider"]
    with pytest.raises(FCNError, match="device 'cuda:0' needs onnxruntime-gpu"):
        choose_providers("cuda:0", cpu_only)


def test_session_config_entries_reach_the_session(tiny_onnx):
    config = {"session.force_spinning_stop": "1"}
    with open_runner(tiny_onnx, session_config=config) as runner:
        options = runner.session.get_session_options()
        assert options.get_session_config_entry("session.force_spinning_stop") == "1"
        assert set(runner.infer({"image": _x()})) == {o.name for o in runner.outputs}
    with open_runner(tiny_onnx) as runner:
        with pytest.raises(RuntimeError, match="does not have configuration"):
            runner.session.get_session_options().get_session_config_entry(
                "session.force_spinning_stop")


# -- int8 kernels: exact where the fast ones saturate -------------------------------------------
def _x64_entry(session_or_options):
    from fcn_deploy.cpu import X64_QUANT_PRECISION

    options = getattr(session_or_options, "get_session_options", lambda: session_or_options)()
    try:
        return options.get_session_config_entry(X64_QUANT_PRECISION)
    except RuntimeError:  # "does not have configuration": the entry is unset
        return None


def test_int8_kernels_follow_the_cpu_and_can_be_forced(tiny_onnx):
    """On a CPU reported as x86 without VNNI the session gets ONNX Runtime's exact U8U8 kernels
    (session.x64quantprecision=1); with VNNI it keeps the fast ones; both can be forced."""
    from fcn_deploy.cpu import CpuFeatures, assume_cpu

    no_vnni = CpuFeatures(machine="x86_64", flags=frozenset({"avx2", "fma"}))
    vnni = CpuFeatures(machine="x86_64", flags=frozenset({"avx2", "avx512_vnni"}))
    with assume_cpu(no_vnni):
        with open_runner(tiny_onnx) as runner:
            assert _x64_entry(runner.session) == "1"
            assert (runner.int8_kernels.choice, runner.int8_kernels.requested) == ("exact", "auto")
            assert runner.int8_kernels.describe() == "int8: exact U8U8 kernels (no VNNI)"
            assert set(runner.infer({"image": _x()})) == {o.name for o in runner.outputs}
        with open_runner(tiny_onnx, int8_kernels="fast") as runner:
            assert _x64_entry(runner.session) is None and runner.int8_kernels.saturating
    with assume_cpu(vnni):
        with open_runner(tiny_onnx) as runner:
            assert _x64_entry(runner.session) is None
            assert runner.int8_kernels.describe() == "int8: fast kernels (VNNI: avx512_vnni)"
        with open_runner(tiny_onnx, int8_kernels="exact",
                         session_config={"session.force_spinning_stop": "1"}) as runner:
            assert _x64_entry(runner.session) == "1"
            options = runner.session.get_session_options()
            assert options.get_session_config_entry("session.force_spinning_stop") == "1"


def test_every_project_session_gets_the_int8_choice(tiny_onnx):
    """The sessions opened outside the runner (benchmark pipeline, quantization speed/ops,
    export verification) all build their options through session_options, so they follow the
    CPU too."""
    from fcn_deploy.bench.pipeline import make_ort_session
    from fcn_deploy.cpu import CpuFeatures, assume_cpu
    from fcn_deploy.quantize.speed import cpu_session
    from fcn_deploy.runtime.onnxruntime_backend import session_options

    with assume_cpu(CpuFeatures(machine="x86_64", flags=frozenset({"avx2"}))):
        assert _x64_entry(session_options()) == "1"
        assert _x64_entry(make_ort_session(tiny_onnx, threads=1)) == "1"
        assert _x64_entry(cpu_session(tiny_onnx, threads=1)) == "1"
        assert _x64_entry(session_options(int8_kernels="fast")) is None
    with assume_cpu(CpuFeatures(machine="aarch64", flags=frozenset({"asimddp"}))):
        assert _x64_entry(session_options()) is None


def test_session_options_and_the_thread_cap_live_on_the_ground_floor():
    """fcn_deploy.ortsession holds them (export and quantize use them without the runtime); the
    runtime's old names are the same functions."""
    from fcn_deploy import ortsession
    from fcn_deploy.runtime import onnxruntime_backend, registry

    assert onnxruntime_backend.session_options is ortsession.session_options
    assert registry.cap_threads is ortsession.cap_threads
    assert registry.available_cores is ortsession.available_cores
    assert ortsession.session_options(intra_op_threads=1).intra_op_num_threads == 1
    with pytest.raises(FCNError, match=r"intra_op_threads must be an integer >= 0 .* got -1"):
        ortsession.session_options(intra_op_threads=-1)


def test_the_runner_turns_the_memory_pattern_off_for_changing_shapes(tiny_onnx):
    """The runner takes images of any size and tiles of one size per image: ONNX Runtime's memory
    pattern (one block per input shape, cached per shape) raises the peak memory tiling exists
    to bound, so the runner's session has it off; fixed-shape sessions (benchmarks, export
    checks) keep ONNX Runtime's default (on)."""
    from fcn_deploy import ortsession

    assert ortsession.session_options().enable_mem_pattern is True
    assert ortsession.session_options(dynamic_shapes=True).enable_mem_pattern is False
    with open_runner(tiny_onnx) as runner:
        assert runner.session.get_session_options().enable_mem_pattern is False
        # still computes the same on shapes that change from call to call
        for h, w in ((20, 24), (37, 41), (20, 24)):
            x = _x(h=h, w=w)
            np.testing.assert_allclose(runner.infer({"image": x})["scores"],
                                       reference_scores(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("options,message", [
    # A config file gives strings: refused by name, not a TypeError from inside ONNX Runtime.
    (dict(intra_op_threads="2"), r"intra_op_threads must be an integer >= 0 \(0 = ONNX "
                                 r"Runtime's default\), got '2' \(str\)"),
    (dict(intra_op_threads=2.5), r"intra_op_threads must be an integer >= 0 .* got 2\.5 "
                                 r"\(float\)"),
    (dict(intra_op_threads=True), r"intra_op_threads must be an integer >= 0 .* got True \(bool\)"),
    (dict(intra_op_threads=-1), r"intra_op_threads must be an integer >= 0 .* got -1$"),
    # Options the backend does not have: named, with the ones it has.
    (dict(inter_op_threads=2), r"backend 'onnxruntime' has no option 'inter_op_threads'; its "
                               r"options are device, providers, intra_op_threads, "
                               r"graph_optimization_level, session_config, int8_kernels"),
    (dict(device_id=0), r"backend 'onnxruntime' has no option 'device_id'"),
])
def test_segmenter_open_refuses_bad_options_by_name(tiny_onnx, options, message):
    from fcn_deploy.runtime import Segmenter

    with pytest.raises(FCNError, match=message):
        Segmenter.open(tiny_onnx, **options)


@pytest.mark.skipif(importlib.util.find_spec("tritonclient") is None, reason="no tritonclient")
@pytest.mark.parametrize("timeout", ["30", 0, float("nan")])
def test_triton_timeout_must_be_a_positive_number(timeout):
    from fcn_deploy.runtime import Segmenter

    # Refused before any connection is tried (port 9 is closed: no server is needed).
    with pytest.raises(FCNError, match=rf"timeout_s must be a number > 0, got {timeout!r}"):
        Segmenter.open("triton://127.0.0.1:9/m", timeout_s=timeout)


def test_int8_kernel_errors(tiny_onnx):
    with pytest.raises(FCNError, match="int8 kernels 'turbo' is not one of auto, fast, exact"):
        open_runner(tiny_onnx, int8_kernels="turbo")
    with pytest.raises(FCNError, match="not the session config entry session.x64quantprecision"):
        open_runner(tiny_onnx, session_config={"session.x64quantprecision": "0"})


def test_int8_kernel_option_maps_only_to_backends_with_a_choice():
    from fcn_deploy.runtime.registry import int8_kernel_options

    assert int8_kernel_options("onnxruntime", "exact") == {"int8_kernels": "exact"}
    assert int8_kernel_options("onnxruntime", None) == {}
    assert int8_kernel_options("torch", "fast") == {} == int8_kernel_options("tensorrt", "exact")
