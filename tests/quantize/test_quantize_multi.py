"""INT8 for multi-head (SIFT Flow) and multi-input (NYUDv2) nets: the calibration reader feeds
every input, the Q/DQ graph keeps the inputs/outputs and TensorRT's rules, and every head of the
INT8 graph computes the Q/DQ graph's function (exact kernels against the graph evaluated in float,
which does not depend on the CPU)."""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from fcn_deploy.datasets import SyntheticRGBD, SyntheticTwoHead
from fcn_deploy.errors import FCNError
from fcn_deploy.meta import ModelMeta, read_onnx_meta
from fcn_deploy.onnxgraph import interface_problems
from fcn_deploy.preprocess import preprocess_input
from fcn_deploy.quantize import (CalibrationReader, QuantizeConfig, check_trt_qdq,
                                 find_layer_kinds, open_calibration_source, quantize_onnx)
from fcn_deploy.quantize.speed import relative_rms

from .conftest import CALIB_SEED, DATA_KW, EVAL_SEED

torch = pytest.importorskip("torch")
SMALL = dict(DATA_KW, min_size=40, max_size=56)


def _meta(model) -> ModelMeta:
    return ModelMeta.default(model.arch, model.num_classes, arch_kwargs=dict(model.arch_kwargs),
                             **model.io_description())


def _fp32(name: str, folder, outputs: str = "scores"):
    """A tiny registry net with random score layers, exported with its metadata."""
    from fcn_deploy.export import export_model
    from fcn_deploy.models import create_model

    torch.manual_seed(0)
    model = create_model(name, num_classes=4, width=1 / 16).eval()
    with torch.no_grad():  # score layers start at zero: random ones make scores to compare
        for layer in model.score_layers:
            model.get_submodule(layer).weight.normal_(0.0, 0.05)
    path = folder / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_model(model, _meta(model), path, outputs=outputs, sample_shape=(1, 3, 48, 48),
                     verify=False)
    return path, _meta(model)


def _feeds(meta: ModelMeta, data) -> dict:
    """Every input of a held-out sample, preprocessed (what the net was calibrated for)."""
    reader = CalibrationReader(data, inputs=meta.input_specs(), progress=False)
    return reader.get_next()


def _session(path, *, level=None):
    """Exact U8U8 integer kernels, or (level "disable") the Q/DQ graph evaluated in float."""
    from fcn_deploy.ortsession import session_options

    options = session_options(graph_optimization_level=level, int8_kernels="exact")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _check_int8_computes_its_qdq_graph(fp32, int8, feeds, outputs):
    """Per output: the integer kernels (exact U8U8, as on a CPU without VNNI) compute the Q/DQ
    graph evaluated in float, up to requantization rounding (bounded as in test_quantize.py by
    half of what INT8 costs against FP32, and by 5% of the scores; measured 1e-6 here), with
    the same label maps; and the graph really is quantized (it differs from FP32)."""
    want = dict(zip(outputs, _session(fp32).run(outputs, feeds)))
    reference = dict(zip(outputs, _session(int8, level="disable").run(outputs, feeds)))
    exact = dict(zip(outputs, _session(int8).run(outputs, feeds)))
    for name in outputs:
        # random weights at 1/16 width (4-channel layers): INT8 costs far more than on a trained
        # net (measured 0.22-0.54 relative RMS here), yet stays correlated with FP32
        noise = relative_rms(reference[name], want[name])
        assert 1e-4 < noise < 1.0, (name, noise)
        assert relative_rms(exact[name], reference[name]) < min(0.5 * noise, 0.05), name
        agree = np.mean(exact[name].argmax(axis=1) == reference[name].argmax(axis=1))
        assert agree > 0.99, (name, agree)


def test_two_head_net_quantizes_with_both_heads_kept(tmp_path):
    fp32, meta = _fp32("siftflow_fcn16s", tmp_path, outputs="both")
    kinds = find_layer_kinds(onnx.load(str(fp32)), num_classes=[4, 3])
    assert len(kinds["score"]) == 4  # score_fr and score_pool4 of each head (4 and 3 classes)
    calib = SyntheticTwoHead(num_images=4, seed=CALIB_SEED, **SMALL)
    out = tmp_path / "int8.onnx"
    result = quantize_onnx(fp32, out, calib, config=QuantizeConfig(progress=False))
    assert sorted(result.excluded_nodes) == sorted(kinds["score"] + kinds["upsample"])
    assert len(result.quantized_nodes) == 15  # the shared VGG16 trunk
    qmodel = onnx.load(str(out))
    back = read_onnx_meta(out)
    assert back.precision == "int8" and back.heads == meta.heads
    assert interface_problems(qmodel, back) == []  # scores_sem, scores_geo, labels_sem, labels_geo
    assert check_trt_qdq(qmodel) == []
    feeds = _feeds(meta, SyntheticTwoHead(num_images=2, seed=EVAL_SEED, **SMALL))
    _check_int8_computes_its_qdq_graph(fp32, out, feeds, ["scores_sem", "scores_geo"])
    labels = _session(out).run(["labels_sem", "labels_geo"], feeds)
    h, w = feeds["image"].shape[2:]
    assert [lab.shape for lab in labels] == [(1, h, w)] * 2 and int(labels[1].max()) < 3


def test_two_input_net_is_calibrated_on_both_inputs(tmp_path):
    fp32, meta = _fp32("nyud_fcn16s_color_hha", tmp_path)
    calib = SyntheticRGBD(num_images=3, seed=CALIB_SEED, **SMALL)
    reader = CalibrationReader(calib, inputs=meta.input_specs(), progress=False)
    feed = reader.get_next()
    specs = {s.name: s for s in meta.input_specs()}
    np.testing.assert_array_equal(feed["image"][0],
                                  preprocess_input(specs["image"], calib[0].image))
    np.testing.assert_array_equal(feed["hha"][0],
                                  preprocess_input(specs["hha"], calib[0].inputs["hha"]))
    out = tmp_path / "int8.onnx"
    result = quantize_onnx(fp32, out, calib, config=QuantizeConfig(
        exclude_kinds=("first_conv", "score", "upsample"), progress=False))
    # one first conv per stream (each reads its own input), kept in float; the other 2 x 14
    # trunk convs in INT8
    graph = onnx.load(str(fp32))
    first = find_layer_kinds(graph)["first_conv"]
    readers = {n.name: n.input[0] for n in graph.graph.node}
    assert sorted(readers[n] for n in first) == ["hha", "image"]
    assert set(first) <= set(result.excluded_nodes) and len(result.quantized_nodes) == 28
    assert result.image_sizes == [tuple(calib[i].image.shape[:2]) for i in range(3)]
    qmodel = onnx.load(str(out))
    assert interface_problems(qmodel, read_onnx_meta(out)) == [] and check_trt_qdq(qmodel) == []
    feeds = _feeds(meta, SyntheticRGBD(num_images=1, seed=EVAL_SEED, **SMALL))
    _check_int8_computes_its_qdq_graph(fp32, out, feeds, ["scores"])
    # the speed table's score comparison feeds both inputs too: by hand on the same sample
    from fcn_deploy.quantize.speed import int8_score_errors

    errors = int8_score_errors(fp32, out, SyntheticRGBD(num_images=1, seed=EVAL_SEED, **SMALL))
    want = _session(fp32).run(["scores"], feeds)[0]
    reference = _session(out, level="disable").run(["scores"], feeds)[0]
    assert errors["reference"] == pytest.approx(relative_rms(reference, want), rel=1e-3)
    assert abs(errors["int8 exact"] - errors["reference"]) < 0.5 * errors["reference"]


def test_reader_feeds_an_hha_only_net_its_hha_and_depth_as_log_depth():
    from fcn_deploy.models import create_model

    data = SyntheticRGBD(num_images=2, seed=3, **SMALL)
    hha_only = _meta(create_model("nyud_fcn32s_hha", num_classes=4, width=1 / 16))
    feed = CalibrationReader(data, inputs=hha_only.input_specs(), progress=False).get_next()
    assert list(feed) == ["hha"]  # the HHA image, not the colour image
    np.testing.assert_array_equal(
        feed["hha"][0], preprocess_input(hha_only.input_specs()[0], data[0].inputs["hha"]))
    color_d = _meta(create_model("nyud_fcn32s_color_d", num_classes=4, width=1 / 16))
    feed = CalibrationReader(data, inputs=color_d.input_specs(), progress=False).get_next()
    assert {k: v.shape[1] for k, v in feed.items()} == {"image": 3, "depth": 1}
    mean = color_d.input_specs()[1].mean[0]
    np.testing.assert_allclose(feed["depth"][0, 0], np.log(data[0].inputs["depth"]) - mean,
                               rtol=1e-6)


def test_sources_without_the_other_inputs_are_refused(tmp_path):
    import cv2

    from fcn_deploy.models import create_model

    specs = _meta(create_model("nyud_fcn32s_color_hha", num_classes=4, width=1 / 16)).input_specs()
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(FCNError, match=r"calibration folder .* holds plain images, but the network "
                                       r"takes the inputs image, hha; calibrate it on a dataset"):
        open_calibration_source(tmp_path, inputs=specs, progress=False)
    images = [np.zeros((8, 8, 3), np.uint8)]
    with pytest.raises(FCNError, match=r"none of the 1 images .* \(first: item 0 has no 'hha' "
                                       r"input; the network takes image, hha"):
        CalibrationReader(images, inputs=specs, progress=False)
