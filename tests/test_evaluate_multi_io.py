"""fcn-eval on multi-input and multi-head nets: every input fed from the dataset, every head
scored, the numbers checked against confusion matrices computed here straight from ONNX Runtime
(with the preprocessing written out by hand)."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from fcn_deploy.constants import NYUD_HHA_MEAN, NYUD_LOG_DEPTH_MEAN
from fcn_deploy.datasets import SyntheticRGBD, SyntheticShapes, SyntheticTwoHead
from fcn_deploy.errors import FCNError
from fcn_deploy.evaluate import compare_models, evaluate
from fcn_deploy.meta import ModelMeta, write_onnx_meta
from fcn_deploy.metrics import ConfusionMatrix

C = 4
DATA = dict(num_images=4, seed=5, num_classes=C, min_size=32, max_size=48)
MEAN = [104.0, 117.0, 123.0]
CHANNELS = {"image": 3, "hha": 3, "depth": 1}


def _graph(path, *, inputs=("image",), heads=(("score", C),), seed=0):
    """Inputs concatenated -> 3x3 conv -> relu -> one 1x1 conv per head: a per-pixel classifier
    with one ``scores`` output per head (``scores_<head>`` for several heads)."""
    rng = np.random.default_rng(seed)
    channels = sum(CHANNELS[name] for name in inputs)
    inits = [numpy_helper.from_array(rng.normal(0, 0.05, (8, channels, 3, 3)).astype(np.float32),
                                     "w1"),
             numpy_helper.from_array(np.zeros(8, np.float32), "b1")]
    nodes = [helper.make_node("Concat", list(inputs), ["x"], axis=1),
             helper.make_node("Conv", ["x", "w1", "b1"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h"], ["r"])]
    outputs = []
    for head, classes in heads:
        name = "scores" if len(heads) == 1 else f"scores_{head}"
        inits += [numpy_helper.from_array(rng.normal(0, 0.5, (classes, 8, 1, 1)).astype(np.float32),
                                          f"w_{head}"),
                  numpy_helper.from_array(rng.normal(0, 1, classes).astype(np.float32), f"b_{head}")]
        nodes.append(helper.make_node("Conv", ["r", f"w_{head}", f"b_{head}"], [name]))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                     ["batch", classes, "height", "width"]))
    graph = helper.make_graph(nodes, "multi", [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", CHANNELS[n], "height", "width"])
        for n in inputs], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    extra = {}
    if list(inputs) != ["image"]:
        extra["inputs"] = [{"name": n, "channels": CHANNELS[n]} for n in inputs]
    if len(heads) > 1:
        extra["heads"] = [{"name": h, "num_classes": c} for h, c in heads]
    write_onnx_meta(model, ModelMeta.default("pixel_clf", heads[0][1], mean=MEAN, **extra))
    onnx.save(model, str(path))
    return path


def _by_hand(name, data):
    """The preprocessing of each input written out here (not the library's)."""
    if name == "depth":
        return (np.log(np.maximum(data.astype(np.float64), 1.0)) - NYUD_LOG_DEPTH_MEAN)[None]
    if name == "hha":  # the HHA mean is in the PNG's RGB order
        return (data[:, :, ::-1].astype(np.float64) - np.asarray(NYUD_HHA_MEAN)).transpose(2, 0, 1)
    return (data.astype(np.float64) - np.asarray(MEAN)).transpose(2, 0, 1)


def _direct(path, data, inputs, heads):
    """{head: ConfusionMatrix} straight from ONNX Runtime, and the first head's predictions."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    cms = {h: ConfusionMatrix(c) for h, c in heads}
    names = ["scores" if len(heads) == 1 else f"scores_{h}" for h, _ in heads]
    first = []
    for sample in data:
        feeds = {n: _by_hand(n, sample.image if n == "image" else sample.inputs[n])[None]
                 .astype(np.float32) for n in inputs}
        outs = sess.run(names, feeds)
        for k, ((head, _), scores) in enumerate(zip(heads, outs)):
            pred = scores[0].argmax(axis=0)
            cms[head].update(sample.label if k == 0 else sample.labels[head], pred)
            if k == 0:
                first.append(pred)
    return cms, first


def test_two_heads_are_scored_each_against_its_labels(tmp_path, capsys):
    heads = (("sem", C), ("geo", 3))
    path = _graph(tmp_path / "twohead.onnx", heads=heads)
    data = SyntheticTwoHead(**DATA)
    result = evaluate(path, data, progress=False)
    cms, _ = _direct(path, data, ["image"], heads)
    np.testing.assert_array_equal(result.confusion, cms["sem"].matrix)  # the headline: sem
    assert list(result.heads) == ["geo"]
    geo = result.heads["geo"]
    np.testing.assert_array_equal(geo.confusion, cms["geo"].matrix)
    # geometric pixel accuracy by hand: the diagonal over every labelled pixel
    labelled = sum(int(np.count_nonzero(s.labels["geo"] != 255)) for s in data)
    assert geo.confusion.sum() == labelled
    assert geo.metrics.pixel_accuracy == pytest.approx(np.trace(geo.confusion) / labelled,
                                                       abs=1e-12)
    assert 0 < geo.metrics.pixel_accuracy < 1
    assert geo.class_names == ["background", "round", "angular"]

    from fcn_deploy.cli.evaluate import main

    out = tmp_path / "report.md"
    assert main([str(path), "--dataset", "synthetic-twohead:4:seed=5,min_size=32,max_size=48",
                 "--quiet", "-o", str(out)]) == 2  # synthetic-twohead has 7 classes, not 4
    assert "predicts 4 classes but dataset" in capsys.readouterr().err
    path7 = _graph(tmp_path / "twohead7.onnx", heads=(("sem", 7), ("geo", 3)))
    assert main([str(path7), "--dataset", "synthetic-twohead:3:seed=5,min_size=32,max_size=48",
                 "--quiet", "-o", str(out)]) == 0
    md = capsys.readouterr().out
    report = json.loads(out.with_suffix(".json").read_text())["models"][0]
    geo7 = report["heads"]["geo"]
    assert len(geo7["confusion"]) == 3 and geo7["class_names"][1] == "round"
    assert f"| twohead7.onnx | geo | 3 | {100 * geo7['mean_iu']:.2f} | " \
           f"{100 * geo7['pixel_accuracy']:.2f} |" in md


def test_every_input_is_fed_from_the_dataset(tmp_path):
    data = SyntheticRGBD(**DATA)
    paths = [_graph(tmp_path / "rgb_hha.onnx", inputs=("image", "hha")),
             _graph(tmp_path / "rgb_d.onnx", inputs=("image", "depth"), seed=1),
             _graph(tmp_path / "hha.onnx", inputs=("hha",), seed=2)]
    report = compare_models(paths, data, progress=False)
    preds = []
    for path, inputs, result in zip(paths, (("image", "hha"), ("image", "depth"), ("hha",)),
                                    report.results):
        cms, first = _direct(path, data, inputs, (("score", C),))
        np.testing.assert_array_equal(result.confusion, cms["score"].matrix)
        assert result.heads == {}
        preds.append(first)
    same = sum(int(np.count_nonzero(a == b)) for a, b in zip(preds[0], preds[1]))
    assert report.results[1].agreement == pytest.approx(same / sum(a.size for a in preds[0]))


def test_a_dataset_without_the_nets_inputs_or_heads_is_refused(tmp_path):
    rgbd = _graph(tmp_path / "rgb_hha.onnx", inputs=("image", "hha"))
    with pytest.raises(FCNError, match=r"takes the input\(s\) hha but dataset .* has only "
                                       r"image; evaluate it on a dataset with them"):
        evaluate(rgbd, SyntheticShapes(**DATA), progress=False)
    twohead = _graph(tmp_path / "twohead.onnx", heads=(("sem", C), ("geo", 3)))
    with pytest.raises(FCNError, match=r"has the head 'geo' but dataset .* labels no such head"):
        evaluate(twohead, SyntheticShapes(**DATA), progress=False)
    wrong = _graph(tmp_path / "geo4.onnx", heads=(("sem", C), ("geo", 4)))
    with pytest.raises(FCNError, match=r"predicts 4 classes for head 'geo' but dataset .* has 3"):
        evaluate(wrong, SyntheticTwoHead(**DATA), progress=False)
