"""quantize_onnx end to end on tiny graphs: TensorRT rules, dynamic sizes, metadata, accuracy,
layers kept in float, and the bad inputs (not FP32, no metadata, interrupted calibration)."""
from __future__ import annotations

import json
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from fcn_deploy.errors import FCNError
from fcn_deploy.meta import read_onnx_meta
from fcn_deploy.quantize import (METHODS, MissingMetadataWarning, QuantizeConfig,
                                 check_trt_qdq, find_layer_kinds, quantize_onnx)

from fcn_deploy.quantize.speed import optimized_op_counts, relative_rms

from .conftest import CALIB_SEED, DATA_KW, EVAL_SEED


def _session(path, *, level=None):
    """A CPU session whose INT8 results do not depend on the CPU: exact U8U8 integer kernels
    (ONNX Runtime's default U8S8 kernels saturate on x86 without VNNI; measured there: relative
    RMS 0.195 vs FP32 on the test below instead of < 0.05), or with ``level="disable"`` no
    integer kernels at all (the Q/DQ graph evaluated in float: the reference)."""
    from fcn_deploy.runtime.onnxruntime_backend import session_options

    options = session_options(graph_optimization_level=level, int8_kernels="exact")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _dq_inputs(model):
    """Names of the weights (initializers) that reach an op through a DequantizeLinear."""
    return {n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"
            and n.input[0] in {t.name for t in model.graph.initializer}}


@pytest.mark.parametrize("method", METHODS)
def test_each_method_gives_a_trt_valid_graph_that_runs_at_any_size(tiny_onnx, tmp_path,
                                                                   calib_images, method):
    out = tmp_path / f"int8_{method}.onnx"
    result = quantize_onnx(tiny_onnx, out, calib_images,
                           config=QuantizeConfig(method=method, progress=False))
    assert check_trt_qdq(out) == []
    # the four calibration images had four different sizes, each fed at its own size
    assert result.image_sizes == [(33, 41), (48, 48), (61, 37), (40, 70)]
    model = onnx.load(str(out))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "height", "width"]
    sess, ref = _session(out), _session(tiny_onnx)
    rng = np.random.default_rng(0)
    for shape in [(1, 3, 29, 53), (2, 3, 64, 40)]:
        # inputs like the calibration images: uint8 pixels minus the mean
        x = (rng.integers(0, 256, shape) - 117.0).astype(np.float32)
        got, want = sess.run(None, {"image": x})[0], ref.run(None, {"image": x})[0]
        assert got.shape == want.shape == (shape[0], 4, shape[2], shape[3])
        # INT8 noise, not a different function: small error relative to the scores' size
        assert relative_rms(got, want) < 0.05, relative_rms(got, want)


def test_runtime_integer_kernels_compute_the_qdq_graphs_function(tiny_onnx, tmp_path,
                                                                 calib_images):
    """What ONNX Runtime's integer kernels compute is the Q/DQ graph's own function, on any CPU:
    the runtime's default session (exact U8U8 kernels where the fast ones saturate, x86 without
    VNNI) and a session forced to exact kernels both equal the graph evaluated in float without
    integer kernels, up to requantization rounding (a float multiplier instead of float
    arithmetic moves some values across a rounding boundary by one step, and the next layers
    carry that on). The bound is half of what INT8 itself costs against FP32: measured 0.13 of
    it with exact kernels (AMD EPYC, AVX-512 VNNI); saturating kernels (x86 without VNNI) put
    this net 0.195 away from FP32, over 10 times the INT8 noise."""
    from fcn_deploy.runtime import open_runner

    out = tmp_path / "int8.onnx"
    quantize_onnx(tiny_onnx, out, calib_images, config=QuantizeConfig(progress=False))
    assert optimized_op_counts(out)["QLinearConv"] == 4  # the integer kernels do run
    x = (np.random.default_rng(1).integers(0, 256, (2, 3, 61, 47)) - 117.0).astype(np.float32)
    reference = _session(out, level="disable").run(None, {"image": x})[0]
    exact = _session(out).run(None, {"image": x})[0]
    with open_runner(out) as runner:
        default = runner.infer({"image": x})["scores"]
    fp32 = _session(tiny_onnx).run(None, {"image": x})[0]
    noise = relative_rms(reference, fp32)  # what INT8 costs: the scale of the comparison
    assert 0.001 < noise < 0.05, noise
    for got in (exact, default):
        assert relative_rms(got, reference) < 0.5 * noise, (relative_rms(got, reference), noise)


def _qlinearconv_weight_types(path, tmp_path, **kernels):
    """ONNX element types of the weights of the QLinearConvs ONNX Runtime runs for ``path``."""
    from fcn_deploy.quantize.speed import cpu_session

    optimized = tmp_path / f"optimized_{len(list(tmp_path.iterdir()))}.onnx"
    cpu_session(path, threads=1, optimized_path=optimized, opt_level="extended", **kernels)
    model = onnx.load(str(optimized))
    types = {t.name: t.data_type for t in model.graph.initializer}
    return {types[n.input[3]] for n in model.graph.node if n.op_type == "QLinearConv"}


def test_exact_kernels_reach_onnx_runtime(tiny_onnx, tmp_path, calib_images):
    """int8_kernels="exact", and the default on a CPU reported as lacking VNNI, make ONNX Runtime
    convert the int8 conv weights to uint8 (its U8U8 kernels); "fast" keeps them int8. Where the
    fast kernels are exact (VNNI, or not x86) their results equal the U8U8 kernels' bit for bit."""
    from fcn_deploy.cpu import CpuFeatures, assume_cpu, cpu_features
    from fcn_deploy.quantize.speed import cpu_session

    cpu = cpu_features()
    if not cpu.is_x86 or "avx2" not in cpu.flags:
        pytest.skip("session.x64quantprecision acts only on x86 CPUs with AVX2 or later")
    out = tmp_path / "int8.onnx"
    quantize_onnx(tiny_onnx, out, calib_images, config=QuantizeConfig(progress=False))
    work = tmp_path / "opt"
    work.mkdir()
    u8, s8 = onnx.TensorProto.UINT8, onnx.TensorProto.INT8
    assert _qlinearconv_weight_types(out, work, int8_kernels="exact") == {u8}
    assert _qlinearconv_weight_types(out, work, int8_kernels="fast") == {s8}
    with assume_cpu(CpuFeatures(machine="x86_64", flags=frozenset({"avx2", "fma"}))):
        assert _qlinearconv_weight_types(out, work) == {u8}
    with assume_cpu(CpuFeatures(machine="x86_64", flags=frozenset({"avx2", "avx512_vnni"}))):
        assert _qlinearconv_weight_types(out, work) == {s8}
    if not cpu.int8_saturates:
        x = (np.random.default_rng(2).integers(0, 256, (1, 3, 45, 38)) - 117.0).astype(np.float32)
        fast, exact = (cpu_session(out, threads=1, int8_kernels=k).run(None, {"image": x})[0]
                       for k in ("fast", "exact"))
        np.testing.assert_array_equal(fast, exact)


def test_each_layer_gets_its_own_weights_so_exact_kernels_load_every_layout(tiny_onnx, tmp_path,
                                                                           calib_images):
    """TinyFCN's two upsampling layers share one kernel in the FP32 graph (the exporter reads one
    through an Identity of the other); quantized, each gets its own int8 copy. A shared one made ONNX Runtime's exact U8U8 mode (the default on x86
    without VNNI) refuse the graph; such an older graph now fails with what to do."""
    from fcn_deploy.cpu import cpu_features
    from fcn_deploy.runtime import open_runner

    out = tmp_path / "all_int8.onnx"
    quantize_onnx(tiny_onnx, out, calib_images,
                  config=QuantizeConfig(exclude_kinds=(), progress=False))
    model = onnx.load(str(out))
    consumers = {}
    for n in model.graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    weights = [n for n in model.graph.node if n.op_type == "DequantizeLinear"
               and n.input[0] in {t.name for t in model.graph.initializer}]
    assert len(weights) == 8 and all(len(consumers[n.output[0]]) == 1 for n in weights)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    up_w = [inits[n.input[0]] for n in weights
            if consumers[n.output[0]][0].op_type == "ConvTranspose"]
    assert len(up_w) == 2 and np.array_equal(up_w[0], up_w[1])  # two copies of one kernel
    x = np.zeros((1, 3, 29, 31), np.float32)
    with open_runner(out, int8_kernels="exact") as runner:
        assert runner.infer({"image": x})["scores"].shape == (1, 4, 29, 31)

    # an older graph: both upsampling layers read one DequantizeLinear
    first, second = (n for n in model.graph.node if n.op_type == "ConvTranspose")
    second.input[1] = first.input[1]
    onnx.save(model, str(tmp_path / "tied.onnx"))
    cpu = cpu_features()
    if cpu.is_x86 and "avx2" in cpu.flags:  # where ONNX Runtime's exact mode acts
        with pytest.raises(FCNError, match=r"cannot load a graph whose layers share a quantized "
                                           r"weight: quantize the FP32 graph again"):
            open_runner(tmp_path / "tied.onnx", int8_kernels="exact")
    with open_runner(tmp_path / "tied.onnx", int8_kernels="fast") as runner:
        assert runner.infer({"image": x})["scores"].shape == (1, 4, 29, 31)


def test_default_layout_per_channel_conv_float_score_and_upsampling(tiny_onnx, tmp_path,
                                                                    calib_images):
    out = tmp_path / "int8.onnx"
    result = quantize_onnx(tiny_onnx, out, calib_images, config=QuantizeConfig(progress=False))
    model = onnx.load(str(out))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    by_name = {n.name: n for n in model.graph.node}
    convs = {n.input[1]: by_name[n.name] for n in onnx.load(str(tiny_onnx)).graph.node
             if n.op_type in ("Conv", "ConvTranspose")}  # by the FP32 graph's weight names
    backbone = ["conv1.weight", "conv2.weight", "conv3.weight", "conv4.weight"]
    assert sorted(result.quantized_nodes) == sorted(convs[w].name for w in backbone)
    for w_name in backbone:
        conv = convs[w_name]
        dq = producer[conv.input[1]]
        assert dq.op_type == "DequantizeLinear"
        scale, zp, w = inits[dq.input[1]], inits[dq.input[2]], inits[dq.input[0]]
        assert w.dtype == np.int8 and zp.dtype == np.int8 and not zp.any()
        assert scale.shape == (w.shape[0],)  # per output channel
        assert conv.input[2] in inits and inits[conv.input[2]].dtype == np.float32  # float bias
        assert producer[conv.input[0]].op_type == "DequantizeLinear"
    # score layers and upsampling stay float and read float tensors (no Q/DQ in front of them)
    floats = ["score_fr.weight", "score_pool1.weight", "upscore2.weight", "upscore.weight"]
    assert sorted(result.excluded_nodes) == sorted(convs[w].name for w in floats)
    for node in model.graph.node:
        if node.name in result.excluded_nodes:
            assert inits[node.input[1]].dtype == np.float32
            src = producer.get(node.input[0])
            assert src is None or src.op_type not in ("DequantizeLinear", "QuantizeLinear")


def test_quantized_upsampling_uses_per_tensor_weights(tiny_onnx, tmp_path, calib_images):
    out = tmp_path / "all.onnx"
    result = quantize_onnx(tiny_onnx, out, calib_images,
                           config=QuantizeConfig(exclude_kinds=(), progress=False))
    assert result.excluded_nodes == []
    assert check_trt_qdq(out) == []
    model = onnx.load(str(out))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    ups = [n for n in model.graph.node if n.op_type == "ConvTranspose"]
    for up in ups:
        dq = producer[up.input[1]]
        assert dq.op_type == "DequantizeLinear" and inits[dq.input[1]].shape == ()
        w = inits[dq.input[0]]
        # bilinear k4 taps 0.0625/0.1875/0.5625: 0.5625 -> 127, others in proportion
        assert w.max() == 127 and sorted(np.unique(w[w > 0]).tolist()) == [14, 42, 127]


def test_metadata_carried_over_with_calibration_settings(tiny_onnx, tmp_path, calib_images):
    out = tmp_path / "int8.onnx"
    quantize_onnx(tiny_onnx, out, calib_images,
                  config=QuantizeConfig(method="percentile", percentile=99.9, progress=False,
                                        exclude_kinds=("first_conv",), exclude_names=["score_*"]))
    src, meta = read_onnx_meta(tiny_onnx), read_onnx_meta(out)
    assert meta.precision == "int8" and src.precision == "fp32"
    assert (meta.arch, meta.num_classes, meta.mean, meta.class_names) == \
        (src.arch, src.num_classes, src.mean, src.class_names)
    calib = meta.extra["calibration"]
    kinds = find_layer_kinds(onnx.load(str(tiny_onnx)))
    assert calib["method"] == "percentile" and calib["percentile"] == 99.9
    assert calib["num_images"] == 4 and calib["skipped_images"] == 0
    assert calib["excluded_kinds"] == ["first_conv"] and calib["excluded_names"] == ["score_*"]
    assert calib["excluded_nodes"] == kinds["first_conv"] + kinds["score"]
    assert calib["quantized_layers"] == 5  # conv2..4 and both upsampling layers
    assert calib["image_sizes"] == {"min_hw": [33, 37], "max_hw": [61, 70]}
    json.dumps(meta.to_dict())


def test_layer_kinds_and_names(tiny_onnx, tmp_path, calib_images):
    model = onnx.load(str(tiny_onnx))
    kinds = find_layer_kinds(model)
    by_weight = {n.name: n.input[1] for n in model.graph.node if len(n.input) > 1}
    assert [by_weight[n] for n in kinds["first_conv"]] == ["conv1.weight"]
    assert sorted(by_weight[n] for n in kinds["score"]) == ["score_fr.weight", "score_pool1.weight"]
    assert sorted(by_weight[n] for n in kinds["upsample"]) == ["upscore.weight", "upscore2.weight"]
    out = tmp_path / "x.onnx"
    result = quantize_onnx(tiny_onnx, out, calib_images,
                           config=QuantizeConfig(exclude_kinds=(), exclude_names=["conv3"],
                                                 progress=False))
    conv3 = [n for n, w in by_weight.items() if w == "conv3.weight"]
    assert result.excluded_nodes == conv3
    assert "conv3.weight" in {t.name for t in onnx.load(str(out)).graph.initializer}
    assert "conv3.weight" not in _dq_inputs(onnx.load(str(out)))
    with pytest.raises(FCNError, match=r"--exclude 'conv9' matches no node; expected a node name"):
        quantize_onnx(tiny_onnx, out, calib_images,
                      config=QuantizeConfig(exclude_names=["conv9"], progress=False))
    with pytest.raises(FCNError, match=r"unknown layer kind\(s\) pool to keep in float; expected any of first_conv"):
        QuantizeConfig(exclude_kinds=["pool"])
    with pytest.raises(FCNError, match="calibration method 'kl' is unknown"):
        QuantizeConfig(method="kl")


def test_calibration_from_folder_with_a_broken_file(tiny_onnx, tmp_path):
    import cv2

    folder = tmp_path / "calib"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i, (h, w) in enumerate([(30, 50), (45, 32)]):
        cv2.imwrite(str(folder / f"{i}.jpg"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    (folder / "bad.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "int8.onnx"
    with pytest.warns(UserWarning, match=r"skipped 1 of 3 calibration images.*bad\.png"):
        result = quantize_onnx(tiny_onnx, out, folder,
                               config=QuantizeConfig(method="entropy", progress=False))
    assert result.num_images == 2 and len(result.skipped_images) == 1
    assert read_onnx_meta(out).extra["calibration"]["skipped_images"] == 1


def test_trained_model_keeps_its_accuracy(trained_tiny, tmp_path):
    """Default settings on a trained model: the INT8 graph agrees with FP32 on nearly every
    pixel and changes mean IU by less than 1 point. Measured (training seeds 2, 3, 4): FP32
    mean IU 91.2 / 85.3 / 88.9 %, change -0.12 / -0.00 / -0.10 points, agreement 99.91 / 99.85
    / 99.90 %."""
    from fcn_deploy.datasets import SyntheticShapes
    from fcn_deploy.evaluate import compare_models

    calib = SyntheticShapes(num_images=16, seed=CALIB_SEED, **DATA_KW)
    out = tmp_path / "trained_int8.onnx"
    quantize_onnx(trained_tiny, out, calib, config=QuantizeConfig(progress=False))
    assert check_trt_qdq(out) == []
    data = SyntheticShapes(num_images=24, seed=EVAL_SEED, **DATA_KW)
    report = compare_models([trained_tiny, out], data, progress=False)
    fp32, int8 = report.results
    assert fp32.metrics.mean_iu > 0.6  # the model did learn something
    assert int8.agreement > 0.99
    assert abs(int8.metrics.mean_iu - fp32.metrics.mean_iu) < 0.01


def test_refuses_quantized_and_fp16_graphs(tiny_onnx, tmp_path, calib_images):
    out = tmp_path / "int8.onnx"
    quantize_onnx(tiny_onnx, out, calib_images, config=QuantizeConfig(progress=False))
    with pytest.raises(FCNError, match=r"int8\.onnx is already quantized \(it has "
                                       r"DequantizeLinear, QuantizeLinear nodes\)"):
        quantize_onnx(out, tmp_path / "again.onnx", calib_images)
    from onnxconverter_common import float16

    half = float16.convert_float_to_float16(onnx.load(str(tiny_onnx)), keep_io_types=True)
    onnx.save(half, str(tmp_path / "fp16.onnx"))
    with pytest.raises(FCNError, match=r"fp16\.onnx is an FP16 graph .*expected the FP32 export"):
        quantize_onnx(tmp_path / "fp16.onnx", tmp_path / "h.onnx", calib_images)
    with pytest.raises(FCNError, match=r"output .*tiny_fp32.onnx is also the FP32 model .*tiny_fp32.onnx: writing it would destroy that input"):
        quantize_onnx(tiny_onnx, tiny_onnx, calib_images)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(FCNError, match=r"junk\.onnx is not a readable ONNX file"):
        quantize_onnx(tmp_path / "junk.onnx", tmp_path / "j.onnx", calib_images)
    with pytest.raises(FCNError, match=r"ONNX file .*missing\.onnx does not exist"):
        quantize_onnx(tmp_path / "missing.onnx", tmp_path / "j.onnx", calib_images)


def test_graph_without_metadata_uses_stated_defaults(tiny_onnx, tmp_path, calib_images):
    model = onnx.load(str(tiny_onnx))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    with pytest.warns(MissingMetadataWarning, match=r"bare\.onnx has no fcn-deploy metadata; "
                                                    r"using defaults: 4 classes \(from the graph\)"
                                                    r", mean \[104\.00698793"):
        quantize_onnx(bare, tmp_path / "out.onnx", calib_images,
                      config=QuantizeConfig(progress=False))
    meta = read_onnx_meta(tmp_path / "out.onnx")
    assert meta.num_classes == 4 and meta.precision == "int8" and meta.arch == "unknown"


def test_empty_and_unreadable_calibration_sets(tiny_onnx, tmp_path):
    with pytest.raises(FCNError, match="the calibration dataset is empty; expected at least one"):
        quantize_onnx(tiny_onnx, tmp_path / "o.onnx", [])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"nope")
    with pytest.raises(FCNError, match=r"none of the 1 images .* could be read"):
        quantize_onnx(tiny_onnx, tmp_path / "o.onnx", tmp_path / "bad")
    assert not (tmp_path / "o.onnx").exists()


def test_interrupted_calibration_leaves_no_file_and_keeps_the_old_one(tiny_onnx, tmp_path,
                                                                      calib_images):
    from fcn_deploy.quantize import CalibrationReader

    class Interrupting(CalibrationReader):
        def get_next(self):
            if self._pos == 2:
                raise KeyboardInterrupt
            return super().get_next()

    out = tmp_path / "int8.onnx"
    out.write_bytes(b"previous")
    reader = Interrupting(calib_images, mean=[0, 0, 0], progress=False)
    with pytest.raises(KeyboardInterrupt):
        quantize_onnx(tiny_onnx, out, reader)
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int8.onnx"]
    out.unlink()
    with pytest.raises(KeyboardInterrupt):
        quantize_onnx(tiny_onnx, out, Interrupting(calib_images, mean=[0, 0, 0],
                                                   progress=False))
    assert list(tmp_path.iterdir()) == []


def test_exported_fcn8s_graph(tmp_path_factory, calib_images):
    """The toolkit's own FCN-8s export (depthwise upsampling, folded crops, label head)."""
    from fcn_deploy.export import export_model
    from fcn_deploy.models import create_model

    folder = tmp_path_factory.mktemp("fcn8s")
    model = create_model("fcn8s_vgg16", num_classes=4, width=1 / 16).eval()
    fp32 = folder / "fcn8s.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_model(model, None, fp32, outputs="both", sample_shape=(1, 3, 48, 48),
                     verify=False)
    kinds = find_layer_kinds(onnx.load(str(fp32)))
    assert [len(kinds[k]) for k in ("first_conv", "score", "upsample")] == [1, 3, 3]
    out = folder / "fcn8s_int8.onnx"
    result = quantize_onnx(fp32, out, calib_images, config=QuantizeConfig(progress=False))
    assert len(result.quantized_nodes) == 15 and check_trt_qdq(out) == []  # the backbone
    sess = _session(out)
    scores, labels = sess.run(["scores", "labels"],
                              {"image": np.zeros((1, 3, 45, 67), np.float32)})
    assert scores.shape == (1, 4, 45, 67) and labels.shape == (1, 45, 67)
    assert labels.dtype == np.uint8
