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

from .conftest import CALIB_SEED, DATA_KW, EVAL_SEED


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


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
        rms = np.sqrt(np.mean((got - want) ** 2)) / np.sqrt(np.mean(want ** 2))
        assert rms < 0.05, rms


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
