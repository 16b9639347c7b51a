"""Graph rewrites on their own: depthwise upsampling, crop folding, the label head."""
from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from fcn_deploy.errors import FCNError
from fcn_deploy.export import graph as g
from fcn_deploy.export.torch_export import export_torch

from export_helpers import SAMPLE, TinyFCN, run_onnx


def _deconvs(model):
    return [n for n in model.graph.node if n.op_type == "ConvTranspose"]


def _weight(model, name):
    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)


@pytest.fixture
def base(tiny):
    return g.simplify(export_torch(tiny, sample_shape=SAMPLE, opset=18))


def test_depthwise_rewrite_keeps_outputs_and_uses_the_diagonal(base, images):
    rewritten = copy.deepcopy(base)
    info = g.depthwise_upsampling(rewritten)
    assert len(info["rewritten"]) == 2 and info["skipped_not_diagonal"] == []
    for before, after in zip(_deconvs(base), _deconvs(rewritten)):
        full = _weight(base, before.input[1])
        grouped = _weight(rewritten, after.input[1])
        assert g.attr(after, "group") == 5 and grouped.shape == (5, 1, 4, 4)
        assert np.array_equal(grouped[:, 0], full[range(5), range(5)])
    for x in images:
        a, b = run_onnx(base, x)["scores"], run_onnx(rewritten, x)["scores"]
        # only exact zeros were dropped from the sums
        assert np.abs(a - b).max() <= 1e-6 * np.abs(a).max()


def test_depthwise_rewrite_leaves_non_diagonal_layers_alone():
    torch.manual_seed(0)
    model = TinyFCN().eval()
    with torch.no_grad():
        model.up_final.weight[0, 1, 1, 1] = 0.25  # one learned off-diagonal entry
    proto = g.simplify(export_torch(model, sample_shape=SAMPLE, opset=18))
    info = g.depthwise_upsampling(proto)
    assert len(info["rewritten"]) == 1 and len(info["skipped_not_diagonal"]) == 1
    groups = sorted(g.attr(n, "group", 1) for n in _deconvs(proto))
    assert groups == [1, 5]


def test_crop_folding_moves_the_offset_into_pads_and_keeps_outputs(base, images):
    folded = copy.deepcopy(base)
    records = g.fold_crops(folded)
    assert records == [{"node": _deconvs(base)[1].name, "begin_offsets": [7, 7]}]
    assert list(g.attr(_deconvs(folded)[1], "pads")) == [7, 7, 0, 0]
    assert list(g.attr(_deconvs(folded)[0], "pads")) == [0, 0, 0, 0]  # the skip crop is on a conv
    assert g.node_count(folded) == g.node_count(base)  # the offset went into an existing Add
    for x in images:
        a, b = run_onnx(base, x)["scores"], run_onnx(folded, x)["scores"]
        assert a.shape == b.shape == (x.shape[0], 5, x.shape[2], x.shape[3])
        assert np.abs(a - b).max() <= 1e-6 * np.abs(a).max()


def _identity_graph(classes: int):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["image"], ["scores"])], "scores_only",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", classes, "h", "w"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", classes, "h", "w"])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


def test_label_head_is_argmax_with_lowest_index_on_ties():
    model = _identity_graph(4)
    g.add_label_head(model, keep_scores=True)
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node[-3:]]
    casts = [g.attr(n, "to") for n in model.graph.node[-2:]]
    assert ops == ["ArgMax", "Cast", "Cast"] and casts == [TensorProto.FLOAT, TensorProto.UINT8]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, size=(2, 4, 5, 7)).astype(np.float32)  # many ties
    out = run_onnx(model, x)
    assert out["labels"].dtype == np.uint8 and out["labels"].shape == (2, 5, 7)
    assert np.array_equal(out["labels"], x.argmax(axis=1))
    assert np.array_equal(out["labels"], torch.from_numpy(x).argmax(dim=1).numpy())


def test_label_head_only_drops_scores_output():
    model = _identity_graph(3)
    g.add_label_head(model, keep_scores=False)
    assert [o.name for o in model.graph.output] == ["labels"]
    assert g.label_source(model) == "scores"


def test_label_head_refuses_more_classes_than_uint8_holds():
    model = _identity_graph(300)
    with pytest.raises(FCNError, match="at most 256 classes"):
        g.add_label_head(model)
