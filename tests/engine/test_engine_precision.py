"""Precision detection from the graph (what a strongly typed TensorRT build will use)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from fcn_deploy.engine.graph import detect_precision, inspect_onnx, sha256_file
from fcn_deploy.errors import FCNError
from runtime_fixtures import random_image


def test_fp32_graph(tiny_onnx):
    report = detect_precision(tiny_onnx)
    assert report.precision == "fp32"
    assert report.float_initializers == 4 and report.float16_initializers == 0
    assert report.problems == []
    assert report.describe() == "FP32 (4 float32 initializers, no float16 weights, no Q/DQ nodes)"


def test_fp16_graph_from_the_project_converter(tiny_onnx):
    from fcn_deploy.export.fp16 import convert_to_fp16

    fp16, _ = convert_to_fp16(onnx.load(str(tiny_onnx)))
    report = detect_precision(fp16)
    assert report.precision == "fp16"
    assert report.float16_initializers == 4
    # the metadata still says fp32 (we did not update it): the graph decides, and says so
    assert report.meta_precision == "fp32"
    assert "the file's metadata says 'fp32', the graph decides" in report.describe()


def test_int8_qdq_graph_from_the_project_quantizer(tiny_onnx, tmp_path):
    from fcn_deploy.quantize import QuantizeConfig, quantize_onnx

    images = [random_image(24, 24, seed=s) for s in range(3)]
    out = tmp_path / "int8.onnx"
    quantize_onnx(tiny_onnx, out, images, config=QuantizeConfig(exclude_kinds=(), progress=False))
    report = detect_precision(out)
    assert report.precision == "int8"
    assert report.qdq_nodes > 0 and report.problems == []
    assert report.meta_precision == "int8"
    assert "QuantizeLinear" in report.reason and "explicit INT8" in report.reason


def _qdq_graph(zero_point: np.ndarray) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 3, 4, 4])
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
             numpy_helper.from_array(zero_point, "zp")]
    nodes = [helper.make_node("QuantizeLinear", ["image", "s", "zp"], ["q"], name="q0"),
             helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["scores"], name="dq0")]
    return helper.make_model(helper.make_graph(nodes, "qdq", [x], [y], initializer=inits))


def test_qdq_that_tensorrt_rejects_is_reported():
    assert detect_precision(_qdq_graph(np.array(0, np.int8))).problems == []
    uint8 = detect_precision(_qdq_graph(np.array(128, np.uint8)))
    assert uint8.precision == "int8"
    assert uint8.problems == [
        "QuantizeLinear 'q0': zero point is UINT8, TensorRT needs INT8 (symmetric quantization)",
        "DequantizeLinear 'dq0': zero point is UINT8, TensorRT needs INT8 (symmetric quantization)"]
    shifted = detect_precision(_qdq_graph(np.array(3, np.int8)))
    assert shifted.problems[0] == ("QuantizeLinear 'q0': zero point is not 0; TensorRT needs "
                                   "symmetric quantization")


def test_inspect_onnx_reads_input_dims_outputs_and_meta(onnx_factory, tmp_path):
    info = inspect_onnx(onnx_factory("a.onnx", outputs="labels"))
    assert info.input_name == "image"
    assert info.input_shape == ["batch", 3, "height", "width"]
    assert info.output_names == ["labels"]
    assert info.meta.arch == "tiny_test_net" and info.meta.outputs == "labels"
    static = inspect_onnx(onnx_factory("b.onnx", static_shape=(2, 3, 8, 8)))
    assert static.input_shape == [2, 3, 8, 8]
    assert inspect_onnx(onnx_factory("c.onnx", with_meta=False)).meta is None
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01 not protobuf")
    with pytest.raises(FCNError, match="bad.onnx is not a readable ONNX file"):
        inspect_onnx(bad)
    with pytest.raises(FCNError, match="ONNX file .*missing.onnx does not exist"):
        inspect_onnx(tmp_path / "missing.onnx")


def test_sha256_changes_with_weights(onnx_factory):
    a, b = onnx_factory("a.onnx"), onnx_factory("b.onnx")
    c = onnx_factory("c.onnx", seed=4)
    assert sha256_file(a) == sha256_file(b)
    assert sha256_file(a) != sha256_file(c)
    assert len(sha256_file(a)) == 64
