"""check_trt_qdq on hand-built Q/DQ graphs: one valid form, and one graph per broken rule."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from fcn_deploy.quantize import check_trt_qdq


def _graph(*, act_zp=np.int8(0), act_scale=np.float32(0.05), w_scale=None, w_axis=0,
           w_dtype=np.int8, op="Conv", bias_int32=False, q_to_relu=False, act_per_channel=False,
           scale_as_input=False, w_zp=None):
    """x -> Q -> DQ -> op(DQ(int8 weight), float bias) -> y, with the knobs the tests break."""
    cout, cin = 4, 3
    w_shape = (cout, cin, 3, 3) if op == "Conv" else (cin, cout, 3, 3)
    chan = w_shape[w_axis]
    w_scale = np.full(chan, 0.01, np.float32) if w_scale is None else w_scale
    w_zp = np.zeros(np.shape(w_scale), np.int8) if w_zp is None else w_zp
    wq = np.random.default_rng(0).integers(-127, 128, w_shape).astype(w_dtype)
    inits = [
        numpy_helper.from_array(np.asarray(act_zp), "x_zp"),
        numpy_helper.from_array(wq, "w_q"),
        numpy_helper.from_array(np.asarray(w_scale, np.float32), "w_scale"),
        numpy_helper.from_array(np.asarray(w_zp), "w_zp"),
    ]
    if act_per_channel:
        inits.append(numpy_helper.from_array(np.full(3, 0.05, np.float32), "x_scale"))
    elif not scale_as_input:
        inits.append(numpy_helper.from_array(np.asarray(act_scale, np.float32), "x_scale"))
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["x_q"], name="q_x",
                         axis=1),
        helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zp"], ["x_dq"], name="dq_x",
                         axis=1),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w"], name="dq_w",
                         axis=w_axis),
    ]
    if bias_int32:
        inits += [numpy_helper.from_array(np.zeros(cout, np.int32), "b_q"),
                  numpy_helper.from_array(np.full(cout, 0.0005, np.float32), "b_scale"),
                  numpy_helper.from_array(np.zeros(cout, np.int32), "b_zp")]
        nodes.append(helper.make_node("DequantizeLinear", ["b_q", "b_scale", "b_zp"], ["b"],
                                      name="dq_b"))
    else:
        inits.append(numpy_helper.from_array(np.zeros(cout, np.float32), "b"))
    conv_in = "x_q" if q_to_relu else "x_dq"
    if q_to_relu:
        nodes.append(helper.make_node("Relu", ["x_q"], ["x_r"], name="relu_on_int8"))
        conv_in = "x_dq"
    nodes.append(helper.make_node(op, [conv_in, "w", "b"], ["y"], name="layer", pads=[1] * 4))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "h", "w"])]
    if scale_as_input:
        inputs.append(helper.make_tensor_value_info("x_scale", TensorProto.FLOAT, []))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, "h", "w"])]
    if q_to_relu:
        outputs.append(helper.make_tensor_value_info("x_r", TensorProto.INT8, [1, 3, "h", "w"]))
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


def test_valid_graph_passes_and_runs():
    model = _graph()
    onnx.checker.check_model(model)
    assert check_trt_qdq(model) == []
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"x": np.ones((1, 3, 5, 6), np.float32)})[0].shape == (1, 4, 5, 6)


def test_per_tensor_convtranspose_weight_passes():
    model = _graph(op="ConvTranspose", w_scale=np.float32(0.01), w_axis=1)
    assert check_trt_qdq(model) == []


@pytest.mark.parametrize("kwargs, message", [
    (dict(act_zp=np.int8(3)), r"zero point 'x_zp' is not 0"),
    (dict(act_zp=np.uint8(0)), r"zero point 'x_zp' has type uint8; expected int8"),
    (dict(act_scale=np.float32(0.0)), r"scale 'x_scale' has values <= 0"),
    (dict(act_scale=np.float32(-0.5)), r"scale 'x_scale' has values <= 0"),
    (dict(scale_as_input=True), r"scale 'x_scale' is not a constant"),
    (dict(act_per_channel=True), r"per-channel scale \(3 values\) on activation 'x'"),
    (dict(w_axis=1, w_scale=np.full(3, 0.01, np.float32)),
     r"per-channel axis 1 for the weight of Conv layer; TensorRT expects axis 0"),
    (dict(op="ConvTranspose", w_axis=1), r"per-channel weights for ConvTranspose layer; "
                                         r"expected per-tensor"),
    (dict(bias_int32=True), r"input 'b_q' has type int32; TensorRT's DequantizeLinear input "
                            r"must be int8"),
    (dict(q_to_relu=True), r"int8 output feeds Relu relu_on_int8; expected only "
                           r"DequantizeLinear consumers"),
    (dict(w_zp=np.array([0, 0, 1, 0], np.int8)), r"zero point 'w_zp' is not 0"),
])
def test_each_broken_rule_is_reported(kwargs, message):
    problems = check_trt_qdq(_graph(**kwargs))
    assert problems, "expected a violation"
    assert any(__import__("re").search(message, p) for p in problems), problems


def test_int32_bias_is_also_named_on_the_conv():
    problems = check_trt_qdq(_graph(bias_int32=True))
    assert any("Conv layer: bias 'b' is quantized" in p for p in problems)


def test_graph_without_qdq(tmp_path):
    model = _graph()
    plain = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              list(model.graph.input),
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(plain)
    assert check_trt_qdq(m) == ["the graph has no QuantizeLinear/DequantizeLinear nodes; "
                                "expected an explicitly quantized (Q/DQ) graph"]
    assert check_trt_qdq(m, require_qdq=False) == []
    path = tmp_path / "plain.onnx"
    onnx.save(m, str(path))
    assert len(check_trt_qdq(path)) == 1  # paths work too


def test_missing_zero_point():
    model = _graph()
    for node in model.graph.node:
        if node.name == "dq_x":
            del node.input[2]
    assert any("dq_x: no zero point input" in p for p in check_trt_qdq(model))


def _grouped(op: str, channels: int, groups: int, *, quantized: bool = True):
    """x -> [Q -> DQ] -> op(group=groups, [DQ] weight) -> y: FCN's depthwise upsampling shape."""
    per = channels // groups
    w_shape = (channels, per, 4, 4) if op == "ConvTranspose" else (channels, per, 3, 3)
    w = np.ones(w_shape, np.int8 if quantized else np.float32)
    inits = [numpy_helper.from_array(w, "w_q" if quantized else "w")]
    nodes = []
    src = "x"
    if quantized:
        inits += [numpy_helper.from_array(np.float32(0.05), "x_scale"),
                  numpy_helper.from_array(np.int8(0), "x_zp"),
                  numpy_helper.from_array(np.float32(0.01), "w_scale"),
                  numpy_helper.from_array(np.int8(0), "w_zp")]
        nodes += [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["x_q"], name="q_x"),
                  helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zp"], ["x_dq"],
                                   name="dq_x"),
                  helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w"],
                                   name="dq_w")]
        src = "x_dq"
    extra = {"strides": [2, 2]} if op == "ConvTranspose" else {"pads": [1] * 4}
    nodes.append(helper.make_node(op, [src, "w"], ["y"], name="upscore", group=groups, **extra))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


def test_int8_depthwise_upsampling_is_refused_with_the_reason():
    """TensorRT needs channels per group to be a multiple of 4 for grouped (de)convolution in
    INT8 (NvInfer.h 10.16/11.1, IDeconvolutionLayer::setNbGroups); FCN's depthwise upsampling has
    1 channel per group."""
    problems = check_trt_qdq(_grouped("ConvTranspose", 21, 21))
    assert problems == [
        "ConvTranspose upscore: depthwise ConvTranspose (21 groups, 1 input and 1 output channels "
        "per group) is quantized; TensorRT runs grouped (de)convolutions in INT8 only with "
        "channels per group a multiple of 4. Keep upsampling in float (fcn-quantize --keep-float "
        "upsample, the default) or export without the depthwise rewrite (fcn-export "
        "--no-depthwise-upsampling)"]
    assert check_trt_qdq(_grouped("ConvTranspose", 16, 4)) == []   # 4 per group: fine
    assert check_trt_qdq(_grouped("ConvTranspose", 21, 21, quantized=False),
                         require_qdq=False) == []                 # float: fine


def test_int8_grouped_conv_needs_channels_per_group_a_multiple_of_4():
    """The same NvInfer.h note (IConvolutionLayer::setNbGroups) covers grouped Conv: FCN-AlexNet's
    conv2/conv4/conv5 (2 groups) pass at full width but not at every narrow one."""
    from fcn_deploy.quantize.trt_rules import int8_group_misfits

    assert check_trt_qdq(_grouped("Conv", 12, 2)) == [
        "Conv upscore: grouped Conv (2 groups, 6 input and 6 output channels per group) is "
        "quantized; TensorRT runs grouped (de)convolutions in INT8 only with channels per group a "
        "multiple of 4. Keep it in float (fcn-quantize does so by itself; with another quantizer "
        "exclude upscore)"]
    assert check_trt_qdq(_grouped("Conv", 16, 2)) == []  # 8 per group
    assert check_trt_qdq(_grouped("Conv", 12, 2, quantized=False), require_qdq=False) == []
    # on the float graph, before quantizing: the layers fcn-quantize keeps in float
    assert int8_group_misfits(_grouped("Conv", 12, 2, quantized=False)) == ["upscore"]
    assert int8_group_misfits(_grouped("Conv", 16, 2, quantized=False)) == []
    assert int8_group_misfits(_grouped("Conv", 6, 6, quantized=False)) == ["upscore"]  # depthwise


def _export_tiny(arch: str, tmp_path):
    """``arch`` at width 1/16 exported to ONNX (3 classes), its INT8 output path and two
    calibration images."""
    from fcn_deploy.export import export_model
    from fcn_deploy.meta import ModelMeta
    from fcn_deploy.models import create_model

    model = create_model(arch, num_classes=3, width=1 / 16)
    meta = ModelMeta.default(arch, 3, arch_kwargs=dict(model.arch_kwargs))
    src, out = tmp_path / f"{arch}.onnx", tmp_path / f"{arch}.int8.onnx"
    export_model(model, meta, src, verify=False, sample_shape=(1, 3, 32, 32))
    images = [np.random.default_rng(s).integers(0, 255, (32, 32, 3), np.uint8) for s in range(2)]
    return src, out, images


def test_a_narrow_fcn_alexnet_keeps_its_misfit_grouped_conv_in_float(tmp_path):
    """FCN-AlexNet at width 1/16: conv2 reads 6 channels in 2 groups (3 per group), which TensorRT
    cannot run in INT8; conv4 (12/12) and conv5 (12/8) can. fcn-quantize keeps conv2 in float,
    says so, and the result passes the rules (it used to quantize conv2 and pass the check)."""
    pytest.importorskip("torch")
    from fcn_deploy.quantize import QuantizeConfig, quantize_onnx

    src, out, images = _export_tiny("fcn_alexnet", tmp_path)
    result = quantize_onnx(src, out, images, config=QuantizeConfig(progress=False))
    assert "/conv2/Conv" in result.excluded_nodes
    assert "/conv2/Conv" not in result.quantized_nodes
    assert {"/conv4/Conv", "/conv5/Conv"} <= set(result.quantized_nodes)
    assert check_trt_qdq(out) == []
    q = onnx.load(out)
    producer = {o: n.op_type for n in q.graph.node for o in n.output}
    conv2 = next(n for n in q.graph.node if n.name == "/conv2/Conv")
    assert [producer.get(i) for i in conv2.input[:2]] != ["DequantizeLinear"] * 2
    assert producer.get(conv2.input[1]) is None  # its weight is the float initializer


def test_quantizing_fcn_upsampling_is_refused_naming_the_layers(tmp_path):
    """fcn-export writes FCN-8s's bilinear upsampling as depthwise ConvTranspose; quantizing it
    (--keep-float with no kinds) is refused before anything is written."""
    pytest.importorskip("torch")
    from fcn_deploy.errors import FCNError
    from fcn_deploy.quantize import QuantizeConfig, quantize_onnx

    src, out, images = _export_tiny("fcn8s_vgg16", tmp_path)
    with pytest.raises(FCNError, match=r"(?s)breaks TensorRT's Q/DQ rules \(3 problems\).*/upscore8/"
                                       r"ConvTranspose: depthwise "
                                       r"ConvTranspose \(3 groups, 1 input and 1 output channels "
                                       r"per group\) is quantized"):
        quantize_onnx(src, out, images, config=QuantizeConfig(exclude_kinds=(), progress=False))
    assert not out.exists()
    quantize_onnx(src, out, images, config=QuantizeConfig(progress=False))  # the default: fine
    assert check_trt_qdq(out) == []
