"""MAC counts: a hand-built graph, and exported FCNs against the PyTorch model's own count."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from fcn_deploy.bench.flops import arch_macs, artifact_macs, onnx_macs, torch_macs
from fcn_deploy.errors import FCNError


def _hand_graph():
    """image [N,3,H,W] -> Conv 3->8 3x3 pad 1 -> ConvTranspose (8 groups, k4 s2) -> scores."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w1 = numpy_helper.from_array(np.zeros((8, 3, 3, 3), np.float32), "w1")
    w2 = numpy_helper.from_array(np.zeros((8, 1, 4, 4), np.float32), "w2")
    nodes = [helper.make_node("Conv", ["image", "w1"], ["h"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("ConvTranspose", ["h", "w2"], ["scores"], strides=[2, 2], group=8,
                              name="up")]
    graph = helper.make_graph(
        nodes, "hand",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                       ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 8, None, None])],
        [w1, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def test_hand_built_graph_counts_conv_and_transposed_conv():
    count = onnx_macs(_hand_graph(), (2, 3, 10, 10))
    assert count.conv == 2 * 8 * 10 * 10 * (3 * 3 * 3)  # output elements x (Cin/g * kh * kw)
    assert count.deconv == 2 * 8 * 10 * 10 * (1 * 4 * 4)  # input elements x (Cout/g * kh * kw)
    assert count.total == count.conv + count.deconv and count.by_node == {
        "conv": count.conv, "up": count.deconv}
    assert count.gflop == pytest.approx(2 * count.total / 1e9)


def test_wrong_rank_is_a_user_error():
    with pytest.raises(FCNError, match="has rank 4"):
        onnx_macs(_hand_graph(), (1, 3, 10))


def _export(model, path, **options):
    from fcn_deploy.export import export_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_model(model, None, path, verify=False, **options)
    return path


def test_exported_fcn_matches_the_pytorch_count(tiny_model, tmp_path):
    shape = (1, 3, 100, 120)
    ref = torch_macs(tiny_model, shape)
    dense = onnx_macs(_export(tiny_model, tmp_path / "dense.onnx", depthwise_upsampling=False,
                              fold_crops=False), shape)
    assert (dense.conv, dense.deconv) == (ref.conv, ref.deconv)
    # the depthwise rewrite keeps only the diagonal of the 21x21 upsampling: 21 times fewer MACs
    depthwise = onnx_macs(_export(tiny_model, tmp_path / "dw.onnx", fold_crops=False), shape)
    assert depthwise.conv == ref.conv
    assert depthwise.deconv * tiny_model.num_classes == ref.deconv


def test_metadata_arch_and_artifact_rules(tiny_model, tiny_artifacts):
    from fcn_deploy.meta import read_onnx_meta

    shape = (1, 3, 64, 64)
    meta = read_onnx_meta(tiny_artifacts["both"])
    assert arch_macs(meta, shape).total == torch_macs(tiny_model, shape).total
    from_graph = artifact_macs(tiny_artifacts["both"], shape, meta=meta)
    assert from_graph.source.startswith("onnx graph")
    assert from_graph.conv == torch_macs(tiny_model, shape).conv
    assert artifact_macs(tiny_artifacts["pt"], shape, meta=meta).source.startswith("metadata arch")


def test_int8_graph_counts_the_same_convolutions(tiny_artifacts, tmp_path):
    quantize = pytest.importorskip("fcn_deploy.quantize")
    from fcn_deploy.meta import read_onnx_meta

    meta = read_onnx_meta(tiny_artifacts["scores"])
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    reader = quantize.CalibrationReader([image], mean=meta.mean, progress=False)
    out = tmp_path / "int8.onnx"
    quantize.quantize_onnx(tiny_artifacts["scores"], out, reader,
                           config=quantize.QuantizeConfig(progress=False))
    shape = (1, 3, 80, 64)
    assert onnx_macs(out, shape).conv == onnx_macs(tiny_artifacts["scores"], shape).conv
